"""Tracking faces across frames and choosing the main person of a clip.

MERR's clips were assumed single-person; TV drama is not. The main person is the track with the most
presence × size, and when there is speech and several tracks, the one whose mouth moves most while
someone speaks (the active speaker) is preferred.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from merr_builder.facs import AU_NAMES
from merr_builder.faces.protocol import Face, FrameFaces

_JAW = AU_NAMES.index("AU26")
_LIPS = AU_NAMES.index("AU25")


def ious(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (x, y, w, h) box with each row of `boxes` (0 where both are empty)."""
    box, boxes = np.asarray(box, dtype=np.float64), np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    overlap = np.clip(np.minimum(boxes[:, :2] + boxes[:, 2:], box[:2] + box[2:]) - np.maximum(boxes[:, :2], box[:2]), 0.0, None).prod(axis=1)
    union = boxes[:, 2] * boxes[:, 3] + box[2] * box[3] - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return float(ious(np.asarray(a), np.asarray(b))[0])


def centre_distance(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Distance of the box centres, in units of the larger box side."""
    dx = (a[0] + a[2] / 2) - (b[0] + b[2] / 2)
    dy = (a[1] + a[3] / 2) - (b[1] + b[3] / 2)
    return float(np.hypot(dx, dy) / max(a[2], a[3], b[2], b[3], 1e-6))


# A face whose centre moved less than this many box sides is the same face (between nearby frames).
NEAR_SHIFT = 1.0


def nearest_face(faces: list[Face], reference: Face, max_shift: float = NEAR_SHIFT) -> Face | None:
    """The face nearest to `reference` (centre within `max_shift` of its box sides), or None."""
    close = [(f, centre_distance(f.box, reference.box)) for f in faces]
    close = [(f, d) for f, d in close if d < max_shift]
    return min(close, key=lambda fd: fd[1])[0] if close else None


def assign_tracks(frames: list[FrameFaces], max_gap_s: float = 2.5, max_shift: float = 0.75) -> int:
    """Give every face a track id, greedily matching each frame to the last box of each track.

    A face continues a track seen within `max_gap_s` seconds (a turned or bowed head loses the landmarks
    for a while) whose box centre lies within `max_shift` box sides (boxes move far between sampled
    frames when people move, so IoU alone breaks tracks). Returns the number of tracks.
    """
    last_box: dict[int, tuple[float, float, float, float]] = {}
    last_seen: dict[int, float] = {}
    next_id = 0
    for frame in frames:
        pairs = sorted(
            (
                (centre_distance(face.box, last_box[tid]) - iou(face.box, last_box[tid]), fi, tid)
                for fi, face in enumerate(frame.faces)
                for tid in last_box
                if frame.time_s - last_seen[tid] <= max_gap_s and centre_distance(face.box, last_box[tid]) <= max_shift
            )
        )
        used_faces: set[int] = set()
        used_tracks: set[int] = set()
        for _, fi, tid in pairs:
            if fi in used_faces or tid in used_tracks:
                continue
            frame.faces[fi].track_id = tid
            used_faces.add(fi)
            used_tracks.add(tid)
        for fi, face in enumerate(frame.faces):
            if fi not in used_faces:
                face.track_id = next_id
                next_id += 1
            last_box[face.track_id] = face.box
            last_seen[face.track_id] = frame.time_s
    return next_id


def drop_glimpses(frames: list[FrameFaces], min_frames: int = 2, min_clip_frames: int = 5) -> int:
    """Remove faces whose track was seen in fewer than `min_frames` frames of a clip of at least
    `min_clip_frames` analysed frames: a single-frame "face" there is a detector error or a glimpse, not a
    person of the clip (e.g. lettering in a title card). Returns how many faces were removed."""
    if len(frames) < min_clip_frames:
        return 0
    counts: dict[int, int] = {}
    for frame in frames:
        for face in frame.faces:
            counts[face.track_id] = counts.get(face.track_id, 0) + 1
    removed = 0
    for frame in frames:
        kept = [f for f in frame.faces if counts[f.track_id] >= min_frames]
        removed += len(frame.faces) - len(kept)
        frame.faces = kept
    return removed


def speech_activity(
    blocks: Iterable[np.ndarray] | None, sample_rate: int, times_s: list[float], window_s: float
) -> np.ndarray:
    """Per analysed frame: True where the audio around it is speech-loud (energy within 20 dB of the clip's
    loud parts, and those parts above -45 dBFS). All False without audio.

    The audio comes as a stream of blocks; only the samples the next frames' windows need are held."""
    if blocks is None:
        return np.zeros(len(times_s), dtype=bool)
    half = max(1, int(window_s * sample_rate / 2))
    spans = [(max(0, int(t * sample_rate) - half), int(t * sample_rate) + half) for t in times_s]
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    rms = [0.0] * len(spans)
    held, held_from, done, total = np.empty(0, dtype=np.float32), 0, 0, 0

    def settle(final: bool) -> int:
        k = done
        while k < len(order) and (final or spans[order[k]][1] <= held_from + len(held)):
            start, end = spans[order[k]]
            chunk = held[start - held_from : end - held_from]
            rms[order[k]] = float(np.sqrt(np.mean(chunk**2))) if len(chunk) else 0.0
            k += 1
        return k

    for block in blocks:
        held = np.concatenate([held, block])
        total += len(block)
        done = settle(final=False)
        keep_from = min(spans[order[done]][0], held_from + len(held)) if done < len(order) else held_from + len(held)
        held, held_from = held[keep_from - held_from :], keep_from
    settle(final=True)
    if total == 0:
        return np.zeros(len(times_s), dtype=bool)
    db = 20 * np.log10(np.maximum(np.array(rms), 1e-9))
    loud = np.percentile(db, 90) if len(db) else -120.0
    if loud < -45:
        return np.zeros(len(times_s), dtype=bool)
    return db > loud - 20


@dataclass(frozen=True)
class MainFace:
    track_id: int | None
    n_faces: int
    reason: str


def choose_main_face(
    frames: list[FrameFaces], frame_area: float, speaking: np.ndarray, min_share: float = 0.2
) -> MainFace:
    """Pick the main person's track. `speaking[i]` says whether frame i has speech.

    A track counts as a face of the clip when it is present in at least `min_share` of the frames that
    have any face (a passer-by in two frames is not a person of the clip).
    """
    with_face = sum(1 for f in frames if f.faces)
    if with_face == 0:
        return MainFace(None, 0, "no face found")
    presence: dict[int, int] = {}
    size: dict[int, list[float]] = {}
    for frame in frames:
        for face in frame.faces:
            presence[face.track_id] = presence.get(face.track_id, 0) + 1
            size.setdefault(face.track_id, []).append(face.box[2] * face.box[3] / frame_area)
    tracks = [t for t in presence if presence[t] >= max(1, min_share * with_face)] or list(presence)
    base = {t: presence[t] / with_face * float(np.sqrt(np.mean(size[t]))) for t in tracks}
    if len(tracks) == 1:
        return MainFace(tracks[0], 1, "only one face")
    by_base = max(tracks, key=lambda t: base[t])
    mouth = _mouth_movement(frames, speaking, tracks)
    if max(mouth.values(), default=0.0) <= 0.0:
        return MainFace(by_base, len(tracks), f"largest and most present of {len(tracks)} faces (no speech to match)")
    top = max(mouth.values())
    score = {t: base[t] * (0.5 + 0.5 * mouth[t] / top) for t in tracks}
    chosen = max(tracks, key=lambda t: score[t])
    if chosen != by_base:
        return MainFace(chosen, len(tracks), f"active speaker: most mouth movement during speech of {len(tracks)} faces")
    return MainFace(chosen, len(tracks), f"largest, most present and most speaking of {len(tracks)} faces")


def _mouth_movement(frames: list[FrameFaces], speaking: np.ndarray, tracks: list[int]) -> dict[int, float]:
    """Mean change of mouth opening (AU25 + AU26) between consecutive sightings, over speech frames."""
    movement: dict[int, list[float]] = {t: [] for t in tracks}
    previous: dict[int, float] = {}
    for position, frame in enumerate(frames):
        for face in frame.faces:
            if face.track_id not in movement:
                continue
            opening = float(face.aus[_JAW] + face.aus[_LIPS])
            if face.track_id in previous and position < len(speaking) and speaking[position]:
                movement[face.track_id].append(abs(opening - previous[face.track_id]))
            previous[face.track_id] = opening
    return {t: float(np.mean(v)) if v else 0.0 for t, v in movement.items()}
