"""Weight-only quantization of the LLM for inference: int8 (CPU and CUDA) and 4-bit (CUDA, torchao).

Decoding reads every weight once per token, so smaller weights decode faster and a 7B LLM fits in
less memory. ``int8``: each output row of a linear layer is scaled by its largest magnitude over 127
and rounded (symmetric, per channel); activations stay in floating point. On CPU a product with few
rows (decoding) runs torch's packed int8 kernel on bfloat16 activations, one with many rows (the
prompt) multiplies by the dequantized weight; on CUDA the product is the dequantized weight, which
the compiled decoding step (:mod:`m2ugen.decoding`) fuses into one kernel. ``int4``: torchao's
int4 weight-only layout (groups of 128, CUDA tinygemm kernels; ``pip install torchao``); it needs
bfloat16 weights on a CUDA device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from m2ugen.errors import ConfigError

QUANTIZE_MODES = ("int8", "int4")
# CPU products with at most this many rows use the packed int8 kernel (measured: it reads int8 weights
# about 3x faster than fp32 ``F.linear`` reads fp32 ones); above it the dequantized product is faster.
PACKED_MAX_ROWS = 16
INT4_GROUP_SIZE = 128


class Int8Linear(nn.Module):
    """``nn.Linear`` with int8 weights (N, K) and one float32 scale per output row (N,)."""

    def __init__(self, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("qweight", qweight)
        self.register_buffer("scales", scales)
        # The packed kernel scales in bfloat16; ones there and the float32 scales after keep them exact.
        self.register_buffer("unit_scales", torch.ones_like(scales, dtype=torch.bfloat16))
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)
        self.in_features, self.out_features = qweight.shape[1], qweight.shape[0]

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> "Int8Linear":
        w = weight.detach().float()
        scales = w.abs().amax(1).clamp(min=1e-12) / 127.0
        qweight = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
        return cls(qweight, scales, bias)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight (N, K), float32 (for occasional products, e.g. the injection's)."""
        return self.qweight.float() * self.scales[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if x.device.type == "cpu" and rows <= PACKED_MAX_ROWS:
            flat = x.reshape(rows, x.shape[-1]).to(torch.bfloat16)
            out = torch.ops.aten._weight_int8pack_mm(flat, self.qweight, self.unit_scales)
            out = out.to(x.dtype).view(*x.shape[:-1], self.out_features)
        else:
            out = F.linear(x, self.qweight.to(x.dtype))
        out = out * self.scales.to(x.dtype)
        return out if self.bias is None else out + self.bias.to(x.dtype)


def quantize_linears(module: nn.Module, mode: str) -> None:
    """Replace every ``nn.Linear`` (and subclass) inside ``module`` by its ``mode`` quantized form."""
    if mode not in QUANTIZE_MODES:
        raise ConfigError(f"unknown quantization {mode!r}; choose {' or '.join(QUANTIZE_MODES)}")
    if mode == "int4":
        _int4(module)
        return
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8Linear.from_weight(child.weight, child.bias))


def _int4(module: nn.Module) -> None:
    weight = next(module.parameters())
    if weight.device.type != "cuda" or weight.dtype != torch.bfloat16:
        raise ConfigError("int4 needs a CUDA device and bfloat16 weights (dtype=bfloat16); on CPU use int8")
    try:
        from torchao.quantization import Int4WeightOnlyConfig, quantize_
    except ImportError:
        raise ConfigError("int4 needs torchao: pip install torchao") from None
    quantize_(module, Int4WeightOnlyConfig(group_size=INT4_GROUP_SIZE),
              filter_fn=lambda m, _: isinstance(m, nn.Linear) and m.in_features % INT4_GROUP_SIZE == 0)
