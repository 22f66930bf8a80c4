"""The faces stage: faces and AUs over the sampled frames, the main person, the emotional peak frame.

Per clip: analyse frames at the sample rate → track faces → choose the main person (presence × size, and
the active speaker when there is speech) → score each frame by its AUs → refine the best candidates on
every frame around them (coarse to fine) → peak frame, aligned face crop, AU words and pseudo-label.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from merr_builder.assets import FACE_DETECTOR_FULL_RANGE, FACE_EXPRESSION_CLASSIFIER, FACE_LANDMARKER, describe, locate
from merr_builder.config import BuildConfig, FacesConfig, MediaConfig, VideoDecoder
from merr_builder.faces.expression import describe_expression, pseudo_label
from merr_builder.faces.face_mesh import face_model_files
from merr_builder.facs import AU_NAMES, BLENDSHAPE_NAMES
from merr_builder.faces.baseline import person_baseline, relative
from merr_builder.faces.classifier import INPUT_SIDE, ExpressionClassifier, classifier_label
from merr_builder.faces.peak import au_weights, best_positions, frame_scores, held_scores, hold_frames
from merr_builder.faces.protocol import AUExtractor, Face, FrameFaces
from merr_builder.faces.tracking import (
    MainFace, assign_tracks, choose_main_face, drop_glimpses, nearest_face, speech_activity,
)  # fmt: skip
from merr_builder.records import ClipInfo
from merr_builder.media import (
    AUDIO_SAMPLE_RATE, ClipAudio, Frame, PackedFrame, encode_jpeg, iter_frames_between, iter_frames_in,
    iter_packed_frames, map_clips_with_audio, sampled_indices, scaled_size,
)  # fmt: skip
from merr_builder.quarantine import ClipError, ErrorKind, StageResult
from merr_builder.schema import FACES_SCHEMA
from merr_builder.stage import PartitionBatch, StageDefaults


def make_extractor(config: FacesConfig) -> AUExtractor:
    """One extractor (one model load) per stage instance, i.e. per worker process."""
    if config.backend == "litert":
        from merr_builder.faces.litert import LiteRTExtractor

        return LiteRTExtractor(
            config.landmarker_path, config.detector_path, config.max_faces,
            config.min_detection_confidence, config.min_tracking_presence, config.detect_every_s, config.crop_margin,
        )  # fmt: skip
    if config.backend == "mediapipe":
        from merr_builder.faces.mediapipe import MediaPipeExtractor

        return MediaPipeExtractor(
            config.landmarker_path, config.detector_path, config.max_faces,
            config.min_detection_confidence, config.crop_margin, config.crop_size,
        )  # fmt: skip
    if config.backend == "openface":
        from merr_builder.faces.openface import OpenFaceExtractor

        return OpenFaceExtractor(config.openface_dir)  # type: ignore[arg-type]
    from merr_builder.faces.pyfeat import PyFeatExtractor

    return PyFeatExtractor()


# Refined frames whose pixels are kept for the peak JPEG (bounded memory: a few frames, not the windows).
KEEP_PIXELS = 4


@dataclass
class _Peak:
    frame_index: int
    time_s: float
    score: float  # the AU sum the expression holds (faces.peak_hold_s)
    face: Face
    rgb: np.ndarray  # the frame
    centre: int  # the frame whose hold window scores `score` (the peak frame is that window's lowest)


@dataclass
class Evidence:
    """One clip's analysis (FaceAnalyser.evidence): `series` is the main face's AUs per analysed frame,
    relative to its `baseline`; `weights` say which AUs the peak score sums."""

    frames: list[FrameFaces]
    main: MainFace
    people: int
    series: np.ndarray
    faces: list[Face | None]
    baseline: np.ndarray
    weights: np.ndarray
    peak: _Peak
    n_with_face: int


@dataclass
class _Seen:
    """One frame's main face and its AU sum, in the peak search (no pixels: memory stays bounded)."""

    frame_index: int
    time_s: float
    score: float
    face: Face | None
    refined: bool = False  # read in a refinement window


def aligned_face(rgb: np.ndarray, face: Face, size: int, margin: float = 1.3) -> np.ndarray:
    """A square crop of the face, turned so the eyes are level, `size` pixels a side, `margin` times the
    face box's longer side."""
    return square_crop(rgb, face.box, face.eyes, size, margin)


