"""``m2ugen edit``: change a piece of music as instructed; the decoder hears the source."""

from __future__ import annotations

import argparse

from m2ugen.commands import common


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "edit", help="change a music file as instructed",
        description="Edit a music file: the source conditions the decoder (melody chroma or continuation).",
        epilog='example: m2ugen edit --demo song.wav "make it slower, with strings" -o slower.wav')
    parser.add_argument("audio", metavar="AUDIO", help="the music to edit")
    parser.add_argument("instruction", metavar="INSTRUCTION", help="what to change")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="output .wav, .flac or .ogg")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    common.add_model_options(parser)
    common.add_sampling_options(parser, music=True)
    parser.set_defaults(func=common.run_with_warnings(run))


def run(args: argparse.Namespace) -> int:
    common.check_message(args.instruction)
    output = common.check_output(args.output, args.overwrite)
    settings = common.settings(args)
    audio = common.load_audio_file(args.audio)
    assistant = common.load_assistant(args)
    reply = assistant.chat(args.instruction, audio=audio, task="edit", **settings)
    print(reply.text)
    common.save_audio(reply.audio, output, args.overwrite)
    return 0
