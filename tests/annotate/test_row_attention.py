"""Row-length decode attention: the block tables a decode step reads, and the attention they give.

The decoding tests (test_llm_hf.py) check the tokens end to end; these check the parts: that each row
lists exactly the cache blocks it holds (the point: blocks it does not hold are never read), and that
FlexAttention over those blocks is the masked attention over the whole cache."""

import random

import torch

from merr_builder.annotate.llm.row_attention import BLOCK, RowBlocks, attention


def ring_rows(rows: int, slots: int, seed: int) -> torch.Tensor:
    """Rows laid out as the decoder lays them: a prompt, padding after it up to the batch's widest prompt,
    then the answer so far, all behind the shared slot and wrapping round the ring."""
    rng = random.Random(seed)
    valid = torch.zeros(rows, slots, dtype=torch.bool)
    slot = rng.randrange(slots)
    width = rng.randint(5, slots // 2)
    for row in range(rows):
        prompt, answer = rng.randint(1, width), rng.randint(0, slots - width)
        start = slot - answer - width
        for k in range(prompt):
            valid[row, (start + k) % slots] = True
        for k in range(answer + 1):  # (the slot this step writes is the row's too)
            valid[row, (slot - k) % slots] = True
    return valid


def test_each_row_lists_exactly_the_blocks_it_holds_and_reads_whole_ones_without_its_mask():
    for seed in range(20):
        valid = ring_rows(6, 5 * BLOCK, seed)
        blocks = RowBlocks(valid)
        held = valid.view(6, 5, BLOCK)
        listed = blocks.mask.to_dense()[:, 0, 0].bool()  # partial and whole blocks together
        assert torch.equal(listed, held.any(-1))
        for row in range(6):
            whole = set(blocks.whole_index[row, 0, 0, : blocks.whole_count[row]].tolist())
            partial = set(blocks.partial_index[row, 0, 0, : blocks.partial_count[row]].tolist())
            assert whole == {b for b in range(5) if held[row, b].all()}
            assert partial == {b for b in range(5) if held[row, b].any() and not held[row, b].all()}
    one = torch.zeros(1, 4 * BLOCK, dtype=torch.bool)
    one[0, 2 * BLOCK + 3 : 2 * BLOCK + 9] = True
    assert RowBlocks(one).mask.to_dense().sum() == 1  # six slots: one block of four read


def test_tables_follow_the_mask_in_place_as_steps_mark_slots():
    valid = torch.zeros(2, 2 * BLOCK, dtype=torch.bool)
    valid[:, :3] = True
    blocks = RowBlocks(valid)
    before = blocks.mask
    valid[0, BLOCK] = True  # row 0's answer reaches the second block
    blocks.update()
    assert blocks.mask is before  # the same tensors (a captured graph reads them)
    assert blocks.mask.to_dense()[:, 0, 0].tolist() == [[1, 1], [1, 0]]


def test_attention_over_the_listed_blocks_is_the_masked_attention_over_the_whole_cache():
    torch.manual_seed(0)
    rows, heads, kv_heads, slots, dim = 5, 8, 2, 4 * BLOCK, 16
    valid = ring_rows(rows, slots, seed=3)
    query = torch.randn(rows, heads, 1, dim)
    key, value = torch.randn(rows, kv_heads, slots, dim), torch.randn(rows, kv_heads, slots, dim)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = heads // kv_heads, True
    ours, _ = attention(module, query, key, value, None, scaling=dim**-0.5, row_blocks=RowBlocks(valid))
    masked, _ = attention(module, query, key, value, valid[:, None, None, :], scaling=dim**-0.5)  # (SDPA's path)
    assert ours.shape == (rows, 1, heads, dim)
    assert torch.allclose(ours, masked, atol=1e-5)
    # Slots a row does not hold change nothing of what it attends to.
    noise = torch.randn_like(key) * ~valid[:, None, :, None]
    again, _ = attention(module, query, key + noise, value + noise, None, scaling=dim**-0.5, row_blocks=RowBlocks(valid))
    assert torch.allclose(again, ours, atol=1e-5)