def square_crop(rgb: np.ndarray, box: tuple[float, float, float, float], eyes, size: int, margin: float = 1.3) -> np.ndarray:  # type: ignore[no-untyped-def]
    """`aligned_face` from a box (x, y, w, h in pixels) and, where known, the eye centres (left, right)."""
    x, y, w, h = box
    centre = (x + w / 2, y + h / 2)
    angle = 0.0
    if eyes is not None:
        (lx, ly), (rx, ry) = eyes  # subject's left eye is on the image right
        angle = math.degrees(math.atan2(ly - ry, lx - rx))
    side = margin * max(w, h, 2.0)
    matrix = cv2.getRotationMatrix2D(centre, angle, size / side)
    matrix[:, 2] += (size / 2 - centre[0], size / 2 - centre[1])
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _series(frames: list[FrameFaces], track: int) -> tuple[np.ndarray, list[Face | None]]:
    rows, faces = [], []
    for frame in frames:
        face = next((f for f in frame.faces if f.track_id == track), None)
        faces.append(face)
        rows.append(face.aus if face is not None else np.full(len(AU_NAMES), np.nan, dtype=np.float32))
    return np.vstack(rows).astype(np.float64), faces


def _box_fractions(face: Face | None, frame_w: int, frame_h: int) -> dict[str, float] | None:
    if face is None:
        return None
    x, y, w, h = face.box
    return {"x": x / frame_w, "y": y / frame_h, "w": w / frame_w, "h": h / frame_h}


def _face_stats(series: np.ndarray, faces: list[Face | None]) -> list[float]:
    seen = series[~np.isnan(series).any(axis=1)]
    shapes = [f.blendshapes for f in faces if f is not None and f.blendshapes is not None]
    blend = np.vstack(shapes) if shapes else np.zeros((1, len(BLENDSHAPE_NAMES)))
    parts = [seen.mean(0), seen.std(0), seen.max(0), blend.mean(0), blend.std(0)]
    return [float(v) for v in np.concatenate(parts)]


class ClipFrames:
    """A clip's frames for the analysis, decoded once: the sampled ones handed out as the decoder reaches
    them, and every frame kept (packed as I420) while the clip fits in `budget_bytes` (faces.frame_cache_mb), so
    that the refinement windows and the peak frame need no second decode. A clip too long for the budget
    is decoded again for them (bounded memory)."""

    def __init__(self, clip: ClipInfo, sample_fps: float | None, budget_bytes: int, decoder: VideoDecoder) -> None:
        self.clip = clip
        self.sample_fps = sample_fps
        self.budget = budget_bytes
        self.decoder = decoder
        self.kept: list[PackedFrame] | None = []

    def sampled(self) -> Iterator[Frame]:
        wanted = sampled_indices(self.clip, self.sample_fps)
        held = 0
        for packed in iter_packed_frames(self.clip, self.decoder):
            if self.kept is not None:
                held += packed.data.nbytes
                self.kept.append(packed)
                if held > self.budget:
                    self.kept = None  # too long to keep: the windows are decoded again
            if wanted is None or packed.index in wanted:
                yield packed.frame()

    def in_windows(self, windows: list[tuple[float, float]]) -> Iterator[Frame]:
        """Every frame whose time lies in one of the windows, in order."""
        if self.kept is None:
            yield from iter_frames_in(self.clip, windows)
            return
        for packed in self.kept:
            if any(a - 1e-6 <= packed.time_s <= b + 1e-6 for a, b in windows):
                yield packed.frame()

    def at(self, index: int, time_s: float) -> np.ndarray:
        """The pixels of frame `index` (at `time_s`)."""
        if self.kept is not None and index < len(self.kept) and self.kept[index].index == index:
            return self.kept[index].frame().rgb
        half = 0.5 / self.clip.fps  # the sampled time may fall between two frames: take the nearest
        frames = list(iter_frames_between(self.clip, max(0.0, time_s - half), time_s + half))
        if not frames:
            raise ClipError(ErrorKind.DECODE_ERROR, f"{self.clip.source_path}: the peak frame at {time_s:.3f} s does not decode")
        return min(frames, key=lambda f: abs(f.time_s - time_s)).rgb


