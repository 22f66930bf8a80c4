"""Per-clip failures: a clip that fails at any stage becomes a quarantine row and the build goes on."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar


class ErrorKind(StrEnum):
    """Why a clip was quarantined; the message says it for a person, the kind lets you count."""

    NOT_FOUND = "not_found"
    EMPTY_FILE = "empty_file"
    UNREADABLE_CONTAINER = "unreadable_container"
    NO_VIDEO_STREAM = "no_video_stream"
    NO_AUDIO_STREAM = "no_audio_stream"
    TRUNCATED = "truncated"
    DECODE_ERROR = "decode_error"
    NO_FACE = "no_face"
    NO_AU_MATCH = "no_au_match"  # left out on purpose: the paper's AU filter (corpus/au_filter.py)
    LABEL_DISAGREEMENT = "label_disagreement"  # left out on purpose: AU pseudo-label and classifier disagree
    UNREADABLE_SIDECAR = "unreadable_sidecar"
    DUPLICATE_CLIP_ID = "duplicate_clip_id"
    INVALID_CLIP_ID = "invalid_clip_id"  # a manifest gave an id outside the grammar (names.py)
    UNKNOWN_LABEL = "unknown_label"
    STAGE_FAILED = "stage_failed"
    UNEXPECTED_ERROR = "unexpected_error"


class ClipError(Exception):
    """Raised by a stage for one clip; the runner turns it into a quarantine row."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class QuarantineRecord:
    clip_id: str
    source_path: str
    stage: str
    error_kind: str
    message: str


T = TypeVar("T")
S = TypeVar("S")


@dataclass
class StageResult(Generic[T]):
    """What a stage returns for a batch: outputs for clips that passed, quarantine rows for the rest."""

    outputs: list[T] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)


def map_clips(
    stage: str,
    items: Iterable[S],
    fn: Callable[[S], T],
    identify: Callable[[S], tuple[str, str]],
) -> StageResult[T]:
    """Apply `fn` to each item; a ClipError (or any other exception) quarantines that item alone.

    `identify` gives (clip_id, source_path) of an item for its quarantine row.
    """
    result: StageResult[T] = StageResult()
    for item in items:
        try:
            result.outputs.append(fn(item))
        except ClipError as exc:
            clip_id, path = identify(item)
            result.quarantined.append(QuarantineRecord(clip_id, path, stage, str(exc.kind), exc.message))
        except Exception as exc:  # a bug or an unforeseen input must not take the other clips down
            clip_id, path = identify(item)
            message = f"{type(exc).__name__}: {exc} (while processing {path})"
            result.quarantined.append(
                QuarantineRecord(clip_id, path, stage, str(ErrorKind.UNEXPECTED_ERROR), message)
            )
    return result
