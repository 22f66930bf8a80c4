"""Split: train, val or test from a hash of the clip id, so a clip keeps its split across rebuilds."""

from __future__ import annotations

import hashlib

from merr_builder.config import SplitConfig
from merr_builder.corpus.base import StepContext, StepDefaults, output_schema


def assign_split(clip_id: str, config: SplitConfig) -> str:
    u = int.from_bytes(hashlib.sha256(clip_id.encode()).digest()[:8], "big") / 2**64
    if u < config.test_fraction:
        return "test"
    if u < config.test_fraction + config.val_fraction:
        return "val"
    return "train"


class SplitStep(StepDefaults):
    name = "split"
    version = "1"
    scope = "partition"
    config_section = "split"
    settings = ("val_fraction", "test_fraction")
    reads: dict[str, tuple[str, ...]] = {}
    writes = ("split",)
    output_schema = output_schema(name, writes)

    def __init__(self, config: SplitConfig) -> None:
        self.config = config

    @classmethod
    def from_config(cls, config) -> "SplitStep":
        return cls(config.split)

    def run(self, rows: list[dict], context: StepContext) -> list[dict]:
        return [{"clip_id": row["clip_id"], "split": assign_split(row["clip_id"], self.config)} for row in rows]
