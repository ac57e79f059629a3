"""Benchmark transcription: speed and onset F1 on pieces rendered with FluidSynth.

Renders known MIDI (60 s of piano melody, plus shorter pieces for the per-piece table), transcribes
each with :func:`m2ugen.transcribe.transcribe` and scores it with mir_eval. The baseline for speed is
the audio's own duration, and basic-pitch's own ``predict`` on the same file in the same run.
Last line: ``transcribe: seconds_per_audio_second=<ratio> onset_f1=<f1>``.

Run: ``.venv/bin/python bench/transcribe.py``
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pretty_midi

from m2ugen.metrics.transcription import note_scores
from m2ugen.notation.render import render_midi
from m2ugen.transcribe import transcribe

C_MAJOR = (60, 62, 64, 65, 67, 69, 71, 72, 74, 76)


def _piece(kind: str, duration_s: float, seed: int) -> pretty_midi.PrettyMIDI:
    """A piano piece of a known kind: melody, triads, melody over a bass line, or fast scale runs."""
    rng = np.random.default_rng(seed)
    tempo = {"melody": 100.0, "triads": 90.0, "melody+bass": 96.0, "fast runs": 132.0}[kind]
    beat = 60.0 / tempo
    piano = pretty_midi.Instrument(program=0)
    time_s = 0.25
    while time_s < duration_s - 1.0:
        if kind == "triads":
            root, length = int(rng.choice([48, 50, 52, 53, 55, 57])), float(rng.choice([1.0, 2.0])) * beat
            notes = [root, root + (4 if root in (48, 53, 55) else 3), root + 7]
        elif kind == "fast runs":
            length, notes = beat / 4, [int(C_MAJOR[int(rng.integers(len(C_MAJOR)))])]
        else:
            length, notes = float(rng.choice([0.5, 1.0, 1.0, 2.0])) * beat, [int(rng.choice(C_MAJOR))]
            if kind == "melody+bass" and round(time_s / beat, 3) % 2 == 0:
                notes.append(int(rng.choice([36, 41, 43, 45])))
        for pitch in notes:
            piano.notes.append(pretty_midi.Note(velocity=int(rng.integers(70, 110)), pitch=pitch, start=time_s,
                                                end=time_s + 0.9 * length))
        time_s += length
    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    midi.instruments.append(piano)
    return midi


def _f1(midi: pretty_midi.PrettyMIDI, notes: list[tuple[float, float, int]]) -> tuple[float, float]:
    scores = note_scores([(n.start, n.end, n.pitch) for i in midi.instruments for n in i.notes], notes)
    return scores.f1, scores.f1_with_offsets


def main() -> None:
    logging.disable(logging.WARNING)  # basic-pitch's import-time backend warnings
    pieces = [("melody", 60.0, 0), ("triads", 20.0, 1), ("melody+bass", 20.0, 2), ("fast runs", 20.0, 3)]
    with tempfile.TemporaryDirectory() as tmp:
        transcribe(np.zeros(22050, dtype=np.float32) + 1e-3 * np.sin(np.arange(22050)), sample_rate=22050)  # warm-up
        print("| piece (piano) | seconds | notes | onset F1 | onset+offset F1 |")
        print("|---|---|---|---|---|")
        headline = (0.0, 0.0)
        for kind, duration_s, seed in pieces:
            midi = _piece(kind, duration_s, seed)
            midi_path = Path(tmp) / f"{seed}.mid"
            midi.write(str(midi_path))
            wav = render_midi(midi_path, Path(tmp) / f"{seed}.wav", sample_rate=22050)
            start = time.perf_counter()
            result = transcribe(wav)
            elapsed = time.perf_counter() - start
            f1, f1_offsets = _f1(midi, [(n.start_s, n.end_s, n.pitch) for n in result.notes])
            n_notes = sum(len(i.notes) for i in midi.instruments)
            print(f"| {kind} | {duration_s:.0f} | {n_notes} | {f1:.3f} | {f1_offsets:.3f} |")
            if kind == "melody":
                headline = (elapsed / result.duration_s, f1)
                from basic_pitch import ICASSP_2022_MODEL_PATH
                from basic_pitch.inference import predict

                start = time.perf_counter()
                _, _, events = predict(str(wav), ICASSP_2022_MODEL_PATH)
                baseline = time.perf_counter() - start
                base_f1, _ = _f1(midi, [(s, e, p) for s, e, p, *_ in events])
                print(f"baseline basic_pitch.predict on the 60 s melody: seconds_per_audio_second="
                      f"{baseline / result.duration_s:.4f} onset_f1={base_f1:.3f}; ours: {elapsed:.2f} s vs {baseline:.2f} s")
    print(f"transcribe: seconds_per_audio_second={headline[0]:.4f} onset_f1={headline[1]:.3f}")


if __name__ == "__main__":
    main()
