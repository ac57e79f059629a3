"""``m2ugen chat``: talk to the assistant, one message (``-m``) or interactively.

In the interactive loop a line is a message, except these commands::

    /audio FILE   /image FILE   /video FILE   attach a file to the next message
    /reset        forget the conversation (history and music)
    /help         show this help
    /quit         leave (as does end of input, Ctrl-D)

Music and MIDI files are written to ``--output-dir``; an error prints one line and the chat goes on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from m2ugen.commands import common
from m2ugen.errors import ConfigError, M2UGenError

HELP = ("commands: /audio FILE, /image FILE, /video FILE (attach to the next message), /reset, /help, /quit; "
        "anything else is a message")
LOADERS = {"audio": common.load_audio_file, "image": common.load_image_file, "video": common.load_video_file}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "chat", help="chat with the assistant (one message with -m, else interactive)",
        description="Chat about music, make music from text/images/videos, edit it, transcribe it.",
        epilog='example: m2ugen chat --demo -m "What instruments are playing?" --audio song.wav')
    parser.add_argument("-m", "--message", help="send this one message, print the reply and exit")
    parser.add_argument("--audio", metavar="FILE", help="audio for the first message")
    parser.add_argument("--image", metavar="FILE", help="image for the first message")
    parser.add_argument("--video", metavar="FILE", help="video for the first message")
    parser.add_argument("--output-dir", default="m2ugen-output", metavar="DIR",
                        help="where music and MIDI files are written (default: m2ugen-output)")
    common.add_model_options(parser)
    common.add_sampling_options(parser, music=True)
    parser.set_defaults(func=common.run_with_warnings(run))


def run(args: argparse.Namespace) -> int:
    settings = common.settings(args)
    if args.message is not None:
        common.check_message(args.message)
    out_dir = Path(args.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: --output-dir is a file, not a directory")
    common.check_folder(out_dir)
    attached = {kind: LOADERS[kind](path) for kind in LOADERS if (path := getattr(args, kind))}
    assistant = common.load_assistant(args, output_dir=out_dir)
    if args.message is not None:
        _turn(assistant, args.message, attached, settings, out_dir)
        return 0
    return _loop(assistant, attached, settings, out_dir)


def _turn(assistant, text: str, attached: dict, settings: dict, out_dir: Path) -> None:
    reply = assistant.chat(text, **attached, **settings)
    print(reply.text, flush=True)
    audio_path = _free_name(out_dir, "reply", ".wav")
    if reply.audio is not None:
        common.save_audio(reply.audio, audio_path, overwrite=False)
    if reply.audio is not None and reply.abc is not None:  # a score: its .abc and .mid beside the audio
        common.save_score(reply, audio_path, overwrite=False)
    elif reply.midi_path is not None:
        print(f"wrote {reply.midi_path}", file=sys.stderr)


def _loop(assistant, attached: dict, settings: dict, out_dir: Path) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"m2ugen chat. {HELP}", file=sys.stderr)
    while True:
        if interactive:
            print("you> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        line = line.strip()
        if not line:
            continue
        try:
            if line.startswith("/"):
                command, _, rest = line.partition(" ")
                name = command[1:]
                if name == "quit":
                    return 0
                if name == "reset":
                    assistant.reset()
                    attached.clear()
                    print("conversation cleared", file=sys.stderr)
                elif name in LOADERS and rest.strip():
                    attached[name] = LOADERS[name](rest.strip())
                    print(f"attached {name}: {rest.strip()}", file=sys.stderr)
                else:
                    print(HELP, file=sys.stderr)
                continue
            _turn(assistant, line, attached, settings, out_dir)
            attached = {}
        except M2UGenError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)


def _free_name(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem-N.suffix`` with the smallest N >= 1 that does not exist yet."""
    n = 1
    while (path := folder / f"{stem}-{n}{suffix}").exists():
        n += 1
    return path
