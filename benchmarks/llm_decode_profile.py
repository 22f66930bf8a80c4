"""Where the fine step's GPU time goes: prefill vs decode, per decode variant, and the top kernels.

    python benchmarks/llm_decode_profile.py --tokenizer DIR     # needs a GPU; the 8B shape of llm_throughput.py

One batch of MERR-shaped prompts (as `llm_throughput.py --gpu` makes them) through `GreedyStaticDecoder`
in several settings (CUDA graph or eager steps, prefill rows per forward);
each is run twice and the second run's device time is reported, split into prefill and decode (ms per
step). Then the decode attention alone for each mask kind and SDPA backend, and a profiler table of one
prefill chunk and eight eager decode steps. A diagnostic to read beside `llm_throughput.py`, which is
the benchmark with the baseline.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.llm_throughput import build_model, requests
from merr_builder.annotate.llm.hf import TransformersLLM
from merr_builder.annotate.llm.static_decode import GreedyStaticDecoder


def attention_alone(batch: int, length: int, dtype: torch.dtype) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(batch, 8, 4, 128, dtype=dtype, device="cuda")
    k, v = (torch.randn(batch, 8, length, 128, dtype=dtype, device="cuda") for _ in range(2))
    seen = torch.rand(batch, length, device="cuda") < 0.8
    masks = {"bool": seen[:, None, None, :], "additive": torch.where(seen, 0.0, torch.finfo(dtype).min).to(dtype)[:, None, None, :], "none": None}
    kv_bytes = 2 * k.nbytes
    for backend in (SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.MATH):
        for name, mask in masks.items():
            try:
                with sdpa_kernel(backend):
                    for _ in range(3):
                        torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                    torch.cuda.synchronize()
                    started = time.perf_counter()
                    for _ in range(20):
                        torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                    torch.cuda.synchronize()
                ms = (time.perf_counter() - started) / 20 * 1000
                print(f"  attention {backend.name:20s} mask {name:8s}: {ms:6.3f} ms per layer ({kv_bytes / ms / 1e9:5.2f} TB/s of K+V)")
            except RuntimeError as error:
                print(f"  attention {backend.name:20s} mask {name:8s}: not available ({str(error).splitlines()[0][:80]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--trace", type=Path, default=None, help="write the profiler table here")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    reqs = requests(args.batch, 440, 640, tokenizer)
    model = build_model(tokenizer, True, "cuda", torch.bfloat16)
    llm = TransformersLLM.from_model(model, tokenizer, batch_size=args.batch)
    ids = [tokenizer(llm._prompt(r), add_special_tokens=False).input_ids for r in reqs]
    new, max_len = 160, -(-(max(map(len, ids)) + 160) // 64) * 64
    print(f"batch {args.batch}, prompts {min(map(len, ids))}-{max(map(len, ids))} tokens, cache {max_len} slots")
    settings = {
        "graph": {},
        "eager": {"cuda_graph": False},
        "graph, prefill 128 rows": {"prefill_rows": 128},
    }
    for name, options in settings.items():
        decoder = GreedyStaticDecoder(model, args.batch, max_len, llm.eos_ids(), tokenizer.pad_token_id, **options)
        decoder.decode(ids, 8)  # warm-up (kernels, allocations)
        decoder.seconds = {"prefill": 0.0, "decode": 0.0}
        decoder.decode(ids, new)
        prefill, decode = decoder.seconds["prefill"], decoder.seconds["decode"]
        tokens = sum(map(len, ids))
        print(f"{name:36s}: prefill {prefill:5.2f} s ({2 * 7.0e9 * tokens / prefill / 1e12:4.0f} TFLOP/s at 7.0B matmul params), "
              f"decode {decode:5.2f} s = {decode / (new - 1) * 1000:5.1f} ms/step; {args.batch * new / (prefill + decode):,.0f} tok/s", flush=True)  # fmt: skip
        del decoder
        torch.cuda.empty_cache()

    print("decode attention alone, one layer:")
    attention_alone(args.batch, max_len, torch.bfloat16)

    decoder = GreedyStaticDecoder(model, args.batch, max_len, llm.eos_ids(), tokenizer.pad_token_id, cuda_graph=False, prefill_rows=args.batch)
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        decoder.decode(ids, 9)  # the batch's prefill in one forward, and 8 decode steps
    averages = prof.key_averages()
    print(averages.table(sort_by="device_time_total", row_limit=18, max_name_column_width=60))
    if args.trace:
        args.trace.write_text(averages.table(sort_by="device_time_total", row_limit=60, max_name_column_width=100))


if __name__ == "__main__":
    main()
