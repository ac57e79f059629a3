"""Scores: ABC -> music21 -> MIDI -> audio, checked against abc2midi and against the rendered audio."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from m2ugen.decoders import load_decoder
from m2ugen.notation.render import find_soundfont
from m2ugen.notation.score import (AbcError, find_abc, parse_abc, part_notes, read_abc, save_midi, score_notes,
                                   score_seconds, score_tempo, score_to_abc)

needs_abc2midi = pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs the Debian package abcmidi")
needs_soundfont = pytest.mark.skipif(find_soundfont() is None, reason="needs a General MIDI sound font")

# Two voices, two programs: key signature and bar accidentals, a tie across a bar line, a chord with a
# tied note, a triplet, broken rhythm, a rest, decorations, a chord symbol and a grace note (not played).
DUET = """X:1
T:Duet
M:3/4
L:1/8
Q:1/4=100
K:G
V:1 name="Flute"
%%MIDI program 73
"G"d2 !trill!B>c d^c | =c4- c2 | (3BAG [DF-A]2 [FB]2 | {a}g6 |]
V:2 name="Cello" clef=bass
%%MIDI program 42
G,,6 | z2 A,,2 B,,2 | C,2 D,2 D,,2 | G,,6 |]
"""

# What DUET means, by hand: (onset, length) in eighth notes and the MIDI pitch, per voice.
DUET_NOTES = {
    0: [(0, 2, 74), (2, 1.5, 71), (3.5, 0.5, 72), (4, 1, 74), (5, 1, 73), (6, 6, 72), (12, 2 / 3, 71),
        (12 + 2 / 3, 2 / 3, 69), (12 + 4 / 3, 2 / 3, 67), (14, 2, 62), (14, 4, 66), (14, 2, 69), (16, 2, 71),
        (18, 6, 79)],
    1: [(0, 6, 43), (8, 2, 45), (10, 2, 47), (12, 2, 48), (14, 2, 50), (16, 2, 38), (18, 6, 43)],
}


def _notes_of(midi: pretty_midi.PrettyMIDI) -> list[list[tuple[float, float, int]]]:
    return [sorted((n.start, n.end, n.pitch) for n in inst.notes) for inst in midi.instruments]


def test_the_score_is_what_the_abc_says() -> None:
    score = parse_abc(DUET)
    assert [part.partName for part in score.parts] == ["Flute", "Cello"]
    assert score_tempo(score) == 100
    eighth = 60 / 100 / 2
    for index, part in enumerate(score.parts):
        got = [(float(onset) * 2, float(length) * 2, pitch) for onset, length, pitch in part_notes(part)]
        expected = sorted(DUET_NOTES[index])
        assert [g[2] for g in got] == [e[2] for e in expected]
        np.testing.assert_allclose([g[:2] for g in got], [e[:2] for e in expected], atol=1e-9)
    assert score_seconds(score) == pytest.approx(24 * eighth)


@needs_abc2midi
def test_midi_of_two_voices_equals_the_score_and_abc2midi(tmp_path: Path) -> None:
    score = parse_abc(DUET)
    ours = pretty_midi.PrettyMIDI(str(save_midi(score, tmp_path / "ours.mid")))
    assert [inst.program for inst in ours.instruments] == [73, 42]
    for index, voice in enumerate(_notes_of(ours)):  # exactly the score's notes, up to float rounding
        expected = sorted((n.onset_s, n.offset_s, n.pitch) for n in score_notes(score) if n.part == index)
        assert [n[2] for n in voice] == [n[2] for n in expected]
        np.testing.assert_allclose([n[:2] for n in voice], [n[:2] for n in expected], atol=1e-6)
    # abc2midi, the reference ABC player, reads the same tune into the same notes, programs and times
    # (given without the chord symbol, trill and grace note, which it would play and the score does not,
    # and with its chord notes struck together; it delays every note by about a millisecond).
    reference_abc = DUET.replace('"G"', "").replace("{a}", "").replace("!trill!", "")
    (tmp_path / "duet.abc").write_text(reference_abc.replace("K:G", "%%MIDI chordattack 0\nK:G"))
    subprocess.run(["abc2midi", str(tmp_path / "duet.abc"), "-o", str(tmp_path / "ref.mid"), "-silent"],
                   check=True, capture_output=True)
    reference = pretty_midi.PrettyMIDI(str(tmp_path / "ref.mid"))
    played = [inst for inst in reference.instruments if inst.notes]
    assert [inst.program for inst in played] == [73, 42]
    for ours_inst, ref_inst in zip(ours.instruments, played):
        ours_voice, ref_voice = ([(n.start, n.pitch, n.end) for n in sorted(inst.notes, key=lambda n: (n.start, n.pitch))]
                                 for inst in (ours_inst, ref_inst))
        assert [n[1] for n in ours_voice] == [n[1] for n in ref_voice]
        np.testing.assert_allclose([(n[0], n[2]) for n in ours_voice], [(n[0], n[2]) for n in ref_voice], atol=0.002)


@needs_soundfont
def test_rendered_onsets_agree_with_the_midi_within_50_ms(tmp_path: Path) -> None:
    import librosa
    import mir_eval

    abc = """X:1
