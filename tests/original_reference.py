"""An independent re-implementation of the original M2UGen maths, in the original's parameter layout.

Written from the description of the original's code (not from our model code): Meta LLaMA
with interleaved (complex) RoPE, biases on wq/wo/w1/w2/w3, LoRA ``l2(l1(x))`` with no scaling on all
seven projections, per-layer ``gate`` (1, H, 1, 1) adding ``tanh(gate) * wv(adapter)`` to every
position's head outputs before ``wo``, the ``mu_mert``/``iu_vit``/``iu_vivit`` bridges,
``prefix_query`` and the ``output_projector``. Its ``state_dict()`` has the released key names.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BRIDGES = (("mu_mert", "audio"), ("iu_vit", "image"), ("iu_vivit", "video"))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * weight


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


def lora(module: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """``name(x) + lora_name_l2(lora_name_l1(x))``: no alpha, no scaling."""
    return getattr(module, name)(x) + getattr(module, f"lora_{name}_l2")(getattr(module, f"lora_{name}_l1")(x))


def add_lora(module: nn.Module, name: str, d_in: int, d_out: int, rank: int) -> None:
    setattr(module, f"lora_{name}_l1", nn.Linear(d_in, rank, bias=False))
    setattr(module, f"lora_{name}_l2", nn.Linear(rank, d_out, bias=False))


def rotary(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Meta RoPE: dims (2i, 2i+1) of each head form one complex number. x (B, T, H, hd)."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * freqs[None, :, None, :]).flatten(3).type_as(x)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, rank: int) -> None:
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.wq = nn.Linear(dim, dim, bias=True)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=True)
        for name in ("wq", "wk", "wv", "wo"):
            add_lora(self, name, dim, dim, rank)
        self.gate = nn.Parameter(torch.zeros(1, heads, 1, 1))

    def forward(self, x: torch.Tensor, freqs: torch.Tensor, adapter: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        q = rotary(lora(self, "wq", x).view(b, t, self.heads, self.hd), freqs).transpose(1, 2)
        k = rotary(lora(self, "wk", x).view(b, t, self.heads, self.hd), freqs).transpose(1, 2)
        v = lora(self, "wv", x).view(b, t, self.heads, self.hd).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.hd)
        causal = torch.full((t, t), float("-inf")).triu(1)
        out = F.softmax((scores + causal).float(), dim=-1).type_as(q) @ v  # (B, H, T, hd)
        if adapter is not None:
            adapter_v = self.wv(adapter).view(adapter.shape[0], 1, self.heads, self.hd).transpose(1, 2)
            out = out + torch.tanh(self.gate) * adapter_v
        out = out.transpose(1, 2).reshape(b, t, -1)
        return lora(self, "wo", out)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, rank: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=True)
        self.w2 = nn.Linear(hidden, dim, bias=True)
        self.w3 = nn.Linear(dim, hidden, bias=True)
        add_lora(self, "w1", dim, hidden, rank)
        add_lora(self, "w2", hidden, dim, rank)
        add_lora(self, "w3", dim, hidden, rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lora(self, "w2", F.silu(lora(self, "w1", x)) * lora(self, "w3", x))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, rank: int, eps: float) -> None:
        super().__init__()
        self.attention = Attention(dim, heads, rank)
        self.feed_forward = FeedForward(dim, ffn, rank)
        self.attention_norm = RMSNorm(dim, eps)
        self.ffn_norm = RMSNorm(dim, eps)

    def forward(self, x, freqs, adapter):
        h = x + self.attention(self.attention_norm(x), freqs, adapter)
        return h + self.feed_forward(self.ffn_norm(h))


class Llama(nn.Module):
    def __init__(self, dim: int, layers: int, heads: int, ffn: int, vocab: int, rank: int, eps: float,
                 theta: float = 10000.0) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(Block(dim, heads, ffn, rank, eps) for _ in range(layers))
        self.norm = RMSNorm(dim, eps)
        self.output = nn.Linear(dim, vocab, bias=False)
        hd = dim // heads
        inv = 1.0 / theta ** (torch.arange(0, hd, 2).float() / hd)
        self.freqs = torch.polar(torch.ones(2048, hd // 2), torch.outer(torch.arange(2048).float(), inv))

    def forward(self, tokens: torch.Tensor, adapters: list[torch.Tensor | None]) -> torch.Tensor:
        """adapters: one (B, 1, dim) tensor or None per layer."""
        h = self.tok_embeddings(tokens)
        freqs = self.freqs[: tokens.shape[1]]
        for layer, adapter in zip(self.layers, adapters):
            h = layer(h, freqs, adapter)
        return self.output(self.norm(h)).float()


class ProjectionLayer(nn.Module):
    def __init__(self, dim: int, d_model: int, heads: int, enc: int, dec: int, ffn: int, queries: int, out: int):
        super().__init__()
        self.fc = nn.Linear(dim, d_model)
        self.tfm = nn.Transformer(d_model=d_model, nhead=heads, num_encoder_layers=enc, num_decoder_layers=dec,
                                  dim_feedforward=ffn, dropout=0.0, batch_first=True, norm_first=False)
        self.model = nn.Linear(d_model, out)
        self.query_embs = nn.Parameter(torch.randn(1, queries, d_model))

    def forward(self, x: torch.Tensor, embs: torch.Tensor) -> torch.Tensor:
        x = self.fc(x + embs)
        return self.model(self.tfm(x, self.query_embs.repeat(x.shape[0], 1, 1)))


class OriginalM2UGen(nn.Module):
    """The original module tree (frozen encoders given as ready-made modules)."""

    def __init__(self, dim: int, layers: int, heads: int, ffn: int, vocab: int, rank: int, eps: float,
                 query_layer: int, encoders: dict[str, tuple[int, int]], projector: dict, blocks: int = 3,
                 frozen: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.llama = Llama(dim, layers, heads, ffn, vocab, rank, eps)
        self.query_layer = query_layer
        self.blocks = blocks
        for prefix, modality in BRIDGES:
            tokens, in_dim = encoders[modality]
            setattr(self, f"{prefix}_agg", nn.Conv1d(tokens, 1, kernel_size=1))
            setattr(self, f"{prefix}_proj", nn.Linear(in_dim, dim))
            for k in range(1, blocks + 1):
                setattr(self, f"{prefix}_norm_{k}", RMSNorm(dim, 1e-6))
                for j in (1, 2, 3):
                    setattr(self, f"{prefix}_f{j}_{k}", nn.Linear(dim, dim, bias=False))
        self.prefix_query = nn.Embedding(3 * query_layer, dim)
        self.output_projector = ProjectionLayer(dim, **projector)
        for name, module in (frozen or {}).items():
            setattr(self, name, module)

    def bridge(self, prefix: str, feats: torch.Tensor) -> torch.Tensor:
        """(B, tokens, in_dim) -> (B, 1, dim)."""
        x = getattr(self, f"{prefix}_agg")(feats)  # (B, 1, in_dim)
        x = F.normalize(x, dim=-1) * (1.0 / (1.0 + 1e-6))
        x = getattr(self, f"{prefix}_proj")(x)
        for k in range(1, self.blocks + 1):
            n = getattr(self, f"{prefix}_norm_{k}")(x)
            f1, f2, f3 = (getattr(self, f"{prefix}_f{j}_{k}") for j in (1, 2, 3))
            x = x + f2(F.silu(f1(n)) * f3(n))
        return x

    def forward(self, tokens: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        n_layers, ql = len(self.llama.layers), self.query_layer
        prefix = self.prefix_query.weight.reshape(3 * ql, 1, 1, -1)
        adapters: list[torch.Tensor | None] = [None] * (n_layers - 3 * ql)
        for m, (bridge, modality) in enumerate(BRIDGES):
            token = self.bridge(bridge, feats[modality]) if modality in feats else 0.0
            adapters += [prefix[m * ql + j] + token for j in range(ql)]
        return self.llama(tokens, adapters)


def randomize(model: nn.Module, generator: torch.Generator, scale: float = 0.2) -> None:
    """Random non-zero values everywhere (gates, biases and LoRA included); norms near 1."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".gate"):
                p.copy_(noise)
            else:
                p.copy_(scale * noise)
