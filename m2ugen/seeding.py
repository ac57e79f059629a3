"""The one seeding rule: randomness never touches the caller's global RNG.

Our own draws (LLM sampling, data order) take a local ``torch.Generator`` seeded by the caller.
Where a library can only draw from torch's global RNG (module initialisation, diffusers/transformers
samplers), the work runs inside :func:`seeded`, which forks that RNG, seeds the fork and restores the
caller's state afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with torch's CPU RNG seeded with ``seed`` (None: unseeded), restoring the caller's
    RNG state afterwards."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
