"""Evaluation examples: read from a corpus ``clips.jsonl`` or a training manifest (``docs/manifests.md``).

A corpus clip (the schema of ``docs/evaluation.md``) becomes one example per task, with the clip's
labels as ground truth: captioning and QA (scored on text overlap and on the facts stated), text ->
music (adherence to the requested key/metre/tempo/instrument, CLAP score, FAD and KL against the
clips), editing (tempo, key or instrument change), transcription (notes and ABC), writing a score and
transposing a score. A training-manifest record becomes the example of its own task.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m2ugen.errors import DataError
from m2ugen.evaluation.facts import FACTS, Labels, describe
from m2ugen.notation.instruments import program_family, program_name

TASKS: tuple[str, ...] = ("caption", "qa", "generate", "edit", "transcribe", "score", "score_edit")
EDIT_KINDS: tuple[str, ...] = ("tempo", "key", "instrument")
TEMPO_EDIT_RATIO = 1.25  # a tempo edit asks for 25 % faster
TRANSPOSE_SEMITONES = 2  # a key edit, and a score edit, transpose up a whole tone
_CLIP_FIELDS = ("id", "work_id", "split", "audio")


@dataclass(frozen=True)
class Example:
    """One thing to ask the model, with what a right answer is.

    Attributes:
        task: one of :data:`TASKS`.
        instruction: the user's message.
        audio / image / video: input media (absolute paths) or None.
        reference: the reference answer (caption/qa), or the clip's ABC (score, score_edit, transcribe).
        labels: ground truth of the clip (None for a manifest record without labels).
        facts: the facts a caption/qa answer is scored on.
        requested: what the output must have: ``key`` (tonic, mode), ``meter``, ``tempo_bpm``,
            ``program``, ``tempo_ratio``, ``semitones``, ``edit`` (the edit kind).
        target_audio: the reference music (FAD, KL).
        notes: the reference notes JSON of a transcription.
        group: the work the example comes from (one work never counts twice in a pooled score).
    """

    id: str
    task: str
    instruction: str
    audio: Path | None = None
    image: Path | None = None
    video: Path | None = None
    reference: str | None = None
    labels: Labels | None = None
    facts: tuple[str, ...] = ()
    requested: dict[str, Any] = field(default_factory=dict)
    target_audio: Path | None = None
    notes: Path | None = None
    group: str = ""


def read_examples(path: str | Path, *, split: str | None = "test", tasks: Sequence[str] = TASKS,
                  limit: int | None = None) -> list[Example]:
    """Examples of a ``clips.jsonl`` (clips of ``split``; None: all) or of a training manifest.

    Args:
        limit: at most this many clips (corpus) or records (manifest), taken in file order.

    Raises:
        DataError: the file is missing, a line is not JSON, or a record fits neither schema.
    """
    path = Path(path)
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise DataError(f"unknown evaluation task(s) {unknown}; choose from {', '.join(TASKS)}")
    records = list(_read_jsonl(path))
    if not records:
        raise DataError(f"{path}: no records")
    examples: list[Example] = []
    if all(name in records[0] for name in _CLIP_FIELDS):
        clips = [r for r in records if split is None or r.get("split") == split]
        if not clips:
            splits = sorted({str(r.get("split")) for r in records})
            raise DataError(f"{path}: no clips in split {split!r} (the file has {', '.join(splits)})")
        for index, clip in enumerate(clips[:limit]):
            examples += clip_examples(clip, path.parent, index=index, tasks=tasks)
    else:
        clips = path.parent / "clips.jsonl"
        labelled = {str(c.get("id")): c for c in _read_jsonl(clips)} if clips.is_file() and clips != path else {}
        for number, record in enumerate(records[:limit], start=1):
            example = manifest_example(record, path.parent, where=f"{path}:{number}", clips=labelled)
            if example.task in tasks:
                examples.append(example)
    if not examples:
        raise DataError(f"{path}: no examples for the tasks {', '.join(tasks)}")
    return examples


def clip_examples(clip: dict[str, Any], root: Path, *, index: int = 0, tasks: Iterable[str] = TASKS) -> list[Example]:
    """The examples of one corpus clip (one edit per clip, its kind cycling with ``index``)."""
    where = f"clip {clip.get('id')!r}"
    try:
        labels = Labels.from_clip(clip)
        audio = _media(root, clip["audio"], where)
        cid, work = str(clip["id"]), str(clip["work_id"])
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{where}: bad clip record ({err})") from err
    tasks = set(tasks)
    wanted = dict(key=labels.key, meter=labels.meter, tempo_bpm=labels.tempo_bpm,
                  program=labels.programs[0] if labels.programs else None)
    out: list[Example] = []
    if "caption" in tasks:
        out.append(Example(f"{cid}/caption", "caption",
                           "Describe this music: its instruments, key, metre, tempo and style.", audio=audio,
                           reference=describe(labels), labels=labels, facts=FACTS, group=work))
    if "qa" in tasks:
        for fact, question in (("instrument", "Which instrument plays this music?"),
                               ("key", "What key is this music in?")):
            out.append(Example(f"{cid}/qa-{fact}", "qa", question, audio=audio,
                               reference=describe(labels, [fact]), labels=labels, facts=(fact,), group=work))
    if "generate" in tasks:
        out.append(Example(f"{cid}/generate", "generate", f"Compose music: {describe(labels)}",
                           labels=labels, requested=wanted, target_audio=audio, group=work))
    if "edit" in tasks:
        out.append(_edit_example(cid, work, audio, labels, EDIT_KINDS[index % len(EDIT_KINDS)]))
    if "transcribe" in tasks and clip.get("notes"):
        out.append(Example(f"{cid}/transcribe", "transcribe", "Transcribe this music to ABC notation.", audio=audio,
                           reference=clip.get("abc"), labels=labels, notes=_media(root, clip["notes"], where),
                           group=work))
    if "score" in tasks:
        out.append(Example(f"{cid}/score", "score", f"Write an ABC score: {describe(labels)}", labels=labels,
                           requested=wanted, reference=clip.get("abc"), group=work))
    if "score_edit" in tasks and clip.get("abc"):
        out.append(Example(f"{cid}/score-edit", "score_edit",
                           f"Transpose this tune up a whole tone and give the ABC:\n{clip['abc']}",
                           reference=clip["abc"], labels=labels, requested={"semitones": TRANSPOSE_SEMITONES},
                           group=work))
    return out


def _edit_example(cid: str, work: str, audio: Path, labels: Labels, kind: str) -> Example:
    from m2ugen.evaluation.measure import transpose_key

    if kind == "tempo":
        instruction = f"Make it {round((TEMPO_EDIT_RATIO - 1) * 100)}% faster, keeping the tune."
        requested: dict[str, Any] = {"edit": kind, "tempo_ratio": TEMPO_EDIT_RATIO}
    elif kind == "key" and labels.key:
        target = transpose_key(labels.key, TRANSPOSE_SEMITONES)
        instruction = f"Transpose it up a whole tone, to {target[0]} {target[1]}."
        requested = {"edit": kind, "key": target, "semitones": TRANSPOSE_SEMITONES}
    else:
        current = {program_family(p) for p in labels.programs}
        program = 73 if "pipe" not in current else 40  # flute, or violin for a piece already on a pipe
        instruction = f"Play it on the {program_name(program).lower()} instead."
        requested = {"edit": "instrument", "program": program}
    return Example(f"{cid}/edit-{requested['edit']}", "edit", instruction, audio=audio, labels=labels,
                   requested=requested, group=work)


def manifest_example(record: dict[str, Any], root: Path, *, where: str,
                     clips: dict[str, dict[str, Any]] | None = None) -> Example:
    """The example of one training-manifest record (validated by the manifest's own schema check).

    Labels: those of the corpus clip named by ``meta.clip`` (``clips``: the ``clips.jsonl`` beside the
    manifest, by id), else corpus-style labels in ``meta`` itself. A corpus QA record (``meta.fact``)
    is scored on its fact; other text records on every fact.
    """
    from datasets_build.manifest import validate_record

    rec = validate_record(record, where=where)
    meta = rec.meta or {}
    clip = (clips or {}).get(str(meta.get("clip")))
    if clip is not None:
        labels = Labels.from_clip(clip)
    else:
        labels = Labels.from_clip(meta) if any(k in meta for k in ("key", "meter", "tempo_bpm", "instruments")) else None
    task = "qa" if rec.task in ("caption", "qa", "text") else rec.task
    media = {name: _media(root, getattr(rec, name), where) if getattr(rec, name) else None
             for name in ("audio", "image", "video", "target_audio")}
    fact = {"instruments": "instrument"}.get(str(meta.get("fact")), str(meta.get("fact")))
    facts = () if labels is None or task != "qa" else (fact,) if fact in FACTS else () if meta.get("fact") else FACTS
    return Example(rec.id, task, rec.instruction or "Describe this music.", audio=media["audio"],
                   image=media["image"], video=media["video"],
                   reference=rec.response if task == "qa" else rec.target_caption, labels=labels, facts=facts,
                   target_audio=media["target_audio"], group=rec.id)


def _media(root: Path, name: str, where: str) -> Path:
    path = Path(name) if Path(name).is_absolute() else root / name
    if not path.is_file():
        raise DataError(f"{where}: no such file {path}")
    return path


def _read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"{path}: no such manifest")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: not JSON ({err.msg})") from err
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: a record must be a JSON object")
            yield record
