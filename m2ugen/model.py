"""M2UGen: frozen encoders -> adapters -> gated LLaMA -> [AUD] states -> output projector.

The music decoder is not part of this module (it is frozen and large); :class:`m2ugen.assistant.Assistant`
joins the two. Training batches (see :meth:`M2UGen.forward`) carry encoder features, so the frozen
encoders can run in a data loader or be cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import LogitsProcessorList, PreTrainedTokenizerBase

from adapters import ModalityAdapter
from m2ugen.audio import Audio
from m2ugen.checkpoints import WEIGHTS_NAME, load_config, load_trained, save_pretrained
from m2ugen.config import MODALITIES, M2UGenConfig
from m2ugen.encoders import ImageEncoder, MusicEncoder, VideoEncoder
from m2ugen.errors import CheckpointError, ConfigError
from m2ugen.llm import M2UGenLLM
from m2ugen.media import load_image, load_video, read_audio, resample
from m2ugen.projector import OutputProjector
from m2ugen.prompt import IGNORE_INDEX
from m2ugen.seeding import seeded
from m2ugen.tokenizer import load_tokenizer


@dataclass
class M2UGenOutput:
    loss: torch.Tensor
    ce_loss: torch.Tensor
    mse_loss: torch.Tensor
    logits: torch.Tensor
    conditioning: torch.Tensor | None = None  # projector output for samples with a target (K, Q, out)


@dataclass
class Generation:
    """One generated response."""

    token_ids: list[int]
    text: str
    aud_states: torch.Tensor | None  # (num_aud, D) last-layer states that predicted [AUD0..N-1]
    conditioning: torch.Tensor | None = field(default=None)  # (Q, out) decoder conditioning, if projected


def find_aud_run(tokens: Sequence[int], aud_ids: Sequence[int]) -> int | None:
    """Index of the first complete, in-order, contiguous run ``aud_ids`` in ``tokens``; None if absent."""
    n = len(aud_ids)
    first = aud_ids[0]
    for i, tok in enumerate(tokens):
        if tok == first and list(tokens[i:i + n]) == list(aud_ids):
            return i
    return None


def build_frozen_parts(config: M2UGenConfig) -> tuple[PreTrainedTokenizerBase, M2UGenLLM, MusicEncoder,
                                                       ImageEncoder, VideoEncoder]:
    """Tokenizer, LLM and the three encoders: from local directories, or random from ``*_config``."""
    llm = M2UGenLLM.from_config(config)
    tokenizer = load_tokenizer(config.tokenizer_path or config.llm_path, config.num_aud_tokens, llm.base_vocab_size)
    music_opts = dict(sample_rate=config.audio_sample_rate, window_seconds=config.mert_window_seconds,
                      window_batch=config.mert_window_batch)
    music = (MusicEncoder.from_pretrained(config.mert_path, **music_opts) if config.mert_path
             else MusicEncoder.from_config(config.mert_config, **music_opts))
    image = (ImageEncoder.from_pretrained(config.vit_path) if config.vit_path
             else ImageEncoder.from_config(config.vit_config))
    video = (VideoEncoder.from_pretrained(config.vivit_path) if config.vivit_path
             else VideoEncoder.from_config(config.vivit_config))
    return tokenizer, llm, music, image, video


class M2UGen(nn.Module):
    def __init__(self, config: M2UGenConfig, tokenizer: PreTrainedTokenizerBase, llm: M2UGenLLM,
                 music_encoder: MusicEncoder, image_encoder: ImageEncoder, video_encoder: VideoEncoder) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.llm = llm
        self.encoders = nn.ModuleDict({"audio": music_encoder, "image": image_encoder, "video": video_encoder})
        hidden = llm.model.config.hidden_size
        self.adapters = nn.ModuleDict({
            "audio": ModalityAdapter(music_encoder.num_layers, music_encoder.hidden_size, hidden,
                                     config.adapter_blocks),
            "image": ModalityAdapter(image_encoder.num_tokens, image_encoder.hidden_size, hidden,
                                     config.adapter_blocks),
            "video": ModalityAdapter(video_encoder.num_tokens, video_encoder.hidden_size, hidden,
                                     config.adapter_blocks),
        })
        self.projector = OutputProjector(hidden, config.projector)

    @classmethod
    def from_config(cls, config: M2UGenConfig) -> "M2UGen":
        """Build the network: frozen parts from their local directories (or random for ``*_config``)."""
        parts = build_frozen_parts(config)
        with seeded(1):  # the adapters' and projector's initial weights
            return cls(config, *parts)

    # --- parameters ----------------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Tunable parameters by kind: adapters, projector, gate, prefix_query, bias, norm, lora, new_tokens."""
        groups = self.llm.parameter_groups()
        groups["adapters"] = list(self.adapters.parameters())
        groups["projector"] = list(self.projector.parameters())
        return groups

    def set_trainable(self, kinds: Sequence[str]) -> int:
        """Make exactly the parameter groups ``kinds`` trainable; returns the trainable count."""
        groups = self.parameter_groups()
        unknown = set(kinds) - set(groups)
        if unknown:
            raise ConfigError(f"unknown parameter groups {sorted(unknown)}; known: {sorted(groups)}")
        for p in self.parameters():
            p.requires_grad_(False)
        for kind in kinds:
            for p in groups[kind]:
                p.requires_grad_(True)
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def device(self) -> torch.device:
        return self.projector.queries.device

    # --- encoders ------------------------------------------------------------------------------
    def encode_audio(self, waveforms: Sequence[np.ndarray]) -> torch.Tensor:
        """B mono waveforms at ``config.audio_sample_rate`` -> (B, num_layers, hidden) MERT features."""
        return self.encoders["audio"](waveforms)

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.encoders["image"](images)

    def encode_videos(self, clips: Sequence[np.ndarray]) -> torch.Tensor:
        return self.encoders["video"](clips)

    @torch.no_grad()
    def encode_media(self, modality: str, items: Sequence[Any]) -> torch.Tensor:
        """Media -> encoder features (B, N, D): the one path from media to features, for chat and training.

        audio: file paths or :class:`~m2ugen.audio.Audio` at their own rate, resampled once to
        ``config.audio_sample_rate`` for MERT; image: paths, PIL images or (H, W, 3) arrays; video:
        paths or (F, H, W, 3) uint8 clips already holding ``config.num_video_frames`` frames.
        """
        cfg = self.config
        if modality == "audio":
            audio = [a if isinstance(a, Audio) else read_audio(a, max_seconds=cfg.max_audio_seconds) for a in items]
            return self.encode_audio([resample(a, cfg.audio_sample_rate) for a in audio])
        if modality == "image":
            return self.encode_images([Image.fromarray(load_image(i)) for i in items])
        if modality == "video":
            return self.encode_videos([np.asarray(v, dtype=np.uint8) if isinstance(v, np.ndarray) else
                                       load_video(v, cfg.num_video_frames, max_seconds=cfg.max_audio_seconds)
                                       for v in items])
        raise ConfigError(f"unknown modality {modality!r}; use one of {', '.join(MODALITIES)}")

    def adapter_tokens(self, features: dict[str, torch.Tensor | None],
                       present: dict[str, torch.Tensor | None] | None = None) -> dict[str, torch.Tensor]:
        """Encoder features -> adapter tokens (B, hidden); rows whose ``present`` flag is False are zeroed."""
        tokens = {}
        for modality in MODALITIES:
            feats = features.get(modality)
            if feats is None:
                continue
            token = self.adapters[modality](feats.to(self.device))
            mask = (present or {}).get(modality)
            if mask is not None:
                token = token * mask.to(token.device, token.dtype).unsqueeze(-1)
            tokens[modality] = token
        return tokens

    # --- training ------------------------------------------------------------------------------
    def aud_projection(self, input_ids: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project the [AUD] run of each row: -> (conditioning (K, Q, out) x target_scale, row indices (K,))."""
        aud_ids = self.llm.aud_token_ids
        rows, states, embeds = [], [], []
        for b, seq in enumerate(input_ids.tolist()):
            start = find_aud_run(seq, aud_ids)
            if start is None or start == 0:
                continue
            rows.append(b)
            states.append(hidden[b, start - 1:start - 1 + len(aud_ids)])  # positions that predict [AUD i]
            embeds.append(self.llm.embed(input_ids[b, start:start + len(aud_ids)]))
        if not rows:
            return hidden.new_zeros(0, *self._projector_shape()), torch.zeros(0, dtype=torch.long)
        out = self.projector(torch.stack(states), torch.stack(embeds))
        return out, torch.tensor(rows, dtype=torch.long)

    def _projector_shape(self) -> tuple[int, int]:
        return self.config.projector.num_queries, self.config.projector.out_dim

    def forward(self, batch: dict, ce_weight: float = 1.0, mse_weight: float = 1.0) -> M2UGenOutput:
        """Losses of a padded batch.

        batch: ``input_ids`` (B, T), ``attention_mask`` (B, T), ``labels`` (B, T) with -100 outside the
        response; ``features`` {modality: (B, N, D) or None} with ``present`` {modality: (B,) bool};
        optional ``target_conditioning`` (B, Q, out) (the decoder's own conditioning, unscaled),
        ``target_mask`` (B, Q) or (B, Q, out) (1 = real position / value) and ``has_target`` (B,) bool.

        CE is the mean over samples of each sample's mean token loss (so it does not depend on padding
        or on the other samples' lengths); MSE is masked to real target positions and compared with
        ``target_scale x`` the target.
        """
        input_ids = batch["input_ids"].to(self.device)
        attention_mask = batch["attention_mask"].to(self.device)
        labels = batch["labels"].to(self.device)
        bsz = input_ids.shape[0]
        tokens = self.adapter_tokens(batch.get("features", {}), batch.get("present"))
        vectors = self.llm.injection_vectors(tokens, bsz)
        logits, hidden = self.llm(input_ids, attention_mask, vectors)

        shift_logits = logits[:, :-1].float()
        shift_labels = labels[:, 1:]
        token_loss = F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                                     ignore_index=IGNORE_INDEX, reduction="none").view(bsz, -1)
        counts = (shift_labels != IGNORE_INDEX).sum(1)
        has_tokens = counts > 0
        per_sample = token_loss.sum(1) / counts.clamp(min=1)
        ce = per_sample[has_tokens].mean() if bool(has_tokens.any()) else logits.sum() * 0.0

        mse = logits.new_zeros(())
        conditioning = None
        target = batch.get("target_conditioning")
        if target is not None:
            has_target = batch.get("has_target", torch.ones(bsz, dtype=torch.bool)).to(self.device)
            out, rows = self.aud_projection(input_ids, hidden)
            keep = has_target[rows.to(self.device)] if len(rows) else has_target[:0]
            out, rows = out[keep], rows[keep.cpu()]
            if len(rows):
                conditioning = out
                tgt = target.to(self.device, out.dtype)[rows] * self.config.projector.target_scale
                err = (out - tgt) ** 2  # (K, Q, out)
                mask = batch.get("target_mask")
                mask = torch.ones_like(err) if mask is None else mask[rows].to(self.device, err.dtype)
                if mask.dim() == 2:  # one flag per position -> every value of it
                    mask = mask.unsqueeze(-1).expand_as(err)
                mse = ((err * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1)).mean()
        loss = ce_weight * ce + mse_weight * mse
        return M2UGenOutput(loss=loss, ce_loss=ce.detach(), mse_loss=mse.detach(), logits=logits,
                            conditioning=conditioning)

    # --- inference -----------------------------------------------------------------------------
    def _forced_aud_states(self, ids: list[int], vectors: torch.Tensor) -> torch.Tensor:
        """States (N, D) that predict an [AUD] run appended (after a space) to ``ids``."""
        suffix = self.tokenizer(" " + "".join(self.tokenizer.convert_ids_to_tokens(self.llm.aud_token_ids)),
                                add_special_tokens=False).input_ids
        full = torch.tensor([ids + suffix], device=self.device)
        _, hidden = self.llm(full, torch.ones_like(full), vectors)
        start = find_aud_run(full[0].tolist(), self.llm.aud_token_ids)
        return hidden[0, start - 1:start - 1 + len(self.llm.aud_token_ids)]

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], features: dict[str, torch.Tensor | None] | None = None,
                 present: dict[str, torch.Tensor | None] | None = None, max_new_tokens: int = 256,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                 project: bool = True, force_music: bool | Sequence[bool] = False,
                 logits_processor: LogitsProcessorList | None = None) -> list[Generation]:
        """KV-cached decoding of B prompts (token ids, left-padded here), stopping on EOS.

        ``features`` are encoder outputs with batch B (see :meth:`forward`); the injection vectors are
        computed once per call. Returns text (with [AUD] tokens removed), and for responses with a
        complete in-order [AUD0..N-1] run, the states that predicted them and their projection.
        ``force_music`` (one flag, or one per prompt): when the model stopped without an [AUD] run,
        append `` [AUD0]..[AUD{N-1}]`` to its response and take the states that predict them with
        one teacher-forced pass (explicit music requests such as ``m2ugen generate``).
        ``logits_processor`` (transformers' interface) sees the ids so far and the scores (constrained
        decoding). Decoding runs :mod:`m2ugen.decoding` (static KV cache, on-device token choice).
        """
        tok = self.tokenizer
        bsz = len(prompts)
        width = max(len(p) for p in prompts)
        pad = tok.pad_token_id
        input_ids = torch.full((bsz, width), pad, dtype=torch.long)
        attention_mask = torch.zeros(bsz, width, dtype=torch.long)
        for b, p in enumerate(prompts):
            input_ids[b, width - len(p):] = torch.tensor(p, dtype=torch.long)
            attention_mask[b, width - len(p):] = 1
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        tokens = self.adapter_tokens(features or {}, present)
        vectors = self.llm.injection_vectors(tokens, bsz)
        generator = None if seed is None else torch.Generator(self.device).manual_seed(seed)  # never the global RNG
        decoded = self.llm.decode(input_ids, attention_mask, vectors, max_new_tokens=max_new_tokens,
                                  eos_token_id=tok.eos_token_id, pad_token_id=pad, temperature=temperature,
                                  top_p=top_p, logits_processor=logits_processor, generator=generator)
        steps = decoded.states  # (B, S, D)
        new_tokens = decoded.tokens.tolist()
        aud_ids = self.llm.aud_token_ids
        results = []
        for b in range(bsz):
            seq = new_tokens[b]
            if tok.eos_token_id in seq:
                seq = seq[:seq.index(tok.eos_token_id)]
            start = find_aud_run(seq, aud_ids)
            states = steps[b, start:start + len(aud_ids)].clone() if start is not None else None
            text = tok.decode([t for t in seq if t not in aud_ids], skip_special_tokens=True).strip()
            results.append(Generation(token_ids=seq, text=text, aud_states=states))
        forced = [force_music] * bsz if isinstance(force_music, bool) else list(force_music)
        for b, g in enumerate(results):
            if forced[b] and g.aud_states is None:
                g.aud_states = self._forced_aud_states(list(prompts[b]) + g.token_ids, vectors[:, b:b + 1])
        if project:
            with_states = [g for g in results if g.aud_states is not None]
            if with_states:
                emb = self.llm.embed(torch.tensor(aud_ids, device=self.device)).unsqueeze(0)
                cond = self.projector.conditioning(torch.stack([g.aud_states for g in with_states]),
                                                   emb.expand(len(with_states), -1, -1))
                for g, c in zip(with_states, cond):
                    g.conditioning = c
        return results

    # --- checkpoints ---------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> Path:
        """Write config, trained tensors and tokenizer to ``path`` (see :mod:`m2ugen.checkpoints`)."""
        return save_pretrained(self, path)

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> "M2UGen":
        """Load a directory written by :meth:`save_pretrained` (or by ``m2ugen convert``).

        The frozen parts stream from their own directories (memory-mapped safetensors); the adapters
        and projector are built on the meta device and the stored tensors put in place, so peak
        memory stays close to the size of the weights. ``overrides`` replace config fields (e.g.
        ``dtype="bfloat16"``, or another ``llm_path``).
        """
        path = Path(path)
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(f"{path}: no {WEIGHTS_NAME}; is this an m2ugen checkpoint directory?")
        config = load_config(path, **overrides)
        parts = build_frozen_parts(config)
        with torch.device("meta"):  # no memory and no init work until the stored tensors are in place
            model = cls(config, *parts)
        load_trained(model, weights)
        return model
