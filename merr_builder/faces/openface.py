"""OpenFace backend: read the FeatureExtraction CSVs a user already has, one per clip (`<clip_id>.csv`).

OpenFace is what MERR itself used. Its CSV header names carry leading spaces (`frame, timestamp, …`);
`AUxx_r` are intensities (0-5), `AUxx_c` presence; AU28 has presence only and is given the presence
threshold's intensity when present. Frames with `success` 0 have no face.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from merr_builder.facs import AU_NAMES, AU_PRESENCE_THRESHOLD
from merr_builder.faces.protocol import Face, FrameFaces
from merr_builder.records import ClipInfo
from merr_builder.media import Frame
from merr_builder.quarantine import ClipError, ErrorKind
from merr_builder.text import TextDecodeError, decode_text

# 68-point landmarks: eye contours (the subject's right eye is points 36-41, on the image left).
_RIGHT_EYE = range(36, 42)
_LEFT_EYE = range(42, 48)


def read_openface_csv(path: Path) -> list[FrameFaces]:
    """Frames of one OpenFace FeatureExtraction CSV; raises ClipError naming the file when unusable."""
    try:
        text = decode_text(path.read_bytes(), path).text
    except (OSError, TextDecodeError) as exc:
        raise ClipError(ErrorKind.DECODE_ERROR, f"{path}: cannot read the OpenFace CSV ({exc})") from exc
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise ClipError(ErrorKind.DECODE_ERROR, f"{path}: the OpenFace CSV is empty")
    header = [h.strip() for h in rows[0]]
    column = {name: i for i, name in enumerate(header)}
    needed = ["frame", "timestamp", "success", "confidence"] + [f"{au}_r" for au in AU_NAMES if au != "AU28"]
    missing = [n for n in needed if n not in column]
    if missing:
        raise ClipError(ErrorKind.DECODE_ERROR, f"{path}: not an OpenFace FeatureExtraction CSV (no {', '.join(missing)})")
    has_landmarks = "x_0" in column and "y_67" in column
    frames = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            value = {name: float(row[i]) for name, i in column.items() if i < len(row) and row[i].strip()}
        except ValueError as exc:
            raise ClipError(ErrorKind.DECODE_ERROR, f"{path}, line {line_no}: {exc}") from exc
        frame = FrameFaces(frame_index=int(value["frame"]) - 1, time_s=value["timestamp"])  # OpenFace counts from 1
        if value.get("success", 0.0) >= 1.0:
            frame.faces.append(_face(value, has_landmarks))
        frames.append(frame)
    return frames


def _face(value: dict[str, float], has_landmarks: bool) -> Face:
    aus = np.zeros(len(AU_NAMES), dtype=np.float32)
    for i, au in enumerate(AU_NAMES):
        if f"{au}_r" in value:
            aus[i] = value[f"{au}_r"]
        elif value.get(f"{au}_c", 0.0) >= 1.0:
            aus[i] = AU_PRESENCE_THRESHOLD
    box, eyes = (0.0, 0.0, 0.0, 0.0), None
    if has_landmarks:
        xs = np.array([value[f"x_{k}"] for k in range(68)])
        ys = np.array([value[f"y_{k}"] for k in range(68)])
        box = (float(xs.min()), float(ys.min()), float(np.ptp(xs)), float(np.ptp(ys)))
        eyes = (
            (float(xs[list(_LEFT_EYE)].mean()), float(ys[list(_LEFT_EYE)].mean())),
            (float(xs[list(_RIGHT_EYE)].mean()), float(ys[list(_RIGHT_EYE)].mean())),
        )
    pose = None
    if all(k in value for k in ("pose_Rx", "pose_Ry", "pose_Rz")):
        pose = (math.degrees(value["pose_Ry"]), math.degrees(value["pose_Rx"]), math.degrees(value["pose_Rz"]))
    return Face(box=box, confidence=value.get("confidence", 0.0), aus=aus, eyes=eyes, head_pose=pose)


class OpenFaceExtractor:
    name = "openface"
    needs_frames = False
    follows_faces = False
    person_normalised = True  # OpenFace's video AU models normalise each person themselves

    def __init__(self, csv_dir: Path) -> None:
        self.csv_dir = Path(csv_dir)

    def csv_for(self, clip: ClipInfo) -> Path:
        for stem in dict.fromkeys((clip.clip_id, Path(clip.path).stem)):
            path = self.csv_dir / f"{stem}.csv"
            if path.is_file():
                return path
        raise ClipError(ErrorKind.NOT_FOUND, f"{clip.source_path}: no OpenFace CSV {clip.clip_id}.csv in {self.csv_dir}")

    def analyse(self, clip: ClipInfo, frames: Iterable[Frame]) -> list[FrameFaces]:
        return read_openface_csv(self.csv_for(clip))
