"""MusicGen (transformers ``MusicgenForConditionalGeneration``) as a :class:`MusicDecoder`.

Conditioning: T5 ``last_hidden_state`` states (B, Q, D) -- what the output projector predicts --
passed as ``encoder_outputs`` with the [cond; null] batch for classifier-free guidance and a dummy
``input_ids`` that only fixes the batch size. Caption mode tokenizes the
text and runs the checkpoint's own T5. Output longer than one window (30 s, or less when the
decoder's positions run out) is generated window by window, each prompted with the EnCodec codes
of the previous audio's tail; pieces are concatenated without crossfade and the total is trimmed to
exactly the requested length. ``source_audio`` makes the first window a continuation of the
source's tail (plain MusicGen cannot take a melody; see ``musicgen_melody`` for real editing).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from m2ugen.audio import Audio
from m2ugen.decoders.base import (DecoderSettings, SourceAudio, check_conditioning, load_sources, local_dir,
                                  num_output_samples)
from m2ugen.errors import CheckpointError, ConfigError
from m2ugen.seeding import seeded


class _CodebookSpecialTokens(logging.Filter):
    """MusicGen's pad/bos/decoder-start id is the codebook size, one past its vocabulary, by design;
    transformers' config check warns about that on every build. Drop exactly that warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("within the vocabulary" in message and
                    any(f"config: {name} " in message for name in ("pad_token_id", "bos_token_id",
                                                                   "decoder_start_token_id")))


logging.getLogger("transformers.configuration_utils").addFilter(_CodebookSpecialTokens())

# A window's inputs, given the window's place in the output: (first sample, number of samples).
InputsFn = Callable[[int, int], dict[str, Any]]


@dataclass(frozen=True)
class MusicGenSettings(DecoderSettings):
    """How the wrapper drives a MusicGen checkpoint (stored as ``m2ugen_decoder.json``)."""

    text_length: int = 128          # T5 tokens per caption: M2UGen pads/truncates to 128 (REFERENCE §1.7)
    max_window_seconds: float = 30.0  # MusicGen was trained on 30 s clips
    prompt_seconds: float = 10.0    # tail of the previous window that prompts the next (at most half a window)
    do_sample: bool = True          # MusicGen's released generation config: sampling with top-k 250
    top_k: int = 250
    temperature: float = 1.0

    def __post_init__(self) -> None:
        for name in ("text_length", "top_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"MusicGenSettings.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_window_seconds", "prompt_seconds", "temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"MusicGenSettings.{name} must be > 0, got {getattr(self, name)}")


