"""Checkpoints: our format round trip, released-checkpoint equivalence, Meta LLaMA, safety."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle

import pytest
import torch
from transformers import (EncodecConfig, HubertConfig, HubertModel, LlamaForCausalLM, MusicgenConfig,
                          MusicgenDecoderConfig, MusicgenForConditionalGeneration, T5Config, ViTConfig, ViTModel,
                          VivitConfig, VivitModel)

from m2ugen.checkpoints import load_torch_file, read_weights, save_pretrained, write_weights
from m2ugen.config import TINY_TOKENIZER_DIR, M2UGenConfig
from m2ugen.convert.llama import convert_meta_llama, permute_rows
from m2ugen.convert.merged import export_merged
from m2ugen.convert.released import convert_released
from m2ugen.errors import CheckpointError
from m2ugen.llm import gate_report
from m2ugen.model import M2UGen
from m2ugen.prompt import encode_dialogue
from original_reference import OriginalM2UGen, randomize


@pytest.fixture(scope="module")
def tiny_config() -> M2UGenConfig:
    return M2UGenConfig.preset("tiny")


@pytest.fixture(scope="module")
def trained_tiny(tiny_config) -> M2UGen:
    """A tiny model whose trained tensors are all random and non-zero."""
    model = M2UGen.from_config(tiny_config)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for group in model.parameter_groups().values():
            for p in group:
                p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def _features(model: M2UGen, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, a.num_tokens, a.in_dim, generator=g) for m, a in model.adapters.items()}


def _batch(model: M2UGen, features: dict[str, torch.Tensor]) -> dict:
    tok = model.tokenizer
    ids, _ = encode_dialogue(tok, "describe this and make music",
                             response="calm piano [AUD0][AUD1][AUD2][AUD3][AUD4][AUD5][AUD6][AUD7]")
    input_ids = torch.tensor([ids] * 2)
    return dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=input_ids.clone(),
                features=features)


# --- our format ---------------------------------------------------------------------------------
def test_round_trip_identical_logits_and_generations(trained_tiny, tmp_path):
    model = trained_tiny
    out = save_pretrained(model, tmp_path / "ckpt")
    saved = json.loads((out / "config.json").read_text())
    assert saved["tokenizer_path"] == "."
    loaded = M2UGen.from_pretrained(out).eval()
    feats = _features(model, 2)
    with torch.no_grad():
        a = model(_batch(model, feats)).logits
        b = loaded(_batch(loaded, feats)).logits
    assert torch.equal(a, b)
    prompt, _ = encode_dialogue(model.tokenizer, "make music")
    ga = model.generate([prompt, prompt[:6]], features=feats, max_new_tokens=12, force_music=True)
    gb = loaded.generate([prompt, prompt[:6]], features=feats, max_new_tokens=12, force_music=True)
    for x, y in zip(ga, gb):
        assert x.token_ids == y.token_ids and x.text == y.text
        assert torch.equal(x.conditioning, y.conditioning)
    # Only the trained tensors are stored.
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "llm.injection.gate" in keys and not any("base_layer.weight" in k for k in keys)


def test_load_rejects_missing_and_unexpected_keys(trained_tiny, tmp_path):
    out = save_pretrained(trained_tiny, tmp_path / "ckpt")
    tensors = read_weights(out / "model.safetensors")
    tensors.pop("llm.injection.gate")
    tensors["surprise.weight"] = torch.zeros(2)
    write_weights(tensors, out / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"1 missing keys: llm\.injection\.gate.*1 unexpected keys: surprise"):
        M2UGen.from_pretrained(out)


def test_load_checks_the_format_version(trained_tiny, tmp_path):
    from safetensors.torch import save_file

    out = save_pretrained(trained_tiny, tmp_path / "ckpt")
    tensors = read_weights(out / "model.safetensors")
    save_file(tensors, out / "model.safetensors", metadata={"m2ugen_format": "0"})
    with pytest.raises(CheckpointError, match="format version 0; this m2ugen reads version 1"):
        M2UGen.from_pretrained(out)
    save_file(tensors, out / "model.safetensors")
    with pytest.raises(CheckpointError, match="no m2ugen format version"):
        M2UGen.from_pretrained(out)


def test_merged_export_matches_text_only_model(trained_tiny, tmp_path):
    model = trained_tiny
    gate = model.llm.injection.gate.data.clone()
    model.llm.injection.gate.data.zero_()
    try:
        out = export_merged(model, tmp_path / "merged")
        merged = LlamaForCausalLM.from_pretrained(out).eval()
        batch = _batch(model, {})
        with torch.no_grad():
            ours = model(batch).logits
            theirs = merged(input_ids=batch["input_ids"]).logits
    finally:
        model.llm.injection.gate.data.copy_(gate)
    assert theirs.shape == ours.shape
    assert (ours - theirs).abs().max().item() < 1e-4


# --- released checkpoints -----------------------------------------------------------------------
def _tiny_musicgen() -> MusicgenForConditionalGeneration:
    t5 = T5Config(vocab_size=100, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    enc = EncodecConfig(target_bandwidths=[1.5], audio_channels=1, sampling_rate=32000, num_filters=4, hidden_size=8,
                        codebook_size=64, upsampling_ratios=[8, 5, 4, 4], num_lstm_layers=1, codebook_dim=8)
    dec = MusicgenDecoderConfig(vocab_size=64, hidden_size=24, num_hidden_layers=1, num_attention_heads=2, ffn_dim=32,
                                num_codebooks=2, pad_token_id=64, bos_token_id=64, max_position_embeddings=64)
    cfg = MusicgenConfig(text_encoder=t5.to_dict(), audio_encoder=enc.to_dict(), decoder=dec.to_dict())
    torch.manual_seed(5)
    return MusicgenForConditionalGeneration(cfg).eval()


def _original(cfg: M2UGenConfig, seed: int = 0) -> OriginalM2UGen:
    """A tiny original-layout model with random non-zero weights, gates, biases and LoRA."""
    llm = cfg.llm_config
    mert = HubertModel(HubertConfig(**cfg.mert_config, tie_last_hidden_states=True))
    vit = ViTModel(ViTConfig(**cfg.vit_config))
    vivit = VivitModel(VivitConfig(**cfg.vivit_config))
    vit_tokens = (vit.config.image_size // vit.config.patch_size) ** 2 + 1
    t, h, w = vivit.config.tubelet_size
    vivit_tokens = (vivit.config.num_frames // t) * (vivit.config.image_size // h) * (vivit.config.image_size // w) + 1
    p = cfg.projector
    ref = OriginalM2UGen(
        dim=llm["hidden_size"], layers=llm["num_hidden_layers"], heads=llm["num_attention_heads"],
        ffn=llm["intermediate_size"], vocab=llm["vocab_size"] + cfg.num_aud_tokens, rank=cfg.lora_rank,
        eps=llm["rms_norm_eps"], query_layer=cfg.layers_per_modality,
        encoders={"audio": (mert.config.num_hidden_layers + 1, mert.config.hidden_size),
                  "image": (vit_tokens, vit.config.hidden_size), "video": (vivit_tokens, vivit.config.hidden_size)},
        projector=dict(d_model=p.d_model, heads=p.num_heads, enc=p.num_encoder_layers, dec=p.num_decoder_layers,
                       ffn=p.ffn_dim, queries=p.num_queries, out=p.out_dim),
        frozen={"mert_model": mert, "vit_model": vit, "vivit_model": vivit, "generation_model": _tiny_musicgen()})
    g = torch.Generator().manual_seed(seed)
    for part in (ref.llama, ref.prefix_query, ref.output_projector):
        randomize(part, g)
    for name, module in ref.named_children():
        if name.startswith(("mu_", "iu_")):
            randomize(module, g)
    return ref.eval()


@pytest.fixture(scope="module")
def released(tiny_config, tmp_path_factory):
    """(original model, converted directory, conversion report) for a fp32 tiny checkpoint.pth."""
    tmp = tmp_path_factory.mktemp("released")
    ref = _original(tiny_config)
    ref.generation_model.save_pretrained(tmp / "musicgen-ref")
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}  # DDP prefixes, as in some saves
    torch.save({"model": state}, tmp / "checkpoint.pth")
    base = dataclasses.replace(tiny_config, decoder_path=str(tmp / "musicgen-ref"))
    report = convert_released(tmp / "checkpoint.pth", tmp / "converted", tokenizer=TINY_TOKENIZER_DIR, base=base)
    return ref, report.out, report


def test_released_conversion_matches_original_maths(released):
    ref, out, report = released
    model = M2UGen.from_pretrained(out).eval()
    assert model.config.lora_alpha == model.config.lora_rank
    tok = model.tokenizer
    ids, _ = encode_dialogue(tok, "what is in the clip",
                             response="a piano [AUD0][AUD1][AUD2][AUD3][AUD4][AUD5][AUD6][AUD7]")
    tokens = torch.tensor([ids, ids])
    feats = _features(model, 2, seed=1)
    for present in (("audio", "image", "video"), ("audio",), ("image", "video"), ()):
        sub = {m: feats[m] for m in present}
        with torch.no_grad():
            expected = ref(tokens, sub)
            ours = model(dict(input_ids=tokens, attention_mask=torch.ones_like(tokens), labels=tokens,
                              features=sub)).logits
        diff = (ours - expected).abs().max().item()
        assert diff <= 1e-4, f"{present}: max|diff| {diff}"
    # The media change the logits, so the comparison above really covers the injection.
    assert (ref(tokens, feats) - ref(tokens, {})).abs().max().item() > 1e-2
    # Projector and frozen encoders carried over.
    x, e = torch.randn(2, 8, 64), torch.randn(2, 8, 64)
    with torch.no_grad():
        assert torch.allclose(model.projector(x, e), ref.output_projector(x, e), atol=1e-5)
    ref_vit = {k: v for k, v in ref.vit_model.state_dict().items() if not k.startswith("pooler.")}
    ours_vit = model.encoders["image"].model.state_dict()
    assert all(torch.equal(ours_vit[k], v) for k, v in ref_vit.items())
    assert not any("WARNING" in line for line in report.lines)


def test_released_musicgen_directory_loads(released):
    ref, out, _ = released
    mg = MusicgenForConditionalGeneration.from_pretrained(out / "musicgen")
    ours, theirs = mg.state_dict(), ref.generation_model.state_dict()
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert json.loads((out / "config.json").read_text())["decoder_path"] == "musicgen"


def test_released_unexpected_key_is_listed(tiny_config, tmp_path):
    ref = _original(tiny_config)
    state = dict(ref.state_dict())
    state["llama.layers.0.attention.mystery"] = torch.zeros(3)
    torch.save({"model": state}, tmp_path / "checkpoint.pth")
    base = dataclasses.replace(tiny_config, decoder_path=str(tmp_path / "mg"))
    ref.generation_model.save_pretrained(tmp_path / "mg")
    with pytest.raises(CheckpointError, match=r"unexpected keys: llama\.layers\.0\.attention\.mystery"):
        convert_released(tmp_path / "checkpoint.pth", tmp_path / "out", tokenizer=TINY_TOKENIZER_DIR, base=base)


def test_zero_gates_are_reported_plainly():
    lines = gate_report(torch.zeros(18, 32), layers_per_modality=6, first_layer=14)
    assert "gates audio (layers 14-19)" in lines[0]
    assert any("ignores its audio, image and video inputs" in line for line in lines)
    assert not any("ignores" in line for line in gate_report(torch.full((3, 4), 0.5), 1, 1))


# --- Meta LLaMA ---------------------------------------------------------------------------------
# Meta's model-parallel layout (fairscale): column-parallel layers split their output rows, row-parallel
# layers their input columns, the parallel embedding its columns; norms are replicated.
_META_PARALLEL_DIM = {"wq.weight": 0, "wk.weight": 0, "wv.weight": 0, "w1.weight": 0, "w3.weight": 0,
                      "output.weight": 0, "wo.weight": 1, "w2.weight": 1, "tok_embeddings.weight": 1}


def _meta_llama(tiny_config, tmp_path, num_shards: int = 1):
    """A plain Meta LLaMA folder from the original's tiny LLaMA -> (the reference model, the folder)."""
    ref = _original(tiny_config).llama
    with torch.no_grad():  # a plain Meta LLaMA: no biases, no LoRA, no [AUD] rows
        meta = {k: v for k, v in ref.state_dict().items() if "lora" not in k and "bias" not in k and "gate" not in k}
        meta["tok_embeddings.weight"] = meta["tok_embeddings.weight"][:1000].clone()
        meta["output.weight"] = meta["output.weight"][:1000].clone()
        for name, module in ref.named_modules():
            if name.endswith(("wq", "wo", "w1", "w2", "w3")):
                module.bias.zero_()
            if "lora_" in name and name.endswith("_l2"):
                module.weight.zero_()
    src = tmp_path / "LLaMA" / "7B"
    src.mkdir(parents=True)
    for rank in range(num_shards):  # model-parallel pieces, split as Meta splits them
        shard = {}
        for key, value in meta.items():
            dim = next((d for suffix, d in _META_PARALLEL_DIM.items() if key.endswith(suffix)), None)
            shard[key] = value.clone() if dim is None else value.chunk(num_shards, dim=dim)[rank].clone()
        torch.save(shard, src / f"consolidated.{rank:02d}.pth")
    (src / "params.json").write_text(json.dumps({"dim": 64, "n_layers": 4, "n_heads": 4, "multiple_of": 16,
                                                 "norm_eps": 1e-5, "vocab_size": -1}))
    (tmp_path / "LLaMA" / "tokenizer.model").write_bytes((TINY_TOKENIZER_DIR / "tokenizer.model").read_bytes())
    return ref, src


