"""``m2ugen caption``: describe a piece of music, or answer a question about it."""

from __future__ import annotations

import argparse

from m2ugen.commands import common

DEFAULT_PROMPT = "Describe this music in detail."


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "caption", help="describe music or answer a question about it",
        description="Describe a music file, or answer --question about it (music QA).",
        epilog='example: m2ugen caption --demo song.wav --question "What instruments are playing?"')
    parser.add_argument("audio", metavar="AUDIO", help="a music file (wav, flac, ogg, mp3, ...)")
    parser.add_argument("-q", "--question", default=DEFAULT_PROMPT, help=f"default: {DEFAULT_PROMPT!r}")
    common.add_model_options(parser)
    common.add_sampling_options(parser, music=False)
    parser.set_defaults(func=common.run_with_warnings(run))


def run(args: argparse.Namespace) -> int:
    settings = common.settings(args)
    audio = common.load_audio_file(args.audio)
    assistant = common.load_assistant(args)
    reply = assistant.chat(args.question, audio=audio, task="answer", **settings)
    print(reply.text)
    return 0
