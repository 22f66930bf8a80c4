"""Training settings: one typed section, read from YAML (the shipped `configs/train_stage*.yaml`) plus
`--set field=value` overrides, validated before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from merr_builder.config import ConfigError


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: list[Path] = Field(description="build folders (their shards/) to train on")
    split: str | None = Field("train", description="rows of this split only; null: every row")
    out_dir: Path = Field(Path("runs/stage1"), description="checkpoints and the metrics log")
    model_dir: Path | None = Field(None, description="a local Llama-style causal LM folder; default: the pinned SmolLM2-135M")
    init_from: Path | None = Field(None, description="a checkpoint whose LoRA and projector weights start this run (stage 2)")
    tasks: list[Literal["emotion", "reason", "reason_v2"]] = Field(["emotion", "reason"])
    features: list[str] = Field(["peak", "face", "audio"], description="feature streams (merr_builder.trainer.features.STREAMS)")
    vision_tower: Path | None = Field(None, description="local vision model (CLIP, SigLIP, ViT) of the global stream: its patch tokens of the peak frame at <VideoHere>")
    vision_tokens: Literal["frame", "encode"] = Field(
        "frame", description="frame: the tower runs on the peak frame while training; encode: the tokens merr encode --vision-tower stored"
    )
    vision_merge: int = Field(4, ge=1, description="consecutive patch tokens concatenated into one (MiniGPT-v2: 4)")
    lora_r: int = Field(64, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_targets: list[str] = Field(["q_proj", "v_proj"])
    batch_size: int = Field(4, ge=1, description="samples per step on each process")
    grad_accum: int = Field(1, ge=1)
    max_steps: int = Field(1000, ge=1, description="optimizer steps")
    lr: float = Field(1e-5, gt=0)
    min_lr: float = Field(1e-6, ge=0)
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.05, ge=0)
    max_txt_len: int = Field(1024, ge=8, description="answer tokens kept at most")
    shuffle_buffer: int = Field(1024, ge=1)
    length_window: int = Field(8, ge=1, description="batches sorted together by length (less padding)")
    num_workers: int = Field(0, ge=0)
    save_every: int = Field(500, ge=1)
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 on a GPU (autocast, the frozen base held in bf16, LoRA and projectors float32), fp32 on the CPU")
    gradient_checkpointing: bool = False
    sharding: Literal["ddp", "fsdp"] = Field(
        "ddp", description="under torchrun: ddp keeps a whole model per process; fsdp shards it across them (8B on small GPUs)"
    )


def load_train_config(path: Path | None, overrides: list[str] = ()) -> TrainConfig:
    data = yaml.safe_load(Path(path).read_text()) if path else {}
    for assignment in overrides:
        key, _, value = assignment.partition("=")
        if not _:
            raise ConfigError(f"override {assignment!r} is not field=value")
        data[key.strip()] = yaml.safe_load(value)
    try:
        return TrainConfig.model_validate(data or {})
    except ValidationError as exc:
        fields = "; ".join(f"train config field '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())
        raise ConfigError(fields) from None
