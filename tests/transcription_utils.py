"""Helpers for the transcription tests: MIDI pieces with known notes, rendered with FluidSynth."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from m2ugen.notation.render import find_soundfont, render_midi

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or find_soundfont() is None,
    reason="needs the Debian packages fluidsynth and fluid-soundfont-gm",
)
needs_abc2midi = pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs the Debian package abcmidi")

C_MAJOR = (60, 62, 64, 65, 67, 69, 71, 72, 74, 76)


def melody(duration_s: float, *, seed: int = 0, tempo_bpm: float = 100.0, program: int = 0) -> pretty_midi.PrettyMIDI:
    """A monophonic melody in C major of eighth, quarter and half notes, slightly detached."""
    rng = np.random.default_rng(seed)
    beat_s = 60.0 / tempo_bpm
    instrument = pretty_midi.Instrument(program=program)
    time_s = 0.25
    while time_s < duration_s - 1.0:
        length_s = float(rng.choice([0.5, 1.0, 1.0, 2.0])) * beat_s
        pitch = int(rng.choice(C_MAJOR))
        instrument.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=time_s, end=time_s + 0.9 * length_s))
        time_s += length_s
    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo_bpm)
    midi.instruments.append(instrument)
    return midi


def chords(duration_s: float, *, seed: int = 0, tempo_bpm: float = 90.0) -> pretty_midi.PrettyMIDI:
    """Block triads (root position, C major diatonic) of one or two beats each, on piano."""
    rng = np.random.default_rng(seed)
    beat_s = 60.0 / tempo_bpm
    instrument = pretty_midi.Instrument(program=0)
    time_s = 0.25
    while time_s < duration_s - 1.0:
        root = int(rng.choice([48, 50, 52, 53, 55, 57]))
        length_s = float(rng.choice([1.0, 2.0])) * beat_s
        for pitch in (root, root + (4 if root in (48, 53, 55) else 3), root + 7):
            instrument.notes.append(pretty_midi.Note(velocity=85, pitch=pitch, start=time_s, end=time_s + 0.9 * length_s))
        time_s += length_s
    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo_bpm)
    midi.instruments.append(instrument)
    return midi


def render(midi: pretty_midi.PrettyMIDI, directory: Path, name: str) -> Path:
    """Write ``midi`` as ``name.mid`` and render it to ``name.wav`` at 22.05 kHz."""
    midi_path = directory / f"{name}.mid"
    midi.write(str(midi_path))
    return render_midi(midi_path, directory / f"{name}.wav", sample_rate=22050)


def note_tuples(midi: pretty_midi.PrettyMIDI) -> list[tuple[float, float, int]]:
    """All notes of ``midi`` as ``(onset_s, offset_s, pitch)``."""
    return [(n.start, n.end, n.pitch) for inst in midi.instruments for n in inst.notes]