M:4/4
L:1/8
Q:1/4=100
K:C
V:1
%%MIDI program 0
c2 e2 g2 c'2 | z g e c G2 z2 | A2 c2 e2 a2 |
V:2
%%MIDI program 24
C,4 z2 G,,2 | z4 E,2 C,2 | z2 A,,4 z2 |
"""
    decoder = load_decoder("score", "tiny")
    audio = decoder.render(abc, midi_path=tmp_path / "t.mid")
    midi = pretty_midi.PrettyMIDI(str(tmp_path / "t.mid"))
    reference = np.unique(np.round([n.start for inst in midi.instruments for n in inst.notes], 4))
    mono = audio.mono()
    assert audio.duration == pytest.approx(midi.get_end_time() + 1.0, abs=0.05)  # the score plus a release tail
    lead = 0.5  # silence before the music, so that the first onset is a rise of the onset envelope too
    padded = np.concatenate([np.zeros(int(lead * audio.sample_rate), dtype=np.float32), mono])
    detected = librosa.onset.onset_detect(y=padded, sr=audio.sample_rate, hop_length=128, units="time") - lead
    f_measure, precision, recall = mir_eval.onset.f_measure(reference, detected, window=0.05)
    assert recall == 1.0 and precision >= 0.9, (reference.tolist(), detected.tolist())
    # every score onset has a detected onset within 50 ms
    assert max(np.abs(detected[:, None] - reference[None, :]).min(axis=0)) < 0.05


@pytest.mark.parametrize(("text", "match"), [
    ("", "empty"),
    ("just some words", "line 1: expected a header field"),
    ("X:1\nM:3/4\nK:C\nCDE|\n", None),  # valid: the control
    ("X:1\nM:4/4\nL:1/8\nK:C\nCDEF GABc |\nthis is not music\n", "line 6: column 1: 't' is not ABC music"),
    ("X:1\nM:4/x\nK:C\nC|\n", "line 2: '4/x' is not a metre"),
    ("X:1\nK:Hm\nC|\n", "line 2: 'Hm' is not a key"),
    ("X:1\nL:1/8\nK:C\nC/0 D|\n", "line 4: column 3"),
    ("X:1\nK:C\n[CEG2 D|\n", "line 3: column 1"),
    ("X:1\nK:C\nC D {ab E|\n", "line 3: grace notes"),
    ("X:1\nK:C\nCDE\nQ:1/4=90\nCDE\n", "line 4: tempo changes"),
    ("X:1\nK:C\nCDE & GAB|\n", "line 3: voice overlay"),
    ("X:1\nM:4/4\nL:1/8\nCDEF|\n", "line 4: expected a header field .* ends with K:"),
    ("X:1\nT:Only a title\n", "no K: line"),
    ("X:1\nK:C\nV:1\n%%MIDI program 200\nC|\n", "line 4: MIDI program '200'"),
    ("X:1\nK:C\nz4 | z4 |\n", "no notes"),
    ("X:1\nQ:1/4=2\nK:C\nC|\n", "tempo 2 quarter notes per minute is outside"),
    ("X:1\nL:1/4\nQ:1/4=20\nK:C\n" + "C8|" * 200 + "\n", "at most 600 s"),
])
def test_invalid_abc_is_one_clear_error(text: str, match: str | None) -> None:
    if match is None:
        assert parse_abc(text).parts
        return
    with pytest.raises(AbcError, match=match) as caught:
        parse_abc(text)
    assert "\n" not in str(caught.value)


def test_voices_may_interleave_and_use_any_id() -> None:
    abc = """X:1
