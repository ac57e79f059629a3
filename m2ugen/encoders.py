"""Frozen modality encoders: MERT (music), ViT (image), ViViT (video).

All three are stock transformers classes, loaded from local directories (never remote code) or built
randomly from config kwargs for tests. They are frozen and always in eval mode: ``train()`` is a no-op.

Output shapes (paper sizes):
- music: (B, 25, 1024)  per-layer time means of all MERT hidden states (embeddings + 24 layers)
- image: (B, 197, 768)  ViT ``last_hidden_state``
- video: (B, 3137, 768) ViViT ``last_hidden_state`` of exactly 32 frames
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm
from transformers import (HubertConfig, HubertModel, ViTConfig, ViTImageProcessorPil, ViTModel, VivitConfig,
                          VivitImageProcessor, VivitModel)

from m2ugen.errors import CheckpointError, MediaError
from m2ugen.seeding import seeded

# Keys of MERT's config.json that HubertConfig does not know (MERT's remote-code config extras).
_MERT_ONLY_KEYS = ("attention_relax", "deepnorm", "feature_extractor_cqt", "feature_extractor_cqt_bins",
                   "sample_rate", "auto_map", "architectures", "model_type", "_name_or_path",
                   "transformers_version", "torch_dtype", "dtype", "tie_last_hidden_states")


def _require_dir(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{what}: {path} is not a directory (expected a local Hugging Face model folder)")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{what}: {path} has no config.json")
    return path


class FrozenEncoder(nn.Module):
    """Base class: parameters never require grad, and the module never leaves eval mode."""

    def freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenEncoder":  # noqa: ARG002 - frozen encoders stay in eval
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


class MusicEncoder(FrozenEncoder):
    """MERT through ``HubertModel``: waveform at 24 kHz -> (num_layers + 1, hidden) layer means.

    Long audio is cut into fixed windows, encoded ``window_batch`` windows at a time, and the per-layer
    time means are averaged weighted by each window's frame count, so memory is bounded by the window
    size, not the duration. Audio shorter than one window is a single unwindowed pass.
    """

    def __init__(self, model: HubertModel, sample_rate: int = 24000, window_seconds: float = 30.0,
                 window_batch: int = 4, normalize: bool = False) -> None:
        super().__init__()
        self.model = model
        self.sample_rate = sample_rate
        self.window = int(round(window_seconds * sample_rate))
        self.window_batch = window_batch
        self.normalize = normalize
        self.freeze()

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers + 1

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def min_samples(self) -> int:
        """Shortest input that yields at least one frame (the receptive field of the conv stack)."""
        length = 1
        for kernel, stride in reversed(list(zip(self.model.config.conv_kernel, self.model.config.conv_stride))):
            length = (length - 1) * stride + kernel
        return length

    @classmethod
    def from_config(cls, kwargs: dict[str, Any], **options: Any) -> "MusicEncoder":
        """A random (seeded) encoder from HubertConfig ``kwargs``; their optional ``do_normalize`` is the
        input normalisation a model folder keeps in ``preprocessor_config.json`` (default False)."""
        kwargs = dict(kwargs)
        normalize = bool(kwargs.pop("do_normalize", False))
        config = HubertConfig(**kwargs, tie_last_hidden_states=True)
        with seeded(0):
            return cls(HubertModel(config), normalize=normalize, **options)

    @classmethod
    def from_pretrained(cls, path: str | Path, **options: Any) -> "MusicEncoder":
        path = _require_dir(path, "MERT")
        raw = json.loads((path / "config.json").read_text())
        if raw.get("feature_extractor_cqt") or raw.get("deepnorm"):
            raise CheckpointError(f"{path}: MERT variants with a CQT front end or deepnorm are not supported "
                                  "by the stock HubertModel path")
        kwargs = {k: v for k, v in raw.items() if k not in _MERT_ONLY_KEYS}
        config = HubertConfig(**kwargs, tie_last_hidden_states=True)
        model = HubertModel.from_pretrained(path, config=config)
        prep = path / "preprocessor_config.json"
        normalize = bool(json.loads(prep.read_text()).get("do_normalize", False)) if prep.is_file() else False
        return cls(model, normalize=normalize, **options)

    def _layer_means(self, windows: torch.Tensor) -> torch.Tensor:
        """(W, samples) -> (W, num_layers, hidden) time means of every hidden state."""
        if self.normalize:
            mean = windows.mean(-1, keepdim=True)
            std = windows.std(-1, keepdim=True)
            windows = (windows - mean) / torch.sqrt(std**2 + 1e-7)
        out = self.model(windows, output_hidden_states=True)
        return torch.stack(out.hidden_states, dim=1).mean(dim=2)

    @torch.no_grad()
    def encode_one(self, waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Mono waveform (samples,) at ``sample_rate`` -> (num_layers, hidden)."""
        wav = torch.as_tensor(np.asarray(waveform, dtype=np.float32)).flatten()
        if wav.numel() < self.min_samples:
            raise MediaError(f"audio too short for the music encoder: {wav.numel()} samples, "
                             f"need at least {self.min_samples} ({self.min_samples / self.sample_rate:.3f} s)")
        dtype = next(self.model.parameters()).dtype
        num_full = wav.numel() // self.window
        tail = wav[num_full * self.window:]
        total = torch.zeros(self.num_layers, self.hidden_size, dtype=torch.float64)
        weight = 0
        frames_per_window = self.model._get_feat_extract_output_lengths(self.window)
        full = wav[: num_full * self.window].view(num_full, self.window) if num_full else None
        batches = range(0, num_full, self.window_batch)
        for start in tqdm(batches, desc="encoding music", unit="batch", leave=False, disable=len(batches) < 4):
            chunk = full[start:start + self.window_batch].to(self.device, dtype)
            means = self._layer_means(chunk).double().cpu()  # (W, L, D)
            total += means.sum(0) * frames_per_window
            weight += frames_per_window * chunk.shape[0]
        if tail.numel() >= self.min_samples:
            frames = int(self.model._get_feat_extract_output_lengths(tail.numel()))
            total += self._layer_means(tail[None].to(self.device, dtype))[0].double().cpu() * frames
            weight += frames
        return (total / weight).to(torch.float32)

    def forward(self, waveforms: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
        """List of B mono waveforms -> (B, num_layers, hidden)."""
        return torch.stack([self.encode_one(w) for w in waveforms]).to(self.device)


class ImageEncoder(FrozenEncoder):
    """ViT: RGB images -> (B, num_patches + 1, hidden) ``last_hidden_state``."""

    def __init__(self, model: ViTModel, processor: ViTImageProcessorPil) -> None:
        super().__init__()
        self.model = model
        self.processor = processor
        self.freeze()

    @property
    def num_tokens(self) -> int:
        cfg = self.model.config
        return (cfg.image_size // cfg.patch_size) ** 2 + 1

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @classmethod
    def from_config(cls, kwargs: dict[str, Any]) -> "ImageEncoder":
        config = ViTConfig(**kwargs)
        size = config.image_size
        processor = ViTImageProcessorPil(size={"height": size, "width": size}, image_mean=[0.5] * 3,
                                         image_std=[0.5] * 3)
        with seeded(0):
            return cls(ViTModel(config, add_pooling_layer=False), processor)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "ImageEncoder":
        path = _require_dir(path, "ViT")
        model = ViTModel.from_pretrained(path, add_pooling_layer=False)
        if (path / "preprocessor_config.json").is_file():
            processor = ViTImageProcessorPil.from_pretrained(path)
        else:
            size = model.config.image_size
            processor = ViTImageProcessorPil(size={"height": size, "width": size}, image_mean=[0.5] * 3,
                                             image_std=[0.5] * 3)
        return cls(model, processor)

    @torch.no_grad()
    def forward(self, images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = self.processor([img.convert("RGB") for img in images], return_tensors="pt")["pixel_values"]
        dtype = next(self.model.parameters()).dtype
        return self.model(pixels.to(self.device, dtype)).last_hidden_state


class VideoEncoder(FrozenEncoder):
    """ViViT: clips of exactly ``num_frames`` RGB frames -> (B, 1 + tubes, hidden)."""

    def __init__(self, model: VivitModel, processor: VivitImageProcessor) -> None:
        super().__init__()
        self.model = model
        self.processor = processor
        self.freeze()

    @property
    def num_frames(self) -> int:
        return self.model.config.num_frames

    @property
    def num_tokens(self) -> int:
        cfg = self.model.config
        t, h, w = cfg.tubelet_size
        return (cfg.num_frames // t) * (cfg.image_size // h) * (cfg.image_size // w) + 1

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @classmethod
    def from_config(cls, kwargs: dict[str, Any]) -> "VideoEncoder":
        config = VivitConfig(**kwargs)
        size = config.image_size
        processor = VivitImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        with seeded(0):
            return cls(VivitModel(config, add_pooling_layer=False), processor)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "VideoEncoder":
        path = _require_dir(path, "ViViT")
        model = VivitModel.from_pretrained(path, add_pooling_layer=False)
        if (path / "preprocessor_config.json").is_file():
            processor = VivitImageProcessor.from_pretrained(path)
        else:
            size = model.config.image_size
            processor = VivitImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        return cls(model, processor)

    @torch.no_grad()
    def forward(self, clips: Sequence[np.ndarray]) -> torch.Tensor:
        """List of B uint8 arrays (num_frames, H, W, 3) -> (B, num_tokens, hidden)."""
        for clip in clips:
            if clip.ndim != 4 or clip.shape[0] != self.num_frames or clip.shape[-1] != 3:
                raise MediaError(f"video must be ({self.num_frames}, H, W, 3) frames, got {tuple(clip.shape)}")
        pixels = self.processor([list(clip) for clip in clips], return_tensors="pt")["pixel_values"]
        dtype = next(self.model.parameters()).dtype
        return self.model(pixels.to(self.device, dtype)).last_hidden_state
