"""Assembling shard rows from a partition's stored stage outputs (schema.SHARD_SCHEMA)."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa

from merr_builder import __version__
from merr_builder.config import BuildConfig, SplitConfig
from merr_builder.runner import PartitionRun
from merr_builder.schema import SCHEMA_VERSION, SHARD_SCHEMA, table_from_rows
from merr_builder.store import PartitionStore


def assign_split(clip_id: str, config: SplitConfig) -> str:
    """Deterministic split from a hash of the clip id: stable across rebuilds and machines."""
    u = int.from_bytes(hashlib.sha256(clip_id.encode()).digest()[:8], "big") / 2**64
    if u < config.test_fraction:
        return "test"
    if u < config.test_fraction + config.val_fraction:
        return "val"
    return "train"


def provenance(config: BuildConfig, runs: list[PartitionRun]) -> str:
    stages = {
        run.stage: {"key": run.key[:16], "config": getattr(config, run.stage).fingerprint()[:16]}
        for run in runs
        if hasattr(config, run.stage)
    }
    return json.dumps({"merr_builder": __version__, "schema": SCHEMA_VERSION, "stages": stages}, sort_keys=True)


def _transcript_fields(clip: dict) -> dict:
    # Until an ASR stage runs, the sidecar transcript is the transcript.
    if clip["sidecar_transcript"] is None:
        return {}
    return {"transcript": clip["sidecar_transcript"], "transcript_source": f"sidecar:{clip['sidecar_source']}"}


def partition_rows(store: PartitionStore, runs: list[PartitionRun], config: BuildConfig) -> pa.Table:
    """Rows of the clips that passed every stage of this partition, in clip-id order.

    Each stage's output columns that the shard schema names are carried over as they are; the shard
    columns made here are the transcript fallback, the split and the provenance.
    """
    tables = {run.stage: store.read_outputs(run.stage, run.index, run.key) for run in runs}
    by_stage = {name: {row["clip_id"]: row for row in table.to_pylist()} for name, table in tables.items()}
    survivors = sorted(set.intersection(*(set(rows) for rows in by_stage.values())))
    shard_columns = set(SHARD_SCHEMA.names)
    prov = provenance(config, runs)
    rows = []
    for clip_id in survivors:
        row: dict = {}
        for stage_rows in by_stage.values():
            row.update({k: v for k, v in stage_rows[clip_id].items() if k in shard_columns})
        row.update(_transcript_fields(by_stage["ingest"][clip_id]))
        row["split"] = assign_split(clip_id, config.split)
        row["provenance"] = prov
        rows.append(row)
    return table_from_rows(rows, SHARD_SCHEMA)


def partition_quarantine(store: PartitionStore, runs: list[PartitionRun]) -> list[pa.Table]:
    return [store.read_quarantine(run.stage, run.index, run.key) for run in runs]
