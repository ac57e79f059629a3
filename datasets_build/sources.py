"""Where the media come from: a local folder, or an AudioSet-style segment CSV (``YTID,start_seconds,end_seconds``).

A folder is scanned recursively; files that share a path without extension form one item
(``clips/a.jpg`` + ``clips/a.wav`` -> item ``clips__a`` with an image and an audio). A CSV row becomes
item ``<YTID>_<start>``; its media are looked up as ``<media_dir>/<id>.<ext>`` (downloaded earlier,
or by :mod:`datasets_build.download`). Problems with one item are kept on the item (``error``) so the
builder records them as failures instead of dropping the item.
"""

from __future__ import annotations

import csv
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from m2ugen.errors import ConfigError, DataError

AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi"})
_KIND_OF_EXTENSION = {
    **{ext: "audio" for ext in AUDIO_EXTENSIONS},
    **{ext: "image" for ext in IMAGE_EXTENSIONS},
    **{ext: "video" for ext in VIDEO_EXTENSIONS},
}


@dataclass(frozen=True)
class Segment:
    """A time range of a YouTube video, in seconds."""

    ytid: str
    start_s: float
    end_s: float

    @property
    def url(self) -> str:
        return f"https://www.youtube.com/watch?v={self.ytid}"


@dataclass(frozen=True)
class SourceItem:
    """One unit of work: an id plus whatever media files were found for it."""

    id: str
    audio: Path | None = None
    image: Path | None = None
    video: Path | None = None
    segment: Segment | None = None
    error: str | None = None


def _format_seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def attach_media(item: SourceItem, path: Path) -> SourceItem:
    kind = _KIND_OF_EXTENSION.get(path.suffix.lower())
    if kind is None or item.error:
        return item
    current = getattr(item, kind)
    if current is not None and current != path:
        return replace(item, error=f"ambiguous {kind}: both {current.name} and {path.name}")
    return replace(item, **{kind: path})


def scan_folder(root: Path) -> list[SourceItem]:
    """Items of a media folder, grouped by relative path without extension, sorted by id.

    Raises:
        DataError: if the folder does not exist or holds no media file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: source folder not found" if not root.exists() else
                        f"{root}: a source must be a media folder or a .csv segment list")
    items: dict[str, SourceItem] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in _KIND_OF_EXTENSION:
            continue
        item_id = "__".join(path.relative_to(root).with_suffix("").parts)
        items[item_id] = attach_media(items.get(item_id, SourceItem(id=item_id)), path)
    if not items:
        raise DataError(f"{root}: no media files found (extensions: {', '.join(sorted(_KIND_OF_EXTENSION))})")
    return [items[key] for key in sorted(items)]


def _csv_rows(path: Path) -> Iterable[tuple[int, list[str]]]:
    with path.open("r", encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, skipinitialspace=True), start=1):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            if row[0].strip() == "YTID":
                continue
            yield number, [cell.strip() for cell in row]


def read_segment_csv(path: Path, media_dir: Path | None = None) -> list[SourceItem]:
    """Items of an AudioSet-style CSV (comment lines ``#`` and a ``YTID`` header allowed), in file order.

    Media already present as ``<media_dir>/<id>.<ext>`` are attached. A malformed or repeated row
    becomes an item carrying ``error``.

    Raises:
        DataError: if the file does not exist, is not UTF-8 text or lists no segment.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: segment CSV not found")
    try:
        rows = list(_csv_rows(path))
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: not a UTF-8 CSV file ({err})") from None
    if not rows:
        raise DataError(f"{path}: no segments (expected rows of YTID,start_seconds,end_seconds)")
    items: list[SourceItem] = []
    seen: set[str] = set()
    for number, row in rows:
        where = f"{path.name}:{number}"
        try:
            ytid, start_s, end_s = row[0], float(row[1]), float(row[2])
        except (IndexError, ValueError):
            items.append(SourceItem(id=f"row{number}", error=f"{where}: expected YTID,start_seconds,end_seconds, got {row[:3]}"))
            continue
        item_id = f"{ytid}_{_format_seconds(start_s)}"
        if not (math.isfinite(start_s) and math.isfinite(end_s)) or start_s < 0:
            items.append(SourceItem(id=f"row{number}", error=f"{where}: times must be finite seconds >= 0, got {row[1:3]}"))
            continue
        if end_s <= start_s:
            items.append(SourceItem(id=item_id, error=f"{where}: end_seconds {end_s} <= start_seconds {start_s}"))
            continue
        if item_id in seen:
            continue  # the same segment listed twice is one item
        seen.add(item_id)
        item = SourceItem(id=item_id, segment=Segment(ytid, start_s, end_s))
        if media_dir is not None and Path(media_dir).is_dir():
            for candidate in sorted(Path(media_dir).glob(f"{item_id}.*")):
                item = attach_media(item, candidate)
        items.append(item)
    return items


def load_sources(sources: Sequence[Path], media_dir: Path | None = None) -> list[SourceItem]:
    """Items of several folders and/or CSV files; ids must be unique across them.

    Raises:
        DataError: if a source is missing or two sources yield the same id.
    """
    items: dict[str, SourceItem] = {}
    for source in sources:
        source = Path(source)
        found = read_segment_csv(source, media_dir) if source.suffix.lower() == ".csv" else scan_folder(source)
        for item in found:
            if item.id in items:
                raise DataError(f"{source}: item id {item.id!r} also comes from another source; rename one of them")
            items[item.id] = item
    return list(items.values())


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``.

    Raises:
        ConfigError: for anything else.
    """
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard {text!r}: need 0 <= i < n")
    return index, count


def shard_of(item_id: str, count: int) -> int:
    """The shard an id belongs to: a stable hash, so adding sources does not move old items."""
    return zlib.crc32(item_id.encode("utf-8")) % count


def select_shard(items: Sequence[SourceItem], shard: tuple[int, int], limit: int | None = None) -> list[SourceItem]:
    """This shard's items sorted by id, cut to the first ``limit``."""
    index, count = shard
    chosen = sorted((item for item in items if shard_of(item.id, count) == index), key=lambda item: item.id)
    return chosen if limit is None else chosen[:limit]
