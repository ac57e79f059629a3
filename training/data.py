"""Training data: readers (our JSONL manifests and the released M2UGen JSON files), tokenised examples,
and the padding collate.

Every reader returns :class:`~datasets_build.manifest.ManifestRecord` objects validated by the one
schema check (``validate_record``), with media paths made absolute. Released items that cannot
become a record (e.g. a ``None`` response, which the original skipped silently) are returned as
:class:`Problem` entries, so the caller counts and reports them.

Released layouts of the original data sets, media folders relative to the JSON's folder by default:

==================  ======================================================  ===================
format              schema                                                  default media root
==================  ======================================================  ===================
mucaps, mucaps_t2m  ``{"<file>.mp3": caption}``                             ``audios/``
coco                ``{"<image>": caption}``                                ``train2014/``
muvideo_captions    ``{"<ytid>.mp4": caption}``                             ``audioset_video/``
musicqa             ``[{"image_name"|"audio_name", "conversation": [..]}]``   ``audios/``
alpaca              ``[{"conversation": [..]}]`` or Stanford instruction/input/output  (none)
muimage             ``[{"input_file", "output_file", "conversation": [human, gpt]}]``  ``audioset_images/``
muvideo             same                                                    ``audioset_video/``
muedit              same                                                    ``audioset/``
==================  ======================================================  ===================
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from datasets_build.manifest import MEDIA_FIELDS, ManifestRecord, read_manifest, validate_record
from m2ugen.config import MODALITIES
from m2ugen.errors import DataError, M2UGenError
from m2ugen.prompt import IGNORE_INDEX, encode_dialogue, with_aud_tokens
from training.config import DataSource

MEDIA_DIRS: dict[str, str] = {"mucaps": "audios", "mucaps_t2m": "audios", "coco": "train2014",
                              "muvideo_captions": "audioset_video", "musicqa": "audios",
                              "muimage": "audioset_images", "muvideo": "audioset_video", "muedit": "audioset"}
CAPTION_MODALITY: dict[str, str] = {"mucaps": "audio", "coco": "image", "muvideo_captions": "video"}
INSTRUCTION_MODALITY: dict[str, str] = {"muimage": "image", "muvideo": "video", "muedit": "audio"}
MUSIC_TASKS: tuple[str, ...] = ("generate", "edit")


@dataclass(frozen=True)
class Problem:
    """A sample that could not be used, and why; written to ``data_problems.jsonl``."""

    source: str
    item: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


# --- readers ----------------------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: data file not found") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def _absolute(record: ManifestRecord, root: Path) -> ManifestRecord:
    """The record with every media path made absolute against ``root``."""
    changes = {name: str(root / value) for name in (*MEDIA_FIELDS, "target_audio")
               if (value := getattr(record, name)) is not None and not Path(value).is_absolute()}
    return dataclasses.replace(record, **changes)


def _conversation(item: Any, where: str) -> list[dict[str, Any]]:
    conv = item.get("conversation") if isinstance(item, dict) else None
    if not isinstance(conv, list) or len(conv) < 2 or not all(isinstance(t, dict) for t in conv):
        raise DataError(f"{where}: needs a 'conversation' list of at least two turns")
    return conv


def _released_records(source: DataSource, path: Path) -> tuple[list[ManifestRecord], list[Problem]]:
    data = _load_json(path)
    fmt = source.format
    records, problems = [], []
    if fmt in ("mucaps", "mucaps_t2m", "coco", "muvideo_captions"):
        if not isinstance(data, dict):
            raise DataError(f"{path}: a {fmt} file must map file names to captions, got {type(data).__name__}")
        items = list(data.items())
    else:
        if not isinstance(data, list):
            raise DataError(f"{path}: a {fmt} file must be a list of items, got {type(data).__name__}")
        items = list(enumerate(data))
    if source.limit is not None:
        items = items[:source.limit]
    for key, value in items:
        where = f"{path}[{key!r}]" if isinstance(key, str) else f"{path}[{key}]"
        try:
            records.append(validate_record(_released_item(fmt, key, value, where), where=where))
        except DataError as err:
            problems.append(Problem(str(path), str(key), str(err)))
    return records, problems


def _released_item(fmt: str, key: Any, value: Any, where: str) -> dict[str, Any]:
    """One released item -> a manifest-schema dict (validated by the caller)."""
    if fmt in CAPTION_MODALITY:
        return {"id": key, "task": "caption", CAPTION_MODALITY[fmt]: key, "instruction": "", "response": value}
    if fmt == "mucaps_t2m":  # stage 2: the caption asks for music described by itself
        return {"id": key, "task": "generate", "instruction": value, "response": value,
                "target_audio": key, "target_caption": value}
    if fmt == "alpaca" and isinstance(value, dict) and "conversation" not in value:
        instruction = value.get("instruction") or ""
        extra = value.get("input") or ""
        return {"id": str(key), "task": "text", "instruction": f"{instruction}\n\n{extra}" if extra else instruction,
                "response": value.get("output")}
    conv = _conversation(value, where)
    first, last = conv[0].get("value"), conv[-1].get("value")
    if fmt == "alpaca":
        return {"id": str(key), "task": "text", "instruction": first, "response": last}
    if fmt == "musicqa":
        audio = value.get("audio_name") or value.get("image_name")
        return {"id": f"{key}:{audio}", "task": "qa", "audio": audio, "instruction": first, "response": last}
    modality = INSTRUCTION_MODALITY[fmt]
    return {"id": str(key), "task": "edit" if fmt == "muedit" else "generate", modality: value.get("input_file"),
            "instruction": first, "response": last, "target_audio": value.get("output_file"),
            "target_caption": conv[-1].get("caption")}


def read_source(source: DataSource) -> tuple[list[ManifestRecord], list[Problem]]:
    """Records of one data source with absolute media paths, plus the items that could not be used."""
    path = Path(source.path)
    if source.format == "manifest":
        records = read_manifest(path)[:source.limit]
        root = Path(source.media_root) if source.media_root else path.parent
        return [_absolute(r, root) for r in records], []
    records, problems = _released_records(source, path)
    root = Path(source.media_root) if source.media_root else path.parent / MEDIA_DIRS.get(source.format, "")
    return [_absolute(r, root) for r in records], problems


def read_sources(sources: Sequence[DataSource]) -> tuple[list[ManifestRecord], list[Problem]]:
    records, problems = [], []
    for source in sources:
        got, bad = read_source(source)
        records += got * source.repeat
        problems += bad
    if not records:
        raise DataError("no usable training records in " + ", ".join(s.path for s in sources) if sources
                        else "no data sources given (set data=[{format: manifest, path: ...}])")
    return records, problems


# --- examples ---------------------------------------------------------------------------------


@dataclass
class Example:
    """A tokenised record: ids/labels (T,), its input medium and, for music answers, the target caption."""

    index: int
    record: ManifestRecord
    input_ids: list[int]
    labels: list[int]
    modality: str | None
    media_path: str | None
    target_caption: str | None


class TextDataset:
    """Records -> :class:`Example` (prompt template + EOS via :func:`m2ugen.prompt.encode_dialogue`)."""

    def __init__(self, records: Sequence[ManifestRecord], tokenizer: PreTrainedTokenizerBase, num_aud_tokens: int,
                 max_tokens: int) -> None:
        self.records = list(records)
        self.tokenizer = tokenizer
        self.num_aud_tokens = num_aud_tokens
        self.max_tokens = max_tokens

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Example:
        """Raises M2UGenError if the dialogue does not fit ``max_tokens``."""
        record = self.records[index]
        response = record.response
        if record.task in MUSIC_TASKS:
            response = with_aud_tokens(response, self.num_aud_tokens)
        try:
            ids, labels = encode_dialogue(self.tokenizer, record.instruction, response=response,
                                          max_tokens=self.max_tokens)
        except M2UGenError as err:
            raise DataError(f"{record.id}: {err}") from None
        media = [m for m in MODALITIES if getattr(record, m) is not None]
        modality = media[0] if media else None
        return Example(index=index, record=record, input_ids=ids, labels=labels, modality=modality,
                       media_path=getattr(record, modality) if modality else None,
                       target_caption=record.target_caption if record.task in MUSIC_TASKS else None)


# --- collate ----------------------------------------------------------------------------------


def collate(examples: Sequence[Example], pad_id: int, features: Sequence[torch.Tensor | None],
            targets: Sequence[tuple[torch.Tensor, torch.Tensor] | None] | None = None) -> dict[str, Any]:
    """Right-pad a batch for :meth:`m2ugen.model.M2UGen.forward`.

    Args:
        examples: B tokenised examples.
        pad_id: id written into padding (masked out by ``attention_mask`` and ``labels``).
        features: per example, its encoder features (N, E) or None (no input medium).
        targets: per example, (conditioning (Q, out), mask (Q,)) or None (no music target).

    Returns:
        ``input_ids``/``attention_mask``/``labels`` (B, T); ``features`` {modality: (B, N, E) or None}
        with zeros for samples without that medium and ``present`` {modality: (B,) bool};
        ``target_conditioning`` (B, Q, out), ``target_mask`` (B, Q) or (B, Q, out), ``has_target`` (B,) when any
        example has a target.
    """
    bsz = len(examples)
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((bsz, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(bsz, width, dtype=torch.long)
    labels = torch.full((bsz, width), IGNORE_INDEX, dtype=torch.long)
    for b, e in enumerate(examples):
        n = len(e.input_ids)
        input_ids[b, :n] = torch.tensor(e.input_ids)
        attention_mask[b, :n] = 1
        labels[b, :n] = torch.tensor(e.labels)
    batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
                             "features": {}, "present": {}}
    for modality in MODALITIES:
        rows = [b for b, e in enumerate(examples) if e.modality == modality]
        if not rows:
            batch["features"][modality] = None
            continue
        ref = features[rows[0]]
        stacked = ref.new_zeros(bsz, *ref.shape)
        for b in rows:
            stacked[b] = features[b]
        batch["features"][modality] = stacked
        batch["present"][modality] = torch.tensor([e.modality == modality for e in examples])
    if targets is not None and any(t is not None for t in targets):
        ref_cond, ref_mask = next(t for t in targets if t is not None)
        cond = ref_cond.new_zeros(bsz, *ref_cond.shape)
        mask = ref_mask.new_zeros(bsz, *ref_mask.shape)
        for b, t in enumerate(targets):
            if t is not None:
                cond[b], mask[b] = t
        batch["target_conditioning"] = cond
        batch["target_mask"] = mask
        batch["has_target"] = torch.tensor([t is not None for t in targets])
    return batch
