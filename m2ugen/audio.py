"""The :class:`Audio` record: a waveform with its sample rate, and how to write it to disk.

Holds no loading or resampling logic (that is :mod:`m2ugen.media`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m2ugen.errors import MediaError
from m2ugen.files import write_atomically

# File suffix -> soundfile container format. WAV and FLAC are written as 16-bit PCM, OGG as Vorbis.
WRITE_FORMATS: dict[str, str] = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


@dataclass
class Audio:
    """A waveform.

    Attributes:
        samples: float32, (S,) mono or (C, S) with C channels; nominal range [-1, 1].
        sample_rate: samples per second (Hz).
    """

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        self.samples = np.asarray(self.samples, dtype=np.float32)
        if self.samples.ndim not in (1, 2):
            raise MediaError(f"Audio.samples must be (S,) or (C, S), got shape {self.samples.shape}")
        if int(self.sample_rate) <= 0:
            raise MediaError(f"Audio.sample_rate must be positive, got {self.sample_rate}")
        self.sample_rate = int(self.sample_rate)

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[-1])

    @property
    def channels(self) -> int:
        return 1 if self.samples.ndim == 1 else int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate

    def mono(self) -> np.ndarray:
        """float32 (S,): the channel average."""
        return self.samples if self.samples.ndim == 1 else self.samples.mean(axis=0)

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write a WAV, FLAC or OGG file (chosen by the suffix); parent folders are created.

        Samples outside [-1, 1] are clipped, as any 16-bit PCM writer must. The file is written to a
        temporary name first and renamed, so a failed write never leaves a half-written file.

        Raises:
            MediaError: unsupported suffix, the path is a directory, it exists and ``overwrite`` is
                False, or it cannot be written.
        """
        import soundfile as sf

        path = Path(path)
        fmt = WRITE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise MediaError(f"{path}: cannot write audio with suffix {path.suffix!r}; use .wav, .flac or .ogg")
        if path.is_dir():
            raise MediaError(f"{path}: is a directory, not an audio file name")
        if path.exists() and not overwrite:
            raise MediaError(f"{path}: already exists (pass overwrite=True to replace it)")
        data = np.clip(self.samples, -1.0, 1.0)
        data = data if data.ndim == 1 else data.T  # soundfile wants (S, C)
        return write_atomically(path, lambda tmp: sf.write(tmp, data, self.sample_rate, format=fmt), "audio")
