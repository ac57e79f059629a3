"""Transcription scores: note-level precision/recall/F1 (mir_eval) and an ABC comparison score.

:func:`note_scores` counts a note as found when its pitch is within 50 cents and its onset within
50 ms of a reference note (and, for the "with offsets" numbers, its offset within 20 % of the
reference note's length or 50 ms), matching each note at most once (``mir_eval.transcription``).

:func:`abc_score` compares two ABC tunes in four parts, weighted :data:`ABC_WEIGHTS`:
metre, tempo, pitch (Levenshtein similarity of each voice's note sequence, every predicted voice
matched to its closest reference voice) and instrument. ``docs/transcription.md`` gives the formulas.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from m2ugen.notation.score import AbcVoice, read_abc

ABC_WEIGHTS = {"meter": 0.15, "tempo": 0.15, "pitch": 0.5, "instrument": 0.2}
DEFAULT_TEMPO_BPM = 120.0  # what abc2midi plays when a tune has no Q: field
DEFAULT_PROGRAM = 0  # what abc2midi plays when a voice names no instrument (acoustic grand piano)


@dataclass(frozen=True)
class NoteScores:
    """Note-level scores, each in [0, 1]: onset only, and onset plus offset."""

    precision: float
    recall: float
    f1: float
    precision_with_offsets: float
    recall_with_offsets: float
    f1_with_offsets: float


def note_scores(
    reference: Sequence[tuple[float, float, int]],
    estimate: Sequence[tuple[float, float, int]],
    *,
    onset_tolerance_s: float = 0.05,
) -> NoteScores:
    """Compare two sets of notes ``(onset_s, offset_s, midi_pitch)``.

    Two empty sets score 1 (nothing to find, nothing wrongly found); one empty set scores 0.
    """
    import mir_eval

    if not reference or not estimate:
        value = 1.0 if not reference and not estimate else 0.0
        return NoteScores(value, value, value, value, value, value)

    def arrays(notes: Sequence[tuple[float, float, int]]) -> tuple[np.ndarray, np.ndarray]:
        table = np.asarray(notes, dtype=np.float64).reshape(-1, 3)
        intervals = table[:, :2].copy()
        intervals[:, 1] = np.maximum(intervals[:, 1], intervals[:, 0] + 1e-3)  # mir_eval needs end > start
        return intervals, 440.0 * 2.0 ** ((table[:, 2] - 69.0) / 12.0)

    ref_intervals, ref_hz = arrays(reference)
    est_intervals, est_hz = arrays(estimate)
    onset = mir_eval.transcription.precision_recall_f1_overlap(
        ref_intervals, ref_hz, est_intervals, est_hz, onset_tolerance=onset_tolerance_s, offset_ratio=None)
    both = mir_eval.transcription.precision_recall_f1_overlap(
        ref_intervals, ref_hz, est_intervals, est_hz, onset_tolerance=onset_tolerance_s)
    return NoteScores(*(float(x) for x in onset[:3]), *(float(x) for x in both[:3]))


@dataclass(frozen=True)
class AbcScore:
    """The parts of :func:`abc_score`, each in [0, 1], and their weighted sum."""

    meter: float
    tempo: float
    pitch: float
    instrument: float

    @property
    def total(self) -> float:
        return sum(ABC_WEIGHTS[name] * getattr(self, name) for name in ABC_WEIGHTS)


def tempo_similarity(predicted_bpm: float | None, reference_bpm: float | None) -> float:
    """1 - 0.02 per BPM of error up to 10 BPM (0.8), then 0.04 per BPM (0 from 30 BPM on).

    A missing tempo counts as :data:`DEFAULT_TEMPO_BPM`.
    """
    error = abs((predicted_bpm or DEFAULT_TEMPO_BPM) - (reference_bpm or DEFAULT_TEMPO_BPM))
    if error <= 10.0:
        return 1.0 - 0.02 * error
    return max(0.0, 0.8 - 0.04 * (error - 10.0))


def meter_similarity(predicted: tuple[int, int] | None, reference: tuple[int, int] | None) -> float:
    """1 for the same time signature (or both free), 0.5 for the same bar length (2/4 vs 4/8), else 0."""
    if predicted == reference:
        return 1.0
    if predicted is None or reference is None:
        return 0.0
    return 0.5 if predicted[0] * reference[1] == reference[0] * predicted[1] else 0.0


def levenshtein(a: Sequence[int], b: Sequence[int]) -> int:
    """Edit distance (insertions, deletions, substitutions) between two sequences; O(len(a) * len(b))."""
    if not a or not b:
        return max(len(a), len(b))
    target = np.asarray(b)
    columns = np.arange(len(b) + 1)
    row = columns.copy()
    for i, item in enumerate(a, start=1):
        # Deletion and substitution in one vectorised step, then insertions as a running minimum:
        # new[j] = min_k (candidate[k] + j - k).
        candidate = np.empty_like(row)
        candidate[0] = i
        candidate[1:] = np.minimum(row[1:] + 1, row[:-1] + (target != item))
        row = np.minimum.accumulate(candidate - columns) + columns
    return int(row[-1])


def sequence_similarity(a: Sequence[int], b: Sequence[int]) -> float:
    """``1 - levenshtein(a, b) / max(len(a), len(b))``; 1 for two empty sequences."""
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - levenshtein(a, b) / longest


def _program(voice: AbcVoice) -> int | None:
    import pretty_midi

    if voice.program is not None:
        return voice.program
    if not voice.name:
        return DEFAULT_PROGRAM
    try:
        return int(pretty_midi.instrument_name_to_program(voice.name.strip().title()))
    except ValueError:
        return None


def instrument_similarity(predicted: AbcVoice, reference: AbcVoice) -> float:
    """1 for the same instrument, 0.5 for the same General MIDI family (8 programs each), else half
    the string similarity of the names (``difflib`` ratio), so a near-miss never beats a family match.
    """
    import pretty_midi

    pred_program, ref_program = _program(predicted), _program(reference)
    if pred_program is not None and ref_program is not None:
        if pred_program == ref_program:
            return 1.0
        if pred_program // 8 == ref_program // 8:
            return 0.5
    elif predicted.name.strip().lower() == reference.name.strip().lower():
        return 1.0

    def name(voice: AbcVoice, program: int | None) -> str:
        return (voice.name or pretty_midi.program_to_instrument_name(program or 0)).lower()

    return 0.5 * difflib.SequenceMatcher(None, name(predicted, pred_program), name(reference, ref_program)).ratio()


def abc_score(predicted: str, reference: str) -> AbcScore:
    """Score ABC text against a reference ABC tune (first tune of each).

    Pitch: each predicted voice is matched to the reference voice with the most similar note
    sequence; the similarities are summed and divided by the larger number of voices, so missing
    or extra voices cost. Instrument: averaged the same way over the same matches.

    Raises:
        AbcError: either text is not valid ABC (:func:`m2ugen.notation.score.read_abc`).
    """
    pred, ref = read_abc(predicted), read_abc(reference)
    pitch_total = instrument_total = 0.0
    for voice in pred.voices:
        similarity, match = max(
            ((sequence_similarity(voice.pitches, candidate.pitches), candidate) for candidate in ref.voices),
            key=lambda pair: pair[0],
        )
        pitch_total += similarity
        instrument_total += instrument_similarity(voice, match)
    n_voices = max(len(pred.voices), len(ref.voices))
    return AbcScore(
        meter=meter_similarity(pred.meter, ref.meter),
        tempo=tempo_similarity(pred.tempo_bpm, ref.tempo_bpm),
        pitch=pitch_total / n_voices,
        instrument=instrument_total / n_voices,
    )
