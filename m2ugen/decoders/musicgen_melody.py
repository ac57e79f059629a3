"""MusicGen-melody (``MusicgenMelodyForConditionalGeneration``): editing that keeps the source's melody.

The source audio's chroma (one-hot argmax pitch class per frame) and the LLM's T5-space
conditioning form the decoder's prefix: ``[audio_enc_to_dec_proj(chroma); enc_to_dec_proj(T5) * mask]``,
with the [cond; null] batch for guidance (null chroma = one-hot bin 0, null text = zeros), passed
as ``encoder_hidden_states`` with a dummy ``input_ids``.

The chroma is computed here with librosa, because transformers' ``MusicgenMelodyFeatureExtractor``
needs torchaudio, which cannot be installed next to the CPU torch (docs/original.md, dependency choices). It follows
that extractor: power STFT with a Hann window of ``n_fft`` samples, hop ``hop_length`` (16384 and
4096 at 32 kHz, i.e. 512 ms and 128 ms, scaled with the codec's rate), librosa's chroma filter bank
(tuning 0, starting at C), argmax per frame -> one-hot (T, 12).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from m2ugen.audio import Audio
from m2ugen.decoders.base import SourceAudio, check_conditioning, load_sources
from m2ugen.decoders.musicgen import MusicGenDecoder

CHROMA_HOP_SECONDS = 4096 / 32000  # 128 ms, as MusicGen-melody's feature extractor at 32 kHz
CHROMA_FFT_HOPS = 4                # n_fft = 4 hops (16384 at 32 kHz)


def chroma_hop_length(sample_rate: int) -> int:
    return int(round(CHROMA_HOP_SECONDS * sample_rate))


def chroma_features(samples: np.ndarray, sample_rate: int, num_chroma: int = 12) -> np.ndarray:
    """float32 (S,) mono audio -> float32 (T, num_chroma) one-hot argmax chroma, T = 1 + S // hop."""
    import librosa

    hop = chroma_hop_length(sample_rate)
    n_fft = CHROMA_FFT_HOPS * hop
    x = np.asarray(samples, dtype=np.float32)
    if len(x) < n_fft:  # as the reference extractor: centre-pad short audio up to one FFT window
        pad = n_fft - len(x)
        x = np.pad(x, (pad // 2, pad - pad // 2))
    power = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, window="hann", center=True,
                                pad_mode="reflect")) ** 2  # (F, T)
    bank = librosa.filters.chroma(sr=sample_rate, n_fft=n_fft, tuning=0.0, n_chroma=num_chroma)  # (12, F)
    winners = (bank @ power).argmax(axis=0)  # (T,)
    return np.eye(num_chroma, dtype=np.float32)[winners]


class MusicGenMelodyDecoder(MusicGenDecoder):
    """MusicGen-melody: conditioning as for MusicGen, plus the source audio's chroma when editing."""

    kind = "musicgen-melody"
    supports_source_audio = True

    @staticmethod
    def _model_class() -> Any:
        from transformers import MusicgenMelodyForConditionalGeneration

        return MusicgenMelodyForConditionalGeneration

    @property
    def chroma_length(self) -> int:
        return int(self.model.config.chroma_length)

    @property
    def num_chroma(self) -> int:
        return int(self.model.config.num_chroma)

    def _prefix_positions(self) -> int:
        return self.chroma_length + self.settings.text_length

    def chroma_for_span(self, sources: list[np.ndarray], start: int, length: int) -> torch.Tensor:
        """(B, T, num_chroma) chroma of each source over output samples [start, start + length).

        Sources shorter than the output loop; at most ``chroma_length`` frames are used, as the model
        truncates the rest.
        """
        length = min(length, (self.chroma_length - 1) * chroma_hop_length(self.sample_rate) + 1)
        positions = np.arange(start, start + length)
        chroma = np.stack([chroma_features(s[positions % len(s)], self.sample_rate, self.num_chroma) for s in sources])
        return torch.from_numpy(chroma).to(self.model.device, self.model.dtype)

    def _null_chroma(self, like: torch.Tensor) -> torch.Tensor:
        null = torch.zeros_like(like)
        null[..., 0] = 1
        return null

    def _sources(self, source_audio: SourceAudio | None, batch: int) -> list[np.ndarray] | None:
        return None if source_audio is None else load_sources(source_audio, batch, self.sample_rate)

    # --- generation -------------------------------------------------------------------------

    def generate(self, conditioning: torch.Tensor, seconds: float, *, mask: torch.Tensor | None = None,
                 guidance_scale: float = 3.0, seed: int | None = None,
                 source_audio: SourceAudio | None = None) -> list[Audio]:
        """As :meth:`MusicGenDecoder.generate`, but ``source_audio`` gives its chroma (melody and
        harmony) to every window, aligned in time, instead of being continued."""
        states, mask = check_conditioning(conditioning, mask, self.conditioning_shape)
        states = states.to(self.model.device, self.model.dtype)
        rows = mask.amax(dim=-1).to(self.model.device, states.dtype)  # (B, Q)
        sources = self._sources(source_audio, states.shape[0])

        def inputs(start: int, length: int) -> dict[str, Any]:
            chroma = None if sources is None else self.chroma_for_span(sources, start, length)
            return self._prefix_inputs(states, rows, chroma, guidance_scale)

        return self._run(inputs, states.shape[0], seconds, guidance_scale, seed, None)

    def caption_generate(self, texts: Sequence[str], seconds: float, *, guidance_scale: float = 3.0,
                         seed: int | None = None, source_audio: SourceAudio | None = None) -> list[Audio]:
        """Captions through the checkpoint's tokenizer and T5, plus the source's chroma if given."""
        tokens = self._tokenize(texts)
        sources = self._sources(source_audio, tokens.input_ids.shape[0])

        def inputs(start: int, length: int) -> dict[str, Any]:
            kwargs = {"input_ids": tokens.input_ids, "attention_mask": tokens.attention_mask}
            if sources is not None:
                kwargs["input_features"] = self.chroma_for_span(sources, start, length)
            return kwargs

        return self._run(inputs, tokens.input_ids.shape[0], seconds, guidance_scale, seed, None)

    def _prefix_inputs(self, states: torch.Tensor, rows: torch.Tensor, chroma: torch.Tensor | None,
                       guidance_scale: float) -> dict[str, Any]:
        """The fused prefix [chroma part; text part] (B or 2B, chroma_length + Q, H) for generate()."""
        model, batch = self.model, states.shape[0]
        text = model.enc_to_dec_proj(states) if hasattr(model, "enc_to_dec_proj") else states  # (B, Q, H)
        text = text * rows[..., None]
        if chroma is None:  # no melody: one frame of the null chroma, as the model's own text-only path
            chroma = self._null_chroma(torch.zeros(batch, 1, self.num_chroma, device=states.device, dtype=states.dtype))
        if guidance_scale > 1:
            text = torch.cat([text, torch.zeros_like(text)], dim=0)  # (2B, Q, H)
            chroma = torch.cat([chroma, self._null_chroma(chroma)], dim=0)  # (2B, T, 12)
        audio = model.audio_enc_to_dec_proj(chroma) if hasattr(model, "audio_enc_to_dec_proj") else chroma
        audio = audio.repeat(1, math.ceil(self.chroma_length / audio.shape[1]), 1)[:, : self.chroma_length]
        prefix = torch.cat([audio, text], dim=1)  # (B or 2B, chroma_length + Q, H)
        dummy = torch.ones(batch, 1, dtype=torch.long, device=states.device)  # only fixes batch size B
        return {"input_ids": dummy, "encoder_hidden_states": prefix}
