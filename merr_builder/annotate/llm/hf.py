"""In-process transformers backend: any local Hugging Face causal LM folder, batched.

Prompts are rendered with the tokenizer's own chat template and sorted by length so each batch pads
little; completions come back in the caller's order. Greedy decoding (the default) runs on
`GreedyStaticDecoder` (preallocated KV cache, flash prefill, CUDA-graph decode steps on a GPU, a finished
row refilled with the next prompt; `decode_attention="row_length"`: each row's attention reads only its
own cache blocks; `fuse_elementwise=True`: the layers' norms, RoPE and SwiGLU as compiled, fused kernels;
`fp8=True`: the decoder's linear layers in FP8 through torchao, on GPUs that have FP8
units); sampling and models with sliding-window layers use plain `generate`,
left-padded.

Rows per batch: a number, or automatic (`batch_size=None`): 16 on the CPU; on a GPU as many as let the KV
cache of the call's longest sequence take `KV_SHARE` of the memory free after the weights, up to
`GPU_MAX_ROWS` (an 8B model with the fine step's real prompts, 384 cache slots: about 790 rows on an 80 GB
card, 1,024 on an H200; with 640-token prompts, 832 slots: about 360 on an 80 GB card).
"""

from __future__ import annotations

from pathlib import Path

import torch

from merr_builder.annotate.llm.protocol import ChatRequest, Completion, GenerationSettings, OnAnswer
from merr_builder.annotate.llm.static_decode import DecodeAttention, GreedyStaticDecoder, kv_bytes_per_token

CPU_ROWS = 16
# On a GPU the free memory sets the rows; this cap only where it would allow more. More rows share each
# decode step's weight reads, so the step's matmuls run nearer their peak rate (an 8B step at 256 rows is
# just past the H200's ridge point; cuBLAS reaches its best rate with around a thousand rows), while the KV
# cache a row reads costs the same per row at any count. Beyond ~1,024 little is left to gain and a batch
# only takes longer to come back. Expected, not yet measured at the real prompts' shape: the benchmark runs
# 256 and the automatic count (with 640-token prompts, where prefill dominates, an H100 gave 4,879
# tok/s at 256 rows and 5,016 at 384).
GPU_MAX_ROWS = 1024
KV_SHARE = 0.6  # the rest: prefill activations, the CUDA graph's pool, the allocator's slack


def cache_slots(tokens: int) -> int:
    """KV cache length for sequences of up to `tokens`: a few sizes only, so a decoder (and its CUDA
    graph) is reused across calls."""
    return -(-tokens // 64) * 64


def auto_rows(free_bytes: int, max_len: int, kv_bytes: int, cap: int = GPU_MAX_ROWS) -> int:
    """Rows whose KV cache of `max_len` slots fits in KV_SHARE of `free_bytes`: a multiple of 8, 1 to cap."""
    rows = int(free_bytes * KV_SHARE) // (max_len * kv_bytes)
    return max(1, min(cap, rows - rows % 8 if rows >= 8 else rows))


FP8_WEIGHTS = "fp8: torchao Float8DynamicActivationFloat8Weight, per row, decoder linear layers"


def weights_id(model_dir: Path, fp8: bool) -> dict[str, str]:
    """The model's identity (name, weights file, sha256), marked when its layers run in FP8: its answers
    differ from the bf16 model's, so they are cached and keyed apart."""
    from merr_builder.assets import folder_weights_id

    model = folder_weights_id(model_dir)
    return {**model, "weights": FP8_WEIGHTS} if fp8 else model


def fp8_ready(device: torch.device) -> None:
    """Raise, saying why, where FP8 layers cannot run: they need torchao and a GPU of compute capability
    8.9 or more (FP8 matrix units: Ada, Hopper and later)."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU"
        raise ValueError(f"annotate.fp8 needs a GPU of compute capability 8.9 or more (L40S, H100, H200); here: {where}")
    try:
        import torchao  # noqa: F401
    except ImportError as error:
        raise ValueError("annotate.fp8 needs torchao, not installed here (the fp8 extra: pip install -e '.[fp8]')") from error


def to_fp8(model) -> None:  # type: ignore[no-untyped-def]
    """FP8 weights (one scale per output row) and FP8 activations (one scale per token, computed each call)
    in the decoder's linear layers, in place; the embedding and the head stay in the model's dtype."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    fp8_ready(next(model.parameters()).device)
    quantize_(model.get_decoder(), Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))


