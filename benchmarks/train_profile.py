"""Where a training step's time goes: per-step times by batch shape, and the top GPU kernels.

    python benchmarks/train_profile.py --gpu --tokenizer .whl/tokenizer

Uses train_throughput's model and samples. Variants, one model, each made twice over (the second pass
has seen every width): ours (length windows) padded to each batch's longest sample exactly, to the
trainer's PAD_MULTIPLE, and to a multiple of 64; then the plain loop's 1024-wide batches without gradient
checkpointing. Then a profile of two steps of ours.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from device_peaks import sync
from train_throughput import batch_of, make_model, optimizer_of, samples, train_step

from merr_builder.trainer.model import PAD_MULTIPLE, build_model


def steps(model, optimizer, batches, device, bf16, label):
    """Each step timed alone, printed as width:milliseconds."""
    times = []
    for batch in batches:
        sync()
        started = time.perf_counter()
        tokens = train_step(model, optimizer, batch, device, bf16)
        sync()
        times.append((batch.ids.shape[1], time.perf_counter() - started, tokens))
    total = sum(t for _, t, _ in times)
    print(f"{label:28s} tok/s {sum(n for _, _, n in times) / total:8.0f}  " + " ".join(f"{w}:{t * 1000:.0f}" for w, t, _ in times), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--tokenizer", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16 = device == "cuda"
    dtype = torch.bfloat16 if bf16 else torch.float32
    streams, size = ["peak", "face", "audio"], 8
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = make_model(Path(tmp), args.gpu, args.tokenizer, device, dtype)
        pad = tokenizer.pad_token_id or 0
        items = samples(size * args.steps, len(tokenizer))
        windows = [sorted(items[i : i + 8 * size], key=lambda s: len(s[0])) for i in range(0, len(items), 8 * size)]
        groups = [w[i : i + size] for w in windows for i in range(0, len(w), size)]
        longest = [max(len(ids) for ids, _ in group) for group in groups]
        exact = [batch_of(group, width, streams, pad) for group, width in zip(groups, longest)]
        ours = [batch_of(group, None, streams, pad) for group in groups]  # the trainer's PAD_MULTIPLE
        ours64 = [batch_of(group, -(-width // 64) * 64, streams, pad) for group, width in zip(groups, longest)]
        wide = [batch_of(items[i : i + size], 1024, streams, pad) for i in range(0, len(items), size)]
        model = build_model(Path(tmp), streams, dtype=dtype).to(device)
        optimizer = optimizer_of(model)
        for label, batches in (("exact widths", exact), (f"pad to {PAD_MULTIPLE}", ours), ("pad to 64", ours64)):
            steps(model, optimizer, batches, device, bf16, f"{label}, first pass")
            steps(model, optimizer, batches, device, bf16, f"{label}, widths seen")
        steps(model, optimizer, wide[:4], device, bf16, "1024 wide, no ckpt")
        if device == "cuda":
            print(f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        with profile(activities=activities) as prof:
            steps(model, optimizer, ours[:2], device, bf16, "ours, profiled")
        key = "cuda_time_total" if device == "cuda" else "cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=70))
        print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=15, max_name_column_width=70))


if __name__ == "__main__":
    main()
