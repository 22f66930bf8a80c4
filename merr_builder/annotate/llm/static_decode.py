"""Greedy batched decoding over a preallocated KV cache: the fast path of the transformers backend.

Plain `generate` pads prompts on the left, grows its KV cache by concatenation every step (a copy of the
whole cache per layer per step) and launches each step's ~30 kernels per layer from Python. Here:

- prompts are **right-padded** for prefill, so the plain causal mask is exact for every real token and
  attention runs on SDPA's flash kernel; each row's first new token is read at its own last real token;
- the KV cache is allocated once per call (`StaticKV`, batch × max length) and written in place;
- every decode step writes all rows at one shared slot; a per-row `valid` mask hides each row's padding
  gap, and each row's RoPE position continues from its own length, so the model sees exactly the
  sequence it would see alone;
- on CUDA the whole decode step (forward, argmax, bookkeeping) is captured once as a CUDA graph and
  replayed, so the step costs its kernels' time, not Python's. No host sync happens inside a step; the
  loop checks for "all rows finished" every few steps.

Only greedy decoding of models whose layers all use full attention goes through here; anything else
(sampling, sliding-window layers) uses plain `generate` (see `TransformersLLM`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


def kv_bytes_per_token(config, dtype: torch.dtype) -> int:
    """Bytes of KV cache one token takes in every layer (keys and values)."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


class StaticKV:
    """The cache object the model's attention layers call `update` on.

    Prefill (`prefill_rows` set): keys of rows `prefill_rows`, positions 0..S-1, are stored and returned
    as they are, so attention sees only the prompt (flash kernel, causal). Decode: the step's key is
    written at `slot` for every row and the whole buffer is returned (static shapes; `valid` masks it).
    """

    def __init__(self, n_layers: int, batch: int, max_len: int) -> None:
        self.n_layers, self.batch, self.max_len = n_layers, batch, max_len
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.prefill_rows: slice | None = None
        self.slot: torch.Tensor | None = None  # 0-dim long tensor on the model's device

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        if len(self.keys) <= layer_idx:  # first prefill: shapes come from the layer itself
            _, kv_heads, _, head_dim = key_states.shape
            shape = (self.batch, kv_heads, self.max_len, head_dim)
            self.keys.append(torch.zeros(shape, dtype=key_states.dtype, device=key_states.device))
            self.values.append(torch.zeros(shape, dtype=value_states.dtype, device=value_states.device))
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if self.prefill_rows is not None:
            length = key_states.shape[2]
            keys[self.prefill_rows, :, :length] = key_states
            values[self.prefill_rows, :, :length] = value_states
            return key_states, value_states
        keys.index_copy_(2, self.slot.view(1), key_states)
        values.index_copy_(2, self.slot.view(1), value_states)
        return keys, values

    # Asked by transformers' mask builder during prefill only (decode passes a ready 4-D mask): the prompt
    # starts at position 0 and attends to itself alone, so SDPA may take its causal flash path.
    def get_query_offset(self, layer_idx: int = 0) -> int:
        return 0

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return query_length, 0


@dataclass
class DecodedBatch:
    tokens: list[list[int]]  # new tokens per row, cut before the first end-of-sequence token
    stopped: list[bool]  # whether the row ended with end-of-sequence (else it hit max_new_tokens)


