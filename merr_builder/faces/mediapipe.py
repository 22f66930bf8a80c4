"""The MediaPipe Tasks face backend (`faces.backend: mediapipe`): the reference the default `litert`
backend is checked against, and the baseline of `benchmarks/faces.py`.

FaceLandmarker's own detector is short-range (selfie distance) and misses the small or turned faces of
TV drama. So faces are found with the full-range BlazeFace detector on the whole frame, each is cropped
square with a margin and resized, and the landmarker (with blendshapes) runs on the crop; a crop it
rejects is tried once more with local contrast enhancement (dark scenes). The crops of different faces
and frames are unrelated images, so the landmarker runs in IMAGE mode; tracking across frames is ours
(`tracking.py`).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from merr_builder.faces.face_mesh import (
    DUPLICATE_IOU, MIN_FACE_PRESENCE, check_frame, enhanced, face_from_mesh, face_model_files, head_pose_degrees,
)  # fmt: skip
from merr_builder.faces.protocol import Face, FrameFaces
from merr_builder.faces.tracking import NEAR_SHIFT, centre_distance, iou
from merr_builder.records import ClipInfo
from merr_builder.media import Frame


def padded_square_crop(rgb: np.ndarray, box: tuple[float, float, float, float], margin: float, size: int):
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


class MediaPipeExtractor:
    name = "mediapipe"
    needs_frames = True
    follows_faces = False  # every frame is read on its own
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
        self.landmarker_file, self.detector_file = face_model_files(landmarker_path, detector_path)
        self.max_faces = max_faces
        self.crop_margin = crop_margin
        self.crop_size = crop_size

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
                min_face_detection_confidence=MIN_FACE_PRESENCE,
                min_face_presence_confidence=MIN_FACE_PRESENCE,
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

    def _landmark(self, crop: np.ndarray):
        result = self._landmarker.detect(self._image(crop))
        if not result.face_landmarks:
            result = self._landmarker.detect(self._image(enhanced(crop)))
        return result if result.face_landmarks else None

    def _detections(self, rgb: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        """(box, confidence) of every face the full-range detector finds in one RGB frame, best first."""
        check_frame(rgb)
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
        crop, (x0, y0, side) = padded_square_crop(rgb, box, self.crop_margin, self.crop_size)
        result = self._landmark(crop)
        if result is None:
            return None
        points = np.array([(p.x, p.y) for p in result.face_landmarks[0]], dtype=np.float64) * side + (x0, y0)
        scores = {c.category_name: c.score for c in result.face_blendshapes[0]}
        matrices = result.facial_transformation_matrixes
        return face_from_mesh(points, scores, confidence, head_pose_degrees(matrices[0]) if matrices else None, self.landmarker_file)

    def analyse(self, clip: ClipInfo | None, frames: Iterable[Frame]) -> list[FrameFaces]:
        return [FrameFaces(f.index, f.time_s, self.faces_in(f.rgb)) for f in frames]
