"""Exact score edits: each changes exactly what it names, and undoes exactly."""

from __future__ import annotations

from fractions import Fraction

import pytest

from m2ugen.notation.edits import EditError, apply_edit, apply_edits, inverse_edits, make_edit, parse_edits
from m2ugen.notation.score import (parse_abc, part_notes, part_program, score_key, score_meter, score_tempo,
                                   score_to_abc)

TRIO = """X:1
T:Trio
M:6/8
L:1/8
Q:3/8=60
K:Eb
V:1 name="Violin"
%%MIDI program 40
B2 G E2 G | =A3- A>B c | [Bd]3 e2 f | g6 |]
V:2 name="Viola"
%%MIDI program 41
G3 E3 | F3 _G3 | F3 A3 | B6 |]
V:3 name="Cello"
%%MIDI program 42
E,6 | C,3 F,,3 | B,,6 | E,,6 |]
"""


@pytest.fixture(scope="module")
def trio():
    return parse_abc(TRIO)


def _rhythm(score):
    return [[(onset, length) for onset, length, _ in part_notes(part)] for part in score.parts]


def _pitches(score):
    return [[pitch for _, _, pitch in part_notes(part)] for part in score.parts]


def _state(score):
    """Everything a score holds: per voice id, name, program and notes; tempo, metre, key."""
    return ([(p.id, p.partName, part_program(p), part_notes(p)) for p in score.parts],
            score_tempo(score), score_meter(score), score_key(score))


@pytest.mark.parametrize("semitones", range(-12, 13))
def test_transposition_keeps_rhythm_and_shifts_every_pitch(trio, semitones: int) -> None:
    moved = apply_edit(trio, make_edit("transpose", semitones))
    assert _rhythm(moved) == _rhythm(trio)
    assert _pitches(moved) == [[p + semitones for p in voice] for voice in _pitches(trio)]
    assert [part_program(p) for p in moved.parts] == [40, 41, 42] and score_tempo(moved) == 90
    # The written score says the same: its key signature and accidentals spell the moved pitches.
    assert _state(parse_abc(score_to_abc(moved)))[0] == _state(moved)[0]


def test_interval_names_are_semitones(trio) -> None:
    assert parse_edits("<edit transpose=P4>") == [make_edit("transpose", 5)]
    assert parse_edits("<edit transpose=-m3>") == [make_edit("transpose", "-3")]
    assert _pitches(apply_edits(trio, parse_edits("<edit transpose=P8>"))) == [[p + 12 for p in v] for v in _pitches(trio)]


def test_tempo_edit_changes_only_the_tempo(trio) -> None:
    before = _state(trio)
    for tag, bpm in (("<edit tempo=120>", 120), ("<edit tempo=x0.5>", 45)):
        after = _state(apply_edits(trio, parse_edits(tag)))
        assert after[1] == bpm
        assert (after[0], after[2], after[3]) == (before[0], before[2], before[3])


def test_instrument_edit_changes_only_the_named_voice(trio) -> None:
    before = _state(trio)
    after = _state(apply_edits(trio, parse_edits("<edit instrument=clarinet voice=Viola>")))
    assert [(v[1], v[2]) for v in after[0]] == [("Violin", 40), ("Clarinet", 71), ("Cello", 42)]
    assert [v[3] for v in after[0]] == [v[3] for v in before[0]] and after[1:] == before[1:]
    every = _state(apply_edit(trio, make_edit("instrument", "piano")))
    assert [v[2] for v in every[0]] == [0, 0, 0] and [v[3] for v in every[0]] == [v[3] for v in before[0]]


def test_key_edit_moves_to_the_nearest_tonic_and_maps_the_mode(trio) -> None:
    same_mode = apply_edits(trio, parse_edits("<edit key=G>"))  # Eb -> G: up 4 semitones (nearer than down 8)
    assert _pitches(same_mode) == [[p + 4 for p in v] for v in _pitches(trio)] and score_key(same_mode).name == "G"
    minor = apply_edits(trio, parse_edits("<edit key=Ebm>"))  # parallel minor: degrees 3, 6, 7 lowered
    lowered = {7: 6, 0: 11, 2: 1}  # G -> Gb, C -> Cb (B), D -> Db (degree 3, 6, 7 of Eb major)
    expected = [[p - 1 if p % 12 in lowered else p for p in v] for v in _pitches(trio)]
    assert _pitches(minor) == expected and score_key(minor).name == "Ebm" and _rhythm(minor) == _rhythm(trio)


