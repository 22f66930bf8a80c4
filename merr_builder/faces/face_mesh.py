"""What both MediaPipe face-mesh backends share: the pinned model files, how a landmarked face becomes a
`Face` (AUs from blendshapes, eye centres, head pose), and the checks on what goes in and comes out.

`mediapipe.py` runs the models through MediaPipe Tasks; `litert.py` calls them directly. Both read the
same `face_landmarker.task` (a zip of face_detector.tflite, face_landmarks_detector.tflite,
face_blendshapes.tflite and geometry_pipeline_metadata_landmarks.binarypb).
"""

from __future__ import annotations

import math
import zipfile
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from merr_builder.assets import FACE_DETECTOR_FULL_RANGE, FACE_LANDMARKER, AssetError, locate
from merr_builder.facs import AU_INTENSITY_MAX, AU_NAMES, AU_SCALE, BLENDSHAPE_NAMES, BLENDSHAPE_REST, BLENDSHAPE_TO_AU
from merr_builder.faces.protocol import Face
from merr_builder.quarantine import ClipError, ErrorKind

# Two landmarked faces overlapping this much are one face detected twice.
DUPLICATE_IOU = 0.5
# The landmark model's presence score a detected face needs (both backends; MediaPipe's default is 0.5,
# lowered for the small and dim faces of TV drama, where the detector has already found the face).
MIN_FACE_PRESENCE = 0.2
# Face-mesh landmark indices of the eye corners (the subject's right eye is on the image left).
RIGHT_EYE = (33, 133)
LEFT_EYE = (362, 263)


def face_model_files(landmarker_path: Path | None, detector_path: Path | None) -> tuple[Path, Path]:
    """The verified landmarker bundle (`.task`) and full-range detector both MediaPipe backends read."""
    return locate(FACE_LANDMARKER, landmarker_path), locate(FACE_DETECTOR_FULL_RANGE, detector_path)


def check_frame(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ClipError(ErrorKind.DECODE_ERROR, f"unreadable frame: expected HxWx3 uint8, got {rgb.shape} {rgb.dtype}")


def enhanced(rgb: np.ndarray) -> np.ndarray:
    """`rgb` with local contrast enhanced (CLAHE on lightness): the retry for a face too dark to landmark."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def task_member(task_file: Path, member: str) -> bytes:
    """One file of the .task bundle, or an AssetError saying which bundle lacks it."""
    try:
        with zipfile.ZipFile(task_file) as bundle:
            return bundle.read(member)
    except (zipfile.BadZipFile, KeyError) as error:
        raise AssetError(f"{task_file}: no {member} inside ({error}); use the pinned face_landmarker.task") from error


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
    """Yaw, pitch, roll from a 4x4 (or 3x3) facial transformation matrix: canonical face → camera."""
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, -r[2, 0]))))
    pitch = math.degrees(math.atan2(r[2, 1], r[2, 2]))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    return yaw, pitch, roll


def face_from_mesh(
    points: np.ndarray, scores: dict[str, float], confidence: float, pose: tuple[float, float, float] | None, source: Path
) -> Face:
    """A `Face` from its 478 landmarks (frame pixels, x and y first), its 52 blendshape scores by name and
    its head pose. `source` names the model bundle in the error a different blendshape set gives."""
    if set(scores) != set(BLENDSHAPE_NAMES):  # a different model would silently give zeros
        raise AssetError(f"{source}: blendshapes {sorted(set(scores) ^ set(BLENDSHAPE_NAMES))} "
                         "differ from the 52 this project maps; use the pinned face_landmarker.task")  # fmt: skip
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return Face(
        box=(float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])),
        confidence=float(confidence),
        aus=blendshapes_to_aus(scores),
        blendshapes=np.array([scores[n] for n in BLENDSHAPE_NAMES], dtype=np.float32),
        eyes=(
            tuple(xy[list(LEFT_EYE)].mean(axis=0)),  # type: ignore[arg-type]
            tuple(xy[list(RIGHT_EYE)].mean(axis=0)),
        ),
        head_pose=pose,
    )


@lru_cache(maxsize=4)
def canonical_face(task_file: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's canonical face (metric, centimetres) from the bundle's geometry metadata: the 468 mesh
    vertices, and the landmark ids and weights its Procrustes fit uses (geometry_pipeline_metadata.proto:
    canonical_mesh = 1 (vertex_buffer = 3, five floats a vertex: x, y, z, u, v), procrustes_landmark_basis
    = 2 (landmark_id = 1, weight = 2))."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="merr_face_geometry.proto", package="merr_face_geometry")
    ref = proto.message_type.add(name="WeightedLandmarkRef")
    ref.field.add(name="landmark_id", number=1, type=13, label=1)  # uint32
    ref.field.add(name="weight", number=2, type=2, label=1)  # float
    mesh = proto.message_type.add(name="Mesh3d")
    mesh.field.add(name="vertex_buffer", number=3, type=2, label=3, options=descriptor_pb2.FieldOptions(packed=True))
    meta = proto.message_type.add(name="GeometryPipelineMetadata")
    meta.field.add(name="procrustes_landmark_basis", number=2, type=11, label=3, type_name=".merr_face_geometry.WeightedLandmarkRef")
    meta.field.add(name="canonical_mesh", number=1, type=11, label=1, type_name=".merr_face_geometry.Mesh3d")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    metadata = message_factory.GetMessageClass(pool.FindMessageTypeByName("merr_face_geometry.GeometryPipelineMetadata"))()
    metadata.ParseFromString(task_member(task_file, "geometry_pipeline_metadata_landmarks.binarypb"))
    vertices = np.asarray(metadata.canonical_mesh.vertex_buffer, dtype=np.float64).reshape(-1, 5)[:, :3]
    ids = np.array([r.landmark_id for r in metadata.procrustes_landmark_basis], dtype=np.int64)
    weights = np.array([r.weight for r in metadata.procrustes_landmark_basis], dtype=np.float64)
    if len(vertices) != 468 or len(ids) == 0:
        raise AssetError(f"{task_file}: geometry metadata holds {len(vertices)} vertices and {len(ids)} weights; "
                         "expected MediaPipe's 468-vertex canonical face")  # fmt: skip
    return vertices, ids, weights


def pose_points(points: np.ndarray, task_file: Path) -> np.ndarray:
    """The landmarks the head-pose fit reads (33 of the 478, frame pixels): what a face keeps to have its
    pose fitted later (`fitted_head_pose`)."""
    _, ids, _ = canonical_face(task_file)
    return np.asarray(points, dtype=np.float64)[ids]


def fitted_head_pose(fitted: np.ndarray, task_file: Path) -> tuple[float, float, float]:
    """Yaw, pitch, roll of a face from its `pose_points` (frame pixels; z in the same units, smaller nearer
    the camera): the rotation of the weighted least-squares similarity fit (Umeyama) of MediaPipe's
    canonical face onto them, with the weights MediaPipe's geometry pipeline uses. Camera axes as
    MediaPipe's: x right, y up, z towards the viewer; a weak-perspective fit, which at the distances of film
    faces differs from MediaPipe's perspective one by a few degrees."""
    vertices, ids, weights = canonical_face(task_file)
    target = fitted * (1.0, -1.0, -1.0)
    source = vertices[ids]
    w = weights / weights.sum()
    mu_s, mu_t = w @ source, w @ target
    covariance = ((target - mu_t) * w[:, None]).T @ (source - mu_s)
    u, _, vt = np.linalg.svd(covariance)
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, 1.0, d]) @ vt
    return head_pose_degrees(rotation)
