"""Scores: ABC text -> a validated music21 score -> MIDI, and back to ABC.

:func:`parse_abc` reads one ABC tune (standard 2.1) with music21 and returns it in one normal form
every score tool uses: a :class:`music21.stream.Score` with one :class:`~music21.stream.Part` per ABC
voice (``part.id`` the voice id, ``part.partName`` its name), each holding at offset 0 its
instrument (``midiProgram``, 0-based GM), tempo mark, time signature (absent in free metre) and key,
then its notes as single-pitch :class:`~music21.note.Note` objects at absolute offsets in quarter
notes, ties joined, chords split into their notes. Repeats are played out.

Before music21 sees the text, every line is checked against the ABC grammar (header fields, notes,
rests, chords, bar lines, tuplets, broken rhythm, grace notes, decorations), so invalid ABC raises an
:class:`AbcError` naming the line instead of becoming a silent or empty score. The voices are split
here (music21 reads ``V:`` only partly) with their ``name=`` and ``%%MIDI program``; decorations,
chord symbols and grace notes are not played. Not supported, each with a clear error: tempo changes
inside a tune, voice overlays (``&``) and voice changes in the middle of a line.

:func:`score_to_midi` writes the notes with their programs and tempo; :func:`score_to_abc` writes the
score with the project's ABC writer (:func:`m2ugen.notation.abc.write_abc`) on the coarsest grid that
holds every note exactly (1/32 notes at the finest; finer values such as tuplets are rounded to it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import pretty_midi

from m2ugen.errors import M2UGenError
from m2ugen.files import write_atomically
from m2ugen.notation.abc import AbcConfig, parse_key, parse_meter, write_abc
from m2ugen.notation.instruments import program_name
from m2ugen.notation.key import Key

if TYPE_CHECKING:  # music21 takes a second to import: it loads on first use
    from music21.stream import Score

MAX_ABC_CHARS = 100_000
MAX_SCORE_SECONDS = 600.0  # longest score one call may play
MAX_NOTES = 50_000
DEFAULT_TEMPO_BPM = 120.0  # what abc2midi plays when a tune has no Q: field
VELOCITY = 80
MIDI_RESOLUTION = 960  # ticks per quarter note: triplets and 1/64 notes fall on ticks
_GRIDS = (8, 16, 32)  # ABC unit lengths L:1/N the writer may use, coarsest first


class AbcError(M2UGenError):
    """ABC text that cannot be read as a score; the message names the line."""


@dataclass(frozen=True)
class ScoreNote:
    """One sounding note: times in seconds, MIDI pitch and velocity, 0-based GM program, voice index."""

    onset_s: float
    offset_s: float
    pitch: int
    velocity: int
    program: int
    part: int


@dataclass(frozen=True)
class AbcVoice:
    """One voice: its id, instrument name and GM program (None when not given), and its note onsets
    (ascending pitches within a chord, tied continuations not repeated)."""

    voice_id: str
    name: str
    program: int | None
    pitches: tuple[int, ...]


@dataclass(frozen=True)
class AbcTune:
    """What :func:`read_abc` extracts: metre ``(N, D)`` (None: free), quarter-note tempo (None: not
    given), key and voices."""

    meter: tuple[int, int] | None
    tempo_bpm: float | None
    key: Key
    voices: tuple[AbcVoice, ...]


# ----------------------------------------------------------------------------------------------
# Checking and splitting the text

_DECORATION = r"(?:![^!\n]*!|\+[^+\n]*\+|[.~HLMOPSTuv])"
_PITCH = r"(?:\^\^|\^|__|_|=)?[A-Ga-g][,']*"
_LENGTH = r"(?:[1-9]\d*/+[1-9]\d*|[1-9]\d*/*|/+(?:[1-9]\d*)?)?"
# (kind, pattern): the tokens of a line of music, tried in this order.
_TOKENS: tuple[tuple[str, str], ...] = (
    ("space", r"\s+"),
    ("annotation", r'"[^"]*"'),
    ("decoration", _DECORATION),
    ("field", r"\[[A-Za-z]:[^\]]*\]"),
    ("chord", rf"\[(?:{_DECORATION}*{_PITCH}{_LENGTH}-?)+\]{_LENGTH}-?"),
    ("note", rf"{_PITCH}{_LENGTH}-?"),
    ("rest", rf"[zxZX]{_LENGTH}"),
    ("tuplet", r"\(\d(?::\d*){0,2}"),
    ("slur", r"[()]"),
    ("broken", r"[<>]{1,3}"),
    ("grace", r"\{/?|\}"),
    ("bar", r":*(?:\[\||\|\]|\|\||\|)(?::+)?(?:\[?\d+(?:[,-]\d+)*)?|::+|\[\d+(?:[,-]\d+)*"),
    ("spacer", r"[y$\\`]"),  # ` spaces notes inside a beam (ABC 2.1, 4.7)
)
_TOKEN = re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in _TOKENS))
_CHORD_NOTE = re.compile(rf"{_DECORATION}*{_PITCH}{_LENGTH}(-?)")
_FIELD_LINE = re.compile(r"([A-Za-z]):(.*)")
_BODY_FIELDS = "IKLMmNPQRrsTUVWw"  # fields allowed between lines of music (ABC 2.1, section 3)
_MIDI_PROGRAM = re.compile(r"%%\s*MIDI\s+program\s+(?:\d+\s+)?(\S+)\s*$")
_VOICE_NAME = re.compile(r'\b(?:name|nm)\s*=\s*(?:"([^"]*)"|(\S+))')
_TEMPO = re.compile(r'^\s*(?:"[^"]*"\s*)?((?:\d+/\d+\s*)+)=\s*(\d+(?:\.\d+)?)\s*(?:"[^"]*")?\s*$')
_OLD_TEMPO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*$")


@dataclass
class _Voice:
    voice_id: str
    name: str = ""
    program: int | None = None
    lines: list[tuple[int, str]] = field(default_factory=list)  # (line number, text for music21)
    # Per note or chord, in order: None for a note (music21 reads its tie), for a chord which of its
    # notes (as written) are tied onward (music21 drops ties inside and after chords).
    chord_ties: list[tuple[bool, ...] | None] = field(default_factory=list)


def _fail(number: int, line: str, problem: str) -> AbcError:
    shown = line if len(line) <= 60 else line[:57] + "..."
    return AbcError(f"line {number}: {problem}: {shown!r}")


def _music_line(number: int, line: str, chord_ties: list[tuple[bool, ...] | None]) -> str:
    """Check one line of music and return what music21 should read: notes, rests, chords, bars,
    tuplets, broken rhythm and key/length fields, without decorations, annotations or grace notes.
    Appends the ties of each note and chord to ``chord_ties`` (see :class:`_Voice`)."""
    kept: list[str] = []
    position, in_grace = 0, False
    while position < len(line):
        match = _TOKEN.match(line, position)
        if match is None:
            char = line[position]
            if char == "&":
                raise _fail(number, line, "voice overlay '&' is not supported; write the notes as another V: voice")
            raise _fail(number, line, f"column {position + 1}: {char!r} is not ABC music")
        kind, token = match.lastgroup, match.group()
        position = match.end()
        if kind == "grace":
            in_grace = token != "}"
            continue
        if kind == "field":
            name = token[1]
            if name == "Q":
                raise _fail(number, line, "tempo changes inside a tune are not supported")
            if name == "V":
                raise _fail(number, line, "a voice change must start its line ([V:id] or V:id)")
            if name not in "KLM":
                continue
            _check_field(number, line, name, token[3:-1])
            if name == "M":
                continue
        if in_grace or kind in ("annotation", "decoration", "spacer"):
            continue
        if kind == "note":
            chord_ties.append(None)
        elif kind == "chord":
            inner, _, outer = token[1:].rpartition("]")
            chord_ties.append(tuple(tie == "-" or outer.endswith("-") for tie in _CHORD_NOTE.findall(inner)))
        kept.append(token)
    if in_grace:
        raise _fail(number, line, "grace notes '{' are not closed with '}'")
    return "".join(kept)


def _check_field(number: int, line: str, name: str, value: str) -> None:
    """Raise AbcError unless a K:, M:, L: or Q: value is valid."""
    value = value.split("%", 1)[0].strip()
    if name == "K" and parse_key(value) is None:
        raise _fail(number, line, f"{value!r} is not a key such as C, Eb, F#m or Ddor")
    if name == "M" and value.lower() != "none" and parse_meter(value) is None:
        raise _fail(number, line, f"{value!r} is not a metre such as 4/4, 6/8, C or none")
    if name == "L" and not re.fullmatch(r"1/(1|2|4|8|16|32|64)", value.replace(" ", "")):
        raise _fail(number, line, f"{value!r} is not a unit note length such as 1/8")
    if name == "Q" and not (_TEMPO.match(value) or _OLD_TEMPO.match(value)):
        raise _fail(number, line, f"{value!r} is not a tempo such as 1/4=120")


def _program(number: int, line: str, value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 127:
        raise _fail(number, line, f"MIDI program {value!r} is not a number from 0 to 127")
    return int(value)


def _voice(voices: dict[str, _Voice], number: int, line: str, value: str) -> _Voice:
    words = value.split()
    if not words:
        raise _fail(number, line, "V: needs a voice id")
    voice = voices.setdefault(words[0], _Voice(words[0]))
    if name := _VOICE_NAME.search(value):
        voice.name = name.group(1) if name.group(1) is not None else name.group(2)
    return voice


def _split(text: str) -> tuple[list[str], tuple[int, int] | None, str, dict[str, _Voice]]:
    """Check ``text`` and split it into header fields for music21 (L:, Q:, K:), metre (None: free; 4/4
    when not given), title and voices in order of appearance."""
    header: list[str] = []
    signature: tuple[int, int] | None = (4, 4)
    title = ""
    voices: dict[str, _Voice] = {}
    current: _Voice | None = None  # where music goes
    named: _Voice | None = None  # the voice of the last V: line, which a %%MIDI program line sets
    default_program: int | None = None
    in_header, seen_tune, seen_key = True, False, False
    lines = text.splitlines()
    # Free text before the first tune (a file's own header) is not part of it.
    first = next((i for i, line in enumerate(lines) if re.match(r"\s*X:", line)), 0)
    for number, raw in enumerate(lines[first:], start=first + 1):
        line = raw.strip()
        if program := _MIDI_PROGRAM.match(line):
            value = _program(number, line, program.group(1))
            if named is None:
                default_program = value
            else:
                named.program = value
            continue
        line = re.sub(r"(?<!\\)%.*", "", line).rstrip()
        if not line:
            continue
        field_match = _FIELD_LINE.match(line)
        if field_match and field_match.group(1) == "X":
            if seen_tune:
                break  # only the first tune
            seen_tune = True
            continue
        if in_header:
            if not field_match:
                raise _fail(number, line, "expected a header field such as M:4/4 or K:C (the header ends with K:)")
            name, value = field_match.groups()
            value = value.strip()
            if name in "KLMQ":
                _check_field(number, line, name, value)
                if name == "M":  # music21 reads no metre: it would re-split bars, slowly
                    signature = parse_meter(value)
                    continue
                if name == "Q":  # as 1/4=BPM: music21 misreads some forms ("1/4 = 144", Q:N)
                    value = f"1/4={_quarter_bpm(value, _unit(header, signature)):g}"
                if name == "K" and not any(h.startswith("L:") for h in header):
                    header.append(f"L:{_unit(header, signature)}")
                header.append(f"{name}:{value}")
            elif name == "T" and not title:
                title = value
            elif name == "V":
                named = _voice(voices, number, line, value)
            if name == "K":
                in_header, seen_key = False, True
            continue
        inline_voice = re.match(r"\[V:([^\]]*)\]", line)
        if field_match and field_match.group(1) in _BODY_FIELDS and not field_match.group(2).startswith(("|", ":")):
            name, value = field_match.groups()
            if name == "V":
                current = named = _voice(voices, number, line, value)
            elif name == "Q":
                raise _fail(number, line, "tempo changes inside a tune are not supported")
            elif name in "KLM":
                _check_field(number, line, name, value)
                current = current or _first_voice(voices)
                if name != "M":  # music21 reads no metre: bars are not re-split, notes keep their lengths
                    current.lines.append((number, f"{name}:{value.strip()}"))
            continue
        if inline_voice:
            current = named = _voice(voices, number, line, inline_voice.group(1))
            line = line[inline_voice.end():]
        current = current or _first_voice(voices)
        music = _music_line(number, line, current.chord_ties)
        if music.strip():
            current.lines.append((number, music))
    if not seen_key:
        raise AbcError("no K: line: an ABC tune's header ends with its key, e.g. K:C")
    for voice in voices.values():
        if voice.program is None:
            voice.program = default_program
    return header, signature, title, {vid: v for vid, v in voices.items() if v.lines}


def _quarter_bpm(value: str, unit: str) -> float:
    """Quarter notes per minute of a checked ``Q:`` value; the old form ``Q:N`` counts ``unit`` notes."""
    if old := _OLD_TEMPO.match(value):
        beat, bpm = Fraction(unit), float(old.group(1))
    else:
        match = _TEMPO.match(value)
        beat, bpm = sum(Fraction(f) for f in match.group(1).split()), float(match.group(2))
    return bpm * float(beat * 4)


def _unit(header: list[str], signature: tuple[int, int] | None) -> str:
    """The unit note length ``L:``: as given, else 1/16 for metres shorter than 3/4 and 1/8 otherwise."""
    if unit := next((h[2:] for h in header if h.startswith("L:")), None):
        return unit
    return "1/16" if signature and signature[0] / signature[1] < 0.75 else "1/8"


def _first_voice(voices: dict[str, _Voice]) -> _Voice:
    return next(iter(voices.values())) if voices else voices.setdefault("1", _Voice("1"))


# ----------------------------------------------------------------------------------------------
# music21


def _read_voice(header: list[str], voice: _Voice):
    """One voice through music21: (notes [(onset_ql, length_ql, pitch)], tempo_bpm, KeySignature)."""
    from music21 import abcFormat, bar, chord, exceptions21, key, note, tempo, tie
    from music21.abcFormat import translate

    first, last = voice.lines[0][0], voice.lines[-1][0]
    where = f"line {first}" if first == last else f"lines {first}-{last}"
    source = "\n".join(["X:1", *header, *(text for _, text in voice.lines)]) + "\n"
    try:
        handler = abcFormat.ABCHandler(lineBreaksDefinePhrases=False)
        handler.process(source)
        part = translate.abcToStreamPart(handler)
        elements = list(part.recurse().notes)
        if len(elements) == len(voice.chord_ties):
            for element, ties in zip(elements, voice.chord_ties):
                for member, tied in zip(element.notes if ties is not None else (), ties or ()):
                    member.tie = tie.Tie("start") if tied else None
        if part.recurse().getElementsByClass(bar.Repeat):
            part = part.expandRepeats()
        flat = part.flatten()
    except (exceptions21.Music21Exception, ValueError, ArithmeticError, IndexError, KeyError, TypeError,
            AttributeError) as err:
        raise AbcError(f"voice {voice.voice_id} ({where}): music21 cannot read it ({err})") from err
    marks = list(flat.getElementsByClass(tempo.MetronomeMark))
    bpm = float(marks[0].getQuarterBPM()) if marks else DEFAULT_TEMPO_BPM
    keys = list(flat.getElementsByClass(key.KeySignature))
    notes: list[tuple[Fraction, Fraction, int]] = []
    open_ties: dict[int, int] = {}  # pitch -> index in notes of a note tied onward
    for element in flat.notes:
        if element.duration.isGrace or not isinstance(element, (note.Note, chord.Chord)):
            continue
        onset, length = Fraction(element.offset), Fraction(element.quarterLength)
        members = [element] if isinstance(element, note.Note) else list(element.notes)
        for member in members:
            pitch = member.pitch.midi
            tied = member.tie or element.tie
            held = open_ties.pop(pitch, None)
            if held is not None and notes[held][0] + notes[held][1] == onset:
                notes[held] = (notes[held][0], notes[held][1] + length, pitch)
                index = held
            else:
                notes.append((onset, length, pitch))
                index = len(notes) - 1
            if tied is not None and tied.type in ("start", "continue"):
                open_ties[pitch] = index
    return notes, bpm, keys[0] if keys else key.KeySignature(0)


def parse_abc(text: str) -> Score:
    """Read the first tune of ABC ``text`` into a score in the normal form of the module docstring.

    Raises:
        AbcError: the text is not valid ABC (naming the line), has no notes, is longer than
            :data:`MAX_SCORE_SECONDS` or has more than :data:`MAX_NOTES` notes.
    """
    if not isinstance(text, str) or not text.strip():
        raise AbcError("the ABC text is empty")
    if len(text) > MAX_ABC_CHARS:
        raise AbcError(f"the ABC text has {len(text)} characters; at most {MAX_ABC_CHARS} are read")
    header, signature, title, voices = _split(text)
    if not voices:
        raise AbcError("the tune has no notes")
    read = []
    for voice in voices.values():
        notes, bpm, key_signature = _read_voice(header, voice)
        if not 10 <= bpm <= 400:
            raise AbcError(f"tempo {bpm:g} quarter notes per minute is outside 10..400")
        if any(not 0 <= pitch <= 127 for _, _, pitch in notes):
            raise AbcError(f"voice {voice.voice_id}: a pitch is outside the MIDI range 0..127")
        read.append((voice, notes, bpm, Key(int(key_signature.sharps), getattr(key_signature, "mode", "") == "minor")))
    total = sum(len(notes) for _, notes, _, _ in read)
    end = max(float(onset + length) * 60.0 / bpm for _, notes, bpm, _ in read for onset, length, _ in notes) \
        if total else 0.0
    if total == 0:
        raise AbcError("the tune has no notes")
    if total > MAX_NOTES:
        raise AbcError(f"the tune has {total} notes; at most {MAX_NOTES} are played")
    if end > MAX_SCORE_SECONDS:
        raise AbcError(f"the tune lasts {end:.0f} s; at most {MAX_SCORE_SECONDS:.0f} s are played")
    parts = [make_part(voice.voice_id, voice.name, voice.program if voice.program is not None else 0, bpm, signature,
                       key, notes) for voice, notes, bpm, key in read]
    return make_score(title or "Untitled", parts)


def make_part(voice_id: str, name: str, program: int, bpm: float, signature: tuple[int, int] | None, key: Key,
              notes: list[tuple[Fraction, Fraction, int]]):
    """A part in normal form: instrument, tempo, metre (None: free) and key at 0, then
    ``notes`` ``(onset, length, pitch)`` in quarter notes."""
    from music21 import instrument, meter, note, stream, tempo
    from music21 import key as m21key

    part = stream.Part(id=voice_id)
    part.partName = name
    inst = instrument.Instrument()
    inst.midiProgram = program
    inst.instrumentName = name or program_name(program)
    part.insert(0, inst)
    part.insert(0, tempo.MetronomeMark(number=bpm, referent=1.0))
    if signature is not None:
        part.insert(0, meter.TimeSignature(f"{signature[0]}/{signature[1]}"))
    part.insert(0, m21key.KeySignature(key.fifths).asKey("minor" if key.minor else "major"))
    for onset, length, pitch in notes:
        part.coreInsert(onset, note.Note(pitch, quarterLength=length))
    part.coreElementsChanged()
    return part


def make_score(title: str, parts: list) -> Score:
    """A score holding ``parts`` (from :func:`make_part`) under ``title``."""
    from music21 import metadata, stream

    score = stream.Score()
    score.insert(0, metadata.Metadata(title=title))
    for part in parts:
        score.insert(0, part)
    return score


# ----------------------------------------------------------------------------------------------
# Reading a score in normal form


def part_program(part) -> int:
    """0-based GM program of a part."""
    from music21 import instrument

    inst = part.getElementsByClass(instrument.Instrument).first()
    return int(inst.midiProgram) if inst is not None and inst.midiProgram is not None else 0


def score_tempo(score) -> float:
    """Quarter notes per minute."""
    from music21 import tempo

    mark = score.parts[0].getElementsByClass(tempo.MetronomeMark).first()
    return float(mark.getQuarterBPM()) if mark is not None else DEFAULT_TEMPO_BPM


def score_meter(score) -> tuple[int, int] | None:
    """Time signature ``(N, D)``, None in free metre."""
    from music21 import meter

    ts = score.parts[0].getElementsByClass(meter.TimeSignature).first()
    return (int(ts.numerator), int(ts.denominator)) if ts is not None else None


def score_key(score) -> Key:
    """The key signature as a :class:`~m2ugen.notation.key.Key`."""
    from music21 import key

    found = score.parts[0].getElementsByClass(key.KeySignature).first()
    if found is None:
        return Key()
    return Key(int(found.sharps), getattr(found, "mode", "major") == "minor")


def part_notes(part) -> list[tuple[Fraction, Fraction, int]]:
    """``(onset, length, pitch)`` of a part's notes in quarter notes, by onset then pitch."""
    return sorted((Fraction(n.offset), Fraction(n.quarterLength), n.pitch.midi) for n in part.notes)


