"""Adapter and projector shapes: equal to the released checkpoint's (docs/original.md)."""

import pytest
import torch

from adapters import ModalityAdapter
from m2ugen.config import M2UGenConfig
from m2ugen.errors import ConfigError
from m2ugen.projector import OutputProjector


@pytest.mark.parametrize("tokens,in_dim,count", [(25, 1024, 155_205_658), (197, 768, 154_157_254),
                                                 (3137, 768, 154_160_194)])
def test_paper_adapter_shapes(tokens, in_dim, count):
    with torch.device("meta"):
        adapter = ModalityAdapter(tokens, in_dim, 4096)
    shapes = {k: tuple(v.shape) for k, v in adapter.state_dict().items()}
    assert shapes["agg.weight"] == (1, tokens, 1) and shapes["agg.bias"] == (1,)
    assert shapes["proj.weight"] == (4096, in_dim)
    assert shapes["blocks.2.norm.weight"] == (4096,)
    assert all(shapes[f"blocks.0.w{i}.weight"] == (4096, 4096) for i in (1, 2, 3))
    assert "blocks.0.w1.bias" not in shapes
    assert sum(p.numel() for p in adapter.parameters()) == count


def test_adapter_forward_and_shape_errors():
    adapter = ModalityAdapter(5, 8, 16)
    out = adapter(torch.randn(3, 5, 8))
    assert out.shape == (3, 16)
    # The aggregate is L2-normalised: with a bias-free aggregator, scaling the input changes nothing.
    torch.nn.init.zeros_(adapter.agg.bias)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(adapter(x), adapter(7.0 * x))
    with pytest.raises(ConfigError, match=r"\(B, 5, 8\)"):
        adapter(torch.randn(2, 6, 8))


@pytest.mark.parametrize("preset,count,out_shape", [("paper-musicgen", 31_984_896, (128, 768)),
                                                    ("paper-audioldm2", 101_917_696, (1, 137216))])
def test_paper_projector(preset, count, out_shape):
    cfg = M2UGenConfig.preset(preset).projector
    with torch.device("meta"):
        proj = OutputProjector(4096, cfg)
        out = proj(torch.zeros(2, 8, 4096), torch.zeros(2, 8, 4096))
    assert sum(p.numel() for p in proj.parameters()) == count
    assert tuple(out.shape) == (2, *out_shape)
    keys = proj.state_dict()
    assert tuple(keys["transformer.encoder.layers.3.self_attn.in_proj_weight"].shape) == (1536, 512)
    assert tuple(keys["queries"].shape) == (1, out_shape[0], 512)
