"""The corpus-step protocol: a small unit over the build's rows, after the per-clip stages.

A step declares what it reads (columns of earlier stages and steps), what it writes (shard columns, plus
any private columns the publishing step uses), its version, the settings of its config section that its
output depends on, whether it runs per partition or once over the whole build, and whether it wants a GPU.
`merr_builder.runner.run_step` hands it the rows, stores what it returns keyed by its inputs, settings,
models and version, and skips it when that output is already stored. A step never sees Prefect or files
beyond the build layout it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

import pyarrow as pa

from merr_builder.layout import BuildLayout
from merr_builder.quarantine import StageResult
from merr_builder.schema import SHARD_SCHEMA
from merr_builder.stage import StageDefaults

if TYPE_CHECKING:
    from merr_builder.config import BuildConfig

Scope = Literal["partition", "build"]


@dataclass(frozen=True)
class StepContext:
    """What a step may use besides its rows: the build folder (for the LLM answer cache)."""

    layout: BuildLayout


class CorpusStep(Protocol):
    name: ClassVar[str]
    version: ClassVar[str]  # bump when the output changes for the same input
    scope: ClassVar[Scope]  # partition: one run per partition; build: one run over every row
    drops: ClassVar[bool]  # True: it may leave rows out (quarantined with a reason); later steps never see them
    config_section: ClassVar[str | None]  # which BuildConfig section configures it
    settings: ClassVar[tuple[str, ...]]  # the fields of that section its output depends on (its cache key)
    reads: ClassVar[dict[str, tuple[str, ...]]]  # earlier unit → the columns read from it
    writes: ClassVar[tuple[str, ...]]  # shard columns it fills
    output_schema: ClassVar[pa.Schema]  # clip_id, the written columns, any private columns

    @classmethod
    def from_config(cls, config: BuildConfig) -> CorpusStep: ...

    @classmethod
    def models(cls, config: BuildConfig) -> dict[str, dict[str, str]]:
        """Models behind the step's output under this config (name, file, sha256): manifest and cache key."""
        ...

    @classmethod
    def wants_gpu(cls, config: BuildConfig) -> bool:
        """Whether, on a cluster, the step should run on a worker that declares a GPU resource."""
        ...

    def run(self, rows: list[dict], context: StepContext) -> list[dict] | StageResult[dict]:
        """One output row (clip_id and the written columns) per input row, in the same order; a step that
        `drops` returns a StageResult whose quarantine rows say why the rows it left out were left out."""
        ...


class StepDefaults(StageDefaults):
    """What a step without settings, models or a GPU need not write out (subclass it, override the rest)."""

    config_section: ClassVar[str | None] = None
    settings: ClassVar[tuple[str, ...]] = ()
    drops: ClassVar[bool] = False

    @classmethod
    def from_config(cls, config: BuildConfig):  # type: ignore[no-untyped-def]
        return cls()


def output_schema(name: str, writes: tuple[str, ...], private: tuple[pa.Field, ...] = ()) -> pa.Schema:
    """A step's stored table: clip_id, its shard columns as the shard schema types them, its private columns."""
    fields = [SHARD_SCHEMA.field("clip_id"), *(SHARD_SCHEMA.field(c).with_nullable(True) for c in writes), *private]
    return pa.schema(fields, metadata={"merr_table": f"step.{name}"})
