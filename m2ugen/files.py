"""Writing output files so that a failed write (full disk, no permission) leaves nothing half-written."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from m2ugen.errors import MediaError


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
