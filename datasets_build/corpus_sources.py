"""Where the corpus's works come from: collections of music21's bundled corpus, or a folder of score files.

A *work* is one tune of an ABC file (files holding many tunes are split at their ``X:`` lines, the
file header kept with each tune) or one MusicXML / kern / MIDI file. Its clips are the items the
build engine processes: ``<work_id>__v<k>`` (instrumentation k) and ``<work_id>__e<k>`` (an exact
edit of ``v0``), so every clip of a work is listed next to the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from datasets_build.sources import SourceItem
from m2ugen.errors import ConfigError, DataError

SCORE_EXTENSIONS = {".abc": "abc", ".xml": "musicxml", ".mxl": "musicxml", ".musicxml": "musicxml",
                    ".krn": "humdrum", ".mid": "midi", ".midi": "midi"}


@dataclass(frozen=True)
class Collection:
    """A named set of works in music21's corpus folder (``patterns``: globs relative to it)."""

    name: str
    patterns: tuple[str, ...]
    title: str
    license: str
    style: str | None = None
    composer: str | None = None
    default: bool = True


_PD = "public domain (published before 1930); encoding distributed with music21's corpus"
COLLECTIONS: dict[str, Collection] = {c.name: c for c in (
    Collection("ryans", ("ryansMammoth/*.abc",), "Ryan's Mammoth Collection (1883)", f"{_PD} (transcribed by volunteers)"),
    Collection("oneills", ("oneills1850/*.abc",), "O'Neill's Music of Ireland (1903)", f"{_PD} (transcribed by Norbert Paap)"),
    Collection("airds", ("airdsAirs/*.abc",), "Aird's Selection of Scotch, English, Irish and Foreign Airs (1782-1797)", _PD),
    Collection("chorales", ("bach/bwv*.mxl",), "J. S. Bach, four-part chorales", _PD, style="chorale", composer="J. S. Bach"),
    Collection("monteverdi", ("monteverdi/*.mxl",), "C. Monteverdi, madrigals", _PD, style="madrigal",
               composer="Claudio Monteverdi", default=False),
    Collection("quartets", ("haydn/**/*.mxl", "mozart/**/*.mxl", "beethoven/**/*.mxl"),
               "Haydn, Mozart and Beethoven (mostly string quartets)",
               _PD, default=False),
    Collection("palestrina", ("palestrina/*.krn",), "G. P. da Palestrina, mass movements (Humdrum)",
               f"{_PD}; check the encoders' terms before commercial use", style="mass",
               composer="Giovanni Pierluigi da Palestrina", default=False),
    Collection("essen", ("essenFolksong/*.abc",), "Essen Folksong Collection",
               "non-commercial research use only (Essen Folksong Collection terms); off by default", default=False),
)}
DEFAULT_COLLECTIONS: tuple[str, ...] = tuple(name for name, c in COLLECTIONS.items() if c.default)


@dataclass(frozen=True)
class Work:
    """One piece to render: its file, its ABC text when it came from an ABC file, and its collection's facts."""

    id: str
    path: Path
    format: str
    collection: str
    license: str
    abc: str | None = None
    style: str | None = None
    composer: str | None = None


@dataclass(frozen=True)
class CorpusItem(SourceItem):
    """A clip to build: ``variant`` k of ``work``, or (``edit`` = True) the k-th exact edit of variant 0."""

    work: Work | None = None
    variant: int = 0
    edit: bool = False


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def split_abc(text: str) -> list[tuple[str, str]]:
    """The tunes of an ABC file as ``(X number, tune text)``; the file header (before the first ``X:``) is kept with each."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"X:\s*\S", line)]
    if not starts:
        return [("1", text)] if re.search(r"^K:", text, re.M) else []
    header = "\n".join(line for line in lines[:starts[0]] if not line.startswith("%"))
    tunes = []
    seen: dict[str, int] = {}
    for begin, end in zip(starts, [*starts[1:], len(lines)]):
        number = _slug(lines[begin][2:].strip())
        seen[number] = seen.get(number, 0) + 1
        if seen[number] > 1:
            number = f"{number}-{seen[number]}"
        body = "\n".join(lines[begin:end]).strip()
        tunes.append((number, (header + "\n" + body if header.strip() else body) + "\n"))
    return tunes


def _works_of_file(path: Path, prefix: str, collection: str, license: str, style: str | None,
                   composer: str | None) -> list[Work]:
    fmt = SCORE_EXTENSIONS[path.suffix.lower()]
    if fmt != "abc":
        return [Work(prefix, path, fmt, collection, license, None, style, composer)]
    text = path.read_text(encoding="utf-8", errors="replace")
    tunes = split_abc(text)
    if not tunes:  # kept as a work so the build records it as a failure
        return [Work(prefix, path, fmt, collection, license, text, style, composer)]
    return [Work(f"{prefix}__X{number}" if len(tunes) > 1 else prefix, path, fmt, collection, license, tune, style, composer)
            for number, tune in tunes]


def music21_corpus_dir() -> Path:
    from music21 import common

    return Path(common.getCorpusFilePath())


def collection_works(names: list[str]) -> list[Work]:
    """All works of the named collections of music21's corpus, sorted by id.

    Raises:
        ConfigError: an unknown collection name.
    """
    unknown = [name for name in names if name not in COLLECTIONS]
    if unknown:
        raise ConfigError(f"unknown corpus collection(s) {unknown}; known: {', '.join(COLLECTIONS)}")
    root = music21_corpus_dir()
    works: list[Work] = []
    for name in names:
        c = COLLECTIONS[name]
        for path in sorted(p for pattern in c.patterns for p in root.glob(pattern)):
            works += _works_of_file(path, f"{name}__{_slug(path.stem)}", name, c.license, c.style, c.composer)
    return sorted(works, key=lambda w: w.id)


def folder_works(root: Path, license: str = "user-supplied (licence unknown)") -> list[Work]:
    """The works of a folder of ABC / MusicXML / kern / MIDI files (recursive), collection ``user:<folder name>``.

    Raises:
        DataError: the folder is missing or holds no score file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: score folder not found")
    name = f"user:{root.name}"
    works: list[Work] = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in SCORE_EXTENSIONS:
            prefix = "user__" + "__".join(_slug(part) for part in path.relative_to(root).with_suffix("").parts)
            works += _works_of_file(path, prefix, name, license, None, None)
    if not works:
        raise DataError(f"{root}: no score files found (extensions: {', '.join(sorted(SCORE_EXTENSIONS))})")
    return works


def clip_items(works: list[Work], *, instrumentations: int, edits_per_work: int) -> list[CorpusItem]:
    """The clips to build for ``works``: ``instrumentations`` variants and ``edits_per_work`` edits each.

    Raises:
        DataError: two works share an id (e.g. the same folder given twice).
    """
    ids = [w.id for w in works]
    if len(ids) != len(set(ids)):
        repeated = sorted({i for i in ids if ids.count(i) > 1})[:3]
        raise DataError(f"work id(s) {repeated} come from two sources; give each folder once")
    items = [CorpusItem(id=f"{w.id}__v{k}", work=w, variant=k) for w in works for k in range(instrumentations)]
    items += [CorpusItem(id=f"{w.id}__e{k}", work=w, variant=k, edit=True) for w in works for k in range(edits_per_work)]
    return sorted(items, key=lambda item: item.id)
