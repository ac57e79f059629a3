"""Text of the pretraining stages: ABC tunes, corpus scores and manifest dialogue, packed into token blocks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from datasets_build.corpus_sources import COLLECTIONS, DEFAULT_COLLECTIONS, collection_works
from m2ugen.errors import DataError
from m2ugen.prompt import instruction_block
from training.config import DataSource
from training.data import read_source
from training.pretrain_config import TextSource


def read_clips(path: str | Path) -> list[dict]:
    """The clip records of a corpus ``clips.jsonl`` (schema in docs/training.md)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: clips file not found (build the corpus first)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the clips file ({err})") from None
    clips = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            clip = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {number} is not valid JSON ({err.msg})") from None
        if not isinstance(clip, dict) or not {"id", "split"} <= set(clip):
            raise DataError(f"{path}: line {number} is not a clip record with id and split")
        clips.append(clip)
    return clips


def held_out_works(clips_path: str | Path) -> set[str]:
    """Work ids of the valid/test clips of a corpus, to keep them out of pretraining text."""
    return {c["work_id"] for c in read_clips(clips_path) if c["split"] != "train"}


def music21_abc_texts(held_out: set[str]) -> list[str]:
    """The ABC tunes of the corpus builder's default ABC collections of music21's corpus, minus ``held_out`` works.

    Those are Ryan's Mammoth Collection, O'Neill's Music of Ireland and Aird's Airs (4,248 tunes, public
    domain); tunes are cut and named exactly as the corpus builder does, so its work ids match.
    """
    names = [name for name in DEFAULT_COLLECTIONS if all(p.endswith(".abc") for p in COLLECTIONS[name].patterns)]
    return [work.abc for work in collection_works(names) if work.abc and work.id not in held_out]


def read_texts(sources: Sequence[TextSource]) -> list[str]:
    """The documents of every source, in order (see :class:`TextSource` for the formats)."""
    texts: list[str] = []
    for source in sources:
        if source.format == "music21_abc":
            got = music21_abc_texts(held_out_works(source.path) if source.path else set())
        elif source.format == "clips":
            got = [c["abc"].strip() + "\n" for c in read_clips(source.path)
                   if c["split"] == source.split and c.get("abc")]
        else:
            records, _ = read_source(DataSource(source.format, source.path))
            # In the stages' prompt template, so the later stages start from text the LM has seen.
            got = [instruction_block(r.instruction, first=True) + r.response.strip() + "\n" for r in records]
        texts += got[:source.limit] * source.repeat
    if not texts:
        raise DataError("the text sources hold no text")
    return texts


def pack_blocks(texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, seq_len: int) -> torch.Tensor:
    """Documents as ``<s> ids </s>`` concatenated and cut into (num_blocks, seq_len) token ids (the tail is dropped)."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for start in range(0, len(texts), 256):  # in chunks: the tokenizer's encodings of all texts at once are large
        for ids in tokenizer(list(texts[start:start + 256]), add_special_tokens=True)["input_ids"]:
            stream += [*ids, eos]
    count = len(stream) // seq_len
    if count == 0:
        raise DataError(f"the text holds {len(stream)} tokens: fewer than one block of {seq_len}")
    return torch.tensor(stream[:count * seq_len], dtype=torch.long).view(count, seq_len)
