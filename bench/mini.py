"""m2ugen-mini on held-out works: describe a clip, compose from text, edit a score, follow a conversation, speed.

Everything runs through :class:`m2ugen.assistant.Assistant` as a user would, on the corpus's test
split (works never trained on, rendered with MuseScore_General, a sound font never used in training):

1. **Describe a clip.** The training questions (``datasets_build.corpus_text.qa_pairs``: "What instrument
   plays the melody?", "What key is this in?", "What is the time signature?", "How fast is it?", "What
   kind of piece is this?"), one fresh conversation each, the answer's facts read and scored by
   :mod:`m2ugen.evaluation.facts` (instrument family of the melody part; key MIREX-weighted; metre
   exact; tempo within 8 %; style exact, clips with a style only). Beside each: **chance** (the
   training split's majority answer, and a uniformly drawn training value, scored the same way) and
   the **same model with every injection gate at zero** (no audio reaches the LLM), which should stay
   near chance.
2. **Compose from text.** Requests in the training phrasings (``compose_instruction``) from held-out
   clip labels, plus the issue's examples. Valid: the reply holds ABC that parses and renders (the
   assistant plays every score it gets). Adherence per attribute the request states (read back from
   the request's words by :func:`parse_request`): key by the ``K:`` field and by the pitch-class
   profile (MIREX-weighted), metre, tempo (explicit BPM within 8 %, a tempo word within its range of
   ``_TEMPO_WORDS``), instrument families, rhythm type (style -> its metres, :data:`RHYTHM_METRES`).
   Invalid replies score 0. Control: the held-out clip's own ABC answering its request (should be 1).
   Novelty: the longest pitch n-gram a composed tune shares with any training tune (median; a copy
   scores its length), beside the same figure for the held-out tunes themselves.
3. **Edit a score.** ``edit_abc.test.jsonl`` records (the pasted source tune and the request, as
   trained) and the issue's phrasings ("Transpose it to G.", "Slower.", "Play it on the cello.",
   "Only the melody.") on held-out tunes. Exact: the reply's score has the notes, key, metre, tempo and
   programs of the source with the reference tag applied (:mod:`m2ugen.notation.edits`). Control: the
   unedited source given back.
4. **Multi-turn.** After a composition, "Now make it faster." must give the same notes at a higher
   tempo; a question about an attached clip after a composition must be answered about the clip.
5. **Speed** (this process, ``--threads`` threads): model load, a one-sentence answer about a 30 s
   clip, a 16-bar tune composed and rendered; wall-clock and CPU seconds.

Last line: ``mini: instrument=<a> key=<k> metre=<m> tempo=<t> compose_valid=<v> compose_adherence=<c>
edit_exact=<e> frozen_gates_instrument=<f>`` (compose_adherence: the mean over attributes of each
attribute's mean). ``--out`` writes every example's prompt, reply and scores as JSON.

Run: ``.venv/bin/python bench/mini.py [--model runs/mini/stage3/final] [--limit 5] [--out mini.json]``
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from datasets_build.corpus_text import _TEMPO_WORDS, compose_instruction, qa_pairs, tagged_abc
from m2ugen.errors import DataError, M2UGenError
from m2ugen.evaluation.facts import (MODE_QUALITY, TEMPO_TOLERANCE, Labels, instrument_f1, key_score, parse_facts,
                                     parse_key, score_facts, tempo_correct)
from m2ugen.evaluation.measure import key_tuple
from m2ugen.notation.abc import parse_key as abc_key
from m2ugen.notation.instruments import program_family

FACTS = ("instrument", "key", "meter", "tempo", "style")
FACT_OF_QUESTION = {"melody": "instrument", "key": "key", "meter": "meter", "tempo": "tempo", "style": "style"}
ISSUE_REQUESTS = ("Write a slow air in E minor for flute in ABC notation.",
                  "Write a reel in D for fiddle and piano in ABC notation.")
# The issue's edit phrasings and the exact edit each asks for (what the training data pairs them with).
ISSUE_EDITS = {"Transpose it to G.": "<edit key=G>", "Slower.": "<edit tempo=x0.8>",
               "Play it on the cello.": "<edit instrument=42 voice=1>", "Only the melody.": "<edit solo=1>"}
FASTER = "Now make it faster."
SPEED_REQUEST = "Write a 16-bar reel in D for fiddle in ABC notation."
# Metres that make a tune of each type. Reels and hornpipes include 2/4, as O'Neill's and Ryan's
# (most of the corpus) write them; air, chorale, song and hymn fix no metre and are not scored.
RHYTHM_METRES = {"jig": ("6/8",), "slip jig": ("9/8",), "slide": ("12/8",), "reel": ("4/4", "2/2", "2/4"),
                 "hornpipe": ("4/4", "2/2", "2/4"), "strathspey": ("4/4", "2/2"), "fling": ("4/4", "2/2", "2/4"),
                 "barndance": ("4/4", "2/2"), "schottische": ("4/4", "2/2"), "polka": ("2/4",),
                 "march": ("2/4", "4/4", "2/2", "6/8"), "waltz": ("3/4",), "mazurka": ("3/4",),
                 "minuet": ("3/4",), "polska": ("3/4",)}
ATTRIBUTES = ("key_field", "key_profile", "meter", "tempo", "instrument", "rhythm")
_SHORT_KEY = re.compile(r"\bin ([A-G])(#|b|♯|♭| sharp| flat)?(?![\w/#♯♭])")
_K_FIELD = re.compile(r"^[ \t]*K:[ \t]*([A-G])([#b]?)[ \t]*([A-Za-z]*)", re.MULTILINE)
_CHURCH_MODE = re.compile(r"\b([A-G])(#|b|♯|♭| sharp| flat)?\s*-?\s*(dorian|phrygian|lydian|mixolydian|locrian)\b",
                          re.IGNORECASE)


# --- the corpus ---------------------------------------------------------------------------------

@dataclass
class Corpus:
    """Clip rows of the train and test splits, and the held-out ``edit_abc`` records."""

    folder: Path
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    edit_records: list[dict[str, Any]]

    @classmethod
    def load(cls, folder: str | Path) -> "Corpus":
        from datasets_build.corpus import clip_rows

        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{folder}: no corpus folder (build one with m2ugen-data corpus)")
        rows = clip_rows(folder)
        train = [r for r in rows if r["split"] == "train"]
        test = [r for r in rows if r["split"] == "test"]
        if not train or not test:
            raise DataError(f"{folder}: the corpus needs clips in the train and test splits "
                            f"({len(train)} train, {len(test)} test)")
        edits = folder / "edit_abc.test.jsonl"
        records = [json.loads(line) for line in edits.read_text().splitlines() if line.strip()] if edits.is_file() else []
        return cls(folder, train, test, records)

    def audio(self, row: dict[str, Any]) -> Path:
        return self.folder / row["audio"]


def spread(rows: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Up to ``n`` rows taking one clip per work in turn (sorted by id), so few works do not dominate."""
    by_work: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: r["id"]):
        by_work.setdefault(row["work_id"], []).append(row)
    out: list[dict[str, Any]] = []
    for depth in range(max((len(v) for v in by_work.values()), default=0)):
        out += [clips[depth] for clips in by_work.values() if depth < len(clips)]
    return out[:n]


