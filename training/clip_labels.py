"""Exact training targets of a rendered corpus clip, for the music encoder's pretraining.

Frame-level (one row per encoder frame, ``hop`` samples apart): the sounding pitches (128), the
onsets (128 pitches + 1 for any drum hit) and the sounding instrument families (:data:`FAMILIES`).
Clip-level class indices: key (tonic pitch class x major/minor, 24), metre and style (vocabularies of
the training clips) and tempo (log-spaced bins of quarter-note BPM). :data:`IGNORE` marks a clip
label that is unknown (a modal key, a metre or style not in the vocabulary, no style).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m2ugen.errors import DataError
from m2ugen.notation.instruments import FAMILIES, program_family
from m2ugen.notation.key import NATURAL_PITCH_CLASS

IGNORE = -100
NUM_PITCHES = 128
NUM_KEYS = 24
TEMPO_RANGE = (40.0, 240.0)  # BPM covered by the tempo bins; outside values fall in the end bins
TEMPO_BINS = 37  # ~5 % wide: the "within 8 %" target is about one bin either side


def tonic_pitch_class(name: str) -> int:
    """Pitch class of a tonic name such as ``"D"``, ``"F#"`` or ``"Bb"``."""
    letter, accidentals = name[:1].upper(), name[1:]
    if letter not in NATURAL_PITCH_CLASS or any(a not in "#b" for a in accidentals):
        raise DataError(f"key tonic {name!r} is not a note name")
    return (NATURAL_PITCH_CLASS[letter] + accidentals.count("#") - accidentals.count("b")) % 12


def key_index(key: dict | None) -> int:
    """``tonic_pc * 2 + (minor)`` for a major or minor key; :data:`IGNORE` for modes or no key."""
    if not key or key.get("mode") not in ("major", "minor"):
        return IGNORE
    return tonic_pitch_class(key["tonic"]) * 2 + (key["mode"] == "minor")


def tempo_bin(bpm: float) -> int:
    """Index of the log-spaced tempo bin nearest ``bpm``."""
    low, high = TEMPO_RANGE
    position = math.log(max(low, min(high, bpm)) / low) / math.log(high / low)
    return int(round(position * (TEMPO_BINS - 1)))


def tempo_of_bin(index: int) -> float:
    """Centre BPM of a tempo bin (the inverse of :func:`tempo_bin`)."""
    low, high = TEMPO_RANGE
    return low * (high / low) ** (index / (TEMPO_BINS - 1))


@dataclass(frozen=True)
class Vocabulary:
    """The metre and style classes (sorted values seen in the training clips)."""

    metres: tuple[str, ...]
    styles: tuple[str, ...]

    @classmethod
    def of(cls, clips: Sequence[dict]) -> "Vocabulary":
        return cls(metres=tuple(sorted({c["meter"] for c in clips if c.get("meter")})),
                   styles=tuple(sorted({c["style"] for c in clips if c.get("style")})))

    def to_dict(self) -> dict:
        return {"metres": list(self.metres), "styles": list(self.styles), "families": list(FAMILIES),
                "keys": NUM_KEYS, "tempo_bins": TEMPO_BINS, "tempo_range": list(TEMPO_RANGE)}

    def clip_targets(self, clip: dict) -> np.ndarray:
        """(4,) int64: key, metre, tempo bin, style (:data:`IGNORE` where unknown)."""
        metre = self.metres.index(clip["meter"]) if clip.get("meter") in self.metres else IGNORE
        style = self.styles.index(clip["style"]) if clip.get("style") in self.styles else IGNORE
        tempo = tempo_bin(float(clip["tempo_bpm"])) if clip.get("tempo_bpm") else IGNORE
        return np.array([key_index(clip.get("key")), metre, tempo, style], dtype=np.int64)


def read_notes(path: Path) -> np.ndarray:
    """(N, 7) float64 notes ``[onset_s, offset_s, pitch, velocity, program, part, is_drum]`` of a clip."""
    try:
        notes = np.asarray(json.loads(Path(path).read_text()), dtype=np.float64)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable note list ({err})") from None
    if notes.size == 0:
        return np.zeros((0, 7))
    if notes.ndim != 2 or notes.shape[1] != 7:
        raise DataError(f"{path}: notes must be rows of 7 numbers, got shape {notes.shape}")
    return notes


def frame_targets(notes: np.ndarray, start_s: float, num_frames: int, hop_s: float) -> np.ndarray:
    """(num_frames, 128 + 129 + len(FAMILIES)) float32 targets of the frames from ``start_s`` on.

    Frame ``t`` stands for the time ``start_s + (t + 0.5) * hop_s``; a note sounds there if its onset
    is at or before and its offset after; its onset belongs to the frame whose span holds it.
    """
    out = np.zeros((num_frames, NUM_PITCHES + NUM_PITCHES + 1 + len(FAMILIES)), dtype=np.float32)
    times = start_s + (np.arange(num_frames) + 0.5) * hop_s
    family_column = {name: 2 * NUM_PITCHES + 1 + i for i, name in enumerate(FAMILIES)}
    for onset, offset, pitch, _velocity, program, _part, is_drum in notes:
        sounding = (times >= onset) & (times < max(offset, onset + hop_s))
        family = program_family(int(program), is_drum=bool(is_drum))
        out[sounding, family_column[family]] = 1.0
        frame = int(math.floor((onset - start_s) / hop_s))
        if not is_drum:
            out[sounding, int(pitch)] = 1.0
        if 0 <= frame < num_frames:
            out[frame, NUM_PITCHES + (NUM_PITCHES if is_drum else int(pitch))] = 1.0
    return out
