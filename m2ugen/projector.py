"""Output projector: the 8 [AUD] states -> the music decoder's conditioning.

    x = hidden (B, 8, D_llm) + embedding of [AUD0..7] (B, 8, D_llm)
    -> in_proj Linear(D_llm -> d_model)
    -> nn.Transformer(d_model, 4 heads, 4 encoder + 4 decoder layers, ReLU, post-norm)
       src = the 8 tokens, tgt = learned queries (num_queries, d_model)
    -> out_proj Linear(d_model -> out_dim)                                   (B, num_queries, out_dim)

MusicGen: (B, 128, 768) T5 states; AudioLDM2: (B, 1, 128*1024 + 8*768). Shapes equal the released
weights (``fc`` -> ``in_proj``, ``tfm`` -> ``transformer``, ``query_embs`` -> ``queries``,
``model`` -> ``out_proj``).
"""

from __future__ import annotations

import torch
from torch import nn

from m2ugen.config import ProjectorConfig


class OutputProjector(nn.Module):
    def __init__(self, llm_dim: int, config: ProjectorConfig) -> None:
        super().__init__()
        self.config = config
        self.in_proj = nn.Linear(llm_dim, config.d_model)
        self.transformer = nn.Transformer(d_model=config.d_model, nhead=config.num_heads,
                                          num_encoder_layers=config.num_encoder_layers,
                                          num_decoder_layers=config.num_decoder_layers,
                                          dim_feedforward=config.ffn_dim, dropout=0.0, batch_first=True)
        self.queries = nn.Parameter(torch.randn(1, config.num_queries, config.d_model))
        self.out_proj = nn.Linear(config.d_model, config.out_dim)

    def forward(self, aud_hidden: torch.Tensor, aud_embeds: torch.Tensor) -> torch.Tensor:
        """(B, N, D_llm) states and embeddings of the [AUD] tokens -> (B, num_queries, out_dim)."""
        x = self.in_proj((aud_hidden + aud_embeds).to(self.in_proj.weight.dtype))
        tgt = self.queries.expand(x.shape[0], -1, -1)
        return self.out_proj(self.transformer(x, tgt))

    def conditioning(self, aud_hidden: torch.Tensor, aud_embeds: torch.Tensor) -> torch.Tensor:
        """The decoder conditioning itself: the output divided by ``target_scale``."""
        return self.forward(aud_hidden, aud_embeds) / self.config.target_scale