class GreedyStaticDecoder:
    """Greedy decoding of batches of token-id prompts with one cache and (on CUDA) one captured step.

    `batch` rows and `max_len` cache slots are fixed for the decoder's life, so the CUDA graph captured
    for the first batch is replayed for every later one. Shorter batches are filled with copies of
    their last prompt (their outputs are dropped).
    """

    check_every = 16  # decode steps between host checks for "every row finished"

    def __init__(self, model, batch: int, max_len: int, eos_ids: set[int], pad_id: int,
                 cuda_graph: bool = True, prefill_rows: int = 64) -> None:  # fmt: skip
        self.model, self.batch, self.max_len = model, batch, max_len
        self.decoder, self.lm_head = model.get_decoder(), model.get_output_embeddings()
        self.device = next(model.parameters()).device
        self.eos = torch.tensor(sorted(eos_ids), device=self.device)
        self.pad_id = pad_id
        self.prefill_chunk = prefill_rows  # rows per prefill forward: bounds activation memory
        self.cache = StaticKV(model.config.num_hidden_layers, batch, max_len)
        dev, long = self.device, torch.long
        self.cache.slot = torch.zeros((), dtype=long, device=dev)
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=dev)  # which cache slots each row sees
        self.current = torch.zeros(batch, 1, dtype=long, device=dev)  # the token fed to the next step
        self.position = torch.zeros(batch, 1, dtype=long, device=dev)  # its RoPE position, per row
        self.step = torch.zeros((), dtype=long, device=dev)
        self.done = torch.zeros(batch, dtype=torch.bool, device=dev)
        self.out: torch.Tensor | None = None
        self.use_graph = cuda_graph and self.device.type == "cuda"  # (and max_new_tokens >= 4: see _run_step)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.seconds = {"prefill": 0.0, "decode": 0.0}  # accumulated; read by the benchmark

    @torch.inference_mode()
    def decode(self, prompts: list[list[int]], max_new_tokens: int) -> DecodedBatch:
        n = len(prompts)
        if not 0 < n <= self.batch:
            raise ValueError(f"a batch holds 1 to {self.batch} prompts, got {n}")
        rows = prompts + [prompts[-1]] * (self.batch - n)
        lengths = [len(p) for p in rows]
        width = max(lengths)
        if width + max_new_tokens > self.max_len:
            raise ValueError(f"prompt of {width} tokens + {max_new_tokens} new exceeds the cache ({self.max_len})")
        if self.out is None or self.out.shape[1] != max_new_tokens:
            self.out = torch.full((self.batch, max_new_tokens), self.pad_id, dtype=torch.long, device=self.device)
            self.graph = None  # the captured step writes into `out`
        marks = [_Mark(self.device) for _ in range(3)]
        first = self._prefill(rows, lengths, width)
        self._start_decoding(first, lengths, width)
        marks[1].record()
        for step in range(1, max_new_tokens):
            if step % self.check_every == 0 and bool(self.done.all()):
                break
            self._run_step()
        marks[2].record()
        tokens = self.out[:n].tolist()
        self.seconds["prefill"] += marks[0].until(marks[1])
        self.seconds["decode"] += marks[1].until(marks[2])
        result = DecodedBatch([], [])
        eos = set(self.eos.tolist())
        for row in tokens:
            cut = next((i for i, t in enumerate(row) if t in eos), None)
            result.tokens.append(row if cut is None else row[:cut])
            result.stopped.append(cut is not None)
        return result

    def _prefill(self, rows: list[list[int]], lengths: list[int], width: int) -> torch.Tensor:
        ids = torch.full((self.batch, width), self.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        ids = ids.to(self.device)
        last = torch.tensor(lengths, device=self.device) - 1
        positions = torch.arange(width, device=self.device).expand(self.batch, width)
        first = torch.empty(self.batch, dtype=torch.long, device=self.device)
        for start in range(0, self.batch, self.prefill_chunk):
            part = slice(start, min(start + self.prefill_chunk, self.batch))
            self.cache.prefill_rows = part
            hidden = self.decoder(input_ids=ids[part], position_ids=positions[part], cache=self.cache, use_cache=True).last_hidden_state
            at_last = hidden[torch.arange(hidden.shape[0], device=self.device), last[part]]
            first[part] = self.lm_head(at_last).argmax(-1)
        self.cache.prefill_rows = None
        return first

    def _start_decoding(self, first: torch.Tensor, lengths: list[int], width: int) -> None:
        length = torch.tensor(lengths, device=self.device)
        self.valid.copy_(torch.arange(self.max_len, device=self.device)[None, :] < length[:, None])
        self.out.fill_(self.pad_id)
        self.out[:, 0] = first
        self.done.copy_(self._is_eos(first))
        self.current.copy_(first[:, None])
        self.position.copy_(length[:, None])
        self.cache.slot.fill_(width)
        self.step.fill_(1)

    def _is_eos(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens[:, None] == self.eos).any(-1)

    def _step(self) -> None:
        """One decode step for every row; tensor ops only (capturable)."""
        self.valid.index_fill_(1, self.cache.slot.view(1), True)
        hidden = self.decoder(
            input_ids=self.current, attention_mask=self.valid[:, None, None, :], position_ids=self.position,
            cache=self.cache, use_cache=True,
        ).last_hidden_state  # fmt: skip
        token = self.lm_head(hidden[:, -1]).argmax(-1)
        token = torch.where(self.done, self.pad_id, token)
        self.out.index_copy_(1, self.step.view(1), token[:, None])
        self.done |= self._is_eos(token)
        self.current.copy_(token[:, None])
        self.position += 1
        self.cache.slot += 1
        self.step += 1

    def _run_step(self) -> None:
        if not self.use_graph or self.out.shape[1] < 4:  # capture's warm-up runs two steps ahead
            self._step()
            return
        if self.graph is None:
            self.graph = self._capture()
        self.graph.replay()

    def _capture(self) -> torch.cuda.CUDAGraph:
        # Warm up on a side stream (as CUDA graph capture requires), then capture; the state that the
        # warm-up steps advanced is put back so the captured step starts where decoding stands.
        saved = [t.clone() for t in (self.valid, self.current, self.position, self.cache.slot, self.step, self.done, self.out)]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._step()
        for tensor, value in zip((self.valid, self.current, self.position, self.cache.slot, self.step, self.done, self.out), saved):
            tensor.copy_(value)
        return graph


class _Mark:
    """A point in device time (a CUDA event, or the host clock on the CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.event = torch.cuda.Event(enable_timing=True) if device.type == "cuda" else None
        self.record()

    def record(self) -> None:
        if self.event is not None:
            self.event.record()
        else:
            self.time = time.perf_counter()

    def until(self, later: _Mark) -> float:
        if self.event is not None:
            later.event.synchronize()
            return self.event.elapsed_time(later.event) / 1000
        return later.time - self.time
