"""Chat settings: the one source of the defaults and limits that the API, the CLI and the web UI share."""

from __future__ import annotations

import math
from dataclasses import dataclass

from m2ugen.errors import ConfigError

# Length of new music when no ``seconds`` is given.
DEFAULT_SECONDS = 10.0
# Longest music one call may ask for; longer pieces are possible through the decoders directly.
MAX_SECONDS = 600.0
# An edit without ``seconds`` keeps the source's length, up to this many seconds.
MAX_DEFAULT_EDIT_SECONDS = 30.0
# Highest sampling temperature accepted.
MAX_TEMPERATURE = 10.0
# Largest seed torch's random number generators take (an unsigned 64-bit integer).
MAX_SEED = 2**64 - 1


@dataclass
class ChatSettings:
    """Sampling and music settings of a turn.

    Attributes:
        max_new_tokens: longest text response, in tokens.
        temperature: LLM sampling temperature; 0 is greedy decoding.
        top_p: nucleus sampling mass (used when ``temperature > 0``).
        seconds: length of generated music; None: :data:`DEFAULT_SECONDS`, or for an edit the
            source's length (at most :data:`MAX_DEFAULT_EDIT_SECONDS`).
        guidance_scale: classifier-free guidance of the music decoder.
        seed: seeds the LLM sampling and the decoder, 0 to 2**64 - 1; None: not reproducible.
    """

    max_new_tokens: int = 256
    temperature: float = 0.6
    top_p: float = 0.8
    seconds: float | None = None
    guidance_scale: float = 3.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not 0.0 <= self.temperature <= MAX_TEMPERATURE:
            raise ConfigError(f"temperature must be between 0 and {MAX_TEMPERATURE:g}, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.seconds is not None and not (math.isfinite(self.seconds) and 0.0 < self.seconds <= MAX_SECONDS):
            raise ConfigError(f"seconds must be in (0, {MAX_SECONDS:g}], got {self.seconds}")
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 1.0):
            raise ConfigError(f"guidance_scale must be at least 1, got {self.guidance_scale}")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be between 0 and {MAX_SEED}, got {self.seed}")


DEFAULTS = ChatSettings()
