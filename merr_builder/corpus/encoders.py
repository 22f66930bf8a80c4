"""Encoders: pooled features of the face over the clip, the K frames and the audio from local encoder
checkpoints, and the global vision tower's patch tokens of the peak frame.

Nothing runs (and every feature stays null) until `encode.*` names an encoder, as `merr encode` does. The
step reads only per-clip stage outputs, so no annotation setting ever reruns it, and its features survive
every annotation rerun.
"""

from __future__ import annotations

from merr_builder.assets import folder_weights_id
from merr_builder.corpus.base import StepContext, StepDefaults, output_schema

ROLES = (("image_encoder", "feat_face"), ("video_encoder", "feat_video"), ("audio_encoder", "feat_audio"),
         ("vision_tower", "vision_patches"))  # fmt: skip


class EncodersStep(StepDefaults):
    name = "encoders"
    version = "2"  # 2: the face feature averaged over the clip's face frames; the vision tower's patch tokens
    scope = "partition"
    config_section = "encode"
    settings = tuple(role for role, _ in ROLES)
    reads = {
        "ingest": ("source_path", "source_path_bytes", "has_audio", "duration_s"),
        "media": ("frames_jpeg", "frame_times_s"),
        "faces": ("peak_face_jpeg", "peak_frame_jpeg", "au_series"),
    }
    writes = tuple(column for _, column in ROLES)
    output_schema = output_schema(name, writes)

    def __init__(self, config) -> None:
        settings = config.encode
        self.batch_size = settings.batch_size
        self.encoders = []
        roles = [role for role, _ in ROLES if getattr(settings, role)]
        if roles:  # (torch and transformers load only when an encoder is named)
            import torch

            from merr_builder.encoders import AudioEncoder, ImageEncoder, VideoEncoder, VisionPatchEncoder

            device = settings.device if settings.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
            kinds = {"image_encoder": ImageEncoder, "video_encoder": VideoEncoder, "audio_encoder": AudioEncoder,
                     "vision_tower": VisionPatchEncoder}  # fmt: skip
            self.encoders = [kinds[role](getattr(settings, role), device) for role in roles]

    @classmethod
    def from_config(cls, config) -> "EncodersStep":
        return cls(config)

    @classmethod
    def models(cls, config) -> dict:
        return {f"encoder_{column}": folder_weights_id(getattr(config.encode, role)) for role, column in ROLES if getattr(config.encode, role)}

    @classmethod
    def wants_gpu(cls, config) -> bool:
        return any(getattr(config.encode, role) for role, _ in ROLES)

    def run(self, rows: list[dict], context: StepContext) -> list[dict]:
        out = [{"clip_id": row["clip_id"]} for row in rows]
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            for encoder in self.encoders:
                for target, vector in zip(out[start : start + self.batch_size], encoder(batch)):
                    target[encoder.column] = vector
        return out
