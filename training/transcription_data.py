"""Rendered pieces with known notes, instruments, metre and tempo, for training and measuring transcription.

Tunes come from music21's corpus: folk tunes (Essen and Ryan's Mammoth collections, one metre each,
ABC) and Bach chorales (four parts). A piece is a work (held out by :func:`split_of`, a hash of its
id) played by chosen General MIDI programs at a chosen tempo; :func:`render_pieces` renders many
pieces with one FluidSynth call per batch and cuts the audio back into pieces.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METERS = ("2/4", "3/4", "4/4", "6/8", "9/8", "12/8")
COMPOUND = ("6/8", "9/8", "12/8")

# Programs the classifiers learn, with the MIDI range each plays comfortably.
PROGRAM_RANGES: dict[int, tuple[int, int]] = {
    0: (36, 96), 4: (40, 88), 6: (41, 89), 11: (53, 89), 12: (45, 96), 19: (36, 84), 21: (53, 89),
    22: (60, 84), 24: (40, 76), 25: (40, 81), 27: (40, 81), 32: (28, 55), 33: (28, 55), 40: (55, 96),
    41: (48, 84), 42: (36, 72), 43: (28, 55), 46: (36, 96), 48: (36, 91), 52: (48, 79), 56: (55, 82),
    57: (40, 72), 58: (28, 58), 60: (41, 77), 64: (56, 87), 65: (49, 81), 66: (44, 76), 68: (58, 91),
    69: (52, 81), 70: (34, 67), 71: (50, 89), 72: (74, 102), 73: (60, 96), 74: (60, 86), 75: (60, 86),
    78: (70, 96), 80: (48, 96), 81: (48, 96), 105: (48, 84),
}


@dataclass
class Work:
    """A score: ``parts`` of (onset, offset, pitch) in quarter notes from the first downbeat."""

    id: str
    meter: str
    parts: list[list[tuple[float, float, int]]]
    quarter_bpm: float | None = None  # the tempo the source gives, if any


@dataclass
class Piece:
    """A work as played: notes in seconds per part, the programs and tempo."""

    id: str
    work_id: str
    meter: str
    tempo_bpm: float  # quarter notes per minute
    programs: list[int]
    notes: list[list[tuple[float, float, int, int]]]  # per part: (onset_s, offset_s, pitch, velocity)
    audio: np.ndarray | None = None  # (S,) mono at the render rate

    @property
    def duration_s(self) -> float:
        return max((n[1] for part in self.notes for n in part), default=0.0) + 0.5


def split_of(work_id: str) -> str:
    """``"test"`` for one work in five (by hash of its id), else ``"train"``."""
    return "test" if int(hashlib.sha1(work_id.encode()).hexdigest(), 16) % 5 == 0 else "train"


def _music21_parts(score, *, max_quarters: float) -> list[list[tuple[float, float, int]]]:
    parts = []
    pickup = 0.0
    measures = list(score.parts[0].getElementsByClass("Measure")) if score.parts else []
    if measures and measures[0].paddingLeft:
        pickup = float(measures[0].paddingLeft)
    for part in score.parts:
        notes = []
        for element in part.stripTies().flatten().notes:
            start = float(element.offset) + pickup
            if start >= max_quarters:
                break
            end = start + float(element.quarterLength)
            for pitch in element.pitches:
                notes.append((start, end, int(pitch.midi)))
        if notes:
            parts.append(notes)
    return parts


def _abc_tunes(path: Path) -> Iterator[tuple[str, str]]:
    text = path.read_text(encoding="latin-1")
    chunks = re.split(r"\n(?=X:)", text)
    for chunk in chunks:
        match = re.match(r"X:\s*(\d+)", chunk)
        if match:
            yield f"{path.stem}-{match.group(1)}", chunk


def folk_works(*, limit: int, max_quarters: float = 48.0, split: str | None = None,
               per_meter: int | None = None) -> list[Work]:
    """Single-metre, single-voice folk tunes from music21's corpus (Ryan's Mammoth first, then Essen),
    at most ``per_meter`` of each metre (default ``limit // 5``: five metres have enough tunes); only
    those of ``split`` when given."""
    from music21 import converter, corpus

    root = Path(corpus.getComposer("bach")[0]).parents[1]
    works: list[Work] = []
    files = sorted((root / "ryansMammoth").glob("*.abc")) + sorted((root / "essenFolksong").glob("*.abc"))
    per_meter = per_meter or max(1, limit // 5)
    counts: dict[str, int] = {}
    for path in files:
        for tune_id, text in _abc_tunes(path):
            meters = re.findall(r"^M:\s*(\S+)", text, flags=re.M)
            meter = {"C": "4/4"}.get(meters[0], meters[0]) if meters else None
            if len(set(meters)) != 1 or meter not in METERS or "V:" in text or "[M:" in text:
                continue
            if counts.get(meter, 0) >= per_meter or (split is not None and split_of(tune_id) != split):
                continue
            try:
                score = converter.parse(text, format="abc")
                parts = _music21_parts(score, max_quarters=max_quarters)
            except Exception:  # noqa: BLE001 - the corpus has a few tunes music21 cannot read
                continue
            if len(parts) != 1 or len(parts[0]) < 12:
                continue
            tempo = re.search(r"^Q:\s*1/4\s*=\s*(\d+)", text, flags=re.M)
            works.append(Work(tune_id, meter, parts, float(tempo.group(1)) if tempo else None))
            counts[meter] = counts.get(meter, 0) + 1
            if len(works) >= limit:
                return works
    return works


def folk_work(tune_id: str, *, max_quarters: float = 48.0) -> Work:
    """One tune by its id (``"<file stem>-<X number>"``, e.g. ``"BossJig-1"``), as :func:`folk_works` reads it."""
    from music21 import converter, corpus

    root = Path(corpus.getComposer("bach")[0]).parents[1]
    stem, number = tune_id.rsplit("-", 1)
    path = next(p for folder in ("ryansMammoth", "essenFolksong") if (p := root / folder / f"{stem}.abc").is_file())
    text = next(text for tid, text in _abc_tunes(path) if tid == tune_id)
    meter = re.findall(r"^M:\s*(\S+)", text, flags=re.M)[0]
    tempo = re.search(r"^Q:\s*1/4\s*=\s*(\d+)", text, flags=re.M)
    parts = _music21_parts(converter.parse(text, format="abc"), max_quarters=max_quarters)
    return Work(tune_id, {"C": "4/4"}.get(meter, meter), parts, float(tempo.group(1)) if tempo else None)


def chorale_works(*, limit: int, max_quarters: float = 32.0, split: str | None = None) -> list[Work]:
    """Four-part Bach chorales from music21's corpus (the first ``max_quarters`` quarter notes); only
    those of ``split`` when given."""
    from music21 import corpus

    works = []
    for path in sorted(corpus.getComposer("bach")):
        if path.suffix not in (".mxl", ".xml", ".musicxml") or (split is not None and split_of(path.stem) != split):
            continue
        try:
            score = corpus.parse(path)
        except Exception:  # noqa: BLE001
            continue
        if len(score.parts) != 4:
            continue
        signatures = list(score.recurse().getElementsByClass("TimeSignature"))
        meter = signatures[0].ratioString if signatures else "4/4"
        if meter not in METERS:
            continue
        parts = _music21_parts(score, max_quarters=max_quarters)
        if len(parts) == 4:
            works.append(Work(path.stem, meter, parts))
        if len(works) >= limit:
            break
    return works


def choose_tempo(work: Work, rng: np.random.Generator) -> float:
    """Quarter-note BPM: the source's when it has one, else 72-144 (simple) or a dotted quarter at 60-120."""
    if work.quarter_bpm is not None and 60 <= work.quarter_bpm <= 200:
        return work.quarter_bpm
    if work.meter in COMPOUND:
        return float(rng.uniform(60, 120)) * 1.5
    return float(rng.uniform(72, 144))


def programs_for(parts: list[list[tuple[float, float, int]]], rng: np.random.Generator, *,
                 candidates: list[int] | None = None, distinct: bool = True) -> list[tuple[int, int]]:
    """A program for each part whose range holds the part's median pitch after an octave shift.

    Returns ``(program, octave_shift_semitones)`` per part.
    """
    candidates = candidates or list(PROGRAM_RANGES)
    chosen: list[tuple[int, int]] = []
    for part in parts:
        median = float(np.median([p for _, _, p in part]))
        low, high = min(p for _, _, p in part), max(p for _, _, p in part)
        options = []
        for program in candidates:
            if distinct and program in [c for c, _ in chosen]:
                continue
            lo, hi = PROGRAM_RANGES[program]
            for shift in (0, -12, 12, -24, 24):
                if lo <= low + shift and high + shift <= hi + 4 and abs(median + shift - (lo + hi) / 2) < 18:
                    options.append((program, shift))
                    break
        chosen.append(options[int(rng.integers(len(options)))] if options else (0, 0))
    return chosen


def make_piece(work: Work, programs: list[tuple[int, int]], tempo_bpm: float, rng: np.random.Generator,
               *, tag: str) -> Piece:
    """Play ``work``: slightly detached notes, velocities 70-100, onsets jittered by up to 10 ms."""
    beat_s = 60.0 / tempo_bpm
    notes = []
    for part, (_, shift) in zip(work.parts, programs):
        played = []
        for start_q, end_q, pitch in part:
            start = 0.3 + start_q * beat_s + float(rng.uniform(-0.01, 0.01))
            end = 0.3 + end_q * beat_s - min(0.08, 0.1 * (end_q - start_q) * beat_s)
            played.append((max(0.0, start), max(start + 0.05, end), pitch + shift, int(rng.integers(70, 101))))
        notes.append(played)
    return Piece(f"{work.id}-{tag}", work.id, work.meter, tempo_bpm, [p for p, _ in programs], notes)


def render_pieces(pieces: list[Piece], soundfont: str | Path, *, sample_rate: int = 22050) -> None:
    """Fill each piece's ``audio``: mono float32 at ``sample_rate``, peak 0.9 (or quieter)."""
    from m2ugen.notation.render import SynthNote, synthesize

    for piece in pieces:
        notes = [SynthNote(s, e, p, v, program, part)
                 for part, (program, played) in enumerate(zip(piece.programs, piece.notes)) for s, e, p, v in played]
        audio = synthesize(notes, sample_rate=sample_rate, soundfont=soundfont).mean(axis=1)
        piece.audio = audio * (0.9 / max(0.9, float(np.abs(audio).max(initial=0.0))))
