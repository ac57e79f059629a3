"""The JSONL manifest format of ``docs/manifests.md``: record type, validation, atomic append, resume.

One JSON object per line. Writers append whole lines, flush and fsync, so a killed build leaves at
most one partial last line, which :class:`JsonlAppender` cuts off when the file is opened again.
:func:`validate_record` is the single definition of a valid record; readers (``training/data.py``)
should call it too, so the builders and the training loop can never disagree about the schema.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from m2ugen.errors import DataError

TASKS: tuple[str, ...] = ("caption", "qa", "text", "generate", "edit")
MEDIA_FIELDS: tuple[str, ...] = ("audio", "image", "video")
FIELDS: tuple[str, ...] = (
    "id", "task", "audio", "image", "video", "instruction", "response", "target_audio", "target_caption", "meta",
)


@dataclass(frozen=True)
class ManifestRecord:
    """One training example. Media paths are relative to the manifest's directory unless absolute."""

    id: str
    task: str
    instruction: str
    response: str
    audio: str | None = None
    image: str | None = None
    video: str | None = None
    target_audio: str | None = None
    target_caption: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict with every field of the schema, in schema order."""
        data = asdict(self)
        return {name: data[name] for name in FIELDS}


def _need_str(obj: Mapping[str, Any], key: str, where: str, *, nonempty: bool, nullable: bool) -> None:
    value = obj.get(key)
    if value is None:
        if nullable:
            return
        raise DataError(f"{where}: field '{key}' is missing or null")
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    if nonempty and not value.strip():
        raise DataError(f"{where}: field '{key}' is empty")


def validate_record(obj: Any, *, where: str = "record") -> ManifestRecord:
    """Check one decoded JSON object against the manifest schema and return it as a record.

    Fields that may be null may also be absent. Per task: ``caption`` needs exactly one input medium
    and a non-empty response; ``qa`` one medium, an instruction and a response; ``text`` an
    instruction, a response and no media; ``generate`` a response, ``target_audio`` and
    ``target_caption``; ``edit`` additionally ``audio`` and an instruction.

    Raises:
        DataError: naming ``where`` (e.g. ``file.jsonl:12``), the field and the reason.
    """
    if not isinstance(obj, Mapping):
        raise DataError(f"{where}: a record must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise DataError(f"{where}: unknown field(s) {unknown}; allowed: {list(FIELDS)}")
    _need_str(obj, "id", where, nonempty=True, nullable=False)
    task = obj.get("task")
    if task not in TASKS:
        raise DataError(f"{where}: task must be one of {list(TASKS)}, got {task!r}")
    _need_str(obj, "instruction", where, nonempty=task in ("qa", "text", "edit"), nullable=False)
    _need_str(obj, "response", where, nonempty=True, nullable=False)
    for name in (*MEDIA_FIELDS, "target_audio", "target_caption"):
        _need_str(obj, name, where, nonempty=True, nullable=True)
    meta = obj.get("meta", {})
    if meta is not None and not isinstance(meta, Mapping):
        raise DataError(f"{where}: field 'meta' must be an object, got {type(meta).__name__}")
    media = [name for name in MEDIA_FIELDS if obj.get(name) is not None]
    if task in ("caption", "qa") and len(media) != 1:
        raise DataError(f"{where}: a '{task}' record needs exactly one of audio/image/video, got {media or 'none'}")
    if task == "text" and media:
        raise DataError(f"{where}: a 'text' record has no media, got {media}")
    if task in ("generate", "edit"):
        for name in ("target_audio", "target_caption"):
            if obj.get(name) is None:
                raise DataError(f"{where}: a '{task}' record needs '{name}'")
    if task == "edit" and obj.get("audio") is None:
        raise DataError(f"{where}: an 'edit' record needs the source 'audio'")
    values = {name: obj.get(name) for name in FIELDS if name != "meta"}
    return ManifestRecord(**values, meta=dict(meta or {}))


def iter_manifest(path: Path) -> Iterator[ManifestRecord]:
    """Yield the validated records of one JSONL manifest, in file order.

    Raises:
        DataError: if the file is missing, a line is not JSON or not a valid record, or an id repeats.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    seen: set[str] = set()
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{where}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                if not line.endswith("\n"):  # a killed writer's partial line; a whole one without newline is fine
                    raise DataError(f"{where}: truncated last line (build interrupted?); rerun the builder to repair it") from None
                raise DataError(f"{where}: not valid JSON ({err.msg})") from None
            record = validate_record(obj, where=where)
            if record.id in seen:
                raise DataError(f"{where}: duplicate id {record.id!r}")
            seen.add(record.id)
            yield record


def read_manifest(path: Path) -> list[ManifestRecord]:
    """All validated records of one manifest (see :func:`iter_manifest`)."""
    return list(iter_manifest(path))


def load_index(path: Path, key: str = "id") -> dict[str, dict[str, Any]]:
    """Map ``obj[key] -> obj`` over a JSONL log, last entry winning; ignores a partial last line.

    This is the resume index: what a previous (possibly killed) run already finished.
    """
    path = Path(path)
    index: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return index
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                break  # partial write of a killed run; JsonlAppender cuts it off
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise DataError(f"{path}:{number}: not valid JSON ({err})") from None
            if not isinstance(obj, dict) or key not in obj:
                raise DataError(f"{path}:{number}: expected a JSON object with {key!r}")
            index[str(obj[key])] = obj
    return index


class JsonlAppender:
    """Append-only JSONL writer: whole lines, flushed and fsynced; exclusive per file.

    Opening repairs a partial last line left by a killed writer. An advisory lock stops a second
    process (e.g. the same shard started twice) from writing the same file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("ab+")
        try:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise DataError(f"{self.path}: another process is writing this file (same shard started twice?)") from None
        self._repair()

    def _repair(self) -> None:
        handle = self._handle
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        # Find the last complete line and cut everything after it.
        step = 1 << 16
        end = size
        while end > 0:
            start = max(0, end - step)
            handle.seek(start)
            chunk = handle.read(end - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                handle.truncate(start + cut + 1)
                break
            end = start
        else:
            handle.truncate(0)
        handle.flush()
        os.fsync(handle.fileno())

    def append(self, objects: Iterable[Mapping[str, Any]]) -> int:
        """Write the objects as lines in one write, then flush and fsync. Returns the number written."""
        lines = [json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n" for obj in objects]
        if not lines:
            return 0
        self._handle.seek(0, os.SEEK_END)
        self._handle.write("".join(lines).encode("utf-8"))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        return len(lines)

    def close(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_manifest(path: Path, records: Iterable[ManifestRecord]) -> int:
    """Replace ``path`` with ``records`` (validated) in one atomic rename; for manifests derived from another one.

    Returns the number of records written.
    """
    path = Path(path)
    lines = [
        json.dumps(validate_record(r.to_dict(), where=f"{path} record {r.id}").to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"
        for r in records
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.writelines(lines)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return len(lines)
