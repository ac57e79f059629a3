"""The :class:`MusicDecoder` protocol every music decoder follows, and small helpers they share.

Conditioning convention (all decoders): a float tensor (B, *conditioning_shape) in the decoder's
own text-encoder space (what the output projector predicts), plus an optional mask of the same
shape, 1 where a value belongs to a real (non-padding) position.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from m2ugen.audio import Audio
from m2ugen.errors import CheckpointError, ConfigError

SETTINGS_FILE = "m2ugen_decoder.json"


class DecoderSettings:
    """Base of the decoders' settings dataclasses: stored as ``m2ugen_decoder.json`` beside the weights."""

    def save(self, directory: Path) -> None:
        (directory / SETTINGS_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path):
        """The settings saved in ``directory``, or the defaults when there are none."""
        path = directory / SETTINGS_FILE
        if not path.exists():
            return cls()
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as err:
            raise ConfigError(f"{path}: invalid decoder settings ({err})") from err


# What may be given as ``source_audio``: one item for the whole batch or one per batch item.
SourceItem = Audio | str | os.PathLike
SourceAudio = SourceItem | Sequence[SourceItem]


@runtime_checkable
class MusicDecoder(Protocol):
    """A text-conditioned music generator driven by precomputed conditioning.

    Attributes:
        kind: "musicgen", "musicgen-melody" or "audioldm2".
        sample_rate: output rate in Hz.
        conditioning_shape: per-item shape the projector must produce, e.g. (128, 768).
        supports_source_audio: whether ``source_audio`` (editing) is accepted.
    """

    kind: str
    sample_rate: int
    conditioning_shape: tuple[int, ...]
    supports_source_audio: bool

    def generate(self, conditioning: torch.Tensor, seconds: float, *, mask: torch.Tensor | None = None,
                 guidance_scale: float = 3.0, seed: int | None = None,
                 source_audio: SourceAudio | None = None) -> list[Audio]:
        """conditioning (B, *conditioning_shape) -> B clips of exactly ``seconds``."""

    def caption_generate(self, texts: Sequence[str], seconds: float, *, guidance_scale: float = 3.0,
                         seed: int | None = None, source_audio: SourceAudio | None = None) -> list[Audio]:
        """Prompt the decoder with text through its own tokenizer and text encoder (caption mode)."""

    def conditioning_for_captions(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's own conditioning for captions: (states, mask), both (B, *conditioning_shape).

        This is the stage-2 regression target of the output projector.
        """

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write a local directory that ``from_pretrained`` reads back."""


def num_output_samples(seconds: float, sample_rate: int) -> int:
    """Samples in ``seconds`` of output; raises ConfigError unless it is at least one sample."""
    if not np.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"seconds must be a positive number, got {seconds}")
    n = int(round(seconds * sample_rate))
    if n < 1:
        raise ConfigError(f"seconds={seconds} is shorter than one sample at {sample_rate} Hz")
    return n


def check_conditioning(conditioning: torch.Tensor, mask: torch.Tensor | None,
                       shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate (B, *shape) conditioning and its mask; a missing mask means every value is real."""
    if not isinstance(conditioning, torch.Tensor) or tuple(conditioning.shape[1:]) != tuple(shape):
        got = tuple(conditioning.shape) if isinstance(conditioning, torch.Tensor) else type(conditioning).__name__
        raise ConfigError(f"conditioning must have shape (B, {', '.join(map(str, shape))}), got {got}")
    if not torch.isfinite(conditioning).all():
        raise ConfigError("conditioning contains NaN or inf")
    if mask is None:
        mask = torch.ones_like(conditioning)
    elif tuple(mask.shape) != tuple(conditioning.shape):
        raise ConfigError(f"mask shape {tuple(mask.shape)} differs from conditioning shape {tuple(conditioning.shape)}")
    return conditioning, mask


def load_sources(source_audio: SourceAudio, batch: int, sample_rate: int) -> list[np.ndarray]:
    """One float32 mono (S,) array at ``sample_rate`` per batch item (a single source is shared).

    An :class:`Audio` (already read and checked) is resampled once from its own rate; a path is read first.
    """
    from m2ugen.media import load_audio, resample

    items = list(source_audio) if isinstance(source_audio, (list, tuple)) else [source_audio] * batch
    if len(items) != batch:
        raise ConfigError(f"got {len(items)} source audios for a batch of {batch}")
    arrays = []
    for item in items:
        if isinstance(item, np.ndarray):
            raise ConfigError("pass source audio as an Audio (samples + sample_rate) or a file path, not a bare array")
        arrays.append(resample(item, sample_rate) if isinstance(item, Audio) else load_audio(item, sample_rate))
    return arrays


def local_dir(path: str | os.PathLike) -> Path:
    """A model directory that must exist locally (nothing is ever downloaded)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: decoder directory not found (a local Hugging Face layout folder is needed)")
    return path
