"""The records that stages pass to each other: a clip as discovered, a clip as probed, a partition, and
the report of one run of a pipeline unit (a per-clip stage or a corpus step).

Plain dataclasses with no behaviour beyond their identity, below every stage and step, so no module
needs another stage's module to name them (no import cycle).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

from merr_builder.names import openable
from merr_builder.quarantine import QuarantineRecord


@dataclass(frozen=True)
class ClipSource:
    """A clip as discovered, before it is opened."""

    clip_id: str
    source_path: str
    sidecar_transcript: str | None = None
    sidecar_source: str | None = None
    sidecar_encoding: str | None = None
    label: str | None = None
    label_source: str | None = None

    def cache_key(self) -> str:
        """Cheap identity of the file for the ingest stage's cache: path, size and mtime."""
        try:
            st = os.stat(self.source_path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        return json.dumps([asdict(self), stamp], sort_keys=True)


@dataclass
class Discovery:
    clips: list[ClipSource]
    rejected: list[QuarantineRecord] = field(default_factory=list)
    layout: str = "folder"


@dataclass(frozen=True)
class ClipInfo:
    """A probed clip: the ingest stage's output row (schema.INGEST_SCHEMA)."""

    clip_id: str
    source_path: str  # as text (names.path_text); open `path`
    fingerprint: str
    size_bytes: int
    duration_s: float
    video_duration_s: float
    audio_duration_s: float | None
    fps: float
    width: int
    height: int
    rotation: int
    video_codec: str
    audio_codec: str | None
    has_audio: bool
    sidecar_transcript: str | None = None
    sidecar_source: str | None = None
    sidecar_encoding: str | None = None
    label: str | None = None
    label_source: str | None = None
    source_path_bytes: bytes | None = None  # the raw path, where its name is not valid UTF-8
    video_stream: int = 0  # the video stream read: ffmpeg's v:N (`-map 0:v:N`)
    video_streams: int = 1  # how many video streams the file has (cover art included)

    @property
    def path(self) -> str:
        """The clip's file, to open."""
        return openable(self.source_path, self.source_path_bytes)


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


BUILD_WIDE = -1  # the `index` of a corpus step's run over the whole build


@dataclass(frozen=True)
class PartitionRun:
    """What one run of a unit reports (a stage on a partition, a corpus step on a partition or on the whole
    build): enough for the next unit's cache key and for the build summary and manifest."""

    stage: str  # the unit's name (a stage or a corpus step)
    version: str
    index: int  # partition index, or BUILD_WIDE
    key: str  # the file key of this unit's stored output
    output_fingerprint: str  # what downstream units chain their keys on
    n_in: int
    n_out: int
    n_quarantined: int
    seconds: float
    skipped: bool
    worker: str = ""  # host:pid of the process that ran (or skipped) it