def score_seconds(score) -> float:
    """Length in seconds: the end of the last note."""
    end = max((onset + length for part in score.parts for onset, length, _ in part_notes(part)), default=0)
    return float(end) * 60.0 / score_tempo(score)


def score_notes(score) -> list[ScoreNote]:
    """Every note of the score in seconds, sorted by onset, pitch and voice."""
    seconds_per_quarter = 60.0 / score_tempo(score)
    notes = [ScoreNote(float(onset) * seconds_per_quarter, float(onset + length) * seconds_per_quarter, pitch,
                       VELOCITY, part_program(part), index)
             for index, part in enumerate(score.parts) for onset, length, pitch in part_notes(part)]
    return sorted(notes, key=lambda n: (n.onset_s, n.pitch, n.part))


def read_abc(text: str) -> AbcTune:
    """Metre, tempo (None when the tune gives no Q:), key and voices of the first tune of ``text``.

    Raises:
        AbcError: as :func:`parse_abc`.
    """
    score = parse_abc(text)
    given_tempo = any(re.match(r"\s*Q:", line) for line in text.splitlines())
    voices = []
    for part in score.parts:
        onsets: dict[Fraction, list[int]] = {}
        for onset, _, pitch in part_notes(part):
            onsets.setdefault(onset, []).append(pitch)
        pitches = tuple(p for onset in sorted(onsets) for p in sorted(onsets[onset]))
        has_program = _declared_program(text, part.id)
        voices.append(AbcVoice(part.id, part.partName or (program_name(part_program(part)) if has_program else ""),
                               part_program(part) if has_program else None, pitches))
    return AbcTune(score_meter(score), score_tempo(score) if given_tempo else None, score_key(score), tuple(voices))


