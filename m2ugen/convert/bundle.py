"""The bundle: a trained M2UGen as one self-contained checkpoint folder (``m2ugen convert bundle``).

A bundle is our checkpoint format (:mod:`m2ugen.checkpoints`) with no path outside its folder. Each
frozen component that a run loaded from a local folder (m2ugen-mini: the LLaMA of ``pretrain-lm``,
the MERT-architecture encoder of ``pretrain-encoder``) goes into ``config.json`` as its transformers
config (``llm_config``, ``mert_config``; the encoder's input normalisation as ``do_normalize``) and
into ``model.safetensors`` as weights (the config lists it in ``bundled``). Matrices are stored in
float16 (by default), vectors (norms, biases) in float32; loading casts back to the config's dtype.
Components given by a config (the mini's untrained image and video encoders) are not stored: they
are rebuilt from their seeds, identically at every load. What the run never trained (the
mini's projector) is stored at its seeded initial values, so a bundle always loads with
:meth:`m2ugen.model.M2UGen.from_pretrained`.

The written folder is loaded back and checked before it replaces ``out``: the logits of a test turn
(a question with one second of audio) must match the run's.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from m2ugen.audio import Audio
from m2ugen.checkpoints import (CONFIG_NAME, PATH_FIELDS, WEIGHTS_NAME, load_config, load_tensors, read_weights,
                                save_pretrained, trained_parameters)
from m2ugen.config import COMPONENTS, M2UGenConfig
from m2ugen.errors import CheckpointError, ConfigError
from m2ugen.model import M2UGen

# Keys of a transformers config that describe the file, not the network, or that m2ugen sets itself.
_NOT_NETWORK = ("transformers_version", "model_type", "architectures", "auto_map", "_name_or_path", "dtype",
                "torch_dtype", "attention_bias", "mlp_bias", "tie_word_embeddings", "tie_last_hidden_states")
# Largest accepted difference of the reloaded bundle's test logits from the run's, relative to their spread
# (16-bit storage of the matrices moves them by about 1e-3).
MAX_ROUND_TRIP_ERROR = 0.02


@dataclass
class BundleReport:
    """What :func:`bundle_run` wrote."""

    out: Path
    bytes: int
    parameters: int
    round_trip_error: float
    lines: list[str]


def load_run(folder: str | Path) -> tuple[M2UGen, list[str]]:
    """A trained model from a training stage's folder (its ``final/``), a ``final/`` folder or a model folder.

    The network is built from the folder's ``config.json`` (relative component paths are relative to
    the current directory, as in training, or to the folder), then every tensor of its
    ``model.safetensors`` is put in place; parameters it does not hold keep their seeded initial values.
    Returns the model and the names of the tensors loaded.
    """
    folder = Path(folder)
    final = folder / "final" if (folder / "final" / WEIGHTS_NAME).is_file() else folder
    if not (final / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"{folder}: neither {WEIGHTS_NAME} nor final/{WEIGHTS_NAME}; give a finished "
                              "training stage's folder (e.g. runs/mini/stage3) or a model folder")
    config = load_config(final)
    for field in PATH_FIELDS:
        value = getattr(config, field)
        if value not in (None, "tiny") and not Path(value).exists():
            raise CheckpointError(f"{final / CONFIG_NAME}: {field} {value} is not found from {Path.cwd()}; run the "
                                  "command from the folder the training ran in")
    model = M2UGen.from_config(config)
    return model, load_tensors(model, final / WEIGHTS_NAME)


def bundle_config(model: M2UGen) -> M2UGenConfig:
    """``model.config`` with the LLM and music encoder given inline and ``bundled``.

    Raises:
        ConfigError: the model needs a folder a bundle cannot hold (a neural music decoder, or image or
            video encoders loaded from folders, whose preprocessing lives there).
    """
    cfg = model.config
    if cfg.decoder_path not in (None, "tiny"):
        raise ConfigError(f"a bundle holds no music decoder, but this model's {cfg.decoder} decoder is the folder "
                          f"{cfg.decoder_path}; bundle models that write scores (music_outputs='score')")
    for component in ("vit", "vivit"):
        if getattr(cfg, f"{component}_path") is not None:
            raise ConfigError(f"a bundle builds the image and video encoders from their configs, but this model "
                              f"loads {component} from {getattr(cfg, f'{component}_path')}")
    changes: dict[str, Any] = {}
    if cfg.llm_path is not None:
        llm = _network_keys(model.llm.model.config.to_diff_dict())
        changes.update(llm_path=None, llm_config={**llm, "vocab_size": model.llm.base_vocab_size})
    if cfg.mert_path is not None:
        music = model.encoders["audio"]
        mert = _network_keys(music.model.config.to_diff_dict())
        changes.update(mert_path=None, mert_config={**mert, "do_normalize": music.normalize})
    bundled = set(cfg.bundled) | {name for name in ("llm", "mert") if f"{name}_path" in changes}
    return dataclasses.replace(cfg, **changes, bundled=[c for c in COMPONENTS if c in bundled])


def _network_keys(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _NOT_NETWORK}


def bundle_run(folder: str | Path, out: str | Path, *, dtype: str = "float16") -> BundleReport:
    """Write the bundle of a trained run (see :func:`load_run`) to ``out``, check it, and report.

    The bundle is written beside ``out``, loaded back and compared with the run (:func:`round_trip_error`),
    and only then put in place of ``out`` (which is replaced).

    Raises:
        CheckpointError: the run cannot be read, or the written bundle does not reproduce it.
        ConfigError: the model cannot be bundled (:func:`bundle_config`), or ``dtype`` is not float16 or float32.
    """
    out = Path(out)
    model, loaded = load_run(folder)
    config = bundle_config(model)
    tmp = out.parent / f".{out.name}.tmp{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        save_pretrained(model, tmp, config=config, dtype=dtype)
        error = round_trip_error(model, M2UGen.from_pretrained(tmp))
        if not error <= MAX_ROUND_TRIP_ERROR:
            raise CheckpointError(f"{out}: the bundle does not reproduce the run: test logits differ by {error:.3g} "
                                  f"of their spread (at most {MAX_ROUND_TRIP_ERROR} expected)")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    stored = read_weights(out / WEIGHTS_NAME)
    parameters = sum(t.numel() for t in stored.values())
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    untrained = sorted(set(trained_parameters(model)) - set(loaded))
    lines = [f"wrote {out}: {config.name}, {parameters / 1e6:.2f} M stored parameters ({dtype} matrices), "
             f"{size / 1e6:.1f} MB in all ({size / parameters:.2f} bytes per parameter)",
             f"stored components: {', '.join(config.bundled) or 'none'}; built from their seeds: "
             f"{', '.join(c for c in COMPONENTS if c not in config.bundled) or 'none'}",
             f"input modalities: {', '.join(config.input_modalities)}; music output: {config.music_outputs}",
             f"round trip: test logits within {error:.2g} of the run's (relative to their spread)"]
    if untrained:
        groups = sorted({name.split(".")[0] for name in untrained})
        lines.append(f"not in the run, stored at their seeded initial values: {len(untrained)} tensors "
                     f"({', '.join(groups)})")
    return BundleReport(out=out, bytes=size, parameters=parameters, round_trip_error=error, lines=lines)


@torch.no_grad()
def round_trip_error(a: M2UGen, b: M2UGen) -> float:
    """Largest difference of two models' logits for one test turn (a question with one second of a
    chord as audio, through encoder, adapter, injection and LLM), relative to the logits' spread."""
    rate = a.config.audio_sample_rate
    t = np.arange(rate, dtype=np.float32) / rate
    chord = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0)).astype(np.float32)
    ids = torch.tensor([a.tokenizer("What key is this in?").input_ids])
    logits = []
    for model in (a, b):
        model.eval()
        features = {"audio": model.encode_media("audio", [Audio(chord[None], rate)])}
        vectors = model.llm.injection_vectors(model.adapter_tokens(features), 1)
        logits.append(model.llm(ids, torch.ones_like(ids), vectors)[0].float())
    return float((logits[0] - logits[1]).abs().max() / logits[0].std())
