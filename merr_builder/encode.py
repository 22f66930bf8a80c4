"""`merr encode`: pooled features from real encoders, written into a finished build's shards.

The original Emotion-LLaMA fed three pre-extracted 1024-d features: a face encoder (MAE ViT-L on face
crops), a temporal encoder (VideoMAE) and an audio encoder (chinese-hubert-large). Here any local
transformers checkpoint of those kinds can fill those roles (offline: a folder, never a download):

- `--image-encoder DIR` (ViT, CLIP vision, MAE, DINOv2, …) on `peak_face_jpeg` → `feat_face`;
- `--video-encoder DIR` (VideoMAE) on the K frames `frames_jpeg` → `feat_video`;
- `--audio-encoder DIR` (HuBERT, wav2vec 2.0) on the build's stored 16 kHz audio → `feat_audio`.

Each is mean-pooled over its tokens (the image encoder's pooled output where it has one). The shards
are rewritten with the new columns (other columns untouched), and the manifest records each encoder
with its weights' hash. Clips without the input (no face, no audio) get null.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from merr_builder.atomic import write_bytes_atomic
from merr_builder.config import config_from_dict
from merr_builder.assets import folder_weights_id
from merr_builder.finished_build import read_manifest
from merr_builder.manifest import MANIFEST
from merr_builder.media import AUDIO_SAMPLE_RATE, decode_audio
from merr_builder.quarantine import ClipError
from merr_builder.schema import SCHEMA_VERSION, SHARD_SCHEMA
from merr_builder.shards import ShardWriter

def _images(jpegs: list[bytes]) -> list:
    from PIL import Image

    return [Image.open(io.BytesIO(j)).convert("RGB") for j in jpegs]


class _VisionEncoder:
    """A local transformers vision model with its image processor, in eval mode on `device`."""

    def __init__(self, folder: Path, device: str) -> None:
        from transformers import AutoImageProcessor, AutoModel

        self.processor = AutoImageProcessor.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).to(device).eval()
        self.device = device


class ImageEncoder(_VisionEncoder):
    column = "feat_face"

    @torch.inference_mode()
    def __call__(self, rows: list[dict]) -> list[list[float] | None]:
        todo = [i for i, r in enumerate(rows) if r["peak_face_jpeg"]]
        out: list[list[float] | None] = [None] * len(rows)
        if todo:
            pixels = self.processor(images=_images([rows[i]["peak_face_jpeg"] for i in todo]), return_tensors="pt").pixel_values.to(self.device)
            if hasattr(self.model, "get_image_features"):  # CLIP-style: the projected image embedding
                features = self.model.get_image_features(pixel_values=pixels)
                features = getattr(features, "pooler_output", features)
            else:
                result = self.model(pixel_values=pixels)
                pooled = getattr(result, "pooler_output", None)
                features = pooled if pooled is not None else result.last_hidden_state.mean(1)
            for i, vector in zip(todo, features.float().cpu().numpy()):
                out[i] = vector.tolist()
        return out


class VideoEncoder(_VisionEncoder):
    column = "feat_video"

    def __init__(self, folder: Path, device: str) -> None:
        super().__init__(folder, device)
        self.frames = getattr(self.model.config, "num_frames", 16)

    @torch.inference_mode()
    def __call__(self, rows: list[dict]) -> list[list[float] | None]:
        todo = [i for i, r in enumerate(rows) if r["frames_jpeg"]]
        out: list[list[float] | None] = [None] * len(rows)
        if todo:
            clips = []
            for i in todo:  # the model's own clip length: K frames resampled uniformly
                frames = _images(rows[i]["frames_jpeg"])
                pick = np.linspace(0, len(frames) - 1, self.frames).round().astype(int)
                clips.append([frames[p] for p in pick])
            pixels = self.processor(clips, return_tensors="pt").pixel_values.to(self.device)
            features = self.model(pixel_values=pixels).last_hidden_state.mean(1)
            for i, vector in zip(todo, features.float().cpu().numpy()):
                out[i] = vector.tolist()
        return out


class AudioEncoder:
    column = "feat_audio"

    def __init__(self, folder: Path, device: str) -> None:
        from transformers import AutoFeatureExtractor, AutoModel

        self.extractor = AutoFeatureExtractor.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).to(device).eval()
        self.device = device

    @staticmethod
    def _samples(row: dict) -> np.ndarray | None:
        """The clip's 16 kHz audio decoded from its source as the build decodes it; None without audio
        or when the source no longer decodes (the row keeps a null feature)."""
        if not row.get("has_audio"):
            return None
        try:
            return decode_audio(row["source_path"], expected_s=row.get("duration_s"))
        except ClipError:
            return None

    @torch.inference_mode()
    def __call__(self, rows: list[dict]) -> list[list[float] | None]:
        out: list[list[float] | None] = [None] * len(rows)
        for i, row in enumerate(rows):  # one clip at a time: lengths differ, and padding would enter the mean
            samples = self._samples(row)
            if samples is None or samples.size < AUDIO_SAMPLE_RATE // 10:
                continue
            inputs = self.extractor(samples, sampling_rate=AUDIO_SAMPLE_RATE, return_tensors="pt").to(self.device)
            out[i] = self.model(**inputs).last_hidden_state.mean(1)[0].float().cpu().numpy().tolist()
        return out


@dataclass
class EncodeSummary:
    rows: int
    filled: dict[str, int]


def encode(out_dir: Path, image: Path | None = None, video: Path | None = None, audio: Path | None = None,
           batch_size: int = 16, device: str | None = None) -> EncodeSummary:  # fmt: skip
    from merr_builder.lock import build_lock

    out_dir = Path(out_dir)
    if not (image or video or audio):
        raise ValueError("name at least one encoder (--image-encoder, --video-encoder, --audio-encoder)")
    read_manifest(out_dir)
    with build_lock(out_dir, "merr encode"):
        return _encode(out_dir, image, video, audio, batch_size, device)


def _encode(out_dir: Path, image: Path | None, video: Path | None, audio: Path | None, batch_size: int, device: str | None) -> EncodeSummary:
    manifest = read_manifest(out_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    files = sorted((out_dir / "shards").glob("*.parquet"))
    encoders, ids = [], {}
    if image:
        encoders.append(ImageEncoder(image, device))
        ids["feat_face"] = folder_weights_id(image)
    if video:
        encoders.append(VideoEncoder(video, device))
        ids["feat_video"] = folder_weights_id(video)
    if audio:
        encoders.append(AudioEncoder(audio, device))
        ids["feat_audio"] = folder_weights_id(audio)
    config = config_from_dict(manifest["config"])
    writer = ShardWriter(out_dir, SHARD_SCHEMA, config.shards)
    filled = {column: 0 for column in ids}
    rows_total = 0
    try:
        for path in files:
            for record_batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
                table = _conform(pa.Table.from_batches([record_batch]))
                rows = table.to_pylist()
                for encoder in encoders:
                    values = encoder(rows)
                    filled[encoder.column] += sum(v is not None for v in values)
                    index = table.schema.get_field_index(encoder.column)
                    table = table.set_column(index, SHARD_SCHEMA.field(encoder.column), pa.array(values, pa.list_(pa.float32())))
                writer.write(table)
                rows_total += table.num_rows
        shards = writer.close()
    except BaseException:
        writer.abort()
        raise
    from dataclasses import asdict

    manifest.update(schema_version=SCHEMA_VERSION, rows=sum(s.rows for s in shards), shards=[asdict(s) for s in shards])
    manifest.setdefault("encoders", {}).update(ids)
    manifest["models"] = {**manifest.get("models", {}), **{f"encoder_{c}": i for c, i in ids.items()}}
    write_bytes_atomic(out_dir / MANIFEST, (json.dumps(manifest, indent=2, default=str) + "\n").encode())
    from merr_builder.card import write_card

    write_card(out_dir)
    return EncodeSummary(rows_total, filled)


def _conform(table: pa.Table) -> pa.Table:
    """A shard table in the current schema: columns an older build lacks (feat_*) are added as nulls."""
    columns = [table.column(f.name) if f.name in table.schema.names else pa.nulls(table.num_rows, f.type) for f in SHARD_SCHEMA]
    return pa.Table.from_arrays(columns, schema=SHARD_SCHEMA)
