"""Decode attention over each row's own cache slots (FlexAttention), not every slot of the cache.

With the masked decode step (`GreedyStaticDecoder`, attention `masked`) every row's query reads all
`max_len` slots of the cache and a mask hides the ones that are not the row's: on an 8B model at 256
rows that reading was about 60 % of a decode step on the long prompts (issue 20). Here the cache is seen
as blocks of `BLOCK` slots, and each step the blocks every row holds are listed (`RowBlocks.update`,
tensor operations only, so the step stays one CUDA graph): FlexAttention reads just those, applies the
row's slot mask only inside blocks the row holds in part, and skips the rest. Which slots a row sees is
the same `valid` mask either way, so the tokens are those of the masked step.

The model's attention layers reach this through transformers' attention interface: `ROW_LENGTH` is
registered as an implementation that runs FlexAttention when the call carries `row_blocks` (the decode
step) and the model's SDPA path otherwise (prefill, whose causal mask is built as SDPA's). The decoder
switches the model to it for the length of its own calls only.

FlexAttention is always compiled (one fused kernel per shape, CPU or CUDA; the first call compiles, and
on CUDA the decode step's graph then captures it): run eagerly it is a reference implementation that
applies the slot mask to the whole cache and skips nothing, so it would neither save the reading nor
exercise the block tables.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.nn.attention.flex_attention import BlockMask, flex_attention

ROW_LENGTH = "merr_row_length"  # the attention implementation's name in transformers' registry
BLOCK = 64  # cache slots per block: the unit FlexAttention skips or reads (cache lengths are multiples of 64)

_compiled_flex = None


def _flex():  # type: ignore[no-untyped-def]
    global _compiled_flex
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex


class RowBlocks:
    """The FlexAttention block mask of a decode step, over the rows' `valid` slots (rows × max_len, bool).

    The tables live in fixed tensors updated in place, so one BlockMask object (and a CUDA graph that
    captured it) serves every step: per row, the blocks it holds in part (read with the slot mask) and
    the blocks it holds whole (read without), each as a count and an index list with those blocks first.
    """

    def __init__(self, valid: torch.Tensor) -> None:
        rows, slots = valid.shape
        if slots % BLOCK:
            raise ValueError(f"a cache of {slots} slots is not a whole number of {BLOCK}-slot blocks")
        self.valid, self.blocks = valid, slots // BLOCK
        int32, device = torch.int32, valid.device
        self.partial_count = torch.zeros(rows, 1, 1, dtype=int32, device=device)
        self.partial_index = torch.zeros(rows, 1, 1, self.blocks, dtype=int32, device=device)
        self.whole_count = torch.zeros(rows, 1, 1, dtype=int32, device=device)
        self.whole_index = torch.zeros(rows, 1, 1, self.blocks, dtype=int32, device=device)
        self._order = torch.arange(self.blocks, device=device).expand(rows, -1)

        def row_sees(batch, head, query, slot):  # type: ignore[no-untyped-def]
            return valid[batch, slot]

        self.update()
        self.mask = BlockMask.from_kv_blocks(
            self.partial_count, self.partial_index, self.whole_count, self.whole_index,
            BLOCK_SIZE=BLOCK, mask_mod=row_sees, seq_lengths=(1, slots), compute_q_blocks=False,
        )  # fmt: skip

    def update(self) -> None:
        """Recompute the tables from `valid` (after the step marked its slot)."""
        held = self.valid.view(self.valid.shape[0], self.blocks, BLOCK)
        whole = held.all(-1)
        partial = held.any(-1) & ~whole
        for chosen, count, index in ((partial, self.partial_count, self.partial_index), (whole, self.whole_count, self.whole_index)):
            before = chosen.cumsum(-1)  # chosen blocks up to and including each
            count.copy_(before[:, -1:].view(count.shape))
            # The list: the chosen blocks first, in order (the kernel reads `count` of them), then the others.
            # Built by scattering each block to its place (element-wise, capturable; no sort).
            place = torch.where(chosen, before - 1, before[:, -1:] + self._order - before)
            index.view(-1, self.blocks).scatter_(1, place, self._order.expand_as(place).to(torch.int32))


def attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
              row_blocks: RowBlocks | None = None, **kwargs):  # type: ignore[no-untyped-def]  # fmt: skip
    """transformers' attention-function signature: (batch, heads, q, dim) in, (batch, q, heads, dim) out."""
    if row_blocks is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    out = _flex()(query, key, value, block_mask=row_blocks.mask, scale=scaling, enable_gqa=key.shape[1] != query.shape[1])
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    if ROW_LENGTH not in AttentionInterface._global_mapping:
        AttentionInterface.register(ROW_LENGTH, attention)
        AttentionMaskInterface.register(ROW_LENGTH, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])  # prefill: SDPA's own mask


@contextmanager
def row_length_attention(model):  # type: ignore[no-untyped-def]
    """The model's attention layers use `attention` (above) inside the block, their own implementation after."""
    _register()
    # Every config an attention layer reads its implementation from (one for a plain causal LM).
    configs = list({id(m.config): m.config for m in model.modules() if hasattr(getattr(m, "config", None), "_attn_implementation")}.values())
    before = [config._attn_implementation for config in configs]
    if set(before) != {"sdpa"}:
        # Prefill keeps the model's SDPA path; a model set to another implementation would change it.
        raise ValueError(f"row-length decode attention runs models set to SDPA attention (this one: {sorted(set(before))})")
    for config in configs:
        config._attn_implementation = ROW_LENGTH
    try:
        yield
    finally:
        for config, name in zip(configs, before):
            config._attn_implementation = name
