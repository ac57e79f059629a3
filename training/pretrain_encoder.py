"""``m2ugen-train pretrain-encoder``: the preset's MERT-architecture ``HubertModel`` trained on rendered clips.

Objective: the clips' exact labels (:mod:`training.clip_labels`) instead of MERT's self-supervised
targets. MERT learns by predicting masked EnCodec RVQ codes and reconstructing a CQT; its teacher
(EnCodec) cannot be downloaded here, and the rendered corpus knows the notes, instruments, key,
metre, tempo and style exactly, which are the facts m2ugen-mini must hear. The masking stays: the
Hubert SpecAugment time masks (``mask_time_prob`` of the preset) hide spans of frames during
training, so frame targets inside a mask must be inferred from context, as in MERT.

Heads (dropped after pretraining, kept in ``final/heads.safetensors`` for probing): one linear layer
over the last hidden state per frame (pitch, onset, family: binary cross-entropy) and one over its
time mean per clip (key, metre, tempo bin, style: cross-entropy; the families heard anywhere in the
crop: binary cross-entropy, so the time mean the adapters read names the instruments). ``final/`` is a Hugging Face
Hubert folder that :meth:`m2ugen.encoders.MusicEncoder.from_pretrained` (``mert_path``) loads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import HubertConfig, HubertModel

from m2ugen.errors import ConfigError, DataError
from m2ugen.media import load_audio
from m2ugen.notation.instruments import FAMILIES
from training.clip_labels import (IGNORE, NUM_KEYS, NUM_PITCHES, TEMPO_BINS, Vocabulary, frame_targets,
                                  read_notes)
from training.pretrain_config import EncoderConfig
from training.text_data import read_clips

FRAME_TERMS: tuple[str, ...] = ("pitch", "onset", "family")
CLIP_TERMS: tuple[str, ...] = ("key", "metre", "tempo", "style")


def gabor_filterbank_(weight: torch.Tensor, sample_rate: int, low_hz: float = 40.0, high_hz: float = 7600.0) -> None:
    """Overwrite a (filters, 1, taps) convolution weight with Hann-windowed cosine/sine pairs at
    log-spaced frequencies (half the filters each), so the front end starts as a spectrogram-like
    filter bank (as LEAF and SincNet do) instead of learning one from random weights. Unit L2 norm."""
    filters, _, taps = weight.shape
    pairs = filters // 2
    freqs = torch.logspace(np.log10(low_hz), np.log10(min(high_hz, 0.45 * sample_rate)), pairs)
    t = (torch.arange(taps) - (taps - 1) / 2) / sample_rate
    window = torch.hann_window(taps, periodic=False)
    phase = 2 * torch.pi * freqs[:, None] * t[None]
    bank = torch.cat([torch.cos(phase), torch.sin(phase)]) * window
    if filters % 2:
        bank = torch.cat([bank, window[None]])
    with torch.no_grad():
        weight.copy_((bank / bank.norm(dim=-1, keepdim=True))[:, None].to(weight.dtype))


class LabeledEncoder(nn.Module):
    """HubertModel plus the label heads: waveforms (B, S) -> frame logits (B, T, F), clip logits (B, C)."""

    def __init__(self, encoder: HubertModel, vocab: Vocabulary) -> None:
        super().__init__()
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.frame_sizes = (NUM_PITCHES, NUM_PITCHES + 1, len(FAMILIES))
        self.clip_sizes = (NUM_KEYS, max(1, len(vocab.metres)), TEMPO_BINS, max(1, len(vocab.styles)),
                           len(FAMILIES))
        self.frame_head = nn.Linear(hidden, sum(self.frame_sizes))
        self.clip_head = nn.Linear(hidden, sum(self.clip_sizes))

    def forward(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = waveforms.mean(-1, keepdim=True)
        std = waveforms.std(-1, keepdim=True)
        hidden = self.encoder((waveforms - mean) / torch.sqrt(std**2 + 1e-7)).last_hidden_state  # (B, T, D)
        return self.frame_head(hidden), self.clip_head(hidden.mean(1))


class EncoderTask:
    """Random crops of the training clips with their exact targets, for :func:`training.pretrain_loop.run_pretrain`."""

    terms = (*FRAME_TERMS, *CLIP_TERMS, "families")
    # Frame and clip-family F1 at probability 0.5; clip accuracies of the most likely class; tempo: within one bin (~5 %).
    scores = ("pitch_f1", "onset_f1", "family_f1", "key_acc", "metre_acc", "tempo_acc", "style_acc", "families_f1")

    def __init__(self, cfg: EncoderConfig) -> None:
        self.cfg = cfg
        model_cfg = cfg.model_config()
        if model_cfg.mert_config is None:
            raise ConfigError(f"pretrain-encoder: model {cfg.model!r} has no mert_config to build the encoder from")
        unknown = sorted(set(cfg.loss_weights) - set(self.terms))
        if unknown:
            raise ConfigError(f"pretrain-encoder: loss_weights has unknown heads {unknown}; heads: {list(self.terms)}")
        self.sample_rate = model_cfg.audio_sample_rate
        self.roots: list[Path] = []
        clips: list[dict] = []
        for path in cfg.clips:
            for clip in read_clips(path):
                clips.append(clip)
                self.roots.append(Path(path).parent)
        self.clips = clips
        self.train = [i for i, c in enumerate(clips) if c["split"] == cfg.train_split]
        self.val = [i for i, c in enumerate(clips) if c["split"] == cfg.val_split][:cfg.val_limit]
        if not self.train:
            raise DataError(f"pretrain-encoder: no {cfg.train_split!r} clips in {', '.join(cfg.clips)}")
        self.vocab = Vocabulary.of([clips[i] for i in self.train])
        self.model = LabeledEncoder(HubertModel(HubertConfig(**model_cfg.mert_config)), self.vocab)
        if cfg.front_end_init == "gabor":
            gabor_filterbank_(self.model.encoder.feature_extractor.conv_layers[0].conv.weight, self.sample_rate)
        self.hop = int(np.prod(self.model.encoder.config.conv_stride))
        self.crop = int(round(cfg.crop_seconds * self.sample_rate))
        self.num_frames = int(self.model.encoder._get_feat_extract_output_lengths(self.crop))
        self.weights = {t: float(cfg.loss_weights.get(t, 1.0)) for t in self.terms}

    def __len__(self) -> int:
        return len(self.train)

    def _sample(self, index: int, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Waveform (crop,), frame targets (T, F) and clip targets (4,) of clip ``index``; crop from 0 without rng."""
        clip, root = self.clips[index], self.roots[index]
        try:
            wave = load_audio(root / clip["audio"], self.sample_rate)
            notes = read_notes(root / clip["notes"])
        except KeyError as err:
            raise DataError(f"clip {clip['id']}: no {err} field") from None
        start = int(rng.integers(0, max(1, len(wave) - self.crop + 1))) if rng is not None else 0
        crop = np.zeros(self.crop, dtype=np.float32)
        piece = wave[start:start + self.crop]
        crop[:len(piece)] = piece
        frames = frame_targets(notes, start / self.sample_rate, self.num_frames, self.hop / self.sample_rate)
        return crop, frames, self.vocab.clip_targets(clip)

    def _collate(self, samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
        waves, frames, labels = zip(*samples)
        return {"waveforms": torch.from_numpy(np.stack(waves)), "frames": torch.from_numpy(np.stack(frames)),
                "labels": torch.from_numpy(np.stack(labels))}

    def batch(self, indices: Sequence[int], position: int) -> dict[str, torch.Tensor]:
        return self._collate([self._sample(self.train[i], np.random.default_rng([self.cfg.seed, position, i]))
                              for i in indices])

    def val_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        for start in range(0, len(self.val), self.cfg.batch_size):
            yield self._collate([self._sample(i, None) for i in self.val[start:start + self.cfg.batch_size]])

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        device = next(model.parameters()).device
        frame_logits, clip_logits = model(batch["waveforms"].to(device))
        targets, labels = batch["frames"].to(device), batch["labels"].to(device)
        values: dict[str, torch.Tensor] = {}
        sizes = self.model.frame_sizes
        frame_targets_by_term = targets.split(sizes, -1)
        for term, logits, target in zip(FRAME_TERMS, frame_logits.split(sizes, -1), frame_targets_by_term):
            values[term] = F.binary_cross_entropy_with_logits(logits, target)
        *clip_parts, family_logits = clip_logits.split(self.model.clip_sizes, -1)
        for k, (term, logits) in enumerate(zip(CLIP_TERMS, clip_parts)):
            known = labels[:, k] != IGNORE
            values[term] = (F.cross_entropy(logits[known], labels[known, k]) if bool(known.any())
                            else logits.sum() * 0.0)
        heard = frame_targets_by_term[FRAME_TERMS.index("family")].amax(1)  # (B, families) anywhere in the crop
        values["families"] = F.binary_cross_entropy_with_logits(family_logits, heard)
        total = sum(self.weights[t] * v for t, v in values.items())
        return total, {t: float(v.detach()) for t, v in values.items()}

    def score(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, tuple[float, int]]:
        device = next(model.parameters()).device
        frame_logits, clip_logits = model(batch["waveforms"].to(device))
        targets, labels = batch["frames"].to(device), batch["labels"].to(device)
        result: dict[str, tuple[float, int]] = {}
        sizes = self.model.frame_sizes
        frame_targets_by_term = targets.split(sizes, -1)
        for term, logits, target in zip(FRAME_TERMS, frame_logits.split(sizes, -1), frame_targets_by_term):
            predicted = logits > 0
            hits = float((predicted & (target > 0.5)).sum())
            result[f"{term}_f1"] = (2 * hits, int(predicted.sum() + (target > 0.5).sum()))  # micro F1 = 2H / (P + T)
        *clip_parts, family_logits = clip_logits.split(self.model.clip_sizes, -1)
        for k, (term, logits) in enumerate(zip(CLIP_TERMS, clip_parts)):
            known = labels[:, k] != IGNORE
            error = (logits.argmax(-1) - labels[:, k]).abs()[known]
            right = error <= 1 if term == "tempo" else error == 0
            result[f"{term}_acc"] = (float(right.sum()), int(known.sum()))
        predicted = family_logits > 0
        heard = frame_targets_by_term[FRAME_TERMS.index("family")].amax(1) > 0.5
        result["families_f1"] = (2 * float((predicted & heard).sum()), int(predicted.sum() + heard.sum()))
        return result

    def save_final(self, model: nn.Module, folder: Path) -> None:
        model.encoder.save_pretrained(folder)
        (folder / "preprocessor_config.json").write_text(json.dumps(
            {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "padding_value": 0.0,
             "sampling_rate": self.sample_rate, "do_normalize": True, "return_attention_mask": True}, indent=2) + "\n")
        save_file({f"frame_head.{k}": v.contiguous() for k, v in model.frame_head.state_dict().items()}
                  | {f"clip_head.{k}": v.contiguous() for k, v in model.clip_head.state_dict().items()},
                  folder / "heads.safetensors")
        (folder / "heads.json").write_text(json.dumps(
            {**self.vocab.to_dict(), "frame_heads": dict(zip(FRAME_TERMS, model.frame_sizes)),
             "clip_heads": dict(zip(CLIP_TERMS, model.clip_sizes)), "hop": self.hop}, indent=2) + "\n")
