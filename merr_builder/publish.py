"""Publishing, the pipeline's last step: shards, quarantine.parquet, manifest.json, data card and gallery.

A shard row is the join, per clip that came through every stage, of the stages' stored outputs and the
corpus steps' stored columns (in pipeline order, so a step's `label` replaces the given one). Nothing is
computed here but the provenance. Each file is published atomically; when every run's key and the shard
settings are those of the published build, the shards and quarantine are left as they are.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from merr_builder import __version__
from merr_builder.annotate.objective import MEASURED
from merr_builder.annotate.prompts import (
    COARSE_TEMPLATE_VERSION,
    FINE_PROMPT_VERSION,
    OBJECTIVE_PROMPT_VERSION,
    TRANSLATE_PROMPT_VERSION,
)
from merr_builder.atomic import atomic_path
from merr_builder.config import BuildConfig, config_as_json
from merr_builder.corpus.fine import ANSWER_CUT
from merr_builder.corpus.objective import SOURCE as OBJECTIVE_SOURCE
from merr_builder.layout import BuildLayout, NotABuildError
from merr_builder.pipeline import CORPUS_STEPS, STAGES, BuildSource, PipelineRuns, wants_gpu
from merr_builder.records import PartitionRun
from merr_builder.runner import read_unit_rows, step_settings, still_in, survivors
from merr_builder.schema import QUARANTINE_SCHEMA, SCHEMA_VERSION, SHARD_SCHEMA, table_from_rows
from merr_builder.shards import ShardInfo, ShardWriter
from merr_builder.store import PartitionStore

# Packages whose versions decide what a build produces; recorded in every manifest.
RECORDED_PACKAGES = (
    "merr_builder", "numpy", "pyarrow", "opencv-contrib-python", "prefect", "pydantic",
    "mediapipe", "ai-edge-litert", "av", "faster-whisper", "ctranslate2", "opensmile", "torch", "transformers", "peft",
)  # fmt: skip


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def ffmpeg_version() -> str | None:
    try:
        out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout
    except OSError:
        return None
    return out.split("\n", 1)[0] if out else None


@dataclass
class BuildSummary:
    out_dir: str
    clips_found: int
    rows: int
    quarantined: int
    quarantined_by_kind: dict[str, int]
    shards: list[ShardInfo]
    stage_seconds: dict[str, float] = field(default_factory=dict)  # every stage and step, in pipeline order
    stage_skipped: dict[str, int] = field(default_factory=dict)  # runs found current and skipped


def _step_runs_at(runs: PipelineRuns, position: int) -> dict[str, list[PartitionRun]]:
    """Each corpus step's runs that hold the rows of the complete partition at `position`."""
    return {step.name: runs.steps[step.name] if step.scope == "build" else [runs.steps[step.name][position]]
            for step in CORPUS_STEPS if step.name in runs.steps}  # fmt: skip


def fine_provenance(config: BuildConfig, models: dict) -> dict:
    info = {"backend": config.annotate.fine_backend, "prompt": FINE_PROMPT_VERSION}
    if "fine_llm" in models:
        info["model_sha256"] = models["fine_llm"]["sha256"][:16]
    return info


def _provenance(config: BuildConfig, stage_runs: list[PartitionRun], step_runs: dict, fine: dict, objective: str) -> str:
    stages = {run.stage: {"key": run.key[:16], "config": getattr(config, run.stage).fingerprint()[:16]} for run in stage_runs}
    steps = {name: {"key": runs[0].key[:16], "version": runs[0].version} for name, runs in step_runs.items()}
    annotations = {"coarse_template": COARSE_TEMPLATE_VERSION, "visual_objective_description": objective, "fine": fine}
    return json.dumps({"merr_builder": __version__, "schema": SCHEMA_VERSION, "stages": stages, "steps": steps,
                       "annotations": annotations}, sort_keys=True)  # fmt: skip


def partition_rows(store: PartitionStore, config: BuildConfig, stage_runs: list[PartitionRun], step_runs: dict[str, list[PartitionRun]],
                   fine: dict) -> pa.Table:  # fmt: skip
    """The shard rows of one complete partition, in clip-id order."""
    # Rows a step left out are in the quarantine, with its reason.
    ids = still_in(store, survivors(store, stage_runs), [step_runs[s.name] for s in CORPUS_STEPS if s.drops and s.name in step_runs])
    rows = {clip_id: {} for clip_id in ids}
    shard_columns = set(SHARD_SCHEMA.names)
    for run in stage_runs:
        found = read_unit_rows(store, [run], shard_columns)
        for clip_id, row in rows.items():
            row.update({k: v for k, v in found[clip_id].items() if k in shard_columns})
    sources = dict.fromkeys(ids, MEASURED)
    for step in CORPUS_STEPS:
        if step.name not in step_runs:
            continue
        private = [f.name for f in step.output_schema if f.name not in shard_columns]
        found = read_unit_rows(store, step_runs[step.name], [*step.writes, *private], ids)
        for clip_id, row in rows.items():
            row.update({c: found[clip_id][c] for c in step.writes})
            sources[clip_id] = found[clip_id].get(OBJECTIVE_SOURCE) or sources[clip_id]
    provenances: dict[str, str] = {}
    for clip_id, row in rows.items():
        source = sources[clip_id]
        if source not in provenances:
            provenances[source] = _provenance(config, stage_runs, step_runs, fine, source)
        row["provenance"] = provenances[source]
    return table_from_rows(list(rows.values()), SHARD_SCHEMA)


