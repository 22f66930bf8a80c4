"""Finishing a build: shards, quarantine.parquet and manifest.json, each published atomically."""

from __future__ import annotations

import json
import platform
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from merr_builder import __version__
from merr_builder.annotate.fine import fine_annotations, make_llm
from merr_builder.annotate.objective import describe_peak_frames, make_vlm
from merr_builder.annotate.prompts import COARSE_TEMPLATE_VERSION, FINE_PROMPT_VERSION, OBJECTIVE_PROMPT_VERSION
from merr_builder.assemble import build_tone_stats, partition_quarantine, partition_rows, partition_survivors
from merr_builder.atomic import atomic_path, write_bytes_atomic
from merr_builder.config import BuildConfig, config_as_json
from merr_builder.quarantine import QuarantineRecord
from merr_builder.runner import PartitionRun
from merr_builder.schema import QUARANTINE_SCHEMA, SCHEMA_VERSION, SHARD_SCHEMA, table_from_rows
from merr_builder.shards import ShardInfo, ShardWriter
from merr_builder.store import PartitionStore

MANIFEST = "manifest.json"
QUARANTINE = "quarantine.parquet"
# Quarantine rows made outside the stages (discovery, failed partitions), kept for regeneration.
REJECTED = "stages/rejected.parquet"

# Packages whose versions decide what a build produces; recorded in every manifest.
RECORDED_PACKAGES = (
    "merr_builder", "numpy", "pyarrow", "opencv-contrib-python", "prefect", "pydantic",
    "mediapipe", "faster-whisper", "ctranslate2", "opensmile", "torch", "transformers", "peft",
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
    import subprocess

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
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_skipped: dict[str, int] = field(default_factory=dict)


def peak_frames(store: PartitionStore, partition_runs: list[list[PartitionRun]]) -> dict[str, bytes]:
    """clip_id → peak frame JPEG of every clip that becomes a row (the faces stage stored them)."""
    frames: dict[str, bytes] = {}
    for runs in partition_runs:
        rows = set(partition_survivors(store, runs))
        for run in runs:
            if run.stage == "faces":
                table = store.read_outputs(run.stage, run.index, run.key, {"peak_frame_jpeg"})
                frames.update((r["clip_id"], r["peak_frame_jpeg"]) for r in table.to_pylist() if r["clip_id"] in rows)
    return frames


def finish_build(
    out_dir: Path,
    input_path: Path,
    layout: str,
    config: BuildConfig,
    partition_runs: list[list[PartitionRun]],
    failed: list[QuarantineRecord],
    n_found: int,
    models: dict[str, dict[str, str]] | None = None,
) -> BuildSummary:
    """Write shards from every complete partition, the quarantine table and the manifest.

    `partition_runs[i]` is the list of stage runs of partition i (all stages, in order); `failed` holds
    quarantine rows made outside the stages (discovery rejections, partitions whose task failed).
    """
    store = PartitionStore(out_dir)
    writer = ShardWriter(out_dir, SHARD_SCHEMA, config.shards)
    rejected = table_from_rows([asdict(r) for r in failed], QUARANTINE_SCHEMA)
    with atomic_path(out_dir / REJECTED) as temp:
        pq.write_table(rejected, temp)
    quarantine_tables = [rejected]
    tone_stats = build_tone_stats(store, partition_runs)
    # The coarse captions hold the peak frames' descriptions; the fine captions need every coarse caption
    # first (selection quotas, duplicates across the build).
    vlm = make_vlm(config.annotate)
    objectives = None
    if vlm is not None:
        frames = peak_frames(store, partition_runs)
        objectives = describe_peak_frames(frames, vlm, config.annotate, out_dir / "cache" / "llm.sqlite")
        models = {**(models or {}), "objective_vlm": vlm.model_id()}
    light = []
    for runs in partition_runs:
        table = partition_rows(store, runs, config, tone_stats, light=True, objectives=objectives)
        light += table.select(["clip_id", "coarse_caption", "label", "label_source"]).to_pylist()
    llm = make_llm(config.annotate)
    fine = fine_annotations(light, llm, config.annotate, out_dir / "cache" / "llm.sqlite")
    fine_info = {"backend": config.annotate.fine_backend, "prompt": FINE_PROMPT_VERSION}
    if llm is not None:
        models = {**(models or {}), "fine_llm": llm.model_id()}
        fine_info["model_sha256"] = models["fine_llm"]["sha256"][:16]
    try:
        for runs in partition_runs:
            table = partition_rows(store, runs, config, tone_stats, fine_info, objectives=objectives)
            captions = [fine[c] for c in table.column("clip_id").to_pylist()]
            for name, values in (("fine_caption", [c for c, _ in captions]), ("fine_status", [s for _, s in captions])):
                table = table.set_column(table.schema.get_field_index(name), table.schema.field(name), pa.array(values, pa.string()))
            writer.write(table)
            quarantine_tables += partition_quarantine(store, runs)
        shards = writer.close()
    except BaseException:
        writer.abort()
        raise

    quarantine = pa.concat_tables(quarantine_tables).sort_by([("clip_id", "ascending"), ("source_path", "ascending")])
    with atomic_path(out_dir / QUARANTINE) as temp:
        pq.write_table(quarantine, temp, compression="zstd")
    by_kind = dict(Counter(quarantine.column("error_kind").to_pylist()))

    stage_seconds: Counter[str] = Counter()
    stage_skipped: Counter[str] = Counter()
    for runs in partition_runs:
        for run in runs:
            stage_seconds[run.stage] += run.seconds
            stage_skipped[run.stage] += int(run.skipped)

    manifest = {
        "schema_version": SCHEMA_VERSION,
        "merr_builder_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": {"path": str(input_path), "layout": layout, "clips_found": n_found},
        "rows": sum(s.rows for s in shards),
        "shards": [asdict(s) for s in shards],
        "quarantine": {"path": QUARANTINE, "rows": quarantine.num_rows, "by_kind": by_kind},
        "stages": {
            run.stage: {"version": run.version, "partitions_skipped": stage_skipped[run.stage]}
            for run in (partition_runs[0] if partition_runs else [])
        },
        "config": config_as_json(config),
        "packages": package_versions(),
        "tools": {"ffmpeg": ffmpeg_version(), "python": platform.python_version()},
        "models": models or {},
        "annotation": {
            "coarse_template": COARSE_TEMPLATE_VERSION,
            "visual_objective": {
                "backend": config.annotate.objective_backend,
                **({"prompt": OBJECTIVE_PROMPT_VERSION} if vlm is not None else {}),
            },
            "fine": fine_info,
            "settings": config_as_json(config)["annotate"],
        },
        # Everything regeneration (`merr annotate`) needs to find the stored stage outputs again.
        "partitions": [[asdict(run) for run in runs] for runs in partition_runs],
    }
    write_bytes_atomic(out_dir / MANIFEST, (json.dumps(manifest, indent=2, default=str) + "\n").encode())
    from merr_builder.card import write_card  # (it reads the manifest just written)

    write_card(out_dir)
    return BuildSummary(
        out_dir=str(out_dir),
        clips_found=n_found,
        rows=manifest["rows"],
        quarantined=quarantine.num_rows,
        quarantined_by_kind=by_kind,
        shards=shards,
        stage_seconds=dict(stage_seconds),
        stage_skipped=dict(stage_skipped),
    )

