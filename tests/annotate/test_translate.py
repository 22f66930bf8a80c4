"""`transcript_en`: which English each row gets, from each translation backend (the LLM over real HTTP)."""

import pytest
from serving import scripted_chat_server

from merr_builder.config import ConfigError, load_config
from merr_builder.corpus.base import StepContext
from merr_builder.corpus.translate import TranslateStep
from merr_builder.layout import BuildLayout

ROWS = [
    {"clip_id": "english", "transcript": "Oh my.", "transcript_language": "en", "asr_english": None, "asr_backend": "faster_whisper"},
    {"clip_id": "good", "transcript": "走了我手机钱包都在包里", "transcript_language": "zh", "asr_english": "I'm leaving.", "asr_backend": "faster_whisper"},
    {"clip_id": "echo", "transcript": "我不进去了", "transcript_language": "zh", "asr_english": "I'm not going in.", "asr_backend": "faster_whisper"},
    {"clip_id": "cut", "transcript": "你们看着我干嘛", "transcript_language": "zh", "asr_english": None, "asr_backend": "faster_whisper"},
    {"clip_id": "silent", "transcript": "", "transcript_language": "en", "asr_english": None, "asr_backend": "faster_whisper"},
    {"clip_id": "none", "transcript": None, "transcript_language": None, "asr_english": None, "asr_backend": None},
]
LLM_ANSWERS = {  # by the source text in the prompt
    "走了我手机钱包都在包里": ("Oh no, my phone and wallet are all in my bag.", "stop"),
    "我不进去了": ("我不进去了 English: I am not going in", "stop"),  # a small model's echo: not English
    "你们看着我干嘛": ("Why are you looking at me like", "length"),
}


def _run(tmp_path, overrides):
    config = load_config(None, overrides)
    out = TranslateStep.from_config(config).run(ROWS, StepContext(BuildLayout(tmp_path)))
    return {r["clip_id"]: (r["transcript_en"], r["transcript_en_source"]) for r in out}


def test_whisper_english_where_the_speech_is_not_english(tmp_path):
    assert _run(tmp_path, []) == {
        "english": ("Oh my.", "original"), "good": ("I'm leaving.", "whisper:faster_whisper"),
        "echo": ("I'm not going in.", "whisper:faster_whisper"), "cut": (None, None), "silent": (None, None), "none": (None, None),
    }  # fmt: skip
    assert _run(tmp_path, ["translate.backend=none"])["good"] == (None, None)


def test_the_llm_translates_and_an_unusable_answer_keeps_whispers(tmp_path):
    def answer(messages):
        return next(a for source, a in LLM_ANSWERS.items() if source in messages[-1]["content"])

    with scripted_chat_server(answer) as url:
        got = _run(tmp_path, ["translate.backend=llm", "annotate.fine_backend=openai", f"annotate.server_url={url}", "annotate.server_model=m"])
    assert got["good"] == ("Oh no, my phone and wallet are all in my bag.", "llm:m")
    assert got["echo"] == ("I'm not going in.", "whisper:faster_whisper")  # the echo is not English
    assert got["cut"] == (None, None) and got["english"] == ("Oh my.", "original")


def test_the_llm_backend_needs_an_llm():
    with pytest.raises(ConfigError, match="translate.backend llm"):
        load_config(None, ["translate.backend=llm", "annotate.fine_backend=none"])
