"""Greedy batched decoding over a preallocated KV cache: the fast path of the transformers backend.

Plain `generate` pads prompts on the left, grows its KV cache by concatenation every step (a copy of the
whole cache per layer per step), launches each step's ~30 kernels per layer from Python, and keeps a
batch's finished rows in it until its longest answer ends. Here:

- prompts are **right-padded** for prefill, so the plain causal mask is exact for every real token and
  attention runs on SDPA's flash kernel; each row's first new token is read at its own last real token;
- the tokens every prompt of a prefill starts with (the fine step's chat header and system prompt: about a
  quarter of a real prompt) are run **once**, as one row, and their keys and values copied into every row:
  they are the same in each (same tokens at the same positions); the rest of each prompt attends to them;
- the KV cache is allocated once (`StaticKV`, rows × slots) and written in place; every decode step
  writes all rows at one shared slot, which runs round the cache as a ring; a per-row `valid` mask
  hides what is not the row's, and each row's RoPE position continues from its own length, so the model
  sees exactly the sequence it would see alone;
- **a finished row is refilled** with the next waiting prompt (continuous batching): its prompt is
  prefilled into the slots just behind the shared one and it decodes on from there. A row's context
  (prompt + answer) fits in the ring, so the slot never reaches what the row still reads;
- with `attention="row_length"` a decode step's attention reads only the cache blocks each row holds
  (FlexAttention, `row_attention.py`) instead of every slot under a mask;
- with `fused=True` the layers' element-wise work (RMSNorm, RoPE, SwiGLU) runs as compiled, fused kernels
  (`fused_layers.py`), in prefill and in every decode step;
- on CUDA the whole decode step (forward, argmax, bookkeeping) is captured once as a CUDA graph and
  replayed, so the step costs its kernels' time, not Python's. No host sync happens inside a step; every
  `check_every` steps the loop reads which rows finished, hands their answers on and refills them.

Only greedy decoding of models whose layers all use full attention goes through here; anything else
(sampling, sliding-window layers) uses plain `generate` (see `TransformersLLM`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Literal

import torch

from merr_builder.annotate.llm.fused_layers import fused_elementwise
from merr_builder.annotate.llm.row_attention import RowBlocks, row_length_attention

DecodeAttention = Literal["masked", "row_length"]  # every cache slot under the row's mask | the row's blocks only


def kv_bytes_per_token(config, dtype: torch.dtype) -> int:
    """Bytes of KV cache one token takes in every layer (keys and values)."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


class StaticKV:
    """The cache object the model's attention layers call `update` on.

    Prefill (`prefill_rows` set): the keys of those rows (an index tensor) are stored at the slots
    `prefill_slots` (one per prompt position; they may wrap round the ring; keys of one row are stored in
    every row) and returned as they are, so attention sees only the prompt (flash kernel, causal); with
    `prefill_sees` set (the rest of prompts whose shared prefix is stored), the keys at those slots are
    returned instead: the prefix's and the new ones. Decode: the step's key is written at `slot` for every
    row and the whole buffer is returned (static shapes; `valid` masks it).
    """

    def __init__(self, n_layers: int, batch: int, max_len: int) -> None:
        self.n_layers, self.batch, self.max_len = n_layers, batch, max_len
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.prefill_rows: torch.Tensor | None = None
        self.prefill_slots: torch.Tensor | None = None
        self.prefill_sees: torch.Tensor | None = None
        self.slot: torch.Tensor | None = None  # 0-dim long tensor on the model's device

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        if len(self.keys) <= layer_idx:  # first prefill: shapes come from the layer itself
            _, kv_heads, _, head_dim = key_states.shape
            shape = (self.batch, kv_heads, self.max_len, head_dim)
            self.keys.append(torch.zeros(shape, dtype=key_states.dtype, device=key_states.device))
            self.values.append(torch.zeros(shape, dtype=value_states.dtype, device=value_states.device))
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if self.prefill_rows is not None:
            where = (self.prefill_rows[:, None], slice(None), self.prefill_slots[None, :])  # → (rows, slots, heads, dim)
            keys[where] = key_states.transpose(1, 2)
            values[where] = value_states.transpose(1, 2)
            if self.prefill_sees is None:
                return key_states, value_states
            sees = (self.prefill_rows[:, None], slice(None), self.prefill_sees[None, :])
            return keys[sees].transpose(1, 2), values[sees].transpose(1, 2)
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
    tokens: list[list[int]]  # new tokens per prompt, cut before the first end-of-sequence token
    stopped: list[bool]  # whether the row ended with end-of-sequence (else it hit max_new_tokens)


