"""The decoder layers' element-wise work fused into a few kernels (torch.compile), during our decoding only.

Run eagerly, a Llama-style decoder layer launches about thirty element-wise kernels besides its seven
matmuls: its two RMSNorms (upcast, square, mean, add, rsqrt, multiply, downcast, scale), RoPE on queries
and keys (multiply, slice, negate, concatenate, multiply, add, for each) and SwiGLU's activation and
product. In a decode step each is a tiny kernel (a few microseconds of its own, ~900 per step on an 8B
model: a sizeable part of a step of 12-14 ms); in prefill each reads and writes the whole activation
(issue 20's profile: about 30 % of prefill). Compiled, each RMSNorm is one kernel, RoPE one or two, and
SwiGLU's gate and product one, fused into the neighbouring reads.

What is compiled is the model's own code, not a rewrite: the forward of every RMSNorm and MLP module in
the decoder, and the model's RoPE function (`apply_rotary_pos_emb`, looked up in the attention
module's own Python module, as its forward calls it). The cache update and the attention stay as they
are, so the KV cache object and the attention implementation need nothing from this. One compiled
function per kind serves every layer (the module is an input, its weights graph inputs), and shapes
are compiled a few times at most (below).
Inside the decode step's CUDA graph the compiled kernels are captured like any other.

Numerics: in float32 a fused kernel computes what the eager kernels computed, up to the order of a
reduction's additions; in bf16 the fused kernels keep the eager code's roundings to bf16
(`emulate_precision_casts`), so the answers are the eager model's but for rare near-ties.
"""

from __future__ import annotations

import functools
import sys
from contextlib import contextmanager

import torch

ROPE_FUNCTION = "apply_rotary_pos_emb"  # the name transformers' Llama-family modelling code calls RoPE by


@functools.cache
def _compiled(function):  # type: ignore[no-untyped-def]
    """One compiled version of a function (a module class's forward, or RoPE) for the process."""
    import torch._inductor.config as inductor

    inductor.emulate_precision_casts = True  # bf16: round where the eager code rounds (see above)
    # Dynamic shapes from the start: prefill's rows and widths vary call by call (refills), and a graph
    # per shape would compile during decoding. Sizes of 1 are still compiled apart (dynamo specialises
    # them), so a model runs at most four graphs per function: rows 1 or more (the shared prefix runs as
    # one row), tokens 1 (decode) or more (prefill); all of them in a decoder's first call.
    # (Not fullgraph: a model whose norm or MLP code dynamo cannot trace whole still runs, fused where it can.)
    return torch.compile(function, dynamic=True)


def _fusable_modules(decoder) -> list[torch.nn.Module]:  # type: ignore[no-untyped-def]
    """The decoder's RMSNorm modules (the final one too) and its layers' MLPs; not one whose forward is
    already replaced on the instance (accelerate's offloading hooks do that): it keeps its own."""
    return [m for name, m in decoder.named_modules() if "forward" not in m.__dict__
            and (type(m).__name__.endswith("RMSNorm") or name.rsplit(".", 1)[-1] == "mlp")]  # fmt: skip


@contextmanager
def fused_elementwise(model):  # type: ignore[no-untyped-def]
    """Inside the block, the model's RMSNorms, MLPs and RoPE run compiled; after it, as they were. (RoPE is
    a function of the modelling module, so it is compiled for the whole process while the block is open.)"""
    decoder = model.get_decoder()
    modules = _fusable_modules(decoder)
    if not modules:
        raise ValueError(f"{type(model).__name__}: no RMSNorm or MLP modules to fuse (annotate.fuse_elementwise)")
    for module in modules:
        module.forward = functools.partial(_compiled(type(module).forward), module)  # (an instance attribute: deleted after)
    rope_homes = {sys.modules[type(m).__module__] for m in decoder.modules() if type(m).__name__.endswith("Attention")}
    rope_homes = [home for home in rope_homes if callable(getattr(home, ROPE_FUNCTION, None))]
    # (the eager function, also where another decoder's block is open: compiled functions keep their original)
    eager_rope = [getattr(rope := getattr(home, ROPE_FUNCTION), "_torchdynamo_orig_callable", rope) for home in rope_homes]
    for home, rope in zip(rope_homes, eager_rope):
        setattr(home, ROPE_FUNCTION, _compiled(rope))
    try:
        yield
    finally:
        for module in modules:
            del module.forward
        for home, rope in zip(rope_homes, eager_rope):
            setattr(home, ROPE_FUNCTION, rope)
