"""What a piece of audio is, measured: tempo, key, chroma, and (with CLAP) its instrument.

Used to check that generated music adheres to its request and that an edit made its change.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from m2ugen.evaluation.facts import TEMPO_TOLERANCE, key_score
from m2ugen.notation.instruments import program_family
from m2ugen.notation.key import Key, estimate_key

ANALYSIS_RATE = 22050
HOP = 512

# Instruments CLAP chooses among when measuring what plays (one per family m2ugen's corpus uses most).
CANDIDATE_PROGRAMS: tuple[int, ...] = (0, 24, 32, 40, 48, 56, 65, 71, 73, 21, 6, 46)
# Chance of the audio adherence checks: a uniformly random key scores (1 + 0.5 + 0.3 + 0.2) / 24 on
# the MIREX scale; a random pick among the candidates' families is right once in their number.
ADHERENCE_CHANCE = {"adherence_key": 2.0 / 24.0,
                    "adherence_instrument": 1.0 / len({program_family(p) for p in CANDIDATE_PROGRAMS})}


def _mono(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    from m2ugen.evaluation.embeddings import _resample

    return _resample(samples, sample_rate, ANALYSIS_RATE)


def chroma(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """(12, T) chroma (librosa ``chroma_stft``, hop 512 at 22.05 kHz), each frame max-normalised; a
    silent frame is flat (all 1e-6) rather than zero, so cosine distances stay defined."""
    import librosa

    y = _mono(samples, sample_rate)
    return librosa.feature.chroma_stft(y=y, sr=ANALYSIS_RATE, hop_length=HOP, tuning=0.0) + 1e-6


def tempo_bpm(samples: np.ndarray, sample_rate: int) -> float:
    """Global tempo in beats per minute (librosa beat tracker); 0 for silence."""
    import librosa

    y = _mono(samples, sample_rate)
    if not np.any(y):
        return 0.0
    tempo, _ = librosa.beat.beat_track(y=y, sr=ANALYSIS_RATE, hop_length=HOP)
    return float(np.atleast_1d(tempo)[0])


def audio_key(samples: np.ndarray, sample_rate: int) -> tuple[str, str]:
    """Key of the audio as (tonic, mode): Krumhansl-Schmuckler on the clip's mean chroma."""
    profile = chroma(samples, sample_rate).mean(axis=1)
    return key_tuple(estimate_key(range(12), weights=profile))


def key_tuple(key: Key) -> tuple[str, str]:
    """(tonic, "major"|"minor") of a :class:`Key`, e.g. Key(3, False) -> ("A", "major")."""
    name = key.name
    return (name[:-1], "minor") if key.minor else (name, "major")


def chroma_similarity(a: np.ndarray, rate_a: int, b: np.ndarray, rate_b: int) -> float:
    """How much of ``a``'s melody and harmony ``b`` keeps, in [0, 1]: 1 minus the mean cosine distance
    between chroma frames along the dynamic-time-warping path (so a tempo change alone costs little).
    """
    import librosa

    ca, cb = chroma(a, rate_a), chroma(b, rate_b)
    cost, path = librosa.sequence.dtw(X=ca, Y=cb, metric="cosine")
    distance = float(cost[-1, -1]) / len(path)
    return float(np.clip(1.0 - distance, 0.0, 1.0))


def transpose_key(key: tuple[str, str], semitones: int) -> tuple[str, str]:
    """``key`` moved by ``semitones`` (spelled with sharps, or flats for F, Bb, Eb, Ab, Db)."""
    from m2ugen.evaluation.facts import _mir_key

    name = _mir_key(key).split()[0]
    names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    return names[(names.index(name) + semitones) % 12], key[1]


def clap_instrument(embedder, samples: np.ndarray, sample_rate: int, candidates: Sequence[int]) -> int:
    """The GM program among ``candidates`` whose text ("music played on the <name>") CLAP finds closest."""
    from m2ugen.evaluation.fad import cosine
    from m2ugen.notation.instruments import program_name

    audio = embedder.embed(samples, sample_rate).mean(axis=0)
    texts = embedder.embed_text([f"music played on the {program_name(p).lower()}" for p in candidates])
    return int(candidates[int(np.argmax([cosine(audio, t) for t in texts]))])


def load_clip(path: Path) -> tuple[np.ndarray, int]:
    """A clip as float32 mono at :data:`ANALYSIS_RATE`, and that rate (the whole file, however long)."""
    from m2ugen.media import load_audio

    return load_audio(path, ANALYSIS_RATE, max_seconds=None), ANALYSIS_RATE


def adherence(samples: np.ndarray, rate: int, requested: dict, clap=None) -> dict[str, float]:
    """Requested tempo (within 8 %), key (MIREX) and instrument family (CLAP zero-shot, when ``clap`` is
    given) measured on audio, each in [0, 1], keyed ``adherence_tempo``, ``adherence_key``, ``adherence_instrument``."""
    result: dict[str, float] = {}
    if requested.get("tempo_bpm"):
        target = float(requested["tempo_bpm"])
        result["adherence_tempo"] = float(abs(tempo_bpm(samples, rate) - target) <= TEMPO_TOLERANCE * target)
    if requested.get("key"):
        result["adherence_key"] = key_score(audio_key(samples, rate), tuple(requested["key"]))
    if requested.get("program") is not None and clap is not None:
        found = clap_instrument(clap, samples, rate, CANDIDATE_PROGRAMS)
        result["adherence_instrument"] = float(program_family(found) == program_family(int(requested["program"])))
    return result


def change_present(source: np.ndarray, rate: int, edited: np.ndarray, edited_rate: int, requested: dict,
                   clap=None) -> float | None:
    """Whether the requested edit (``requested["edit"]``: tempo, key or instrument) is measured on ``edited``,
    in [0, 1]; None when it cannot be measured (no edit kind, or an instrument edit without CLAP)."""
    kind = requested.get("edit")
    if kind == "tempo":
        before = tempo_bpm(source, rate)
        ratio = tempo_bpm(edited, edited_rate) / before if before else 0.0
        wanted = float(requested["tempo_ratio"])
        return float(abs(ratio - wanted) <= TEMPO_TOLERANCE * wanted)
    if kind == "key":
        return key_score(audio_key(edited, edited_rate), tuple(requested["key"]))
    if kind == "instrument" and clap is not None:
        found = clap_instrument(clap, edited, edited_rate, CANDIDATE_PROGRAMS)
        return float(program_family(found) == program_family(int(requested["program"])))
    return None
