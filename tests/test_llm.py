"""Gated injection, trainability and KV-cached generation of the tiny M2UGen."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessor, LogitsProcessorList, \
    SuppressTokensLogitsProcessor

from m2ugen.config import M2UGenConfig
from m2ugen import cpu_linear
from m2ugen.cpu_linear import BlockedLinear
from m2ugen.model import find_aud_run
from m2ugen.prompt import encode_dialogue, with_aud_tokens


def media_features(model, batch_size: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    waves = [rng.standard_normal(24000).astype(np.float32) * 0.1 for _ in range(batch_size)]
    images = [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(batch_size)]
    clips = [rng.integers(0, 255, (32, 36, 36, 3), dtype=np.uint8) for _ in range(batch_size)]
    return {"audio": model.encode_audio(waves), "image": model.encode_images(images),
            "video": model.encode_videos(clips)}


def logits_of(model, ids: list[int], features) -> torch.Tensor:
    t = torch.tensor([ids])
    vectors = model.llm.injection_vectors(model.adapter_tokens(features), 1)
    logits, _ = model.llm(t, torch.ones_like(t), vectors)
    return logits


def plain_llama_with_same_weights(model) -> LlamaForCausalLM:
    plain = LlamaForCausalLM(LlamaConfig(**M2UGenConfig.preset("tiny").llm_config, tie_word_embeddings=False))
    ours = dict(model.llm.model.named_parameters())
    with torch.no_grad():
        for name, param in plain.named_parameters():
            key = name.replace(".weight", ".base_layer.weight") if name.replace(".weight", ".base_layer.weight") in ours else name
            param.copy_(ours[key])
    return plain.eval()


def test_zero_gates_equal_plain_llama(tiny_model):
    model = tiny_model.eval()
    plain = plain_llama_with_same_weights(model)
    ids, _ = encode_dialogue(model.tokenizer, "what instruments are playing?")
    expected = plain(torch.tensor([ids])).logits
    v = model.llm.base_vocab_size
    for seed in (0, 1):
        got = logits_of(model, ids, media_features(model, seed=seed))[..., :v]
        assert (got - expected).abs().max().item() <= 1e-6
    # Non-zero gates: the features now reach the logits, and different features give different logits.
    with torch.no_grad():
        model.llm.injection.gate.fill_(0.5)
    a = logits_of(model, ids, media_features(model, seed=0))
    b = logits_of(model, ids, media_features(model, seed=1))
    assert (a - b).abs().max().item() > 1e-3
    for modality in ("audio", "image", "video"):  # each modality on its own changes the output
        feats = media_features(model, seed=0)
        feats[modality] = media_features(model, seed=1)[modality]
        assert (logits_of(model, ids, feats) - a).abs().max().item() > 1e-4


def stage1_batch(model):
    tok = model.tokenizer
    rows = [encode_dialogue(tok, "", response=text) for text in ("high bright tone", "low soft")]
    width = max(len(r[0]) for r in rows)
    ids = torch.full((2, width), tok.pad_token_id)
    labels = torch.full((2, width), -100)
    mask = torch.zeros(2, width, dtype=torch.long)
    for b, (i, lab) in enumerate(rows):
        ids[b, :len(i)], labels[b, :len(i)], mask[b, :len(i)] = torch.tensor(i), torch.tensor(lab), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "features": media_features(model, 2)}


def test_stage1_gradients_reach_gates_then_adapters(tiny_model):
    model = tiny_model
    model.set_trainable(["adapters", "gate", "prefix_query", "bias", "norm", "lora", "new_tokens"])
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("encoders.audio") for n in frozen) and any("base_layer" in n for n in frozen)
    batch = stage1_batch(model)
    model(batch).loss.backward()
    injection = model.llm.injection
    assert injection.gate.grad.abs().sum() > 0  # zero-init gates still get gradient
    # With tanh(0) = 0 the adapters cannot yet matter: their gradient is exactly zero.
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.adapters.parameters())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(4):
        opt.step()
        opt.zero_grad()
        model(batch).loss.backward()
    assert injection.gate.abs().sum() > 0
    for modality in ("audio", "image", "video"):
        assert model.adapters[modality].proj.weight.grad.abs().sum() > 0, modality
    assert injection.prefix_query.grad.abs().sum() > 0
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), f"frozen parameter {name} changed"


def greedy_full_recompute(model, ids: list[int], features, steps: int) -> list[int]:
    """The original's algorithm: no KV cache, the whole prefix recomputed at every step."""
    out = []
    vectors = model.llm.injection_vectors(model.adapter_tokens(features), 1)
    for _ in range(steps):
        t = torch.tensor([ids + out])
        logits, _ = model.llm(t, torch.ones_like(t), vectors)
        nxt = int(logits[0, -1].argmax())
        if nxt == model.tokenizer.eos_token_id:
            break
        out.append(nxt)
    return out


