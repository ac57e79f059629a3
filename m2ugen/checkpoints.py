"""Checkpoints: safe reading of pickles, our lean format, memory-lean loading and a merged export.

Our format is a directory::

    config.json          M2UGenConfig; frozen components by local path (relative = inside this directory)
    model.safetensors    only the trained tensors (adapters, projector, gates, prefix queries, biases,
                         norms, LoRA, new token rows), named as in ``M2UGen.state_dict()``
    tokenizer files      the LLaMA tokenizer with the [AUD] tokens

Loading builds the frozen parts from their directories (safetensors, memory-mapped by transformers),
builds the adapters and projector on the meta device, and moves the stored tensors into place, so
peak memory stays close to the size of the weights. Converters for other formats live in
:mod:`m2ugen.convert`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from m2ugen.config import M2UGenConfig
from m2ugen.errors import CheckpointError

if TYPE_CHECKING:
    from m2ugen.model import M2UGen

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = "1"
PATH_FIELDS = ("llm_path", "tokenizer_path", "mert_path", "vit_path", "vivit_path", "decoder_path")


# --- reading pickles safely -------------------------------------------------------------------
def load_torch_file(path: str | Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers, memory-mapped when possible.

    Corrupt, truncated or code-carrying files raise :class:`CheckpointError`; nothing in the file is
    ever executed (``weights_only=True``; only ``argparse.Namespace`` is allowed beyond the defaults,
    since training checkpoints store their arguments in one).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            return _torch_load(path, mmap=True)
        except RuntimeError as err:
            if "mmap can only be used" not in str(err):  # legacy (non-zip) files cannot be mapped
                raise _load_error(path, err) from None
        try:
            return _torch_load(path, mmap=False)
        except RuntimeError as err:
            raise _load_error(path, err) from None


def _torch_load(path: Path, mmap: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        text = str(err)
        found = [line.strip() for line in text.splitlines() if "GLOBAL" in line]
        detail = [line.strip() for line in text.partition("WeightsUnpickler error:")[2].splitlines() if line.strip()]
        if found:
            reason = f"it would run code or build objects other than tensors ({found[0]})"
        else:
            reason = "not a weights-only PyTorch checkpoint (corrupt, or code-carrying)" + (
                f": {detail[0]}" if detail else "")
        raise CheckpointError(f"{path}: refused to load: {reason}") from None
    except (EOFError, ValueError, OSError, KeyError, IndexError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(err).__name__}: {err})") from None


def _load_error(path: Path, err: Exception) -> CheckpointError:
    first = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else type(err).__name__
    return CheckpointError(f"{path}: corrupt or truncated checkpoint ({first[:200]})")


def check_keys(what: str, got: Iterable[str], expected: Iterable[str], limit: int = 20) -> None:
    """Raise :class:`CheckpointError` listing the missing and unexpected keys, if there are any."""
    got, expected = set(got), set(expected)
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    if not missing and not unexpected:
        return

    def show(keys: list[str]) -> str:
        more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {show(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {show(unexpected)}")
    raise CheckpointError(f"{what}: " + "; ".join(parts))


def check_shapes(what: str, got: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> None:
    """Raise :class:`CheckpointError` listing the tensors whose shape differs from the expected one."""
    bad = [f"{k} {tuple(s)} vs {tuple(expected[k])}" for k, s in got.items()
           if k in expected and tuple(s) != tuple(expected[k])]
    if bad:
        raise CheckpointError(f"{what}: {len(bad)} tensors have the wrong shape (got vs expected): "
                              + ", ".join(bad[:20]))


# --- gates ------------------------------------------------------------------------------------
def gate_report(gate: torch.Tensor, layers_per_modality: int, first_layer: int) -> list[str]:
    """Human-readable summary of the injection gates (num_injected, heads)."""
    from m2ugen.config import MODALITIES

    values = torch.tanh(gate.detach().float())
    lines = []
    for m, modality in enumerate(MODALITIES):
        block = values[m * layers_per_modality:(m + 1) * layers_per_modality]
        lo = first_layer + m * layers_per_modality
        lines.append(f"gates {modality} (layers {lo}-{lo + layers_per_modality - 1}): "
                     f"max |tanh(gate)| = {block.abs().max().item():.4g}")
    if bool((gate == 0).all()):
        lines.append("WARNING: every gate is zero, so this checkpoint ignores its audio, image and video inputs "
                     "(the original code never trained its gates); answers about media will not depend on "
                     "the media. Train the gates (stage 1 or 3) to use them.")
    return lines


# --- our format -------------------------------------------------------------------------------
def trained_parameters(model: "M2UGen") -> dict[str, nn.Parameter]:
    """The tunable parameters, by their ``M2UGen.state_dict()`` names."""
    ids = {id(p) for group in model.parameter_groups().values() for p in group}
    return {name: p for name, p in model.named_parameters() if id(p) in ids}


def _portable_paths(config: M2UGenConfig, out: Path) -> M2UGenConfig:
    """Paths inside ``out`` become relative to it; other existing paths become absolute."""
    out = out.resolve()
    changes = {}
    for name in PATH_FIELDS:
        value = getattr(config, name)
        if value is None or not Path(value).exists():
            continue
        full = Path(value).resolve()
        changes[name] = str(full.relative_to(out)) if full.is_relative_to(out) else str(full)
    return dataclasses.replace(config, **changes)


def _resolved_paths(config: M2UGenConfig, base: Path) -> M2UGenConfig:
    """Relative paths that exist inside ``base`` are made absolute against it."""
    changes = {}
    for name in PATH_FIELDS:
        value = getattr(config, name)
        if value is not None and not Path(value).is_absolute() and (base / value).exists():
            changes[name] = str((base / value).resolve())
    return dataclasses.replace(config, **changes)


def save_pretrained(model: "M2UGen", path: str | Path) -> Path:
    """Write ``config.json``, ``model.safetensors`` (trained tensors only) and the tokenizer to ``path``."""
    if model.llm.fused:
        raise CheckpointError("this model's LoRA was fused into its weights for inference and cannot be saved; "
                              "save the model before optimize_for_inference() (the Assistant calls it)")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.tokenizer.save_pretrained(out)
    config = _portable_paths(dataclasses.replace(model.config, tokenizer_path=str(out)), out)
    tensors = {name: p.detach().cpu().contiguous() for name, p in trained_parameters(model).items()}
    tmp = out / (WEIGHTS_NAME + ".tmp")
    save_file(tensors, tmp, metadata={"format": "pt", "m2ugen_format": FORMAT_VERSION})
    os.replace(tmp, out / WEIGHTS_NAME)
    config.save(out / CONFIG_NAME)
    return out


def load_config(path: str | Path, **overrides: Any) -> M2UGenConfig:
    """The config of a checkpoint directory, relative paths resolved, ``overrides`` applied."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint directory")
    config = _resolved_paths(M2UGenConfig.load(path / CONFIG_NAME), path)
    return dataclasses.replace(config, **overrides) if overrides else config


