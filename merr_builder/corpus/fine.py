"""Fine: the LLM's reasoning about each selected clip, checked before it becomes a `fine_caption`.

Build-wide, because selection (the neutral top-up quota) and the near-duplicate check look at every row.
The one step that wants a GPU for its own model (the transformers backends). Every answer is stored in
the build's answer cache as it arrives, so a crash inside the step never asks the LLM again for a row
whose answer was stored.
"""

from __future__ import annotations

import pyarrow as pa

from merr_builder.annotate.fine import fine_annotations, llm_model_id, make_llm
from merr_builder.corpus.base import StepContext, StepDefaults, output_schema

ANSWER_CUT = "fine_answer_cut"  # private column: the answer reached max_new_tokens (null: none generated); the card counts them


class FineStep(StepDefaults):
    name = "fine"
    version = "3"  # 2: answers cut at the limit keep their full sentences; the label lexicon check. 3: an answer that also denies its label is rejected
    scope = "build"
    config_section = "annotate"
    settings = ("fine_backend", "model_dir", "server_url", "server_model", "fp8", "max_new_tokens", "temperature", "neutral_fraction", "seed")
    reads = {"coarse": ("coarse_caption", "label", "label_source")}
    writes = ("fine_caption", "fine_status")
    output_schema = output_schema(name, writes, (pa.field(ANSWER_CUT, pa.bool_()),))

    def __init__(self, config) -> None:
        self.config = config.annotate
        self.llm = make_llm(self.config)

    @classmethod
    def from_config(cls, config) -> "FineStep":
        return cls(config)

    @classmethod
    def models(cls, config) -> dict:
        model = llm_model_id(config.annotate)
        return {"fine_llm": model} if model is not None else {}

    @classmethod
    def wants_gpu(cls, config) -> bool:
        return config.annotate.in_process()

    def run(self, rows: list[dict], context: StepContext) -> list[dict]:
        fine = fine_annotations(rows, self.llm, self.config, context.layout.llm_cache)
        return [dict(zip(("clip_id", *self.writes, ANSWER_CUT), (r["clip_id"], *fine[r["clip_id"]]))) for r in rows]
