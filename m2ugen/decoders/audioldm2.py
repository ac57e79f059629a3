"""AudioLDM2 (diffusers ``AudioLDM2Pipeline``) as a :class:`MusicDecoder`.

Conditioning is one flat vector per item, (1, Q * D_t5 + G * D_gpt) -- (1, 137216) for
audioldm2-music, the released M2UGen projector's output (docs/original.md) -- split into
``prompt_embeds`` (B, Q, D_t5: Flan-T5 states) and ``generated_prompt_embeds`` (B, G, D_gpt: GPT-2
generated states). Sizes come from the pipeline's components. Guidance uses the pipeline's own
empty-prompt negatives, computed once and cached; a pipeline saved without tokenizers cannot make
them, so zeros are used and a warning says so.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from m2ugen.audio import Audio
from m2ugen.decoders.base import DecoderSettings, SourceAudio, check_conditioning, local_dir, num_output_samples
from m2ugen.errors import CheckpointError, ConfigError



@dataclass(frozen=True)
class AudioLDM2Settings(DecoderSettings):
    """How the wrapper drives an AudioLDM2 pipeline (stored as ``m2ugen_decoder.json``)."""

    text_length: int = 128            # Flan-T5 tokens: M2UGen pads every caption to 128 (REFERENCE §1.7)
    num_inference_steps: int = 200    # M2UGen's setting

    def __post_init__(self) -> None:
        for name in ("text_length", "num_inference_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"AudioLDM2Settings.{name} must be >= 1, got {getattr(self, name)}")


class ZeroNegativesWarning(UserWarning):
    """Guidance runs against zero embeddings because the pipeline has no tokenizers."""


class AudioLDM2Decoder:
    """AudioLDM2 driven by a flat projector vector or by captions."""

    kind = "audioldm2"
    supports_source_audio = False

    def __init__(self, pipe: Any, settings: AudioLDM2Settings | None = None) -> None:
        self.pipe = pipe
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                component.eval()  # pipelines built from parts start in training mode (dropout on)
        self.settings = settings or AudioLDM2Settings()
        self.sample_rate: int = int(pipe.vocoder.config.sampling_rate)
        self.t5_dim: int = int(pipe.text_encoder_2.config.d_model)
        self.gpt_dim: int = int(pipe.language_model.config.hidden_size)
        self.gpt_tokens: int = int(getattr(pipe.language_model.config, "max_new_tokens", None) or 8)
        self.t5_length: int = self.settings.text_length
        self.conditioning_shape: tuple[int, int] = (1, self.t5_length * self.t5_dim + self.gpt_tokens * self.gpt_dim)
        self._negatives: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def has_tokenizers(self) -> bool:
        return self.pipe.tokenizer is not None and self.pipe.tokenizer_2 is not None

    # --- loading ----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, settings: AudioLDM2Settings | None = None,
                        device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> "AudioLDM2Decoder":
        """Load a local pipeline folder (``AudioLDM2Pipeline.save_pretrained`` layout)."""
        from diffusers import AudioLDM2Pipeline

        path = local_dir(path)
        try:
            pipe = AudioLDM2Pipeline.from_pretrained(path, local_files_only=True, torch_dtype=dtype)
        except (OSError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: cannot load audioldm2 ({err})") from err
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe.to(device), settings or AudioLDM2Settings.load(path))

    def save_pretrained(self, path: str | os.PathLike) -> None:
        path = Path(path)
        self.pipe.save_pretrained(path)
        self.settings.save(path)

    # --- conditioning -----------------------------------------------------------------------

    def split(self, conditioning: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, Q*D_t5 + G*D_gpt) -> prompt_embeds (B, Q, D_t5), generated_prompt_embeds (B, G, D_gpt)."""
        flat = conditioning.reshape(conditioning.shape[0], -1)
        t5_size = self.t5_length * self.t5_dim
        prompt = flat[:, :t5_size].reshape(-1, self.t5_length, self.t5_dim)
        generated = flat[:, t5_size:].reshape(-1, self.gpt_tokens, self.gpt_dim)
        return prompt, generated

    def join(self, prompt_embeds: torch.Tensor, generated_prompt_embeds: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`split`: -> (B, 1, Q*D_t5 + G*D_gpt)."""
        return torch.cat([prompt_embeds.flatten(1), generated_prompt_embeds.flatten(1)], dim=1)[:, None, :]

    @torch.no_grad()
    def conditioning_for_captions(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The pipeline's own embeddings of the captions, T5 padded to ``text_length`` (as M2UGen).

        Returns:
            states (B, 1, N) and mask (B, 1, N): 0 on the T5 padding rows, 1 elsewhere.
        """
        if not self.has_tokenizers:
            raise ConfigError("this AudioLDM2 pipeline has no tokenizers, so captions cannot be encoded")
        pipe, device = self.pipe, self.pipe.device
        texts = [texts] if isinstance(texts, str) else list(texts)
        t5_tokens = pipe.tokenizer_2(texts, padding="max_length", max_length=self.t5_length, truncation=True,
                                     return_tensors="pt").to(device)
        t5 = pipe.text_encoder_2(t5_tokens.input_ids, attention_mask=t5_tokens.attention_mask)[0]  # (B, Q, D_t5)
        clap_tokens = pipe.tokenizer(texts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                                     truncation=True, return_tensors="pt").to(device)
        clap = pipe.text_encoder.get_text_features(clap_tokens.input_ids, attention_mask=clap_tokens.attention_mask)
        clap = getattr(clap, "pooler_output", clap)[:, None, :]  # (B, 1, D_clap)
        projected = pipe.projection_model(hidden_states=clap, hidden_states_1=t5,
                                          attention_mask=torch.ones(clap.shape[:2], dtype=torch.long, device=device),
                                          attention_mask_1=t5_tokens.attention_mask)
        generated = pipe.generate_language_model(projected.hidden_states, attention_mask=projected.attention_mask,
                                                 max_new_tokens=self.gpt_tokens)  # (B, G, D_gpt)
        states = self.join(t5, generated)
        t5_mask = t5_tokens.attention_mask[..., None].to(states.dtype).expand(-1, -1, self.t5_dim)
        mask = self.join(t5_mask, torch.ones_like(generated))
        return states, mask

    def negatives(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cached (1, Q, D_t5) prompt, (1, Q) mask and (1, G, D_gpt) generated embeds of the empty prompt."""
        if self._negatives is None:
            pipe, device = self.pipe, self.pipe.device
            if self.has_tokenizers:
                dtype = pipe.text_encoder_2.dtype
                with torch.no_grad():
                    prompt, mask, generated = pipe.encode_prompt(
                        [""], device, 1, True,
                        prompt_embeds=torch.zeros(1, self.t5_length, self.t5_dim, device=device, dtype=dtype),
                        generated_prompt_embeds=torch.zeros(1, self.gpt_tokens, self.gpt_dim, device=device, dtype=dtype),
                        attention_mask=torch.ones(1, self.t5_length, dtype=torch.long, device=device),
                        max_new_tokens=self.gpt_tokens,
                    )  # [negative; positive] along the batch
                self._negatives = (prompt[:1], mask[:1], generated[:1])
            else:
                warnings.warn("AudioLDM2 pipeline has no tokenizers: guidance uses zero negative embeddings instead "
                              "of the empty prompt's", ZeroNegativesWarning, stacklevel=3)
                dtype = pipe.text_encoder_2.dtype
                self._negatives = (torch.zeros(1, self.t5_length, self.t5_dim, device=device, dtype=dtype),
                                   torch.ones(1, self.t5_length, dtype=torch.long, device=device),
                                   torch.zeros(1, self.gpt_tokens, self.gpt_dim, device=device, dtype=dtype))
        return self._negatives

    # --- generation -------------------------------------------------------------------------

    def generate(self, conditioning: torch.Tensor, seconds: float, *, mask: torch.Tensor | None = None,
                 guidance_scale: float = 3.0, seed: int | None = None,
                 source_audio: SourceAudio | None = None) -> list[Audio]:
        """Music from a flat conditioning vector (B, 1, N); see :meth:`split` for its layout.

        ``mask`` (B, 1, N): 1 for real values; only its T5 rows matter (padding rows are masked in
        the UNet's cross-attention). None: all real.
        """
        if source_audio is not None:
            raise ConfigError("AudioLDM2 cannot condition on source audio; use musicgen-melody to edit music")
        conditioning, mask = check_conditioning(conditioning, mask, self.conditioning_shape)
        device, dtype = self.pipe.device, self.pipe.text_encoder_2.dtype
        prompt, generated = self.split(conditioning.to(device, dtype))
        t5_mask = self.split(mask)[0].amax(dim=-1).to(device, torch.long)  # (B, Q)
        kwargs: dict[str, Any] = {"prompt_embeds": prompt, "generated_prompt_embeds": generated,
                                  "attention_mask": t5_mask}
        if guidance_scale > 1:
            neg_prompt, neg_mask, neg_generated = self.negatives()
            batch = prompt.shape[0]
            kwargs.update(negative_prompt_embeds=neg_prompt.expand(batch, -1, -1),
                          negative_attention_mask=neg_mask.expand(batch, -1),
                          negative_generated_prompt_embeds=neg_generated.expand(batch, -1, -1))
        return self._call(kwargs, prompt.shape[0], seconds, guidance_scale, seed)

    def caption_generate(self, texts: Sequence[str], seconds: float, *, guidance_scale: float = 3.0,
                         seed: int | None = None, source_audio: SourceAudio | None = None) -> list[Audio]:
        """Music prompted by captions through the stock pipeline (the released M2UGen path)."""
        if source_audio is not None:
            raise ConfigError("AudioLDM2 cannot condition on source audio; use musicgen-melody to edit music")
        if not self.has_tokenizers:
            raise ConfigError("this AudioLDM2 pipeline has no tokenizers, so caption mode is unavailable")
        texts = [texts] if isinstance(texts, str) else list(texts)
        return self._call({"prompt": texts}, len(texts), seconds, guidance_scale, seed)

    def _call(self, kwargs: dict[str, Any], batch: int, seconds: float, guidance_scale: float,
              seed: int | None) -> list[Audio]:
        n_samples = num_output_samples(seconds, self.sample_rate)
        generator = None if seed is None else torch.Generator(device="cpu").manual_seed(seed)
        with torch.no_grad():
            out = self.pipe(**kwargs, audio_length_in_s=seconds, guidance_scale=guidance_scale,
                            num_inference_steps=self.settings.num_inference_steps, generator=generator,
                            num_waveforms_per_prompt=1, output_type="np").audios  # (B, S')
        audio = np.zeros((batch, n_samples), dtype=np.float32)
        keep = min(n_samples, out.shape[-1])
        audio[:, :keep] = out[:, :keep]  # the pipeline rounds the length down to whole samples
        return [Audio(a, self.sample_rate) for a in audio]
