"""The emotional peak frame: where the face's AU intensities sum highest.

The authors' stated definition (issue #12, Figure 6) is the argmax over frames of the summed AU
intensities; their write-up (OLD-MERR §2) first keeps the clip's most frequent AUs and sums only those.
Both are here ("sum", the default, and "most_frequent"); frames without the face never win.
"""

from __future__ import annotations

import numpy as np

from merr_builder.facs import AU_NAMES, AU_PRESENCE_THRESHOLD


def au_weights(series: np.ndarray, method: str, k: int, exclude: tuple[str, ...]) -> np.ndarray:
    """Which AUs the per-frame score sums (1) and which it ignores (0).

    `series` is frames x AUs with NaN rows where the face is absent.
    """
    weights = np.array([0.0 if au in exclude else 1.0 for au in AU_NAMES])
    if method == "sum":
        return weights
    if method != "most_frequent":
        raise ValueError(f"unknown peak method {method!r}")
    seen = series[~np.isnan(series).any(axis=1)]
    frequency = (seen >= AU_PRESENCE_THRESHOLD).sum(axis=0) * weights if len(seen) else weights * 0
    top = [i for i in np.argsort(-frequency, kind="stable")[:k] if frequency[i] > 0]
    chosen = np.zeros(len(AU_NAMES))
    chosen[top] = 1.0
    return chosen if top else weights


def frame_scores(series: np.ndarray, weights: np.ndarray, smooth_window: int = 1) -> np.ndarray:
    """Per frame: the weighted AU sum, NaN where the face is absent; optionally a centred moving mean
    over present frames (light smoothing against single-frame landmark jitter)."""
    scores = series @ weights
    if smooth_window <= 1:
        return scores
    half = smooth_window // 2
    smoothed = np.full_like(scores, np.nan)
    for i in range(len(scores)):
        if np.isnan(scores[i]):
            continue
        window = scores[max(0, i - half) : i + half + 1]
        smoothed[i] = np.nanmean(window)
    return smoothed


def best_positions(scores: np.ndarray, n: int) -> list[int]:
    """Positions of the `n` highest scores (NaN never), highest first, earliest first among equals."""
    valid = [i for i in range(len(scores)) if not np.isnan(scores[i])]
    return sorted(valid, key=lambda i: (-scores[i], i))[:n]


def hold_frames(fps: float, seconds: float) -> int:
    """Frames on each side of a frame that its expression must hold over: a window of about `seconds`
    at the clip's rate (0.1 s: one frame each side at 25-30 fps)."""
    if seconds <= 0 or fps <= 0:
        return 0
    return max(1, int(round((seconds * fps - 1) / 2)))


def held_scores(frame_indices: list[int], scores: list[float], half: int) -> list[float]:
    """Per frame: the lowest score over the frames within `half` frames of it that are known, so a score
    counts only as far as the expression holds. A known neighbour without the face (NaN) breaks the hold."""
    by_index = dict(zip(frame_indices, scores))
    held = []
    for index in frame_indices:
        window = [by_index[j] for j in range(index - half, index + half + 1) if j in by_index]
        held.append(float("nan") if any(np.isnan(window)) else float(min(window)))
    return held