def melody_program(row: dict[str, Any]) -> int:
    part = row.get("melody_part", row["instruments"][0]["part"])
    return int(next((i["program"] for i in row["instruments"] if i["part"] == part), row["instruments"][0]["program"]))


def fact_labels(row: dict[str, Any]) -> Labels:
    """The clip's labels, with the melody part's instrument only (the question asks for the melody)."""
    return replace(Labels.from_clip(row), programs=(melody_program(row),), drums=False)


def fact_value(row: dict[str, Any], fact: str) -> Any:
    """The label a fact's answer is scored against (the melody's family, (tonic, mode), "6/8", BPM, style)."""
    labels = fact_labels(row)
    return {"instrument": program_family(melody_program(row)), "key": labels.key, "meter": labels.meter,
            "tempo": labels.tempo_bpm, "style": labels.style}[fact]


def value_score(fact: str, value: Any, labels: Labels) -> float:
    """The score an answer stating ``value`` for ``fact`` gets (as :func:`score_facts` scores it)."""
    if fact == "instrument":
        return instrument_f1({value}, labels.families())
    if fact == "key":
        return key_score(value, labels.key)
    if fact == "tempo":
        return tempo_correct(float(value), labels.tempo_bpm, labels.meter)
    return float(value == (labels.meter if fact == "meter" else labels.style))


