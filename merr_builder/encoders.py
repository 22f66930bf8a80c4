"""The encoder backends of the `encoders` step (`merr encode`): pooled features from real encoders.

The original Emotion-LLaMA fed three pre-extracted 1024-d features: a face encoder (MAE ViT-L on face
crops), a temporal encoder (VideoMAE) and an audio encoder (chinese-hubert-large). Here any local
transformers checkpoint of those kinds can fill those roles (offline: a folder, never a download):

- `--image-encoder DIR` (ViT, CLIP vision, MAE, DINOv2, …) on `peak_face_jpeg` → `feat_face`;
- `--video-encoder DIR` (VideoMAE) on the K frames `frames_jpeg` → `feat_video`;
- `--audio-encoder DIR` (HuBERT, wav2vec 2.0) on the build's stored 16 kHz audio → `feat_audio`.

Each is mean-pooled over its tokens (the image encoder's pooled output where it has one). Clips without
the input (no face, no audio) get null.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from merr_builder.media import AUDIO_SAMPLE_RATE, decode_audio
from merr_builder.quarantine import ClipError


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
