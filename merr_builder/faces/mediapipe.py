"""Default face backend: MediaPipe Tasks, offline.

FaceLandmarker's own detector is short-range (selfie distance) and misses the small or turned faces of
TV drama. So faces are found with the full-range BlazeFace detector on the whole frame, each is cropped
square with a margin and resized, and the landmarker (with blendshapes) runs on the crop; a crop it
rejects is tried once more with local contrast enhancement (dark scenes). The crops of different faces
and frames are unrelated images, so the landmarker runs in IMAGE mode; tracking across frames is ours
(`tracking.py`).
"""

from __future__ import annotations

import atexit
import math
import threading
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from merr_builder.assets import FACE_DETECTOR_FULL_RANGE, FACE_LANDMARKER, AssetError, locate
from merr_builder.facs import AU_INTENSITY_MAX, AU_NAMES, AU_SCALE, BLENDSHAPE_NAMES, BLENDSHAPE_REST, BLENDSHAPE_TO_AU
from merr_builder.faces.protocol import Face, FrameFaces
from merr_builder.faces.tracking import NEAR_SHIFT, centre_distance, iou
from merr_builder.records import ClipInfo
from merr_builder.media import Frame
from merr_builder.quarantine import ClipError, ErrorKind

# Two landmarked faces overlapping this much are one face detected twice.
DUPLICATE_IOU = 0.5
# MediaPipe face-mesh landmark indices of the eye corners (the subject's right eye is on the image left).
_RIGHT_EYE = (33, 133)
_LEFT_EYE = (362, 263)


def blendshapes_to_aus(scores: dict[str, float]) -> np.ndarray:
    """FACS AU intensities (0-5) from MediaPipe blendshape scores: the population's resting face removed
    (BLENDSHAPE_REST), combined by BLENDSHAPE_TO_AU, and scaled by AU_SCALE (facs.py says how each was set).
    The person's own resting face is removed later, over the clip's frames of that face (faces/stage.py)."""
    moved = {name: max(0.0, value - BLENDSHAPE_REST.get(name, 0.0)) for name, value in scores.items()}
    smile = max(moved.get("mouthSmileLeft", 0.0), moved.get("mouthSmileRight", 0.0))
    weight = {"": 1.0, "smile": min(1.0, smile / AU_SCALE["AU12"][0]), "nosmile": max(0.0, 1.0 - smile / AU_SCALE["AU12"][0])}
    aus = np.zeros(len(AU_NAMES), dtype=np.float32)
    for i, au in enumerate(AU_NAMES):
        positive, negative = [], 0.0
        for term in BLENDSHAPE_TO_AU[au][0]:
            name, _, gate = term.lstrip("-").partition("*")
            value = moved.get(name, 0.0) * weight[gate]
            if term.startswith("-"):
                negative += value
            else:
                positive.append(value)
        aus[i] = min(AU_INTENSITY_MAX, max(0.0, (max(positive) - negative) / AU_SCALE[au][0] * AU_INTENSITY_MAX))
    return aus


def head_pose_degrees(matrix: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll from the landmarker's 4x4 facial transformation matrix."""
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, -r[2, 0]))))
    pitch = math.degrees(math.atan2(r[2, 1], r[2, 2]))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    return yaw, pitch, roll


def square_crop(rgb: np.ndarray, box: tuple[float, float, float, float], margin: float, size: int):
    """A square crop centred on `box`, `margin` box-sides wider on each side, zero-padded at the frame
    edge and resized to `size`; returns the crop and its (x0, y0, side) in frame pixels."""
    x, y, w, h = box
    half = max(w, h) * (0.5 + margin)
    cx, cy = x + w / 2, y + h / 2
    x0, y0, side = int(round(cx - half)), int(round(cy - half)), max(2, int(round(2 * half)))
    height, width = rgb.shape[:2]
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(width, x0 + side), min(height, y0 + side)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(canvas, (size, size), interpolation=interpolation), (x0, y0, side)


