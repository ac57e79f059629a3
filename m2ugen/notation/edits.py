"""Exact score edits, and the one-line instructions a model writes to ask for them.

An edit is written as a tag on its own line (several tags apply in order)::

    <edit transpose=+5>              semitones (-24..24), or an interval name: P4, -m3, M9
    <edit key=Gm>                    to the key with that tonic nearest to the score's (up to 5
                                     semitones up or 6 down); a change of mode moves scale degrees
                                     3, 6 and 7 by a semitone
    <edit tempo=90>                  quarter notes per minute (10..400); tempo=x0.8 scales the
                                     tempo (rounded to a whole number of quarter notes per minute)
    <edit instrument=cello voice=2>  a GM program by name or 0-based number; every voice without voice=
    <edit rhythm=2>                  every onset and length times 2, 4, 1/2 or 1/4 (augmentation,
                                     diminution); the metre stays, so the piece has more or fewer bars
    <edit remove=2>                  drop a voice
    <edit solo=1>                    keep only this voice

A voice is named by its ABC id, its 1-based position or its name. The data builder and the assistant
both call :func:`apply_edits`, so the same edit gives the identical score on both paths. Scores are
in the normal form of :mod:`m2ugen.notation.score`; edits return new scores and leave theirs as they were.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import pretty_midi

from m2ugen.errors import M2UGenError
from m2ugen.notation.abc import parse_key
from m2ugen.notation.instruments import SYNONYMS, program_name
from m2ugen.notation.key import Key
from m2ugen.notation.score import make_part, make_score, part_notes, part_program, score_key, score_meter, score_tempo

if TYPE_CHECKING:
    from music21.stream import Score

OPS: tuple[str, ...] = ("transpose", "key", "tempo", "instrument", "rhythm", "remove", "solo")
RHYTHM_FACTORS: tuple[Fraction, ...] = (Fraction(1, 4), Fraction(1, 2), Fraction(2), Fraction(4))
_TAG = re.compile(r"<edit\b([^<>]*)>", re.IGNORECASE)
_MAJOR_TO_MINOR = {4: 3, 9: 8, 11: 10}  # scale degree (semitones above the tonic) -> its minor form


class EditError(M2UGenError):
    """An edit that is malformed or cannot be applied to the score."""


@dataclass(frozen=True)
class Edit:
    """One edit: ``op`` (one of :data:`OPS`), its canonical ``value`` and, for instrument, an optional voice.

    Build it with :func:`make_edit` or :func:`parse_edits`; ``str(edit)`` is its tag.
    """

    op: str
    value: str
    voice: str | None = None

    def __str__(self) -> str:
        voice = f" voice={self.voice}" if self.voice is not None else ""
        return f"<edit {self.op}={self.value}{voice}>"


def _semitones(value: str) -> int:
    text = value.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        semitones = int(text)
    else:
        from music21 import interval
        from music21.exceptions21 import Music21Exception

        sign = -1 if text.startswith("-") else 1
        try:
            semitones = sign * interval.Interval(text.lstrip("+-")).semitones
        except (Music21Exception, ValueError, IndexError, KeyError) as err:
            raise EditError(f"transpose={value}: not a number of semitones or an interval such as P4 or -m3") from err
    if not -24 <= semitones <= 24:
        raise EditError(f"transpose={value}: at most two octaves (-24..24 semitones)")
    return semitones


def _program(value: str) -> int:
    text = value.strip().lower().replace("_", " ")
    if text.isdigit() and 0 <= int(text) <= 127:
        return int(text)
    if text in SYNONYMS:
        return SYNONYMS[text]
    try:
        return int(pretty_midi.instrument_name_to_program(text.title()))
    except ValueError:
        raise EditError(f"instrument={value}: not a General MIDI program (0-127) or instrument name") from None


def make_edit(op: str, value: str | int | Fraction, voice: str | int | None = None) -> Edit:
    """A checked :class:`Edit` with its value in canonical form (``transpose=P4`` -> ``+5``).

    Raises:
        EditError: unknown op or invalid value.
    """
    value = str(value).strip()
    if op not in OPS:
        raise EditError(f"unknown edit {op!r}; the edits are {', '.join(OPS)}")
    if voice is not None and op != "instrument":
        raise EditError(f"voice= goes with instrument=; {op} names its voice itself ({op}=VOICE)")
    if op == "transpose":
        value = f"{_semitones(value):+d}"
    elif op == "key":
        key = parse_key(value)
        if key is None or not value:
            raise EditError(f"key={value}: not a key such as C, Eb, F#m")
        value = key.name
    elif op == "tempo":
        if scale := re.fullmatch(r"[x*](\d+(?:\.\d+)?)", value):
            if not 0.1 <= float(scale.group(1)) <= 10:
                raise EditError(f"tempo={value}: scale the tempo by 0.1 to 10")
            value = f"x{float(scale.group(1)):g}"
        elif not re.fullmatch(r"\d+", value) or not 10 <= int(value) <= 400:
            raise EditError(f"tempo={value}: a whole number of quarter notes per minute (10..400), or x<scale>")
        else:
            value = str(int(value))
    elif op == "instrument":
        value = str(_program(value))
    elif op == "rhythm":
        try:
            factor = Fraction(value)
        except (ValueError, ZeroDivisionError):
            factor = None
        if factor not in RHYTHM_FACTORS:
            raise EditError(f"rhythm={value}: one of {', '.join(map(str, RHYTHM_FACTORS))}")
        value = str(factor)
    elif not value:
        raise EditError(f"{op}= needs a voice")
    return Edit(op, value, None if voice is None else str(voice))


def parse_edits(text: str) -> list[Edit]:
    """Every ``<edit ...>`` tag of ``text``, in order (none: an empty list).

    Raises:
        EditError: a tag is malformed; the message quotes it.
    """
    edits = []
    for match in _TAG.finditer(text):
        fields = {}
        for word in match.group(1).split():
            name, sep, value = word.partition("=")
            if not sep or not value or name.lower() in fields:
                raise EditError(f"{match.group()}: write one OP=VALUE per edit, e.g. <edit transpose=+5>")
            fields[name.lower()] = value
        voice = fields.pop("voice", None)
        if len(fields) != 1:
            raise EditError(f"{match.group()}: write one OP=VALUE per edit, e.g. <edit transpose=+5>")
        (op, value), = fields.items()
        try:
            edits.append(make_edit(op, value, voice))
        except EditError as err:
            raise EditError(f"{match.group()}: {err}") from None
    return edits


def strip_edits(text: str) -> str:
    """``text`` without its edit tags."""
    return _TAG.sub("", text).strip()


# ----------------------------------------------------------------------------------------------
# Applying


def _voice_index(score: Score, voice: str) -> int:
    parts = list(score.parts)
    for index, part in enumerate(parts):
        if part.id == voice or (part.partName or "").lower() == voice.lower():
            return index
    if voice.isdigit() and 1 <= int(voice) <= len(parts):
        return int(voice) - 1
    names = ", ".join(f"{part.id} ({part.partName})" if part.partName else str(part.id) for part in parts)
    raise EditError(f"the score has no voice {voice!r}; its voices are {names}")


def _tonic(key: Key) -> int:
    return ((7 * key.fifths) % 12 + (9 if key.minor else 0)) % 12


def _key_on(tonic: int, minor: bool) -> Key:
    """The key with the fewest accidentals (F# rather than Gb) on ``tonic``."""
    fifths = (7 * ((tonic + 3) % 12 if minor else tonic)) % 12
    return Key(fifths - 12 if fifths > 6 else fifths, minor)


def _rebuild(score: Score, *, notes=None, programs: dict[int, int] | None = None, bpm: float | None = None,
             key: Key | None = None, keep: Sequence[int] | None = None) -> Score:
    """A copy of ``score`` with some of: new notes per voice (``notes(index, old) -> new``), programs by
    voice index, tempo, key, and only the voices ``keep``."""
    parts = list(score.parts)
    signature, tempo, key = score_meter(score), bpm or score_tempo(score), key or score_key(score)
    rebuilt = []
    for index, part in enumerate(parts):
        if keep is not None and index not in keep:
            continue
        program, name = part_program(part), part.partName or ""
        if programs and index in programs:
            program, name = programs[index], program_name(programs[index])
        old = part_notes(part)
        rebuilt.append(make_part(part.id, name, program, tempo, signature, key, notes(index, old) if notes else old))
    title = score.metadata.title if score.metadata is not None and score.metadata.title else "Untitled"
    return make_score(title, rebuilt)


def _shift(score: Score, semitones: int, key: Key, degree_map: dict[int, int] | None = None) -> Score:
    tonic = _tonic(key)

    def move(_: int, old):
        new = []
        for onset, length, pitch in old:
            moved = pitch + semitones
            if degree_map:
                degree = (moved - tonic) % 12
                moved += degree_map.get(degree, degree) - degree
            if not 0 <= moved <= 127:
                raise EditError(f"the edit moves pitch {pitch} to {moved}, outside the MIDI range 0..127")
            new.append((onset, length, moved))
        return new

    return _rebuild(score, notes=move, key=key)


def _key_shift(key: Key, target: Key) -> int:
    """Semitones from ``key``'s tonic to ``target``'s, in -6..5."""
    semitones = (_tonic(target) - _tonic(key)) % 12
    return semitones - 12 if semitones >= 6 else semitones


def apply_edit(score: Score, edit: Edit) -> Score:
    """``score`` with ``edit`` applied: a new score.

    Raises:
        EditError: the edit names a missing voice, would remove the last voice, moves a pitch out of
            the MIDI range, or makes a note shorter than a 1/32 note.
    """
    op, value = edit.op, edit.value
    if op == "transpose":
        semitones = int(value)
        key = score_key(score)
        new_key = key if semitones % 12 == 0 else _key_on((_tonic(key) + semitones) % 12, key.minor)
        return _shift(score, semitones, new_key)
    if op == "key":
        key, target = score_key(score), parse_key(value)
        semitones = _key_shift(key, target)
        degree_map = None
        if key.minor != target.minor:
            degree_map = ({v: k for k, v in _MAJOR_TO_MINOR.items()} if key.minor else _MAJOR_TO_MINOR)
        return _shift(score, semitones, target, degree_map)
    if op == "tempo":
        bpm = round(score_tempo(score) * float(value[1:])) if value.startswith("x") else int(value)
        if not 10 <= bpm <= 400:
            raise EditError(f"tempo={value} gives {bpm} quarter notes per minute, outside 10..400")
        return _rebuild(score, bpm=float(bpm))
    if op == "instrument":
        indices = [_voice_index(score, edit.voice)] if edit.voice is not None else range(len(score.parts))
        return _rebuild(score, programs={index: int(value) for index in indices})
    if op == "rhythm":
        factor = Fraction(value)

        def scale(_: int, old):
            new = [(onset * factor, length * factor, pitch) for onset, length, pitch in old]
            if any((length * 8).denominator == 1 and (length * factor * 8).denominator != 1 for _, length, _ in old):
                raise EditError(f"rhythm={value} would make notes shorter than a 1/32 note")
            return new

        return _rebuild(score, notes=scale)
    index = _voice_index(score, value)
    if op == "remove":
        if len(score.parts) == 1:
            raise EditError("remove: the score has only this voice")
        return _rebuild(score, keep=[i for i in range(len(score.parts)) if i != index])
    return _rebuild(score, keep=[index])  # solo


def apply_edits(score: Score, edits: Sequence[Edit]) -> Score:
    """The edits applied in order (``score`` itself when there are none)."""
    for edit in edits:
        score = apply_edit(score, edit)
    return score


def inverse_edits(edit: Edit, score: Score) -> list[Edit]:
    """Edits that undo ``edit`` applied to ``score`` (for a change of mode, up to notes outside the scale).

    Raises:
        EditError: for remove and solo, which cannot be undone.
    """
    if edit.op == "transpose":
        return [make_edit("transpose", -int(edit.value))]
    if edit.op == "key":
        key, target = score_key(score), parse_key(edit.value)
        undo = [make_edit("key", key.name)]
        octave = -(_key_shift(key, target) + _key_shift(target, key))  # a tritone is -6 both ways
        return undo + [make_edit("transpose", octave)] if octave else undo
    if edit.op == "tempo":
        return [make_edit("tempo", round(score_tempo(score)))]
    if edit.op == "rhythm":
        return [make_edit("rhythm", 1 / Fraction(edit.value))]
    if edit.op == "instrument":
        parts = list(score.parts)
        indices = [_voice_index(score, edit.voice)] if edit.voice is not None else range(len(parts))
        return [make_edit("instrument", part_program(parts[i]), parts[i].id) for i in indices]
    raise EditError(f"{edit.op} cannot be undone")
