"""What a work's score says, read with music21: notes per part, key, metre, tempo, bars, title, style.

:func:`parse_work` turns one :class:`~datasets_build.corpus_sources.Work` into a :class:`ParsedWork`
(times in quarter notes, ties merged, grace notes and chord symbols left out, repeats not expanded);
:func:`transposed_key` names the key of a transposed rendering. Everything a clip's labels state
comes from here or from the augmentation that was applied, never from listening to the audio.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

from datasets_build.corpus_sources import Work
from m2ugen.errors import DataError

# Words in an ABC tune's R: field or title -> the style label (first match wins, so "slip jig" before "jig").
STYLE_WORDS: tuple[tuple[str, str], ...] = (
    ("slip jig", "slip jig"), ("slipjig", "slip jig"), ("hop jig", "slip jig"), ("jig", "jig"), ("reel", "reel"),
    ("hornpipe", "hornpipe"), ("strathspey", "strathspey"), ("polka", "polka"), ("waltz", "waltz"),
    ("mazurka", "mazurka"), ("schottische", "schottische"), ("barn dance", "barn dance"), ("fling", "fling"),
    ("set dance", "set dance"), ("slide", "slide"), ("quickstep", "march"), ("march", "march"), ("minuet", "minuet"),
    ("lament", "air"), ("air", "air"), ("chorale", "chorale"), ("madrigal", "madrigal"), ("quartet", "quartet"),
)
# Quarter-note BPM when the score gives none: typical session speeds per style, else per metre.
STYLE_TEMPO: dict[str, float] = {
    "reel": 180.0, "hornpipe": 150.0, "jig": 170.0, "slip jig": 170.0, "slide": 190.0, "polka": 200.0,
    "strathspey": 120.0, "march": 120.0, "waltz": 150.0, "mazurka": 140.0, "schottische": 140.0,
    "barn dance": 150.0, "fling": 140.0, "set dance": 130.0, "minuet": 120.0, "air": 90.0, "chorale": 80.0,
    "madrigal": 90.0, "quartet": 100.0, "mass": 90.0,
}
DEFAULT_TEMPO = 110.0
DEFAULT_VELOCITY = 80
_MODE_ABC = {"major": "", "ionian": "", "minor": "m", "aeolian": "m", "dorian": "dor", "mixolydian": "mix",
             "lydian": "lyd", "phrygian": "phr", "locrian": "loc"}


@dataclass(frozen=True)
class ScoreNote:
    """A sounding note of the score: times in quarter notes from the start, MIDI pitch, 0-based part."""

    onset_q: float
    offset_q: float
    pitch: int
    velocity: int
    part: int


@dataclass(frozen=True)
class ParsedWork:
    """A work as music21 reads it. ``bar_ends_q``: where each bar of the first part ends (quarter notes)."""

    notes: tuple[ScoreNote, ...]
    part_names: tuple[str | None, ...]
    key_tonic: str
    key_mode: str
    meter: str
    tempo_bpm: float
    tempo_from_score: bool
    bar_ends_q: tuple[float, ...]
    length_q: float
    title: str | None
    composer: str | None
    style: str | None


def style_of(text: str | None) -> str | None:
    """The style a tune's R: field or title names, e.g. ``"Bamford -- Hornpipe"`` -> ``"hornpipe"``; None if none."""
    if not text:
        return None
    lowered = text.lower()
    return next((style for word, style in STYLE_WORDS if re.search(rf"\b{word}s?\b", lowered)), None)


def _abc_field(abc: str | None, name: str) -> str | None:
    match = re.search(rf"^{name}:\s*(.+?)\s*$", abc or "", re.M)
    return match.group(1) if match else None


def tonic_name(pitch_name: str) -> str:
    """music21's pitch name as a label, e.g. ``"B-"`` -> ``"Bb"``."""
    return pitch_name.replace("-", "b")


def abc_key_name(tonic: str, mode: str) -> str | None:
    """The ABC ``K:`` name of a key label, e.g. ``("F#", "minor")`` -> ``"F#m"``; None for modes ABC lacks."""
    suffix = _MODE_ABC.get(mode)
    return None if suffix is None else tonic + suffix


def transposed_key(tonic: str, mode: str, semitones: int) -> str:
    """The tonic of a key moved by ``semitones``, spelled with at most 6 sharps or flats (label form)."""
    from music21 import key

    if semitones % 12 == 0:
        return tonic
    moved = key.Key(tonic.replace("b", "-") if len(tonic) > 1 else tonic, mode).transpose(semitones)
    if abs(moved.sharps) > 6:
        moved = key.Key(moved.tonic.getEnharmonic().name, mode)
    return tonic_name(moved.tonic.name)