class MusicGenDecoder:
    """MusicGen driven by precomputed T5-space conditioning (B, Q, D) or by captions."""

    kind = "musicgen"
    supports_source_audio = True

    def __init__(self, model: Any, tokenizer: Any | None = None, settings: MusicGenSettings | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.settings = settings or MusicGenSettings()
        codec = model.config.audio_encoder
        self.sample_rate: int = int(codec.sampling_rate)
        self.hop_length: int = int(np.prod(codec.upsampling_ratios))
        self.frame_rate: float = self.sample_rate / self.hop_length  # EnCodec frames per second (50 at 32 kHz)
        self.num_codebooks: int = int(model.config.decoder.num_codebooks)
        self.channels: int = int(model.config.decoder.audio_channels)
        self.conditioning_shape: tuple[int, int] = (self.settings.text_length, int(model.config.text_encoder.hidden_size))

    # --- loading ----------------------------------------------------------------------------

    @staticmethod
    def _model_class() -> Any:
        from transformers import MusicgenForConditionalGeneration

        return MusicgenForConditionalGeneration

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, settings: MusicGenSettings | None = None,
                        device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> "MusicGenDecoder":
        """Load a local checkpoint folder (HF layout: config.json, weights, optional tokenizer)."""
        from transformers import AutoTokenizer

        path = local_dir(path)
        try:
            model = cls._model_class().from_pretrained(path, local_files_only=True, dtype=dtype).to(device)
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{path}: cannot load {cls.kind} ({err})") from err
        has_tokenizer = any((path / name).exists() for name in ("tokenizer.json", "spiece.model", "tokenizer_config.json"))
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True) if has_tokenizer else None
        return cls(model, tokenizer, settings or MusicGenSettings.load(path))

    def save_pretrained(self, path: str | os.PathLike) -> None:
        path = Path(path)
        self.model.save_pretrained(path)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(path)
        self.settings.save(path)

    # --- conditioning -----------------------------------------------------------------------

    def _tokenize(self, texts: Sequence[str]) -> Any:
        if self.tokenizer is None:
            raise ConfigError(f"this {self.kind} checkpoint has no tokenizer, so caption mode is unavailable")
        if isinstance(texts, str):
            texts = [texts]
        return self.tokenizer(list(texts), padding="max_length", max_length=self.settings.text_length,
                              truncation=True, return_tensors="pt").to(self.model.device)

    @torch.no_grad()
    def conditioning_for_captions(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 states of the captions, padded to ``text_length``: (B, Q, D) states and (B, Q, D) mask."""
        tokens = self._tokenize(texts)
        states = self.model.text_encoder(input_ids=tokens.input_ids,
                                         attention_mask=tokens.attention_mask).last_hidden_state  # (B, Q, D)
        mask = tokens.attention_mask[..., None].to(states.dtype).expand_as(states)
        return states, mask.contiguous()

    # --- generation -------------------------------------------------------------------------

    def generate(self, conditioning: torch.Tensor, seconds: float, *, mask: torch.Tensor | None = None,
                 guidance_scale: float = 3.0, seed: int | None = None,
                 source_audio: SourceAudio | None = None) -> list[Audio]:
        """Music from T5-space states.

        Args:
            conditioning: (B, Q, D) T5 ``last_hidden_state`` values (``conditioning_shape``).
            seconds: output length; every clip has exactly ``round(seconds * sample_rate)`` samples.
            mask: (B, Q, D), 1 for real token rows; None: all rows real (the projector's output).
            guidance_scale: classifier-free guidance; <= 1 disables it.
            seed: seeds sampling; the same seed and inputs give the same audio.
            source_audio: continue from this audio's tail (one for all, or one per item).

        Returns:
            B :class:`Audio` clips at ``sample_rate``.
        """
        states, mask = check_conditioning(conditioning, mask, self.conditioning_shape)
        states = states.to(self.model.device, self.model.dtype)
        rows = mask.amax(dim=-1).to(self.model.device, torch.long)  # (B, Q)
        inputs = lambda start, length: self._embedding_inputs(states, rows, guidance_scale)  # noqa: E731
        return self._run(inputs, states.shape[0], seconds, guidance_scale, seed, source_audio)

    def caption_generate(self, texts: Sequence[str], seconds: float, *, guidance_scale: float = 3.0,
                         seed: int | None = None, source_audio: SourceAudio | None = None) -> list[Audio]:
        """Music prompted by captions through the checkpoint's tokenizer and T5 (the released M2UGen path)."""
        tokens = self._tokenize(texts)
        inputs = lambda start, length: {"input_ids": tokens.input_ids, "attention_mask": tokens.attention_mask}  # noqa: E731
        return self._run(inputs, tokens.input_ids.shape[0], seconds, guidance_scale, seed, source_audio)

    def _embedding_inputs(self, states: torch.Tensor, rows: torch.Tensor, guidance_scale: float) -> dict[str, Any]:
        batch = states.shape[0]
        if guidance_scale > 1:  # [cond; null], as generate() builds it for text (REFERENCE §4)
            states = torch.cat([states, torch.zeros_like(states)], dim=0)  # (2B, Q, D)
            rows = torch.cat([rows, torch.zeros_like(rows)], dim=0)  # (2B, Q)
        dummy = torch.ones(batch, 1, dtype=torch.long, device=states.device)  # only fixes batch size B
        return {"input_ids": dummy, "encoder_outputs": (states,), "attention_mask": rows}

    def _prefix_positions(self) -> int:
        """Decoder positions taken by the conditioning (0: plain MusicGen cross-attends to it)."""
        return 0

    def window_frames(self) -> int:
        """Most EnCodec frames (prompt + new) one generate call may produce."""
        positions = int(self.model.config.decoder.max_position_embeddings)
        # A call of T prompt + F new frames uses T + F + num_codebooks decoder positions (delay pattern).
        by_positions = positions - self.num_codebooks - self._prefix_positions()
        frames = min(int(self.settings.max_window_seconds * self.frame_rate), by_positions)
        if frames < 2:
            raise ConfigError(f"{self.kind}: max_position_embeddings={positions} leaves no room for audio frames")
        return frames

    def _initial_prompt(self, source_audio: SourceAudio | None, batch: int) -> torch.Tensor | None:
        if source_audio is None:
            return None
        sources = load_sources(source_audio, batch, self.sample_rate)
        length = min(len(s) for s in sources)
        tails = np.stack([s[len(s) - length:] for s in sources])  # (B, S)
        return torch.from_numpy(tails)[:, None, :].repeat(1, self.channels, 1)  # (B, C, S)

    def _run(self, inputs: InputsFn, batch: int, seconds: float, guidance_scale: float, seed: int | None,
             source_audio: SourceAudio | None) -> list[Audio]:
        """Generate ``seconds`` of audio in windows; returns B clips of the exact length."""
        n_samples = num_output_samples(seconds, self.sample_rate)
        total = math.ceil(n_samples / self.hop_length)
        window = self.window_frames()
        prompt_cap = max(1, min(int(self.settings.prompt_seconds * self.frame_rate), window // 2))
        prompt = self._initial_prompt(source_audio, batch)
        plan, produced, prompt_frames = [], 0, 0 if prompt is None else min(prompt.shape[-1] // self.hop_length, prompt_cap)
        while produced < total:
            plan.append(min(window - prompt_frames, total - produced))
            produced += plan[-1]
            prompt_frames = min(produced, prompt_cap)
        pieces: list[torch.Tensor] = []
        start = 0
        with seeded(seed), torch.no_grad():
            for new_frames in tqdm(plan, desc=f"{self.kind} windows", unit="window", disable=len(plan) < 2):
                wav = self._generate_window(inputs(start, new_frames * self.hop_length), prompt, new_frames,
                                            guidance_scale, prompt_cap)  # (B, C, new_frames * hop)
                pieces.append(wav)
                start += wav.shape[-1]
                prompt = torch.cat(pieces[-2:], dim=-1)  # the tail is at most half a window long
        audio = torch.cat(pieces, dim=-1)[..., :n_samples].float().cpu().numpy()  # (B, C, S)
        return [Audio(a[0] if self.channels == 1 else a, self.sample_rate) for a in audio]

    def _encode_prompt(self, prompt: torch.Tensor) -> torch.Tensor:
        """(B, C, S) audio -> (B * num_codebooks, T) EnCodec codes, as MusicGen's decoder reads them."""
        codec = self.model.audio_encoder
        prompt = prompt.to(self.model.device, codec.dtype)
        if self.channels == 1:
            codes = codec.encode(prompt).audio_codes[0]  # (B, K, T)
        else:  # stereo checkpoints interleave left and right codebooks
            left = codec.encode(prompt[:, :1]).audio_codes[0]
            right = codec.encode(prompt[:, 1:2]).audio_codes[0]
            codes = torch.stack([left, right], dim=2).flatten(1, 2)  # (B, 2K', T)
        return codes.reshape(-1, codes.shape[-1])

    def _generate_window(self, inputs: dict[str, Any], prompt: torch.Tensor | None, new_frames: int,
                         guidance_scale: float, prompt_cap: int) -> torch.Tensor:
        """One generate call; returns only the new audio (B, C, new_frames * hop)."""
        kwargs = dict(inputs)
        prompt_frames = 0
        if prompt is not None:
            prompt_frames = min(prompt.shape[-1] // self.hop_length, prompt_cap)
        if prompt_frames > 0:
            tail = prompt[..., prompt.shape[-1] - prompt_frames * self.hop_length:]
            kwargs["decoder_input_ids"] = self._encode_prompt(tail)
        out = self.model.generate(
            **kwargs,
            max_new_tokens=new_frames + self.num_codebooks - 1,  # the delay pattern costs K - 1 steps
            guidance_scale=guidance_scale if guidance_scale > 1 else None,
            do_sample=self.settings.do_sample,
            top_k=self.settings.top_k,
            temperature=self.settings.temperature,
        )  # (B, C, (prompt_frames + new_frames) * hop)
        new = out[..., prompt_frames * self.hop_length:]
        if new.shape[-1] != new_frames * self.hop_length:
            raise RuntimeError(f"MusicGen returned {new.shape[-1]} samples, expected {new_frames * self.hop_length}")
        return new
