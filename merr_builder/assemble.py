"""Assembling shard rows from a partition's stored stage outputs (schema.SHARD_SCHEMA)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import pyarrow as pa

from merr_builder import __version__
from merr_builder.annotate.coarse import annotate_coarse
from merr_builder.annotate.objective import MEASURED
from merr_builder.annotate.prompts import COARSE_TEMPLATE_VERSION
from merr_builder.config import BuildConfig, SplitConfig
from merr_builder.runner import PartitionRun
from merr_builder.schema import SCHEMA_VERSION, SHARD_SCHEMA, table_from_rows
from merr_builder.speech.tone import CorpusStats, corpus_stats, cue_values, describe_tone, egemaps_names
from merr_builder.store import PartitionStore

# Columns no annotation reads: a first pass over the build skips them.
HEAVY_COLUMNS = {"frames_jpeg", "frame_times_s", "peak_frame_jpeg", "peak_face_jpeg", "au_series", "face_stats",
                 "blendshapes_peak"}  # fmt: skip


def assign_split(clip_id: str, config: SplitConfig) -> str:
    """Deterministic split from a hash of the clip id: stable across rebuilds and machines."""
    u = int.from_bytes(hashlib.sha256(clip_id.encode()).digest()[:8], "big") / 2**64
    if u < config.test_fraction:
        return "test"
    if u < config.test_fraction + config.val_fraction:
        return "val"
    return "train"


def provenance(config: BuildConfig, runs: list[PartitionRun], fine: dict | None = None, objective: str = MEASURED) -> str:
    stages = {
        run.stage: {"key": run.key[:16], "config": getattr(config, run.stage).fingerprint()[:16]}
        for run in runs
        if hasattr(config, run.stage)
    }
    annotations = {
        "coarse_template": COARSE_TEMPLATE_VERSION,
        "visual_objective_description": objective,
        "fine": fine or {},
    }
    return json.dumps(
        {"merr_builder": __version__, "schema": SCHEMA_VERSION, "stages": stages, "annotations": annotations},
        sort_keys=True,
    )


def tone_cues(speech_row: dict) -> dict[str, float | None] | None:
    """The tone cues of a clip with speech; None without speech."""
    if not speech_row.get("has_speech"):
        return None
    return cue_values(speech_row["egemaps"], egemaps_names(), speech_row["speech_rate"], speech_row["pause_ratio"])


def build_tone_stats(store: PartitionStore, partition_runs: list[list[PartitionRun]]) -> CorpusStats:
    """Corpus statistics of the tone cues over every clip with speech in the build (a first pass)."""
    cues = []
    for runs in partition_runs:
        for run in runs:
            if run.stage == "speech":
                table = store.read_outputs(
                    run.stage, run.index, run.key, {"has_speech", "egemaps", "speech_rate", "pause_ratio"}
                )
                cues += [c for c in map(tone_cues, table.to_pylist()) if c is not None]
    return corpus_stats(cues)


def partition_rows(
    store: PartitionStore,
    runs: list[PartitionRun],
    config: BuildConfig,
    tone_stats: CorpusStats | None = None,
    fine: dict | None = None,
    light: bool = False,
    objectives: dict[str, tuple[str | None, str]] | None = None,
) -> pa.Table:
    """Rows of the clips that passed every stage of this partition, in clip-id order.

    Each stage's output columns that the shard schema names are carried over as they are; made here are
    the tone words (relative to the build's `tone_stats`), the coarse annotation (caption and label), the
    split and the provenance. `light`: leave out the images and series (a pass that needs only the text).
    `objectives`: clip_id → (VLM description or None, its source), where a VLM described the peak frames.
    """
    wanted = set(SHARD_SCHEMA.names) - (HEAVY_COLUMNS if light else set())
    tables = {run.stage: store.read_outputs(run.stage, run.index, run.key, wanted) for run in runs}
    by_stage = {name: {row["clip_id"]: row for row in table.to_pylist()} for name, table in tables.items()}
    survivors = _survivors(by_stage.values())
    shard_columns = set(SHARD_SCHEMA.names)
    provenances = {MEASURED: provenance(config, runs, fine)}  # one string per objective source
    rows = []
    for clip_id in survivors:
        row: dict = {}
        for stage_rows in by_stage.values():
            row.update({k: v for k, v in stage_rows[clip_id].items() if k in shard_columns})
        if tone_stats is not None and "speech" in by_stage:
            row["audio_tone_description"] = describe_tone(tone_cues(by_stage["speech"][clip_id]), tone_stats)
        description, source = (objectives or {}).get(clip_id, (None, MEASURED))
        if description:
            row["visual_objective_description"] = description
        row.update(annotate_coarse(row))
        row["split"] = assign_split(clip_id, config.split)
        if source not in provenances:
            provenances[source] = provenance(config, runs, fine, source)
        row["provenance"] = provenances[source]
        rows.append(row)
    return table_from_rows(rows, SHARD_SCHEMA)


def _survivors(clip_ids_per_stage: Iterable[Iterable[str]]) -> list[str]:
    """The clips that came through every stage, in clip-id order."""
    return sorted(set.intersection(*(set(ids) for ids in clip_ids_per_stage)))


def partition_survivors(store: PartitionStore, runs: list[PartitionRun]) -> list[str]:
    """The clip ids of a partition's rows (the clips every stage passed), read from the clip_id columns only."""
    return _survivors(store.read_outputs(r.stage, r.index, r.key, set()).column("clip_id").to_pylist() for r in runs)


def partition_quarantine(store: PartitionStore, runs: list[PartitionRun]) -> list[pa.Table]:
    return [store.read_quarantine(run.stage, run.index, run.key) for run in runs]
