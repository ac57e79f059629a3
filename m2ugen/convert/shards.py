"""Writing a Hugging Face weights directory shard by shard (bounded memory)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType

import torch
from safetensors.torch import save_file


class ShardWriter:
    """Collects tensors and writes a safetensors shard whenever ``max_shard_bytes`` is reached.

    On a clean exit a single shard is named ``model.safetensors``; several get
    ``model-0000k-of-0000N.safetensors`` names and a ``model.safetensors.index.json``.
    """

    def __init__(self, out: str | Path, max_shard_bytes: int = 2 << 30) -> None:
        self.out = Path(out)
        self.max_shard_bytes = max_shard_bytes
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_bytes = 0
        self._shards: list[tuple[Path, list[str]]] = []
        self.total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._pending or any(name in keys for _, keys in self._shards):
            raise ValueError(f"tensor {name} written twice")
        tensor = tensor.detach().to("cpu").contiguous().clone()  # own storage: no views of bigger tensors
        size = tensor.numel() * tensor.element_size()
        if self._pending and self._pending_bytes + size > self.max_shard_bytes:
            self.flush()
        self._pending[name] = tensor
        self._pending_bytes += size
        self.total_bytes += size

    def flush(self) -> None:
        if not self._pending:
            return
        path = self.out / f".shard-{len(self._shards):05d}.safetensors.tmp"
        save_file(self._pending, path, metadata={"format": "pt"})
        self._shards.append((path, list(self._pending)))
        self._pending, self._pending_bytes = {}, 0

    def close(self) -> None:
        self.flush()
        if len(self._shards) == 1:
            os.replace(self._shards[0][0], self.out / "model.safetensors")
            return
        weight_map = {}
        for i, (path, keys) in enumerate(self._shards):
            name = f"model-{i + 1:05d}-of-{len(self._shards):05d}.safetensors"
            os.replace(path, self.out / name)
            weight_map.update(dict.fromkeys(keys, name))
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
        (self.out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")

    def __enter__(self) -> "ShardWriter":
        self.out.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            for path, _ in self._shards:
                path.unlink(missing_ok=True)
