"""The stage protocol: a small class over one partition of clips, with typed inputs and outputs.

A stage never sees Prefect, files or other partitions: `merr_builder.runner` hands it a PartitionBatch,
stores what it returns, and skips it when its stored output is current.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pyarrow as pa

from merr_builder.quarantine import StageResult

if TYPE_CHECKING:
    from merr_builder.config import BuildConfig
    from merr_builder.records import ClipInfo, ClipSource


@dataclass
class PartitionBatch:
    """What a stage gets: the partition's clips and the outputs of the stages before it."""

    index: int
    sources: list[ClipSource]  # as discovered (the ingest stage's input)
    clips: list[ClipInfo] = field(default_factory=list)  # probed clips still in the build
    upstream: dict[str, pa.Table] = field(default_factory=dict)  # earlier stages' outputs, by stage name


class Stage(Protocol):
    name: ClassVar[str]
    version: ClassVar[str]  # bump when the stage's output changes for the same input
    config_section: ClassVar[str]  # which BuildConfig section configures it
    output_schema: ClassVar[pa.Schema]

    @classmethod
    def from_config(cls, config: BuildConfig) -> Stage:
        """The stage configured from its section of the build config (and any other it reads)."""
        ...

    @classmethod
    def models(cls, config: BuildConfig) -> dict[str, dict[str, str]]:
        """Model files the stage uses under this config (name, file, sha256), for the manifest."""
        ...

    @classmethod
    def wants_gpu(cls, config: BuildConfig) -> bool:
        """Whether, on a cluster with GPU workers, the stage should run on one of them."""
        ...

    def run(self, batch: PartitionBatch) -> StageResult[Any]: ...


class StageDefaults:
    """What a stage (or corpus step) without models of its own or a use for a GPU need not write out:
    subclass it and override what differs."""

    @classmethod
    def models(cls, config: BuildConfig) -> dict[str, dict[str, str]]:
        return {}

    @classmethod
    def wants_gpu(cls, config: BuildConfig) -> bool:
        return False
