"""English beside the source: `transcript_en` for every clip, from the backend `translate.backend` names.

- An English transcript (an English sidecar such as MER2023's CSV, or English speech) is its own English.
- whisper: the ASR model's translation of the same audio (`speech.whisper_english`, decoded by the speech
  stage from the encoding it already made).
- llm: the annotate LLM translates the transcript text (through the fine step's backend and answer
  cache); an answer that is empty, cut off at the length limit or not English gives way to Whisper's,
  where there is one.
- none: only English transcripts have one.

`transcript_en_source` says which each row got: "original", "whisper:<asr backend>" or "llm:<model>".
"""

from __future__ import annotations

from pathlib import Path

from merr_builder.annotate.llm.cache import cached_answers
from merr_builder.annotate.llm.protocol import ChatRequest, Completion, GenerationSettings, LLMBackend
from merr_builder.annotate.prompts import TRANSLATE_QUESTION, TRANSLATE_SYSTEM
from merr_builder.speech import subtitle
from merr_builder.speech.stage import CJK, guess_language

ORIGINAL = "original"


def llm_translation(completion: Completion) -> str | None:
    """The translation in one LLM answer, or None where it is unusable: empty, cut off, or not English (a
    small model echoes the source text or keeps writing in its script)."""
    text = " ".join(completion.text.split()).strip().strip("\"'“”")
    if completion.finish_reason == "length" or not text or CJK.search(text) or guess_language(text) != "en":
        return None
    return text


def whisper_english(row: dict) -> tuple[str | None, str | None]:
    english = (row.get("asr_english") or "").strip()
    return (english, f"whisper:{row.get('asr_backend')}") if english else (None, None)


def english_transcripts(
    rows: list[dict], backend: str, llm: LLMBackend | None, max_new_tokens: int, cache_path: Path
) -> list[tuple[str | None, str | None]]:
    """(transcript_en, transcript_en_source) per row (transcript, transcript_language, asr_english, asr_backend)."""
    out: list[tuple[str | None, str | None]] = []
    to_llm: list[int] = []
    for i, row in enumerate(rows):
        text = (row.get("transcript") or "").strip()
        if not text:
            out.append((None, None))
        elif row.get("transcript_language") == "en":
            out.append((text, ORIGINAL))
        else:
            out.append(whisper_english(row) if backend == "whisper" else (None, None))
            if backend == "llm":
                to_llm.append(i)
    if to_llm and llm is not None:
        settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=0.0)
        requests = [
            ChatRequest(TRANSLATE_SYSTEM, TRANSLATE_QUESTION.format(language=rows[i].get("transcript_language") or "unknown",
                                                                   text=subtitle.cut(rows[i]["transcript"].strip())))
            for i in to_llm
        ]  # fmt: skip
        source = f"llm:{llm.model_id()['name']}"
        for i, answer in zip(to_llm, cached_answers(requests, llm, settings, cache_path)):
            english = llm_translation(answer)
            out[i] = (english, source) if english else whisper_english(rows[i])
    return out