def load_pretrained(path: str | Path, **overrides: Any) -> "M2UGen":
    """Load a directory written by :func:`save_pretrained` (or by ``m2ugen convert``).

    ``overrides`` replace config fields (e.g. ``dtype="bfloat16"``, or another ``llm_path``).
    """
    from m2ugen.model import M2UGen, build_frozen_parts

    path = Path(path)
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{path}: no {WEIGHTS_NAME}; is this an m2ugen checkpoint directory?")
    config = load_config(path, **overrides)
    # Frozen parts: streamed from their directories (or rebuilt from their seeded random configs).
    parts = build_frozen_parts(config)
    # Trained parts: no memory and no init work until the stored tensors are put in place.
    with torch.device("meta"):
        model = M2UGen(config, *parts)
    load_trained(model, weights)
    return model


def load_trained(model: "M2UGen", weights: str | Path) -> None:
    """Put the tensors of a ``model.safetensors`` into ``model`` (exact key set, shapes checked)."""
    weights = Path(weights)
    params = trained_parameters(model)
    try:
        with safe_open(str(weights), framework="pt") as f:
            keys = list(f.keys())
            check_keys(str(weights), keys, params)
            check_shapes(str(weights), {k: tuple(f.get_slice(k).get_shape()) for k in keys},
                         {k: tuple(p.shape) for k, p in params.items()})
            for name in keys:
                old = params[name]
                value = f.get_tensor(name).to(old.dtype)
                _set_parameter(model, name, nn.Parameter(value, requires_grad=old.requires_grad))
    except (OSError, RuntimeError) as err:  # safetensors reports corrupt headers as these
        raise CheckpointError(f"{weights}: unreadable safetensors file ({err})") from None
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"{weights}: {len(left)} tensors were not loaded: {', '.join(left[:20])}")