@pytest.mark.parametrize("num_shards", [1, 2])
def test_meta_llama_conversion(tiny_config, tmp_path, num_shards):
    ref, src = _meta_llama(tiny_config, tmp_path, num_shards)
    out = convert_meta_llama(src, tmp_path / "hf", max_shard_bytes=100_000)
    assert (out / "model.safetensors.index.json").is_file() and (out / "tokenizer.model").is_file()
    hf = LlamaForCausalLM.from_pretrained(out).eval()
    tokens = torch.randint(0, 1000, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (hf(input_ids=tokens).logits - ref(tokens, [None] * 4)[..., :1000]).abs().max().item()
    assert diff <= 1e-4
    # Without the permutation the model would differ: the check above can fail.
    w = torch.randn(8, 3)
    assert not torch.equal(permute_rows(w, 2), w)
    assert torch.equal(permute_rows(torch.arange(8.0), 2), torch.tensor([0., 2, 1, 3, 4, 6, 5, 7]))


def test_meta_llama_shards_are_all_checked_before_writing(tiny_config, tmp_path):
    _, src = _meta_llama(tiny_config, tmp_path, num_shards=2)
    second = torch.load(src / "consolidated.01.pth", weights_only=True)
    del second["layers.3.feed_forward.w2.weight"]
    torch.save(second, src / "consolidated.01.pth")
    with pytest.raises(CheckpointError, match=r"consolidated\.01\.pth.*layers\.3\.feed_forward\.w2\.weight"):
        convert_meta_llama(src, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    second["layers.3.feed_forward.w2.weight"] = torch.zeros(64, 3)  # a shard of another model size
    torch.save(second, src / "consolidated.01.pth")
    with pytest.raises(CheckpointError, match=r"layers\.3\.feed_forward\.w2\.weight has different shapes"):
        convert_meta_llama(src, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


# --- safety -------------------------------------------------------------------------------------
class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("kind", ["zip", "plain"])
def test_code_carrying_pickle_is_refused(tmp_path, kind):
    marker = tmp_path / "PWNED"
    path = tmp_path / "checkpoint.pth"
    payload = {"model": {"x": torch.zeros(1), "y": _Evil(str(marker))}}
    if kind == "zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError, match="refused to load" + (".*system" if kind == "zip" else "")):
        load_torch_file(path)
    with pytest.raises(CheckpointError):
        convert_released(path, tmp_path / "out", tokenizer=TINY_TOKENIZER_DIR)
    assert not marker.exists()


def test_corrupt_and_truncated_checkpoints(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"model": {"a": torch.randn(64, 64)}}, good)
    data = good.read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pth").write_bytes(os.urandom(4096))
    for name in ("trunc.pth", "junk.pth"):
        with pytest.raises(CheckpointError, match=name):
            load_torch_file(tmp_path / name)
    with pytest.raises(CheckpointError, match="not found"):
        load_torch_file(tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="not a released M2UGen checkpoint"):
        convert_released(good, tmp_path / "out", tokenizer=TINY_TOKENIZER_DIR)


def test_bad_llama_params_and_tokenizer_are_named_before_anything_is_written(tmp_path, capsys):
    from m2ugen.cli import main as m2ugen_main

    src = tmp_path / "7B"
    src.mkdir()
    torch.save({"tok_embeddings.weight": torch.zeros(4, 8)}, src / "consolidated.00.pth")
    (src / "tokenizer.model").write_bytes((TINY_TOKENIZER_DIR / "tokenizer.model").read_bytes())
    for params, message in (('{"dim": 8}', "missing n_layers, n_heads"), ("[1]", "expected a JSON object"),
                            ('{"n_layers": "4", "n_heads": 2}', "n_layers must be a number"),
                            ("{nope", "not a readable JSON file")):
        (src / "params.json").write_text(params)
        with pytest.raises(CheckpointError, match=message):
            convert_meta_llama(src, tmp_path / "hf")
    (src / "params.json").write_text('{"n_layers": 1, "n_heads": 2}')
    (src / "tokenizer.model").write_bytes(os.urandom(300))
    with pytest.raises(CheckpointError, match="tokenizer.model: not a SentencePiece tokenizer model"):
        convert_meta_llama(src, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    capsys.readouterr()
    assert m2ugen_main(["convert", "released", str(src / "consolidated.00.pth"), "--out", str(tmp_path / "o"),
                        "--tokenizer", str(TINY_TOKENIZER_DIR), "--params", str(tmp_path / "none.json")]) == 2
    assert "none.json: params.json not found" in capsys.readouterr().err


# --- audiocraft MusicGen -----------------------------------------------------------------------
def _audiocraft_state(model: MusicgenForConditionalGeneration) -> dict[str, torch.Tensor]:
    """The audiocraft LM layout of a transformers MusicGen (fused in_proj, audiocraft names)."""
    sd = model.state_dict()
    dec = "decoder.model.decoder."
    out = {f"emb.{k}.weight": sd[f"{dec}embed_tokens.{k}.weight"] for k in range(model.decoder.num_codebooks)}
    out |= {f"linears.{k}.weight": sd[f"decoder.lm_heads.{k}.weight"] for k in range(model.decoder.num_codebooks)}
    out |= {"out_norm.weight": sd[f"{dec}layer_norm.weight"], "out_norm.bias": sd[f"{dec}layer_norm.bias"]}
    out |= {f"condition_provider.conditioners.description.output_proj.{p}": sd[f"enc_to_dec_proj.{p}"]
            for p in ("weight", "bias")}
    for i in range(model.decoder.config.num_hidden_layers):
        src, dst = f"{dec}layers.{i}.", f"transformer.layers.{i}."
        for ours, theirs in (("self_attn", "self_attn"), ("encoder_attn", "cross_attention")):
            out[dst + theirs + ".in_proj_weight"] = torch.cat(
                [sd[f"{src}{ours}.{p}_proj.weight"] for p in "qkv"])
            out[dst + theirs + ".out_proj.weight"] = sd[f"{src}{ours}.out_proj.weight"]
        for ours, theirs in (("self_attn_layer_norm", "norm1"), ("encoder_attn_layer_norm", "norm_cross"),
                             ("final_layer_norm", "norm2")):
            for p in ("weight", "bias"):
                out[f"{dst}{theirs}.{p}"] = sd[f"{src}{ours}.{p}"]
        out[dst + "linear1.weight"] = sd[src + "fc1.weight"]
        out[dst + "linear2.weight"] = sd[src + "fc2.weight"]
    return out


def test_audiocraft_musicgen_conversion_via_cli(tmp_path):
    from m2ugen.cli import main

    reference = _tiny_musicgen()
    reference.save_pretrained(tmp_path / "reference")
    torch.manual_seed(9)
    tuned = MusicgenForConditionalGeneration(reference.config).eval()
    tuned.text_encoder.load_state_dict(reference.text_encoder.state_dict())
    tuned.audio_encoder.load_state_dict(reference.audio_encoder.state_dict())
    torch.save({"best_state": _audiocraft_state(tuned), "xp.cfg": "lm_model: transformer_lm\n", "exported": True},
               tmp_path / "state_dict.bin")
    torch.save({"pretrained": "facebook/encodec_32khz", "exported": True}, tmp_path / "compression_state_dict.bin")
    code = main(["convert", "musicgen", str(tmp_path / "state_dict.bin"), "--compression",
                 str(tmp_path / "compression_state_dict.bin"), "--reference", str(tmp_path / "reference"),
                 "--out", str(tmp_path / "out")])
    assert code == 0
    converted = MusicgenForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    ours, theirs = converted.state_dict(), tuned.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert not torch.equal(ours["decoder.lm_heads.0.weight"], reference.state_dict()["decoder.lm_heads.0.weight"])
    # A bad file is one line on stderr and exit code 2, not a traceback.
    (tmp_path / "bad.bin").write_bytes(b"not a checkpoint")
    assert main(["convert", "musicgen", str(tmp_path / "bad.bin"), "--reference", str(tmp_path / "reference"),
                 "--out", str(tmp_path / "out2")]) == 2
    # A second conversion into the filled folder is refused (stale shards would stay), unless asked for.
    again = ["convert", "musicgen", str(tmp_path / "state_dict.bin"), "--compression",
             str(tmp_path / "compression_state_dict.bin"), "--reference", str(tmp_path / "reference"),
             "--out", str(tmp_path / "out")]
    assert main(again) == 2
    assert main([*again, "--overwrite"]) == 0
