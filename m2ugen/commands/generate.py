"""``m2ugen generate``: text, an image or a video -> a music file."""

from __future__ import annotations

import argparse

from m2ugen.commands import common
from m2ugen.errors import ConfigError
from m2ugen.settings import DEFAULT_SECONDS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="make music from text, an image or a video",
        description="Make music from a text request, optionally with an image or a video to score.",
        epilog='example: m2ugen generate --demo "a calm piano melody" --seconds 2 -o out/demo.wav')
    parser.add_argument("text", help="what music to make")
    media = parser.add_mutually_exclusive_group()
    media.add_argument("--image", metavar="FILE", help="an image to make music for")
    media.add_argument("--video", metavar="FILE", help="a video to make music for")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="output .wav, .flac or .ogg")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    common.add_model_options(parser)
    common.add_sampling_options(parser, music=True, default_seconds=DEFAULT_SECONDS)
    parser.set_defaults(func=common.run_with_warnings(run))


def run(args: argparse.Namespace) -> int:
    common.check_message(args.text)
    output = common.check_output(args.output, args.overwrite)
    settings = common.settings(args)
    image = common.load_image_file(args.image) if args.image else None
    video = common.load_video_file(args.video) if args.video else None
    assistant = common.load_assistant(args)
    if assistant.config.music_outputs != "audio":  # a score reply also writes .abc and .mid
        for suffix in (".abc", ".mid"):
            common.check_output(output.with_suffix(suffix), args.overwrite, None)
    reply = assistant.chat(args.text, image=image, video=video, task="generate", **settings)
    print(reply.text)
    if reply.audio is None:
        raise ConfigError("the model answered in words and wrote no music; try rephrasing the request")
    common.save_audio(reply.audio, output, args.overwrite)
    if reply.abc is not None:  # a score: its .abc and .mid beside the audio
        common.save_score(reply, output, args.overwrite)
    return 0
