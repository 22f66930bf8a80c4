"""Split: train, val or test from a hash of the clip id, so a clip keeps its split across rebuilds.

Build-wide, for content duplicates: two ids whose files hold the same bytes (a copy, a link under a
second name) are one clip seen twice. They are flagged (`duplicate_of`: the first of them by clip id) and
all go to that first id's split, so no clip is trained on and tested on at once.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from merr_builder.config import SplitConfig
from merr_builder.corpus.base import StepContext, StepDefaults, output_schema


def assign_split(clip_id: str, config: SplitConfig) -> str:
    u = int.from_bytes(hashlib.sha256(clip_id.encode()).digest()[:8], "big") / 2**64
    if u < config.test_fraction:
        return "test"
    if u < config.test_fraction + config.val_fraction:
        return "val"
    return "train"


def first_copies(rows: list[dict]) -> dict[str, str]:
    """clip_id → the first clip id (in id order) with the same content fingerprint, for every clip that has one."""
    by_content: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_content[row["fingerprint"]].append(row["clip_id"])
    return {clip_id: min(ids) for ids in by_content.values() if len(ids) > 1 for clip_id in ids if clip_id != min(ids)}


class SplitStep(StepDefaults):
    name = "split"
    version = "2"  # 2: content duplicates flagged and kept in one split
    scope = "build"
    config_section = "split"
    settings = ("val_fraction", "test_fraction")
    reads = {"ingest": ("fingerprint",)}
    writes = ("split", "duplicate_of")
    output_schema = output_schema(name, writes)

    def __init__(self, config: SplitConfig) -> None:
        self.config = config

    @classmethod
    def from_config(cls, config) -> "SplitStep":
        return cls(config.split)

    def run(self, rows: list[dict], context: StepContext) -> list[dict]:
        first = first_copies(rows)
        return [{"clip_id": row["clip_id"], "split": assign_split(first.get(row["clip_id"], row["clip_id"]), self.config),
                 "duplicate_of": first.get(row["clip_id"])} for row in rows]  # fmt: skip