@torch.no_grad()
@pytest.mark.parametrize("optimized", [False, True], ids=["training-layout", "inference-optimized"])
def test_kv_cache_matches_full_recompute_and_batching(tiny_model, optimized, two_threads, monkeypatch):
    model = tiny_model.eval()
    model.llm.injection.gate.data.fill_(0.3)
    if optimized:  # as the Assistant runs it, with every product on the blocked CPU path
        monkeypatch.setattr(cpu_linear, "MIN_BLOCKED_ELEMENTS", 0)
        model.llm.optimize_for_inference()
    feats = media_features(model, batch_size=3)
    tok = model.tokenizer
    prompts = [encode_dialogue(tok, text)[0] for text in ("describe it", "write a slow sad song for this picture",
                                                          "what tempo?")]
    assert len({len(p) for p in prompts}) == 3
    batched = model.generate(prompts, features=feats, max_new_tokens=12)
    for b, prompt in enumerate(prompts):
        one = {k: v[b:b + 1] for k, v in feats.items()}
        alone = model.generate([prompt], features=one, max_new_tokens=12)[0]
        reference = greedy_full_recompute(model, prompt, one, 12)
        assert alone.token_ids == reference
        assert batched[b].token_ids == reference


class ScriptedTokens(LogitsProcessor):
    """Forces the generated tokens to follow a script (then EOS)."""

    def __init__(self, script: list[int], prompt_len: int, eos: int) -> None:
        self.script, self.prompt_len, self.eos = script, prompt_len, eos

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_len
        forced = self.script[step] if step < len(self.script) else self.eos
        out = torch.full_like(scores, -float("inf"))
        out[:, forced] = 0.0
        return out


@torch.no_grad()
def test_aud_states_complete_incomplete_out_of_order(tiny_model):
    model = tiny_model.eval()
    tok = model.tokenizer
    aud = model.llm.aud_token_ids
    prompt = encode_dialogue(tok, "compose something")[0]
    word = tok("calm", add_special_tokens=False).input_ids
    scripts = {"complete": word + aud, "incomplete": word + aud[:6],
               "out_of_order": word + [aud[0], aud[2], aud[1]] + aud[3:]}
    results = {}
    for name, script in scripts.items():
        proc = LogitsProcessorList([ScriptedTokens(script, len(prompt), tok.eos_token_id)])
        results[name] = model.generate([prompt], max_new_tokens=20, logits_processor=proc)[0]
        assert results[name].token_ids == script
    done = results["complete"]
    assert done.aud_states.shape == (8, model.llm.model.config.hidden_size)
    assert done.conditioning.shape == (model.config.projector.num_queries, model.config.projector.out_dim)
    assert "[AUD" not in done.text
    # The states are the last-layer (pre-norm) states at the positions that predict [AUD0..7].
    full = torch.tensor([prompt + done.token_ids])
    vectors = model.llm.injection_vectors({}, 1)
    _, hidden = model.llm(full, torch.ones_like(full), vectors)
    start = len(prompt) + len(word)
    torch.testing.assert_close(done.aud_states, hidden[0, start - 1:start + 7], atol=1e-5, rtol=1e-4)
    assert results["incomplete"].aud_states is None
    assert results["out_of_order"].aud_states is None


def test_find_aud_run():
    aud = [10, 11, 12]
    assert find_aud_run([1, 10, 11, 12, 2], aud) == 1
    assert find_aud_run([10, 11, 5, 10, 11, 12], aud) == 3
    assert find_aud_run([10, 12, 11], aud) is None
    assert find_aud_run([10, 11], aud) is None


@torch.no_grad()
def test_forced_music_gives_states(tiny_model):
    model = tiny_model.eval()
    prompt = encode_dialogue(model.tokenizer, "write music")[0]
    gen = model.generate([prompt, prompt], max_new_tokens=3, force_music=[True, False])
    assert gen[0].aud_states.shape[0] == 8 and gen[0].conditioning is not None
    assert gen[1].aud_states is None and gen[1].conditioning is None


def test_training_target_ends_with_eos_and_aud(tiny_model):
    tok = tiny_model.tokenizer
    ids, labels = encode_dialogue(tok, "make a song", response=with_aud_tokens("Here is a song.", 8))
    assert ids[-1] == tok.eos_token_id and labels[-1] == tok.eos_token_id
    assert find_aud_run(ids, tiny_model.llm.aud_token_ids) is not None
    response_len = sum(1 for x in labels if x != -100)
    assert labels[:len(ids) - response_len] == [-100] * (len(ids) - response_len)


