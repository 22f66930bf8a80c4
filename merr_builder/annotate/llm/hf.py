"""In-process transformers backend: any local Hugging Face causal LM folder, batched.

Prompts are rendered with the tokenizer's own chat template, sorted by length so each batch pads little,
left-padded, and decoded greedily by default; completions come back in the caller's order.
"""

from __future__ import annotations

from pathlib import Path

import torch

from merr_builder.annotate.llm.protocol import ChatRequest, Completion, GenerationSettings


class TransformersLLM:
    name = "transformers"

    def __init__(self, model_dir: Path, batch_size: int = 16, device: str | None = None, dtype: torch.dtype | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = Path(model_dir)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or (torch.bfloat16 if self.device == "cuda" else torch.float32)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.tokenizer.padding_side = "left"  # generation continues from the right end of every row
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=dtype).to(self.device).eval()
        self.batch_size = batch_size

    def model_id(self) -> dict[str, str]:
        from merr_builder.assets import sha256_file

        weights = sorted(self.model_dir.glob("*.safetensors"))
        return {"name": self.model_dir.name, "file": str(weights[0]) if weights else str(self.model_dir),
                "sha256": sha256_file(weights[0]) if weights else ""}  # fmt: skip

    def _prompt(self, request: ChatRequest) -> str:
        return self.tokenizer.apply_chat_template(request.messages(), tokenize=False, add_generation_prompt=True)

    @torch.inference_mode()
    def generate(self, requests: list[ChatRequest], settings: GenerationSettings) -> list[Completion]:
        prompts = [self._prompt(r) for r in requests]
        lengths = [len(self.tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        results: list[Completion | None] = [None] * len(prompts)
        eos = self.tokenizer.eos_token_id
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
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
                stopped = eos in tokens
                if stopped:
                    tokens = tokens[: tokens.index(eos)]
                while tokens and tokens[-1] == self.tokenizer.pad_token_id and not stopped:
                    tokens.pop()
                text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
                finish = "stop" if stopped or len(tokens) < settings.max_new_tokens else "length"
                results[index] = Completion(text, finish, len(tokens))
        return results  # type: ignore[return-value]
