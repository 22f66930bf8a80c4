"""The build flow: `merr_builder.pipeline`'s list mapped onto Prefect tasks. Orchestration only.

Each stage runs as one task per partition (never per clip); partition i's stage k starts as soon as its
stage k-1 is done. Then each corpus step runs as one task per complete partition, or as one task for the
whole build, in pipeline order; a step that wants a GPU asks Dask for the resource `GPU` when the cluster
has a worker that declares one. A task whose stored output is current returns at once (resume).
Publishing (shards, quarantine, manifest, card) ends the flow.
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

from merr_builder.config import BuildConfig, RunConfig
from merr_builder.corpus.base import CorpusStep
from merr_builder.ingest import discover
from merr_builder.lock import build_lock
from merr_builder.pipeline import (
    CORPUS_STEPS,
    STAGES,
    BuildSource,
    PipelineRuns,
    clips_found,
    failed_partition,
    step_inputs,
    wants_gpu,
)
from merr_builder.preflight import check_models, check_units, preflight
from merr_builder.publish import BuildSummary, publish
from merr_builder.records import Partition, PartitionRun
from merr_builder.rerun import read_finished_build, rerun_config, stored_stages
from merr_builder.runner import make_partitions, run_stage, run_step
from merr_builder.stage import Stage


@task(cache_policy=NO_CACHE, persist_result=False)
def stage_task(stage: type[Stage], partition: Partition, upstream: list[PartitionRun], config: BuildConfig, out_dir: str) -> PartitionRun:
    return run_stage(stage, partition, upstream, config, out_dir)


@task(cache_policy=NO_CACHE, persist_result=False)
def step_task(step: type[CorpusStep], stage_runs: list[list[PartitionRun]], inputs: dict[str, list[PartitionRun]], config: BuildConfig,
              out_dir: str) -> PartitionRun:  # fmt: skip
    return run_step(step, stage_runs, inputs, config, out_dir)


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


def _cluster_has_gpu(run: RunConfig) -> bool:
    """Whether the Dask cluster has a worker with a GPU resource (a local cluster started for the run has none):
    a task that asks for one on a cluster without would wait forever."""
    if not run.dask_address:
        return False
    from distributed import Client

    with Client(run.dask_address, timeout=30) as client:
        return any(w.get("resources", {}).get("GPU") for w in client.scheduler_info()["workers"].values())


def _placement(unit, config: BuildConfig, gpu_workers: bool):  # type: ignore[no-untyped-def]
    """On a Dask cluster with GPU workers, a unit that wants a GPU is placed only on them."""
    if gpu_workers and wants_gpu(unit, config):
        import dask

        return dask.annotate(resources={"GPU": 1})
    return nullcontext()


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:  # type: ignore[no-untyped-def]
        return Text(f"{task.speed:.1f} clips/s" if task.speed else "", style="progress.data.speed")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
        TimeRemainingColumn(), console=console, transient=False,
    )  # fmt: skip


def _outcome(future: PrefectFuture) -> PartitionRun | Exception:
    """The task's PartitionRun, or the error it failed with after its retries."""
    try:
        return future.result()
    except Exception as error:
        return error


def _follow(futures: dict[str, list[PrefectFuture]], sizes: dict[int, int], total: int, console: Console) -> None:
    """One progress bar per unit, advanced by the clips of each finished task."""
    with _progress(console) as progress:
        bars = {name: progress.add_task(name, total=total) for name in futures}
        for future in as_completed([f for fs in futures.values() for f in fs]):
            run = _outcome(future)
            if isinstance(run, PartitionRun):
                progress.advance(bars[run.stage], sizes.get(id(future), total))