@pytest.fixture
def two_threads():
    """Two intra-op threads (the blocked CPU products split in two), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@torch.no_grad()
def test_inference_optimization_keeps_outputs_and_injection(tiny_model, two_threads, monkeypatch):
    monkeypatch.setattr(cpu_linear, "MIN_BLOCKED_ELEMENTS", 0)  # the tiny weights take the blocked path too
    monkeypatch.setattr("m2ugen.llm.blocked_wins", lambda weight: True)  # as if measured faster here
    model = tiny_model.eval()
    for name, p in model.llm.model.named_parameters():
        if "lora_B" in name:
            p.normal_(0, 0.05)
    model.llm.injection.gate.fill_(0.4)
    ids = encode_dialogue(model.tokenizer, "hello")[0]
    feats = media_features(model)
    before = logits_of(model, ids, feats)
    generated = model.generate([ids], features=feats, max_new_tokens=6)[0].token_ids
    model.llm.optimize_for_inference()
    assert not any("lora_" in n for n, _ in model.llm.model.named_parameters())
    linears = [m for m in model.llm.layers.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is BlockedLinear for m in linears)
    assert type(model.llm.model.lm_head.base) is BlockedLinear
    torch.testing.assert_close(logits_of(model, ids, feats), before, atol=1e-5, rtol=1e-4)
    assert model.generate([ids], features=feats, max_new_tokens=6)[0].token_ids == generated


def left_padded(prompts: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, width - len(p):], mask[b, width - len(p):] = torch.tensor(p), 1
    return ids, mask


@torch.no_grad()
@pytest.mark.parametrize("optimized", [False, True], ids=["training-layout", "inference-optimized"])
def test_fast_decoding_gives_the_tokens_of_transformers_generate(tiny_model, optimized):
    """m2ugen.decoding against the previous path (transformers' generate + injection hooks): greedy,
    a batch of three prompt lengths, every modality injected, open gates, a trained-looking LoRA."""
    model = tiny_model.eval()
    for name, p in model.llm.model.named_parameters():
        if "lora_B" in name:
            p.normal_(0, 0.05)
    model.llm.injection.gate.fill_(0.4)
    if optimized:
        model.llm.optimize_for_inference()
    tok = model.tokenizer
    prompts = [encode_dialogue(tok, text)[0] for text in ("a", "write a slow sad song for this picture", "tempo?")]
    assert len({len(p) for p in prompts}) == 3
    feats = media_features(model, batch_size=3)
    ids, mask = left_padded(prompts, tok.pad_token_id)
    vectors = model.llm.injection_vectors(model.adapter_tokens(feats), 3)
    eos = tok.eos_token_id
    for processor in (None, LogitsProcessorList([SuppressTokensLogitsProcessor([eos])])):  # EOS, then 40 tokens
        options = dict(max_new_tokens=40, eos_token_id=eos, pad_token_id=tok.pad_token_id, logits_processor=processor)
        model.llm.injection.set_vectors(vectors)
        try:
            reference = model.llm.model.generate(input_ids=ids, attention_mask=mask, do_sample=False, **options)
        finally:
            model.llm.injection.set_vectors(None)
        fast = model.llm.decode(ids, mask, vectors, **options)
        assert fast.tokens.tolist() == reference[:, ids.shape[1]:].tolist()
    assert fast.tokens.shape == (3, 40) and fast.states.shape == (3, 40, model.llm.model.config.hidden_size)
    # Each step's state is the last layer's output at the position that predicted that token.
    full = torch.cat([ids, fast.tokens], 1)
    _, hidden = model.llm(full, torch.cat([mask, torch.ones_like(fast.tokens)], 1), vectors)
    torch.testing.assert_close(fast.states, hidden[:, ids.shape[1] - 1:-1], atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_sampling_is_reproducible_and_follows_top_p(tiny_model):
    model = tiny_model.eval()
    prompt = encode_dialogue(model.tokenizer, "play something")[0]
    runs = [model.generate([prompt], max_new_tokens=16, temperature=1.0, top_p=0.9, seed=s)[0].token_ids
            for s in (3, 3, 4)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    # top_p that keeps only the most likely token is greedy decoding.
    assert model.generate([prompt], max_new_tokens=16, temperature=1.0, top_p=1e-6, seed=5)[0].token_ids == \
        model.generate([prompt], max_new_tokens=16)[0].token_ids
