"""The pipeline of `merr_builder.pipeline` run in this process, one unit after another, without Prefect:
for one clip (`merr infer`) and for tests. The caller holds the build lock if it needs one.
"""

from __future__ import annotations

from pathlib import Path

from merr_builder.config import BuildConfig
from merr_builder.ingest import discover
from merr_builder.pipeline import (
    CORPUS_STEPS,
    STAGES,
    BuildSource,
    PipelineRuns,
    clips_found,
    failed_partition,
    step_inputs,
)
from merr_builder.publish import BuildSummary, publish
from merr_builder.records import PartitionRun
from merr_builder.runner import make_partitions, run_stage, run_step


def run_locally(input_path: Path, out_dir: Path, config: BuildConfig) -> BuildSummary:
    """The whole pipeline."""
    discovery = discover(Path(input_path), config.ingest)
    runs = PipelineRuns([], failed=list(discovery.rejected))
    for partition in make_partitions(discovery.clips, config.run.partition_size):
        chain: list[PartitionRun] = []
        try:
            for stage in STAGES:
                chain.append(run_stage(stage, partition, chain, config, out_dir))
        except Exception as error:
            runs.failed += failed_partition(partition, STAGES[len(chain)].name, error)
            continue
        runs.partitions.append(chain)
    return finish_locally(Path(out_dir), BuildSource(str(Path(input_path).absolute()), discovery.layout, clips_found(discovery)), runs, config)


def finish_locally(out_dir: Path, source: BuildSource, runs: PipelineRuns, config: BuildConfig) -> BuildSummary:
    """The corpus steps and publishing in this process, after the stages (or from a build's stored stages)."""
    runs.steps = run_corpus_steps_locally(runs.partitions, config, out_dir)
    return publish(Path(out_dir), source, config, runs)


def run_corpus_steps_locally(partitions: list[list[PartitionRun]], config: BuildConfig, out_dir: Path) -> dict[str, list[PartitionRun]]:
    step_runs: dict[str, list[PartitionRun]] = {}
    if not partitions:
        return step_runs
    for step in CORPUS_STEPS:
        if step.scope == "build":
            step_runs[step.name] = [run_step(step, partitions, step_inputs(step, None, step_runs), config, out_dir)]
        else:
            step_runs[step.name] = [run_step(step, [p], step_inputs(step, i, step_runs), config, out_dir) for i, p in enumerate(partitions)]
    return step_runs
