"""One line for a monophonic source: tell whether a source plays one note at a time, and drop the
notes its harmonics add (the octave, twelfth, double octave ... above the played note).

A note engine hears a strong upper partial of one note as a note of its own, so a flute's ``C``
comes back as ``[C c g]``. :func:`is_monophonic` looks at the intervals between notes that sound
together: from one instrument playing one note at a time they are all harmonic intervals
(:data:`HARMONIC_INTERVALS`) or short legato overlaps; chords and counterpoint give thirds, fourths,
sixths. :func:`one_line` keeps one note per onset and cuts each note where the next begins.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol, TypeVar

HARMONIC_INTERVALS = frozenset({12, 19, 24, 28, 31, 34, 36, 38, 40})  # partials 2, 3, 4, 5, 6, 7, 8, 9, 10
ONSET_TOLERANCE_S = 0.05  # notes starting this close together start "at the same time"
LEGATO_S = 0.12  # a note may overlap the next by this much without making the source polyphonic
POLYPHONY_LIMIT = 0.1  # above this share of notes sounding against a non-harmonic interval: polyphonic


class NoteLike(Protocol):
    start_s: float
    end_s: float
    pitch: int
    velocity: int


N = TypeVar("N", bound=NoteLike)


def _harmonic(low: int, high: int) -> bool:
    return high - low in HARMONIC_INTERVALS or high == low


def polyphony(notes: list[N]) -> float:
    """Share of notes (0-1) that start against a non-harmonic interval to the lowest note still sounding.

    A note still sounds when it goes on for at least :data:`LEGATO_S` and half the new note's length
    after the new note starts (a ringing release is not a second part).
    """
    ordered = sorted(notes, key=lambda n: n.start_s)
    against = 0
    for i, note in enumerate(ordered):
        overlap = max(LEGATO_S, 0.5 * (note.end_s - note.start_s))
        sounding = [o.pitch for o in ordered[max(0, i - 16) : i] if o.end_s - note.start_s >= overlap]
        if sounding and not _harmonic(*sorted((min(sounding), note.pitch))):
            against += 1
    return against / max(1, len(ordered))


def is_monophonic(notes: list[N]) -> bool:
    """True when at most :data:`POLYPHONY_LIMIT` of the notes sound against a non-harmonic interval."""
    return len(notes) > 0 and polyphony(notes) <= POLYPHONY_LIMIT


def one_line(notes: list[N]) -> list[N]:
    """The notes of a monophonic source, one at a time, sorted by onset.

    Of notes starting within :data:`ONSET_TOLERANCE_S` of each other, the lowest is kept when the
    others are its partials, else the loudest. A note starting while the kept one sounds, a harmonic
    interval above it and ending no later than it, is a partial too and dropped; any other note ends
    the one before it.
    """
    ordered = sorted(notes, key=lambda n: (n.start_s, n.pitch))
    groups: list[list[N]] = []
    for note in ordered:
        if groups and note.start_s - groups[-1][0].start_s < ONSET_TOLERANCE_S:
            groups[-1].append(note)
        else:
            groups.append([note])
    line: list[N] = []
    for group in groups:
        lowest = min(group, key=lambda n: n.pitch)
        if all(_harmonic(lowest.pitch, n.pitch) for n in group):
            chosen = max((n for n in group if n.pitch == lowest.pitch), key=lambda n: n.end_s)
        else:
            chosen = max(group, key=lambda n: (n.velocity, n.end_s - n.start_s))
        if line:
            previous = line[-1]
            if (previous.end_s > chosen.start_s and chosen.end_s <= previous.end_s + ONSET_TOLERANCE_S
                    and chosen.pitch - previous.pitch in HARMONIC_INTERVALS):
                continue
            if previous.end_s > chosen.start_s:
                line[-1] = replace(previous, end_s=chosen.start_s)
        line.append(chosen)
    return line
