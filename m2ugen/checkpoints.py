"""Checkpoint formats: safe reading of pickles, and our lean directory format with its one reader and writer.

Our format is a directory::

    config.json          M2UGenConfig; frozen components by local path (relative = inside this directory)
                         or by their config (random and seeded, or stored: ``bundled``)
    model.safetensors    the trained tensors (adapters, projector, gates, prefix queries, biases,
                         norms, LoRA, new token rows) and every tensor of the ``bundled`` components, named
                         as in ``M2UGen.state_dict()``, with ``m2ugen_format`` in its metadata
    tokenizer files      the LLaMA tokenizer with the [AUD] tokens

A bundle (``m2ugen convert bundle``, :mod:`m2ugen.convert.bundle`) is such a directory with no paths
outside itself: its LLM and MERT are ``bundled``, their matrices stored in 16 bits.

:func:`write_weights` and :func:`open_weights` / :func:`read_weights` are the one writer and reader
of our safetensors files (model directories, training checkpoints, conversions); the reader checks the
format version. Building a model from a directory is :meth:`m2ugen.model.M2UGen.from_pretrained`;
converters and the merged export live in :mod:`m2ugen.convert`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pickle
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from m2ugen.config import COMPONENTS, M2UGenConfig
from m2ugen.errors import CheckpointError, ConfigError

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
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says what matters
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        text = str(err)
        # Only the name of the refused global: torch's advice to allow-list it is wrong for a hostile file.
        found = re.findall(r"GLOBAL [\w.]+", text)
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


# --- our safetensors files ------------------------------------------------------------------------
def write_weights(tensors: dict[str, torch.Tensor], file: str | Path) -> Path:
    """Write ``tensors`` (on the CPU, contiguous) with our format version, atomically (temporary name + rename)."""
    file = Path(file)
    tmp = file.with_name(file.name + f".tmp{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp,
              metadata={"format": "pt", "m2ugen_format": FORMAT_VERSION})
    os.replace(tmp, file)
    return file


@contextlib.contextmanager
def open_weights(file: str | Path) -> Iterator[Any]:
    """A ``safe_open`` handle (memory-mapped, tensors read on demand) of one of our safetensors files.

    Raises:
        CheckpointError: missing, unreadable or corrupt, or not written in our format version.
    """
    file = Path(file)
    if not file.is_file():
        raise CheckpointError(f"{file}: weights file not found")
    try:
        handle = safe_open(str(file), framework="pt")
        version = (handle.metadata() or {}).get("m2ugen_format")
    except (OSError, RuntimeError, SafetensorError) as err:  # safetensors reports corrupt headers as these
        raise CheckpointError(f"{file}: unreadable safetensors file ({err})") from None
    if version != FORMAT_VERSION:
        found = f"format version {version}" if version else "no m2ugen format version"
        raise CheckpointError(f"{file}: {found}; this m2ugen reads version {FORMAT_VERSION}")
    try:
        yield handle
    except (OSError, SafetensorError) as err:  # a file truncated after its header fails when a tensor is read
        raise CheckpointError(f"{file}: unreadable safetensors file ({err})") from None


def read_weights(file: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of one of our safetensors files (see :func:`open_weights`)."""
    with open_weights(file) as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}


def load_tensors(model: nn.Module, file: str | Path) -> list[str]:
    """Copy the tensors of one of our safetensors files into some of ``model``'s parameters (a training
    stage's output or checkpoint: the others keep their values); returns the names copied.

    Raises:
        CheckpointError: the file is missing or corrupt, or names/shapes do not match the model.
    """
    tensors = read_weights(file)
    params = dict(model.named_parameters())
    unknown = sorted(set(tensors) - set(params))
    wrong = sorted(n for n in tensors if n in params and tuple(tensors[n].shape) != tuple(params[n].shape))
    if unknown or wrong:
        detail = [f"{len(unknown)} unknown names (e.g. {unknown[:3]})"] if unknown else []
        detail += [f"shape mismatch for {n}: {tuple(tensors[n].shape)} vs {tuple(params[n].shape)}" for n in wrong[:3]]
        raise CheckpointError(f"{file}: does not match the model: " + "; ".join(detail))
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value.to(params[name].dtype))
    return sorted(tensors)


