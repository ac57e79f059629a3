"""Released-checkpoint conversion: all missing / unknown key groups named at once, and a checkpoint
of only the trained tensors converted with the frozen encoders given as local directories."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from m2ugen.cli import main
from m2ugen.config import M2UGenConfig
from m2ugen.convert.released import convert_released
from m2ugen.errors import CheckpointError
from m2ugen.model import M2UGen
from test_checkpoints import TINY_TOKENIZER_DIR, _original


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    cfg = M2UGenConfig.preset("tiny")
    ref = _original(cfg)
    tmp = tmp_path_factory.mktemp("groups")
    ref.generation_model.save_pretrained(tmp / "musicgen-ref")
    return ref, dataclasses.replace(cfg, decoder_path=str(tmp / "musicgen-ref"))


def test_every_missing_and_unknown_group_is_named_at_once(original, tmp_path):
    ref, base = original
    state = {k: v for k, v in ref.state_dict().items()
             if not k.startswith(("output_projector.", "vit_model.", "mu_mert_agg"))}
    state["extra_head.weight"] = torch.zeros(2)
    torch.save({"model": state}, tmp_path / "checkpoint.pth")
    with pytest.raises(CheckpointError) as info:
        convert_released(tmp_path / "checkpoint.pth", tmp_path / "out", tokenizer=TINY_TOKENIZER_DIR, base=base)
    message = str(info.value)
    for part in ("output projector queries (output_projector.query_embs)", "output projector output layer",
                 "output projector transformer", "audio adapter (mu_mert_agg.weight)",
                 "vit encoder (vit_model.*; or give --vit DIR", "unknown key group(s): extra_head.*"):
        assert part in message, message
    assert "\n" not in message and not (tmp_path / "out").exists()


def test_a_trained_tensors_only_checkpoint_converts_with_local_encoders(original, tmp_path, capfd):
    ref, base = original
    encoders = {"mert": ref.mert_model, "vit": ref.vit_model, "vivit": ref.vivit_model}
    for name, module in encoders.items():
        module.save_pretrained(tmp_path / name)
    frozen = tuple(f"{name}_model." for name in encoders)
    torch.save({"model": {k: v for k, v in ref.state_dict().items() if not k.startswith(frozen)}},
               tmp_path / "trained.pth")
    base = dataclasses.replace(base, **{f"{name}_path": str(tmp_path / name) for name in encoders})
    report = convert_released(tmp_path / "trained.pth", tmp_path / "out", tokenizer=TINY_TOKENIZER_DIR, base=base)
    capfd.readouterr()
    model = M2UGen.from_pretrained(report.out)
    loading = capfd.readouterr()
    assert "LOAD REPORT" not in loading.err + loading.out and "MISSING" not in loading.err + loading.out
    ours = model.encoders["image"].model.state_dict()
    theirs = {k: v for k, v in ref.vit_model.state_dict().items() if not k.startswith("pooler.")}
    assert all(torch.equal(ours[k], v) for k, v in theirs.items())
    assert model.config.vit_path == str((tmp_path / "vit").resolve())
    assert not (report.out / "vit").exists()

    # the command line says in one line what it loaded, and nothing else about the load
    sf.write(tmp_path / "a.wav", 0.3 * np.sin(np.arange(16000) / 8.0), 16000)
    assert main(["caption", "--model", str(report.out), str(tmp_path / "a.wav"), "--max-new-tokens", "4"]) == 0
    err = capfd.readouterr().err
    assert "LOAD REPORT" not in err and "newly initialized" not in err
    assert [line for line in err.splitlines() if line.startswith("loaded ")] == [
        f"loaded {report.out}: m2ugen-released, LLaMA {model.llm.model.config.num_hidden_layers} layers x "
        f"{model.llm.model.config.hidden_size} (LoRA rank {model.config.lora_rank}), decoder musicgen, float32"]
