"""Translate: `transcript_en`, the English every caption, prompt and export quotes (MERR is English text
over Chinese clips). Build-wide, so that an LLM translates every row in one batch."""

from __future__ import annotations

from merr_builder.annotate.fine import llm_model_id, make_llm
from merr_builder.annotate.translate import english_transcripts
from merr_builder.corpus.base import StepContext, StepDefaults, output_schema


class TranslateStep(StepDefaults):
    name = "translate"
    version = "1"
    scope = "build"
    config_section = "translate"
    settings = ("backend", "max_new_tokens")
    reads = {"speech": ("transcript", "transcript_language", "asr_english", "asr_backend")}
    writes = ("transcript_en", "transcript_en_source")
    output_schema = output_schema(name, writes)

    def __init__(self, config) -> None:
        self.config = config.translate
        self.llm = make_llm(config.annotate) if self.config.backend == "llm" else None

    @classmethod
    def from_config(cls, config) -> "TranslateStep":
        return cls(config)

    @classmethod
    def models(cls, config) -> dict:
        model = llm_model_id(config.annotate) if config.translate.backend == "llm" else None
        return {"translate_llm": model} if model is not None else {}

    @classmethod
    def wants_gpu(cls, config) -> bool:
        return config.translate.backend == "llm" and config.annotate.in_process()

    def run(self, rows: list[dict], context: StepContext) -> list[dict]:
        english = english_transcripts(rows, self.config.backend, self.llm, self.config.max_new_tokens, context.layout.llm_cache)
        return [{"clip_id": r["clip_id"], "transcript_en": text, "transcript_en_source": source} for r, (text, source) in zip(rows, english)]
