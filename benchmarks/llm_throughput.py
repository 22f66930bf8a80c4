"""Fine-step LLM throughput: our transformers backend against plain HF `generate`, same batch size, one run.

    python benchmarks/llm_throughput.py            # CPU-size: a small random Llama, 32 new tokens
    python benchmarks/llm_throughput.py --gpu      # Llama-3-8B's shape, 160 new tokens
    ... [--shapes real,early,stress]

The model is random-initialised with the real architecture (no weights can be downloaded), built in
memory on the device; the tokenizer is SmolLM2's (converted by the build, or `--tokenizer DIR`).
Three prompt shapes, each run against plain `generate` (default: all, real first):
- `real`: the fine step's prompts as a build makes them (`fine_prompts.py`: the project's template code
  over random clue sets and MER2023-like subtitles; about 90-160 tokens), the shape of issue 20's target;
- `early`: the real prompts with answers that end early at varied lengths, as a real model's do (a
  random model never says end-of-text): a token the model says in most answers, first at varied steps,
  is made an end-of-sequence token for both. This shows the refill of finished rows;
- `stress`: coarse captions padded with repeated phrases to 440-640 tokens on the GPU (110-190 on the
  CPU), the shape of the earlier target, kept as a stress case.

Baseline: prompts in arrival order, left-padded, `model.generate` per batch (greedy). Ours:
`TransformersLLM.generate` (length-sorted batches, static KV cache, flash prefill, and on CUDA the
decode step replayed as a CUDA graph; `eager` is the same without the graph), with the decode step's
attention `masked` (every cache slot) and `row_length` (only each row's cache blocks, FlexAttention), and
row-length with the layers' element-wise work `fused` (RMSNorm, RoPE, SwiGLU compiled); each variant's
first call (cache, graph capture, compile) runs before its timing. Prints output tokens/s,
the ratio, the floors (weights + KV cache read once per decode step at the measured copy bandwidth;
prefill FLOPs at the measured matmul rate; and the compute bound: all matmul FLOPs at that rate, what an
engine overlapping decode with prefill could approach), and whether greedy outputs equal plain `generate` on a
sample, in the benchmark's dtype and, as the exact check, in float32.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from device_peaks import matmul_flops, sync

from fine_prompts import real_requests

from merr_builder.annotate.llm.hf import TransformersLLM, cache_slots
from merr_builder.annotate.llm.protocol import ChatRequest, GenerationSettings
from merr_builder.annotate.llm.static_decode import GreedyStaticDecoder, kv_bytes_per_token, shared_prefix
from merr_builder.annotate.prompts import COARSE_TEMPLATE, FINE_QUESTION, FINE_SYSTEM

LABELS = ["happy", "sad", "neutral", "angry", "worried", "surprise"]
PHRASES = [
    "a young woman sitting at a table in a dimly lit room", "a middle-aged man standing by a window",
    "eyebrows raised and eyes wide open", "lip corners pulled up into a broad smile", "a tightened jaw",
    "brows drawn together and lowered", "the chin pushed up while the lips press together",
    "a loud voice with a high and rising pitch", "a soft, slow voice with long pauses", "a trembling voice",
    "she looks away and shakes her head slightly", "he leans forward and points at the other person",
    "the cheeks are raised and the eyes narrowed", "the upper lip is raised in disgust",
]  # fmt: skip


def requests(n: int, min_tokens: int, max_tokens: int, tokenizer, seed: int = 0) -> list[ChatRequest]:
    """MERR-shaped fine prompts whose chat-rendered length is uniform in [min_tokens, max_tokens]."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        target, parts = rng.randint(min_tokens, max_tokens), [[], [], [], []]
        while True:
            rng.choice(parts).append(rng.choice(PHRASES))
            caption = COARSE_TEMPLATE.format(
                visual_objective_description=", ".join(parts[0]) or "a person", visual_expression_description=", ".join(parts[1]) or "none",
                audio_tone_description=", ".join(parts[2]) or "calm", subtitle=", ".join(parts[3]) or "...",
            )  # fmt: skip
            request = ChatRequest(FINE_SYSTEM, FINE_QUESTION.format(coarse_caption=caption, label=rng.choice(LABELS)))
            rendered = tokenizer.apply_chat_template(request.messages(), tokenize=False, add_generation_prompt=True)
            if len(tokenizer(rendered, add_special_tokens=False).input_ids) >= target:
                out.append(request)
                break
    return out


