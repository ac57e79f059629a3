"""Options and steps shared by the assistant subcommands (chat, generate, caption, edit, serve).

Inputs are loaded and checked before the model is, so a bad file fails in a second, not after a
7B model has loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from m2ugen.audio import WRITE_FORMATS, Audio
from m2ugen.errors import CheckpointError, ConfigError
from m2ugen.files import check_folder, folder_problem  # noqa: F401  (check_folder: used by the commands)
from m2ugen.settings import DEFAULT_SECONDS, DEFAULTS, MAX_DEFAULT_EDIT_SECONDS, ChatSettings

# Frames kept from a video file (ViViT-B 16x2 reads 32; the assistant reselects if a model differs).
PRELOAD_VIDEO_FRAMES = 32


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--model", metavar="DIR", help="checkpoint directory (config.json + model.safetensors)")
    group.add_argument("--demo", action="store_true",
                       help="the bundled m2ugen-mini: a small model trained on rendered scores (audio questions, "
                            "ABC scores; no image or video); without the bundle, a tiny random model")
    parser.add_argument("--device", default=None, help="torch device for --model, e.g. cuda (default: cpu)")
    parser.add_argument("--quantize", choices=("int8", "int4"), default=None,
                        help="weight-only quantized LLM: int8 (CPU or CUDA) or int4 (CUDA, bfloat16, needs torchao)")


def add_sampling_options(parser: argparse.ArgumentParser, *, music: bool, default_seconds: float | None = None) -> None:
    """The :class:`~m2ugen.settings.ChatSettings` fields as options, with its defaults."""
    d = DEFAULTS
    group = parser.add_argument_group("sampling")
    group.add_argument("--temperature", type=float, default=d.temperature,
                       help=f"LLM temperature; 0 = greedy (default {d.temperature:g})")
    group.add_argument("--top-p", type=float, default=d.top_p, help=f"LLM nucleus sampling mass (default {d.top_p:g})")
    group.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens,
                       help=f"longest text response (default {d.max_new_tokens})")
    group.add_argument("--seed", type=int, default=d.seed, help="seed for reproducible text and music")
    if music:
        what = (f"default {default_seconds:g}" if default_seconds else f"default: {DEFAULT_SECONDS:g} s, or for an "
                f"edit the source's length up to {MAX_DEFAULT_EDIT_SECONDS:g} s")
        group.add_argument("--seconds", type=float, default=default_seconds, help=f"music length in seconds ({what})")
        group.add_argument("--guidance-scale", type=float, default=d.guidance_scale,
                           help=f"decoder guidance (default {d.guidance_scale:g})")


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~m2ugen.settings.ChatSettings` fields given on the command line, validated."""
    values = dict(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed)
    if hasattr(args, "seconds"):
        values.update(seconds=args.seconds, guidance_scale=args.guidance_scale)
    ChatSettings(**values)
    return values


def check_message(text: str) -> str:
    """The user's message, refused before the model loads when it is empty."""
    if not text.strip():
        raise ConfigError("the message is empty: write what you want")
    return text


def load_assistant(args: argparse.Namespace, **kwargs: Any):
    """The :class:`~m2ugen.assistant.Assistant` named by ``--model DIR`` or ``--demo``."""
    from m2ugen.assistant import Assistant

    if not args.demo and not Path(args.model).is_dir():
        what = "is a file, not a model folder" if Path(args.model).exists() else "model folder not found"
        raise CheckpointError(f"{args.model}: {what} (give the folder holding config.json and model.safetensors)")
    print("loading the model ...", file=sys.stderr, flush=True)
    kwargs.setdefault("quantize", args.quantize)
    if args.demo:
        assistant = Assistant.demo(progress=True, **kwargs)
        if assistant.untrained:
            return assistant
        where = "the bundled m2ugen-mini"
    else:
        assistant = Assistant.from_pretrained(args.model, device=args.device, progress=True, **kwargs)
        where = args.model
    cfg, llama = assistant.model.config, assistant.model.llm.model.config
    music = "ABC scores" if cfg.music_outputs == "score" else f"decoder {cfg.decoder}"
    print(f"loaded {where}: {cfg.name}, LLaMA {llama.num_hidden_layers} layers x {llama.hidden_size} "
          f"(LoRA rank {cfg.lora_rank}), {music}, {cfg.dtype}", file=sys.stderr, flush=True)
    return assistant


def load_audio_file(path: str) -> Audio:
    """The file's audio, checked, at its own rate (each consumer resamples once from it)."""
    from m2ugen.media import read_audio

    return read_audio(path)


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
    problem = folder_problem(path.parent)
    if problem:
        raise ConfigError(f"{path}: cannot be written ({problem})")
    return path


def save_audio(audio: Audio, path: Path, overwrite: bool) -> None:
    audio.save(path, overwrite=overwrite)
    print(f"wrote {path} ({audio.duration:.2f} s, {audio.sample_rate} Hz)", file=sys.stderr)


def save_score(reply: Any, audio_path: Path, overwrite: bool) -> None:
    """Beside the audio of a score reply (``reply.abc`` and ``reply.midi_path`` set): its ``.abc`` and
    ``.mid`` files, under the audio's name (the MIDI file is moved when it is in the same folder)."""
    import os
    import shutil

    from m2ugen.files import write_atomically

    abc_path, midi_path = audio_path.with_suffix(".abc"), audio_path.with_suffix(".mid")
    for path in (abc_path, midi_path):
        check_output(path, overwrite, None)
    write_atomically(abc_path, lambda tmp: tmp.write_text(reply.abc, encoding="utf-8"), "ABC")
    if reply.midi_path.parent.resolve() == midi_path.parent.resolve():
        os.replace(reply.midi_path, midi_path)
    else:
        write_atomically(midi_path, lambda tmp: shutil.copyfile(reply.midi_path, tmp), "MIDI")
    print(f"wrote {abc_path} and {midi_path}", file=sys.stderr)


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

