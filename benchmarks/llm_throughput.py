"""Fine-step LLM throughput: our transformers backend against plain HF `generate`, same batch size, one run.

    python benchmarks/llm_throughput.py            # CPU-size: a small random Llama, short prompts
    python benchmarks/llm_throughput.py --gpu      # the issue's shape: Llama-3-8B, 640 in / 160 out (needs a GPU)

The model is random-initialised with the real architecture (no weights can be downloaded), the tokenizer
is SmolLM2's (converted by the build). Prompts are the paper's fine prompt around captions of varied
length, as MERR's are. Baseline: prompts in arrival order, left-padded, `model.generate` per batch.
Ours: `TransformersLLM.generate` (chat template, length-sorted batches). Prints output tokens/s, the
ratio, and whether greedy outputs match on a sample.
"""

from __future__ import annotations

import argparse
import platform
import random
import tempfile
import time
from pathlib import Path

import torch

from merr_builder.annotate.llm.hf import TransformersLLM
from merr_builder.annotate.llm.protocol import ChatRequest, GenerationSettings
from merr_builder.annotate.prompts import FINE_QUESTION, FINE_SYSTEM
from merr_builder.assets import smollm2_dir

CLUE = "The person's eyes widened and the mouth opened; the voice was loud and fast. "


def requests(n: int, min_clues: int, max_clues: int, seed: int = 0) -> list[ChatRequest]:
    rng = random.Random(seed)
    return [
        ChatRequest(FINE_SYSTEM, FINE_QUESTION.format(coarse_caption=CLUE * rng.randint(min_clues, max_clues), label="surprise"))
        for _ in range(n)
    ]


def build_model(folder: Path, gpu: bool) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
    tokenizer.save_pretrained(folder)
    if gpu:  # Llama-3-8B's shape
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                             num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192)  # fmt: skip
    else:
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                             num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048)  # fmt: skip
    config.pad_token_id, config.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)


def plain_generate(llm: TransformersLLM, reqs: list[ChatRequest], settings: GenerationSettings, batch: int) -> tuple[float, int, list[str]]:
    tok, model = llm.tokenizer, llm.model
    prompts = [tok.apply_chat_template(r.messages(), tokenize=False, add_generation_prompt=True) for r in reqs]
    started, produced, texts = time.perf_counter(), 0, []
    with torch.inference_mode():
        for i in range(0, len(prompts), batch):
            enc = tok(prompts[i : i + batch], return_tensors="pt", padding=True, add_special_tokens=False).to(llm.device)
            out = model.generate(**enc, max_new_tokens=settings.max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            new = out[:, enc.input_ids.shape[1] :]
            produced += int((new != tok.pad_token_id).sum())
            texts += [tok.decode(row, skip_special_tokens=True).strip() for row in new]
    return time.perf_counter() - started, produced, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--prompts", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    args = parser.parse_args()
    n = args.prompts or (512 if args.gpu else 48)
    batch = args.batch or (192 if args.gpu else 16)
    reqs = requests(n, 24, 36) if args.gpu else requests(n, 4, 9)
    settings = GenerationSettings(max_new_tokens=160 if args.gpu else 32)

    with tempfile.TemporaryDirectory() as tmp:
        build_model(Path(tmp), args.gpu)
        llm = TransformersLLM(Path(tmp), batch_size=batch)
        if llm.device == "cpu":
            torch.manual_seed(0)
        plain_generate(llm, reqs[:batch], settings, batch)  # warm-up
        base_s, base_tokens, base_texts = plain_generate(llm, reqs, settings, batch)
        started = time.perf_counter()
        ours = llm.generate(reqs, settings)
        ours_s = time.perf_counter() - started
    ours_tokens = sum(c.new_tokens for c in ours)
    sample = range(0, n, max(1, n // 8))
    matches = sum(ours[i].text == base_texts[i] for i in sample)
    print(f"machine: {platform.machine()}, device {llm.device}, torch {torch.__version__}")
    print(f"prompts: {n}, batch {batch}, new tokens {settings.max_new_tokens}, model {'Llama-3-8B shape' if args.gpu else 'small Llama'} (random)")
    print(f"plain HF generate : {base_tokens / base_s:9.1f} output tokens/s ({base_s:.1f} s)")
    print(f"ours (sorted)     : {ours_tokens / ours_s:9.1f} output tokens/s ({ours_s:.1f} s)")
    print(f"ratio ours / plain: {(ours_tokens / ours_s) / (base_tokens / base_s):.2f}")
    print(f"greedy outputs identical on {matches}/{len(sample)} sampled prompts")


if __name__ == "__main__":
    main()
