"""How the model is spread over the processes of a `torchrun` job.

ddp: every process holds the whole model; gradients are averaged (the default, enough up to a few billion
parameters). fsdp: PyTorch's FSDP2 (`fully_shard`) splits every decoder layer and the rest of the model
across the processes, so an 8B base with its LoRA, projectors and optimizer state fits where one copy per
GPU would not; each layer is gathered only while it runs. Checkpoints are written whole (full state dicts
gathered to rank 0; the optimizer state keyed by parameter name), so an FSDP run also goes on in one process.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Literal

import torch
from torch import nn

Sharding = Literal["ddp", "fsdp"]


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of the language model, by the class names Hugging Face marks as not to be split."""
    names: set[str] = set()
    for module in model.modules():
        names |= set(getattr(module, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def distribute(model: nn.Module, sharding: Sharding) -> nn.Module:
    """The module the training loop calls: DDP around the model, or the model itself sharded in place
    (FSDP2 turns the modules into sharded ones; build the optimizer after this)."""
    if sharding == "ddp":
        return nn.parallel.DistributedDataParallel(model)
    from torch.distributed.fsdp import fully_shard

    layers = decoder_layers(model)
    if not layers:
        raise ValueError(f"fsdp: no decoder layers found in {type(model).__name__} (no _no_split_modules to shard by)")
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)  # embeddings, norm, head and the projectors
    return model


@contextmanager
def _fsdp_sync(model: nn.Module, on: bool):
    model.set_requires_gradient_sync(on)  # type: ignore[operator]
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)  # type: ignore[operator]


def gradient_sync(trained: nn.Module, sharding: Sharding | None, on: bool) -> AbstractContextManager:
    """Skip the gradient exchange on all but the last micro-batch of an accumulated step."""
    if sharding is None or on:
        return nullcontext()
    if sharding == "ddp":
        return trained.no_sync()  # type: ignore[operator]
    return _fsdp_sync(trained, on)


def _full() -> object:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def trainable_state(model: nn.Module, sharding: Sharding | None) -> dict[str, torch.Tensor]:
    """The trainable weights, whole, under their module names (a collective under fsdp: every rank calls)."""
    if sharding != "fsdp":
        return model.trainable_state()  # type: ignore[operator]
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    full = get_model_state_dict(model, options=_full())  # type: ignore[arg-type]
    return {name: tensor for name, tensor in full.items() if name in trainable}


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, sharding: Sharding | None) -> dict:
    """The optimizer state, whole (a collective under fsdp)."""
    if sharding != "fsdp":
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_full())  # type: ignore[arg-type]


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, sharding: Sharding | None) -> None:
    """Put a saved optimizer state back, whichever layout saved it: parameter numbers (one process, ddp) or
    parameter names (fsdp)."""
    if sharding != "fsdp" and all(isinstance(key, int) for key in state["state"]):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
