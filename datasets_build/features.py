"""Per-clip music features for MUEdit pairing: tempo, beat regularity, key and chroma profile, loudness, instruments.

Tempo and beats come from librosa's beat tracker, the key from correlating the mean chroma with the
Krumhansl-Kessler key profiles, loudness from pyloudnorm (LUFS), and instrument tags from the
clip's caption by a small vocabulary match.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import numpy as np

from m2ugen.notation.key import key_correlations

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Key k in 0..11 is major with tonic k; 12..23 is minor with tonic k - 12.
KEY_NAMES = tuple(f"{p} major" for p in PITCH_CLASSES) + tuple(f"{p} minor" for p in PITCH_CLASSES)

# Canonical tag -> words that mention it in a caption (word boundaries, optional plural "s").
INSTRUMENTS: dict[str, tuple[str, ...]] = {
    "piano": ("piano", "pianist", "grand piano"),
    "keyboard": ("keyboard", "keys", "electric piano", "rhodes"),
    "organ": ("organ",),
    "synth": ("synth", "synthesizer", "synthesiser", "synth pad"),
    "acoustic guitar": ("acoustic guitar",),
    "electric guitar": ("electric guitar", "distorted guitar"),
    "guitar": ("guitar", "guitarist"),
    "bass": ("bass", "bass guitar", "bassline", "double bass", "upright bass"),
    "drums": ("drum", "drum kit", "drummer", "drumbeat", "snare", "hi-hat", "hihat", "kick drum", "cymbal"),
    "percussion": ("percussion", "tambourine", "shaker", "conga", "bongo", "tabla"),
    "violin": ("violin", "fiddle"),
    "viola": ("viola",),
    "cello": ("cello",),
    "strings": ("strings", "string section", "orchestra", "orchestral"),
    "harp": ("harp",),
    "flute": ("flute",),
    "clarinet": ("clarinet",),
    "oboe": ("oboe",),
    "saxophone": ("saxophone", "sax"),
    "trumpet": ("trumpet",),
    "trombone": ("trombone",),
    "horn": ("horn", "french horn"),
    "brass": ("brass",),
    "accordion": ("accordion",),
    "harmonica": ("harmonica",),
    "banjo": ("banjo",),
    "ukulele": ("ukulele",),
    "mandolin": ("mandolin",),
    "sitar": ("sitar",),
    "marimba": ("marimba", "xylophone", "vibraphone"),
    "bells": ("bell", "glockenspiel", "chimes"),
    "vocals": ("vocal", "vocals", "singer", "singing", "voice", "rapper", "rap"),
    "choir": ("choir", "choral"),
    "beat machine": ("drum machine", "808", "beat machine"),
}
# Longest phrases first, so "bass guitar" is a bass (not a guitar) and "drum machine" not drums.
_PHRASES = sorted(((w, tag) for tag, words in INSTRUMENTS.items() for w in words), key=lambda p: -len(p[0]))
_PATTERNS = [(re.compile(r"(?<![\w-])" + re.escape(w) + r"s?(?![\w-])"), tag) for w, tag in _PHRASES]
_NEGATION = re.compile(r"\b(no|without|lacks?|absent|absence of)\s+(\w+\s+){0,2}$")


def parse_instruments(caption: str) -> list[str]:
    """Instrument tags mentioned in ``caption``, sorted ("no drums" / "without vocals" excluded).

    A specific guitar ("acoustic guitar") also counts as "guitar", so two captions that name different
    guitars still share the family tag.
    """
    text = caption.lower()
    tags = set()
    for pattern, tag in _PATTERNS:
        for match in pattern.finditer(text):
            if not _NEGATION.search(text[: match.start()]):
                tags.add(tag)
            # Blank the phrase so shorter phrases inside it ("guitar" in "bass guitar") do not match again.
            text = text[: match.start()] + " " * (match.end() - match.start()) + text[match.end():]
    if tags & {"acoustic guitar", "electric guitar"}:
        tags.add("guitar")
    return sorted(tags)


@dataclass(frozen=True)
class ClipFeatures:
    """Features of one clip.

    Attributes:
        tempo_bpm: beat-tracker tempo, beats per minute (0 if no beats were found).
        beat_regularity: 1 - std/mean of inter-beat intervals, in [0, 1] (0 with fewer than 3 beats).
        key: index into :data:`KEY_NAMES` (0-11 major, 12-23 minor).
        key_strength: correlation of the chroma with the best key profile, in [-1, 1].
        chroma: mean chroma, L2-normalised, 12 floats (C..B).
        lufs: integrated loudness, LUFS (None for silence or clips under 0.4 s).
        duration_s: clip length, seconds.
    """

    tempo_bpm: float
    beat_regularity: float
    key: int
    key_strength: float
    chroma: list[float]
    lufs: float | None
    duration_s: float

    @property
    def key_name(self) -> str:
        return KEY_NAMES[self.key]

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "key_name": self.key_name}


def estimate_key(chroma_mean: np.ndarray) -> tuple[int, float]:
    """Best of the 24 Krumhansl-Kessler keys for a 12-bin chroma profile: ``(key index, correlation)``
    (:func:`m2ugen.notation.key.key_correlations`)."""
    corr = key_correlations(chroma_mean)
    best = int(np.argmax(corr))
    return best, float(corr[best])


def extract_features(wave: np.ndarray, sample_rate: int) -> ClipFeatures:
    """Features of ``wave`` (float32 mono, shape (T,)) sampled at ``sample_rate`` Hz."""
    import librosa
    import pyloudnorm

    wave = np.asarray(wave, dtype=np.float32)
    duration_s = wave.size / sample_rate
    tempo, beats = librosa.beat.beat_track(y=wave, sr=sample_rate, units="time")
    tempo_bpm = float(np.atleast_1d(tempo)[0]) if len(beats) else 0.0
    intervals = np.diff(beats)
    regularity = 0.0
    if intervals.size >= 2 and intervals.mean() > 0:
        regularity = float(np.clip(1.0 - intervals.std() / intervals.mean(), 0.0, 1.0))
    chroma = librosa.feature.chroma_stft(y=wave, sr=sample_rate).mean(axis=1)
    key, strength = estimate_key(chroma)
    norm = float(np.linalg.norm(chroma))
    chroma_unit = chroma / norm if norm > 0 else np.full(12, 1.0 / math.sqrt(12.0))
    lufs = None
    if duration_s >= 0.4:
        value = float(pyloudnorm.Meter(sample_rate).integrated_loudness(wave.astype(np.float64)))
        lufs = round(value, 2) if math.isfinite(value) else None
    return ClipFeatures(
        tempo_bpm=round(tempo_bpm, 2),
        beat_regularity=round(regularity, 4),
        key=key,
        key_strength=round(strength, 4),
        chroma=[round(float(v), 5) for v in chroma_unit],
        lufs=lufs,
        duration_s=round(duration_s, 3),
    )
