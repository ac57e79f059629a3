"""Writing output files so that a failed write (full disk, no permission) leaves nothing half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from m2ugen.errors import ConfigError, MediaError


def write_atomically(path: Path, write: Callable[[Path], None], what: str) -> Path:
    """Run ``write(tmp)`` on a hidden sibling of ``path``, then rename it to ``path``; parents are created.

    Raises:
        MediaError: naming ``path`` and ``what`` (e.g. "MIDI") when the folder cannot be created or
            the write fails; the temporary file is removed and an existing ``path`` is left as it was.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError, ValueError) as err:  # soundfile and matplotlib raise the latter two
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise MediaError(f"{path}: cannot write {what} ({err})") from err
    return path


def check_folder(folder: str | Path, what: str = "") -> Path:
    """A folder that exists or can be created, and can be written to; checked before the slow work.

    Raises:
        ConfigError: ``folder`` (named, with ``what`` such as "output_dir=" in front) is a file, lies
            under a file, or its nearest existing folder does not accept a new file.
    """
    folder = Path(folder)
    problem = folder_problem(folder)
    if problem:
        raise ConfigError(f"{what}{folder}: cannot write files there ({problem})")
    return folder


def folder_problem(folder: Path) -> str | None:
    """Why no file can be written in ``folder``, or None. The nearest folder that already exists
    decides: it must be a folder and accept a new file (``mkdir -p`` makes the rest)."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        return f"{existing} does not accept new files ({err.strerror or err})"
    return None
