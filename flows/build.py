"""The build flow: the MERR pipeline as one ordered list of stages, mapped over partitions of clips.

Each stage runs as one Prefect task per partition (never per clip); partition i's stage k starts as soon
as its stage k-1 is done. A task whose stored output is current returns at once (resume).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from merr_builder.config import BuildConfig, ConfigError, RunConfig
from merr_builder.ingest import IngestStage, check_input, discover
from merr_builder.lock import build_lock
from merr_builder.manifest import BuildSummary, finish_build
from merr_builder.faces.stage import FacesStage
from merr_builder.media import MediaStage
from merr_builder.speech.stage import SpeechStage
from merr_builder.quarantine import ErrorKind, QuarantineRecord
from merr_builder.runner import Partition, PartitionRun, make_partitions, run_stage
from merr_builder.stage import Stage

# The pipeline, in order. Later stages read the stored outputs of the earlier ones.
PIPELINE: tuple[type[Stage], ...] = (
    IngestStage,  # find, probe, fingerprint; join sidecar transcripts and labels
    MediaStage,  # 16 kHz mono audio; K uniformly spaced frames as JPEG
    FacesStage,  # faces, AUs, main person, emotional peak frame, AU words and pseudo-label
    SpeechStage,  # transcript (sidecar or ASR, with doubt flags), eGeMAPS, speech rate and pauses
)


@task(cache_policy=NO_CACHE, persist_result=False)
def stage_task(
    stage: type[Stage], partition: Partition, upstream: list[PartitionRun], config: BuildConfig, out_dir: str
) -> PartitionRun:
    return run_stage(stage, partition, upstream, config, out_dir)


def task_runner_for(run: RunConfig) -> TaskRunner:
    """Threads locally (stages spend their time in ffmpeg and native code); Dask when asked for."""
    if run.task_runner == "dask" or run.dask_address:
        from prefect_dask import DaskTaskRunner

        if run.dask_address:
            return DaskTaskRunner(address=run.dask_address)
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": run.max_workers or 2, "threads_per_worker": 1, "dashboard_address": None}
        )
    return ThreadPoolTaskRunner(max_workers=run.max_workers)


def _resources(stage: type[Stage], run: RunConfig):
    """On Dask, a stage named in `run.gpu_stages` is placed only on workers that have a GPU resource."""
    if stage.name in run.gpu_stages and (run.task_runner == "dask" or run.dask_address):
        import dask

        return dask.annotate(resources={"GPU": 1})
    return nullcontext()


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:  # type: ignore[no-untyped-def]
        return Text(f"{task.speed:.1f} clips/s" if task.speed else "", style="progress.data.speed")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
        TimeRemainingColumn(), console=console, transient=False,
    )  # fmt: skip


def _outcome(future: PrefectFuture) -> PartitionRun | Exception:
    """The task's PartitionRun, or the error it failed with after its retries."""
    try:
        return future.result()
    except Exception as error:
        return error


def _failed_partition(partition: Partition, stage: str, error: BaseException) -> list[QuarantineRecord]:
    message = f"stage {stage} failed for the whole partition {partition.index}: {type(error).__name__}: {error}"
    return [
        QuarantineRecord(s.clip_id, s.source_path, stage, ErrorKind.STAGE_FAILED, message)
        for s in partition.sources
    ]


@flow(name="merr-build", persist_result=False, validate_parameters=False)
def build_flow(input_path: str, out_dir: str, config: BuildConfig, console: Console | None = None) -> BuildSummary:
    console = console or Console(stderr=True)
    discovery = discover(Path(input_path), config.ingest)
    partitions = make_partitions(discovery.clips, config.run.partition_size)
    Path(out_dir).mkdir(parents=True, exist_ok=True)

    chains: list[list[PrefectFuture]] = [[] for _ in partitions]
    for stage in PIPELINE:
        with _resources(stage, config.run):
            futures = stage_task.with_options(name=stage.name, retries=config.run.retries).map(
                stage=unmapped(stage),
                partition=partitions,
                upstream=[list(chain) for chain in chains],
                config=unmapped(config),
                out_dir=unmapped(out_dir),
            )
        for chain, future in zip(chains, futures):
            chain.append(future)

    with _progress(console) as progress:
        bars = {s.name: progress.add_task(s.name, total=len(discovery.clips)) for s in PIPELINE}
        size_of = {id(f): len(p.sources) for p, chain in zip(partitions, chains) for f in chain}
        for future in as_completed([f for chain in chains for f in chain]):
            run = _outcome(future)
            if isinstance(run, PartitionRun):  # a partition's clips are done with this stage
                progress.advance(bars[run.stage], size_of[id(future)])

    complete: list[list[PartitionRun]] = []
    failed: list[QuarantineRecord] = list(discovery.rejected)
    for partition, chain in zip(partitions, chains):
        outcomes = [_outcome(f) for f in chain]
        errors = [(stage, o) for stage, o in zip(PIPELINE, outcomes) if not isinstance(o, PartitionRun)]
        if errors:
            stage, error = errors[0]  # later stages of the partition could not start
            failed += _failed_partition(partition, stage.name, error)
        else:
            complete.append(outcomes)

    n_found = len(discovery.clips) + len({(r.clip_id, r.source_path) for r in discovery.rejected})
    models = {name: info for stage in PIPELINE for name, info in stage.models(config).items()}
    return finish_build(Path(out_dir), Path(input_path), discovery.layout, config, complete, failed, n_found, models)


def run_build(input_path: str | Path, out_dir: str | Path, config: BuildConfig, console: Console | None = None):
    """Run the build flow with the task runner the config names (after the cheap input checks)."""
    check_input(Path(input_path), config.ingest)
    unknown = sorted(set(config.run.gpu_stages) - {stage.name for stage in PIPELINE})
    if unknown:
        raise ConfigError(f"config field 'run.gpu_stages': no stage named {', '.join(unknown)} (stages: {', '.join(s.name for s in PIPELINE)})")
    flow_ = build_flow.with_options(task_runner=task_runner_for(config.run))
    with build_lock(Path(out_dir), "build"):
        return flow_(str(Path(input_path).absolute()), str(Path(out_dir).absolute()), config, console)

