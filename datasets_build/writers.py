"""Instruction writers: turn captions into a (user instruction, assistant response) pair.

Two implementations behind :class:`InstructionWriter`: a deterministic :class:`TemplateWriter`
and :class:`ChatLMWriter`, any local causal LM with a chat template (the original used MPT-7B-chat
with the system prompts paraphrased below).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from datasets_build.captioners import load_plugin
from m2ugen.errors import CheckpointError, ConfigError

RequestKind = Literal["edit", "image", "video"]


@dataclass(frozen=True)
class InstructionRequest:
    """What to write about.

    ``context`` is the source music caption (edit) or the image / video caption; ``target`` is the
    caption of the music the assistant answers with.
    """

    kind: RequestKind
    context: str
    target: str


@dataclass(frozen=True)
class Instruction:
    instruction: str
    response: str


@runtime_checkable
class InstructionWriter(Protocol):
    """Anything with a ``name`` and ``write(requests) -> one Instruction per request``."""

    name: str

    def write(self, requests: Sequence[InstructionRequest]) -> list[Instruction]: ...


def _clause(caption: str) -> str:
    """A caption as a lower-case clause without a final full stop."""
    text = " ".join(caption.split()).rstrip(" .")
    return text[:1].lower() + text[1:] if text else text


class TemplateWriter:
    """Deterministic instructions from fixed templates (tests, baselines, or when no LM is at hand)."""

    name = "template"

    def write(self, requests: Sequence[InstructionRequest]) -> list[Instruction]:
        out = []
        for request in requests:
            target = _clause(request.target)
            if request.kind == "edit":
                instruction = f"Change this music so that it becomes {target}, keeping its tempo and key."
            else:
                instruction = f"Generate a music for the {request.kind} that fits it: {_clause(request.context)}."
            out.append(Instruction(instruction, f"Here is a music that is {target}."))
        return out


# System prompts for the two turns, after the original's MPT prompts.
_INSTRUCTION_SYSTEM = {
    "edit": (
        "You are given a description of an input music and of a target music. Write a single line "
        "instruction that asks to change the input music into the target music, based on the descriptions."
    ),
    "image": (
        "You are given a description of an image and of a music. Write a single line instruction of the "
        "form 'Generate a music for the image that is ....', based on the image."
    ),
    "video": (
        "You are given a description of a video and of a music. Write a single line instruction of the "
        "form 'Generate a music for the video that is ....', based on the video."
    ),
}
_RESPONSE_SYSTEM = (
    "You are given a description of a music. Write a single line answer of the form "
    "'Here is a music that is ....', based on the description."
)


def _user_message(request: InstructionRequest) -> str:
    if request.kind == "edit":
        return f"Input: {request.context}\nTarget: {request.target}"
    return f"Music: {request.target}\n{request.kind.capitalize()}: {request.context}"


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = re.sub(r"\s+", " ", line).strip()
        if line:
            return line
    return ""


class ChatLMWriter:
    """Instructions from any local causal LM whose tokenizer has a chat template.

    Batched left-padded generation; the first non-empty line of each answer is kept (the original kept
    the last line of the whole decoded conversation). An empty answer is returned as is, and the
    builder records that item as a failure.
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "cpu",
        max_new_tokens: int = 96,
        temperature: float = 0.5,
        top_k: int = 4,
        seed: int = 0,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise CheckpointError(f"{model_dir}: not a causal LM directory (no config.json)")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, padding_side="left")
        if not getattr(self.tokenizer, "chat_template", None):
            raise CheckpointError(f"{model_dir}: the tokenizer has no chat template")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).to(device).eval()
        self.device = device
        sampling = {"do_sample": True, "temperature": temperature, "top_k": top_k} if temperature > 0 else {"do_sample": False}
        self.generate_kwargs = {"max_new_tokens": max_new_tokens, **sampling}
        self.seed = seed
        self.name = f"lm:{model_dir.name}"
        self._torch = torch

    def _generate(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        prompts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        from m2ugen.seeding import seeded

        with seeded(self.seed), self._torch.inference_mode():  # transformers samples from the global RNG
            tokens = self.model.generate(**batch, pad_token_id=self.tokenizer.pad_token_id, **self.generate_kwargs)
        new = tokens[:, batch["input_ids"].shape[1]:]
        return [_first_line(text) for text in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def write(self, requests: Sequence[InstructionRequest]) -> list[Instruction]:
        instructions = self._generate([
            [{"role": "system", "content": _INSTRUCTION_SYSTEM[r.kind]}, {"role": "user", "content": _user_message(r)}]
            for r in requests
        ])
        responses = self._generate([
            [{"role": "system", "content": _RESPONSE_SYSTEM}, {"role": "user", "content": r.target}] for r in requests
        ])
        return [Instruction(i, r) for i, r in zip(instructions, responses)]


def load_writer(spec: str, *, device: str = "cpu") -> InstructionWriter:
    """Build a writer from ``template``, ``lm:DIR`` or ``plugin:module:attr``.

    Raises:
        ConfigError: for an unknown kind or a plugin without ``name`` and ``write``.
    """
    kind, _, rest = spec.partition(":")
    if kind == "template" and not rest:
        return TemplateWriter()
    if kind == "lm":
        return ChatLMWriter(Path(rest), device=device)
    if kind == "plugin":
        writer = load_plugin(rest)
        if not isinstance(writer, InstructionWriter):
            raise ConfigError(f"writer {spec!r}: needs a 'name' attribute and a 'write(requests)' method")
        return writer
    raise ConfigError(f"writer {spec!r}: expected template, lm:DIR or plugin:module:attr")
