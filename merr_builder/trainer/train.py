"""The training loop: one process, or many under `torchrun` (gloo on CPUs, NCCL on GPUs; the model
replicated with DDP or sharded with FSDP2, `sharding`).

    merr train --config configs/train_stage1.yaml [--resume] [--set field=value ...]
    torchrun --nproc-per-node 8 -m merr_builder.trainer.train --config configs/train_stage1.yaml [--set sharding=fsdp]

AdamW on the LoRA and projector weights (no weight decay on biases and 1-D weights), linear warm-up then
cosine decay to `min_lr`, gradient accumulation, bf16 autocast on GPUs. Every `save_every` steps a
checkpoint holds what `--resume` needs to continue exactly: weights, optimizer, scheduler, RNG states
and how many batches were consumed. `metrics.jsonl` gets loss, learning rate and tokens/s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from merr_builder.trainer import checkpoint
from merr_builder.trainer.config import TrainConfig, load_train_config
from merr_builder.trainer.data import SampleStream, read_rows, valid_tasks
from merr_builder.trainer.features import STREAMS, FeatureScaler, columns_of, vision_record
from merr_builder.trainer.model import EmotionLlama, build_model
from merr_builder.trainer.sharding import (
    distribute,
    gradient_sync,
    load_optimizer_state,
    optimizer_state,
    trainable_state,
)


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)  # one per optimizer step, mean over ranks
    checkpoint: Path | None = None
    model: EmotionLlama | None = None


def default_model_dir(config: TrainConfig) -> Path:
    if config.model_dir is not None:
        return config.model_dir
    from merr_builder.assets import smollm2_dir

    return smollm2_dir()


def lr_factor(config: TrainConfig, step: int) -> float:
    """Linear warm-up from min_lr to lr, then cosine to min_lr at max_steps (as a factor of lr)."""
    if step < config.warmup_steps:
        return (config.min_lr + (config.lr - config.min_lr) * step / config.warmup_steps) / config.lr
    progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    return (config.min_lr + (config.lr - config.min_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))) / config.lr


def optimizer_for(model: EmotionLlama, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or name.endswith(".bias") else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999))


def uses_bf16(config: TrainConfig, device: str) -> bool:
    """bf16 autocast, with the frozen base held in bf16: asked for, or `auto` on a GPU."""
    return config.precision == "bf16" or (config.precision == "auto" and device.startswith("cuda"))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def vision_of(config: TrainConfig) -> dict | None:
    """The global encoder a new run trains with (None without a `global` stream), checked against the
    builds when its tokens come stored."""
    if "global" not in config.features:
        if config.vision_tower is not None:
            raise ValueError("vision_tower is set but features has no 'global' stream: add global to features")
        return None
    if config.vision_tower is None:
        raise ValueError("the global stream needs vision_tower: a local vision model folder (CLIP, SigLIP, ViT)")
    vision = vision_record(config.vision_tower, config.vision_tokens, config.vision_merge)
    if config.vision_tokens == "encode":
        from merr_builder.layout import BuildLayout

        for folder in config.data:
            made_by = BuildLayout(folder).read_manifest().get("encoders", {}).get("vision_patches")
            if made_by is None or made_by["sha256"] != vision["weights"]["sha256"]:
                source = f"were made by {made_by['file']}" if made_by else "are not there"
                raise ValueError(f"{folder}: its vision_patches {source}, not by {config.vision_tower}; "
                                 f"run merr encode {folder} --vision-tower {config.vision_tower}, or set vision_tokens=frame")  # fmt: skip
    return vision


def load_trained(path: Path, device: str = "cpu", vision_source: str | None = None) -> tuple[EmotionLlama, FeatureScaler, dict]:
    """A trained model from a checkpoint (or a run folder's latest), ready for eval or inference;
    `vision_source` feeds the global stream otherwise than in training (`frame` for a new clip)."""
    from merr_builder.assets import folder_weights_id

    weights, _, meta = checkpoint.load(path)
    config = TrainConfig.model_validate(meta["config"])
    vision = meta.get("vision")
    if vision:
        found = folder_weights_id(vision["tower"])["sha256"]
        if found != vision["weights"]["sha256"]:
            raise ValueError(f"vision tower {vision['tower']}: its weights hash {found[:12]}… is not the {vision['weights']['sha256'][:12]}… "
                             "this checkpoint was trained with")  # fmt: skip
        vision = {**vision, "source": vision_source or vision["source"]}
    scaler = FeatureScaler(meta["feature_stats"], config.features, vision)
    bf16 = uses_bf16(config, device)
    model = build_model(Path(meta["model_dir"]), config.features, config.lora_r, config.lora_alpha, config.lora_dropout,
                        config.lora_targets, dtype=torch.bfloat16 if bf16 else torch.float32,
                        max_answer_tokens=config.max_txt_len, dims=scaler.dims, vision=vision)  # fmt: skip
    _load_weights(model, weights)
    return model.to(device).eval(), scaler, meta


def _load_weights(model: EmotionLlama, weights: dict[str, torch.Tensor]) -> None:
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = trainable - set(weights), set(weights) - trainable
    if missing or unexpected:
        raise ValueError(f"checkpoint does not fit the model: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")
    model.load_state_dict(weights, strict=False)


def train(config: TrainConfig, resume: bool = False, stop_after: int | None = None) -> TrainResult:
    """Train; `stop_after` ends the run after that many optimizer steps (as a stop would)."""
    valid_tasks(config.tasks)
    unknown = [s for s in config.features if s not in STREAMS]
    if unknown:
        raise ValueError(f"unknown feature stream(s) {unknown}; choose from {list(STREAMS)}")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    bf16 = uses_bf16(config, device)

    seed_everything(config.seed)
    run_dir = Path(config.out_dir)
    resumed = checkpoint.load(run_dir) if resume else None
    init = checkpoint.load(config.init_from) if config.init_from is not None and not resume else None
    source = resumed or init  # stage 2 starts from stage 1's adapters, projectors and feature statistics
    if source is not None:
        # ... and with its streams and global encoder, which its weights were made for
        recorded = TrainConfig.model_validate(source[2]["config"])
        config = config.model_copy(update={k: getattr(recorded, k) for k in ("features", "vision_tower", "vision_tokens", "vision_merge")})
        vision = source[2].get("vision")
        scaler = FeatureScaler(source[2]["feature_stats"], config.features, vision)
    else:
        vision = vision_of(config)
        scaler = FeatureScaler.fit(read_rows(config.data, columns_of(config.features), config.split), config.features, vision)
    # A resumed run, or stage 2, continues on the base model its checkpoint names unless told otherwise.
    model_dir = config.model_dir or (Path(source[2]["model_dir"]) if source else default_model_dir(config))
    # Under bf16 the frozen base is held in bf16 (half the memory; autocast would cast it for every matmul
    # anyway); LoRA and the projectors, the weights AdamW updates, stay float32 (build_model).
    model = build_model(model_dir, config.features, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_targets,
                        dtype=torch.bfloat16 if bf16 else torch.float32, gradient_checkpointing=config.gradient_checkpointing,
                        max_answer_tokens=config.max_txt_len, dims=scaler.dims, vision=vision).to(device)  # fmt: skip
    start_step, consumed, state = 0, 0, None
    if source is not None:
        _load_weights(model, source[0])
    if resumed is not None:
        start_step, consumed, state = resumed[2]["step"], resumed[2]["consumed_batches"], resumed[1]

    sharding = config.sharding if distributed else None
    trained = distribute(model, sharding) if sharding else model  # (fsdp shards in place: before the optimizer)
    optimizer = optimizer_for(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(config, step))
    stream = SampleStream(config.data, config.split, config.tasks, scaler, config.batch_size, config.seed, config.shuffle_buffer,
                          config.length_window, rank, world, skip=consumed)  # fmt: skip
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=config.num_workers, collate_fn=model.prompts)
    batches = iter(loader)  # (draws a seed from torch's generator: before the saved generator state is put back)
    if state is not None:
        load_optimizer_state(model, optimizer, state["optimizer"], sharding)
        schedule.load_state_dict(state["scheduler"])
        checkpoint.set_rng_state(state["rng"][rank] if isinstance(state["rng"], list) else state["rng"])
    result = TrainResult(start_step, model=model)
    run_dir.mkdir(parents=True, exist_ok=True)
    progress = _progress(rank, start_step, config.max_steps)
    metrics = (run_dir / "metrics.jsonl").open("a") if rank == 0 else None
    last = stop_after if stop_after is not None else config.max_steps
    try:
        for step in range(start_step, min(last, config.max_steps)):
            model.train()
            started, tokens, total = time.perf_counter(), 0, 0.0
            for micro in range(config.grad_accum):
                batch = next(batches).to(device)
                tokens += batch.tokens()
                sync = gradient_sync(trained, sharding, on=micro == config.grad_accum - 1)
                with sync, torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                    loss = trained(batch) / config.grad_accum
                    loss.backward()
                total += float(loss.detach())
                consumed += 1
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - started
            numbers = torch.tensor([total, float(tokens)], dtype=torch.float64)
            if distributed:
                numbers = numbers.to(device)
                dist.all_reduce(numbers)
                numbers = numbers.cpu()
            mean_loss, all_tokens = float(numbers[0]) / world, float(numbers[1])
            result.losses.append(mean_loss)
            result.steps = step + 1
            if metrics is not None:
                record = {"step": step + 1, "loss": mean_loss, "lr": schedule.get_last_lr()[0], "tokens_per_s": all_tokens / seconds, "world": world}
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{record['lr']:.2e}", tok_s=f"{record['tokens_per_s']:.0f}")
                progress.update(1)
            if (step + 1) % config.save_every == 0 or step + 1 == config.max_steps:
                result.checkpoint = _save(run_dir, model, optimizer, schedule, scaler, config, model_dir, step + 1, consumed, rank, world,
                                          sharding)  # fmt: skip
    finally:
        progress.close()
        if metrics is not None:
            metrics.close()
        if distributed:
            dist.destroy_process_group()
    return result


def _save(run_dir, model, optimizer, schedule, scaler, config, model_dir, step, consumed, rank, world, sharding) -> Path | None:
    weights, optimizer_state_ = trainable_state(model, sharding), optimizer_state(model, optimizer, sharding)  # (every rank)
    rng = checkpoint.rng_state()
    if world > 1:  # every rank's generators, so each resumes its own dropout stream
        gathered: list = [None] * world
        dist.all_gather_object(gathered, rng)
        rng = gathered
    folder = None
    if rank == 0:
        meta = {"step": step, "consumed_batches": consumed, "feature_stats": scaler.state(), "config": config.model_dump(mode="json"),
                "model_dir": str(model_dir), "world": world, "sharding": sharding or "none", "vision": model.vision}  # fmt: skip
        state = {"optimizer": optimizer_state_, "scheduler": schedule.state_dict(), "rng": rng}
        folder = checkpoint.save(run_dir / f"step-{step:07d}", weights, state, meta)
    if world > 1:
        dist.barrier()
    return folder


def _progress(rank: int, start: int, total: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="train", disable=rank != 0, dynamic_ncols=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train Emotion-LLaMA on merr_builder shards (also under torchrun).")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stop-after", type=int, default=None, help="stop at this optimizer step, as a stop would (--resume goes on from the last checkpoint)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    result = train(load_train_config(args.config, args.overrides), resume=args.resume, stop_after=args.stop_after)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained to step {result.steps}; checkpoint {result.checkpoint}")


if __name__ == "__main__":
    main()
