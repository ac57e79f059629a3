"""Training: config, stages, data readers, collate, checkpoints/resume, stage 2 targets, CLI errors.

The learning test (tones -> captions through ``m2ugen-train stage1``) is in test_training_learn.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from m2ugen.config import M2UGenConfig
from m2ugen.errors import ConfigError, DataError
from m2ugen.model import M2UGen
from m2ugen.prompt import IGNORE_INDEX
from training_utils import write_caption_set, write_tone_set
from training.cli import main
from training.config import DataSource, load_config
from training.data import Example, collate, read_source
from training.loop import BatchOrder, lr_factor
from training.params import stage_counts
from training.stages import STAGES, named_groups, optimizer_groups, trainable_names

FAST = ["num_threads=1", "progress=false", "log_every=1"]


def _write_config(path: Path, **fields) -> Path:
    path.write_text(json.dumps(fields))
    return path


# --- config ---------------------------------------------------------------------------------


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-4\nbatch_size: 2\ndata:\n  - {format: manifest, path: a.jsonl}\n")
    cfg = load_config(path, ["lr=3e-3", "trainable=[adapters, gate]", "model_overrides.lora_rank=2",
                             "betas=[0.9, 0.99]"], stage="stage1")
    assert cfg.lr == pytest.approx(3e-3) and isinstance(cfg.lr, float)
    assert cfg.batch_size == 2 and cfg.trainable_kinds == ("adapters", "gate")
    assert cfg.model_config().lora_rank == 2 and cfg.betas == (0.9, 0.99)
    assert cfg.data == [DataSource("manifest", "a.jsonl")]
    assert load_config(path, stage="stage2").loss_weights == (1.0, 1.0)
    assert load_config(path, stage="stage1").loss_weights == (1.0, 0.0)
    with pytest.raises(ConfigError, match="unknown keys"):
        load_config(path, ["learning_rate=1"])
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        load_config(path, ["batch_size=0"])
    with pytest.raises(ConfigError, match="gate_init is tanh"):
        load_config(path, ["gate_init=1.5"])
    assert load_config(path, ["gate_init=0.5", 'lr_scales={"gate": 5}']).lr_scales == {"gate": 5.0}
    with pytest.raises(ConfigError, match="data format 'csv'"):
        load_config(None, ['data=[{"format": "csv", "path": "x"}]'])


@pytest.mark.parametrize("override, message", [
    ("batch_size=[1]", "batch_size must be an integer"),
    ("max_steps=2.5", "max_steps must be an integer"),
    ("epochs=[1]", "epochs must be a number"),
    ("betas=0.9", "betas must be a list"),
    ("betas=[0.9]", "betas must be 2 items"),
    ("shuffle=maybe", "shuffle must be true or false"),
    ("output_dir=5", "output_dir must be a string"),
    ("model_overrides=3", "model_overrides must be a mapping"),
    ("data={format: manifest, path: x}", "data must be a list"),
    ('data=[{"format": "manifest", "path": "x", "limit": "many"}]', r"data\[0\].limit must be an integer"),
])
def test_config_values_of_the_wrong_type_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override], stage="stage1")


def test_config_file_unreadable_and_unknown_model_or_trainable_keys(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="cannot read the training config"):
        load_config(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="cannot read the training config"):
        load_config(tmp_path / "bin.yaml")
    with pytest.raises(ConfigError, match=r"model_overrides has unknown keys \['lora_rnak'\]"):
        load_config(None, ["model_overrides.lora_rnak=2"]).model_config()
    with pytest.raises(ConfigError, match=r"unknown parameter groups \['adaptors'\]"):
        trainable_names(tiny_model, ["adaptors"])


# --- stages ---------------------------------------------------------------------------------


def test_stage_trainable_sets_are_exact_and_all_receive_gradient(tiny_model):
    groups = named_groups(tiny_model)
    for spec in STAGES.values():
        names = set(trainable_names(tiny_model, spec.trainable))
        assert names == {n for kind in spec.trainable for n in groups[kind]}
    s1 = set(trainable_names(tiny_model, STAGES["stage1"].trainable))
    assert "llm.injection.gate" in s1 and not any(n.startswith("projector.") for n in s1)
    assert "llm.model.model.embed_tokens.weight" not in s1  # only the new rows, never the vocabulary
    assert "llm.model.model.embed_tokens.new_weight" in s1
    s3 = set(trainable_names(tiny_model, STAGES["stage3"].trainable))
    assert "llm.injection.gate" in s3 and any(n.startswith("projector.") for n in s3)

    # Stage 1 backward passes: the zero-initialised gates get gradient at once (the original's never
    # did); once a step has moved them, every adapter tensor and prefix query gets gradient too.
    tiny_model.set_trainable(STAGES["stage1"].trainable)
    tok = tiny_model.tokenizer
    examples = [_example(tok, "a calm song", m) for m in ("audio", "image", "video")]
    batch = collate(examples, tok.pad_token_id, [_features(tiny_model, m) for m in ("audio", "image", "video")])
    tiny_model(batch).loss.backward()
    gate = tiny_model.llm.injection.gate
    assert gate.grad is not None and bool((gate.grad.abs().sum(1) > 0).all())
    torch.optim.SGD([gate], lr=1.0).step()
    tiny_model.zero_grad()
    tiny_model(batch).loss.backward()
    assert bool((tiny_model.llm.injection.prefix_query.grad.abs().sum(1) > 0).all())
    for modality in ("audio", "image", "video"):
        for name, p in tiny_model.adapters[modality].named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (modality, name)


def test_optimizer_does_not_decay_biases_norms_gates_or_new_rows(tiny_model):
    names = trainable_names(tiny_model, STAGES["stage1"].trainable)
    decay, rest = optimizer_groups(tiny_model, names, 0.05, 1e-4)
    by_id = {id(p): n for n, p in tiny_model.named_parameters()}
    decayed = {by_id[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.05 and rest["weight_decay"] == 0.0
    assert len(decay["params"]) + len(rest["params"]) == len(names)
    for name in decayed:
        assert not (name.endswith((".bias", ".new_weight")) or "norm" in name
                    or name in ("llm.injection.gate", "llm.injection.prefix_query")), name
    assert any("lora_A" in n for n in decayed) and any(n.startswith("adapters.") for n in decayed)


def test_lr_scales_give_a_kind_its_own_learning_rate(tiny_model):
    names = trainable_names(tiny_model, STAGES["stage1"].trainable)
    groups = optimizer_groups(tiny_model, names, 0.05, 1e-4, {"gate": 20.0})
    by_id = {id(p): n for n, p in tiny_model.named_parameters()}
    lr_of = {by_id[id(p)]: group["lr"] for group in groups for p in group["params"]}
    assert sorted(lr_of) == sorted(names)
    assert lr_of["llm.injection.gate"] == pytest.approx(2e-3)
    assert all(lr == pytest.approx(1e-4) for n, lr in lr_of.items() if n != "llm.injection.gate")
    with pytest.raises(ConfigError, match="unknown parameter groups"):
        optimizer_groups(tiny_model, names, 0.05, 1e-4, {"gates": 2.0})


def test_lr_schedule_warmup_then_cosine_to_min():
    factors = [lr_factor(s, 100, 10, 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)


def test_batch_order_is_deterministic_and_splits_ranks():
    a = BatchOrder(10, 2, 2, 0, seed=3, shuffle=True)
    b = BatchOrder(10, 2, 2, 1, seed=3, shuffle=True)
    assert a.per_epoch == 2
    epoch0 = a.indices(0) + b.indices(0) + a.indices(1) + b.indices(1)
    assert len(set(epoch0)) == 8
    assert a.indices(2) != a.indices(0) or b.indices(2) != b.indices(0)  # a new permutation per epoch
    assert BatchOrder(10, 2, 2, 0, seed=3, shuffle=True).indices(3) == a.indices(3)
    with pytest.raises(DataError, match="fewer than one global batch"):
        BatchOrder(3, 2, 2, 0, seed=0, shuffle=True)


def test_parameter_counts_on_meta_device_match_a_real_model(tiny_model):
    counts = stage_counts("tiny")
    for stage, spec in STAGES.items():
        assert counts[stage]["total"] == tiny_model.set_trainable(spec.trainable)
    assert counts["stage1"]["all"] == sum(p.numel() for p in tiny_model.parameters())


# --- data -----------------------------------------------------------------------------------


def test_released_formats_are_read_and_bad_items_reported(tmp_path):
    (tmp_path / "MUCapsCaptions.json").write_text(json.dumps({"a.mp3": "calm piano", "b.mp3": "fast drums"}))
    (tmp_path / "MusicQA.json").write_text(json.dumps([
        {"audio_name": "q.wav", "conversation": [{"value": "What instrument?"}, {"value": "A piano."}]}]))
    (tmp_path / "alpaca.json").write_text(json.dumps([
        {"conversation": [{"from": "human", "value": "Say hi"}, {"from": "gpt", "value": "hi"}]},
        {"instruction": "Add", "input": "2 and 2", "output": "4"}]))
    (tmp_path / "MUImageInstructions.json").write_text(json.dumps([
        {"input_file": "x.jpg", "output_file": "x.mp3", "conversation": [
            {"from": "human", "value": "Music for this image", "input_modality": "image", "caption": "a beach"},
            {"from": "gpt", "value": "Here is a music that is calm", "caption": "calm guitar", "output_modality": "audio"}]},
        {"input_file": "y.jpg", "output_file": "y.mp3", "conversation": [
            {"from": "human", "value": "Music", "caption": "a dog"}, {"from": "gpt", "value": None, "caption": "x"}]}]))
    (tmp_path / "MUEditInstructions.json").write_text(json.dumps([
        {"input_file": "s.mp3", "output_file": "t.mp3", "conversation": [
            {"from": "human", "value": "Make it faster", "input_modality": "audio", "caption": "slow"},
            {"from": "gpt", "value": "Here it is", "caption": "fast rock", "output_modality": "audio"}]}]))

    caps, bad = read_source(DataSource("mucaps", str(tmp_path / "MUCapsCaptions.json")))
    assert not bad and [r.task for r in caps] == ["caption", "caption"]
    assert caps[0].audio == str(tmp_path / "audios" / "a.mp3") and caps[0].response == "calm piano"
    t2m, _ = read_source(DataSource("mucaps_t2m", str(tmp_path / "MUCapsCaptions.json"), limit=1))
    assert len(t2m) == 1 and t2m[0].task == "generate" and t2m[0].target_caption == "calm piano"
    qa, _ = read_source(DataSource("musicqa", str(tmp_path / "MusicQA.json"), media_root=str(tmp_path / "m")))
    assert qa[0].audio == str(tmp_path / "m" / "q.wav") and qa[0].instruction == "What instrument?"
    alpaca, _ = read_source(DataSource("alpaca", str(tmp_path / "alpaca.json")))
    assert [r.instruction for r in alpaca] == ["Say hi", "Add\n\n2 and 2"] and alpaca[1].response == "4"
    images, bad = read_source(DataSource("muimage", str(tmp_path / "MUImageInstructions.json")))
    assert len(images) == 1 and images[0].image == str(tmp_path / "audioset_images" / "x.jpg")
    assert images[0].target_caption == "calm guitar" and images[0].task == "generate"
    assert len(bad) == 1 and "response" in bad[0].reason  # the None answer is reported, not dropped silently
    edits, _ = read_source(DataSource("muedit", str(tmp_path / "MUEditInstructions.json")))
    assert edits[0].task == "edit" and edits[0].audio == str(tmp_path / "audioset" / "s.mp3")
    with pytest.raises(DataError, match="not found"):
        read_source(DataSource("coco", str(tmp_path / "missing.json")))


def _example(tok, response: str, modality: str | None, instruction: str = "") -> Example:
    from m2ugen.prompt import encode_dialogue

    ids, labels = encode_dialogue(tok, instruction, response=response)
    return Example(index=0, record=None, input_ids=ids, labels=labels, modality=modality,
                   media_path=None, target_caption=None)


def _features(model: M2UGen, modality: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(len(modality))
    shape = {"audio": (model.encoders["audio"].num_layers, model.encoders["audio"].hidden_size),
             "image": (model.encoders["image"].num_tokens, model.encoders["image"].hidden_size),
             "video": (model.encoders["video"].num_tokens, model.encoders["video"].hidden_size)}[modality]
    return torch.randn(*shape, generator=gen)


def test_padded_batch_loss_equals_mean_of_single_losses(tiny_model):
    tok = tiny_model.tokenizer
    tiny_model.llm.injection.gate.data.fill_(0.5)  # make the media matter
    specs = [("a slow and calm piano piece", "audio"), ("rock", "image"), ("a very long answer " * 6, "video"),
             ("plain text", None)]
    examples = [_example(tok, text, modality, instruction="describe") for text, modality in specs]
    feats = [_features(tiny_model, m) if m else None for _, m in specs]
    targets = [(torch.randn(4, 16), torch.tensor([1.0, 1.0, 1.0, 0.0])) if i % 2 else None for i in range(4)]
    batch = collate(examples, tok.pad_token_id, feats, targets)
    assert batch["input_ids"].shape[0] == 4 and len({len(e.input_ids) for e in examples}) > 1
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    with torch.no_grad():
        together = tiny_model(batch, mse_weight=0.0).loss
        singles = [tiny_model(collate([e], tok.pad_token_id, [f]), mse_weight=0.0).loss
                   for e, f in zip(examples, feats)]
    assert abs(float(together) - float(torch.stack(singles).mean())) <= 1e-5


# --- end to end through the CLI ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tones")
    return write_tone_set(folder, "train", per_class=3, seed=0)


def _stage1_config(tmp_path: Path, manifest: Path, **fields) -> Path:
    base = dict(model="tiny", output_dir=str(tmp_path / "run"), batch_size=4, lr=3e-3, min_lr=3e-4,
                warmup_steps=2, data=[{"format": "manifest", "path": str(manifest)}])
    return _write_config(tmp_path / "stage1.json", **{**base, **fields})


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, tones):
    overrides = ["max_steps=30", "save_every=3", "keep_checkpoints=2", *FAST]
    config = _stage1_config(tmp_path, tones, feature_cache_dir=str(tmp_path / "cache"))
    assert main(["stage1", "--config", str(config), f"output_dir={tmp_path / 'straight'}", *overrides]) == 0

    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "training.cli", "stage1", "--config", str(config),
                             f"output_dir={killed}", *overrides], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints" / "step_00000006").is_dir():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "final").exists()
    assert main(["stage1", "--config", str(config), f"output_dir={killed}", "--resume", *overrides]) == 0

    a = load_file(tmp_path / "straight" / "final" / "model.safetensors")
    b = load_file(killed / "final" / "model.safetensors")
    assert set(a) == set(b) and len(a) > 10
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    rows = (killed / "log.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 31))  # no duplicate or missing steps
    assert (killed / "loss.png").stat().st_size > 1000
    assert len(list((killed / "checkpoints").iterdir())) == 2


def test_unreadable_media_are_reported_and_counted(tmp_path, tones):
    broken = tmp_path / "broken.jsonl"
    lines = tones.read_text().splitlines()
    bad = json.loads(lines[0]) | {"id": "bad", "audio": str(tmp_path / "nope.wav")}
    (tmp_path / "garbage.wav").write_bytes(b"not audio at all")
    worse = json.loads(lines[1]) | {"id": "garbage", "audio": str(tmp_path / "garbage.wav")}
    broken.write_text("\n".join([json.dumps(bad), json.dumps(worse)] + [
        json.dumps(json.loads(x) | {"audio": str(tones.parent / json.loads(x)["audio"])}) for x in lines]) + "\n")
    config = _stage1_config(tmp_path, broken, max_bad_fraction=0.5, shuffle=False)
    assert main(["stage1", "--config", str(config), "max_steps=2", *FAST]) == 0
    problems = [json.loads(x) for x in (tmp_path / "run" / "data_problems.jsonl").read_text().splitlines()]
    assert {p["item"] for p in problems} == {"bad", "garbage"}
    assert any("not found" in p["reason"] for p in problems)
    counted = int((tmp_path / "run" / "log.csv").read_text().splitlines()[-1].split(",")[8])
    assert counted == len(problems)

    config = _stage1_config(tmp_path, broken, max_bad_fraction=0.01, output_dir=str(tmp_path / "strict"),
                            shuffle=False)
    assert main(["stage1", "--config", str(config), "max_steps=20", *FAST]) == 2  # DataError -> exit 2


def test_cli_refuses_to_overwrite_and_to_resume_nothing(tmp_path, tones, capsys):
    config = _stage1_config(tmp_path, tones)
    assert main(["stage1", "--config", str(config), "--resume", *FAST]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["stage1", "--config", str(config), "max_steps=1", *FAST]) == 0
    assert main(["stage1", "--config", str(config), "max_steps=1", *FAST]) == 2
    assert "already holds a training run" in capsys.readouterr().err


def test_resume_from_a_corrupt_checkpoint_is_one_error_line(tmp_path, tones, capsys):
    config = _stage1_config(tmp_path, tones)
    assert main(["stage1", "--config", str(config), "max_steps=1", "save_every=1", *FAST]) == 0
    (tmp_path / "run" / "checkpoints" / "step_00000001" / "optimizer.rank0.pt").write_text("hello, not a pickle")
    capsys.readouterr()
    assert main(["stage1", "--config", str(config), "--resume", "max_steps=1", "save_every=1", *FAST]) == 2
    err = capsys.readouterr().err
    assert "optimizer.rank0.pt: corrupt or truncated checkpoint" in err and "Traceback" not in err


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model):
    tok = tiny_model.tokenizer
    tiny_model.llm.injection.gate.data.fill_(0.3)
    batch = collate([_example(tok, "calm piano", "audio"), _example(tok, "loud", "audio")], tok.pad_token_id,
                    [_features(tiny_model, "audio")] * 2)
    tiny_model.train()
    tiny_model(batch).loss.backward()
    plain = {n: p.grad.clone() for n, p in tiny_model.named_parameters() if p.grad is not None}
    tiny_model.zero_grad()
    tiny_model.llm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    tiny_model(batch).loss.backward()
    for name, grad in plain.items():
        torch.testing.assert_close(dict(tiny_model.named_parameters())[name].grad, grad, rtol=1e-5, atol=1e-6)


def test_stage2_reduces_heldout_mse_to_decoder_conditioning(tmp_path):
    words = ["calm", "fast", "piano", "drums", "sad", "happy", "guitar", "violin", "jazz", "rock"]
    rng = np.random.default_rng(0)
    captions = [" ".join(rng.choice(words, 3, replace=False)) for _ in range(40)]
    train = write_caption_set(tmp_path, "train", captions[:32])
    held = write_caption_set(tmp_path, "held", captions[32:])
    config = _write_config(tmp_path / "stage2.json", model="tiny", output_dir=str(tmp_path / "run"), batch_size=8,
                           lr=1e-2, min_lr=1e-3, max_steps=150, data=[{"format": "manifest", "path": str(train)}],
                           val_data=[{"format": "manifest", "path": str(held)}])
    assert main(["stage2", "--config", str(config), *FAST]) == 0
    rows = (tmp_path / "run" / "eval.csv").read_text().splitlines()[1:]
    first, last = (float(r.split(",")[2]) for r in (rows[0], rows[-1]))
    assert last < 0.6 * first, (first, last)
    trained = load_file(tmp_path / "run" / "final" / "model.safetensors")
    assert any(k.startswith("projector.") for k in trained) and not any(k.startswith("adapters.") for k in trained)

    # Stage 3 starts from stage 2's output and keeps its tensors in its own final file.
    config3 = _write_config(tmp_path / "stage3.json", model="tiny", output_dir=str(tmp_path / "run3"), batch_size=4,
                            max_steps=2, init_from=str(tmp_path / "run" / "final"),
                            data=[{"format": "manifest", "path": str(train)}])
    assert main(["stage3", "--config", str(config3), *FAST]) == 0
    final3 = load_file(tmp_path / "run3" / "final" / "model.safetensors")
    assert set(trained) <= set(final3)
    assert torch.equal(final3["llm.model.model.embed_tokens.new_weight"],
                       trained["llm.model.model.embed_tokens.new_weight"])  # not trained in stage 3


def test_tiny_projector_matches_tiny_decoder():
    from m2ugen.decoders import load_decoder

    cfg = M2UGenConfig.preset("tiny")
    decoder = load_decoder(cfg.decoder, cfg.decoder_path)
    assert tuple(decoder.conditioning_shape) == (cfg.projector.num_queries, cfg.projector.out_dim)
