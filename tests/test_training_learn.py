"""Stage 1 learns from its inputs: tones -> captions through ``m2ugen-train stage1``.

Register (low/high) and timbre (soft/bright) of each tone name its caption. After a short stage 1
the greedy captions of held-out tones must be right at least 90% of the time, while the same run
with the gates frozen at zero (the original M2UGen's bug) cannot beat chance: the LLM never sees
the audio.

The tiny preset is used with two test overrides that make the random model usable as a learner:
its random MERT normalises each frame across channels (``feat_extract_norm="layer"``) so tones of
different spectra give different features, and its random LLaMA starts with a wider weight spread
(``initializer_range=0.1``) so that the frozen LM head can express confident predictions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from m2ugen.config import M2UGenConfig
from m2ugen.model import M2UGen
from m2ugen.prompt import encode_dialogue
from training_utils import CAPTIONS, write_tone_set
from training.checkpoint import load_stage_output
from training.cli import main
from training.config import DataSource
from training.data import read_source
from training.features import Featurizer


def _model_overrides() -> dict:
    tiny = M2UGenConfig.preset("tiny")
    return {"llm_config": {**tiny.llm_config, "initializer_range": 0.1},
            "mert_config": {**tiny.mert_config, "feat_extract_norm": "layer", "conv_bias": True}}


def _heldout_accuracy(run: Path, manifest: Path) -> tuple[float, list[str]]:
    cfg = M2UGenConfig.load(run / "final" / "config.json")
    model = M2UGen.from_config(cfg)
    load_stage_output(model, run / "final")
    records, _ = read_source(DataSource("manifest", str(manifest)))
    featurizer = Featurizer(model)
    features = torch.stack([featurizer.features("audio", r.audio) for r in records])
    prompt, _ = encode_dialogue(model.tokenizer, "")
    texts = [g.text for g in model.generate([prompt] * len(records), features={"audio": features},
                                            max_new_tokens=6)]
    return sum(t == r.response for t, r in zip(texts, records)) / len(records), texts


@pytest.mark.slow
def test_stage1_learns_captions_from_audio_and_frozen_gates_stay_at_chance(tmp_path):
    train = write_tone_set(tmp_path, "train", per_class=16, seed=0)
    held = write_tone_set(tmp_path, "held", per_class=6, seed=1)
    config = tmp_path / "stage1.json"
    config.write_text(json.dumps({
        "model": "tiny", "model_overrides": _model_overrides(), "batch_size": 16, "max_steps": 250,
        "lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 10, "weight_decay": 0.0, "seed": 0, "num_threads": 1,
        "progress": False, "save_every": 1000, "data": [{"format": "manifest", "path": str(train)}]}))

    assert main(["stage1", "--config", str(config), f"output_dir={tmp_path / 'gated'}"]) == 0
    accuracy, texts = _heldout_accuracy(tmp_path / "gated", held)
    assert accuracy >= 0.9, texts

    frozen = ["trainable=[adapters, prefix_query, bias, norm, lora, new_tokens]"]
    assert main(["stage1", "--config", str(config), f"output_dir={tmp_path / 'frozen'}", *frozen]) == 0
    accuracy, texts = _heldout_accuracy(tmp_path / "frozen", held)
    assert accuracy <= 0.5, texts  # four balanced captions: chance is 0.25
    assert len(set(texts)) == 1 and texts[0] in CAPTIONS  # it learned the words, not the audio
