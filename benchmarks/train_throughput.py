"""Trainer throughput: our training step against a plain HF + peft loop with padding, same model, one run.

    python benchmarks/train_throughput.py          # CPU-size: a small random Llama
    python benchmarks/train_throughput.py --gpu    # the issue's shape: Llama-3-8B, bf16 (needs a GPU)

MERR-shaped samples: 260 feature positions (the original's 256 EVA patch tokens + 4 feature tokens; here
the projected feature vectors of our streams, placed by `EmotionLlama.embed`) plus 120-280 prompt and
answer tokens. Both sides train LoRA (r 64, alpha 16, q_proj/v_proj) and the projectors with AdamW.

- baseline: the plain loop the issue measured — every batch padded to 1024 tokens, gradient checkpointing,
  batches in arrival order;
- ours: `EmotionLlama` batches of similar length (the trainer's length windows), padded to the batch's
  own longest sample rounded up to the trainer's PAD_MULTIPLE, no gradient checkpointing.

Each side makes two passes over its batches and both are timed: the first builds the kernels of every
new sequence width (cuDNN attention builds one per width, up to seconds; the plain loop has one width, ours
a few), the second is the steady state a training run of thousands of steps lives in. The ratio is the
steady one; the first pass is printed too.

Counts real (non-padding) tokens per second; MFU = 6 × parameters (all but the input embedding, a
lookup) × real tokens / time, over the matmul peak measured on this device in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path

import torch
from device_peaks import matmul_flops, sync

from merr_builder.trainer.model import IGNORE, Batch, build_model, training_width

FEATURE_POSITIONS = 260


def make_model(folder: Path, gpu: bool, tokenizer_dir: Path | None, device: str, dtype: torch.dtype):
    """A random-initialised Llama saved as a local model folder, for the trainer's own loading code."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    if tokenizer_dir is None:
        from merr_builder.assets import smollm2_dir

        tokenizer_dir = smollm2_dir()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.save_pretrained(folder)
    if gpu:
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                             num_attention_heads=32, num_key_value_heads=8)  # fmt: skip
    else:
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                             num_attention_heads=8, num_key_value_heads=4)  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):  # initialising 8 B parameters on the host alone takes minutes
        AutoModelForCausalLM.from_config(config, dtype=dtype).save_pretrained(folder)
    return tokenizer