def _declared_program(text: str, voice_id: str) -> bool:
    """Whether ``%%MIDI program`` applies to ``voice_id`` (given in its voice, or in the header)."""
    current = None
    for line in text.splitlines():
        line = line.strip()
        if voice := re.match(r"\[?V:\s*([^\s\]]+)", line):
            current = voice.group(1)
        elif _MIDI_PROGRAM.match(line) and current in (None, voice_id):
            return True
    return False


# ----------------------------------------------------------------------------------------------
# Writing


def score_to_midi(score) -> pretty_midi.PrettyMIDI:
    """The score as MIDI: one instrument per voice with its program and name, the score's tempo,
    time signature and key."""
    bpm = score_tempo(score)
    midi = pretty_midi.PrettyMIDI(resolution=MIDI_RESOLUTION, initial_tempo=bpm)
    if (signature := score_meter(score)) is not None:
        midi.time_signature_changes.append(pretty_midi.TimeSignature(signature[0], signature[1], 0.0))
    key = score_key(score)
    tonic = ((7 * key.fifths) % 12 + (9 if key.minor else 0)) % 12
    midi.key_signature_changes.append(pretty_midi.KeySignature(tonic + (12 if key.minor else 0), 0.0))
    notes = score_notes(score)
    for index, part in enumerate(score.parts):
        program = part_program(part)
        track = pretty_midi.Instrument(program=program, name=part.partName or program_name(program))
        track.notes = [pretty_midi.Note(n.velocity, n.pitch, n.onset_s, n.offset_s) for n in notes if n.part == index]
        midi.instruments.append(track)
    return midi