def test_rhythm_augmentation_and_diminution_keep_the_metre(trio) -> None:
    slow = apply_edits(trio, parse_edits("<edit rhythm=2>"))
    assert _rhythm(slow) == [[(o * 2, length * 2) for o, length in v] for v in _rhythm(trio)]
    assert _pitches(slow) == _pitches(trio) and score_meter(slow) == (6, 8) and score_tempo(slow) == 90
    assert "M:6/8" in score_to_abc(slow)
    fast = apply_edit(trio, make_edit("rhythm", Fraction(1, 2)))
    assert _rhythm(fast) == [[(o / 2, length / 2) for o, length in v] for v in _rhythm(trio)]


def test_voice_removal_and_solo(trio) -> None:
    without = apply_edits(trio, parse_edits("<edit remove=2>"))
    assert [p.partName for p in without.parts] == ["Violin", "Cello"]
    assert _state(without)[0] == [_state(trio)[0][0], _state(trio)[0][2]]
    solo = apply_edits(trio, parse_edits("<edit solo=Cello>"))
    assert _state(solo)[0] == [_state(trio)[0][2]]
    with pytest.raises(EditError, match="only this voice"):
        apply_edits(solo, parse_edits("<edit remove=1>"))


@pytest.mark.parametrize("tag", ["<edit transpose=+7>", "<edit transpose=-12>", "<edit key=C>", "<edit key=A>",
                                 "<edit tempo=133>", "<edit tempo=x1.5>", "<edit instrument=flute voice=1>",
                                 "<edit instrument=73>", "<edit rhythm=2>", "<edit rhythm=1/2>"])
def test_edit_then_inverse_is_the_original(trio, tag: str) -> None:
    (edit,) = parse_edits(tag)
    edited = apply_edit(trio, edit)
    assert _state(edited) != _state(trio)
    restored = apply_edits(edited, inverse_edits(edit, trio))
    assert _state(restored) == _state(trio)
    assert score_to_abc(restored) == score_to_abc(trio)


def test_edits_leave_their_input_unchanged(trio) -> None:
    before = score_to_abc(trio)
    apply_edits(trio, parse_edits("<edit transpose=+3>\n<edit tempo=50>\n<edit remove=1>"))
    assert score_to_abc(trio) == before


@pytest.mark.parametrize(("text", "match"), [
    ("<edit transpose=+30>", "two octaves"),
    ("<edit transpose=Z5>", "not a number of semitones or an interval"),
    ("<edit tempo=fast>", "quarter notes per minute"),
    ("<edit tempo=1000>", "10..400"),
    ("<edit instrument=kazooka>", "not a General MIDI program"),
    ("<edit rhythm=3>", "one of 1/4, 1/2, 2, 4"),
    ("<edit key=H>", "not a key"),
    ("<edit louder=yes>", "unknown edit 'louder'"),
    ("<edit transpose=+2 tempo=90>", "one OP=VALUE per edit"),
    ("<edit transpose>", "one OP=VALUE per edit"),
    ("<edit tempo=90 voice=1>", "voice= goes with instrument="),
])
def test_malformed_edits_are_one_clear_error(text: str, match: str) -> None:
    with pytest.raises(EditError, match=match):
        parse_edits(text)


def test_edits_that_do_not_fit_the_score(trio) -> None:
    with pytest.raises(EditError, match="no voice 'Flute'; its voices are 1 \\(Violin\\)"):
        apply_edits(trio, parse_edits("<edit solo=Flute>"))
    high = parse_abc("X:1\nL:1/4\nK:C\nc''''' |]\n")
    with pytest.raises(EditError, match="outside the MIDI range"):
        apply_edits(high, parse_edits("<edit transpose=+12>"))
    with pytest.raises(EditError, match="shorter than a 1/32 note"):
        apply_edits(parse_abc("X:1\nL:1/32\nK:C\nCDEF|\n"), parse_edits("<edit rhythm=1/2>"))
    with pytest.raises(EditError, match="cannot be undone"):
        inverse_edits(make_edit("remove", 1), trio)


def test_a_tag_prints_as_it_parses() -> None:
    edits = parse_edits("Sure! <edit transpose=P5> then <edit instrument=Cello voice=2> <edit tempo=x0.80>")
    assert [str(e) for e in edits] == ["<edit transpose=+7>", "<edit instrument=42 voice=2>", "<edit tempo=x0.8>"]
    assert parse_edits(" ".join(map(str, edits))) == edits
