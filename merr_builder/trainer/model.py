"""Emotion-LLaMA: a causal LM with LoRA (peft), one linear projector per feature stream and, for the
global stream, a frozen vision tower.

The prompt is `[INST] <video><VideoHere></video> <feature><FeatureHere></feature> The person in video
says: {s}. [{task}] {instruction} [/INST]`. `sequence()` turns it into token ids with negative markers
where feature tokens go (the video-slot streams at <VideoHere>, the others at <FeatureHere>; the global
stream has N markers, one per merged patch token), and `embed()` replaces the markers by the projected
features. Training and generation both build their inputs through these two functions, so the feature
tokens sit at the same positions in both (the original placed them differently in `generate()`).

The global stream as MiniGPT-v2 builds it: the tower's patch tokens (B, P, d), four consecutive ones
concatenated (B, P/4, 4d; zero-padded where P is no multiple of 4), one Linear to the LM's width.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from merr_builder.encoders import VisionTower
from merr_builder.tasks import FEATURE_SLOT, VIDEO_SLOT
from merr_builder.trainer.data import Sample
from merr_builder.trainer.features import STREAMS, require_vision

IGNORE = -100
# Training batches are padded to a multiple of this: attention kernels (cuDNN's on Hopper) are built once
# per new sequence length, at up to seconds each, so a bounded set of widths beats exact ones (on an H200,
# 8B: 3.3k tokens/s while every width is new, 12.9k once seen; benchmarks/RESULTS.md).
PAD_MULTIPLE = 16


def training_width(longest: int) -> int:
    """A training batch's width for its longest sequence: rounded up to PAD_MULTIPLE."""
    return -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE


def prompt_text(instruction_text: str) -> str:
    return f"[INST] {instruction_text} [/INST]"


@dataclass
class Batch:
    ids: torch.Tensor  # (B, T) token ids; feature positions hold -1 - stream index
    attention_mask: torch.Tensor
    labels: torch.Tensor | None  # IGNORE outside the answer
    features: dict[str, torch.Tensor]  # stream → (B, dim); global: (B, 3, H, W) pixels or (B, P, d) patch tokens

    def to(self, device) -> Batch:
        move = lambda t: t.to(device) if t is not None else None
        return Batch(move(self.ids), move(self.attention_mask), move(self.labels), {k: move(v) for k, v in self.features.items()})

    def tokens(self) -> int:
        return int(self.attention_mask.sum())