def _set_parameter(model: nn.Module, name: str, value: nn.Parameter) -> None:
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    setattr(owner, attr, value)


# --- merged export ----------------------------------------------------------------------------
def export_merged(model: "M2UGen", path: str | Path, max_shard_bytes: int = 2 << 30) -> Path:
    """Write the LLM as a plain Hugging Face ``LlamaForCausalLM`` directory, LoRA merged.

    Biases are kept (``attention_bias``/``mlp_bias``), the [AUD] rows are appended to the vocabulary
    and the tokenizer is saved with them. The gated media injection has no place in a plain LLaMA, so
    the export is the text-only LLM (equal to M2UGen when no media is given and the gates are zero).
    The model is not modified.
    """
    from m2ugen.convert.shards import ShardWriter

    out = Path(path)
    llm = model.llm.model
    cfg = llm.config.__class__.from_dict(llm.config.to_dict())
    cfg.vocab_size = model.llm.base_vocab_size + model.llm.num_aud_tokens
    cfg.attention_bias = cfg.mlp_bias = True
    cfg.tie_word_embeddings = False
    cfg.architectures = ["LlamaForCausalLM"]
    out.mkdir(parents=True, exist_ok=True)
    cfg.save_pretrained(out)
    model.tokenizer.save_pretrained(out)
    with ShardWriter(out, max_shard_bytes) as writer, torch.no_grad():
        emb, head = llm.model.embed_tokens, llm.lm_head
        writer.add("model.embed_tokens.weight", torch.cat([emb.weight, emb.new_weight.to(emb.weight.dtype)]))
        writer.add("lm_head.weight", torch.cat([head.weight, head.new_weight.to(head.weight.dtype)]))
        writer.add("model.norm.weight", llm.model.norm.weight)
        for i, layer in enumerate(llm.model.layers):
            prefix = f"model.layers.{i}."
            for sub, module in [("self_attn", layer.self_attn), ("mlp", layer.mlp)]:
                for proj_name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
                    proj = getattr(module, proj_name, None)
                    if proj is None:
                        continue
                    base = getattr(proj, "base_layer", proj)
                    weight = base.weight.float()
                    if hasattr(proj, "lora_A"):
                        for adapter in proj.lora_A:
                            delta = proj.lora_B[adapter].weight.float() @ proj.lora_A[adapter].weight.float()
                            weight = weight + delta * proj.scaling[adapter]
                    writer.add(f"{prefix}{sub}.{proj_name}.weight", weight.to(base.weight.dtype))
                    writer.add(f"{prefix}{sub}.{proj_name}.bias", base.bias)
            writer.add(prefix + "input_layernorm.weight", layer.input_layernorm.weight)
            writer.add(prefix + "post_attention_layernorm.weight", layer.post_attention_layernorm.weight)
    return out