def _run_stages(input_path: str, out_dir: str, config: BuildConfig, gpu_workers: bool, console: Console) -> tuple[BuildSource, PipelineRuns]:
    discovery = discover(Path(input_path), config.ingest)
    partitions = make_partitions(discovery.clips, config.run.partition_size)
    chains: list[list[PrefectFuture]] = [[] for _ in partitions]
    futures: dict[str, list[PrefectFuture]] = {}
    for stage in STAGES:
        with _placement(stage, config, gpu_workers):
            futures[stage.name] = stage_task.with_options(name=stage.name, retries=config.run.retries).map(
                stage=unmapped(stage), partition=partitions, upstream=[list(chain) for chain in chains],
                config=unmapped(config), out_dir=unmapped(out_dir),
            )  # fmt: skip
        for chain, future in zip(chains, futures[stage.name]):
            chain.append(future)
    _follow(futures, {id(f): len(p.sources) for p, chain in zip(partitions, chains) for f in chain}, len(discovery.clips), console)

    runs = PipelineRuns([], failed=list(discovery.rejected))
    for partition, chain in zip(partitions, chains):
        outcomes = [_outcome(f) for f in chain]
        errors = [(stage, o) for stage, o in zip(STAGES, outcomes) if not isinstance(o, PartitionRun)]
        if errors:
            stage, error = errors[0]  # later stages of the partition could not start
            runs.failed += failed_partition(partition, stage.name, error)
        else:
            runs.partitions.append(outcomes)  # type: ignore[arg-type]
    return BuildSource(input_path, discovery.layout, clips_found(discovery)), runs


def _run_corpus_steps(runs: PipelineRuns, out_dir: str, config: BuildConfig, gpu_workers: bool, console: Console) -> None:
    if not runs.partitions:
        return
    futures: dict[str, list[PrefectFuture]] = {}
    for step in CORPUS_STEPS:
        options = step_task.with_options(name=step.name, retries=config.run.retries)
        with _placement(step, config, gpu_workers):
            if step.scope == "build":
                futures[step.name] = [options.submit(step, runs.partitions, step_inputs(step, None, futures), config, out_dir)]
            else:
                futures[step.name] = options.map(
                    step=unmapped(step), stage_runs=[[chain] for chain in runs.partitions],
                    inputs=[step_inputs(step, i, futures) for i in range(len(runs.partitions))], config=unmapped(config),
                    out_dir=unmapped(out_dir),
                )  # fmt: skip
    rows = [chain[-1].n_out for chain in runs.partitions]
    sizes = {id(f): n for fs in futures.values() if len(fs) == len(rows) for f, n in zip(fs, rows)}
    _follow(futures, sizes, sum(rows), console)
    runs.steps = {name: [f.result() for f in fs] for name, fs in futures.items()}  # a failed step fails the build


@flow(name="merr-build", persist_result=False, validate_parameters=False)
def build_flow(out_dir: str, config: BuildConfig, input_path: str | None = None, console: Console | None = None) -> BuildSummary:
    """With `input_path`: the whole pipeline. Without: from the build's stored stage outputs (a rerun)."""
    console = console or Console(stderr=True)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    gpu_workers = _cluster_has_gpu(config.run)
    if input_path is not None:
        source, runs = _run_stages(input_path, out_dir, config, gpu_workers, console)
    else:
        source, runs = stored_stages(Path(out_dir), read_finished_build(Path(out_dir)))
    _run_corpus_steps(runs, out_dir, config, gpu_workers, console)
    return publish(Path(out_dir), source, config, runs)


def run_build(input_path: str | Path, out_dir: str | Path, config: BuildConfig, console: Console | None = None) -> BuildSummary:
    """Run the whole pipeline with the task runner the config names (after the preflight: nothing is
    written, not even the output folder, when a check fails)."""
    preflight(Path(input_path), Path(out_dir), config)
    flow_ = build_flow.with_options(task_runner=task_runner_for(config.run))
    with build_lock(Path(out_dir), "build"):
        return flow_(str(Path(out_dir).absolute()), config, str(Path(input_path).absolute()), console)


def rerun_build(out_dir: str | Path, overrides: list[str], sections: tuple[str, ...], what: str, console: Console | None = None) -> BuildSummary:
    """Run the pipeline again from a finished build's stored stage outputs with other settings of `sections`
    (`merr annotate`: annotate; `merr encode`: encode), and of `run` (where it runs)."""
    out_dir = Path(out_dir).absolute()
    manifest = read_finished_build(out_dir)  # (before the lock: a folder that is no build gets no lock file)
    config = rerun_config(manifest, overrides, (*sections, "run"))
    check_units(config)
    check_models(config, servers=False)
    flow_ = build_flow.with_options(task_runner=task_runner_for(config.run))
    with build_lock(out_dir, what):
        return flow_(str(out_dir), config, None, console)
