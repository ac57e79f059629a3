"""Shared test setup: nothing may touch a model hub; tiny random models only."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402


@pytest.fixture
def tiny_model():
    """A fresh tiny M2UGen (random weights, every real architecture at toy size)."""
    from m2ugen.config import M2UGenConfig
    from m2ugen.model import M2UGen

    return M2UGen.from_config(M2UGenConfig.preset("tiny"))
