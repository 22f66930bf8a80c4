"""Running the pipeline again from a finished build's stored stage outputs (`merr annotate`, `merr encode`).

No clip is decoded again and no face or speech model runs: the per-clip stages' runs are taken from the
manifest, and the corpus steps and publishing run as in a build, each skipped where its stored output is
still current. Only the settings of the named sections may change; anything else needs a rebuild.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq

from merr_builder.config import BuildConfig, ConfigError, config_from_dict
from merr_builder.layout import BuildLayout, NotABuildError
from merr_builder.pipeline import STAGES, BuildSource, PipelineRuns
from merr_builder.quarantine import QuarantineRecord
from merr_builder.records import PartitionRun
from merr_builder.store import PartitionStore


class RerunError(ValueError):
    """The folder is not a finished build whose stage outputs are all still there."""


def _legacy_encoders(manifest: dict) -> list[str]:
    """Builds from before the encoders step recorded `merr encode`'s encoders beside the config: keep them."""
    if "encode" in manifest.get("config", {}):
        return []
    roles = {"feat_face": "image_encoder", "feat_video": "video_encoder", "feat_audio": "audio_encoder"}
    return [f"encode.{roles[column]}={Path(info['file']).parent}" for column, info in manifest.get("encoders", {}).items() if column in roles]


def rerun_config(manifest: dict, overrides: list[str], sections: tuple[str, ...]) -> BuildConfig:
    """The build's own config with overrides of `sections` only: anything else would need re-extraction."""
    other = [o for o in overrides if o.strip().split(".", 1)[0] not in sections]
    if other:
        allowed = " and ".join(f"{s}.*" for s in sections)
        raise ConfigError(f"this command changes {allowed} settings only; rebuild for {', '.join(other)}")
    return config_from_dict(manifest["config"], _legacy_encoders(manifest) + overrides)


def read_finished_build(out_dir: Path) -> dict:
    try:
        return BuildLayout(out_dir).read_manifest()
    except NotABuildError as exc:
        raise RerunError(str(exc)) from exc


def stored_stages(out_dir: Path, manifest: dict) -> tuple[BuildSource, PipelineRuns]:
    """Where the build came from and its stage runs (with its quarantine rows made outside the stages)."""
    layout = BuildLayout(out_dir)
    # The stages do not run again: their runs are reported as skipped, taking no time.
    partitions = [[replace(PartitionRun(**run), skipped=True, seconds=0.0) for run in chain] for chain in manifest.get("partitions", [])]
    names = [stage.name for stage in STAGES]
    if any([run.stage for run in chain] != names for chain in partitions):
        raise RerunError(f"{out_dir} was built with other stages than {', '.join(names)}; rebuild instead")
    store = PartitionStore(out_dir)
    missing = [str(store.outputs_path(r.stage, r.index, r.key)) for chain in partitions for r in chain if not store.has(r.stage, r.index, r.key)]
    if missing:
        raise RerunError(f"stage outputs are gone ({len(missing)} files, e.g. {missing[0]}); rebuild instead")
    failed = [QuarantineRecord(**row) for row in pq.read_table(layout.rejected).to_pylist()] if layout.rejected.is_file() else []
    source = BuildSource(manifest["input"]["path"], manifest["input"]["layout"], manifest["input"]["clips_found"])
    return source, PipelineRuns(partitions, failed=failed)
