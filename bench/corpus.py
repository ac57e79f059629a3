"""Rendered-corpus build speed on 2 cores, and the projected time and disk of the whole default corpus.

Builds the default configuration (default collections, 3 instrumentations + 1 edit per work, 10 s
excerpts, 22.05 kHz mono) for ``--works`` works spread over the collections, as two shards in two
processes (one per core), and projects the clip rate and the bytes per clip to every work of the
default collections. The rate is the steady state: a one-work-per-shard build is timed too, and
its time (process start, music21 import, sound-font loading, summary) and clips are subtracted.
Baseline in the same run: the same clips' MIDI files rendered by the FluidSynth
command line (what ``render_midi`` used before), against in-process TinySoundFont on the same notes.
Last line: ``corpus: clips_per_second=<x> full_build_hours=<h> full_build_gb=<g>``.

Run: ``.venv/bin/python bench/corpus.py [--works 60] [--baseline-clips 24]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build(out: Path, works: int, shards: int) -> float:
    """Wall seconds to build ``works`` works as ``shards`` parallel processes."""
    base = [sys.executable, "-m", "datasets_build.cli", "corpus", "--out", str(out), "--works", str(works), "--no-progress"]
    start = time.perf_counter()
    running = [subprocess.Popen([*base, "--shard", f"{i}/{shards}"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for i in range(shards)]
    for process in running:
        _, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"build failed: {err.strip().splitlines()[-1] if err.strip() else process.returncode}")
    return time.perf_counter() - start


def baseline(out: Path, rows: list[dict], count: int) -> tuple[float, float]:
    """Seconds per clip: FluidSynth CLI (bounded by a timeout) vs TinySoundFont, on the same MIDI files and fonts."""
    from m2ugen.notation.render import midi_notes, resolve_soundfont, synthesize

    cli_s = tsf_s = 0.0
    chosen = rows[:count]
    for row in chosen:
        font = resolve_soundfont(row["soundfont"])
        midi = out / row["midi"]
        start = time.perf_counter()
        subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(row["sample_rate"]), "-T", "wav", "-F",
                        str(out / "baseline.wav"), str(font), str(midi)], capture_output=True, timeout=120, check=False)
        cli_s += time.perf_counter() - start
        start = time.perf_counter()
        synthesize(midi_notes(midi), sample_rate=row["sample_rate"], soundfont=font)
        tsf_s += time.perf_counter() - start
    return cli_s / len(chosen), tsf_s / len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--works", type=int, default=60)
    parser.add_argument("--shards", type=int, default=2, help="parallel processes (cores)")
    parser.add_argument("--baseline-clips", type=int, default=24)
    args = parser.parse_args()

    from datasets_build.corpus import CorpusConfig, clip_rows
    from datasets_build.corpus_sources import DEFAULT_COLLECTIONS, collection_works

    config = CorpusConfig()
    all_works = len(collection_works(list(DEFAULT_COLLECTIONS)))
    clips_per_work = config.instrumentations + config.edits_per_work
    with tempfile.TemporaryDirectory() as tmp:
        startup_s = build(Path(tmp) / "small", args.shards, args.shards)  # one work per shard: start-up + 4 clips each
        small_clips = len(clip_rows(Path(tmp) / "small"))
        out = Path(tmp) / "corpus"
        seconds = build(out, args.works, args.shards)
        rows = clip_rows(out)
        failures = sum(1 for path in out.glob("clips_failures*.jsonl") for _ in path.open())
        disk = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        audio_s = sum(r["duration"] for r in rows)
        train_rows = [r for r in rows if r["split"] != "test"]
        cli, tsf = baseline(out, train_rows, args.baseline_clips) if shutil.which("fluidsynth") else (float("nan"),) * 2
        print(json.dumps({"works": args.works, "clips": len(rows), "failures": failures, "seconds": round(seconds, 1),
                          "audio_hours": round(audio_s / 3600, 3), "bytes": disk}))
    rate = (len(rows) + failures - small_clips) / (seconds - startup_s)  # steady state: start-up cost cancels
    total_clips = all_works * clips_per_work
    hours = (total_clips / rate + startup_s) / 3600
    print(f"start-up + {small_clips} clips: {startup_s:.1f} s; {len(rows) + failures} clips: {seconds:.1f} s; "
          f"end to end {(len(rows) + failures) / seconds:.2f} clips/s")
    gigabytes = disk / max(1, len(rows)) * total_clips * (len(rows) / max(1, len(rows) + failures)) / 1e9
    print(f"default corpus: {all_works} works x {clips_per_work} clips = {total_clips} clips; "
          f"mean clip {audio_s / max(1, len(rows)):.1f} s, {disk / max(1, len(rows)) / 1e6:.2f} MB with labels")
    print(f"render per clip: fluidsynth CLI {cli:.3f} s, tinysoundfont {tsf:.3f} s "
          f"(fluidsynth_over_tinysoundfont={cli / tsf:.1f}x)")
    print(f"corpus: clips_per_second={rate:.2f} full_build_hours={hours:.2f} full_build_gb={gigabytes:.2f}")


if __name__ == "__main__":
    main()