class TransformersLLM:
    name = "transformers"

    def __init__(self, model_dir: Path, batch_size: int | None = None, device: str | None = None, dtype: torch.dtype | None = None,
                 static_decode: bool = True, cuda_graph: bool = True, decode_attention: DecodeAttention = "masked",
                 fuse_elementwise: bool = False, fp8: bool = False) -> None:  # fmt: skip
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = Path(model_dir)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if fp8:
            fp8_ready(torch.device(device))  # before the weights are read
        dtype = dtype or (torch.bfloat16 if device == "cuda" else torch.float32)
        model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=dtype).to(device)
        if fp8:
            to_fp8(model)
        self._setup(AutoTokenizer.from_pretrained(self.model_dir), model, batch_size, static_decode, cuda_graph, decode_attention,
                    fuse_elementwise)  # fmt: skip
        self.fp8 = fp8

    @classmethod
    def from_model(cls, model, tokenizer, batch_size: int | None = None, static_decode: bool = True, cuda_graph: bool = True,
                   model_dir: Path | None = None, decode_attention: DecodeAttention = "masked", fuse_elementwise: bool = False,
                   fp8: bool = False) -> TransformersLLM:  # fmt: skip
        """A backend over a model already in memory (the benchmark builds an 8B-shaped one on the GPU);
        `fp8`: its layers were made FP8 (`to_fp8`)."""
        llm = cls.__new__(cls)
        llm.model_dir = Path(model_dir or getattr(model, "name_or_path", "") or "model")
        llm._setup(tokenizer, model, batch_size, static_decode, cuda_graph, decode_attention, fuse_elementwise)
        llm.fp8 = fp8
        return llm

    def _setup(self, tokenizer, model, batch_size: int | None, static_decode: bool, cuda_graph: bool, decode_attention: DecodeAttention,
               fuse_elementwise: bool) -> None:  # fmt: skip
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"  # plain generate continues from the right end of every row
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = model.eval()
        self.device = str(next(model.parameters()).device)
        self.batch_size = batch_size  # None: automatic (`rows_for`)
        self._auto_rows: dict[int, int] = {}
        layer_types = set(getattr(model.config, "layer_types", None) or ["full_attention"])
        self.static_decode = static_decode and layer_types == {"full_attention"}
        self.cuda_graph = cuda_graph
        self.decode_attention = decode_attention
        self.fuse_elementwise = fuse_elementwise
        self._decoder: GreedyStaticDecoder | None = None

    def model_id(self) -> dict[str, str]:
        return weights_id(self.model_dir, self.fp8)

    def _prompt(self, request: ChatRequest) -> str:
        return self.tokenizer.apply_chat_template(request.messages(), tokenize=False, add_generation_prompt=True)

    def rows_for(self, max_len: int) -> int:
        """Rows per batch for sequences of up to `max_len` tokens (prompt + new)."""
        if self.batch_size is not None:
            return self.batch_size
        if not self.device.startswith("cuda"):
            return CPU_ROWS
        max_len = cache_slots(max_len)
        if max_len not in self._auto_rows:  # measured once per size, with no cache of ours alive
            self._decoder = None
            torch.cuda.empty_cache()
            free, _ = torch.cuda.mem_get_info(torch.device(self.device))
            kv_bytes = kv_bytes_per_token(self.model.config.get_text_config(), next(self.model.parameters()).dtype)
            self._auto_rows[max_len] = auto_rows(free, max_len, kv_bytes)
        return self._auto_rows[max_len]

    def eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
        return ids | {self.tokenizer.eos_token_id}

    @torch.inference_mode()
    def generate(self, requests: list[ChatRequest], settings: GenerationSettings, on_answer: OnAnswer | None = None) -> list[Completion]:
        if not requests:
            return []
        if any(r.image_jpeg is not None for r in requests):
            raise ValueError(f"{self.model_dir}: the transformers backend runs text-only causal LMs; describe images "
                             "through an OpenAI-compatible vision server (annotate.objective_backend openai)")
        if self.static_decode and settings.temperature == 0:
            return self._generate_static(requests, settings, on_answer)
        return self._generate_plain(requests, settings, on_answer)

    def _generate_static(self, requests: list[ChatRequest], settings: GenerationSettings, on_answer: OnAnswer | None) -> list[Completion]:
        ids = [self.tokenizer(self._prompt(r), add_special_tokens=False).input_ids for r in requests]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        max_len = cache_slots(max(len(i) for i in ids) + settings.max_new_tokens)
        batch = min(self.rows_for(max_len), len(ids))
        decoder = self._decoder
        if decoder is None or decoder.batch != batch or decoder.max_len < max_len:
            self._decoder = None  # free the old cache before allocating the new one
            decoder = self._decoder = GreedyStaticDecoder(self.model, batch, max_len, self.eos_ids(), self.tokenizer.pad_token_id,
                                                          cuda_graph=self.cuda_graph, attention=self.decode_attention,
                                                          fused=self.fuse_elementwise)  # fmt: skip
        results: list[Completion | None] = [None] * len(ids)

        def finished(position: int, tokens: list[int], stopped: bool) -> None:
            index = order[position]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
            finish = "stop" if stopped or len(tokens) < settings.max_new_tokens else "length"
            results[index] = Completion(text, finish, len(tokens))
            if on_answer is not None:  # each answer is handed on (stored) as its row finishes
                on_answer(index, results[index])

        # Shortest prompts first: a refill's prompt is about as long as the rows beside it.
        decoder.decode([ids[i] for i in order], settings.max_new_tokens, finished)
        return results  # type: ignore[return-value]

    def _generate_plain(self, requests: list[ChatRequest], settings: GenerationSettings, on_answer: OnAnswer | None) -> list[Completion]:
        prompts = [self._prompt(r) for r in requests]
        lengths = [len(self.tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        results: list[Completion | None] = [None] * len(prompts)
        eos = self.eos_ids()
        rows = self.rows_for(max(lengths) + settings.max_new_tokens)
        for start in range(0, len(order), rows):
            batch = order[start : start + rows]
            encoded = self.tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
            encoded = encoded.to(self.device)
            sampling = settings.temperature > 0
            if sampling:
                torch.manual_seed(settings.seed)
            output = self.model.generate(
                **encoded,
                max_new_tokens=settings.max_new_tokens,
                do_sample=sampling,
                temperature=settings.temperature if sampling else None,
                top_p=settings.top_p if sampling else None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            new = output[:, encoded.input_ids.shape[1] :]
            for row, index in enumerate(batch):
                tokens = new[row].tolist()
                cut = next((i for i, t in enumerate(tokens) if t in eos), None)
                stopped = cut is not None
                if stopped:
                    tokens = tokens[:cut]
                while tokens and tokens[-1] == self.tokenizer.pad_token_id and not stopped:
                    tokens.pop()
                text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
                finish = "stop" if stopped or len(tokens) < settings.max_new_tokens else "length"
                results[index] = Completion(text, finish, len(tokens))
                if on_answer is not None:  # each batch's answers are handed on (stored) as the batch ends
                    on_answer(index, results[index])
        return results  # type: ignore[return-value]
