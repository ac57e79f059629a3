"""Exceptions that carry a one-line, user-facing explanation.

Every error the library raises on bad input derives from :class:`M2UGenError`, so the CLI can print
``error: <message>`` and exit non-zero instead of showing a traceback.
"""

from __future__ import annotations


class M2UGenError(Exception):
    """Base class for errors caused by the user's input, files or configuration."""


class MediaError(M2UGenError):
    """An audio, image or video input is missing, unreadable or unusable."""


class CheckpointError(M2UGenError):
    """A checkpoint or model directory is missing, corrupt or does not match the model."""


class ConfigError(M2UGenError):
    """A configuration value is invalid."""


class DataError(M2UGenError):
    """A data set manifest or sample is malformed."""