def publish_key(config: BuildConfig, runs: PipelineRuns) -> str:
    """What the published shards and quarantine depend on: every run's key, the failures, the shard settings."""
    keys = [r.key for chain in runs.partitions for r in chain] + [r.key for name in sorted(runs.steps) for r in runs.steps[name]]
    failed = sorted((q.clip_id, q.source_path, q.stage, q.error_kind, q.message) for q in runs.failed)
    blob = json.dumps([__version__, SCHEMA_VERSION, config.shards.fingerprint(), keys, failed], default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _still_published(layout: BuildLayout, key: str) -> dict | None:
    """The current manifest when it published exactly this (its shards all present), else None."""
    try:
        manifest = layout.read_manifest()
    except NotABuildError:
        return None
    if manifest.get("publish_key") != key or not layout.quarantine.is_file():
        return None
    if any(not (layout.root / s["path"]).is_file() or (layout.root / s["path"]).stat().st_size != s["bytes"] for s in manifest["shards"]):
        return None
    return manifest


def _write_shards(layout: BuildLayout, config: BuildConfig, runs: PipelineRuns, fine: dict) -> tuple[list[ShardInfo], pa.Table]:
    store = PartitionStore(layout.root)
    rejected = table_from_rows([asdict(r) for r in runs.failed], QUARANTINE_SCHEMA)
    with atomic_path(layout.rejected) as temp:
        pq.write_table(rejected, temp)
    writer = ShardWriter(layout.root, SHARD_SCHEMA, config.shards)
    quarantine_tables = [rejected]
    try:
        for position, stage_runs in enumerate(runs.partitions):
            writer.write(partition_rows(store, config, stage_runs, _step_runs_at(runs, position), fine))
            quarantine_tables += [store.read_quarantine(r.stage, r.index, r.key) for r in stage_runs]
        quarantine_tables += [store.read_quarantine(r.stage, r.index, r.key) for step in CORPUS_STEPS if step.drops
                              for r in runs.steps.get(step.name, [])]  # fmt: skip
        shards = writer.close()
    except BaseException:
        writer.abort()
        raise
    quarantine = pa.concat_tables(quarantine_tables).sort_by([("clip_id", "ascending"), ("source_path", "ascending")])
    with atomic_path(layout.quarantine) as temp:
        pq.write_table(quarantine, temp, compression="zstd")
    return shards, quarantine


def analysed_au_presence(layout: BuildLayout, runs: PipelineRuns) -> dict:
    """Over every analysed frame of the main faces (clips the AU filter left out included): how many, and
    per AU the share in which it is present. The card shows it; calibration is judged on it."""
    from merr_builder.card import au_presence  # (the card's one definition of "present")

    store = PartitionStore(layout.root)
    position = [s.name for s in STAGES].index("faces")
    series = read_unit_rows(store, [chain[position] for chain in runs.partitions], ["au_series"])
    frames, shares = au_presence(list(series.values()))
    return {"frames": frames, "present": dict(shares)}


def fine_answers(layout: BuildLayout, config: BuildConfig, runs: PipelineRuns) -> dict:
    """How the fine step's answers ended: generated, cut at the token limit, kept, kept after being cut back
    to their last full sentence. The card reports the share cut; the length limit is judged on it."""
    if "fine" not in runs.steps:
        return {}
    rows = read_unit_rows(PartitionStore(layout.root), runs.steps["fine"], ["fine_status", ANSWER_CUT]).values()
    generated = [r for r in rows if r[ANSWER_CUT] is not None]
    return {
        "max_new_tokens": config.annotate.max_new_tokens,
        "generated": len(generated),
        "cut_at_limit": sum(r[ANSWER_CUT] for r in generated),
        "kept": sum(r["fine_status"] == "kept" for r in generated),
        "kept_cut_back": sum(r[ANSWER_CUT] and r["fine_status"] == "kept" for r in generated),
    }


def unit_records(config: BuildConfig, runs: PipelineRuns) -> dict[str, dict]:
    """Per stage and step, in pipeline order: what it is, how often it ran or was skipped, where, how long."""
    by_unit: dict[str, list[PartitionRun]] = {s.name: [chain[i] for chain in runs.partitions] for i, s in enumerate(STAGES)}
    by_unit |= runs.steps
    records = {}
    for unit in (*STAGES, *CORPUS_STEPS):
        unit_runs = by_unit.get(unit.name, [])
        record = {"kind": "stage" if unit in STAGES else "step", "version": unit.version, "wants_gpu": wants_gpu(unit, config),
                  "runs": len(unit_runs), "partitions_skipped": sum(r.skipped for r in unit_runs),
                  "seconds": round(sum(r.seconds for r in unit_runs), 3), "workers": sorted({r.worker for r in unit_runs})}  # fmt: skip
        if unit in CORPUS_STEPS:
            record |= {"scope": unit.scope, "reads": {k: list(v) for k, v in unit.reads.items()}, "writes": list(unit.writes),
                       "settings": step_settings(unit, config)}  # fmt: skip
        records[unit.name] = record
    return records


def publish(out_dir: Path, source: BuildSource, config: BuildConfig, runs: PipelineRuns) -> BuildSummary:
    """Write (or keep, when current) the shards and quarantine; write the manifest, the card and the gallery."""
    from merr_builder.card import write_card

    layout = BuildLayout(out_dir)
    started = time.perf_counter()
    key = publish_key(config, runs)
    models = {name: info for unit in STAGES for name, info in unit.models(config).items()}
    step_models = {step.name: step.models(config) for step in CORPUS_STEPS}
    models |= {name: info for found in step_models.values() for name, info in found.items()}
    fine = fine_provenance(config, models)
    current = _still_published(layout, key)
    if current is not None:
        shards = [ShardInfo(**s) for s in current["shards"]]
        quarantine = pq.read_table(layout.quarantine)
    else:
        shards, quarantine = _write_shards(layout, config, runs, fine)
    by_kind = dict(Counter(quarantine.column("error_kind").to_pylist()))
    units = unit_records(config, runs)
    columns = {
        column: {"step": step.name, "version": step.version,
                 "models": {n: m for n, m in step_models[step.name].items() if not n.startswith("encoder_") or n.endswith(column)}}
        for step in CORPUS_STEPS for column in step.writes if step.name in runs.steps
    }  # fmt: skip
    encoders = {c: m for step in CORPUS_STEPS for n, m in step_models[step.name].items() if n.startswith("encoder_") for c in [n.removeprefix("encoder_")]}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "merr_builder_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": {"path": source.input_path, "layout": source.layout, "clips_found": source.clips_found},
        "rows": sum(s.rows for s in shards),
        "shards": [asdict(s) for s in shards],
        "quarantine": {"path": layout.quarantine.name, "rows": quarantine.num_rows, "by_kind": by_kind},
        "stages": units,  # every stage and corpus step, in pipeline order
        "config": config_as_json(config),
        "packages": package_versions(),
        "tools": {"ffmpeg": ffmpeg_version(), "python": platform.python_version()},
        "models": models,
        "columns": columns,  # which step (and model) wrote each column a corpus step fills
        **({"encoders": encoders} if encoders else {}),
        "annotation": {
            "coarse_template": COARSE_TEMPLATE_VERSION,
            "visual_objective": {
                "backend": config.annotate.objective_backend,
                **({"prompt": OBJECTIVE_PROMPT_VERSION} if "objective_vlm" in models else {}),
            },
            "fine": fine,
            "settings": config_as_json(config)["annotate"],
            "translation": {"backend": config.translate.backend,
                            **({"prompt": TRANSLATE_PROMPT_VERSION} if "translate_llm" in models else {})},
            "fine_answers": fine_answers(layout, config, runs),
        },
        "au_presence": analysed_au_presence(layout, runs),
        "publish_key": key,
        "published": "kept (nothing changed)" if current is not None else "written",
        # Everything a rerun from the stored stage outputs (`merr annotate`, `merr encode`) needs.
        "partitions": [[asdict(run) for run in chain] for chain in runs.partitions],
        "steps": {name: [asdict(run) for run in step_runs] for name, step_runs in runs.steps.items()},
    }
    layout.write_manifest(manifest)
    if current is None or not layout.card.is_file():
        write_card(layout.root)
    seconds = {name: record["seconds"] for name, record in units.items()} | {"publish": time.perf_counter() - started}
    return BuildSummary(
        out_dir=str(layout.root), clips_found=source.clips_found, rows=manifest["rows"], quarantined=quarantine.num_rows,
        quarantined_by_kind=by_kind, shards=shards, stage_seconds=seconds,
        stage_skipped={name: record["partitions_skipped"] for name, record in units.items()},
    )  # fmt: skip
