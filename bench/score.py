"""Seconds to play one minute of a 4-voice ABC score, against the sound font alone on the same notes.

The score: 4/4 at 120 quarter notes per minute, 30 bars = 60 s; four voices (flute eighth notes,
clarinet quarter notes with ties, viola dotted rhythms with chords, bass half notes), a fixed
pseudo-random tune. Stages, each the median of ``--repeats`` runs after one warm-up run (which loads
music21 and the sound font):
  parse    ABC text -> validated music21 score (``parse_abc``)
  notes    score -> MIDI notes in seconds (``score_notes``)
  render   ``ScoreDecoder.render``: the whole path, ABC text -> audio (what ``m2ugen play`` and the assistant run)
  synth    baseline: the synthesizer alone on the same notes (``m2ugen.notation.render.synthesize``),
           the floor for any ABC player using this sound font
Wall-clock and CPU seconds of this process are both reported: on a shared machine the wall clock
grows with the other jobs, the CPU time does not. ``overhead_vs_synth`` is render / synth (wall). Last line:
``score: render_seconds_per_minute=<x> overhead_vs_synth=<r>x`` (target: x <= 1 on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from m2ugen.decoders.score import ScoreDecoder, ScoreSettings
from m2ugen.notation.render import SynthNote, resolve_soundfont, synthesize
from m2ugen.notation.score import parse_abc, score_notes, score_seconds

SCALE = "CDEFGAB"


def _name(index: int) -> str:
    """ABC note name of C-major step ``index`` (0 = C,, two octaves below middle C)."""
    octave, step = divmod(index, 7)
    letter = SCALE[step]
    if octave <= 1:
        return letter + "," * (2 - octave)
    return letter if octave == 2 else letter.lower() + "'" * (octave - 3)


def four_voice_minute(seed: int = 0) -> str:
    """A 60 s, 4-voice tune in C (30 bars of 4/4 at 120 quarter notes per minute)."""
    rng = np.random.default_rng(seed)
    bars: dict[str, list[str]] = {"flute": [], "clarinet": [], "viola": [], "bass": []}
    for _ in range(30):
        bars["flute"].append(" ".join(_name(int(i)) for i in rng.integers(21, 30, 8)))  # eighths
        clarinet = [_name(int(i)) + "2" for i in rng.integers(16, 24, 4)]
        clarinet[1] += "-" if rng.random() < 0.3 else ""
        if clarinet[1].endswith("-"):
            clarinet[2] = clarinet[1][:-2] + "2"  # tied to the same pitch
        bars["clarinet"].append(" ".join(clarinet))
        low = int(rng.integers(12, 17))
        bars["viola"].append(f"[{_name(low)}{_name(low + 2)}]3 {_name(low + 4)} {_name(low)}3 {_name(low + 1)}")
        bars["bass"].append(" ".join(_name(int(i)) + "4" for i in rng.integers(4, 11, 2)))
    header = "X:1\nT:Benchmark minute\nM:4/4\nL:1/8\nQ:1/4=120\nK:C\n"
    voices = [("flute", 73), ("clarinet", 71), ("viola", 41), ("bass", 32)]
    body = "".join(f'V:{i} name="{name.title()}"\n%%MIDI program {program}\n' +
                   "\n".join(" | ".join(bars[name][b:b + 4]) + " |" for b in range(0, 30, 4)) + "]\n"
                   for i, (name, program) in enumerate(voices, start=1))
    return header + body


def _median_seconds(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and median CPU seconds of this process (the CPU time does not grow when
    other jobs share the cores)."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--soundfont", default=None, help="sound font name or path (default: the first installed)")
    parser.add_argument("--sample-rate", type=int, default=ScoreSettings.sample_rate)
    args = parser.parse_args()

    abc = four_voice_minute()
    decoder = ScoreDecoder(ScoreSettings(sample_rate=args.sample_rate, soundfont=args.soundfont))
    score = parse_abc(abc)
    notes = score_notes(score)
    synth_notes = [SynthNote(n.onset_s, n.offset_s, n.pitch, n.velocity, n.program, n.part) for n in notes]
    minutes = score_seconds(score) / 60.0
    decoder.render(abc)  # warm-up: music21 and the sound font load once per process

    secs = {
        "parse": _median_seconds(lambda: parse_abc(abc), args.repeats),
        "notes": _median_seconds(lambda: score_notes(score), args.repeats),
        "render": _median_seconds(lambda: decoder.render(abc), args.repeats),
        "synth": _median_seconds(lambda: synthesize(synth_notes, sample_rate=args.sample_rate,
                                                    soundfont=args.soundfont), args.repeats),
    }
    print(f"score: {len(score.parts)} voices, {len(notes)} notes, {score_seconds(score):.1f} s; sound font "
          f"{resolve_soundfont(args.soundfont).name}; {args.sample_rate} Hz; {os.cpu_count()} CPU cores; "
          f"median of {args.repeats}; load average {os.getloadavg()[0]:.1f}")
    print("| stage | wall seconds | CPU seconds | wall seconds per minute of music |")
    print("|---|---|---|---|")
    for stage, (wall, cpu) in secs.items():
        print(f"| {stage} | {wall:.3f} | {cpu:.3f} | {wall / minutes:.3f} |")
    per_minute = secs["render"][0] / minutes
    print(f"score: render_seconds_per_minute={per_minute:.3f} overhead_vs_synth={secs['render'][0] / secs['synth'][0]:.2f}x")


if __name__ == "__main__":
    main()