def save_midi(score, path: str | Path) -> Path:
    """Write the score as a Standard MIDI File at ``path`` (atomically)."""
    midi = score_to_midi(score)
    return write_atomically(Path(path), lambda tmp: midi.write(str(tmp)), "MIDI")


def _grid(score) -> int:
    """The coarsest ABC unit 1/N (N in 8, 16, 32) on which every onset and length falls."""
    values = {value for part in score.parts for onset, length, _ in part_notes(part) for value in (onset, length)}
    return next((unit for unit in _GRIDS if all((value * unit / 4).denominator == 1 for value in values)), _GRIDS[-1])


def score_to_abc(score, *, title: str | None = None) -> str:
    """The score as ABC text, written by :func:`m2ugen.notation.abc.write_abc` (voices numbered from 1)."""
    bpm = round(score_tempo(score))
    seconds_per_quarter = 60.0 / bpm
    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    for part in score.parts:
        program = part_program(part)
        track = pretty_midi.Instrument(program=program, name=part.partName or program_name(program))
        track.notes = [pretty_midi.Note(VELOCITY, pitch, float(onset) * seconds_per_quarter,
                                        float(onset + length) * seconds_per_quarter)
                       for onset, length, pitch in part_notes(part)]
        midi.instruments.append(track)
    signature = score_meter(score) or (4, 4)
    if title is None:
        title = score.metadata.title if score.metadata is not None and score.metadata.title else "Untitled"
    config = AbcConfig(meter=f"{signature[0]}/{signature[1]}", unit=_grid(score), tempo_bpm=bpm,
                       key=score_key(score).name, title=title.replace("\n", " "))
    return write_abc(midi, config)


# ----------------------------------------------------------------------------------------------
# Finding a score in a model's response

_FENCED = re.compile(r"```[ \t]*(?:abc)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def find_abc(text: str) -> str | None:
    """The ABC tune in a response: a fenced ```` ```abc ```` block holding a ``K:`` line, else the lines from
    the first ``X:`` line to the end of the text or the first blank line after the music; None if none."""
    for block in _FENCED.findall(text):
        if re.search(r"^\s*K:", block, re.MULTILINE):
            return block.strip() + "\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"\s*X:\s*\d", line)), None)
    if start is None:
        return None
    tune: list[str] = []
    for line in lines[start:]:
        if not line.strip() and any(re.match(r"\s*K:", t) for t in tune) and tune[-1].strip() and not \
                _FIELD_LINE.match(tune[-1].strip()):
            break
        tune.append(line)
    abc = "\n".join(tune).strip() + "\n"
    return abc if re.search(r"^\s*K:", abc, re.MULTILINE) else None


def abc_block(abc: str) -> str:
    """ABC text as the fenced block the assistant writes into the conversation."""
    return f"```abc\n{abc.strip()}\n```"

