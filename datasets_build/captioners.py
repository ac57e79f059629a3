"""Captioners: media files in, one line of text per file out, all behind one small protocol.

Implementations: our own :class:`~m2ugen.assistant.Assistant` for music (the original used
MU-LLaMA), any local transformers image captioner (BLIP-style, or a VisionEncoderDecoder), and a
VisionEncoderDecoder video captioner (VideoMAE/TimeSformer encoder + GPT-2 decoder). Models are
read from local directories only. :class:`CaptionCache` persists every caption as soon as it is
made, so a resumed build never captions the same item twice.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from datasets_build.engine import Failure
from datasets_build.manifest import JsonlAppender, load_index
from m2ugen.errors import CheckpointError, ConfigError, DataError, M2UGenError

# The question the original asked MU-LLaMA for every music caption.
MUSIC_CAPTION_QUESTION = "Describe the music in detail including details such as instruments used, tempo and mood of the song"


@runtime_checkable
class Captioner(Protocol):
    """Anything with a ``name`` and ``caption(paths) -> one string per path``.

    ``caption`` may raise :class:`~m2ugen.errors.M2UGenError` (e.g. ``MediaError``) for bad input;
    :class:`CaptionCache` then retries the batch item by item to find the culprit.
    """

    name: str

    def caption(self, items: Sequence[Path]) -> list[str]: ...


class AssistantCaptioner:
    """Music captions from our :class:`~m2ugen.assistant.Assistant`, one fresh conversation per clip.

    ``settings`` are :class:`~m2ugen.assistant.ChatSettings` fields; the default temperature 0.4 is
    the one the original used with MU-LLaMA.
    """

    def __init__(self, assistant: Any, *, question: str = MUSIC_CAPTION_QUESTION, name: str = "assistant",
                 **settings: Any) -> None:
        self.assistant = assistant
        self.question = question
        self.name = name
        self.settings = {"max_new_tokens": 256, "temperature": 0.4, "seed": 0, **settings}

    @classmethod
    def from_pretrained(cls, path: Path, *, device: str = "cpu", **settings: Any) -> AssistantCaptioner:
        """Load the assistant from a local checkpoint directory (``Assistant.from_pretrained``)."""
        from m2ugen.assistant import Assistant

        return cls(Assistant.from_pretrained(path, device=device), name=f"assistant:{Path(path).name}", **settings)

    def caption(self, items: Sequence[Path]) -> list[str]:
        captions = []
        for path in items:
            self.assistant.reset()
            reply = self.assistant.chat(self.question, audio=str(path), task="answer", **self.settings)
            captions.append(reply.text.strip())
        return captions


def _require_dir(model_dir: Path, what: str) -> Path:
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(f"{model_dir}: not a {what} directory (no config.json)")
    return model_dir


class ImageCaptioner:
    """Captions images with a local transformers model: BLIP-style (prompt-prefixed) or VisionEncoderDecoder.

    The original used BLIP with the prefix "the image shows"; generation settings here are passed
    for real (the original defined ``num_beams=4`` but never used it).
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "cpu",
        prompt: str | None = "the image shows",
        max_new_tokens: int = 60,
        num_beams: int = 4,
    ) -> None:
        import torch
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer
        from transformers import VisionEncoderDecoderModel

        model_dir = _require_dir(model_dir, "image captioner")
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        self.is_encoder_decoder = config.model_type == "vision-encoder-decoder"
        if self.is_encoder_decoder:
            self.model = VisionEncoderDecoderModel.from_pretrained(model_dir, local_files_only=True)
            self.image_processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            self.prompt = None  # a VisionEncoderDecoder has no text prefix input
        else:
            self.model = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True)
            self.processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
            self.prompt = prompt
        self.model.to(device).eval()
        self.device = device
        self.generate_kwargs = {"max_new_tokens": max_new_tokens, "num_beams": num_beams}
        self.name = f"image:{model_dir.name}"
        self._torch = torch

    def caption(self, items: Sequence[Path]) -> list[str]:
        from m2ugen.media import load_image

        images = [load_image(path) for path in items]
        with self._torch.inference_mode():
            if self.is_encoder_decoder:
                pixels = self.image_processor(images, return_tensors="pt").pixel_values.to(self.device)
                tokens = self.model.generate(pixel_values=pixels, **self.generate_kwargs)
                return [text.strip() for text in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]
            text = [self.prompt] * len(images) if self.prompt else None
            inputs = self.processor(images=images, text=text, return_tensors="pt").to(self.device)
            tokens = self.model.generate(**inputs, **self.generate_kwargs)
            return [text.strip() for text in self.processor.batch_decode(tokens, skip_special_tokens=True)]


