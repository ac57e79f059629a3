"""Frozen-encoder features and decoder targets for training batches, computed once and cached.

The encoders and the decoder's text encoder are frozen, so their outputs for a clip or a caption
never change during training: they are computed under ``no_grad`` on first use, kept in an
in-memory LRU cache (bounded in bytes) and, with ``cache_dir``, in safetensors files keyed by the
file's path, size, modification time and the encoder's config, so later epochs and later runs skip
decoding and encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from m2ugen.errors import DataError, MediaError
from m2ugen.model import M2UGen


class LRUCache:
    """A mapping bounded by the total bytes of its tensors; the least recently used go first."""

    def __init__(self, max_bytes: float) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[torch.Tensor, ...]] = OrderedDict()
        self._bytes = 0

    def get(self, key: str) -> tuple[torch.Tensor, ...] | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: tuple[torch.Tensor, ...]) -> None:
        size = sum(t.numel() * t.element_size() for t in value)
        if size > self.max_bytes or key in self._items:
            return
        self._items[key] = value
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= sum(t.numel() * t.element_size() for t in old)


def _fingerprint(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Featurizer:
    """Encoder features per media file and decoder conditioning per caption.

    Args:
        model: the network whose frozen encoders produce the features.
        decoder: an object with ``conditioning_for_captions(texts) -> (states, mask)`` (the
            stage-2/3 regression target), or None when no MSE is trained.
        cache_dir: optional folder for the on-disk cache.
        memory_mb: in-memory cache budget.
    """

    def __init__(self, model: M2UGen, decoder: Any | None = None, cache_dir: str | Path | None = None,
                 memory_mb: float = 2048.0) -> None:
        self.model = model
        self.decoder = decoder
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.memory = LRUCache(memory_mb * 2**20)
        cfg = model.config
        self._encoder_ids = {
            "audio": _fingerprint([cfg.mert_path, cfg.mert_config, cfg.audio_sample_rate, cfg.mert_window_seconds]),
            "image": _fingerprint([cfg.vit_path, cfg.vit_config]),
            "video": _fingerprint([cfg.vivit_path, cfg.vivit_config, cfg.num_video_frames]),
            "target": _fingerprint([cfg.decoder, cfg.decoder_path]),
        }
        self._failed: dict[str, str] = {}

    # --- public -----------------------------------------------------------------------------
    def features(self, modality: str, path: str) -> torch.Tensor:
        """Encoder features (N, E) of one media file; raises MediaError if it cannot be read."""
        key = f"{modality}|{path}"
        if key in self._failed:
            raise MediaError(self._failed[key])
        try:
            stat = os.stat(path)
        except OSError:
            self._failed[key] = f"{path}: {modality} file not found"
            raise MediaError(self._failed[key]) from None
        stamp = f"{key}|{stat.st_size}|{stat.st_mtime_ns}|{self._encoder_ids[modality]}"
        try:
            (feats,) = self._cached(stamp, lambda: (self._encode(modality, path),))
        except MediaError as err:
            self._failed[key] = str(err)
            raise
        return feats

    def target(self, caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's conditioning for ``caption``: states (Q, out) and its mask, (Q,) or (Q, out)."""
        if self.decoder is None:
            raise DataError("a music target needs a decoder, but none is loaded for this stage")
        states, mask = self._cached(f"target|{caption}|{self._encoder_ids['target']}",
                                    lambda: self._decoder_target(caption))
        return states, mask

    # --- internals --------------------------------------------------------------------------
    def _cached(self, stamp: str, compute: Callable[[], tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        hit = self.memory.get(stamp)
        if hit is not None:
            return hit
        file = self.cache_dir / f"{hashlib.sha1(stamp.encode()).hexdigest()}.safetensors" if self.cache_dir else None
        if file is not None and file.is_file():
            stored = load_file(file)
            value = tuple(stored[f"t{i}"] for i in range(len(stored)))
        else:
            value = tuple(t.detach().float().cpu().contiguous() for t in compute())
            if file is not None:
                file.parent.mkdir(parents=True, exist_ok=True)
                tmp = file.with_suffix(f".tmp{os.getpid()}")
                save_file({f"t{i}": t for i, t in enumerate(value)}, tmp)
                os.replace(tmp, file)
        self.memory.put(stamp, value)
        return value

    def _encode(self, modality: str, path: str) -> torch.Tensor:
        return self.model.encode_media(modality, [path])[0]  # the Assistant's path from media to features

    @torch.no_grad()
    def _decoder_target(self, caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        states, mask = self.decoder.conditioning_for_captions([caption])
        states, mask = states[0], mask[0]  # mask: per position (Q,) or per value (Q, out)
        shape = (self.model.config.projector.num_queries, self.model.config.projector.out_dim)
        if tuple(states.shape) != shape:
            raise DataError(f"the decoder's conditioning has shape {tuple(states.shape)} but the projector "
                            f"produces {shape}; set projector.num_queries/out_dim to match the decoder")
        return states, mask
