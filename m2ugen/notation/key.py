"""Key signatures: estimation from notes (Krumhansl-Kessler profiles), names, and pitch spelling.

A key is stored as its number of fifths (``-7..7``: flats negative, sharps positive) and a mode flag.
This module does not parse ABC (see :mod:`m2ugen.notation.abc`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# Krumhansl & Kessler (1982) probe-tone ratings, index 0 = tonic.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

_SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
# (letter, alteration) of each pitch class, spelled with sharps or with flats.
_SHARP_SPELLING = tuple((name[0], 1 if len(name) > 1 else 0) for name in _SHARP_NAMES)
_FLAT_SPELLING = tuple((name[0], -1 if len(name) > 1 else 0) for name in _FLAT_NAMES)
SHARP_ORDER = "FCGDAEB"
NATURAL_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


@dataclass(frozen=True)
class Key:
    """A key signature: ``fifths`` sharps (>0) or flats (<0); ``minor`` names the relative minor."""

    fifths: int = 0
    minor: bool = False

    @property
    def name(self) -> str:
        """ABC key name, e.g. ``"Eb"`` or ``"F#m"``."""
        major_pc = (7 * self.fifths) % 12
        tonic_pc = (major_pc + 9) % 12 if self.minor else major_pc
        names = _SHARP_NAMES if self.fifths >= 0 else _FLAT_NAMES
        return names[tonic_pc] + ("m" if self.minor else "")

    def alterations(self) -> dict[str, int]:
        """Alteration (-1, 0, +1) of each natural letter ``A``..``G`` under this signature."""
        altered = SHARP_ORDER[: self.fifths] if self.fifths > 0 else SHARP_ORDER[::-1][: -self.fifths]
        step = 1 if self.fifths > 0 else -1
        return {letter: (step if letter in altered else 0) for letter in NATURAL_PITCH_CLASS}

    def spell(self, pitch_class: int) -> tuple[str, int]:
        """Letter and alteration for ``pitch_class`` (0-11): sharps in sharp keys, flats in flat keys."""
        table = _SHARP_SPELLING if self.fifths >= 0 else _FLAT_SPELLING
        return table[pitch_class % 12]


def _fifths_of(pitch_class: int) -> int:
    """Fifths of the major key on ``pitch_class``, in -5..6 (F# rather than Gb)."""
    fifths = (7 * pitch_class) % 12
    return fifths - 12 if fifths > 6 else fifths


def estimate_key(pitches: Iterable[int], weights: Iterable[float] | None = None) -> Key:
    """Most likely key of a set of MIDI pitches (Krumhansl-Schmuckler correlation).

    Args:
        pitches: MIDI note numbers.
        weights: one weight per pitch (e.g. duration in seconds); equal weights when None.

    Returns:
        The best of the 24 major and minor keys; C major when there are no pitches.
    """
    pitch_array = np.asarray(list(pitches), dtype=np.int64)
    if pitch_array.size == 0:
        return Key()
    weight_array = np.ones(pitch_array.size) if weights is None else np.asarray(list(weights), dtype=np.float64)
    histogram = np.bincount(pitch_array % 12, weights=weight_array, minlength=12)
    if np.ptp(histogram) == 0:
        return Key()
    best = int(np.argmax(key_correlations(histogram)))
    tonic, minor = best % 12, best >= 12
    return Key(_fifths_of((tonic + 3) % 12 if minor else tonic), minor)


def key_correlations(profile: Iterable[float]) -> np.ndarray:
    """Pearson correlation of a 12-bin pitch-class profile (index 0 = C; a duration histogram or a mean
    chroma) with the 24 Krumhansl-Kessler key profiles: (24,), 0-11 the major keys on tonic 0-11,
    12-23 the minor keys on tonic 0-11."""
    x = np.asarray(list(profile), dtype=np.float64)
    x = x - x.mean()
    keys = np.stack([np.roll(_MAJOR_PROFILE, k) for k in range(12)] + [np.roll(_MINOR_PROFILE, k) for k in range(12)])
    keys = keys - keys.mean(axis=1, keepdims=True)
    return keys @ x / (np.linalg.norm(keys, axis=1) * max(float(np.linalg.norm(x)), 1e-12))