def _parse_score(work: Work):  # -> music21.stream.Score
    from music21 import converter, stream

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if work.abc is not None:
                parsed = converter.parse(work.abc, format="abc")
            else:
                parsed = converter.parse(str(work.path), format=work.format, forceSource=True)
        except Exception as err:  # music21 raises many types for malformed input
            raise DataError(f"{work.path.name}: music21 cannot read {work.id} ({type(err).__name__}: {err})"[:400]) from None
    if isinstance(parsed, stream.Opus):
        if not parsed.scores:
            raise DataError(f"{work.path.name}: no tune in {work.id}")
        parsed = parsed.scores[0]
    return parsed


def _part_notes(part, index: int) -> list[ScoreNote]:  # noqa: ANN001 - music21 stream
    from music21 import harmony

    notes: list[ScoreNote] = []
    part.stripTies(inPlace=True)  # the score is ours: no deep copy
    for element in part.flatten().notes:
        if isinstance(element, harmony.ChordSymbol) or element.duration.isGrace or element.quarterLength <= 0:
            continue
        onset = float(element.offset)
        offset = onset + float(element.quarterLength)
        velocity = element.volume.velocity  # None unless the score sets it
        for pitch in getattr(element, "pitches", ()):
            notes.append(ScoreNote(onset, offset, int(pitch.midi), int(velocity or DEFAULT_VELOCITY), index))
    return notes


def _key(score) -> tuple[str, str]:  # noqa: ANN001 - music21 stream
    """The key the score declares (its first key signature); a bare signature gets its mode from analysis."""
    from music21 import key

    declared = next(iter(score.recurse().getElementsByClass(key.KeySignature)), None)
    if isinstance(declared, key.Key):
        return tonic_name(declared.tonic.name), declared.mode
    analysed = score.analyze("key")
    if declared is None or analysed.sharps == declared.sharps:
        return tonic_name(analysed.tonic.name), analysed.mode
    major = declared.asKey("major")
    return tonic_name(major.tonic.name), "major"


def parse_work(work: Work) -> ParsedWork:
    """Read ``work`` with music21.

    Raises:
        DataError: music21 cannot read it, or it has no pitched notes.
    """
    from music21 import meter, stream, tempo

    score = _parse_score(work)
    parts = list(score.parts) or [score]
    notes = [n for index, part in enumerate(parts) for n in _part_notes(part, index)]
    if not notes:
        raise DataError(f"{work.path.name}: {work.id} has no pitched notes")
    used = sorted({n.part for n in notes})
    renumber = {old: new for new, old in enumerate(used)}
    notes = [ScoreNote(n.onset_q, n.offset_q, n.pitch, n.velocity, renumber[n.part]) for n in notes]
    names = tuple((parts[i].partName or None) if hasattr(parts[i], "partName") else None for i in used)
    signature = next(iter(score.recurse().getElementsByClass(meter.TimeSignature)), None)
    mark = next((m for m in score.recurse().getElementsByClass(tempo.MetronomeMark) if m.number), None)
    title = (score.metadata.title or score.metadata.movementName) if score.metadata else None
    title = title or _abc_field(work.abc, "T")
    if title == work.path.name:  # MusicXML chorales carry only their file name
        title = f"BWV {work.path.stem[3:]}" if work.path.stem.startswith("bwv") else None
    composer = (score.metadata.composer if score.metadata else None) or work.composer
    style = style_of(_abc_field(work.abc, "R")) or style_of(title) or work.style
    measures = list(parts[used[0]].getElementsByClass(stream.Measure))
    bar_ends = tuple(float(m.offset + m.quarterLength) for m in measures)
    length = max(max(n.offset_q for n in notes), bar_ends[-1] if bar_ends else 0.0)
    tonic, mode = _key(score)
    quarter_bpm = float(mark.getQuarterBPM()) if mark is not None else None
    return ParsedWork(
        notes=tuple(sorted(notes, key=lambda n: (n.onset_q, n.part, n.pitch))), part_names=names,
        key_tonic=tonic, key_mode=mode, meter=signature.ratioString if signature is not None else "4/4",
        tempo_bpm=quarter_bpm or STYLE_TEMPO.get(style or "", DEFAULT_TEMPO), tempo_from_score=quarter_bpm is not None,
        bar_ends_q=bar_ends, length_q=length, title=title, composer=composer, style=style,
    )
