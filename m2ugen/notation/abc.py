"""ABC notation (standard 2.1): a writer for MIDI scores.

:func:`write_abc` quantises a :class:`pretty_midi.PrettyMIDI` to a grid and writes one tune with
tempo ``Q:``, metre ``M:``, unit length ``L:``, key ``K:`` and one ``V:`` per instrument (with its
``%%MIDI program``). Polyphony inside a voice becomes chords with per-note ties, notes crossing a bar
line are tied, and every accidental that differs from the key signature, or follows an altered note of
the same letter in the bar, is written explicitly. Velocities and pitch bends are not written.

Reading ABC (with music21) is :mod:`m2ugen.notation.score`; this module only parses the key and metre
values the writer is configured with (:func:`parse_key`, :func:`parse_meter`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pretty_midi

from m2ugen.errors import ConfigError
from m2ugen.notation.key import Key, estimate_key

_ACCIDENTAL_SIGN = {-1: "_", 0: "=", 1: "^"}


@dataclass(frozen=True)
class AbcConfig:
    """How a score is written.

    Attributes:
        meter: time signature ``"N/D"``, e.g. ``"4/4"`` or ``"6/8"``.
        unit: ``L:`` as the denominator of a whole note; it is also the quantisation grid
            (16: sixteenth notes).
        tempo_bpm: quarter notes per minute written as ``Q:1/4=``; None takes the MIDI file's first tempo.
        key: ABC key name (``"Eb"``, ``"F#m"``); None estimates it from the notes.
        title: the ``T:`` line.
        bars_per_line: bars written on each line of music.
    """

    meter: str = "4/4"
    unit: int = 16
    tempo_bpm: float | None = None
    key: str | None = None
    title: str = "Transcription"
    bars_per_line: int = 4

    def __post_init__(self) -> None:
        if parse_meter(self.meter) is None:
            raise ConfigError(f"meter {self.meter!r} is not of the form N/D (e.g. 4/4, 6/8)")
        if self.unit not in (4, 8, 16, 32):
            raise ConfigError(f"unit {self.unit} must be 4, 8, 16 or 32 (L:1/unit)")
        if self.tempo_bpm is not None and not 10 <= self.tempo_bpm <= 400:
            raise ConfigError(f"tempo_bpm {self.tempo_bpm} is outside 10..400")
        if self.key is not None and parse_key(self.key) is None:
            raise ConfigError(f"key {self.key!r} is not an ABC key such as C, Eb, F#m or Ddor")
        if self.bars_per_line < 1:
            raise ConfigError(f"bars_per_line {self.bars_per_line} must be at least 1")


@dataclass(frozen=True)
class QuantizedNote:
    """A note on the grid: ``onset`` and ``offset`` in units of ``L:`` from the start of bar 1."""

    onset: int
    offset: int
    pitch: int


def quantize_notes(notes: list[pretty_midi.Note], *, grid_s: float) -> list[QuantizedNote]:
    """Round note times to a grid of ``grid_s`` seconds.

    Every note keeps at least one grid step; of two notes of the same pitch that now overlap, the
    earlier is cut where the later starts, and of two with the same onset only the longer is kept.
    """
    by_pitch: dict[int, list[QuantizedNote]] = {}
    for note in sorted(notes, key=lambda n: (n.pitch, n.start, -n.end)):
        onset = round(note.start / grid_s)
        offset = max(onset + 1, round(note.end / grid_s))
        same_pitch = by_pitch.setdefault(note.pitch, [])
        if same_pitch and same_pitch[-1].onset == onset:
            continue
        if same_pitch and same_pitch[-1].offset > onset:
            same_pitch[-1] = QuantizedNote(same_pitch[-1].onset, onset, note.pitch)
        same_pitch.append(QuantizedNote(onset, offset, note.pitch))
    return sorted((n for group in by_pitch.values() for n in group), key=lambda n: (n.onset, n.pitch))


def _note_lengths(units: int) -> list[int]:
    """Split ``units`` into lengths a score can draw (plain, dotted or double-dotted), longest first."""
    lengths = []
    while units > 0:
        power = 1 << (units.bit_length() - 1)
        length = max(d for d in (power, power * 3 // 2, power * 7 // 4) if d <= units)
        lengths.append(length)
        units -= length
    return lengths


class _BarSpeller:
    """Spells pitches in one voice, tracking accidentals written since the last bar line."""

    def __init__(self, key: Key) -> None:
        self.key = key
        self.signature = key.alterations()
        self.altered: set[str] = set()

    def new_bar(self) -> None:
        self.altered.clear()

    def spell(self, pitch: int) -> str:
        letter, alteration = self.key.spell(pitch % 12)
        if alteration != self.signature[letter] or letter in self.altered:
            prefix = _ACCIDENTAL_SIGN[alteration]
            self.altered.add(letter)
        else:
            prefix = ""
        octave = (pitch - alteration) // 12 - 1  # MIDI 60 = C4 = ABC "C"
        if octave >= 5:
            return prefix + letter.lower() + "'" * (octave - 5)
        return prefix + letter + "," * (4 - octave)


def _duration(units: int) -> str:
    return "" if units == 1 else str(units)


def _voice_bars(notes: list[QuantizedNote], *, n_bars: int, bar_units: int, key: Key) -> list[str]:
    """ABC text of each bar of one voice: cut time at every onset, offset and bar line."""
    starts: dict[int, list[QuantizedNote]] = {}
    for note in notes:
        starts.setdefault(note.onset, []).append(note)
    boundaries = sorted({t for n in notes for t in (n.onset, n.offset)} | set(range(0, (n_bars + 1) * bar_units, bar_units)))
    speller = _BarSpeller(key)
    bars: list[list[str]] = []
    active: list[QuantizedNote] = []
    for start, end in zip(boundaries, boundaries[1:]):
        if start % bar_units == 0:
            speller.new_bar()
            bars.append([])
        active = [n for n in active if n.offset > start] + starts.get(start, [])
        bars[-1].append(_segment(sorted(active, key=lambda n: n.pitch), start, end, speller))
    return [" ".join(tokens) for tokens in bars]


def _segment(sounding: list[QuantizedNote], start: int, end: int, speller: _BarSpeller) -> str:
    """One time segment during which the same notes sound: a rest, a note or a chord, maybe split."""
    pieces = _note_lengths(end - start)
    if not sounding:
        return "".join("z" + _duration(length) for length in pieces)
    names = [speller.spell(n.pitch) for n in sounding]
    out = []
    for i, length in enumerate(pieces):
        last = i == len(pieces) - 1
        ties = ["-" if (not last or n.offset > end) else "" for n in sounding]
        if len(sounding) == 1:
            out.append(names[0] + _duration(length) + ties[0])
        else:
            out.append("[" + "".join(name + tie for name, tie in zip(names, ties)) + "]" + _duration(length))
    return "".join(out)


def write_abc(midi: pretty_midi.PrettyMIDI, config: AbcConfig | None = None) -> str:
    """Write ``midi`` as one ABC tune, one voice per pitched instrument (drum tracks are left out).

    Args:
        midi: the score; note times in seconds.
        config: metre, grid, tempo, key and layout; the defaults of :class:`AbcConfig` when None.

    Returns:
        ABC text ending in a newline; a tune with no notes has one bar of rest.
    """
    config = config or AbcConfig()
    tempo_bpm = config.tempo_bpm
    if tempo_bpm is None:
        tempo_bpm = float(midi.get_tempo_changes()[1][0]) if len(midi.get_tempo_changes()[1]) else 120.0
    tempo_bpm = float(min(400, max(10, round(tempo_bpm))))
    numerator, denominator = parse_meter(config.meter) or (4, 4)
    bar_units = config.unit * numerator // denominator
    grid_s = 60.0 / tempo_bpm * 4 / config.unit
    instruments = [inst for inst in midi.instruments if not inst.is_drum]
    voices = [(inst, quantize_notes(inst.notes, grid_s=grid_s)) for inst in instruments]
    all_notes = [n for _, notes in voices for n in notes]
    if config.key is not None:
        key = parse_key(config.key) or Key()
    else:
        key = estimate_key([n.pitch for n in all_notes], [n.offset - n.onset for n in all_notes])
    last_unit = max((n.offset for n in all_notes), default=0)
    n_bars = max(1, math.ceil(last_unit / bar_units))

    lines = [
        "X:1",
        f"T:{config.title}",
        f"M:{numerator}/{denominator}",
        f"L:1/{config.unit}",
        f"Q:1/4={int(tempo_bpm)}",
        f"K:{key.name}",
    ]
    if not voices:
        voices = [(pretty_midi.Instrument(program=0), [])]
    for index, (inst, notes) in enumerate(voices, start=1):
        name = (inst.name or pretty_midi.program_to_instrument_name(inst.program)).replace('"', "'")
        lines += [f'V:{index} name="{name}"', f"%%MIDI program {inst.program}"]
        bars = _voice_bars(notes, n_bars=n_bars, bar_units=bar_units, key=key)
        for first in range(0, n_bars, config.bars_per_line):
            chunk = bars[first : first + config.bars_per_line]
            end = " |]" if first + config.bars_per_line >= n_bars else " |"
            lines.append(" | ".join(chunk) + end)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Header values (the writer's configuration; reading whole tunes is m2ugen.notation.score's job)


_MODE_FIFTHS = {"": 0, "maj": 0, "ion": 0, "m": -3, "min": -3, "aeo": -3, "mix": -1, "dor": -2,
                "phr": -4, "lyd": 1, "loc": -5}  # fmt: skip
_LETTER_FIFTHS = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}


def parse_key(text: str) -> Key | None:
    """ABC ``K:`` value -> :class:`Key`; ``none``/empty is C major; None when not a key."""
    words = text.strip().split()
    if not words or words[0].lower() == "none" or "=" in words[0]:
        return Key()
    match = re.fullmatch(r"([A-Ga-g])([#b]?)(.*)", words[0])
    if not match:
        return None
    tonic, accidental, mode = match.groups()
    if not mode and len(words) > 1 and "=" not in words[1] and words[1][0] not in "^_=":
        mode = words[1]
    mode_key = mode.lower()[:3] if mode.lower() not in ("m", "min") else "m"
    if mode_key not in _MODE_FIFTHS:
        return None
    fifths = _LETTER_FIFTHS[tonic.upper()] + {"#": 7, "b": -7, "": 0}[accidental] + _MODE_FIFTHS[mode_key]
    if not -7 <= fifths <= 7:
        return None
    return Key(fifths, _MODE_FIFTHS[mode_key] == -3)


def parse_meter(text: str) -> tuple[int, int] | None:
    """ABC ``M:`` value -> ``(numerator, denominator)``; ``C`` is 4/4, ``C|`` 2/2; None for free metre."""
    text = text.strip()
    if text == "C":
        return (4, 4)
    if text == "C|":
        return (2, 2)
    match = re.fullmatch(r"\(?([\d+ ]+)\)?\s*/\s*(\d+)", text)
    if not match:
        return None
    numerator = sum(int(part) for part in match.group(1).replace(" ", "").split("+") if part)
    denominator = int(match.group(2))
    return (numerator, denominator) if numerator > 0 and denominator > 0 else None
