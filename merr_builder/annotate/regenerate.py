"""Regenerating the annotations of a finished build from its stored stage outputs.

No clip is decoded again and no face or speech model runs: the coarse captions and labels are rebuilt at
assembly from `OUT/stages/`, the fine captions through the (possibly new) LLM, whose answers already
asked are taken from the cache. New shards, quarantine and manifest replace the old ones atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from merr_builder.config import BuildConfig, ConfigError, config_from_dict
from merr_builder.manifest import MANIFEST, REJECTED, BuildSummary, finish_build
from merr_builder.quarantine import QuarantineRecord
from merr_builder.runner import PartitionRun
from merr_builder.store import PartitionStore


class RegenerationError(ValueError):
    """The folder is not a finished build whose stage outputs are all still there."""


def _read_manifest(out_dir: Path) -> dict:
    try:
        return json.loads((out_dir / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RegenerationError(f"{out_dir} is not a finished build ({MANIFEST}: {exc})") from exc


def annotation_config(manifest: dict, overrides: list[str]) -> BuildConfig:
    """The build's own config with `annotate.*` overrides only: anything else would need re-extraction."""
    other = [o for o in overrides if not o.strip().startswith("annotate.")]
    if other:
        raise ConfigError(f"merr annotate changes annotate.* settings only; rebuild for {', '.join(other)}")
    return config_from_dict(manifest["config"], overrides)


def regenerate(out_dir: Path, overrides: list[str]) -> BuildSummary:
    from merr_builder.lock import build_lock

    out_dir = Path(out_dir).absolute()
    _read_manifest(out_dir)  # (before the lock: a folder that is no build gets no lock file)
    with build_lock(out_dir, "merr annotate"):
        return _regenerate(out_dir, overrides)


def _regenerate(out_dir: Path, overrides: list[str]) -> BuildSummary:
    manifest = _read_manifest(out_dir)
    config = annotation_config(manifest, overrides)
    partition_runs = [[PartitionRun(**run) for run in runs] for runs in manifest.get("partitions", [])]
    store = PartitionStore(out_dir)
    missing = [
        str(store.outputs_path(r.stage, r.index, r.key))
        for runs in partition_runs
        for r in runs
        if not store.has(r.stage, r.index, r.key)
    ]
    if missing:
        raise RegenerationError(f"stage outputs are gone ({len(missing)} files, e.g. {missing[0]}); rebuild instead")
    rejected = [QuarantineRecord(**row) for row in pq.read_table(out_dir / REJECTED).to_pylist()]
    models = {name: info for name, info in manifest.get("models", {}).items() if name not in ("fine_llm", "objective_vlm")}
    return finish_build(
        out_dir,
        Path(manifest["input"]["path"]),
        manifest["input"]["layout"],
        config,
        partition_runs,
        rejected,
        manifest["input"]["clips_found"],
        models,
    )
