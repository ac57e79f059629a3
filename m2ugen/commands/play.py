"""``m2ugen play score.abc -o out.wav [--midi out.mid] [--soundfont F] [--sample-rate HZ]``: play an ABC score."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from m2ugen.commands import common
from m2ugen.errors import MediaError

MIDI_SUFFIXES = (".mid", ".midi")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "play", help="play an ABC score through a General MIDI sound font",
        description="Play the first tune of an ABC file (one V: per voice, %%MIDI program per voice, Q: tempo) "
                    "with a General MIDI sound font; invalid ABC is reported with its line.",
        epilog="example: m2ugen play score.abc -o score.wav --midi score.mid")
    parser.add_argument("file", type=Path, help="ABC file")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output .wav, .flac or .ogg")
    parser.add_argument("--midi", type=Path, help="also write the score as a MIDI file here")
    parser.add_argument("--soundfont", help="sound font name or .sf2/.sf3 file (default: the first one installed)")
    parser.add_argument("--sample-rate", type=int, default=22050, help="output sample rate in Hz (default: 22050)")
    parser.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from m2ugen.decoders.score import ScoreDecoder, ScoreSettings
    from m2ugen.notation.score import AbcError, parse_abc

    if args.file.is_dir():
        raise MediaError(f"{args.file}: is a directory, not an ABC file")
    if not args.file.is_file():
        raise MediaError(f"{args.file}: ABC file not found")
    output = common.check_output(args.output, args.overwrite)
    if args.midi is not None:
        common.check_output(args.midi, args.overwrite, MIDI_SUFFIXES)
    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise MediaError(f"{args.file}: cannot be read as UTF-8 text ({err})") from None
    try:
        score = parse_abc(text)
    except AbcError as err:
        raise AbcError(f"{args.file}: {err}") from None
    decoder = ScoreDecoder(ScoreSettings(sample_rate=args.sample_rate, soundfont=args.soundfont))
    audio = decoder.render(score, midi_path=args.midi)
    common.save_audio(audio, output, args.overwrite)
    if args.midi is not None:
        print(f"wrote {args.midi}", file=sys.stderr)
    return 0
