"""Feature streams: which shard columns feed which projector, and where their tokens sit in the prompt.

Offline defaults are what every build stores (facial AUs and blendshapes at the peak, face statistics over
the clip, eGeMAPS of the voice); the 1024-d encoder features that `merr encode` adds (the original's MAE,
VideoMAE and HuBERT) are streams too. Each of these becomes one token; values are standardised with the
training data's mean and standard deviation, which the checkpoint keeps.

`global` is the original's global encoder: a frozen vision tower's patch tokens of the peak frame, four
neighbours concatenated into one (MiniGPT-v2's merge) and projected, N tokens at `<VideoHere>` (256 for
EVA-CLIP ViT-g at 448 px). Its input is the peak frame's pixels (the tower runs in the model) or the
tokens `merr encode --vision-tower` stored; `vision_record` describes it for the checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from merr_builder.facs import AU_NAMES


@dataclass(frozen=True)
class Stream:
    columns: tuple[str, ...]
    dim: int | None  # None: the encoder's width, read from the data
    slot: str  # "video": at <VideoHere> (the original's global visual tokens); "feature": at <FeatureHere>
    kind: str = "vector"  # "vector": one token; "patches": the vision tower's merged patch tokens


STREAMS: dict[str, Stream] = {
    # the vision tower's input: the peak frame (every row has one: a clip without a face is quarantined), or its stored tokens
    "global": Stream(("peak_frame_jpeg", "vision_patches"), None, "video", "patches"),
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
    """The shard columns of the vector streams (the global stream's depend on its source: VisualInput)."""
    return [c for s in streams if STREAMS[s].kind == "vector" for c in STREAMS[s].columns]


def vision_record(tower: Path, source: str, merge: int) -> dict:
    """What a checkpoint keeps of its global encoder: the tower folder and weights hash, where its tokens
    come from, the merge, and the token geometry (read from the tower's config, no weights loaded)."""
    from transformers import AutoConfig

    from merr_builder.assets import folder_weights_id
    from merr_builder.encoders import tower_geometry

    if not Path(tower).is_dir():
        raise ValueError(f"vision_tower {tower}: no such folder (a local transformers vision model)")
    patches, width = tower_geometry(AutoConfig.from_pretrained(tower))
    return {"tower": str(tower), "weights": folder_weights_id(tower), "source": source, "merge": merge,
            "patches": patches, "width": width, "tokens": math.ceil(patches / merge)}  # fmt: skip


class VisualInput:
    """The global stream of one row: the tower's input pixels (source `frame`) or its stored patch tokens
    (source `encode`); light enough to travel to data-loader workers (the image processor only)."""

    def __init__(self, vision: dict) -> None:
        self.vision = vision
        self._processor = None

    @property
    def columns(self) -> list[str]:
        return ["vision_patches"] if self.vision["source"] == "encode" else ["peak_frame_jpeg"]

    def array(self, row: dict) -> np.ndarray:
        from merr_builder.encoders import tower_image, unpack_patches

        patches, width = self.vision["patches"], self.vision["width"]
        if self.vision["source"] == "encode":
            if row.get("vision_patches") is None:
                return np.zeros((patches, width), np.float32)  # a clip the tower never saw
            tokens = unpack_patches(row["vision_patches"])
            if tokens.shape != (patches, width):
                raise ValueError(f"{row['clip_id']}: vision_patches hold {tokens.shape[0]}×{tokens.shape[1]} tokens; the tower "
                                 f"{self.vision['tower']} gives {patches}×{width}: run merr encode --vision-tower with it")  # fmt: skip
            return tokens
        if self._processor is None:
            from transformers import AutoImageProcessor

            self._processor = AutoImageProcessor.from_pretrained(self.vision["tower"])
        image = tower_image(row)
        if image is None:  # (every build keeps K frames; a row without any still gets an input)
            from PIL import Image

            image = Image.new("RGB", (224, 224))
        return self._processor(images=[image], return_tensors="np")["pixel_values"][0].astype(np.float32)

    def __getstate__(self) -> dict:
        return {"vision": self.vision, "_processor": None}


def require_vision(streams: list[str], vision: dict | None) -> None:
    """A patch-token stream (`global`) cannot be used without its vision tower's record."""
    if vision is None and any(STREAMS[s].kind == "patches" for s in streams):
        raise ValueError("the global stream needs a vision tower (vision_tower)")


class FeatureScaler:
    """The feature arrays of a row, in stream order: vector streams standardised per dimension with the
    training rows' statistics (stored in every checkpoint), the global stream as VisualInput gives it."""

    def __init__(self, stats: dict[str, tuple[list[float], list[float]]], streams: list[str] | None = None,
                 vision: dict | None = None) -> None:  # fmt: skip
        self.stats = {k: (np.asarray(m, np.float32), np.asarray(s, np.float32)) for k, (m, s) in stats.items()}
        self.streams = list(streams) if streams is not None else list(self.stats)
        require_vision(self.streams, vision)
        self.visual = VisualInput(vision) if vision else None

    @property
    def columns(self) -> list[str]:
        return columns_of(self.streams) + (self.visual.columns if self.visual else [])

    def features(self, row: dict) -> dict[str, np.ndarray]:
        return {s: self.visual.array(row) if STREAMS[s].kind == "patches" else self.transform(row, s) for s in self.streams}  # type: ignore[union-attr]

    @classmethod
    def fit(cls, rows: list[dict], streams: list[str], vision: dict | None = None) -> FeatureScaler:
        stats = {}
        for stream in [s for s in streams if STREAMS[s].kind == "vector"]:
            dim = STREAMS[stream].dim or next((v.size for r in rows if (v := raw_vector(r, stream)).size), None)
            if dim is None:
                raise ValueError(f"no row holds {', '.join(STREAMS[stream].columns)} for feature stream {stream!r}; run merr encode first")
            values = np.stack([raw_vector(r, stream, dim) for r in rows]) if rows else np.zeros((1, dim), np.float32)
            std = values.std(0)
            stats[stream] = (values.mean(0).tolist(), np.where(std > 1e-6, std, 1.0).tolist())
        return cls(stats, streams, vision)

    @property
    def dims(self) -> dict[str, int]:
        """Each stream's projector input width (the global stream's: `merge` patch tokens side by side)."""
        dims = {k: int(m.size) for k, (m, _) in self.stats.items()}
        if self.visual is not None:
            dims["global"] = self.visual.vision["merge"] * self.visual.vision["width"]
        return dims

    @property
    def token_counts(self) -> dict[str, int]:
        return {s: self.visual.vision["tokens"] if STREAMS[s].kind == "patches" else 1 for s in self.streams}  # type: ignore[union-attr]

    def state(self) -> dict[str, tuple[list[float], list[float]]]:
        return {k: (m.tolist(), s.tolist()) for k, (m, s) in self.stats.items()}

    def transform(self, row: dict, stream: str) -> np.ndarray:
        mean, std = self.stats[stream]
        return np.clip((raw_vector(row, stream, mean.size) - mean) / std, -10, 10).astype(np.float32)
