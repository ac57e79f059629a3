"""Factual accuracy: the instrument, key, metre, tempo and style an answer states, checked against labels.

A fluent answer that names the wrong key scores 0 for the key; a fact the answer does not state
scores 0 too (it was asked for). Labels come from the corpus clip schema (``clips.jsonl``):
``instruments[].program``, ``key {tonic, mode}``, ``meter``, ``tempo_bpm``, ``style``.

>>> labels = Labels(programs=(40,), key=("D", "major"))
>>> score_facts("A lively fiddle tune in D major.", labels)["instrument"]
1.0
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from m2ugen.notation.instruments import program_family, programs_in_text

FACTS: tuple[str, ...] = ("instrument", "key", "meter", "tempo", "style")
TEMPO_TOLERANCE = 0.08  # a stated tempo within 8 % of the label counts as right
# Dance and tune types (the corpus's ``style`` values and their common spellings), longest first.
STYLES: dict[str, str] = {
    "slip jig": "slip jig", "single jig": "jig", "double jig": "jig", "jig": "jig", "reel": "reel",
    "hornpipe": "hornpipe", "polka": "polka", "waltz": "waltz", "march": "march", "strathspey": "strathspey",
    "mazurka": "mazurka", "slide": "slide", "schottische": "schottische", "barndance": "barndance",
    "barn dance": "barndance", "air": "air", "slow air": "air", "minuet": "minuet", "gavotte": "gavotte",
    "bourree": "bourree", "bourrée": "bourree", "gigue": "jig", "polska": "polska", "chorale": "chorale",
    "hymn": "hymn", "song": "song", "carol": "carol", "rag": "rag", "ragtime": "rag", "fling": "fling",
    "highland fling": "fling", "madrigal": "madrigal",
}
_STYLE = re.compile(r"\b(" + "|".join(re.escape(s) for s in sorted(STYLES, key=len, reverse=True)) + r")s?\b")
_ACCIDENTAL = {"#": "#", "♯": "#", "sharp": "#", "b": "b", "♭": "b", "flat": "b", "": ""}
_MODES = "major|minor|maj|min|ionian|dorian|phrygian|lydian|mixolydian|aeolian|locrian"
_TONIC = r"\b([A-G])(?:\s*(#|♯|b|♭)|\s*-?\s*(sharp|flat)\b)?"
_KEY = re.compile(_TONIC + r"\s*-?\s*(" + _MODES + r")\b", re.IGNORECASE)
_KEY_OF = re.compile(r"\bkey of " + _TONIC, re.IGNORECASE)
_METER = re.compile(r"\b(\d{1,2})\s*/\s*(\d{1,2})\b")
_METER_WORDS = {"common time": "4/4", "cut time": "2/2", "alla breve": "2/2"}
_TEMPO = re.compile(r"\b(\d{2,3}(?:\.\d+)?)\s*(?:bpm\b|beats per minute|beats a minute)", re.IGNORECASE)
_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# Church modes as the major or minor key with the same tonic and third (G mixolydian -> G major).
MODE_QUALITY = {"major": "major", "ionian": "major", "mixolydian": "major", "lydian": "major",
                "minor": "minor", "aeolian": "minor", "dorian": "minor", "phrygian": "minor", "locrian": "minor"}


@dataclass(frozen=True)
class Labels:
    """What is true of a clip (None or empty: unknown, so not scored)."""

    programs: tuple[int, ...] = ()
    drums: bool = False
    key: tuple[str, str] | None = None  # (tonic, "major"|"minor"), e.g. ("F#", "minor"); modes by their third
    meter: str | None = None  # "6/8"
    tempo_bpm: float | None = None  # quarter notes per minute
    style: str | None = None

    @classmethod
    def from_clip(cls, clip: Mapping[str, Any]) -> "Labels":
        """Labels of one ``clips.jsonl`` record (the corpus schema)."""
        instruments = clip.get("instruments") or []
        key = clip.get("key") or None
        style = clip.get("style")
        return cls(
            programs=tuple(int(i["program"]) for i in instruments if not i.get("is_drum")),
            drums=any(i.get("is_drum") or i.get("family") == "drums" for i in instruments),
            key=(str(key["tonic"]), MODE_QUALITY[str(key["mode"]).lower()])
            if key and str(key.get("mode", "")).lower() in MODE_QUALITY else None,
            meter=clip.get("meter") or None,
            tempo_bpm=float(clip["tempo_bpm"]) if clip.get("tempo_bpm") else None,
            style=STYLES.get(str(style).lower(), str(style).lower()) if style else None,
        )

    def families(self) -> set[str]:
        return {program_family(p) for p in self.programs} | ({"drums"} if self.drums else set())


@dataclass(frozen=True)
class StatedFacts:
    """What an answer says (None or empty: it does not say)."""

    programs: tuple[int, ...] = ()
    drums: bool = False
    key: tuple[str, str] | None = None
    meter: str | None = None
    tempo_bpm: float | None = None
    style: str | None = None

    def families(self) -> set[str]:
        return {program_family(p) for p in self.programs} | ({"drums"} if self.drums else set())


def parse_facts(text: str) -> StatedFacts:
    """The first key, metre, tempo and style an answer states, and every instrument it names."""
    lower = text.lower()
    meter = next((f"{m.group(1)}/{m.group(2)}" for m in _METER.finditer(text) if _is_meter(m)), None)
    if meter is None:
        meter = next((value for words, value in _METER_WORDS.items() if words in lower), None)
    tempo = _TEMPO.search(text)
    style = _STYLE.search(lower)
    return StatedFacts(
        programs=tuple(programs_in_text(text)),
        drums=bool(re.search(r"\b(drums?|drum kit|percussion)\b", lower)),
        key=parse_key(text), meter=meter, tempo_bpm=float(tempo.group(1)) if tempo else None,
        style=STYLES[style.group(1)] if style else None,
    )


def parse_key(text: str) -> tuple[str, str] | None:
    """The first key an answer names, as (tonic, mode): "in F sharp minor" -> ("F#", "minor").

    A tonic must be a capital letter (so "a minor change" is not A minor); "key of D" means D major; a
    church mode is read as the major or minor key with its third ("G mixolydian" -> ("G", "major")).
    """
    found = []
    for match in _KEY.finditer(text):
        letter, accidental, mode = match.group(1), match.group(2) or match.group(3) or "", match.group(4)
        if letter.isupper():
            quality = {"maj": "major", "min": "minor"}.get(mode.lower()) or MODE_QUALITY[mode.lower()]
            found.append((match.start(1), _spell(letter, accidental), quality))
    explicit = {start for start, _, _ in found}
    for match in _KEY_OF.finditer(text):
        if match.group(1).isupper() and match.start(1) not in explicit:
            found.append((match.start(1), _spell(match.group(1), match.group(2) or match.group(3) or ""), "major"))
    return min(found)[1:] if found else None


def _spell(letter: str, accidental: str) -> str:
    return letter + _ACCIDENTAL[accidental.lower() if len(accidental) > 1 else accidental]


def key_score(stated: tuple[str, str] | None, label: tuple[str, str]) -> float:
    """MIREX weighted key score (mir_eval.key.weighted_score): 1 same key, 0.5 a fifth above,
    0.3 relative, 0.2 parallel, else 0; 0 when no key is stated."""
    import mir_eval

    if stated is None:
        return 0.0
    return float(mir_eval.key.weighted_score(_mir_key(label), _mir_key(stated)))


def tempo_correct(stated_bpm: float | None, label_bpm: float, meter: str | None = None) -> float:
    """1 when the stated tempo is within 8 % of the label; in compound metre (6/8, 9/8, 12/8) a tempo
    counted in dotted quarters (label / 1.5) is right too."""
    if stated_bpm is None:
        return 0.0
    candidates = [label_bpm]
    if meter in ("6/8", "9/8", "12/8", "6/4"):
        candidates.append(label_bpm / 1.5)
    return float(any(abs(stated_bpm - c) <= TEMPO_TOLERANCE * c for c in candidates))


def instrument_f1(stated: set[str], label: set[str]) -> float:
    """F1 of the stated instrument families against the labelled ones (0 when none is stated)."""
    if not stated or not label:
        return 0.0
    hits = len(stated & label)
    return 2.0 * hits / (len(stated) + len(label))


def score_facts(answer: str, labels: Labels, facts: Iterable[str] = FACTS) -> dict[str, float]:
    """Score each of ``facts`` that the labels know, in [0, 1]; unknown labels are left out.

    Instrument: F1 of the stated vs labelled instrument families (a fiddle is a violin: strings).
    Key: MIREX weighted score. Metre: exact. Tempo: within 8 %. Style: exact tune type.
    """
    stated = parse_facts(answer)
    scores: dict[str, float] = {}
    for fact in facts:
        if fact not in FACTS:
            raise ValueError(f"unknown fact {fact!r}; choose from {', '.join(FACTS)}")
        if fact == "instrument" and labels.families():
            scores[fact] = instrument_f1(stated.families(), labels.families())
        elif fact == "key" and labels.key:
            scores[fact] = key_score(stated.key, labels.key)
        elif fact == "meter" and labels.meter:
            scores[fact] = float(stated.meter == labels.meter)
        elif fact == "tempo" and labels.tempo_bpm:
            scores[fact] = tempo_correct(stated.tempo_bpm, labels.tempo_bpm, labels.meter)
        elif fact == "style" and labels.style:
            scores[fact] = float(stated.style == labels.style)
    return scores


def describe(labels: Labels, facts: Iterable[str] = FACTS) -> str:
    """A plain sentence stating ``facts`` of ``labels`` (a reference answer, and the majority control)."""
    facts = set(facts)
    parts = []
    if "style" in facts and labels.style:
        parts.append(f"A {labels.style}")
    else:
        parts.append("A piece")
    if "instrument" in facts and labels.programs:
        names = sorted({instrument_word(p) for p in labels.programs})
        parts.append("for " + " and ".join(names))
    if "key" in facts and labels.key:
        parts.append(f"in {labels.key[0]} {labels.key[1]}")
    if "meter" in facts and labels.meter:
        parts.append(f"in {labels.meter} time")
    if "tempo" in facts and labels.tempo_bpm:
        parts.append(f"at {labels.tempo_bpm:.0f} BPM")
    return " ".join(parts) + "."


def instrument_word(program: int) -> str:
    """The everyday word for a GM program: its shortest synonym ("violin" for 40), else the GM name."""
    from m2ugen.notation.instruments import SYNONYMS, program_name

    words = [word for word, value in SYNONYMS.items() if value == program]
    return min(words, key=len) if words else program_name(program).lower()


def _is_meter(match: re.Match) -> bool:
    numerator, denominator = int(match.group(1)), int(match.group(2))
    return denominator in (1, 2, 4, 8, 16) and 1 <= numerator <= 16


def _mir_key(key: tuple[str, str]) -> str:
    tonic, mode = key
    pitch_class = (_PITCH_CLASS[tonic[0].upper()] + {"#": 1, "b": -1}.get(tonic[1:2], 0)) % 12
    names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    return f"{names[pitch_class]} {mode}"
