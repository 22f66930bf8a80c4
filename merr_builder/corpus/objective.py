"""Objective: the visual objective description of each clip (what the peak frame shows).

Without a vision-language model it is the factual sentence from the build's measurements; with one
(`annotate.objective_backend=openai`) the model's answer about the peak frame, where usable. The private
column `objective_source` says which, for each row's provenance.
"""

from __future__ import annotations

import pyarrow as pa

from merr_builder.annotate.coarse import objective_description
from merr_builder.annotate.objective import MEASURED, describe_peak_frames, make_vlm
from merr_builder.corpus.base import StepContext, StepDefaults, output_schema

SOURCE = "objective_source"  # private column: where each row's description came from, for its provenance


class ObjectiveStep(StepDefaults):  # (no GPU wanted: the VLM runs behind its own server)
    name = "objective"
    version = "1"
    scope = "partition"
    config_section = "annotate"
    settings = ("objective_backend", "objective_server_url", "objective_server_model", "objective_max_new_tokens", "temperature", "seed")
    reads = {"faces": ("n_faces", "face_box_peak", "head_pose_peak", "peak_frame_jpeg")}
    writes = ("visual_objective_description",)
    output_schema = output_schema(name, writes, (pa.field(SOURCE, pa.string()),))

    def __init__(self, config) -> None:
        self.config = config.annotate
        self.vlm = make_vlm(self.config)

    @classmethod
    def from_config(cls, config) -> "ObjectiveStep":
        return cls(config)

    @classmethod
    def models(cls, config) -> dict:
        vlm = make_vlm(config.annotate)
        return {"objective_vlm": vlm.model_id()} if vlm is not None else {}

    def run(self, rows: list[dict], context: StepContext) -> list[dict]:
        described = {}
        if self.vlm is not None:
            frames = {row["clip_id"]: row["peak_frame_jpeg"] for row in rows if row.get("peak_frame_jpeg")}
            described = describe_peak_frames(frames, self.vlm, self.config, context.layout.llm_cache)
        out = []
        for row in rows:
            text, source = described.get(row["clip_id"], (None, MEASURED))
            out.append({"clip_id": row["clip_id"], "visual_objective_description": text or objective_description(row),
                        SOURCE: source})  # fmt: skip
        return out