class PromptBuilder:
    """Token ids and batches; light enough to travel to data-loader workers (no model inside)."""

    def __init__(self, tokenizer, streams: list[str], max_answer_tokens: int = 1024, counts: dict[str, int] | None = None) -> None:
        self.tokenizer, self.streams, self.max_answer_tokens = tokenizer, list(streams), max_answer_tokens
        self.counts = {s: (counts or {}).get(s, 1) for s in self.streams}  # tokens per stream
        self.video_streams = [s for s in self.streams if STREAMS[s].slot == "video"]
        self.feature_streams = [s for s in self.streams if STREAMS[s].slot == "feature"]

    def __call__(self, samples: list[Sample]) -> Batch:
        return self.collate(samples, train=True)

    def sequence(self, instruction_text: str, answer: str | None) -> tuple[list[int], int]:
        """Token ids of prompt (+ answer and end-of-sequence) with feature markers; and the prompt length."""
        tok = self.tokenizer
        text = prompt_text(instruction_text)
        before, rest = text.split(VIDEO_SLOT, 1)
        middle, after = rest.split(FEATURE_SLOT, 1)
        marker = {s: -1 - i for i, s in enumerate(self.streams)}
        ids = [tok.bos_token_id] if tok.bos_token_id is not None else []
        ids += tok(before, add_special_tokens=False).input_ids + [marker[s] for s in self.video_streams for _ in range(self.counts[s])]
        ids += tok(middle, add_special_tokens=False).input_ids + [marker[s] for s in self.feature_streams for _ in range(self.counts[s])]
        ids += tok(after, add_special_tokens=False).input_ids
        prompt_length = len(ids)
        if answer is not None:
            ids += tok(" " + answer, add_special_tokens=False).input_ids[: self.max_answer_tokens] + [tok.eos_token_id]
        return ids, prompt_length

    def collate(self, samples: list[Sample], train: bool = True) -> Batch:
        """Right-padded for training (labels on the answer only, width a multiple of PAD_MULTIPLE),
        left-padded for generation."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        seqs = [self.sequence(s.instruction, s.answer if train else None) for s in samples]
        width = max(len(ids) for ids, _ in seqs)
        if train:
            width = training_width(width)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long) if train else None
        for row, (seq, prompt_length) in enumerate(seqs):
            start = 0 if train else width - len(seq)
            ids[row, start : start + len(seq)] = torch.tensor(seq)
            mask[row, start : start + len(seq)] = 1
            if labels is not None:
                labels[row, prompt_length : len(seq)] = torch.tensor(seq[prompt_length:])
        features = {s: torch.from_numpy(np.stack([x.features[s] for x in samples])) for s in self.streams}
        return Batch(ids, mask, labels, features)


class EmotionLlama(nn.Module):
    def __init__(self, lm, tokenizer, streams: list[str], max_answer_tokens: int = 1024, dims: dict[str, int] | None = None,
                 vision: dict | None = None, tower: VisionTower | None = None) -> None:  # fmt: skip
        super().__init__()
        self.lm, self.tokenizer, self.streams = lm, tokenizer, list(streams)
        self.vision, self.tower = vision, tower  # tower: None when the patch tokens come stored (merr encode)
        require_vision(self.streams, vision)
        counts = {s: vision["tokens"] for s in self.streams if STREAMS[s].kind == "patches"} if vision else {}
        self.prompts = PromptBuilder(tokenizer, streams, max_answer_tokens, counts)
        hidden = lm.get_input_embeddings().weight.shape[1]
        dims = {**{s: STREAMS[s].dim for s in self.streams}, **(dims or {})}
        missing = [s for s in self.streams if not dims.get(s)]
        if missing:
            raise ValueError(f"feature stream(s) {missing} need their width (from the data's FeatureScaler)")
        self.projectors = nn.ModuleDict({s: nn.Linear(dims[s], hidden) for s in self.streams})

    def embed(self, batch: Batch) -> torch.Tensor:
        embeddings = self.lm.get_input_embeddings()
        out = embeddings(batch.ids.clamp(min=0))
        for index, stream in enumerate(self.streams):
            rows, cols = torch.nonzero(batch.ids == -1 - index, as_tuple=True)
            projector = self.projectors[stream]  # float32 even over a bf16 base
            if STREAMS[stream].kind == "patches":  # N markers per row, row by row in order (nonzero is row-major)
                projected = projector(self.merged_patches(batch.features[stream]).to(projector.weight.dtype))
                values = projected.reshape(-1, projected.shape[-1])
            else:
                values = projector(batch.features[stream].to(projector.weight.dtype))[rows]
            out = out.index_put((rows, cols), values.to(out.dtype))
        return out

    def merged_patches(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, N, merge × width): the tower's patch tokens (run here on pixels, or stored), `merge`
        consecutive tokens side by side."""
        if inputs.ndim == 4 and self.tower is None:
            raise ValueError("pixels for the global stream but no vision tower loaded")
        tokens = self.tower(inputs) if inputs.ndim == 4 else inputs
        merge = self.vision["merge"]
        batch, patches, width = tokens.shape
        pad = -patches % merge
        if pad:
            tokens = torch.cat([tokens, tokens.new_zeros(batch, pad, width)], 1)
        return tokens.reshape(batch, (patches + pad) // merge, merge * width)

    # -- use ------------------------------------------------------------------------------------------
    def forward(self, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy over the answer tokens."""
        return self.lm(inputs_embeds=self.embed(batch), attention_mask=batch.attention_mask, labels=batch.labels).loss

    def logits(self, batch: Batch) -> torch.Tensor:
        return self.lm(inputs_embeds=self.embed(batch), attention_mask=batch.attention_mask).logits

    @torch.no_grad()
    def generate(self, samples: list[Sample], max_new_tokens: int = 160) -> list[str]:
        batch = self.prompts.collate(samples, train=False).to(next(self.parameters()).device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        out = self.lm.generate(inputs_embeds=self.embed(batch), attention_mask=batch.attention_mask, max_new_tokens=max_new_tokens,
                               do_sample=False, pad_token_id=pad, eos_token_id=self.tokenizer.eos_token_id)  # fmt: skip
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in out]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().cpu().clone() for name, p in self.named_parameters() if p.requires_grad}


def build_model(model_dir: Path, streams: list[str], lora_r: int = 64, lora_alpha: int = 16, lora_dropout: float = 0.05,
                lora_targets: list[str] | tuple[str, ...] = ("q_proj", "v_proj"), dtype: torch.dtype = torch.float32,
                gradient_checkpointing: bool = False, max_answer_tokens: int = 1024, dims: dict[str, int] | None = None,
                vision: dict | None = None) -> EmotionLlama:  # fmt: skip
    """A local causal LM folder, frozen, in `dtype`, with LoRA on `lora_targets` and fresh projectors; the
    trainable weights (LoRA: peft's adapter autocast; projectors) are float32 whatever `dtype` is. With a
    global stream fed by pixels (`vision["source"] == "frame"`) the frozen tower is loaded in `dtype` too."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    if gradient_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lm.enable_input_require_grads()
    lora = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=list(lora_targets), task_type="CAUSAL_LM")
    tower = VisionTower(Path(vision["tower"]), dtype) if vision and vision["source"] == "frame" and "global" in streams else None
    return EmotionLlama(get_peft_model(lm, lora), tokenizer, streams, max_answer_tokens, dims, vision, tower)
