"""m2ugen: an any-to-music assistant (understand, generate, edit and transcribe music)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {"Assistant": "m2ugen.assistant", "Reply": "m2ugen.assistant", "M2UGen": "m2ugen.model",
         "M2UGenConfig": "m2ugen.config", "Audio": "m2ugen.audio"}


def __getattr__(name: str) -> Any:
    """Import the heavy parts (torch, transformers) only when they are used."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'm2ugen' has no attribute {name!r}")


__all__ = list(_LAZY)