class FaceAnalyser:
    """The per-clip analysis, shared by the stage and the benchmarks."""

    def __init__(self, faces: FacesConfig, media: MediaConfig, extractor: AUExtractor | None = None) -> None:
        self.config = faces
        self.media = media
        self.extractor = extractor or make_extractor(faces)
        self.classifier = ExpressionClassifier() if faces.expression_classifier else None

    def analyse(self, clip: ClipInfo, audio: ClipAudio | None) -> dict:
        e = self.evidence(clip, audio)
        return self._row(clip, e.frames, e.main, e.people, e.series, e.faces, e.baseline, e.peak, e.n_with_face)

    def evidence(self, clip: ClipInfo, audio: ClipAudio | None) -> "Evidence":
        """The analysed frames, the main face and its AU series, the peak: what the row is written from."""
        cfg = self.config
        frames = ClipFrames(clip, None if cfg.every_frame else cfg.sample_fps, cfg.frame_cache_mb * 2**20, self.media.decoder)
        coarse = self.extractor.analyse(clip, frames.sampled() if self.extractor.needs_frames else iter(()))
        assign_tracks(coarse)
        drop_glimpses(coarse)
        n_with_face = sum(1 for f in coarse if f.faces)
        if n_with_face == 0:
            raise ClipError(
                ErrorKind.NO_FACE,
                f"{clip.source_path}: no face found in any of the {len(coarse)} frames analysed "
                f"({'every frame' if self.config.every_frame else f'{self.config.sample_fps:g} per second'})",
            )
        step = 1.0 / self.config.sample_fps
        times = [f.time_s for f in coarse]
        several = len({face.track_id for frame in coarse for face in frame.faces}) > 1
        # Speech matters only to choose between faces: a clip of one face needs no audio decode.
        speaking = speech_activity(audio.blocks() if audio and several else None, AUDIO_SAMPLE_RATE, times, step)
        main = choose_main_face(coarse, clip.width * clip.height, speaking, cfg.min_track_share)
        series, faces = _series(coarse, main.track_id)  # type: ignore[arg-type]
        baseline = (
            np.zeros(len(AU_NAMES)) if self.extractor.person_normalised
            else person_baseline(series, cfg.baseline_percentile, cfg.baseline_max, cfg.baseline_min_frames)
        )  # fmt: skip
        series = relative(series, baseline)
        weights = au_weights(series, cfg.peak_method, cfg.most_frequent_k, cfg.exclude_aus)
        scores = frame_scores(series, weights, cfg.smooth_window)
        peak = self._peak(clip, frames, coarse, faces, scores, weights, baseline, step)
        people = len({face.track_id for frame in coarse for face in frame.faces})
        return Evidence(coarse, main, people, series, faces, baseline, weights, peak, n_with_face)

    def _peak(self, clip, frames, coarse, faces, scores, weights, baseline, step) -> _Peak:  # type: ignore[no-untyped-def]
        """The frame whose AU sum is highest and holds over `peak_hold_s` (a one-frame landmark spike
        holds nothing). Coarse to fine: the best sampled frames are candidates, and every frame around
        them is analysed, with enough frames beyond each to check the hold. Sampled frames that score
        within `refine_tolerance` of the best held score found are refined in turn (a spike that led the
        sampled scores must not hide the expression that holds)."""
        half_hold = hold_frames(clip.fps, self.config.peak_hold_s)
        seen = {f.frame_index: _Seen(f.frame_index, f.time_s, float(scores[i]), faces[i]) for i, f in enumerate(coarse)}
        verified: set[int] = set()  # frames around refined candidates: their hold window was analysed
        pixels: dict[int, np.ndarray] = {}  # the best-scoring refined frames, so the peak needs no decode of its own
        ranked = best_positions(scores, self.config.refine_candidates)
        target, refined = float(scores[ranked[0]]), set()
        while self.config.refine and self.extractor.needs_frames:
            # A peak between two samples shows only as a fairly high neighbour: refine every strong one.
            new = [p for p in ranked if scores[p] >= (1.0 - self.config.refine_tolerance) * target and p not in refined]
            if not new:
                break
            self._refine(clip, frames, coarse, faces, new, baseline, weights, step, half_hold, seen, verified, pixels)
            refined.update(new)
            held = self._held(seen, half_hold)
            target = max((held[i] for i in verified if not np.isnan(held[i])), default=float("nan"))
            if np.isnan(target):
                break
        held = self._held(seen, half_hold)
        pool = [i for i in (verified or seen) if not np.isnan(held[i])]
        if pool:
            centre = max(pool, key=lambda i: (held[i], -i))
            # The frame reported is the one whose reading the window holds (its lowest): a lone spike's
            # window is held by a calm neighbour, so the spike's own AUs never describe the clip.
            window = [j for j in range(centre - half_hold, centre + half_hold + 1) if j in seen and not np.isnan(seen[j].score)]
            best = min(window, key=lambda j: (seen[j].score, j))
            score = held[centre]
        else:
            best = centre = max((i for i in seen if not np.isnan(seen[i].score)), key=lambda i: (seen[i].score, -i))
            score = seen[best].score
        chosen = seen[best]
        rgb = pixels.get(best)
        if rgb is None:
            rgb = frames.at(chosen.frame_index, chosen.time_s)
        return _Peak(chosen.frame_index, chosen.time_s, score, chosen.face, rgb, centre)  # type: ignore[arg-type]

    @staticmethod
    def _held(seen: dict[int, _Seen], half_hold: int) -> dict[int, float]:
        order = sorted(seen)
        return dict(zip(order, held_scores(order, [seen[i].score for i in order], half_hold)))

    def _refine(self, clip, frames, coarse, faces, positions, baseline, weights, step, half_hold, seen, verified, pixels) -> None:  # type: ignore[no-untyped-def]
        """Analyse every frame whose nearest sampled frame is one of `positions` (within half a step of
        it), plus the hold on either side, in one decoding pass. The main face there is the detection
        nearest to where it was in the nearest sampled frame, analysed exactly as the sampled ones were.
        The pixels of the KEEP_PIXELS best-scoring frames are kept in `pixels` (the peak is one of them
        almost always; otherwise it is decoded once more)."""
        reach = step / 2 + half_hold / clip.fps + 1e-6
        windows = [(max(0.0, coarse[p].time_s - reach), coarse[p].time_s + reach) for p in positions]
        previous: _Seen | None = None
        # A backend that follows faces reads a frame through the region of the frame before; there the
        # sampled frames are read again inside the windows, so every score that can make the peak comes
        # from one unbroken run of frames, as an every-frame analysis would read it.
        reread = self.extractor.follows_faces
        for frame in frames.in_windows(windows):
            if frame.index not in seen or (reread and not seen[frame.index].refined):
                nearest = min(positions, key=lambda p: abs(coarse[p].time_s - frame.time_s))
                # The face is followed from the frame before where that one was just analysed (nearer in
                # time than the sampled frame, so a face that moves is not lost).
                follow = previous.face if previous and previous.frame_index == frame.index - 1 and previous.face else faces[nearest]
                face = self._face_near(clip, frame, follow)
                score = float(relative(face.aus, baseline) @ weights) if face is not None else float("nan")
                seen[frame.index] = _Seen(frame.index, frame.time_s, score, face, refined=True)
            previous = seen[frame.index]
            if any(abs(coarse[p].time_s - frame.time_s) <= step / 2 + 1e-6 for p in positions):
                verified.add(frame.index)
                if not np.isnan(seen[frame.index].score) and frames.kept is None:
                    pixels[frame.index] = frame.rgb
                    if len(pixels) > KEEP_PIXELS:
                        del pixels[min(pixels, key=lambda i: seen[i].score)]

    def _face_near(self, clip: ClipInfo, frame: Frame, reference: Face) -> Face | None:
        """The face of `frame` nearest to `reference`; only that one is analysed where the backend can."""
        near = getattr(self.extractor, "face_near", None)
        if near is not None:
            return near(frame.rgb, reference)
        return nearest_face(self.extractor.analyse(clip, [frame])[0].faces, reference)

    def _row(self, clip, coarse, main: MainFace, people: int, series, faces, baseline, peak: _Peak, n_with_face: int) -> dict:  # type: ignore[no-untyped-def]
        rgb = peak.rgb
        frame_h, frame_w = rgb.shape[:2]
        full_w, full_h = scaled_size(frame_w, frame_h, self.config.peak_frame_max_side)
        resized = cv2.resize(rgb, (full_w, full_h), interpolation=cv2.INTER_AREA) if full_w != frame_w else rgb
        aus = relative(peak.face.aus.astype(np.float64), baseline)
        label = pseudo_label(aus)
        expression = self.classifier.scores(aligned_face(rgb, peak.face, INPUT_SIDE, margin=1.0)) if self.classifier else None
        second = classifier_label(expression) if expression else None
        return {
            "clip_id": clip.clip_id,
            "n_faces": people,
            "face_frames_share": n_with_face / len(coarse),
            "face_choice": main.reason,
            "face_backend": self.extractor.name,
            "peak_frame_index": peak.frame_index,
            "peak_time_s": round(peak.time_s, 6),
            "peak_frame_jpeg": encode_jpeg(resized, self.media.jpeg_quality),
            "peak_face_jpeg": encode_jpeg(aligned_face(rgb, peak.face, self.config.face_crop_size), self.media.jpeg_quality),
            "face_box_peak": _box_fractions(peak.face, frame_w, frame_h),
            "head_pose_peak": dict(zip(("yaw", "pitch", "roll"), pose)) if (pose := peak.face.pose()) else None,
            "aus_peak": {au: float(v) for au, v in zip(AU_NAMES, aus)},
            "au_baseline": {au: float(v) for au, v in zip(AU_NAMES, baseline)},
            "blendshapes_peak": [float(v) for v in peak.face.blendshapes] if peak.face.blendshapes is not None else None,
            "au_series": [
                {"frame_index": f.frame_index, "time_s": f.time_s,
                 **{au: (None if np.isnan(v) else float(v)) for au, v in zip(AU_NAMES, row)},
                 "box": _box_fractions(face, frame_w, frame_h)}
                for f, row, face in zip(coarse, series, faces)
            ],  # fmt: skip
            "face_stats": _face_stats(series, faces),
            "visual_expression_description": describe_expression(aus),
            "pseudo_label": label.label,
            "pseudo_label_score": label.score,
            "au_match": label.au_match,
            "prototype_scores": label.scores,
            "matched_aus": list(label.matched),
            "expression_scores": expression,
            "classifier_label": second,
            "label_agreement": None if expression is None else second == label.label,
        }