OnRow = Callable[[int, list[int], bool], None]  # (prompt index, its new tokens, stopped) as each finishes


class GreedyStaticDecoder:
    """Greedy decoding of token-id prompts with one cache and (on CUDA) one captured step.

    `batch` rows and `max_len` cache slots are fixed for the decoder's life, so the CUDA graph captured
    for the first call is replayed for every later one. The prompts go through the rows in the order
    given: the first `batch` start together, and each row that finishes takes the next waiting prompt.
    While fewer prompts than rows are left, the idle rows step along doing nothing (their outputs are
    dropped).
    """

    check_every = 16  # decode steps between host reads of which rows finished

    def __init__(self, model, batch: int, max_len: int, eos_ids: set[int], pad_id: int,
                 cuda_graph: bool = True, prefill_rows: int = 64, attention: DecodeAttention = "masked", fused: bool = False) -> None:  # fmt: skip
        self.model, self.batch, self.max_len = model, batch, max_len
        self.decoder, self.lm_head = model.get_decoder(), model.get_output_embeddings()
        self.device = next(model.parameters()).device
        self.eos_ids = set(eos_ids)
        self.eos = torch.tensor(sorted(eos_ids), device=self.device)
        self.pad_id = pad_id
        self.prefill_chunk = prefill_rows  # rows per prefill forward: bounds activation memory
        self.cache = StaticKV(model.config.num_hidden_layers, batch, max_len)
        dev, long = self.device, torch.long
        self.cache.slot = torch.zeros((), dtype=long, device=dev)
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=dev)  # which cache slots each row sees
        self.current = torch.zeros(batch, 1, dtype=long, device=dev)  # the token fed to the next step
        self.position = torch.zeros(batch, 1, dtype=long, device=dev)  # its RoPE position, per row
        self.produced = torch.zeros(batch, dtype=long, device=dev)  # new tokens each row has written
        self.done = torch.ones(batch, dtype=torch.bool, device=dev)
        self.attention = attention
        self.row_blocks = RowBlocks(self.valid) if attention == "row_length" else None
        self.fused = fused
        self.max_new = 0
        self.out: torch.Tensor | None = None  # (batch, max_new + 1): a finished row writes into the last column
        self.use_graph = cuda_graph and self.device.type == "cuda"
        self.graph: torch.cuda.CUDAGraph | None = None
        self.seconds = {"prefill": 0.0, "decode": 0.0}  # accumulated; read by the benchmark
        self.refills = 0  # prompts that took over a row another had finished in (accumulated)
        self.shared_tokens = 0  # prompt tokens not prefilled because a shared prefix was run once (accumulated)
        # Row-steps of decoding run, and those that made a token of an answer (accumulated): the rest were
        # rows that had finished and waited for the next check, or had no prompt left (the last batch's tail).
        self.row_steps = self.busy_row_steps = 0

    @torch.inference_mode()
    def decode(self, prompts: list[list[int]], max_new_tokens: int, on_row: OnRow | None = None) -> DecodedBatch:
        """Every prompt's greedy answer, in the prompts' order; `on_row` hears each as its row finishes."""
        if not prompts:
            return DecodedBatch([], [])
        with ExitStack() as during:
            if self.row_blocks is not None:
                during.enter_context(row_length_attention(self.model))
            if self.fused:
                during.enter_context(fused_elementwise(self.model))
            return self._decode(prompts, max_new_tokens, on_row)

    def _decode(self, prompts: list[list[int]], max_new_tokens: int, on_row: OnRow | None) -> DecodedBatch:
        width = max(len(p) for p in prompts)
        if width + max_new_tokens > self.max_len:
            raise ValueError(f"prompt of {width} tokens + {max_new_tokens} new exceeds the cache ({self.max_len})")
        if self.out is None or self.max_new != max_new_tokens:
            self.max_new = max_new_tokens
            self.out = torch.full((self.batch, max_new_tokens + 1), self.pad_id, dtype=torch.long, device=self.device)
            self.graph = None  # the captured step writes into `out`
        result = DecodedBatch([[] for _ in prompts], [False] * len(prompts))
        waiting = iter(range(len(prompts)))
        marks = {"prefill": 0.0, "decode": 0.0}
        self.cache.slot.fill_(0)
        # All rows start together (idle ones on a copy of the first prompt, so that no row attends to nothing).
        holder: list[int | None] = [next(waiting, None) for _ in range(self.batch)]  # the prompt each row decodes
        self._timed(marks, "prefill", self._start, list(range(self.batch)), [prompts[i if i is not None else 0] for i in holder])
        self.done[[r for r, i in enumerate(holder) if i is None]] = True
        while True:
            done, produced = self.done.tolist(), self.produced.tolist()
            finished = [r for r, i in enumerate(holder) if i is not None and done[r]]
            if finished:
                for r, row in zip(finished, self.out[finished].tolist()):
                    self._hand_on(result, holder[r], row[: produced[r]], on_row)  # type: ignore[arg-type]
                    holder[r] = None
                    self.busy_row_steps += produced[r] - 1  # (its first token came from prefill)
                refill = list(zip(finished, waiting))  # (row, prompt): as many as rows freed and prompts left
                if refill:
                    self._timed(marks, "prefill", self._start, [r for r, _ in refill], [prompts[i] for _, i in refill])
                    for r, i in refill:
                        holder[r] = i
                    self.refills += len(refill)
            if all(i is None for i in holder):
                break
            self._timed(marks, "decode", self._run_steps)
        self.seconds["prefill"] += marks["prefill"]
        self.seconds["decode"] += marks["decode"]
        return result

    def _hand_on(self, result: DecodedBatch, index: int, row: list[int], on_row: OnRow | None) -> None:
        cut = next((k for k, t in enumerate(row) if t in self.eos_ids), None)
        result.tokens[index] = row if cut is None else row[:cut]
        result.stopped[index] = cut is not None
        if on_row is not None:
            on_row(index, result.tokens[index], result.stopped[index])

    def _timed(self, marks: dict[str, float], part: str, fn, *args) -> None:  # type: ignore[no-untyped-def]
        start = _Mark(self.device)
        fn(*args)
        marks[part] += start.until(_Mark(self.device))

    def _start(self, rows: list[int], prompts: list[list[int]]) -> None:
        """Prefill `prompts` into `rows` at the slots just behind the shared one, and set the rows decoding."""
        lengths = [len(p) for p in prompts]
        width = max(lengths)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for k, prompt in enumerate(prompts):
            ids[k, : len(prompt)] = torch.tensor(prompt)
        ids = ids.to(self.device)
        row_index = torch.tensor(rows, device=self.device)
        length = torch.tensor(lengths, device=self.device)
        slot = int(self.cache.slot)  # (one read per refill: the host already waited for the step that ended)
        slots = (torch.arange(width, device=self.device) + slot - width) % self.max_len  # the ring's last `width` slots
        positions = torch.arange(width, device=self.device).expand(len(rows), width)
        shared = shared_prefix(prompts)
        mask = None
        if shared:  # run once, stored in every row; the rest of each prompt sees it and itself, causally
            self.cache.prefill_rows, self.cache.prefill_slots = row_index, slots[:shared]
            self.decoder(input_ids=ids[:1, :shared], position_ids=positions[:1, :shared], cache=self.cache, use_cache=True)
            self.cache.prefill_sees = slots
            after = torch.arange(shared, width, device=self.device)
            mask = (torch.arange(width, device=self.device)[None, :] <= after[:, None])[None, None]  # (1, 1, rest, width)
            self.shared_tokens += shared * (len(rows) - 1)
        first = torch.empty(len(rows), dtype=torch.long, device=self.device)
        for start in range(0, len(rows), self.prefill_chunk):
            part = slice(start, min(start + self.prefill_chunk, len(rows)))
            self.cache.prefill_rows, self.cache.prefill_slots = row_index[part], slots[shared:]
            hidden = self.decoder(input_ids=ids[part, shared:], position_ids=positions[part, shared:], attention_mask=mask,
                                  cache=self.cache, use_cache=True).last_hidden_state  # fmt: skip
            at_last = hidden[torch.arange(hidden.shape[0], device=self.device), length[part] - 1 - shared]
            first[part] = self.lm_head(at_last).argmax(-1)
        self.cache.prefill_rows = self.cache.prefill_slots = self.cache.prefill_sees = None
        # Each row sees its own prompt's slots (not the padding after a shorter prompt) and, from the next
        # step on, the slots it decodes into.
        seen = torch.zeros(len(rows), self.max_len, dtype=torch.bool, device=self.device)
        seen[:, slots] = torch.arange(width, device=self.device)[None, :] < length[:, None]
        self.valid[row_index] = seen
        self.out[row_index] = self.pad_id
        self.out[row_index, 0] = first
        self.produced[row_index] = 1
        self.done[row_index] = self._is_eos(first) | (self.max_new <= 1)
        self.current[row_index] = first[:, None]
        self.position[row_index] = length[:, None]

    def _is_eos(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens[:, None] == self.eos).any(-1)

    def _run_steps(self) -> None:
        for _ in range(self.check_every):
            self._run_step()
        self.row_steps += self.check_every * self.batch

    def _step(self) -> None:
        """One decode step for every row; tensor ops only (capturable)."""
        self.valid.index_fill_(1, self.cache.slot.view(1), True)
        blocks = {}
        if self.row_blocks is not None:
            self.row_blocks.update()
            blocks["row_blocks"] = self.row_blocks  # (reaches the attention function through the layers' kwargs)
        hidden = self.decoder(
            input_ids=self.current, attention_mask=self.valid[:, None, None, :], position_ids=self.position,
            cache=self.cache, use_cache=True, **blocks,
        ).last_hidden_state  # fmt: skip
        token = self.lm_head(hidden[:, -1]).argmax(-1)
        token = torch.where(self.done, self.pad_id, token)
        # A finished row writes its padding into the spare last column, never over its answer.
        column = torch.where(self.done, self.max_new, self.produced)
        self.out.scatter_(1, column[:, None], token[:, None])
        self.produced += (~self.done).long()
        self.done |= self._is_eos(token) | (self.produced >= self.max_new)
        self.current.copy_(token[:, None])
        self.position += 1
        self.cache.slot.add_(1).remainder_(self.max_len)

    def _run_step(self) -> None:
        if not self.use_graph:
            self._step()
            return
        if self.graph is None:
            self.graph = self._capture()
        self.graph.replay()

    def _capture(self) -> torch.cuda.CUDAGraph:
        # Warm up on a side stream (as CUDA graph capture requires), then capture; the state that the
        # warm-up steps advanced is put back so the captured step starts where decoding stands.
        state = (self.valid, self.current, self.position, self.cache.slot, self.produced, self.done, self.out)
        saved = [t.clone() for t in state]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._step()
        for tensor, value in zip(state, saved):
            tensor.copy_(value)
        return graph


SHARED_PREFIX_MIN = 16  # shorter common beginnings are prefilled with the rest (the saving would not pay a forward)


def shared_prefix(prompts: list[list[int]]) -> int:
    """How many leading tokens every prompt has in common, leaving each at least one of its own (its first
    new token is read at its last); 0 for a single prompt or under SHARED_PREFIX_MIN."""
    if len(prompts) < 2:
        return 0
    shared = min(len(os.path.commonprefix(prompts)), min(map(len, prompts)) - 1)
    return shared if shared >= SHARED_PREFIX_MIN else 0


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
