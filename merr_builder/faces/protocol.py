"""The AU extractor protocol: what a face backend returns for the frames of a clip."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from merr_builder.records import ClipInfo
from merr_builder.media import Frame


@dataclass
class Face:
    """One face found in one frame."""

    box: tuple[float, float, float, float]  # x, y, width, height in frame pixels
    confidence: float
    aus: np.ndarray  # len(AU_NAMES) intensities on the 0-5 scale
    blendshapes: np.ndarray | None = None  # 52 raw MediaPipe scores, where the backend has them
    eyes: tuple[tuple[float, float], tuple[float, float]] | None = None  # (left, right) eye centres, pixels
    head_pose: tuple[float, float, float] | None = None  # yaw, pitch, roll in degrees; read it through pose()
    track_id: int = -1  # set by the tracker
    region: Any = None  # where a backend that follows faces looks for this one in the next frame (litert.Region)
    # A backend may leave the head pose to be fitted on first use (litert: of hundreds of faces a clip,
    # only the peak face's pose is written).
    fit_pose: Callable[[], tuple[float, float, float]] | None = field(default=None, repr=False)

    def pose(self) -> tuple[float, float, float] | None:
        """The head pose (yaw, pitch, roll in degrees), fitted now where the backend deferred it."""
        if self.head_pose is None and self.fit_pose is not None:
            self.head_pose, self.fit_pose = self.fit_pose(), None
        return self.head_pose


@dataclass
class FrameFaces:
    """The faces of one analysed frame. `frame_index` counts every decoded frame of the video."""

    frame_index: int
    time_s: float
    faces: list[Face] = field(default_factory=list)


class AUExtractor(Protocol):
    """A face backend. `needs_frames`: False when it reads results made elsewhere (OpenFace CSVs)."""

    name: ClassVar[str]
    needs_frames: ClassVar[bool]
    follows_faces: ClassVar[bool]  # True: a frame is read through the face's region in the frame before
    person_normalised: ClassVar[bool]  # True: intensities are already relative to the person's resting face

    def analyse(self, clip: ClipInfo, frames: Iterable[Frame]) -> list[FrameFaces]:
        """Faces with AU intensities for each frame given (or each frame the backend knows of)."""
        ...
