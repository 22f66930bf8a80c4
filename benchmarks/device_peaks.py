"""What the GPU benchmarks share: waiting for the device, and the matmul rate it reaches here and now
(the denominator of their floors and MFU figures)."""

from __future__ import annotations

import time

import torch


def sync() -> None:
    """Wait for queued device work, so host clocks time what ran (a no-op on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_flops(device: str, dtype: torch.dtype, n: int, repeats: int = 10) -> float:
    """FLOP/s of an n × n matmul on `device`, after a few untimed ones."""
    x = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        x @ x
    sync()
    started = time.perf_counter()
    for _ in range(repeats):
        x @ x
    sync()
    return repeats * 2 * n**3 / (time.perf_counter() - started)
