"""The encoder backends of the `encoders` step (`merr encode`): pooled features from real encoders.

The original Emotion-LLaMA fed three pre-extracted 1024-d features: a face encoder (MAE ViT-L on face
crops), a temporal encoder (VideoMAE) and an audio encoder (chinese-hubert-large). Here any local
transformers checkpoint of those kinds can fill those roles (offline: a folder, never a download):

- `--image-encoder DIR` (ViT, CLIP vision, MAE, DINOv2, …) on the main face over the clip → `feat_face`:
  the face cropped from each of the K frames where it was found (`au_series` boxes), each crop encoded,
  the features averaged, as the original averaged its MAE features over the clip's face frames (the
  peak face crop alone where no frame has a box, e.g. a build made before boxes were kept);
- `--video-encoder DIR` (VideoMAE) on the K frames `frames_jpeg` → `feat_video`;
- `--audio-encoder DIR` (HuBERT, wav2vec 2.0) on the build's stored 16 kHz audio → `feat_audio`.

Each is mean-pooled over its tokens (the image encoder's pooled output where it has one). Clips without
the input (no face, no audio) get null.

The global encoder is different: `VisionTower` gives the patch tokens themselves (not pooled) of the peak
frame, which the trainer merges and projects into the tokens at `<VideoHere>`; `--vision-tower DIR`
stores them once (`vision_patches`, float16), or the trainer runs the same tower on the fly.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from merr_builder.media import AUDIO_SAMPLE_RATE, decode_audio
from merr_builder.names import openable
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


def tower_image(row: dict):
    """The global encoder's picture of a clip: the whole peak frame, or for a clip without one the middle
    of its K frames (the original used the first frame; the paper's figure, and its authors' later
    experiments, the peak)."""
    frames = row.get("frames_jpeg") or []
    jpeg = row.get("peak_frame_jpeg") or (frames[len(frames) // 2] if frames else None)
    return _images([jpeg])[0] if jpeg else None


def tower_geometry(config) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Patch tokens per image and their width, from a vision model's config (or a CLIP-style model's
    vision_config)."""
    vision = getattr(config, "vision_config", config)
    side = lambda v: v if isinstance(v, int) else v[0]
    return (side(vision.image_size) // side(vision.patch_size)) ** 2, int(vision.hidden_size)


class VisionTower(torch.nn.Module):
    """A frozen transformers vision model (CLIP, SigLIP, ViT, …; the vision half of a CLIP-style model)
    as Emotion-LLaMA's global encoder: the patch tokens of its second-to-last layer, class and register
    tokens left out. MiniGPT-v2 builds EVA-CLIP ViT-g without its last block and LLaVA takes the same
    layer: the last one is shaped for the contrastive head, not for a language model."""

    def __init__(self, folder: Path, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        from transformers import AutoImageProcessor, AutoModel

        self.folder = Path(folder)
        self.processor = AutoImageProcessor.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder, dtype=dtype)
        self.tower = getattr(model, "vision_model", model).eval().requires_grad_(False)
        self.patches, self.width = tower_geometry(model.config)

    def pixels(self, images: list) -> np.ndarray:
        """Pixel arrays (B, 3, H, W) as the tower's processor makes them (resize, normalise)."""
        return self.processor(images=images, return_tensors="np")["pixel_values"].astype(np.float32)

    def train(self, mode: bool = True) -> "VisionTower":
        return super().train(False)  # frozen: never dropout, whatever the LM around it does

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, patches, width) patch tokens."""
        dtype = next(self.tower.parameters()).dtype
        with torch.no_grad():
            hidden = self.tower(pixel_values=pixel_values.to(dtype), output_hidden_states=True).hidden_states[-2]
        return hidden[:, -self.patches :]


class VisionPatchEncoder:
    """`--vision-tower`: the tower's patch tokens of the peak frame, stored as float16 (`vision_patches`),
    so training need not run the tower."""

    column = "vision_patches"

    def __init__(self, folder: Path, device: str) -> None:
        self.tower = VisionTower(folder).to(device)
        self.device = device

    @torch.inference_mode()
    def __call__(self, rows: list[dict]) -> list[dict | None]:
        images = [tower_image(r) for r in rows]
        todo = [i for i, image in enumerate(images) if image is not None]
        out: list[dict | None] = [None] * len(rows)
        if todo:
            pixels = torch.from_numpy(self.tower.pixels([images[i] for i in todo])).to(self.device)
            for i, tokens in zip(todo, self.tower(pixels).float().cpu().numpy()):
                out[i] = pack_patches(tokens)
        return out


def pack_patches(tokens: np.ndarray) -> dict:
    return {"tokens": int(tokens.shape[0]), "width": int(tokens.shape[1]), "float16": tokens.astype("<f2").tobytes()}


def unpack_patches(value: dict) -> np.ndarray:
    return np.frombuffer(value["float16"], dtype="<f2").reshape(value["tokens"], value["width"]).astype(np.float32)


FACE_CROP_SIDE = 224  # pixels; the encoder's processor resizes to its own input anyway


def face_crops(row: dict) -> list:
    """The main face cropped from each of the K frames that lies between two sampled frames which both saw
    it (at either end of the clip, beside one), at the box of the nearer. A frame next to a sampled frame
    without the face (a cut, a turn away) is left out: the box would frame something else."""
    from PIL import Image

    from merr_builder.faces.stage import square_crop

    series = sorted(list(row.get("au_series") if row.get("au_series") is not None else []), key=lambda f: f["time_s"])
    frames = list(row.get("frames_jpeg") if row.get("frames_jpeg") is not None else [])
    times = list(row.get("frame_times_s") if row.get("frame_times_s") is not None else [])
    if not any(f.get("box") is not None for f in series) or not frames:
        return []
    sampled = np.asarray([f["time_s"] for f in series], dtype=np.float64)
    crops = []
    for jpeg, time_s in zip(frames, times):
        after = int(np.searchsorted(sampled, time_s - 1e-4))
        around = [series[i] for i in (after - 1, after) if 0 <= i < len(series)]
        if not around or any(f.get("box") is None for f in around):
            continue
        b = min(around, key=lambda f: abs(f["time_s"] - time_s))["box"]
        rgb = np.asarray(_images([jpeg])[0])
        height, width = rgb.shape[:2]
        crop = square_crop(rgb, (b["x"] * width, b["y"] * height, b["w"] * width, b["h"] * height), None, FACE_CROP_SIDE)
        crops.append(Image.fromarray(crop))
    return crops


class ImageEncoder(_VisionEncoder):
    column = "feat_face"

    @torch.inference_mode()
    def __call__(self, rows: list[dict]) -> list[list[float] | None]:
        out: list[list[float] | None] = [None] * len(rows)
        for i, row in enumerate(rows):
            crops = face_crops(row) or (_images([row["peak_face_jpeg"]]) if row.get("peak_face_jpeg") else [])
            if crops:
                out[i] = self._features(crops).mean(0).tolist()
        return out

    @torch.inference_mode()
    def _features(self, images: list) -> np.ndarray:
        pixels = self.processor(images=images, return_tensors="pt").pixel_values.to(self.device)
        if hasattr(self.model, "get_image_features"):  # CLIP-style: the projected image embedding
            features = self.model.get_image_features(pixel_values=pixels)
            features = getattr(features, "pooler_output", features)
        else:
            result = self.model(pixel_values=pixels)
            pooled = getattr(result, "pooler_output", None)
            features = pooled if pooled is not None else result.last_hidden_state.mean(1)
        return features.float().cpu().numpy()


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
            return decode_audio(openable(row["source_path"], row.get("source_path_bytes")), expected_s=row.get("duration_s"),
                                until_s=row.get("duration_s"))  # fmt: skip
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
