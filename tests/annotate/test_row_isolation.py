"""One row's text never fails the LLM step for the other rows: a huge transcript is quoted cut (so its
prompt stays bounded), and a request the backend cannot take fails alone, as that row's fine_status.

The backend is the real transformers one, loading a tiny GPT-2 the test builds and saves: GPT-2 has
learned positions, so a prompt longer than `n_positions` really fails inside the model."""

from pathlib import Path

import pytest
import torch

from merr_builder.annotate.coarse import coarse_caption
from merr_builder.annotate.fine import fine_annotations
from merr_builder.annotate.llm.hf import TransformersLLM
from merr_builder.annotate.prompts import FINE_QUESTION, FINE_SYSTEM
from merr_builder.config import AnnotateConfig
from merr_builder.speech.subtitle import CUT_MARK, QUOTE_MAX_CHARS, quote_cut

CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}A:{% endif %}"


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.train_from_iterator([FINE_SYSTEM, FINE_QUESTION] * 20, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<|end|>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", pad_token="<|end|>", eos_token="<|end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=400, n_embd=32, n_layer=2, n_head=2,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def _row(clip_id: str, english: str) -> dict:
    row = {"clip_id": clip_id, "transcript": english, "transcript_en": english, "transcript_flags": [], "label": "happy",
           "label_source": "labels.csv", "visual_expression_description": "Lip corner puller, Cheek raiser",
           "audio_tone_description": "a loud voice", "visual_objective_description": "a woman in a bright room"}  # fmt: skip
    row["coarse_caption"] = coarse_caption(row)
    return row


def test_a_ten_megabyte_transcript_is_quoted_cut_and_flagged():
    huge = _row("huge", "la " * 3_500_000)
    assert quote_cut(huge) and CUT_MARK.strip() in huge["coarse_caption"]
    assert len(huge["coarse_caption"]) < QUOTE_MAX_CHARS + 400  # the template and the clues around the quote
    assert not quote_cut(_row("short", "I am so happy today."))


def test_a_row_the_model_cannot_take_fails_alone(tiny_gpt2, tmp_path):
    config = AnnotateConfig(fine_backend="transformers", model_dir=tiny_gpt2, max_new_tokens=8, neutral_fraction=0.0)
    llm = TransformersLLM(tiny_gpt2, batch_size=4, static_decode=False)
    rows = [_row("a_short", "I am so happy today."), _row("b_long", "word " * 300), _row("c_short", "What a lovely surprise!")]
    # the long row's prompt (about 1,600 characters, cut) is longer than this model's 400 positions
    assert len(llm.tokenizer(rows[1]["coarse_caption"]).input_ids) > 400
    together = fine_annotations(rows, llm, config, tmp_path / "together.sqlite")
    assert together["b_long"][0] is None and together["b_long"][1].startswith("failed: the LLM gave no answer (")
    alone = fine_annotations([rows[0], rows[2]], llm, config, tmp_path / "alone.sqlite")
    for clip_id in ("a_short", "c_short"):
        assert together[clip_id] == alone[clip_id] and not together[clip_id][1].startswith("failed")
    # every row failing is the backend failing: the step fails, it does not write a build of failures
    with pytest.raises(Exception, match="index out of range|out of bounds|indices"):
        fine_annotations([rows[1]], llm, config, tmp_path / "only-long.sqlite")
