"""Note-level scores and the ABC comparison score; ABC writing and reading (abc2midi as the referee)."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from m2ugen.metrics.transcription import (
    abc_score, instrument_similarity, levenshtein, meter_similarity, note_scores, tempo_similarity)
from m2ugen.notation.abc import AbcConfig, QuantizedNote, quantize_notes, write_abc
from m2ugen.notation.score import AbcVoice, read_abc
from transcription_utils import needs_abc2midi

TUNE = """X:1
T:two voices
M:3/4
L:1/8
Q:1/4=96
K:D
V:1 name="Violin"
%%MIDI program 40
d2 fe dc | [DF]2 ^c- c =c | B,4 z2 |]
V:2 name="Cello"
%%MIDI program 42
D,6 | A,,6- | A,,6 |]
"""


def test_read_abc_applies_key_accidentals_ties_and_chords() -> None:
    tune = read_abc(TUNE)
    assert tune.meter == (3, 4) and tune.tempo_bpm == 96 and tune.key.name == "D"
    violin, cello = tune.voices
    # K:D sharpens F and C; ^c then =c in the same bar; c- ties into c (one onset); [DF] is a chord.
    assert violin.pitches == (74, 78, 76, 74, 73, 62, 66, 73, 72, 59)
    assert (violin.name, violin.program) == ("Violin", 40)
    assert cello.pitches == (50, 45) and cello.program == 42


@pytest.mark.parametrize(("field", "bpm"), [("Q:1/4=120", 120), ("Q:3/8=40", 60), ('Q:"Allegro" 1/2=60', 120), ("Q:100", 50),
                                          ("Q: 1/4 = 144", 144), ("Q:1/8 3/8=60", 120)])
def test_tempo_forms(field: str, bpm: float) -> None:
    assert read_abc(f"X:1\nM:6/8\nL:1/8\n{field}\nK:C\nC|\n").tempo_bpm == pytest.approx(bpm)


def test_levenshtein_matches_the_textbook_recursion() -> None:
    def slow(a, b):
        if not a or not b:
            return len(a) + len(b)
        return min(slow(a[1:], b) + 1, slow(a, b[1:]) + 1, slow(a[1:], b[1:]) + (a[0] != b[0]))

    rng = np.random.default_rng(0)
    for _ in range(60):
        a, b = (tuple(rng.integers(0, 3, rng.integers(0, 6))) for _ in range(2))
        assert levenshtein(a, b) == slow(a, b)


def test_note_scores_count_onsets_and_offsets() -> None:
    reference = [(0.0, 0.5, 60), (0.5, 1.0, 62), (1.0, 1.5, 64), (1.5, 3.0, 65)]
    estimate = [(0.02, 0.5, 60), (0.5, 1.0, 62), (1.0, 1.5, 63), (1.5, 2.0, 65)]  # wrong pitch; short last
    scores = note_scores(reference, estimate)
    assert (scores.precision, scores.recall, scores.f1) == (0.75, 0.75, 0.75)
    assert scores.f1_with_offsets == pytest.approx(0.5)
    assert note_scores([], []).f1 == 1.0 and note_scores(reference, []).f1 == 0.0


def test_abc_score_is_one_for_identical_tunes_and_for_reordered_voices() -> None:
    assert abc_score(TUNE, TUNE).total == pytest.approx(1.0)
    head, violin, cello = TUNE.split("V:")
    assert abc_score(head + "V:" + cello + "V:" + violin, TUNE).total == pytest.approx(1.0)
    one_voice = abc_score(head + "V:" + violin, TUNE)
    assert one_voice.pitch == pytest.approx(0.5) and one_voice.total < 1.0


def test_abc_score_drops_monotonically_with_tempo_error() -> None:
    totals = [abc_score(TUNE.replace("Q:1/4=96", f"Q:1/4={96 + error}"), TUNE).total for error in range(0, 41, 2)]
    assert totals[0] == pytest.approx(1.0)
    assert all(a > b for a, b in itertools.pairwise(totals[:16]))  # strictly down until the tempo part is 0
    assert totals[-1] == pytest.approx(0.85)  # tempo part capped at 0: the other parts still count
    assert tempo_similarity(100, 110) == pytest.approx(0.8) and tempo_similarity(100, 120) == pytest.approx(0.4)


def test_meter_and_instrument_parts() -> None:
    assert meter_similarity((3, 4), (3, 4)) == 1.0
    assert meter_similarity((2, 4), (4, 8)) == 0.5 and meter_similarity((3, 4), (4, 4)) == 0.0

    def voice(name: str, program: int | None) -> AbcVoice:
        return AbcVoice("1", name, program, ())

    assert instrument_similarity(voice("Violin", 40), voice("Violin", 40)) == 1.0
    assert instrument_similarity(voice("Viola", 41), voice("Violin", 40)) == 0.5  # same GM family
    assert 0 < instrument_similarity(voice("Flute", 73), voice("Violin", 40)) < 0.5
    assert instrument_similarity(voice("Fiddle", None), voice("fiddle", None)) == 1.0


def _score_with_everything() -> pretty_midi.PrettyMIDI:
    """Two instruments; chords, a note tied over a bar line, accidentals outside the key, rests."""
    beat = 60.0 / 90  # 90 BPM, sixteenth grid = beat / 4
    g = beat / 4
    piano = pretty_midi.Instrument(program=0)
    for pitch, on, off in [(60, 0, 4), (64, 0, 8), (67, 4, 8), (66, 8, 11), (70, 11, 12), (72, 12, 22), (61, 16, 18),
                           (48, 24, 40), (63, 26, 27), (75, 27, 28), (62, 28, 31)]:
        piano.notes.append(pretty_midi.Note(velocity=80, pitch=pitch, start=on * g, end=off * g))
    flute = pretty_midi.Instrument(program=73)
    for i, pitch in enumerate([79, 81, 83, 84, 86, 88, 89, 91]):
        flute.notes.append(pretty_midi.Note(velocity=80, pitch=pitch, start=(4 + 5 * i) * g, end=(9 + 5 * i) * g))
    midi = pretty_midi.PrettyMIDI(initial_tempo=90)
    midi.instruments += [piano, flute]
    return midi


@needs_abc2midi
@pytest.mark.parametrize("key", [None, "Eb", "F#m"])
def test_written_abc_plays_back_as_the_quantised_midi(tmp_path: Path, key: str | None) -> None:
    midi = _score_with_everything()
    abc = write_abc(midi, AbcConfig(key=key))
    (tmp_path / "t.abc").write_text(abc)
    subprocess.run(["abc2midi", str(tmp_path / "t.abc"), "-o", str(tmp_path / "t.mid")], check=True, capture_output=True)
    grid_s = 60.0 / 90 / 4
    played = [inst for inst in pretty_midi.PrettyMIDI(str(tmp_path / "t.mid")).instruments if inst.notes]
    assert [inst.program for inst in played] == [0, 73]
    for original, back in zip(midi.instruments, played):
        expected = sorted((n.pitch, n.onset, n.offset) for n in quantize_notes(original.notes, grid_s=grid_s))
        assert sorted((n.pitch, round(n.start / grid_s), round(n.end / grid_s)) for n in back.notes) == expected
    # The reader agrees with abc2midi on the onsets of each voice.
    tune = read_abc(abc)
    for original, voice in zip(midi.instruments, tune.voices):
        assert list(voice.pitches) == [n.pitch for n in sorted(original.notes, key=lambda n: (n.start, n.pitch))]


def test_quantize_keeps_every_note_at_least_one_step_and_resolves_overlaps() -> None:
    notes = [pretty_midi.Note(80, 60, 0.0, 0.01), pretty_midi.Note(80, 62, 0.0, 1.0), pretty_midi.Note(80, 62, 0.52, 0.9)]
    assert quantize_notes(notes, grid_s=0.25) == [QuantizedNote(0, 1, 60), QuantizedNote(0, 2, 62), QuantizedNote(2, 4, 62)]