# --- our format -------------------------------------------------------------------------------
def trained_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The tunable parameters, by their ``M2UGen.state_dict()`` names."""
    ids = {id(p) for group in model.parameter_groups().values() for p in group}
    return {name: p for name, p in model.named_parameters() if id(p) in ids}


def stored_parameters(model: nn.Module, config: M2UGenConfig | None = None) -> dict[str, nn.Parameter]:
    """What ``model.safetensors`` holds: the trained parameters and every parameter of the components
    that ``config`` (default: the model's) lists in ``bundled``."""
    config = config or model.config
    prefixes = tuple(COMPONENTS[c] for c in config.bundled)
    trained = trained_parameters(model)
    return {name: p for name, p in model.named_parameters()
            if name in trained or (prefixes and name.startswith(prefixes))}


def storage_dtype(name: str | None) -> torch.dtype | None:
    """The on-disk dtype of matrices named by ``name`` ("float16", "float32" or None = as they are).

    float16, not bfloat16: trained weights lie well inside its range, and its 3 more mantissa bits keep
    a round trip 8x closer (m2ugen-mini-sized test logits: 0.25 % against bfloat16's 2 % of their spread).
    """
    dtypes = {None: None, "float32": None, "float16": torch.float16}
    if name not in dtypes:
        raise ConfigError(f"storage dtype {name!r}: choose float16 or float32")
    return dtypes[name]


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


def save_pretrained(model: nn.Module, path: str | Path, *, config: M2UGenConfig | None = None,
                    dtype: str | None = None) -> Path:
    """Write ``config.json``, ``model.safetensors`` (:func:`stored_parameters`) and the tokenizer to ``path``.

    ``config`` replaces the model's own (e.g. a bundle's, with components inline and ``bundled``);
    ``dtype`` "float16" stores the matrices (2+ dims) in 16 bits, vectors (norms, biases) stay as they
    are; loading casts back to the model's dtype.
    """
    if model.llm.fused:
        raise CheckpointError("this model's LoRA was fused into its weights for inference and cannot be saved; "
                              "save the model before optimize_for_inference() (the Assistant calls it)")
    small = storage_dtype(dtype)
    config = config or model.config
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.tokenizer.save_pretrained(out)
    config = _portable_paths(dataclasses.replace(config, tokenizer_path=str(out)), out)
    tensors = {name: p.detach().to(small) if small is not None and p.dim() >= 2 and p.is_floating_point() else p
               for name, p in stored_parameters(model, config).items()}
    write_weights(tensors, out / WEIGHTS_NAME)
    config.save(out / CONFIG_NAME)
    return out


def load_config(path: str | Path, **overrides: Any) -> M2UGenConfig:
    """The config of a checkpoint directory, relative paths resolved, ``overrides`` applied."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint directory")
    config = _resolved_paths(M2UGenConfig.load(path / CONFIG_NAME), path)
    return dataclasses.replace(config, **overrides) if overrides else config


def load_trained(model: nn.Module, weights: str | Path) -> None:
    """Put the tensors of a ``model.safetensors`` into ``model``: exactly :func:`stored_parameters`, shapes
    checked, cast to the model's dtype (meta parameters are replaced, built ones overwritten)."""
    weights = Path(weights)
    params = stored_parameters(model)
    with open_weights(weights) as f:
        keys = list(f.keys())
        check_keys(str(weights), keys, params)
        check_shapes(str(weights), {k: tuple(f.get_slice(k).get_shape()) for k in keys},
                     {k: tuple(p.shape) for k, p in params.items()})
        for name in keys:
            old = params[name]
            value = f.get_tensor(name).to(old.dtype)
            if old.is_meta:
                _set_parameter(model, name, nn.Parameter(value, requires_grad=old.requires_grad))
            else:
                with torch.no_grad():
                    old.copy_(value)
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"{weights}: {len(left)} tensors were not loaded: {', '.join(left[:20])}")


def _set_parameter(model: nn.Module, name: str, value: nn.Parameter) -> None:
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    setattr(owner, attr, value)