def build_model(tokenizer, gpu: bool, device: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, LlamaConfig

    if gpu:  # Llama-3-8B's shape (vocabulary: the tokenizer's)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                             num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0)  # fmt: skip
    else:
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                             num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048)  # fmt: skip
    config.pad_token_id, config.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=dtype).eval()


def plain_generate(llm: TransformersLLM, reqs: list[ChatRequest], settings: GenerationSettings, batch: int) -> tuple[float, int, list[list[int]]]:
    tok, model = llm.tokenizer, llm.model
    eos = llm.eos_ids()
    prompts = [tok.apply_chat_template(r.messages(), tokenize=False, add_generation_prompt=True) for r in reqs]
    sync()
    started, produced, outputs = time.perf_counter(), 0, []
    with torch.inference_mode():
        for i in range(0, len(prompts), batch):
            enc = tok(prompts[i : i + batch], return_tensors="pt", padding=True, add_special_tokens=False).to(llm.device)
            out = model.generate(**enc, max_new_tokens=settings.max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            for row in out[:, enc.input_ids.shape[1] :].tolist():
                cut = next((j for j, t in enumerate(row) if t in eos), len(row))
                outputs.append(row[:cut])
                produced += cut
    sync()
    return time.perf_counter() - started, produced, outputs


def ours_generate(llm: TransformersLLM, reqs: list[ChatRequest], settings: GenerationSettings) -> tuple[float, int, list[list[int]]]:
    sync()
    started = time.perf_counter()
    completions = llm.generate(reqs, settings)
    sync()
    elapsed = time.perf_counter() - started
    tokens = [llm.tokenizer(c.text, add_special_tokens=False).input_ids for c in completions]
    return elapsed, sum(c.new_tokens for c in completions), tokens


FAILED: set[str] = set()  # what failed here ("row_length" attention, "fused" layers): not tried again


@dataclass
class Variant:
    """One run of ours: its name ("{}": where the choices made for it are named), rows, prompts, decode
    attention and fused layers (None: the better one, row-length and fused, unless it failed here),
    whether the decode step is a CUDA graph, whether the layers are FP8."""

    name: str
    rows: int
    prompts: list[ChatRequest]
    attention: str | None = None
    fused: bool | None = None
    graph: bool = True
    fp8: bool = False

    def resolved(self) -> tuple[str, str, bool]:
        """(name, attention, fused) with the better choices made; the name says what they became."""
        attention = self.attention or ("masked" if "row_length" in FAILED else "row_length")
        fused = self.fused if self.fused is not None else "fused" not in FAILED
        chosen = (", row-length" if self.attention is None and attention == "row_length" else "") + (
            ", fused" if self.fused is None and fused else "")
        return self.name.format(chosen), attention, fused

    def blame(self, attention: str, fused: bool) -> None:
        """After a failure: the newest feature it ran (fused layers run after row-length alone succeeded)."""
        if not self.fp8 and (fused or attention != "masked"):
            FAILED.add("fused" if fused else attention)


def fp8_copy(model):  # type: ignore[no-untyped-def]
    """A copy of the model with FP8 decoder layers (the original stays bf16 for the other variants)."""
    import copy

    from merr_builder.annotate.llm.hf import to_fp8

    fp8 = copy.deepcopy(model)
    to_fp8(fp8)
    return fp8


def warm_up(llm: TransformersLLM, reqs: list[ChatRequest], settings: GenerationSettings) -> float:
    """One batch of the longest prompts: the decoder the timed run reuses is built (cache allocated, CUDA
    graph captured, FlexAttention compiled) outside the timing. Returns how long that first call took."""
    tokens = [len(llm.tokenizer(llm._prompt(r), add_special_tokens=False).input_ids) for r in reqs]
    longest = sorted(range(len(reqs)), key=tokens.__getitem__)[-llm.rows_for(max(tokens) + settings.max_new_tokens) :]
    sync()
    started = time.perf_counter()
    llm.generate([reqs[i] for i in longest], settings)
    sync()
    llm._decoder.seconds = {"prefill": 0.0, "decode": 0.0}
    llm._decoder.refills = llm._decoder.shared_tokens = llm._decoder.row_steps = llm._decoder.busy_row_steps = 0
    return time.perf_counter() - started


def measured_ceilings(device: str) -> tuple[float, float]:
    """(copy bandwidth in bytes/s counting read + write, bf16 matmul FLOP/s), measured here and now."""
    if device != "cuda":
        return float("nan"), float("nan")
    a = torch.empty(2**30, dtype=torch.float32, device="cuda")  # 4 GiB
    b = torch.empty_like(a)
    for _ in range(2):
        b.copy_(a)
    sync()
    started = time.perf_counter()
    for _ in range(10):
        b.copy_(a)
    sync()
    bandwidth = 10 * 2 * a.numel() * 4 / (time.perf_counter() - started)
    del a, b
    flops = matmul_flops("cuda", torch.bfloat16, 8192)
    torch.cuda.empty_cache()
    return bandwidth, flops


def floors(model, reqs_tokens: list[int], new: int, batch: int, bandwidth: float, flops: float, shared: int = 0) -> dict[str, float]:
    """Output tokens/s no implementation can beat: decode (bytes) alone; prefill (FLOPs) then decode (bytes)
    as separate phases, as ours and plain `generate` run them; and matmul FLOPs alone (phases overlapped).
    Prefill counts each prompt's tokens less the `shared` prefix every prompt starts with (ours runs it
    once per group of rows, so a floor that counted it would not bound ours)."""
    cfg = model.config
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters()) - model.get_input_embeddings().weight.nbytes
    kv_per_token = kv_bytes_per_token(cfg, next(model.parameters()).dtype)
    mean_prompt = sum(reqs_tokens) / len(reqs_tokens)
    step_bytes = weight_bytes + batch * (mean_prompt + new / 2) * kv_per_token
    decode_tokens_per_s = batch / (step_bytes / bandwidth)
    matmul_params = sum(p.numel() for n, p in model.named_parameters() if p.ndim == 2 and "embed" not in n) - model.get_output_embeddings().weight.numel()
    head_params = model.get_output_embeddings().weight.numel()  # the head runs on the last prefill token only
    prefill_s_per_prompt = 2 * matmul_params * (mean_prompt - shared) / flops
    both = new / (prefill_s_per_prompt + new / decode_tokens_per_s)
    # An engine that rides decode steps on prefill chunks (chunked prefill, as vLLM and SGLang schedule)
    # hides the decode's weight reads under prefill compute: then only the matmul FLOPs bound it.
    compute = new / (prefill_s_per_prompt + 2 * (matmul_params + head_params) * new / flops)
    return {"decode_floor_tok_s": decode_tokens_per_s, "decode_plus_prefill_floor_tok_s": both, "compute_bound_tok_s": compute}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--prompts", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--shapes", default="real,early,stress", help="real (the fine step's prompts), early (they end early), stress (padded, long)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder (default: SmolLM2's, from the pinned package)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--skip-fp32-check", action="store_true")
    parser.add_argument("--more-rows", type=lambda text: [int(r) for r in text.split(",")], default=None,
                        help="also run ours at these row counts on the real shape (default on GPUs: the automatic count)")
    parser.add_argument("--eager", action="store_true", help="on the GPU, also run ours without the CUDA graph")
    parser.add_argument("--no-fp8", action="store_true", help="on the GPU, skip ours with FP8 layers (torchao)")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    if args.tokenizer is None:
        from merr_builder.assets import smollm2_dir

        args.tokenizer = smollm2_dir()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    n = args.prompts or (512 if args.gpu else 48)
    bandwidth, flops = measured_ceilings(device)
    model = build_model(tokenizer, args.gpu, device, dtype)
    report = {}
    eos = model.generation_config.eos_token_id
    for shape in args.shapes.split(","):
        print(f"== prompts of the {shape} shape", flush=True)
        if shape in ("real", "early"):
            reqs = real_requests(n)
        else:
            low, high = (440, 640) if args.gpu else (110, 190)
            reqs = requests(n // 2 if args.gpu else n, low, high, tokenizer)  # (on the GPU one batch: the device's minutes are few)
        if shape == "early":
            stop, firsts = stop_token_for_early_ends(model, tokenizer, reqs[:32], new_tokens(args))
            print(f"early ends: token {stop} ({tokenizer.decode([stop])!r}) ends {len(firsts)} of 32 sampled answers, "
                  f"after {min(firsts)}-{max(firsts)} tokens (median {sorted(firsts)[len(firsts) // 2]})")  # fmt: skip
            model.generation_config.eos_token_id = [tokenizer.eos_token_id, stop]
        def save(so_far: dict, shape: str = shape) -> None:  # after every variant and shape: a device call cut short keeps them
            report[shape] = so_far
            if args.json:
                args.json.write_text(json.dumps(report, indent=1))

        save(run_shape(args, shape, model, tokenizer, reqs, device, dtype, bandwidth, flops, save))
        model.generation_config.eos_token_id = eos


def new_tokens(args) -> int:  # type: ignore[no-untyped-def]
    return 160 if args.gpu else 32


def stop_token_for_early_ends(model, tokenizer, reqs: list[ChatRequest], max_new: int) -> tuple[int, list[int]]:
    """A token the model says in most of these answers, first at varied steps and never among the first
    four: as an end-of-sequence token it ends rows early at varied lengths. Also: where it first comes."""
    llm = TransformersLLM.from_model(model, tokenizer)
    ids = [tokenizer(llm._prompt(r), add_special_tokens=False).input_ids for r in reqs]
    decoder = GreedyStaticDecoder(model, len(ids), cache_slots(max(map(len, ids)) + max_new), llm.eos_ids(), tokenizer.pad_token_id)
    said = decoder.decode(ids, max_new).tokens

    def firsts(token: int) -> list[int]:
        return [answer.index(token) for answer in said if token in answer]

    token = max({t for answer in said for t in answer}, key=lambda t: (min(firsts(t)) >= 4, len(firsts(t)), len(set(firsts(t)))))
    return token, firsts(token)


def run_shape(args, shape, model, tokenizer, reqs, device, dtype, bandwidth, flops, save) -> dict:  # type: ignore[no-untyped-def]
    """Ours against plain generate on these prompts; printed, and returned for the JSON (`save` hears the
    numbers so far after every variant: a device call cut short by its time limit keeps them)."""
    n = len(reqs)
    batch = args.batch or (256 if args.gpu else 16)
    settings = GenerationSettings(max_new_tokens=new_tokens(args))
    ours = TransformersLLM.from_model(model, tokenizer, batch_size=batch)
    rows_own = TransformersLLM.from_model(model, tokenizer, batch_size=batch, decode_attention="row_length")
    fused = TransformersLLM.from_model(model, tokenizer, batch_size=batch, decode_attention="row_length", fuse_elementwise=True)
    plain = TransformersLLM.from_model(model, tokenizer, batch_size=batch, static_decode=False)
    prompt_tokens = [len(tokenizer(ours._prompt(r), add_special_tokens=False).input_ids) for r in reqs]
    results: dict[str, dict] = {}
    # What `annotate.batch_size: auto` would choose here, with only the model on the device.
    auto_rows = TransformersLLM.from_model(model, tokenizer).rows_for(max(prompt_tokens) + settings.max_new_tokens)

    plain_generate(plain, reqs[:8], GenerationSettings(max_new_tokens=8), 8)
    # Ours: decode attention over every cache slot under the rows' masks ("masked"), over the blocks each
    # row holds ("row-length"), and that with the layers' element-wise work fused ("fused"). On the GPU as
    # CUDA graphs (the eager steps on request: they only show what the graph saves); on the CPU eager.
    # Each feature first runs alone: if FlexAttention or the compiled layers fail on this machine, the
    # numbers without them are already in, and the variants that take the better choice take the other.
    # The early and stress shapes run masked and the best only (the device's minutes are few).
    gpu = device == "cuda"
    steps = " (CUDA graph)" if gpu else ", eager steps"
    variants = [Variant("ours" + steps, batch, reqs, "masked", False, graph=gpu)]
    if gpu and args.eager:
        variants.append(Variant("ours, eager steps", batch, reqs, "masked", False, graph=False))
    if shape == "real" or not gpu:
        variants.append(Variant("ours, row-length" + steps, batch, reqs, "row_length", False, graph=gpu))
    variants.append(Variant("ours{}" + steps, batch, reqs, graph=gpu))
    # After the float32 check (so that a run cut short by the device's time limit has it):
    # more rows (real shape): ours alone, over 2 full batches of the same prompts (no baseline at these sizes);
    extra = []
    for rows in sorted({r for r in (args.more_rows or ([auto_rows] if args.gpu else [])) if r > batch}) if shape == "real" else []:
        extra.append(Variant(f"ours{{}}, {rows} rows" + (" (auto)" if rows == auto_rows else ""), rows, (reqs * (1 + 2 * rows // n))[: 2 * rows]))
    if gpu and shape == "real" and not args.no_fp8:  # FP8 layers (torchao): not token-identical, reported apart
        # (row-length if it ran here; not fused: torchao's FP8 weights are tensor subclasses, a compile of its own)
        extra.append(Variant("ours{}, FP8 layers (not token-identical)", batch, reqs, fused=False, fp8=True))
    outputs: dict[str, list[list[int]]] = {}
    report = {"results": results, "batch": batch, "auto_rows": auto_rows, "prompts": n}

    def run(variant: Variant | None) -> None:
        name, prompts, llm = "plain HF generate", reqs, None
        if variant is not None:
            name, attention, fuse = variant.resolved()
            prompts = variant.prompts
            if name in results:  # the best, where what failed here left it the same as one that ran
                print(f"{name}: not run again ({', '.join(sorted(FAILED))} failed here)")
                return
            if {attention, "fused" if fuse else ""} & FAILED:
                print(f"{name}: not run ({'fused layers' if fuse else attention + ' attention'} failed here before)")
                return
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        row = results[name] = {}
        try:
            if variant is None:
                seconds, produced, tokens = plain_generate(plain, prompts, settings, batch)
            else:
                llm = TransformersLLM.from_model(fp8_copy(model) if variant.fp8 else model, tokenizer, batch_size=variant.rows,
                                                 cuda_graph=variant.graph, decode_attention=attention, fuse_elementwise=fuse,
                                                 fp8=variant.fp8)  # fmt: skip
                row["first_call_s"] = warm_up(llm, prompts, settings)
                seconds, produced, tokens = ours_generate(llm, prompts, settings)
        except Exception as error:  # noqa: BLE001 - a variant that fails is reported; the others still run
            print(f"{name}: FAILED: {type(error).__name__}: {error}")
            row["error"] = f"{type(error).__name__}: {error}"
            if variant is not None:
                variant.blame(attention, fuse)
            return
        finally:
            if llm is not None:
                if llm._decoder is not None:
                    row["device_seconds"] = dict(llm._decoder.seconds)
                    row["refills"] = llm._decoder.refills
                    row["shared_prefix_tokens"] = llm._decoder.shared_tokens
                    row["rows_busy"] = llm._decoder.busy_row_steps / max(1, llm._decoder.row_steps)
                llm._decoder = None  # free its cache (and an FP8 copy's weights) before the next variant
                llm = None
            if device == "cuda":
                torch.cuda.empty_cache()
            save(report)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        row.update({"seconds": seconds, "output_tokens": produced, "tok_s": produced / seconds, "peak_gib": peak})
        if prompts is reqs:  # the same prompts as the baseline: outputs are compared
            outputs[name] = tokens
        parts = row.get("device_seconds")
        where = (f", prefill {parts['prefill']:.1f} s + decode {parts['decode']:.1f} s, {row['refills']} rows refilled, "
                 f"rows busy in {row['rows_busy']:.0%} of decode row-steps, "
                 f"{row['shared_prefix_tokens']} prompt tokens not prefilled (shared prefix); "
                 f"first call {row['first_call_s']:.1f} s") if parts else ""  # fmt: skip
        print(f"{name:20s}: {produced / seconds:9.1f} output tokens/s ({seconds:.1f} s, {produced} tokens, peak {peak:.1f} GiB{where})", flush=True)
        save(report)

    for variant in [None, *variants]:
        run(variant)
    sample = list(range(0, n, max(1, n // 8)))[:8]
    exact = report["identical_fp32"] = None
    # float32: the check of the algorithm, free of bf16 rounding ties (on the GPU not for the stress shape:
    # the real and early shapes check the same code, and the device's minutes are few)
    if not args.skip_fp32_check and not (args.gpu and shape == "stress"):
        model.float()
        few = [reqs[i] for i in sample]
        short = GenerationSettings(max_new_tokens=32)
        _, _, ref = plain_generate(plain, few, short, len(few))
        ref_texts = [tokenizer.decode(t, skip_special_tokens=True).strip() for t in ref]
        exact = report["identical_fp32"] = {}
        for check, llm in (("masked", ours), ("row_length", rows_own), ("row_length, fused", fused)):
            if set(check.split(", ")) & FAILED:
                continue
            try:
                exact[check] = sum(a.text == b for a, b in zip(llm.generate(few, short), ref_texts))
                print(f"greedy outputs identical to plain generate in float32 (32 new tokens), {check}: {exact[check]}/{len(sample)}", flush=True)
            except Exception as error:  # noqa: BLE001 - reported; the shape's other numbers stand
                print(f"float32 check, {check}: FAILED: {type(error).__name__}: {error}")
                FAILED.add(check.split(", ")[-1])
            llm._decoder = None
            save(report)
        model.to(dtype)
    for variant in extra:
        run(variant)

    base = results["plain HF generate"]["tok_s"]
    plain_texts = [tokenizer.decode(t, skip_special_tokens=True).strip() for t in outputs["plain HF generate"]]
    checks = {}
    for name, tokens in outputs.items():
        if name != "plain HF generate":
            ours_texts = [tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]
            checks[name] = sum(ours_texts[i] == plain_texts[i] for i in sample)

    prompt_ids = [tokenizer(ours._prompt(r), add_special_tokens=False).input_ids for r in reqs]
    shared = shared_prefix(prompt_ids)
    ceiling = floors(model, prompt_tokens, settings.max_new_tokens, batch, bandwidth, flops, shared) if device == "cuda" else {}
    gpu_name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    print()
    print(f"machine: {gpu_name}, torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"prompts: {n} ({min(prompt_tokens)}-{max(prompt_tokens)} tokens, mean {sum(prompt_tokens) / n:.0f}), batch {batch}, "
          f"new tokens {settings.max_new_tokens}, model {'Llama-3-8B shape' if args.gpu else 'small Llama'} (random), {dtype}")  # fmt: skip
    print(f"annotate.batch_size auto would run {auto_rows} rows per batch here; every prompt starts with the same {shared} tokens")
    if device == "cuda":
        print(f"measured ceilings: copy {bandwidth / 1e12:.2f} TB/s, bf16 matmul {flops / 1e12:.0f} TFLOP/s")
        print(f"floors: decode alone {ceiling['decode_floor_tok_s']:,.0f} tok/s; decode + prefill {ceiling['decode_plus_prefill_floor_tok_s']:,.0f} tok/s; "
              f"matmul FLOPs alone (decode overlapped with prefill) {ceiling['compute_bound_tok_s']:,.0f} tok/s")  # fmt: skip
    for name, row in results.items():
        if "tok_s" in row:
            share = (f", {row['tok_s'] / ceiling['decode_plus_prefill_floor_tok_s']:.0%} of the decode+prefill floor, "
                     f"{row['tok_s'] / ceiling['compute_bound_tok_s']:.0%} of the compute bound") if ceiling else ""  # fmt: skip
            print(f"{name:20s}: {row['tok_s']:9.1f} tok/s, ratio to plain {row['tok_s'] / base:.2f}{share}")
    for name, matched in checks.items():
        print(f"greedy outputs identical to plain generate ({dtype}), {name}: {matched}/{len(sample)} sampled prompts")
    for check, matched in (exact or {}).items():
        print(f"greedy outputs identical to plain generate in float32 (32 new tokens), {check}: {matched}/{len(sample)}")
    report.update({"machine": gpu_name, "floors": ceiling, "identical_sampled": checks, "sample": len(sample),
                   "prompt_tokens": [min(prompt_tokens), sum(prompt_tokens) / n, max(prompt_tokens)], "shared_prefix": shared})  # fmt: skip
    return report


if __name__ == "__main__":
    main()
