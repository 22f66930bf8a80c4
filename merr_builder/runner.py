"""Running one stage on one partition: fingerprint, skip when done, else run, validate and store.

Plain Python with no Prefect, so the same call runs inside a Prefect task, a Dask worker or a test.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import pyarrow as pa

from merr_builder.config import BuildConfig
from merr_builder.ingest import ClipInfo, ClipSource
from merr_builder.stage import PartitionBatch, Stage
from merr_builder.schema import table_from_rows
from merr_builder.store import PartitionStore


@dataclass(frozen=True)
class Partition:
    index: int
    sources: tuple[ClipSource, ...]

    def source_key(self) -> str:
        """Identity of the partition's files (paths, sizes, mtimes): the ingest stage's cache input."""
        digest = hashlib.sha256()
        for source in self.sources:
            digest.update(source.cache_key().encode())
        return digest.hexdigest()


def make_partitions(sources: list[ClipSource], size: int) -> list[Partition]:
    """Fixed-size partitions in clip-id order, so adding clips at the end leaves earlier ones cached."""
    ordered = sorted(sources, key=lambda s: s.clip_id)
    return [Partition(i // size, tuple(ordered[i : i + size])) for i in range(0, len(ordered), size)]


@dataclass(frozen=True)
class PartitionRun:
    """What a stage task reports: enough for the next stage's cache key and for the build summary."""

    stage: str
    version: str
    index: int
    key: str  # the file key of this stage's stored output
    output_fingerprint: str  # what downstream stages chain their keys on
    n_in: int
    n_out: int
    n_quarantined: int
    seconds: float
    skipped: bool
    worker: str = ""  # host:pid of the process that ran (or skipped) it


def _sha(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def stage_key(stage: type[Stage], config: BuildConfig, upstream_fingerprint: str) -> str:
    section = getattr(config, stage.config_section)
    return _sha(stage.name, stage.version, section.fingerprint(), upstream_fingerprint)


def content_fingerprint(ingest_outputs: pa.Table, ingest_quarantine: pa.Table) -> str:
    """Ingest's output identity: the clips' content hashes, so later stages survive renames and touches."""
    rows = sorted(zip(ingest_outputs.column("clip_id").to_pylist(), ingest_outputs.column("fingerprint").to_pylist()))
    other = ingest_outputs.drop_columns(["source_path", "fingerprint"]).to_pylist()
    failed = sorted(ingest_quarantine.column("clip_id").to_pylist())
    return _sha(repr(rows), repr(sorted(other, key=lambda r: r["clip_id"])), repr(failed))


@lru_cache(maxsize=16)
def _stage_instance(stage: type[Stage], config: BuildConfig) -> Stage:
    """One instance (and so one model load) per worker process and config."""
    return stage.from_config(config)


def _batch_for(store: PartitionStore, partition: Partition, upstream: list[PartitionRun]) -> PartitionBatch:
    batch = PartitionBatch(index=partition.index, sources=list(partition.sources))
    if not upstream:
        return batch
    tables = {run.stage: store.read_outputs(run.stage, run.index, run.key) for run in upstream}
    surviving = set(tables[upstream[-1].stage].column("clip_id").to_pylist())
    for table in tables.values():
        surviving &= set(table.column("clip_id").to_pylist())
    batch.clips = [ClipInfo(**row) for row in tables["ingest"].to_pylist() if row["clip_id"] in surviving]
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
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