def chance_levels(train: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per fact, on ``rows``: ``majority`` (the training split's most common value, for tempo the
    constant BPM right most often on training, always stated) and ``uniform`` (a value drawn uniformly
    from the training split's distinct values; tempo: whole BPMs)."""
    out: dict[str, dict[str, float]] = {}
    for fact in FACTS:
        labelled = [r for r in rows if fact_value(r, fact) is not None]
        values = [v for r in train if (v := fact_value(r, fact)) is not None]
        if not labelled or not values:
            continue
        if fact == "tempo":
            distinct = np.unique(np.round(values))
            majority = float(distinct[int(np.argmax(_tempo_hits(distinct, train)))])
        else:
            majority, distinct = Counter(values).most_common(1)[0][0], sorted(set(values), key=str)
        labels = [fact_labels(r) for r in labelled]
        out[fact] = {"majority": float(np.mean([value_score(fact, majority, lab) for lab in labels])),
                     "uniform": float(np.mean([np.mean([value_score(fact, v, lab) for v in distinct]) for lab in labels])),
                     "majority_value": str(majority)}
    return out


def _tempo_hits(candidates: np.ndarray, rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """(C,) how many of ``rows`` each candidate BPM states right (:func:`tempo_correct`, vectorised)."""
    bpm = np.array([float(r["tempo_bpm"]) for r in rows])[None, :]
    compound = np.array([r["meter"] in ("6/8", "9/8", "12/8", "6/4") for r in rows])[None, :]
    c = candidates[:, None]
    right = np.abs(c - bpm) <= TEMPO_TOLERANCE * bpm
    right |= compound & (np.abs(c - bpm / 1.5) <= TEMPO_TOLERANCE * bpm / 1.5)
    return right.sum(axis=1)


# --- asking the model ---------------------------------------------------------------------------

def answer_text(reply: Any) -> str:
    from m2ugen.assistant import DEMO_LABEL

    return reply.text.removeprefix(DEMO_LABEL).strip()


def ask(bot: Any, text: str, *, audio: Any = None, fresh: bool = True, **settings: Any) -> tuple[Any | None, str | None]:
    """One chat turn: (reply, None), or (None, the error) when the assistant rejects what the model wrote."""
    if fresh:
        bot.reset()
    try:
        return bot.chat(text, audio=audio, **settings), None
    except M2UGenError as err:
        return None, f"{type(err).__name__}: {err}"


def describe(bot: Any, corpus: Corpus, rows: Sequence[dict[str, Any]], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Each clip's training questions, one fresh conversation each, answers scored per fact."""
    results = []
    for row in rows:
        for question_fact, question, _ in qa_pairs(row):
            fact = FACT_OF_QUESTION.get(question_fact)
            if fact is None or fact_value(row, fact) is None:
                continue
            reply, error = ask(bot, question, audio=corpus.audio(row), **settings)
            answer = answer_text(reply) if reply is not None else ""
            score = score_facts(answer, fact_labels(row), [fact]).get(fact, 0.0)
            results.append({"clip": row["id"], "fact": fact, "question": question, "answer": answer,
                            "label": str(fact_value(row, fact)), "score": score, "error": error})
    return results


def fact_means(results: Sequence[dict[str, Any]]) -> dict[str, tuple[float, int]]:
    """Mean score and count per fact."""
    out = {}
    for fact in FACTS:
        scores = [r["score"] for r in results if r["fact"] == fact]
        if scores:
            out[fact] = (float(np.mean(scores)), len(scores))
    return out


# --- composing ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """What a composition request states (None / empty: it does not say)."""

    key: tuple[str, str] | None = None  # church modes by their third (A dorian: A minor)
    signature: int | None = None  # a church mode's key signature, in fifths (A dorian: 1): what K: can say
    meter: str | None = None
    tempo_bpm: float | None = None
    tempo_range: tuple[float, float] | None = None  # quarter notes per minute, [low, high)
    families: frozenset[str] = frozenset()
    style: str | None = None


def parse_request(text: str) -> Request:
    """The attributes a request states, read the way the answers are (:func:`parse_facts`), plus a key
    without its mode ("a reel in D": D major), a church mode's key signature and a tempo word ("slow":
    ``_TEMPO_WORDS``' range)."""
    stated = parse_facts(text)
    mode = _CHURCH_MODE.search(text)
    signature = None
    if mode is not None and mode.group(1).isupper():
        accidental = {"#": "#", "♯": "#", " sharp": "#", "b": "b", "♭": "b", " flat": "b"}.get(mode.group(2) or "", "")
        found = abc_key(f"{mode.group(1)}{accidental}{mode.group(3)[:3].lower()}")
        signature = found.fifths if found is not None else None
    key = stated.key
    if key is None and (short := _SHORT_KEY.search(text)):
        key = parse_key(f"{short.group(1)}{short.group(2) or ''} major")
    lower, tempo_range, low = text.lower(), None, 0.0
    for limit, word in _TEMPO_WORDS:
        if re.search(rf"(?<!very )\b{word}\b", lower):
            tempo_range = (low, float(limit))
        low = float(limit)
    return Request(key=key, signature=signature, meter=stated.meter, tempo_bpm=stated.tempo_bpm,
                   tempo_range=None if stated.tempo_bpm else tempo_range,
                   families=frozenset(stated.families()), style=stated.style)


def k_field_key(abc: str) -> tuple[str, str] | None:
    """(tonic, "major"|"minor") of the first ``K:`` field, a church mode by its third ("K:Ador": A minor)."""
    found = _K_FIELD.search(abc)
    if found is None:
        return None
    mode = found.group(3).lower()
    quality = "minor" if mode in ("m", "min", "minor") else next(
        (q for name, q in MODE_QUALITY.items() if mode and name.startswith(mode[:3])), "major")
    return found.group(1) + found.group(2), quality


def profile_key(score: Any) -> tuple[str, str]:
    """The key of the notes: Krumhansl-Schmuckler on the duration-weighted pitch classes."""
    from m2ugen.notation.key import estimate_key
    from m2ugen.notation.score import part_notes

    notes = [(pitch, float(length)) for part in score.parts for _, length, pitch in part_notes(part)]
    return key_tuple(estimate_key([p for p, _ in notes], [w for _, w in notes]))


def adherence(abc: str, score: Any, request: Request) -> dict[str, float]:
    """Per attribute the request states, in [0, 1] (see :data:`ATTRIBUTES`): key_field: the ``K:`` field,
    MIREX-weighted (a church mode: its key signature exactly); key_profile: the notes' pitch-class
    profile, MIREX-weighted against the mode's major or minor; meter exact; tempo (Q:, quarter notes
    per minute) within 8 % of a stated BPM or inside a tempo word's range; instrument: the share of
    requested families some voice's program has; rhythm: the metre is one of the style's."""
    from m2ugen.evaluation import scores
    from m2ugen.notation.score import part_program, score_meter, score_tempo

    result = {name: value for name, value in scores.adherence(score, {"meter": request.meter,
                                                                     "tempo_bpm": request.tempo_bpm}).items()}
    if request.key:
        if request.signature is not None:  # ABC writes a mode's signature (K:Ador or K:G for A dorian)
            field = _K_FIELD.search(abc)
            written = abc_key("".join(field.groups())) if field is not None else None
            result["key_field"] = float(written is not None and written.fifths == request.signature)
        else:
            result["key_field"] = key_score(k_field_key(abc), request.key)
        result["key_profile"] = key_score(profile_key(score), request.key)
    if request.tempo_range:
        result["tempo"] = float(request.tempo_range[0] <= score_tempo(score) < request.tempo_range[1])
    if request.families:
        present = {program_family(part_program(part)) for part in score.parts}
        result["instrument"] = len(request.families & present) / len(request.families)
    if request.style in RHYTHM_METRES:
        meter = score_meter(score)
        result["rhythm"] = float(meter is not None and f"{meter[0]}/{meter[1]}" in RHYTHM_METRES[request.style])
    return result


def stated_attributes(request: Request) -> list[str]:
    """The attributes :func:`adherence` scores for ``request``."""
    names = []
    if request.key:
        names += ["key_field", "key_profile"]
    if request.meter:
        names.append("meter")
    if request.tempo_bpm or request.tempo_range:
        names.append("tempo")
    if request.families:
        names.append("instrument")
    if request.style in RHYTHM_METRES:
        names.append("rhythm")
    return names


def compose_requests(rows: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The issue's examples, then held-out clips' requests in the training phrasings (one clip per work
    first); each ``{"id", "text", "reference"}`` (reference: the clip's ABC, None for the examples)."""
    requests = [{"id": f"issue-{i}", "text": text, "reference": None} for i, text in enumerate(ISSUE_REQUESTS)]
    requests += [{"id": row["id"], "text": compose_instruction(row), "reference": row["abc"]} for row in spread(rows, n)]
    return requests[:n]


def voice_pitches(score: Any) -> list[list[int]]:
    """Each voice's MIDI pitches in order of onset (a chord low to high)."""
    from m2ugen.notation.score import part_notes

    return [[pitch for _, _, pitch in sorted(part_notes(part), key=lambda n: (n[0], n[2]))] for part in score.parts]


def clip_pitches(corpus: Corpus, row: dict[str, Any]) -> list[list[int]]:
    """Each part's MIDI pitches of a clip in order of onset, from its notes file (drums left out)."""
    notes = json.loads((corpus.folder / row["notes"]).read_text())
    parts: dict[int, list[tuple[float, int]]] = {}
    for onset, _, pitch, _, _, part, is_drum in notes:
        if not is_drum:
            parts.setdefault(int(part), []).append((round(float(onset), 3), int(pitch)))
    return [[pitch for _, pitch in sorted(notes)] for _, notes in sorted(parts.items())]


class NgramIndex:
    """Longest pitch n-gram a sequence shares with any of a set of sequences (the training tunes)."""

    def __init__(self, sequences: Iterable[Sequence[int]]) -> None:
        # One byte per pitch, 255 between sequences (no pitch): an n-gram is found only inside one.
        self._blob = b"\xff".join(bytes(s) for s in sequences if len(s)) + b"\xff"

    def longest_common(self, sequence: Sequence[int]) -> int:
        """Length of the longest run of consecutive pitches of ``sequence`` that occurs in the index."""
        data, best = bytes(sequence), 0
        for start in range(len(data)):
            while start + best < len(data) and data[start:start + best + 1] in self._blob:
                best += 1
        return best


def compose(bot: Any, requests: Sequence[dict[str, Any]], index: NgramIndex, settings: dict[str, Any],
            seed: int, followup: Callable[[Any, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Each request in a fresh conversation, scored; ``followup(bot, record)`` may continue the
    conversation after a valid score (the multi-turn checks)."""
    from m2ugen.notation.score import parse_abc

    results = []
    for i, request in enumerate(requests):
        parsed = parse_request(request["text"])
        start = time.perf_counter()
        reply, error = ask(bot, request["text"], **settings, seed=seed + i)
        seconds = time.perf_counter() - start
        record = {"id": request["id"], "request": request["text"], "reply": answer_text(reply) if reply else "",
                  "abc": reply.abc if reply else None, "error": error, "seconds": seconds,
                  "attributes": stated_attributes(parsed)}
        valid = bool(reply is not None and reply.abc and reply.audio is not None and reply.audio.num_samples)
        if reply is not None and not valid:
            record["error"] = "no ABC tune in the reply" if not reply.abc else "the score does not sound"
        record["valid"] = valid
        score = parse_abc(reply.abc) if valid else None
        record["adherence"] = adherence(reply.abc, score, parsed) if valid else {a: 0.0 for a in record["attributes"]}
        record["novelty"] = max((index.longest_common(v) for v in voice_pitches(score)), default=0) if valid else None
        if request["reference"]:
            record["reference_adherence"] = adherence(request["reference"], parse_abc(request["reference"]), parsed)
        results.append(record)
        if valid and followup is not None:
            followup(bot, record)
    return results


def attribute_means(results: Sequence[dict[str, Any]], key: str = "adherence",
                    valid_only: bool = False) -> dict[str, tuple[float, int]]:
    out = {}
    for name in ATTRIBUTES:
        values = [r[key][name] for r in results if key in r and name in r[key] and (r["valid"] or not valid_only)]
        if values:
            out[name] = (float(np.mean(values)), len(values))
    return out


# --- editing ------------------------------------------------------------------------------------

@dataclass
class EditCase:
    """One edit: the message (the source tune pasted, then the request), and the score it must give."""

    id: str
    origin: str  # "edit_abc" (a corpus record) or "issue" (the issue's phrasings)
    kind: str  # the edit kind of the record, or the issue's phrase
    message: str
    request: str
    source_abc: str
    expected_abc: str


def corpus_edit_cases(records: Sequence[dict[str, Any]]) -> list[EditCase]:
    """The ``edit_abc`` records as cases: the instruction as trained; expected: ``meta.target_abc``, or
    the source with ``meta.edit_tag`` applied."""
    from m2ugen.notation.score import find_abc

    cases = []
    for rec in records:
        source = find_abc(rec["instruction"])
        if source is None:
            raise DataError(f"{rec['id']}: no source ABC in the edit instruction")
        meta = rec.get("meta") or {}
        expected = meta.get("target_abc") or tagged_abc(source, meta["edit_tag"])
        request = "\n".join(line for line in rec["instruction"].splitlines() if line.strip()
                            and line.strip() not in source.splitlines()).strip()
        cases.append(EditCase(rec["id"], "edit_abc", (meta.get("edit") or {}).get("kind", "edit"), rec["instruction"],
                              request, source, expected))
    return cases


def issue_edit_cases(rows: Sequence[dict[str, Any]], per_phrase: int) -> list[EditCase]:
    """The issue's phrasings on held-out tunes they fit: "Transpose it to G." on major tunes not in G,
    "Play it on the cello." on one-voice tunes not for cello, "Only the melody." on tunes of several
    voices, "Slower." on any; the message is the tune, a blank line and the request (as trained)."""
    fits = {"Transpose it to G.": lambda r: r["key"]["mode"] == "major" and r["key"]["tonic"] != "G",
            "Slower.": lambda r: True,
            "Play it on the cello.": lambda r: r["n_parts"] == 1 and r["instruments"][0]["program"] != 42,
            "Only the melody.": lambda r: r["n_parts"] > 1 and r.get("melody_part", 0) == 0}
    pool = spread([r for r in rows if not r.get("edit")], len(rows))
    cases = []
    for phrase, tag in ISSUE_EDITS.items():
        chosen = [r for r in pool if fits[phrase](r)][:per_phrase]
        for row in chosen:
            cases.append(EditCase(row["id"], "issue", phrase, f"{row['abc']}\n{phrase}", phrase, row["abc"],
                                  tagged_abc(row["abc"], tag)))
    return cases


def score_signature(abc: str) -> tuple:
    """What an exact edit must get right: each voice's notes (onset, length, pitch), key, metre, tempo
    (whole quarter notes per minute) and programs."""
    from m2ugen.evaluation.scores import notes_of
    from m2ugen.notation.score import parse_abc, part_program, score_key, score_meter, score_tempo

    score = parse_abc(abc)
    return (tuple(notes_of(score)), score_key(score), score_meter(score), round(score_tempo(score)),
            tuple(part_program(p) for p in score.parts))


def same_score(abc: str | None, expected: str) -> bool:
    return abc is not None and score_signature(abc) == score_signature(expected)


def edit(bot: Any, cases: Sequence[EditCase], settings: dict[str, Any]) -> list[dict[str, Any]]:
    results = []
    for case in cases:
        reply, error = ask(bot, case.message, **settings)
        results.append({"id": case.id, "origin": case.origin, "kind": case.kind, "request": case.request,
                        "reply": answer_text(reply) if reply else "", "abc": reply.abc if reply else None,
                        "error": error, "exact": float(same_score(reply.abc if reply else None, case.expected_abc)),
                        "control_exact": float(same_score(case.source_abc, case.expected_abc))})
    return results


# --- multi-turn ---------------------------------------------------------------------------------

def faster_followup(bot: Any, record: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """"Now make it faster." after a composition: right when the reply's score has the same notes (in
    quarter notes) at a higher tempo."""
    from m2ugen.evaluation.scores import notes_of
    from m2ugen.notation.score import parse_abc, score_tempo

    reply, error = ask(bot, FASTER, fresh=False, **settings)
    before = parse_abc(record["abc"])
    after = parse_abc(reply.abc) if reply is not None and reply.abc else None
    right = after is not None and notes_of(after) == notes_of(before) and score_tempo(after) > score_tempo(before)
    return {"kind": "faster", "id": record["id"], "request": FASTER, "reply": answer_text(reply) if reply else "",
            "abc": reply.abc if reply is not None else None, "error": error, "right": float(right),
            "tempo_before": score_tempo(before), "tempo_after": score_tempo(after) if after is not None else None}


def clip_question_followup(bot: Any, record: dict[str, Any], corpus: Corpus, row: dict[str, Any], fact: str,
                           settings: dict[str, Any]) -> dict[str, Any]:
    """A question about an attached clip after a composition (``fact``: instrument, key, meter or tempo):
    scored against the clip, and (where they differ) whether it states the composition's fact instead."""
    from m2ugen.notation.score import parse_abc, part_program, score_meter, score_tempo

    question = next(q for f, q, _ in qa_pairs(row) if FACT_OF_QUESTION.get(f) == fact)
    reply, error = ask(bot, question, audio=corpus.audio(row), fresh=False, **settings)
    answer = answer_text(reply) if reply is not None else ""
    score = parse_abc(record["abc"])
    meter = score_meter(score)
    composition = Labels(programs=(part_program(score.parts[0]),), key=k_field_key(record["abc"]),
                         meter=f"{meter[0]}/{meter[1]}" if meter else None, tempo_bpm=score_tempo(score))
    differ = value_score(fact, fact_value(row, fact), composition) < 1.0
    about_composition = score_facts(answer, composition, [fact]).get(fact) if differ else None
    return {"kind": "clip_question", "id": record["id"], "clip": row["id"], "fact": fact, "request": question,
            "reply": answer, "error": error, "right": score_facts(answer, fact_labels(row), [fact]).get(fact, 0.0),
            "about_composition": about_composition}


@dataclass
class FollowUps:
    """The multi-turn checks, run on the conversations of valid compositions: the first ``turns`` get
    "Now make it faster.", the next ``turns`` a question about one of ``rows`` (a clip) attached."""

    corpus: Corpus
    rows: Sequence[dict[str, Any]]
    turns: int
    settings: dict[str, dict[str, Any]]
    results: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, bot: Any, record: dict[str, Any]) -> None:
        n = len(self.results)
        if n < self.turns:
            self.results.append(faster_followup(bot, record, self.settings["edit"]))
        elif n < 2 * self.turns and self.rows:
            row = self.rows[(n - self.turns) % len(self.rows)]
            facts = [f for f in ("instrument", "key", "meter", "tempo") if fact_value(row, f) is not None]
            self.results.append(clip_question_followup(bot, record, self.corpus, row, facts[n % len(facts)],
                                                       self.settings["answer"]))


# --- speed --------------------------------------------------------------------------------------

def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - start, time.process_time() - start_cpu


def long_clip(corpus: Corpus, rows: Sequence[dict[str, Any]], seconds: float = 30.0) -> Any:
    """A ``seconds`` clip: held-out clips of one tune type played one after another (mono, 22.05 kHz)."""
    from m2ugen.audio import Audio
    from m2ugen.evaluation.measure import ANALYSIS_RATE, load_clip

    pieces, total = [], 0
    for row in rows:
        samples, _ = load_clip(corpus.audio(row))
        pieces.append(samples)
        total += samples.size
        if total >= seconds * ANALYSIS_RATE:
            break
    samples = np.concatenate(pieces)
    samples = np.tile(samples, int(np.ceil(seconds * ANALYSIS_RATE / samples.size)))[: int(seconds * ANALYSIS_RATE)]
    return Audio(samples, ANALYSIS_RATE)


def speed(bot: Any, corpus: Corpus, rows: Sequence[dict[str, Any]], settings: dict[str, dict[str, Any]],
          repeats: int) -> dict[str, dict[str, Any]]:
    """Median wall and CPU seconds of a one-sentence answer about a 30 s clip and of a 16-bar tune
    composed and rendered (``repeats`` runs each after one warm-up; compositions seeded 0, 1, ...)."""
    from m2ugen.notation.score import parse_abc, part_notes, score_meter

    clip = long_clip(corpus, rows)
    steps = {"answer_30s_clip": lambda i: ask(bot, "What kind of piece is this?", audio=clip, **settings["answer"]),
             "compose_16_bars": lambda i: ask(bot, SPEED_REQUEST, **settings["compose"], seed=i)}
    out: dict[str, dict[str, Any]] = {}
    for name, step in steps.items():
        step(0)
        runs = [timed(lambda i=i: step(i + 1)) for i in range(repeats)]
        (reply, error), _, _ = runs[-1]
        entry = {"wall_s": statistics.median(r[1] for r in runs), "cpu_s": statistics.median(r[2] for r in runs),
                 "reply": answer_text(reply) if reply is not None else "", "error": error, "bars": None}
        if name == "compose_16_bars" and reply is not None and reply.abc:
            score = parse_abc(reply.abc)
            numerator, denominator = score_meter(score) or (4, 4)
            quarters = max((on + length for part in score.parts for on, length, _ in part_notes(part)), default=0)
            entry["bars"] = round(float(quarters) / (4 * numerator / denominator), 1)
        out[name] = entry
    return out


# --- the run ------------------------------------------------------------------------------------

def load_assistant(model: str | None, threads: int) -> tuple[Any, float, float, list[str]]:
    """The assistant (``model`` folder, or the bundled demo model), load wall/CPU seconds, notes."""
    import torch

    from m2ugen.assistant import Assistant

    torch.set_num_threads(threads)
    bot, wall, cpu = timed(lambda: Assistant.demo() if model is None else Assistant.from_pretrained(model))
    notes = []
    if bot.config.music_outputs == "audio":
        bot.config.music_outputs = "score"
        notes.append(f"{bot.config.name} writes audio; its replies are read as scores here")
    return bot, wall, cpu, notes


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(_cell(c) for c in row) + " |")
    print()


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Everything the bench measures, printed as tables; returns the per-example results."""
    from m2ugen.llm import gate_report

    cap = (lambda n: n) if args.limit is None else (lambda n: min(n, args.limit))
    corpus = Corpus.load(args.corpus)
    bot, load_wall, load_cpu, notes = load_assistant(args.model, args.threads)
    context = bot.config.max_context
    settings = {"answer": {"temperature": 0.0, "max_new_tokens": min(args.answer_tokens, context // 4)},
                "compose": {"temperature": args.temperature, "top_p": 0.8,
                            "max_new_tokens": min(args.compose_tokens, context - 96)},
                "edit": {"temperature": 0.0, "max_new_tokens": min(args.edit_tokens, context // 3)}}
    injection = bot.model.llm.injection
    notes += gate_report(injection.gate, injection.layers_per_modality, injection.first_layer)
    params = sum(p.numel() for p in bot.model.parameters())
    print(f"mini bench: model {args.model or 'Assistant.demo()'} ({bot.config.name}, {params / 1e6:.1f} M parameters, "
          f"music {bot.config.music_outputs}); corpus {corpus.folder}: {len(corpus.train)} train, {len(corpus.test)} "
          f"held-out clips, {len(corpus.edit_records)} held-out edit records; {args.threads} thread(s)")
    for note in notes:
        print(f"note: {note}")
    print()
    out: dict[str, Any] = {"model": args.model or "demo", "settings": settings, "notes": notes}

    # 1. Describe
    rows = spread(corpus.test, cap(args.clips))
    described = describe(bot, corpus, rows, settings["answer"])
    with bot.model.llm.injection.closed():
        frozen = describe(bot, corpus, rows, settings["answer"])
    chance = chance_levels(corpus.train, rows)
    model_means, frozen_means = fact_means(described), fact_means(frozen)
    print(f"## 1. Describe a clip ({len(rows)} held-out clips, one question per fact and conversation)\n")
    targets = {"instrument": 0.85, "key": None, "meter": 0.85, "tempo": 0.80, "style": 0.70}
    table(["fact", "n", "model", "gates at zero", "chance: majority", "chance: uniform", "target"],
          [(fact, model_means[fact][1], model_means[fact][0], frozen_means[fact][0], chance[fact]["majority"],
            chance[fact]["uniform"], targets[fact]) for fact in FACTS if fact in model_means and fact in chance])
    out.update(describe=described, describe_frozen=frozen, chance=chance)

    # 2. Compose (and 4. multi-turn follow-ups on the same conversations)
    requests = compose_requests(corpus.test, cap(args.compose))
    index = NgramIndex(seq for row in corpus.train for seq in clip_pitches(corpus, row))
    followups = FollowUps(corpus, rows, cap(args.turns), settings)
    composed = compose(bot, requests, index, settings["compose"], args.seed, followups)
    valid = _mean(r["valid"] for r in composed)
    per_attribute = attribute_means(composed)
    given_valid = attribute_means(composed, valid_only=True)
    reference = attribute_means([r for r in composed if "reference_adherence" in r], key="reference_adherence")
    adherence_mean = _mean(v for v, _ in per_attribute.values())
    novelty = [r["novelty"] for r in composed if r["novelty"] is not None]
    held_out_novelty = [max((index.longest_common(s) for s in clip_pitches(corpus, row)), default=0)
                        for row in spread(corpus.test, 60)]
    lowest = lambda means: min((v for v, _ in means.values()), default=None)  # noqa: E731
    print(f"## 2. Compose from text ({len(composed)} requests)\n")
    table(["measure", "n", "model", "model, valid scores only", "control: the held-out clip's own ABC"],
          [("valid (parses and renders)", len(composed), valid, None, 1.0 if reference else None)]
          + [(f"adherence: {name}", per_attribute[name][1], per_attribute[name][0],
              given_valid.get(name, (None,))[0], reference.get(name, (None,))[0]) for name in per_attribute]
          + [("adherence: mean over attributes (headline)", len(composed), adherence_mean,
              _mean(v for v, _ in given_valid.values()), _mean(v for v, _ in reference.values())),
             ("adherence: minimum over attributes", len(composed), lowest(per_attribute), lowest(given_valid),
              lowest(reference)),
             ("novelty: median longest pitch n-gram shared with training (target < 8)", len(novelty),
              statistics.median(novelty) if novelty else None, None,
              f"{statistics.median(held_out_novelty)} (held-out tunes themselves)")])
    out["compose"] = composed

    # 3. Edit
    cases = corpus_edit_cases(corpus.edit_records)[: cap(args.edits)]
    cases += issue_edit_cases(corpus.test, cap(args.issue_edits))
    edited = edit(bot, cases, settings["edit"])
    issue = sum(r["origin"] == "issue" for r in edited)
    print(f"## 3. Edit a score ({len(edited) - issue} edit_abc records, {issue} in the issue's phrasings)\n")
    groups = sorted({(r["origin"], r["kind"]) for r in edited})
    table(["edit", "n", "exact", "control: source unchanged"],
          [(f"{origin}: {kind}", len(members := [r for r in edited if (r["origin"], r["kind"]) == (origin, kind)]),
            _mean(r["exact"] for r in members), _mean(r["control_exact"] for r in members)) for origin, kind in groups]
          + [("all", len(edited), _mean(r["exact"] for r in edited), _mean(r["control_exact"] for r in edited))])
    out["edit"] = edited

    # 4. Multi-turn
    faster = [f for f in followups.results if f["kind"] == "faster"]
    questions = [f for f in followups.results if f["kind"] == "clip_question"]
    print(f"## 4. Multi-turn (after a valid composition; {sum(r['valid'] for r in composed)} of {len(composed)} were)\n")
    table(["check", "n", "right", "states the composition's fact instead"],
          [(f'"{FASTER}": same notes, higher tempo', len(faster), _mean(f["right"] for f in faster), None),
           ("question about an attached clip: its fact right", len(questions), _mean(f["right"] for f in questions),
            _mean(f["about_composition"] for f in questions if f["about_composition"] is not None))])
    out["multi_turn"] = followups.results

    # 5. Speed
    timing = speed(bot, corpus, rows, settings, args.repeats)
    print(f"## 5. Speed ({args.threads} thread(s), median of {args.repeats} after a warm-up)\n")
    table(["step", "wall s", "CPU s", "note"],
          [("load the model", load_wall, load_cpu, "Assistant.demo()" if args.model is None else "from_pretrained"),
           ("one-sentence answer about a 30 s clip", timing["answer_30s_clip"]["wall_s"],
            timing["answer_30s_clip"]["cpu_s"], repr(timing["answer_30s_clip"]["reply"][:60])),
           ("16-bar tune composed and rendered", timing["compose_16_bars"]["wall_s"], timing["compose_16_bars"]["cpu_s"],
            f"{timing['compose_16_bars']['bars']} bars" if timing["compose_16_bars"]["bars"] else "no valid tune")])
    out["speed"] = {"load_wall_s": load_wall, "load_cpu_s": load_cpu, **timing}

    summary = {"instrument": model_means.get("instrument", (0.0,))[0], "key": model_means.get("key", (0.0,))[0],
               "metre": model_means.get("meter", (0.0,))[0], "tempo": model_means.get("tempo", (0.0,))[0],
               "compose_valid": valid or 0.0, "compose_adherence": adherence_mean or 0.0,
               "edit_exact": _mean(r["exact"] for r in edited) or 0.0,
               "frozen_gates_instrument": frozen_means.get("instrument", (0.0,))[0]}
    out["summary"] = summary
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a model folder (a stage's final/); default: Assistant.demo()")
    parser.add_argument("--corpus", default="build/corpus", help="corpus build folder (clips.jsonl, edit_abc.test.jsonl)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many examples in every part (a quick run)")
    parser.add_argument("--clips", type=int, default=100, help="held-out clips to describe")
    parser.add_argument("--compose", type=int, default=100, help="composition requests")
    parser.add_argument("--edits", type=int, default=100, help="edit_abc records")
    parser.add_argument("--issue-edits", type=int, default=5, help="held-out tunes per issue edit phrasing")
    parser.add_argument("--turns", type=int, default=10, help="conversations per multi-turn check")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per speed step")
    parser.add_argument("--answer-tokens", type=int, default=64)
    parser.add_argument("--compose-tokens", type=int, default=640)
    parser.add_argument("--edit-tokens", type=int, default=320)
    parser.add_argument("--temperature", type=float, default=0.6, help="sampling temperature of compositions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", default=None, help="write every example's results to this JSON file")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    try:
        results = run(args)
    except M2UGenError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    s = results["summary"]
    print(f"mini: instrument={s['instrument']:.3f} key={s['key']:.3f} metre={s['metre']:.3f} tempo={s['tempo']:.3f} "
          f"compose_valid={s['compose_valid']:.3f} compose_adherence={s['compose_adherence']:.3f} "
          f"edit_exact={s['edit_exact']:.3f} frozen_gates_instrument={s['frozen_gates_instrument']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