class VideoCaptioner:
    """Captions videos with a local VisionEncoderDecoder (VideoMAE / TimeSformer encoder, GPT-2-style decoder).

    Frames: the encoder's ``num_frames`` (config), spaced evenly over the whole clip by
    :func:`m2ugen.media.load_video`, as the original did.
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "cpu",
        max_new_tokens: int = 100,
        min_new_tokens: int = 10,
        num_beams: int = 4,
    ) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

        model_dir = _require_dir(model_dir, "video captioner")
        self.model = VisionEncoderDecoderModel.from_pretrained(model_dir, local_files_only=True).to(device).eval()
        self.num_frames = int(getattr(self.model.config.encoder, "num_frames", 8))
        self.image_processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.device = device
        self.generate_kwargs = {"max_new_tokens": max_new_tokens, "min_new_tokens": min_new_tokens, "num_beams": num_beams}
        self.name = f"video:{model_dir.name}"
        self._torch = torch

    def caption(self, items: Sequence[Path]) -> list[str]:
        from m2ugen.media import load_video

        clips = [list(load_video(path, num_frames=self.num_frames)) for path in items]
        with self._torch.inference_mode():
            pixels = self.image_processor(clips, return_tensors="pt").pixel_values.to(self.device)
            tokens = self.model.generate(pixel_values=pixels, **self.generate_kwargs)
        return [text.strip() for text in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]


def load_plugin(spec: str) -> object:
    """``module:attribute`` -> the attribute, called with no arguments if it is a class or factory.

    Raises:
        ConfigError: if the module or attribute cannot be found.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"plugin {spec!r}: expected module:attribute")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"plugin {spec!r}: {err}") from None
    return target() if callable(target) else target


def load_captioner(spec: str, *, device: str = "cpu") -> Captioner:
    """Build a captioner from ``assistant:DIR``, ``image:DIR``, ``video:DIR`` or ``plugin:module:attr``.

    Raises:
        ConfigError: for an unknown kind or a plugin without ``name`` and ``caption``.
    """
    kind, _, rest = spec.partition(":")
    if kind == "assistant":
        return AssistantCaptioner.from_pretrained(Path(rest), device=device)
    if kind == "image":
        return ImageCaptioner(Path(rest), device=device)
    if kind == "video":
        return VideoCaptioner(Path(rest), device=device)
    if kind == "plugin":
        captioner = load_plugin(rest)
        if not isinstance(captioner, Captioner):
            raise ConfigError(f"captioner {spec!r}: needs a 'name' attribute and a 'caption(paths)' method")
        return captioner
    raise ConfigError(f"captioner {spec!r}: expected assistant:DIR, image:DIR, video:DIR or plugin:module:attr")


class CaptionCache:
    """Captions of one role (e.g. ``music``) for one shard, persisted in ``cache/<role>.jsonl``.

    :meth:`get` captions only ids that have no cached caption from the same captioner, appends the
    new ones immediately, and isolates bad items: if a batch call raises ``M2UGenError``, the batch
    is retried one item at a time and the failing items are returned as failures.
    """

    def __init__(self, captioner: Captioner, path: Path, *, role: str) -> None:
        self.captioner = captioner
        self.role = role
        self.captions = {
            key: entry["caption"] for key, entry in load_index(path).items() if entry.get("captioner") == captioner.name
        }
        self._log = JsonlAppender(path)

    def close(self) -> None:
        self._log.close()

    def _checked(self, paths: list[Path], captions: list[str]) -> list[str]:
        if len(captions) != len(paths):
            raise DataError(f"captioner {self.captioner.name} returned {len(captions)} captions for {len(paths)} inputs")
        return [str(text).strip() for text in captions]

    def get(self, items: Sequence[tuple[str, Path]]) -> tuple[dict[str, str], list[Failure]]:
        """Captions for ``(id, path)`` pairs, and failures for those that could not be captioned.

        Raises:
            DataError: the captioner returned a different number of captions than inputs.
        """
        todo = [(key, path) for key, path in items if key not in self.captions]
        failures: list[Failure] = []
        if todo:
            paths = [path for _, path in todo]
            try:
                batch = self.captioner.caption(paths)
            except M2UGenError:
                batch = None  # a bad input somewhere in the batch: find it below
            if batch is not None:
                made = list(zip(todo, self._checked(paths, batch)))
            else:
                made = []
                for key, path in todo:
                    try:
                        one = self.captioner.caption([path])
                    except M2UGenError as err:
                        failures.append(Failure(key, f"{self.role}_caption", str(err)))
                        continue
                    made.append(((key, path), self._checked([path], one)[0]))
            good = []
            for (key, path), text in made:
                if text:
                    self.captions[key] = text
                    good.append({"id": key, "caption": text, "captioner": self.captioner.name, "path": str(path)})
                else:
                    failures.append(Failure(key, f"{self.role}_caption", f"captioner {self.captioner.name} returned empty text"))
            self._log.append(good)
        return {key: self.captions[key] for key, _ in items if key in self.captions}, failures
