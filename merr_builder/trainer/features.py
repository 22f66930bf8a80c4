"""Feature streams: which shard columns feed which projector, and where its token sits in the prompt.

Offline defaults are what every build stores (facial AUs and blendshapes at the peak, face statistics over
the clip, eGeMAPS of the voice); the 1024-d encoder features that `merr encode` adds (the original's MAE,
VideoMAE and HuBERT) are streams too. Each stream becomes one token. Values are standardised with the
training data's mean and standard deviation, which the checkpoint keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from merr_builder.facs import AU_NAMES


@dataclass(frozen=True)
class Stream:
    columns: tuple[str, ...]
    dim: int | None  # None: the encoder's width, read from the data
    slot: str  # "video": at <VideoHere> (the original's global visual tokens); "feature": at <FeatureHere>


STREAMS: dict[str, Stream] = {
    "peak": Stream(("aus_peak", "blendshapes_peak"), len(AU_NAMES) + 52, "video"),
    "face": Stream(("face_stats",), 158, "feature"),
    "audio": Stream(("egemaps",), 88, "feature"),
    # `merr encode` features (the original's MAE, VideoMAE and HuBERT roles)
    "face_encoder": Stream(("feat_face",), None, "feature"),
    "video_encoder": Stream(("feat_video",), None, "feature"),
    "audio_encoder": Stream(("feat_audio",), None, "feature"),
}


def raw_vector(row: dict, stream: str, dim: int | None = None) -> np.ndarray:
    """The stream's values for one row; a clip without them (no face, no speech) gets zeros."""
    spec = STREAMS[stream]
    dim = dim or spec.dim
    parts = []
    for column in spec.columns:
        value = row.get(column)
        if isinstance(value, dict):  # aus_peak: a struct of AU intensities
            value = [value.get(au) for au in AU_NAMES]
        parts.append(np.asarray(value if value is not None else [], dtype=np.float32))
    vector = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if dim is None:
        return vector
    if vector.size != dim:
        vector = np.zeros(dim, np.float32)
    return np.nan_to_num(vector, nan=0.0, posinf=0.0, neginf=0.0)


def columns_of(streams: list[str]) -> list[str]:
    return [c for s in streams for c in STREAMS[s].columns]


class FeatureScaler:
    """Per-dimension standardisation fitted on the training rows (stored in every checkpoint)."""

    def __init__(self, stats: dict[str, tuple[list[float], list[float]]]) -> None:
        self.stats = {k: (np.asarray(m, np.float32), np.asarray(s, np.float32)) for k, (m, s) in stats.items()}

    @classmethod
    def fit(cls, rows: list[dict], streams: list[str]) -> FeatureScaler:
        stats = {}
        for stream in streams:
            dim = STREAMS[stream].dim or next((v.size for r in rows if (v := raw_vector(r, stream)).size), None)
            if dim is None:
                raise ValueError(f"no row holds {', '.join(STREAMS[stream].columns)} for feature stream {stream!r}; run merr encode first")
            values = np.stack([raw_vector(r, stream, dim) for r in rows]) if rows else np.zeros((1, dim), np.float32)
            std = values.std(0)
            stats[stream] = (values.mean(0).tolist(), np.where(std > 1e-6, std, 1.0).tolist())
        return cls(stats)

    @property
    def dims(self) -> dict[str, int]:
        return {k: int(m.size) for k, (m, _) in self.stats.items()}

    def state(self) -> dict[str, tuple[list[float], list[float]]]:
        return {k: (m.tolist(), s.tolist()) for k, (m, s) in self.stats.items()}

    def transform(self, row: dict, stream: str) -> np.ndarray:
        mean, std = self.stats[stream]
        return np.clip((raw_vector(row, stream, mean.size) - mean) / std, -10, 10).astype(np.float32)