def _check_frame(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ClipError(ErrorKind.DECODE_ERROR, f"unreadable frame: expected HxWx3 uint8, got {rgb.shape} {rgb.dtype}")


class MediaPipeExtractor:
    name = "mediapipe"
    needs_frames = True
    person_normalised = False  # per frame; the stage removes the person's resting face

    def __init__(
        self,
        landmarker_path: Path | None = None,
        detector_path: Path | None = None,
        max_faces: int = 8,
        min_detection_confidence: float = 0.5,
        crop_margin: float = 0.8,
        crop_size: int = 192,
    ) -> None:
        self.landmarker_file = locate(FACE_LANDMARKER, landmarker_path)
        self.detector_file = locate(FACE_DETECTOR_FULL_RANGE, detector_path)
        self.max_faces = max_faces
        self.crop_margin = crop_margin
        self.crop_size = crop_size
        self._clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))

        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        self._detector = vision.FaceDetector.create_from_options(
            vision.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_path=str(self.detector_file)),
                min_detection_confidence=min_detection_confidence,
            )
        )
        self._landmarker = vision.FaceLandmarker.create_from_options(
            vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(self.landmarker_file)),
                output_face_blendshapes=True,
                output_facial_transformation_matrixes=True,
                num_faces=1,
                min_face_detection_confidence=0.2,
                min_face_presence_confidence=0.2,
            )
        )
        # Close before interpreter shutdown stops MediaPipe's dispatcher threads (threading's exit hooks run
        # before atexit's); left to __del__, closing prints spurious errors at exit.
        getattr(threading, "_register_atexit", atexit.register)(self.close)

    def close(self) -> None:
        for attr in ("_detector", "_landmarker"):
            task = getattr(self, attr, None)
            if task is not None:
                task.close()
                setattr(self, attr, None)

    def _image(self, rgb: np.ndarray):
        return self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))

    def _enhanced(self, rgb: np.ndarray) -> np.ndarray:
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
        lab[..., 0] = self._clahe.apply(lab[..., 0])
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)

    def _landmark(self, crop: np.ndarray):
        result = self._landmarker.detect(self._image(crop))
        if not result.face_landmarks:
            result = self._landmarker.detect(self._image(self._enhanced(crop)))
        return result if result.face_landmarks else None

    def _detections(self, rgb: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        """(box, confidence) of every face the full-range detector finds in one RGB frame, best first."""
        _check_frame(rgb)
        found = [((b.origin_x, b.origin_y, b.width, b.height), d.categories[0].score)
                 for d in self._detector.detect(self._image(rgb)).detections for b in [d.bounding_box]]  # fmt: skip
        return sorted(found, key=lambda found: -found[1])

    def faces_in(self, rgb: np.ndarray) -> list[Face]:
        """Every face of one RGB frame that the landmarker confirms, with AUs and blendshapes."""
        faces: list[Face] = []
        for box, score in self._detections(rgb):
            if len(faces) == self.max_faces:
                break
            face = self._face_in_crop(rgb, box, score)
            if face is None or any(iou(face.box, kept.box) > DUPLICATE_IOU for kept in faces):
                continue  # not a face, or a second detection of one already landmarked (best come first)
            faces.append(face)
        return faces

    def face_near(self, rgb: np.ndarray, reference: Face, max_shift: float = NEAR_SHIFT) -> Face | None:
        """The face nearest to `reference` (centre within `max_shift` of its box sides), landmarking only
        the detections in order of distance until one is confirmed: the refinement of the main face's peak
        needs no other face."""
        by_distance = sorted((centre_distance(box, reference.box), box, score) for box, score in self._detections(rgb))
        for distance, box, score in by_distance:
            if distance >= max_shift:
                break
            face = self._face_in_crop(rgb, box, score)
            if face is not None and centre_distance(face.box, reference.box) < max_shift:
                return face
        return None

    def _face_in_crop(self, rgb: np.ndarray, box: tuple[float, float, float, float], confidence: float) -> Face | None:
        crop, (x0, y0, side) = square_crop(rgb, box, self.crop_margin, self.crop_size)
        result = self._landmark(crop)
        if result is None:
            return None
        points = np.array([(p.x, p.y) for p in result.face_landmarks[0]], dtype=np.float64) * side + (x0, y0)
        scores = {c.category_name: c.score for c in result.face_blendshapes[0]}
        if set(scores) != set(BLENDSHAPE_NAMES):  # a different model would silently give zeros
            raise AssetError(f"{self.landmarker_file}: blendshapes {sorted(set(scores) ^ set(BLENDSHAPE_NAMES))} "
                             "differ from the 52 this project maps; use the pinned face_landmarker.task")
        lo, hi = points.min(axis=0), points.max(axis=0)
        return Face(
            box=(float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])),
            confidence=float(confidence),
            aus=blendshapes_to_aus(scores),
            blendshapes=np.array([scores[n] for n in BLENDSHAPE_NAMES], dtype=np.float32),
            eyes=(
                tuple(points[list(_LEFT_EYE)].mean(axis=0)),  # type: ignore[arg-type]
                tuple(points[list(_RIGHT_EYE)].mean(axis=0)),
            ),
            head_pose=head_pose_degrees(result.facial_transformation_matrixes[0])
            if result.facial_transformation_matrixes
            else None,
        )

    def analyse(self, clip: ClipInfo | None, frames: Iterable[Frame]) -> list[FrameFaces]:
        return [FrameFaces(f.index, f.time_s, self.faces_in(f.rgb)) for f in frames]