class FacesStage(StageDefaults):  # (no GPU: TFLite faces read on the CPU)
    """Faces, AUs and the emotional peak frame of a partition's clips."""

    name = "faces"
    version = "6"  # 6: a face read as the Tasks landmarker reads a crop (the short-range detector finds it in a square around where it is expected, the landmarks read in that detection's region); 5: refinement within 5 % of the best held score (was 15 %); a followed face's region keeps its size within 5 %; frames decoded in-process (the same frames); 4: the litert backend by default (faces followed between detections); 3: the main face's box per sampled frame (the face encoder's crops over the clip); 2: AUs relative to the person, held peak without blinks, prototypes with core AUs, classifier
    config_section = "faces"
    output_schema = FACES_SCHEMA

    def __init__(self, config: FacesConfig, media: MediaConfig | None = None) -> None:
        self.analyser = FaceAnalyser(config, media or MediaConfig())

    @classmethod
    def models(cls, config: BuildConfig) -> dict[str, dict[str, str]]:
        classifier = (
            {"expression_classifier": describe(FACE_EXPRESSION_CLASSIFIER, locate(FACE_EXPRESSION_CLASSIFIER))}
            if config.faces.expression_classifier else {}
        )  # fmt: skip
        if config.faces.backend not in ("litert", "mediapipe"):
            return classifier
        landmarker, detector = face_model_files(config.faces.landmarker_path, config.faces.detector_path)
        return classifier | {
            "face_landmarker": describe(FACE_LANDMARKER, landmarker),
            "face_detector": describe(FACE_DETECTOR_FULL_RANGE, detector),
        }

    @classmethod
    def from_config(cls, config: BuildConfig) -> "FacesStage":
        return cls(config.faces, config.media)  # frames are sampled as the media section says

    def run(self, batch: PartitionBatch) -> StageResult[dict]:
        return map_clips_with_audio(self.name, batch, self.analyser.analyse)

