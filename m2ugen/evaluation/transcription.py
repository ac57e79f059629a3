"""Transcription scores per piece and pooled, wrapping :mod:`m2ugen.metrics.transcription`.

Per piece: note precision/recall/F1 with and without offsets (mir_eval), instrument-family F1 and the
ABC score. Pooled: the note scores of all pieces' notes at once (each piece shifted to its own time
span, so notes of different pieces never match) -- long pieces weigh by their notes, not equally.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from m2ugen.errors import DataError, M2UGenError
from m2ugen.evaluation.facts import instrument_f1
from m2ugen.metrics.transcription import abc_score, note_scores
from m2ugen.notation.instruments import program_family

Note = tuple[float, float, int]
_GAP_S = 10.0  # silence between pooled pieces, far beyond every matching tolerance


def reference_notes(path: Path) -> tuple[list[Note], set[str]]:
    """Pitched notes ``(onset_s, offset_s, pitch)`` and instrument families of a corpus notes JSON
    (rows ``[onset_s, offset_s, pitch, velocity, program, part, is_drum]``; drums left out of the notes)."""
    try:
        rows = json.loads(Path(path).read_text())
        notes = [(float(r[0]), float(r[1]), int(r[2])) for r in rows if not r[6]]
        families = {"drums" if r[6] else program_family(int(r[4])) for r in rows}
    except (OSError, ValueError, IndexError, TypeError) as err:
        raise DataError(f"{path}: not a notes file ({err})") from err
    return notes, families


def midi_notes(path: Path) -> tuple[list[Note], set[str]]:
    """Pitched notes and instrument families of a MIDI file."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(str(path))
    notes = [(n.start, n.end, n.pitch) for inst in midi.instruments if not inst.is_drum for n in inst.notes]
    families = {program_family(i.program, is_drum=i.is_drum) for i in midi.instruments if i.notes}
    return sorted(notes), families


def piece_scores(reference: list[Note], ref_families: set[str], estimate: list[Note], est_families: set[str],
                 predicted_abc: str | None, reference_abc: str | None) -> dict[str, float]:
    """Note scores, instrument-family F1 and (when both ABC texts exist) the ABC score of one piece."""
    scores = {f"note_{k}": v for k, v in asdict(note_scores(reference, estimate)).items()}
    scores["instrument_f1"] = instrument_f1(est_families, ref_families)
    if predicted_abc and reference_abc:
        try:
            scores["abc_score"] = abc_score(predicted_abc, reference_abc).total
        except M2UGenError:  # the predicted ABC is not valid: nothing of it scores
            scores["abc_score"] = 0.0
    return scores


def pooled_note_scores(pieces: Sequence[tuple[list[Note], list[Note]]]) -> dict[str, float]:
    """Note scores over all ``(reference, estimate)`` pieces at once."""
    reference: list[Note] = []
    estimate: list[Note] = []
    start = 0.0
    for ref, est in pieces:
        reference += [(a + start, b + start, p) for a, b, p in ref]
        estimate += [(a + start, b + start, p) for a, b, p in est]
        start += max((b for _, b, _ in ref + est), default=0.0) + _GAP_S
    return {f"note_{k}": v for k, v in asdict(note_scores(reference, estimate)).items()}