def samples(n: int, vocab: int, seed: int = 0) -> list[tuple[list[int], int]]:
    """(token ids with FEATURE_POSITIONS markers after a short prefix, answer length)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text = rng.randint(120, 280)
        answer = rng.randint(10, min(100, text - 20))
        ids = [rng.randrange(100, vocab) for _ in range(8)] + [-1] * FEATURE_POSITIONS + [rng.randrange(100, vocab) for _ in range(text - 8)]
        out.append((ids, answer))
    return out


def batch_of(items: list[tuple[list[int], int]], width: int | None, streams: list[str], pad: int) -> Batch:
    width = width or training_width(max(len(ids) for ids, _ in items))  # as the trainer pads
    ids = torch.full((len(items), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, IGNORE)
    for row, (seq, answer) in enumerate(items):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        labels[row, len(seq) - answer : len(seq)] = ids[row, len(seq) - answer : len(seq)]
    from merr_builder.trainer.features import STREAMS

    features = {s: torch.randn(len(items), STREAMS[s].dim) for s in streams}
    return Batch(ids, mask, labels, features)


def optimizer_of(model) -> torch.optim.Optimizer:
    model.train()
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)


def train_step(model, optimizer, batch: Batch, device: str, bf16: bool) -> int:
    """One optimizer step on `batch`; its real tokens."""
    batch = batch.to(device)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        model(batch).backward()
    optimizer.step()
    optimizer.zero_grad()
    return batch.tokens()


def run(model, batches: list[Batch], device: str, bf16: bool) -> tuple[list[float], int]:
    """Seconds of each of two passes over `batches`, and the real tokens of one pass."""
    optimizer = optimizer_of(model)
    seconds = []
    for _ in range(2):
        sync()
        started = time.perf_counter()
        tokens = sum(train_step(model, optimizer, batch, device, bf16) for batch in batches)
        sync()
        seconds.append(time.perf_counter() - started)
    return seconds, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder (default: SmolLM2's, from the pinned package)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16 = device == "cuda"
    steps = args.steps or (20 if args.gpu else 6)
    streams = ["peak", "face", "audio"]
    dtype = torch.bfloat16 if bf16 else torch.float32
    measured: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = make_model(Path(tmp), args.gpu, args.tokenizer, device, dtype)
        pad = tokenizer.pad_token_id or 0
        items = samples(args.batch * steps, len(tokenizer))
        # Plain: arrival order, padded to 1024. Ours: length windows of 8 batches, padded to each batch's longest.
        plain_batches = [batch_of(items[i : i + args.batch], 1024, streams, pad) for i in range(0, len(items), args.batch)]
        windows = [sorted(items[i : i + 8 * args.batch], key=lambda s: len(s[0])) for i in range(0, len(items), 8 * args.batch)]
        ours_batches = [batch_of(w[i : i + args.batch], None, streams, pad) for w in windows for i in range(0, len(w), args.batch)]
        # One model on the device at a time: two 8B copies would crowd an 80 GB card.
        for label, checkpointing, batches in (("plain", True, plain_batches), ("ours", False, ours_batches)):
            model = build_model(Path(tmp), streams, dtype=dtype, gradient_checkpointing=checkpointing).to(device)
            # Matmul parameters: the input embedding is a lookup, not a product.
            params = sum(p.numel() for p in model.parameters()) - model.lm.get_input_embeddings().weight.numel()
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            (first, seconds), tokens = run(model, batches, device, bf16)
            peak_gib = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
            measured[label] = {"seconds": seconds, "tokens": tokens, "tok_s": tokens / seconds, "peak_gib": peak_gib,
                               "first_pass_seconds": first, "first_pass_tok_s": tokens / first}  # fmt: skip
            del model
            if device == "cuda":
                torch.cuda.empty_cache()
    peak = matmul_flops(device, dtype, 8192 if device == "cuda" else 1024, repeats=5)
    name = torch.cuda.get_device_name() if device == "cuda" else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"machine: {name}, torch {torch.__version__}, {'bf16 autocast' if bf16 else 'float32'}")
    print(f"model: {'Llama-3-8B shape' if args.gpu else 'small Llama (4 layers, hidden 256)'} (random), {params / 1e6:.1f} M matmul parameters, LoRA r 64 on q_proj/v_proj")
    print(f"samples: {FEATURE_POSITIONS} feature positions + 120-280 text tokens, batch {args.batch}, two passes of {steps} steps each")
    for key, label in (("plain", "plain HF + peft (pad 1024, grad ckpt)"), ("ours", "ours (length windows)")):
        row = measured[key]
        row["mfu"] = 6 * params * row["tokens"] / row["seconds"] / peak
        print(f"{label:38s}: {row['tok_s']:9.1f} tokens/s (first pass {row['first_pass_tok_s']:.1f}), MFU {row['mfu']:.1%} "
              f"(matmul peak measured {peak / 1e12:.2f} TFLOP/s), peak memory {row['peak_gib']:.1f} GiB")  # fmt: skip
    ratio = measured["ours"]["tok_s"] / measured["plain"]["tok_s"]
    first_ratio = measured["ours"]["first_pass_tok_s"] / measured["plain"]["first_pass_tok_s"]
    print(f"ratio ours / plain: {ratio:.2f} (first pass {first_ratio:.2f})")
    if args.json:
        args.json.write_text(json.dumps({"machine": name, "torch": torch.__version__, "batch": args.batch, "steps": steps,
                                         "matmul_params": params, "matmul_peak_flops": peak, "runs": measured, "ratio": ratio, "first_pass_ratio": first_ratio}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
