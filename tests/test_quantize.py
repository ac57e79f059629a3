"""Weight-only int8 linear layers and the int8 LLM (logits within tolerance, decoding through both kernels)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import LogitsProcessorList

from m2ugen import quantize
from m2ugen.errors import ConfigError
from m2ugen.model import M2UGen
from m2ugen.prompt import encode_dialogue
from m2ugen.quantize import Int8Linear, quantize_linears
from test_llm import logits_of, media_features

# int8 logits of the tiny model against float32: max |delta| at most this fraction of the logits' std
# (docs/benchmarks.md reports the same measure at dim 1024).
LOGIT_TOLERANCE = 0.1


@pytest.mark.parametrize("rows", [1, 3, 40])  # the packed kernel (decoding) and the dequantized product (prompts)
def test_int8_linear_matches_its_dequantized_weight(rows):
    g = torch.Generator().manual_seed(rows)
    linear = nn.Linear(96, 48)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(48, 96, generator=g))
        linear.bias.copy_(torch.randn(48, generator=g))
    q = Int8Linear.from_weight(linear.weight, linear.bias)
    assert q.qweight.dtype == torch.int8 and q.scales.shape == (48,)
    # Rounding to the nearest of 255 levels per row: at most half a step off.
    assert ((q.weight - linear.weight).abs() <= q.scales[:, None] / 2 + 1e-7).all()
    x = torch.randn(2, rows, 96, generator=g)
    exact = F.linear(x, q.weight, linear.bias)
    out = q(x)
    assert out.shape == (2, rows, 48) and out.dtype == torch.float32
    # bfloat16 activations in the packed kernel: relative error about 2**-8.
    assert (out - exact).abs().max() <= 2e-2 * exact.abs().max()
    assert (out - linear(x)).abs().max() <= 5e-2 * exact.abs().max()


def test_quantize_linears_replaces_every_linear_and_refuses_unknown_modes():
    module = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 4, bias=False)))
    quantize_linears(module, "int8")
    assert [type(m) for m in module.modules() if isinstance(m, (nn.Linear, Int8Linear))] == [Int8Linear] * 2
    with pytest.raises(ConfigError, match="unknown quantization 'int3'"):
        quantize_linears(module, "int3")
    with pytest.raises(ConfigError, match="int4 needs a CUDA device"):
        quantize_linears(nn.Sequential(nn.Linear(128, 8)), "int4")


@torch.no_grad()
def test_int8_llm_logits_within_tolerance_and_decoding(tiny_model, monkeypatch):
    model = tiny_model.eval()
    model.llm.injection.gate.fill_(0.4)
    q = M2UGen.from_config(model.config).eval()  # the same weights (seeded construction)
    q.llm.injection.gate.fill_(0.4)
    model.llm.optimize_for_inference()
    q.llm.optimize_for_inference(quantize="int8")
    assert q.llm.quantized == "int8" and q.llm.model.lm_head.weight is None
    assert isinstance(q.llm.model.lm_head.base, Int8Linear)
    feats = media_features(model)
    tok = model.tokenizer
    short = encode_dialogue(tok, "hi")[0]
    long = encode_dialogue(tok, "write a slow sad song for this picture, with strings and a soft piano")[0]
    for ids, packed_rows in ((short, 64), (long, 0)):  # the packed kernel, then the dequantized product
        monkeypatch.setattr(quantize, "PACKED_MAX_ROWS", packed_rows)
        expected, got = logits_of(model, ids, feats), logits_of(q, ids, feats)
        assert (got - expected).abs().max() <= LOGIT_TOLERANCE * expected.std()
    # KV-cached decoding of the int8 model (packed kernel, one row per step): each step's scores are the
    # logits of the whole sequence at that position.
    answer = q.generate([long], features=feats, max_new_tokens=10)[0].token_ids
    seen = []

    def record(ids, scores):
        seen.append(scores[0].clone())
        return scores

    q.generate([long], features=feats, max_new_tokens=len(answer), logits_processor=LogitsProcessorList([record]))
    full = logits_of(q, long + answer, feats)[0, len(long) - 1:-1]
    torch.testing.assert_close(torch.stack(seen[:len(answer)]), full, atol=1e-3 * full.std().item(), rtol=0)


def test_assistant_quantize_option():
    from m2ugen.assistant import Assistant

    bot = Assistant.tiny(quantize="int8")
    assert bot.model.llm.quantized == "int8"
    reply = bot.chat("what tempo is this?", task="answer", max_new_tokens=4, temperature=0.0)
    assert reply.task == "answer" and reply.audio is None
    with pytest.raises(ConfigError, match="int4 needs a CUDA device"):
        Assistant.tiny(quantize="int4")
