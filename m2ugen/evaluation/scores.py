"""Score outputs: is the ABC a valid score (music21 reads it), does it keep the requested key, metre,
tempo and instrument, and is a requested score edit exact.

Parsing is :func:`m2ugen.notation.score.parse_abc` (music21 after a grammar check of every line).
"""

from __future__ import annotations

from typing import Any

from m2ugen.evaluation.facts import TEMPO_TOLERANCE, key_score
from m2ugen.evaluation.measure import key_tuple
from m2ugen.notation.instruments import program_family


def read_score(text: str) -> tuple[Any | None, str | None]:
    """(music21 score, None) for the ABC in a response, or (None, why it is not a valid score)."""
    from m2ugen.notation.score import AbcError, find_abc, parse_abc

    abc = find_abc(text)
    if abc is None:
        return None, "no ABC tune (X: ... K:) in the response"
    try:
        return parse_abc(abc), None
    except AbcError as err:
        return None, str(err)


def adherence(score: Any, requested: dict[str, Any]) -> dict[str, float]:
    """Per requested property, in [0, 1]: key (MIREX weighted), metre (exact), tempo (within 8 %),
    instrument (1 for the same family in any voice)."""
    from m2ugen.notation.score import part_program, score_key, score_meter, score_tempo

    result: dict[str, float] = {}
    if requested.get("key"):
        result["key"] = key_score(key_tuple(score_key(score)), tuple(requested["key"]))
    if requested.get("meter"):
        meter = score_meter(score)
        result["meter"] = float(meter is not None and f"{meter[0]}/{meter[1]}" == requested["meter"])
    if requested.get("tempo_bpm"):
        target = float(requested["tempo_bpm"])
        result["tempo"] = float(abs(score_tempo(score) - target) <= TEMPO_TOLERANCE * target)
    if requested.get("program") is not None:
        wanted = program_family(int(requested["program"]))
        result["instrument"] = float(any(program_family(part_program(p)) == wanted for p in score.parts))
    return result


def notes_of(score: Any) -> list[tuple]:
    """Every voice's ``(onset, length, pitch)`` in quarter notes, voice by voice."""
    from m2ugen.notation.score import part_notes

    return [tuple(part_notes(part)) for part in score.parts]


def exact_transposition(output: Any, source: Any, semitones: int) -> bool:
    """True when ``output`` is ``source`` with every pitch moved by ``semitones`` and nothing else changed."""
    moved = [tuple((on, length, pitch + semitones) for on, length, pitch in voice) for voice in notes_of(source)]
    return notes_of(output) == moved
