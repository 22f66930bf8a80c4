"""Running one unit of the pipeline: a stage on a partition, or a corpus step on a partition or on the
whole build. Fingerprint its inputs, skip it when its output for them is stored, else run, validate, store.

Plain Python with no Prefect, so the same call runs inside a Prefect task, a Dask worker or a test.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import pyarrow as pa

from merr_builder.config import BuildConfig
from merr_builder.corpus.base import CorpusStep, StepContext
from merr_builder.ingest import IngestStage
from merr_builder.layout import BuildLayout
from merr_builder.quarantine import StageResult
from merr_builder.records import BUILD_WIDE, ClipInfo, ClipSource, Partition, PartitionRun
from merr_builder.schema import table_from_rows
from merr_builder.stage import PartitionBatch, Stage
from merr_builder.store import PartitionStore


def make_partitions(sources: list[ClipSource], size: int) -> list[Partition]:
    """Fixed-size partitions in clip-id order, so adding clips at the end leaves earlier ones cached."""
    ordered = sorted(sources, key=lambda s: s.clip_id)
    return [Partition(i // size, tuple(ordered[i : i + size])) for i in range(0, len(ordered), size)]


def _sha(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def stage_key(stage: type[Stage], config: BuildConfig, upstream_fingerprint: str) -> str:
    section = getattr(config, stage.config_section)
    # The models by content, not by path: a model folder whose files change (a user's speech.model_dir)
    # reruns the stage, and the same model found elsewhere on another worker does not.
    models = repr(sorted((name, model["sha256"]) for name, model in stage.models(config).items()))
    return _sha(stage.name, stage.version, section.fingerprint(), models, upstream_fingerprint)


def content_fingerprint(ingest_outputs: pa.Table, ingest_quarantine: pa.Table) -> str:
    """Ingest's output identity: the clips' content hashes, so later stages survive renames and touches."""
    rows = sorted(zip(ingest_outputs.column("clip_id").to_pylist(), ingest_outputs.column("fingerprint").to_pylist()))
    other = ingest_outputs.drop_columns(["source_path", "fingerprint"]).to_pylist()
    failed = sorted(ingest_quarantine.column("clip_id").to_pylist())
    return _sha(repr(rows), repr(sorted(other, key=lambda r: r["clip_id"])), repr(failed))


# Model loading is not thread-safe (transformers patches module construction process-wide while it loads
# onto the meta device: two loads at once leave parameters on meta), and units run in threads side by side
# (the fine step's LLM beside the encoders), so every unit is built under one lock.
_LOADING = threading.Lock()


@lru_cache(maxsize=16)
def _cached_instance(unit: type, config: BuildConfig):  # type: ignore[no-untyped-def]
    return unit.from_config(config)


def _stage_instance(stage: type[Stage], config: BuildConfig) -> Stage:
    """One instance (and so one model load) per worker process and config."""
    with _LOADING:
        return _cached_instance(stage, config)


def _batch_for(store: PartitionStore, partition: Partition, upstream: list[PartitionRun]) -> PartitionBatch:
    batch = PartitionBatch(index=partition.index, sources=list(partition.sources))
    if not upstream:
        return batch
    tables = {run.stage: store.read_outputs(run.stage, run.index, run.key) for run in upstream}
    surviving = set(tables[upstream[-1].stage].column("clip_id").to_pylist())
    for table in tables.values():
        surviving &= set(table.column("clip_id").to_pylist())
    batch.clips = [ClipInfo(**row) for row in tables[IngestStage.name].to_pylist() if row["clip_id"] in surviving]
    batch.upstream = tables
    return batch


def run_stage(
    stage: type[Stage],
    partition: Partition,
    upstream: list[PartitionRun],
    config: BuildConfig,
    out_dir: str | Path,
) -> PartitionRun:
    """Run `stage` on `partition` unless its output for the same inputs and config is already stored.

    `upstream` lists the runs of every earlier stage on this partition, in pipeline order.
    """
    store = PartitionStore(Path(out_dir))
    upstream_fp = upstream[-1].output_fingerprint if upstream else partition.source_key()
    key = stage_key(stage, config, upstream_fp)
    n_in = len(partition.sources) if not upstream else upstream[-1].n_out
    started = time.perf_counter()
    skipped = store.has(stage.name, partition.index, key)
    if skipped:
        outputs = store.read_outputs(stage.name, partition.index, key)
        quarantine = store.read_quarantine(stage.name, partition.index, key)
    else:
        result = _stage_instance(stage, config).run(_batch_for(store, partition, upstream))
        rows = [o if isinstance(o, dict) else asdict(o) for o in result.outputs]
        outputs = table_from_rows(rows, stage.output_schema)
        store.write(stage.name, partition.index, key, outputs, result.quarantined)
        quarantine = store.read_quarantine(stage.name, partition.index, key)
    output_fp = content_fingerprint(outputs, quarantine) if not upstream else key
    return PartitionRun(
        stage=stage.name,
        version=stage.version,
        index=partition.index,
        key=key,
        output_fingerprint=output_fp,
        n_in=n_in,
        n_out=outputs.num_rows,
        n_quarantined=quarantine.num_rows,
        seconds=time.perf_counter() - started,
        skipped=skipped,
        worker=_worker(),
    )


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- corpus steps -------------------------------------------------------------------------------


def survivors(store: PartitionStore, runs: list[PartitionRun]) -> list[str]:
    """The clip ids of a partition's rows (the clips every stage passed), in clip-id order."""
    ids = (store.read_outputs(r.stage, r.index, r.key, set()).column("clip_id").to_pylist() for r in runs)
    return sorted(set.intersection(*(set(i) for i in ids)))


