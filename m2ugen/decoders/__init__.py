"""Music decoders behind one protocol: MusicGen, MusicGen-melody (editing), AudioLDM2, and the score
decoder (ABC -> MIDI -> audio through a sound font).

``load_decoder(kind, path)`` returns a :class:`MusicDecoder` from a local folder, or the tiny
random decoder of that kind when ``path == "tiny"`` (for "score": the default settings). Heavy
libraries load on first use.
"""

from __future__ import annotations

import os
from typing import Any

from m2ugen.decoders.base import MusicDecoder
from m2ugen.errors import ConfigError

KINDS: tuple[str, ...] = ("musicgen", "musicgen-melody", "audioldm2", "score")


def decoder_class(kind: str) -> Any:
    """The wrapper class for ``kind``."""
    if kind == "musicgen":
        from m2ugen.decoders.musicgen import MusicGenDecoder as cls
    elif kind == "musicgen-melody":
        from m2ugen.decoders.musicgen_melody import MusicGenMelodyDecoder as cls
    elif kind == "audioldm2":
        from m2ugen.decoders.audioldm2 import AudioLDM2Decoder as cls
    elif kind == "score":
        from m2ugen.decoders.score import ScoreDecoder as cls
    else:
        raise ConfigError(f"unknown decoder {kind!r}; choose from {', '.join(KINDS)}")
    return cls


def load_decoder(kind: str, path: str | os.PathLike, **kwargs: Any) -> MusicDecoder:
    """A decoder of ``kind`` from a local Hugging Face layout folder, or ``path="tiny"`` for a random one.

    ``kwargs`` go to ``from_pretrained`` (settings, device, dtype) or to the tiny builder.
    """
    cls = decoder_class(kind)
    if kind == "score" and str(path) == "tiny":
        return cls()
    if str(path) == "tiny":
        from m2ugen.decoders.tiny import tiny_decoder

        return tiny_decoder(kind, **kwargs)
    return cls.from_pretrained(path, **kwargs)


__all__ = ["KINDS", "MusicDecoder", "decoder_class", "load_decoder"]
