"""Linear layers for CPU inference that use every core.

MKL's sgemm (torch's CPU matmul) leaves cores idle on the shapes of LLM decoding:
a product with one row per sequence runs on one thread. Viewing the weight (N, K) as P row blocks
(P, N/P, K), without a copy, and computing all blocks in one ``bmm`` spreads the product over P
threads. On the 2-core CPU of ``bench/decode.py`` this makes decoding 1.2x (dim 512) to 1.5x
(dim 1024) faster; the result equals ``F.linear`` up to float rounding.
Elsewhere it is plain ``F.linear``: GPU tensors, one thread, N without a suitable divisor, and
weights under ``MIN_BLOCKED_ELEMENTS``, whose products are too short for the split to pay for itself.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

MIN_BLOCKED_ELEMENTS = 1 << 19  # 2 MB of fp32 weight: below this the bmm set-up costs more than it saves


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


class BlockedLinear(nn.Linear):
    """``nn.Linear`` computed by :func:`blocked_linear` (same parameters, same state-dict keys)."""

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "BlockedLinear":
        """A ``BlockedLinear`` sharing ``linear``'s weight and bias tensors (nothing is copied)."""
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        module.weight = linear.weight
        module.bias = linear.bias
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blocked_linear(x, self.weight, self.bias)


def use_blocked_linears(module: nn.Module) -> None:
    """Replace every plain ``nn.Linear`` inside ``module`` by a :class:`BlockedLinear` sharing its tensors."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, BlockedLinear.from_linear(child))
