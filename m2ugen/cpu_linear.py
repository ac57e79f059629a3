"""Linear layers for CPU inference that use every core, where that is faster on the running machine.

On some CPUs MKL's sgemm (torch's CPU matmul) leaves cores idle on the shapes of LLM decoding: a
product with one row per sequence runs on one thread. Viewing the weight (N, K) as P row blocks
(P, N/P, K), without a copy, and computing all blocks in one ``bmm`` spreads the product over P
threads; the result equals ``F.linear`` up to float rounding. On one 2-core machine this made
decoding 1.2x (dim 512) to 1.5x (dim 1024) faster; on another, whose MKL already reads a one-row
product's weight with both cores, it gave nothing or lost. So :func:`blocked_wins` decides per
weight shape by timing both products on the running machine (once per shape and thread count).
Elsewhere it is plain ``F.linear``: GPU tensors, one thread, N without a suitable divisor, and
weights under ``MIN_BLOCKED_ELEMENTS``, whose products are too short for the split to pay for itself.
"""

from __future__ import annotations

import functools
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

MIN_BLOCKED_ELEMENTS = 1 << 19  # 2 MB of fp32 weight: below this the bmm set-up costs more than it saves
# The blocked product is chosen only when its best time is under this fraction of ``F.linear``'s.
WIN_MARGIN = 0.9
_MEASURED: dict[tuple, bool] = {}  # (shape, dtype, threads) -> blocked_linear won


@functools.lru_cache(maxsize=None)
def _num_blocks(rows: int, threads: int) -> int:
    """The largest P <= ``threads`` that divides ``rows`` (1 when none above 1 does)."""
    for p in range(threads, 1, -1):
        if rows % p == 0:
            return p
    return 1


def blocked_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` with the CPU product split into row blocks of ``weight``.

    x: (..., K); weight: (N, K), contiguous; bias: (N,) or None -> (..., N).
    """
    n, k = weight.shape
    big_cpu_product = x.device.type == "cpu" and weight.numel() >= MIN_BLOCKED_ELEMENTS
    blocks = _num_blocks(n, torch.get_num_threads()) if big_cpu_product else 1
    if blocks == 1 or not weight.is_contiguous() or x.shape[-1] != k:
        return F.linear(x, weight, bias)
    rows = x.reshape(1, -1, k).expand(blocks, -1, -1)  # (P, M, K), no copy
    w = weight.view(blocks, n // blocks, k).mT  # (P, K, N/P), no copy
    if bias is None:
        out = torch.bmm(rows, w)
    else:
        out = torch.baddbmm(bias.view(blocks, 1, n // blocks), rows, w)  # (P, M, N/P)
    return out.transpose(0, 1).reshape(*x.shape[:-1], n)


def _best_seconds(fns: list[Callable[[], object]], rounds: int = 5, calls: int = 3) -> list[float]:
    """Best time of ``calls`` calls of each function over ``rounds`` interleaved rounds (after a warm-up)."""
    best = [float("inf")] * len(fns)
    for r in range(rounds + 1):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            if r:
                best[i] = min(best[i], time.perf_counter() - start)
    return best


@torch.no_grad()
def blocked_wins(weight: torch.Tensor) -> bool:
    """Whether :func:`blocked_linear` computes a one-row product with ``weight`` (N, K) faster than
    ``F.linear`` here, by at least ``WIN_MARGIN``: timed on first use of each shape, dtype and thread count."""
    threads = torch.get_num_threads()
    if weight.device.type != "cpu" or weight.numel() < MIN_BLOCKED_ELEMENTS or not weight.is_contiguous() \
            or _num_blocks(weight.shape[0], threads) == 1:
        return False
    key = (tuple(weight.shape), weight.dtype, threads)
    if key not in _MEASURED:
        x = torch.randn(1, weight.shape[1], dtype=weight.dtype)
        stock, blocked = _best_seconds([lambda: F.linear(x, weight), lambda: blocked_linear(x, weight)])
        _MEASURED[key] = blocked < WIN_MARGIN * stock
    return _MEASURED[key]


class BlockedLinear(nn.Linear):
    """``nn.Linear`` computed by :func:`blocked_linear` (same parameters, same state-dict keys)."""

    @classmethod
    def sharing(cls, weight: nn.Parameter, bias: nn.Parameter | None = None) -> "BlockedLinear":
        """A ``BlockedLinear`` whose parameters are ``weight`` (N, K) and ``bias`` (N,) (nothing is copied)."""
        module = cls(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
        module.weight = weight
        module.bias = bias
        return module

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "BlockedLinear":
        """A ``BlockedLinear`` sharing ``linear``'s weight and bias tensors."""
        return cls.sharing(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blocked_linear(x, self.weight, self.bias)


def use_blocked_linears(module: nn.Module, where: Callable[[torch.Tensor], bool] | None = None) -> None:
    """Replace plain ``nn.Linear`` layers inside ``module`` by :class:`BlockedLinear` sharing their tensors:
    all of them, or those whose weight passes ``where`` (e.g. :func:`blocked_wins`)."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and (where is None or where(child.weight)):
                setattr(parent, name, BlockedLinear.from_linear(child))
