"""The MERR pipeline: every step, in order. Read this file to know the whole pipeline.

1. Per-clip stages, run on partitions of clips (`merr_builder.stage.Stage`); a clip that fails one is
   quarantined and the rest go on:

   ingest → media → faces → speech

2. Corpus steps, run over the rows that came through every stage (`merr_builder.corpus.base.CorpusStep`),
   per partition or once over the build where they must see every row:

   tone → translate → objective → au_filter → coarse → fine → encoders → split

3. Publishing (`merr_builder.publish`): shards → quarantine → manifest → data card and gallery.

Every stage and step stores its output under `OUT/stages/<name>/`, keyed by its inputs' keys, the settings
of its config section it depends on, its models and its version: a rerun skips whatever is current, and
changing one setting reruns only the steps that depend on it. `merr annotate` and `merr encode` are runs of
this same list from the stored stage outputs with other `annotate.*` / `encode.*` settings.

`flows/build.py` maps this list onto Prefect tasks (threads or a Dask cluster, GPU steps on GPU workers);
`merr_builder/local.py` runs it in this process without Prefect (`merr infer`, tests).

Adding a step: write a class with the `CorpusStep` attributes in `merr_builder/corpus/`, put it in
`CORPUS_STEPS` after the steps whose columns it reads, give its settings a config section, and add its
columns to `schema.SHARD_SCHEMA`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from merr_builder.config import BuildConfig
from merr_builder.corpus.au_filter import AUFilterStep
from merr_builder.corpus.base import CorpusStep
from merr_builder.corpus.coarse import CoarseStep
from merr_builder.corpus.encoders import EncodersStep
from merr_builder.corpus.fine import FineStep
from merr_builder.corpus.objective import ObjectiveStep
from merr_builder.corpus.split import SplitStep
from merr_builder.corpus.tone import ToneStep
from merr_builder.corpus.translate import TranslateStep
from merr_builder.faces.stage import FacesStage
from merr_builder.ingest import IngestStage
from merr_builder.media import MediaStage
from merr_builder.quarantine import ErrorKind, QuarantineRecord
from merr_builder.records import Discovery, Partition, PartitionRun
from merr_builder.speech.stage import SpeechStage
from merr_builder.stage import Stage

# 1. Per-clip stages. Later stages read the stored outputs of the earlier ones.
STAGES: tuple[type[Stage], ...] = (
    IngestStage,  # find, probe, fingerprint; join sidecar transcripts and labels
    MediaStage,  # 16 kHz mono audio; K uniformly spaced frames as JPEG
    FacesStage,  # faces, AUs, main person, emotional peak frame, AU words and pseudo-label
    SpeechStage,  # transcript (sidecar or ASR, with doubt flags), eGeMAPS, speech rate and pauses
)

# 2. Corpus steps, in order: each reads only the stages and the steps before it.
CORPUS_STEPS: tuple[type[CorpusStep], ...] = (
    ToneStep,  # build-wide: tone words relative to the build's statistics
    TranslateStep,  # build-wide: transcript_en, the English the captions quote (original, Whisper's, or the LLM's)
    ObjectiveStep,  # what the peak frame shows (measured facts, or a VLM)
    AUFilterStep,  # the paper's AU filter: unlabelled clips whose peak matches no AU prototype leave
    CoarseStep,  # the paper's template caption; the label (given and checked, or AU pseudo-label)
    FineStep,  # build-wide, GPU: the LLM's reasoning with the label given, checked
    EncodersStep,  # GPU: pooled face, video and audio encoder features (when encode.* names encoders)
    SplitStep,  # train/val/test from a hash of the clip id
)

# 3. Publishing (merr_builder.publish.publish), always last.
PUBLISHING = ("shards", "quarantine", "manifest", "card")

UNITS: tuple[str, ...] = tuple(unit.name for unit in (*STAGES, *CORPUS_STEPS))


def unit_named(name: str) -> type[Stage] | type[CorpusStep]:
    return next(unit for unit in (*STAGES, *CORPUS_STEPS) if unit.name == name)


def wants_gpu(unit: type[Stage] | type[CorpusStep], config: BuildConfig) -> bool:
    """A stage or step that declares a GPU under this config, or any unit the user names in `run.gpu_stages`."""
    return unit.wants_gpu(config) or unit.name in config.run.gpu_stages


def step_inputs(step: type[CorpusStep], position: int | None, step_runs: dict[str, list]) -> dict[str, list]:
    """For `step` on the complete partition at `position` (None: the whole build), the runs of each earlier
    corpus step it reads, and of every earlier step that drops rows (their outputs say which rows are
    left), that hold those rows. Works the same on run records and on futures of them."""
    earlier = CORPUS_STEPS[: CORPUS_STEPS.index(step)]
    names = [*step.reads, *(s.name for s in earlier if s.drops and s.name not in step.reads)]
    inputs = {}
    for name in names:
        if name not in step_runs:
            continue  # a stage: its runs come with the partition
        runs = step_runs[name]
        inputs[name] = runs if position is None or unit_named(name).scope == "build" else [runs[position]]
    return inputs


def failed_partition(partition: Partition, stage: str, error: BaseException) -> list[QuarantineRecord]:
    message = f"stage {stage} failed for the whole partition {partition.index}: {type(error).__name__}: {error}"
    return [QuarantineRecord(s.clip_id, s.source_path, stage, ErrorKind.STAGE_FAILED, message) for s in partition.sources]


@dataclass
class BuildSource:
    """Where the build's clips came from, as the manifest records it."""

    input_path: str
    layout: str
    clips_found: int


@dataclass
class PipelineRuns:
    """Every run of a build: the stage runs of each complete partition, the corpus steps' runs."""

    partitions: list[list[PartitionRun]]
    steps: dict[str, list[PartitionRun]] = field(default_factory=dict)
    failed: list[QuarantineRecord] = field(default_factory=list)  # quarantined outside the stages


def clips_found(discovery: Discovery) -> int:
    return len(discovery.clips) + len({(r.clip_id, r.source_path) for r in discovery.rejected})
