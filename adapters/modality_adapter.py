"""The modality adapter ("bridge") of M2UGen.

Encoder output (B, num_tokens, in_dim)  -- MERT: 25 layer means x 1024; ViT: 197 x 768; ViViT: 3137 x 768
  -> Conv1d(num_tokens -> 1, kernel 1)   a learned weighted sum over layers / tokens      (B, in_dim)
  -> L2 normalise
  -> Linear(in_dim -> out_dim)                                                              (B, out_dim)
  -> num_blocks x [ y + W2(silu(W1 n) * W3 n),  n = RMSNorm(y) ]                            (B, out_dim)

Parameter shapes equal the released checkpoint's (``mu_mert_agg`` -> ``agg``, ``mu_mert_proj`` ->
``proj``, ``mu_mert_norm_k`` -> ``blocks.{k-1}.norm``, ``mu_mert_f{1,2,3}_k`` -> ``blocks.{k-1}.w{1,2,3}``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from m2ugen.errors import ConfigError


class AdapterBlock(nn.Module):
    """Pre-norm residual SwiGLU block: ``y + w2(silu(w1(n)) * w3(n))`` with ``n = RMSNorm(y)``."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(dim, eps=eps)
        self.w1 = nn.Linear(dim, dim, bias=False)
        self.w2 = nn.Linear(dim, dim, bias=False)
        self.w3 = nn.Linear(dim, dim, bias=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        n = self.norm(y)
        return y + self.w2(F.silu(self.w1(n)) * self.w3(n))


class ModalityAdapter(nn.Module):
    """Maps frozen-encoder features (B, num_tokens, in_dim) to one token (B, out_dim)."""

    def __init__(self, num_tokens: int, in_dim: int, out_dim: int, num_blocks: int = 3) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.in_dim = in_dim
        self.agg = nn.Conv1d(num_tokens, 1, kernel_size=1)
        self.proj = nn.Linear(in_dim, out_dim)
        self.blocks = nn.ModuleList(AdapterBlock(out_dim) for _ in range(num_blocks))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 3 or features.shape[1:] != (self.num_tokens, self.in_dim):
            raise ConfigError(f"adapter expects features of shape (B, {self.num_tokens}, {self.in_dim}), "
                              f"got {tuple(features.shape)}")
        x = self.agg(features.to(self.proj.weight.dtype)).squeeze(1)  # (B, in_dim)
        x = F.normalize(x, dim=-1)
        y = self.proj(x)  # (B, out_dim)
        for block in self.blocks:
            y = block(y)
        return y
