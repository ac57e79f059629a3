"""Voices within one instrument (a chorale on one organ, a piano's hands): how many, and which note is in which.

The number of voices is the polyphony the instrument keeps up most of the time: the 80th percentile
of the number of its notes sounding at each onset (at most :data:`MAX_VOICES`). Notes starting
together are then given to voices in pitch order (the highest note to the highest free voice), the
order-keeping assignment that moves each voice the least from its previous pitch.
"""

from __future__ import annotations

from itertools import combinations
from typing import Protocol

import numpy as np

MAX_VOICES = 4
ONSET_TOLERANCE_S = 0.05


class NoteLike(Protocol):
    start_s: float
    end_s: float
    pitch: int


def count_voices(notes: list[NoteLike]) -> int:
    """How many voices ``notes`` (one instrument) keep up: 1..MAX_VOICES."""
    if not notes:
        return 1
    starts = np.array([n.start_s for n in notes])
    ends = np.array([n.end_s for n in notes])
    sounding = [int(((starts <= t + ONSET_TOLERANCE_S) & (ends > t + ONSET_TOLERANCE_S)).sum()) for t in starts]
    return int(np.clip(round(float(np.percentile(sounding, 80))), 1, MAX_VOICES))


def assign_voices(notes: list[NoteLike], n_voices: int | None = None) -> list[int]:
    """Voice of each note (0 = highest), in the order of ``notes``."""
    n_voices = n_voices or count_voices(notes)
    if n_voices == 1:
        return [0] * len(notes)
    order = sorted(range(len(notes)), key=lambda i: (notes[i].start_s, -notes[i].pitch))
    voices = [0] * len(notes)
    last_pitch = np.linspace(84, 48, n_voices)  # a starting guess: voices spread from high to low
    busy_until = np.zeros(n_voices)
    position = 0
    while position < len(order):
        group = [order[position]]
        while position + len(group) < len(order) and \
                notes[order[position + len(group)]].start_s - notes[group[0]].start_s < ONSET_TOLERANCE_S:
            group.append(order[position + len(group)])
        position += len(group)
        group.sort(key=lambda i: -notes[i].pitch)
        start = notes[group[0]].start_s
        free = [v for v in range(n_voices) if busy_until[v] <= start + ONSET_TOLERANCE_S]
        candidates = free if len(free) >= min(len(group), n_voices) else list(range(n_voices))
        chosen_notes = group[: min(len(group), len(candidates))]
        best = min(combinations(candidates, len(chosen_notes)),
                   key=lambda vs: sum(abs(notes[i].pitch - last_pitch[v]) for i, v in zip(chosen_notes, vs)))
        for i, v in zip(chosen_notes, best):
            voices[i] = v
            last_pitch[v] = notes[i].pitch
            busy_until[v] = notes[i].end_s
        for i in group[len(chosen_notes):]:  # more notes than voices: they join the nearest voice
            v = int(np.argmin(np.abs(last_pitch - notes[i].pitch)))
            voices[i] = v
    return voices
