"""Options and steps shared by the assistant subcommands (chat, generate, caption, edit, serve).

Inputs are loaded and checked before the model is, so a bad file fails in a second, not after a
7B model has loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from m2ugen.audio import WRITE_FORMATS, Audio
from m2ugen.errors import ConfigError

# Audio is loaded at this rate before the model (and so its decoder's rate) is known: it is at or
# above every decoder's rate, so no bandwidth is lost; the assistant resamples it once more.
PRELOAD_SAMPLE_RATE = 48000
# Frames kept from a video file (ViViT-B 16x2 reads 32; the assistant reselects if a model differs).
PRELOAD_VIDEO_FRAMES = 32


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--model", metavar="DIR", help="checkpoint directory (config.json + model.safetensors)")
    group.add_argument("--demo", action="store_true",
                       help="the bundled tiny model with random weights: runs anywhere, output is noise")
    parser.add_argument("--device", default=None, help="torch device for --model, e.g. cuda (default: cpu)")


def add_sampling_options(parser: argparse.ArgumentParser, *, music: bool, default_seconds: float | None = None) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--temperature", type=float, default=0.6, help="LLM temperature; 0 = greedy (default 0.6)")
    group.add_argument("--top-p", type=float, default=0.8, help="LLM nucleus sampling mass (default 0.8)")
    group.add_argument("--max-new-tokens", type=int, default=256, help="longest text response (default 256)")
    group.add_argument("--seed", type=int, default=None, help="seed for reproducible text and music")
    if music:
        what = (f"default {default_seconds:g}" if default_seconds
                else "default: 10 s, or for an edit the source's length up to 30 s")
        group.add_argument("--seconds", type=float, default=default_seconds, help=f"music length in seconds ({what})")
        group.add_argument("--guidance-scale", type=float, default=3.0, help="decoder guidance (default 3)")


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~m2ugen.assistant.ChatSettings` fields given on the command line, validated."""
    from m2ugen.assistant import ChatSettings

    values = dict(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed)
    if hasattr(args, "seconds"):
        values.update(seconds=args.seconds, guidance_scale=args.guidance_scale)
    ChatSettings(**values)
    return values


def load_assistant(args: argparse.Namespace, **kwargs: Any):
    """The :class:`~m2ugen.assistant.Assistant` named by ``--model DIR`` or ``--demo``."""
    from m2ugen.assistant import Assistant

    print("loading the model ...", file=sys.stderr, flush=True)
    if args.demo:
        return Assistant.demo(progress=True, **kwargs)
    return Assistant.from_pretrained(args.model, device=args.device, progress=True, **kwargs)


def load_audio_file(path: str) -> Audio:
    from m2ugen.media import load_audio

    return Audio(load_audio(path, PRELOAD_SAMPLE_RATE), PRELOAD_SAMPLE_RATE)


def load_image_file(path: str) -> np.ndarray:
    from m2ugen.media import load_image

    return load_image(path)


def load_video_file(path: str) -> np.ndarray:
    from m2ugen.media import load_video

    return load_video(path, PRELOAD_VIDEO_FRAMES)


def check_output(path: str | Path, overwrite: bool,
                 suffixes: Sequence[str] | None = tuple(WRITE_FORMATS)) -> Path:
    """A file name that can be written: one of ``suffixes`` (default: the audio formats; None: any),
    not a folder, new unless ``overwrite``, in a folder that exists or can be made and is writable."""
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{path}: output must end in {', '.join(suffixes)}")
    if path.is_dir():
        example = path / ("out" + (suffixes[0] if suffixes else ""))
        raise ConfigError(f"{path}: is a directory; give a file name such as {example}")
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: already exists; pass --overwrite to replace it")
    problem = _folder_problem(path.parent)
    if problem:
        raise ConfigError(f"{path}: cannot be written ({problem})")
    return path


def check_folder(folder: str | Path) -> Path:
    """A folder that exists or can be created, and can be written to; checked before the slow work."""
    folder = Path(folder)
    problem = _folder_problem(folder)
    if problem:
        raise ConfigError(f"{folder}: cannot write files there ({problem})")
    return folder


def _folder_problem(folder: Path) -> str | None:
    """Why no file can be written in ``folder``, or None. The nearest folder that already exists
    decides: it must be a folder and accept a new file (``mkdir -p`` makes the rest)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        return f"{existing}: {err.strerror or err}"
    return None


def save_audio(audio: Audio, path: Path, overwrite: bool) -> None:
    audio.save(path, overwrite=overwrite)
    print(f"wrote {path} ({audio.duration:.2f} s, {audio.sample_rate} Hz)", file=sys.stderr)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show Python warnings (e.g. silent input audio) as ``warning: <message>`` lines on stderr,
    each kind once (the same input is checked again at each resampling)."""
    seen: set[type] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if category not in seen:
            seen.add(category)
            print(f"warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def run_with_warnings(func):
    """Wrap a command function so that its warnings print as one line each."""
    def wrapped(args: argparse.Namespace) -> int:
        with one_line_warnings():
            return func(args)

    return wrapped

