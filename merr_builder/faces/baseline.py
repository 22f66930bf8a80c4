"""The person's resting face: AU intensities relative to how this face looks at rest.

FACS scores an AU against the person's own neutral face, and OpenFace corrects its intensities per person
by an offset taken at a low percentile of that person's predictions over the video. Here: per tracked
face, the `percentile`-th percentile of each AU over the clip's analysed frames of that face, capped at
`cap` so that an expression held through the whole clip is not taken for the resting face. A face seen in
fewer than `min_frames` frames (a still image, a glimpse) has no baseline of its own: zero, i.e. the
population's resting face that the backend already removed.
"""

from __future__ import annotations

import numpy as np

from merr_builder.facs import AU_NAMES


def person_baseline(series: np.ndarray, percentile: float, cap: float, min_frames: int) -> np.ndarray:
    """Per AU, what this face shows at rest. `series` is frames x AUs with NaN rows where it is absent."""
    seen = series[~np.isnan(series).any(axis=1)]
    if percentile <= 0 or len(seen) < min_frames:
        return np.zeros(len(AU_NAMES))
    return np.minimum(np.percentile(seen, percentile, axis=0), cap)


def relative(aus: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """AU intensities above the resting face (NaN rows stay NaN)."""
    return np.maximum(aus - baseline, 0.0)
