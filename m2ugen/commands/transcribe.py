"""``m2ugen transcribe FILE [-o out.mid] [--abc out.abc] [--plot roll.png] [--mono] [--meter 6/8] [--tempo 120]``:
write down who plays what in a recording."""

from __future__ import annotations

import argparse
from pathlib import Path

from m2ugen.commands import common
from m2ugen.errors import MediaError

MIDI_SUFFIXES = (".mid", ".midi")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "transcribe",
        help="transcribe music to MIDI, ABC notation and a piano roll",
        description="Transcribe a recording (basic-pitch notes, bundled models, CPU): each note with its "
                    "instrument, voices, metre and tempo. Writes one MIDI track per instrument; prints the ABC "
                    "score (one V: per voice, with %%MIDI program) unless --abc is given.",
    )
    parser.add_argument("file", type=Path, help="audio file (WAV, FLAC, OGG, MP3, ...)")
    parser.add_argument("-o", "--output", type=Path, help="MIDI file to write (default: FILE with .mid)")
    parser.add_argument("--abc", type=Path, help="write the ABC score here instead of printing it")
    parser.add_argument("--plot", type=Path, help="write a piano-roll PNG here")
    parser.add_argument("--tempo", type=float, help="tempo in quarter notes per minute (default: estimated)")
    parser.add_argument("--meter", default=None, help="time signature of the ABC score, e.g. 6/8 (default: estimated)")
    parser.add_argument("--program", type=int, default=None,
                        help="General MIDI program of every note (default: each note's instrument is recognised)")
    parser.add_argument("--mono", action=argparse.BooleanOptionalAction, default=None,
                        help="the source plays one note at a time: write one line, no harmonic ghost notes "
                             "(default: detected; --no-mono keeps every note heard)")
    parser.add_argument("--voices", action=argparse.BooleanOptionalAction, default=None,
                        help="split each instrument into voices in the ABC score (default: on)")
    parser.add_argument("--pitch-bends", action=argparse.BooleanOptionalAction, default=None,
                        help="write per-note pitch bends to the MIDI file")
    parser.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                        help="replace output files that already exist")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar")
    # Accepted like every command's; the notes come from the bundled basic-pitch model either way.
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", metavar="DIR", help="accepted for uniformity; transcription does not use it")
    model.add_argument("--demo", action="store_true", help="accepted for uniformity; transcription does not use it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from m2ugen.transcribe import TranscribeConfig, transcribe

    if args.file.is_dir():
        raise MediaError(f"{args.file}: is a directory, not an audio file")
    if not args.file.is_file():
        raise MediaError(f"{args.file}: audio file not found")
    overrides = {"tempo_bpm": args.tempo, "meter": args.meter, "program": args.program, "pitch_bends": args.pitch_bends,
                 "mono": args.mono, "voices": args.voices}
    config = replace(TranscribeConfig(), **{k: v for k, v in overrides.items() if v is not None})
    midi_path = args.output or args.file.with_suffix(".mid")
    # Fail before the slow part, not after it.
    for path, suffixes in ((midi_path, MIDI_SUFFIXES), (args.abc, None), (args.plot, (".png",))):
        if path is not None:
            common.check_output(path, args.overwrite, suffixes)

    bars = []

    def on_progress(done_s: float, total_s: float) -> None:
        if not bars:
            from tqdm import tqdm

            bars.append(tqdm(total=round(total_s, 1), unit="s", desc="transcribing",
                             bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s"))
        bars[0].update(round(done_s, 1) - bars[0].n)

    try:
        result = transcribe(args.file, config=config, on_progress=on_progress if args.progress else None)
    finally:
        for bar in bars:
            bar.close()
    result.save_midi(midi_path, overwrite=args.overwrite)
    print(result.message)
    print(f"MIDI: {midi_path}")
    if args.plot is not None:
        print(f"piano roll: {result.plot(args.plot, overwrite=args.overwrite)}")
    if args.abc is not None:
        print(f"ABC: {result.save_abc(args.abc, overwrite=args.overwrite)}")
    else:
        print(result.abc, end="")
    return 0