def still_in(store: PartitionStore, ids: list[str], runs_by_unit: Iterable[list[PartitionRun]]) -> list[str]:
    """Of `ids`, those every one of these units' outputs holds (a step that drops rows left the others out)."""
    for runs in runs_by_unit:
        kept = read_unit_rows(store, runs, (), ids)
        ids = [clip_id for clip_id in ids if clip_id in kept]
    return ids


def step_settings(step: type[CorpusStep], config: BuildConfig) -> dict:
    """The settings of the step's config section that its output depends on."""
    if step.config_section is None:
        return {}
    section = json.loads(getattr(config, step.config_section).model_dump_json())
    return {name: section[name] for name in step.settings}


def step_key(step: type[CorpusStep], config: BuildConfig, input_keys: Iterable[str]) -> str:
    models = {name: info.get("sha256") or f"{info.get('name')}@{info.get('file')}" for name, info in step.models(config).items()}
    settings = json.dumps([step_settings(step, config), models], sort_keys=True, default=str)
    return _sha(step.name, step.version, settings, *input_keys)


def _step_instance(step: type[CorpusStep], config: BuildConfig) -> CorpusStep:
    """One instance (and so one model load) per worker process and config."""
    with _LOADING:
        return _cached_instance(step, config)


def read_unit_rows(store: PartitionStore, runs: Iterable[PartitionRun], columns: Iterable[str], clip_ids: list[str] | None = None) -> dict[str, dict]:
    """clip_id → the asked columns from the stored outputs of these runs of one unit (only `clip_ids`' rows
    from a build-wide run, when given)."""
    rows: dict[str, dict] = {}
    for run in runs:
        wanted = clip_ids if run.index == BUILD_WIDE else None
        table = store.read_outputs(run.stage, run.index, run.key, set(columns), wanted)
        rows.update((row["clip_id"], row) for row in table.to_pylist())
    return rows


def step_rows(
    store: PartitionStore, step: type[CorpusStep], stage_runs: list[list[PartitionRun]], inputs: dict[str, list[PartitionRun]]
) -> list[dict]:
    """The rows a step reads: the surviving clips of the given partitions, with the columns it declares."""
    rows: list[dict] = []
    for runs in stage_runs:
        ids = still_in(store, survivors(store, runs), inputs.values())  # not the rows an earlier step left out
        merged = {clip_id: {"clip_id": clip_id} for clip_id in ids}
        by_unit = {run.stage: [run] for run in runs} | inputs
        for unit, columns in step.reads.items():
            found = read_unit_rows(store, by_unit[unit], columns, ids)
            for clip_id, row in merged.items():
                row.update({c: found[clip_id].get(c) for c in columns})
        rows += merged.values()
    return rows


def run_step(
    step: type[CorpusStep],
    stage_runs: list[list[PartitionRun]],
    inputs: dict[str, list[PartitionRun]],
    config: BuildConfig,
    out_dir: str | Path,
) -> PartitionRun:
    """Run a corpus step unless its output for the same inputs, settings, models and version is stored.

    `stage_runs`: the stage runs of the one partition it runs on (scope partition) or of every complete
    partition (scope build). `inputs`: for each earlier corpus step it reads, the runs that hold its rows
    for those partitions (that partition's run, or the step's one build-wide run).
    """
    store = PartitionStore(Path(out_dir))
    index = stage_runs[0][0].index if step.scope == "partition" else BUILD_WIDE
    input_keys = [runs[-1].output_fingerprint for runs in stage_runs] + [r.key for name in sorted(inputs) for r in inputs[name]]
    key = step_key(step, config, input_keys)
    started = time.perf_counter()
    skipped = store.has(step.name, index, key)
    if skipped:
        outputs = store.read_outputs(step.name, index, key)
        n_in = outputs.num_rows + store.read_quarantine(step.name, index, key).num_rows
    else:
        rows = step_rows(store, step, stage_runs, inputs)
        result = _step_instance(step, config).run(rows, StepContext(BuildLayout(Path(out_dir))))
        if not isinstance(result, StageResult):
            result = StageResult(outputs=result)
        outputs = table_from_rows(result.outputs, step.output_schema)
        store.write(step.name, index, key, outputs, result.quarantined)
        n_in = len(rows)
    return PartitionRun(
        stage=step.name, version=step.version, index=index, key=key, output_fingerprint=key, n_in=n_in,
        n_out=outputs.num_rows, n_quarantined=n_in - outputs.num_rows, seconds=time.perf_counter() - started, skipped=skipped, worker=_worker(),
    )  # fmt: skip
