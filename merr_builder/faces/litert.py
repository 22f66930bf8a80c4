"""Default face backend: MediaPipe's face models called directly through LiteRT (one thread, XNNPACK).

The same networks as the Tasks backend (`mediapipe.py`): the full-range BlazeFace detector, and the
short-range detector, landmark and blendshape models of the pinned face_landmarker.task. A face is read
as the Tasks landmarker reads the crop it is given: the short-range detector finds the face in a square
around where it is expected (`crop_margin` face sides wider on each side, as the Tasks backend crops),
and the landmark model reads it in the region that detection gives. What the Tasks path adds and this
leaves out: the full-range detector on every frame, the intermediate crop (the Tasks backend resizes its
crop to 192 px; here both inputs are cut from the frame in one warp each, at the frame's resolution) and
the graph's threads. As MediaPipe's own video mode does, a face is followed from one analysed frame to
the next: the square is placed where its landmarks were, so the full-range detector runs only every
`detect_every_s`, where a face is lost and where no face is followed; refinement frames (faces/stage.py)
follow the face the same way.

Following MediaPipe's graphs (google-ai-edge/mediapipe, tasks/cc/vision/face_detector and
face_landmarker): the detectors' inputs (letterboxed, -1..1, one bilinear warp whose corners are the
square's corners, black beyond the image), SSD anchors of fixed size, box and keypoint decoding and
weighted non-maximum suppression; the landmark region (a detection's box 1.5 times wider and taller,
turned so the eyes are level by keypoints 0 and 1); the landmark input (0..1, edges replicated); the
presence score (sigmoid of the second output); the blendshape input (146 landmarks' x, y; the model is
blind to scale and position). Measured rather than reproduced: the square a followed face is looked for
in, and the region it is read in where the short-range detector does not find it (a dim or turned face),
are placed from the face's landmarks in the frame before (LANDMARK_REGION_*); the head pose is a
similarity fit of the canonical face in the same bundle (face_mesh.fitted_head_pose).
tests/faces/test_litert.py holds the AUs (on Tasks' own crops and on the frame), head pose and face-found
share against the Tasks backend on the shared clips.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from merr_builder.facs import BLENDSHAPE_NAMES
from merr_builder.faces.face_mesh import (
    DUPLICATE_IOU, MIN_FACE_PRESENCE, check_frame, enhanced, face_from_mesh, face_model_files, fitted_head_pose, pose_points, task_member,
)  # fmt: skip
from merr_builder.faces.protocol import Face, FrameFaces
from merr_builder.faces.tracking import NEAR_SHIFT, centre_distance, iou, ious
from merr_builder.media import Frame
from merr_builder.records import ClipInfo

# The 146 of the 478 landmarks the blendshape model reads, in its input order (face_blendshapes_graph.cc).
BLENDSHAPE_LANDMARKS = np.array([
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70,
    78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149,
    150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195,
    197, 234, 246, 249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300,
    308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375,
    377, 378, 379, 380, 381, 382, 384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454,
    466, 468, 469, 470, 471, 472, 473, 474, 475, 476, 477,
])  # fmt: skip
# The landmark region is this many times the face's longer side (face detector and landmarks graphs).
REGION_SCALE = 1.5
# The short-range detector's region, from a face's landmarks: this far below the landmarks' box centre and
# this much smaller (in sides of the landmarks' box; medians over 219 faces of the shared clips, sd 0.03
# and 0.04). It places the square the next frame's face is looked for in, and the region a followed face is
# read in where that detector finds none.
LANDMARK_REGION_DROP = 0.045
LANDMARK_REGION_SIDE = 0.915
# A followed face keeps its region's size while the size its landmarks give at a detection stays within
# this share of it: the size of the square it is looked for in, and of the region it is read in where the
# short-range detector does not find it. Two runs over the same frames then look for a face through
# squares of one size (without it, a clip's chosen peak fell from 1.00 to 0.975 of the every-frame search's;
# README, Faces). A face that really grows or shrinks (a zoom, a step towards the camera) passes it at the
# next detection.
REGION_SIZE_HOLD = 0.05
# Full-range BlazeFace (face_detection_full_range.pbtxt): 192 px input, one anchor per cell of a 48x48 grid,
# 6 keypoints, weighted non-maximum suppression at IoU 0.3.
DETECTOR_SIDE = 192
DETECTOR_GRIDS = ((48, 1),)  # (cells a side, anchors a cell)
NMS_IOU = 0.3
# Short-range BlazeFace (the bundle's face_detector.tflite, which the Tasks landmarker runs on each crop it
# is given): 128 px input, anchors on a 16x16 grid (2 a cell) and an 8x8 grid (6 a cell); its region is
# the box 1.5 times wider and taller (not squared), turned by the eye keypoints (face_detector_graph.cc).
CROP_DETECTOR_SIDE = 128
CROP_DETECTOR_GRIDS = ((16, 2), (8, 6))
LANDMARK_SIDE = 256


@dataclass(frozen=True)
class Region:
    """Where the landmark model looks: a square of `side` pixels centred at (cx, cy), turned by `angle`
    radians (clockwise in the image) so the eyes lie level in the model's input."""

    cx: float
    cy: float
    side: float
    angle: float
    height: float | None = None  # a detector's region is its box widened, not squared: None is `side`

    @classmethod
    def around(cls, box: tuple[float, float, float, float], eye_from: np.ndarray, eye_to: np.ndarray) -> "Region":
        """The region of a detector's face box (x, y, w, h) whose eye line runs from `eye_from` (image
        left) to `eye_to`: the box REGION_SCALE times wider and taller, turned by that line (MediaPipe's
        RectTransformation after a detection, which does not square it)."""
        x, y, w, h = box
        dx, dy = eye_to[0] - eye_from[0], eye_to[1] - eye_from[1]
        return cls(x + w / 2, y + h / 2, REGION_SCALE * max(w, 1.0), float(np.arctan2(dy, dx)), REGION_SCALE * max(h, 1.0))

    @classmethod
    def of_landmarks(cls, points: np.ndarray, side: float | None = None) -> "Region":
        """The region of a face from its 478 landmarks: the one the Tasks backend's detector would give
        (LANDMARK_REGION_*), eyes level by landmarks 33 and 263. `side`: keep this size (a followed face:
        the landmarks' box of a turned head swings from frame to frame, and fed back as the next region's
        size it makes the readings swing with it)."""
        lo, hi = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
        extent = float(max(hi - lo))
        (x0, y0), (x1, y1) = points[33, :2], points[263, :2]
        return cls(float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2 + LANDMARK_REGION_DROP * extent,
                   side or REGION_SCALE * LANDMARK_REGION_SIDE * max(extent, 1.0), float(np.arctan2(y1 - y0, x1 - x0)))  # fmt: skip

    def sized_to(self, box: tuple[float, float, float, float]) -> "Region":
        """This region with the size a face of landmark box `box` gets (where it is detected again), or
        unchanged while that size is within REGION_SIZE_HOLD of its own."""
        side = REGION_SCALE * LANDMARK_REGION_SIDE * max(box[2], box[3], 1.0)
        if abs(np.log(side / self.side)) <= np.log1p(REGION_SIZE_HOLD):
            return self
        return Region(self.cx, self.cy, side, self.angle)

    def to_frame(self, size: int) -> np.ndarray:
        """The 2x3 affine map from the model's input pixels (size x size) to frame pixels."""
        kx, ky = self.side / size, (self.height or self.side) / size
        c, s = np.cos(self.angle), np.sin(self.angle)
        half = size / 2
        return np.array([[c * kx, -s * ky, self.cx - (c * kx - s * ky) * half], [s * kx, c * ky, self.cy - (s * kx + c * ky) * half]])

    def search_square(self, margin: float) -> tuple[float, float, float]:
        """Centre and side of the square the short-range detector looks in for this region's face: the
        face's box (the region without its scale) `margin` sides wider on each side, as the Tasks backend
        crops around a detection."""
        return self.cx, self.cy, (1 + 2 * margin) * max(self.side, self.height or 0.0) / REGION_SCALE