M:2/4
L:1/8
K:F
V:T1 name="Tenor"
%%MIDI program 52
B2 c2 | d4 |
V:B1
A,4 | B,4 |
V:T1
c4 | f4 |]
[V:B1] F,4 | F,,4 |]
"""
    tune = read_abc(abc)
    assert [(v.voice_id, v.name, v.program) for v in tune.voices] == [("T1", "Tenor", 52), ("B1", "", None)]
    assert tune.voices[0].pitches == (70, 72, 74, 72, 77) and tune.voices[1].pitches == (57, 58, 53, 41)
    assert tune.meter == (2, 4) and tune.key.name == "F" and tune.tempo_bpm is None


def test_repeats_are_played_out() -> None:
    score = parse_abc("X:1\nM:4/4\nL:1/8\nK:C\n|: CDEF GABc |1 d8 :|2 e8 |]\n")
    assert [p for _, _, p in part_notes(score.parts[0])] == [60, 62, 64, 65, 67, 69, 71, 72, 74,
                                                           60, 62, 64, 65, 67, 69, 71, 72, 76]


def test_backticks_inside_a_beam_are_only_spacing() -> None:
    spaced = parse_abc("X:1\nM:6/8\nL:1/8\nK:D\nd`e`f g`f`e|d3 A3|]\n")
    plain = parse_abc("X:1\nM:6/8\nL:1/8\nK:D\ndef gfe|d3 A3|]\n")
    assert part_notes(spaced.parts[0]) == part_notes(plain.parts[0])


def test_written_abc_reads_back_as_the_same_score() -> None:
    score = parse_abc(DUET.replace("(3BAG", "BA"))
    again = parse_abc(score_to_abc(score))
    assert [part_notes(p) for p in again.parts] == [part_notes(p) for p in score.parts]
    assert [p.partName for p in again.parts] == ["Flute", "Cello"] and score_tempo(again) == 100
    # A triplet is written on the finest grid, 1/32 notes: each note moves by less than half a step.
    with_triplet = parse_abc(score_to_abc(parse_abc(DUET)))
    for written, original in zip(part_notes(with_triplet.parts[0]), part_notes(parse_abc(DUET).parts[0])):
        assert written[2] == original[2] and abs(written[0] - original[0]) <= Fraction(1, 16)


def test_find_abc_in_a_reply() -> None:
    fenced = "Here is a waltz:\n```abc\nX:1\nM:3/4\nK:C\nC2 E2 G2|\n```\nEnjoy!"
    assert find_abc(fenced) == "X:1\nM:3/4\nK:C\nC2 E2 G2|\n"
    bare = "Sure.\nX:1\nT:Tune\nK:D\nDFA d2|\n\nI hope you like it."
    assert find_abc(bare) == "X:1\nT:Tune\nK:D\nDFA d2|\n"
    assert find_abc("No score here, X marks the spot.") is None


def test_voices_declared_in_the_header_keep_their_programs() -> None:
    abc = ('X:1\nM:4/4\nL:1/8\nV:1 name="Violin"\n%%MIDI program 40\nV:2 name="Cello"\n%%MIDI program 42\nK:C\n'
           "[V:1] cdef gabc' |]\n[V:2] C,4 G,,4 |]\n")
    tune = read_abc(abc)
    assert [(v.name, v.program, v.pitches) for v in tune.voices] == [
        ("Violin", 40, (72, 74, 76, 77, 79, 81, 83, 84)), ("Cello", 42, (48, 43))]


def test_the_score_decoder_keeps_its_settings(tmp_path: Path) -> None:
    from m2ugen.decoders.score import ScoreDecoder, ScoreSettings
    from m2ugen.errors import ConfigError

    ScoreDecoder(ScoreSettings(sample_rate=16000, gain=0.3)).save_pretrained(tmp_path / "score")
    loaded = load_decoder("score", tmp_path / "score", device="cpu")
    assert (loaded.sample_rate, loaded.settings.gain, loaded.kind) == (16000, 0.3, "score")
    with pytest.raises(ConfigError, match="plays ABC text, not embeddings"):
        loaded.generate(None, 1.0)
    with pytest.raises(ConfigError, match="sample_rate 100"):
        ScoreSettings(sample_rate=100)