def _anchors(grids: tuple[tuple[int, int], ...]) -> np.ndarray:
    """SSD anchor centres (0..1) of fixed size, row by row, each cell's anchors together (ssd_anchors_calculator)."""
    layers = []
    for cells, per_cell in grids:
        centres = (np.arange(cells) + 0.5) / cells
        y, x = np.meshgrid(centres, centres, indexing="ij")
        layers.append(np.repeat(np.stack([x.ravel(), y.ravel()], axis=1), per_cell, axis=0))
    return np.concatenate(layers)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, dtype=np.float64), -100.0, 100.0)))


def _with_retry(image: np.ndarray, retry: bool) -> Iterator[np.ndarray]:
    """`image`, then (where `retry` and asked for) its contrast-enhanced copy, made only then."""
    yield image
    if retry:
        yield enhanced(image)


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x, y, w, h in frame pixels
    score: float
    keypoints: np.ndarray  # 6 x 2, frame pixels: eyes (image left first), nose, mouth, ear regions


class LiteRTExtractor:
    name = "litert"
    needs_frames = True
    follows_faces = True  # a frame is read through the region of the frame before (faces/stage.py reads on)
    person_normalised = False  # per frame; the stage removes the person's resting face

    def __init__(
        self,
        landmarker_path: Path | None = None,
        detector_path: Path | None = None,
        max_faces: int = 8,
        min_detection_confidence: float = 0.5,
        min_tracking_presence: float = 0.5,
        detect_every_s: float = 0.4,
        crop_margin: float = 0.8,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.landmarker_file, self.detector_file = face_model_files(landmarker_path, detector_path)
        self.max_faces = max_faces
        self.min_detection_confidence = min_detection_confidence
        self.min_tracking_presence = min_tracking_presence
        self.detect_every_s = detect_every_s
        self.crop_margin = crop_margin
        self._anchors, self._crop_anchors = _anchors(DETECTOR_GRIDS), _anchors(CROP_DETECTOR_GRIDS)

        def interpreter(content: bytes):  # type: ignore[no-untyped-def]
            model = Interpreter(model_content=content, num_threads=1)
            model.allocate_tensors()
            return model, model.get_input_details()[0]["index"], {d["name"]: d["index"] for d in model.get_output_details()}

        self._detector = interpreter(self.detector_file.read_bytes())
        self._crop_detector = interpreter(task_member(self.landmarker_file, "face_detector.tflite"))
        self._landmarks = interpreter(task_member(self.landmarker_file, "face_landmarks_detector.tflite"))
        self._blendshapes = interpreter(task_member(self.landmarker_file, "face_blendshapes.tflite"))
        self._lock = threading.Lock()  # interpreters' tensors are not shared between threads

    @staticmethod
    def _run(model, tensor: np.ndarray) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
        interpreter, input_index, outputs = model
        interpreter.set_tensor(input_index, tensor)
        interpreter.invoke()
        return {name: interpreter.get_tensor(index) for name, index in outputs.items()}

    # --- the detector --------------------------------------------------------------------------------

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Every face the full-range detector finds in one RGB frame, best first."""
        check_frame(rgb)
        height, width = rgb.shape[:2]
        # Letterboxed as MediaPipe's ImageToTensor: the frame centred in a square of its longer side (black
        # beyond it), resampled in one bilinear warp whose input corners are the square's corners.
        k = max(height, width) / DETECTOR_SIDE
        origin = ((width - max(height, width)) / 2, (height - max(height, width)) / 2)
        return self._detections(self._detector, self._anchors, self._warped(rgb, origin, k, DETECTOR_SIDE), origin, k, self.min_detection_confidence)

    @staticmethod
    def _warped(rgb: np.ndarray, origin: tuple[float, float], scale: float, side: int) -> np.ndarray:
        """The `side`-pixel square input whose pixel (u, v) is frame point origin + scale * (u, v); black
        beyond the frame."""
        to_frame = np.array([[scale, 0.0, origin[0]], [0.0, scale, origin[1]]])
        return cv2.warpAffine(rgb, to_frame, (side, side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def _detected_in(self, rgb: np.ndarray, square: tuple[float, float, float]) -> Detection | None:
        """The face the short-range detector finds nearest the centre of `square` (centre x, y and side in
        frame pixels; beyond the frame it is black), as the Tasks landmarker looks for a face in the crop
        it is given; on a contrast-enhanced crop where the plain one has none (dark scenes)."""
        cx, cy, side = square
        origin, k = (cx - side / 2, cy - side / 2), side / CROP_DETECTOR_SIDE
        crop = self._warped(rgb, origin, k, CROP_DETECTOR_SIDE)
        for attempt in _with_retry(crop, True):
            found = self._detections(self._crop_detector, self._crop_anchors, attempt, origin, k, MIN_FACE_PRESENCE)
            if found:
                centre = np.array([cx, cy])
                return min(found, key=lambda d: float(np.hypot(*(np.array(d.box[:2]) + np.array(d.box[2:]) / 2 - centre))))
        return None

    def _detections(self, model, anchors: np.ndarray, image: np.ndarray, origin: tuple[float, float], scale: float, min_score: float) -> list[Detection]:  # type: ignore[no-untyped-def]
        """A BlazeFace model's faces in `image` (its square input, uint8 RGB), mapped to frame pixels as
        `origin + scale * input pixel`; SSD decoding with anchors of fixed size, as MediaPipe's
        TensorsToDetections (boxes and keypoints in input pixels from each anchor's centre)."""
        side = image.shape[0]
        with self._lock:
            out = self._run(model, (image.astype(np.float32) / 127.5 - 1.0)[None])
        raw_boxes, raw_scores = sorted(out.values(), key=lambda a: -a.shape[-1])  # boxes (16 a row), then scores
        scores = _sigmoid(raw_scores[0, :, 0])
        keep = np.flatnonzero(scores >= min_score)
        if not len(keep):
            return []
        raw, anchor = raw_boxes[0, keep] * scale, anchors[keep] * side * scale + np.asarray(origin)
        centre, size = raw[:, :2] + anchor, raw[:, 2:4]
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchor[:, None, :]
        return self._suppressed(np.concatenate([centre - size / 2, size], axis=1), scores[keep], points)

    @staticmethod
    def _suppressed(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray) -> list[Detection]:
        """Weighted non-maximum suppression (MediaPipe's WEIGHTED): each best remaining box absorbs those
        overlapping it by more than NMS_IOU, its box and keypoints the score-weighted mean of them all."""
        order = np.argsort(-scores, kind="stable")
        found: list[Detection] = []
        while len(order):
            best = order[0]
            joined = ious(boxes[best], boxes[order]) > NMS_IOU
            joined[0] = True
            group = order[joined]
            weights = scores[group] / scores[group].sum()
            box = tuple(float(v) for v in weights @ boxes[group])
            found.append(Detection(box, float(scores[best]), np.tensordot(weights, points[group], axes=1)))  # type: ignore[arg-type]
            order = order[~joined]
        return found

    # --- landmarks and blendshapes -------------------------------------------------------------------

    def _mesh(self, rgb: np.ndarray, region: Region, detected: bool) -> tuple[np.ndarray, float] | None:
        """478 landmarks (frame pixels, z in the same units) and the presence score in `region`, or None
        where the model sees no face there. A face the detector found needs MIN_FACE_PRESENCE (and gets a
        contrast-enhanced retry: dark scenes); a followed face needs `min_tracking_presence`, since no
        detector vouches for it (MediaPipe's min_tracking_confidence: dim frames otherwise keep a face
        that is no longer readable)."""
        matrix = region.to_frame(LANDMARK_SIDE)
        crop = cv2.warpAffine(rgb, matrix, (LANDMARK_SIDE, LANDMARK_SIDE),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        for attempt in _with_retry(crop, detected):
            with self._lock:
                out = self._run(self._landmarks, (attempt.astype(np.float32) / 255.0)[None])
            presence = float(_sigmoid(out["Identity_1"].ravel()[:1])[0])
            if presence >= (MIN_FACE_PRESENCE if detected else self.min_tracking_presence):
                model_points = out["Identity"].reshape(-1, 3).astype(np.float64)
                points = np.empty_like(model_points)
                points[:, :2] = model_points[:, :2] @ matrix[:, :2].T + matrix[:, 2]
                points[:, 2] = model_points[:, 2] * region.side / LANDMARK_SIDE
                return points, presence
        return None

    def read(self, rgb: np.ndarray, region: Region, confidence: float | None, detected: bool) -> Face | None:
        """The face in `region` (a detection's, or where the face's landmarks were in a nearby frame), read
        as the Tasks landmarker reads the crop it is given: the short-range detector finds it in the
        region's search square and the landmark model reads it in that detection's region. Where it is
        not found so, the landmarks are read in `region` itself: for a face followed from a nearby frame
        (`detected` False) where the short-range detector finds none or the landmarks refuse its region
        (a dim or turned face), at `min_tracking_presence`; for a detected one only where that detector
        finds none (where it does and the landmarks refuse, the Tasks backend has no face either)."""
        square = region.search_square(self.crop_margin)
        detection = self._detected_in(rgb, square)
        mesh = None
        if detection is not None:
            mesh = self._mesh(rgb, Region.around(detection.box, detection.keypoints[0], detection.keypoints[1]), detected=True)
        if mesh is None and (detection is None or not detected):
            mesh = self._mesh(rgb, region, detected)
        if mesh is None:
            return None
        points, presence = mesh
        with self._lock:
            out = self._run(self._blendshapes, points[BLENDSHAPE_LANDMARKS, :2].astype(np.float32)[None])
        scores = dict(zip(BLENDSHAPE_NAMES, (float(v) for v in next(iter(out.values())).ravel())))
        face = face_from_mesh(points, scores, presence if confidence is None else confidence, None, self.landmarker_file)
        face.fit_pose = partial(fitted_head_pose, pose_points(points, self.landmarker_file), self.landmarker_file)  # the peak's only
        # Where to look in the next frame: the size is set where the face was detected (and at detections
        # after, once the face has outgrown it: Region.sized_to).
        face.region = Region.of_landmarks(points, None if detected else region.side)
        return face

    # --- frames ----------------------------------------------------------------------------------------

    def faces_in(self, rgb: np.ndarray) -> list[Face]:
        """Every face of one RGB frame that the landmark model confirms, found by the detector."""
        return self._detected(rgb, [])

    def _detected(self, rgb: np.ndarray, kept: list[Face]) -> list[Face]:
        """`kept` plus every detected face not already among them (best detections first)."""
        faces = list(kept)
        for detection in self.detect(rgb):
            if len(faces) >= self.max_faces:
                break
            if any(iou(detection.box, face.box) > DUPLICATE_IOU for face in faces):
                continue  # a face already followed here
            region = Region.around(detection.box, detection.keypoints[0], detection.keypoints[1])
            face = self.read(rgb, region, detection.score, detected=True)
            if face is not None and not any(iou(face.box, other.box) > DUPLICATE_IOU for other in faces):
                faces.append(face)
        return faces

    def followed(self, rgb: np.ndarray, previous: list[Face]) -> tuple[list[Face], bool]:
        """The faces of `previous` (a nearby earlier frame) looked for where their landmarks were; and
        whether every one of them was found again."""
        check_frame(rgb)
        faces: list[Face] = []
        for face in previous:
            found = self.read(rgb, face.region, face.confidence, detected=False) if face.region else None
            if found is not None and not any(iou(found.box, other.box) > DUPLICATE_IOU for other in faces):
                faces.append(found)
        return faces, len(faces) == len(previous)

    def face_near(self, rgb: np.ndarray, reference: Face, max_shift: float = NEAR_SHIFT) -> Face | None:
        """The face of `reference` (a nearby frame's) in this frame, followed by its landmark region; the
        detector runs only where it is lost there."""
        followed, _ = self.followed(rgb, [reference])
        if followed and centre_distance(followed[0].box, reference.box) < max_shift:
            return followed[0]
        by_distance = sorted((centre_distance(d.box, reference.box), i, d) for i, d in enumerate(self.detect(rgb)))
        for distance, _, detection in by_distance:
            if distance >= max_shift:
                break
            region = Region.around(detection.box, detection.keypoints[0], detection.keypoints[1])
            found = self.read(rgb, region, detection.score, detected=True)
            if found is not None and centre_distance(found.box, reference.box) < max_shift:
                return found
        return None

    def analyse(self, clip: ClipInfo | None, frames: Iterable[Frame]) -> list[FrameFaces]:
        """The faces of each frame: the detector on the first frame, every `detect_every_s` after it, and
        wherever a followed face is lost or none is followed; in between, each face is looked for where
        its landmarks were in the frame before."""
        analysed: list[FrameFaces] = []
        previous: list[Face] = []
        last_detection = float("-inf")
        for frame in frames:
            faces, all_found = self.followed(frame.rgb, previous) if previous else ([], False)
            if not all_found or frame.time_s - last_detection >= self.detect_every_s - 1e-6:
                for face in faces:  # the followed faces' regions take their present size
                    face.region = face.region.sized_to(face.box)
                faces = self._detected(frame.rgb, faces)
                last_detection = frame.time_s
            analysed.append(FrameFaces(frame.index, frame.time_s, faces))
            previous = faces
        return analysed
