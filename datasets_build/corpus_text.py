"""Text records made from clip labels, in the manifest format the training stages read (docs/manifests.md).

Every sentence states label facts only (instruments, key, metre, tempo, parts, style, title,
composer), so nothing in a record can be wrong about its audio. Per clip: one caption (phrasing drawn
by seed), a question-answer pair per fact, a transcription target (audio -> ABC), a text -> ABC
composition request and a text -> music generation request; per edit clip: the audio edit
(source render -> target render) and the same edit on the ABC text.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from datasets_build.manifest import ManifestRecord
from m2ugen.errors import M2UGenError

if TYPE_CHECKING:
    from m2ugen.notation.edits import Edit

MANIFEST_KINDS: tuple[str, ...] = ("captions", "qa", "transcribe", "compose", "generate", "edit", "edit_abc")
# How users ask for a caption ("" as in the original's stage 1); m2ugen caption's default is the second.
DESCRIBE_REQUESTS: tuple[str, ...] = ("", "Describe this music in detail.", "Describe this music.", "What do you hear?",
                                      "Describe this music: its instruments, key, metre, tempo and style.")
_INTERVALS = ("unison", "minor second", "major second", "minor third", "major third", "perfect fourth", "tritone",
              "perfect fifth", "minor sixth", "major sixth", "minor seventh", "major seventh", "octave")
_TEMPO_WORDS = ((60, "very slow"), (80, "slow"), (108, "moderate"), (140, "lively"), (180, "fast"), (10_000, "very fast"))


def _pick(clip_id: str, salt: str, options: list[str]) -> str:
    return options[zlib.crc32(f"{clip_id}:{salt}".encode("utf-8")) % len(options)]


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _names(row: Mapping[str, Any]) -> list[str]:
    return [inst["name"].lower() for inst in row["instruments"]]


def key_text(row: Mapping[str, Any]) -> str:
    return f"{row['key']['tonic']} {row['key']['mode']}"


def tempo_text(bpm: float) -> str:
    word = next(w for limit, w in _TEMPO_WORDS if bpm < limit)
    return f"{word}, about {round(bpm)} quarter notes per minute"


def melody_name(row: Mapping[str, Any]) -> str:
    by_part = {inst["part"]: inst["name"].lower() for inst in row["instruments"]}
    return by_part.get(row.get("melody_part", row["instruments"][0]["part"]), _names(row)[0])


def _piece(row: Mapping[str, Any]) -> str:
    return row["style"] or ("piece" if row["n_parts"] > 1 else "tune")


def caption(row: Mapping[str, Any]) -> str:
    """One description of a clip from its labels; the phrasing depends on the clip id only."""
    names, piece, key, bpm = _names(row), _piece(row), key_text(row), round(row["tempo_bpm"])
    article = "an" if piece[0] in "aeiou" else "a"
    ensemble = f"solo {names[0]}" if len(names) == 1 else _join(names)
    options = [
        f"{article.capitalize()} {piece} in {key} and {row['meter']} time played by {ensemble}, at {bpm} BPM.",
        f"{ensemble.capitalize()} {'plays' if len(names) == 1 else 'play'} {article} {piece} in {key}; "
        f"{row['meter']} time, {tempo_text(row['tempo_bpm'])}.",
        f"{row['n_parts']}-part {piece} in {key} ({row['meter']}, {bpm} BPM) for {ensemble}.",
    ]
    text = _pick(row["id"], "caption", options)  # no title: a listener cannot know it from the audio
    if row.get("composer"):
        text += f" Composer: {row['composer']}."
    return text


def qa_pairs(row: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(fact, question, answer)`` for every fact a clip's labels hold."""
    names = _names(row)
    pairs = [
        ("melody", "What instrument plays the melody?", f"The {melody_name(row)}."),
        ("key", "What key is this in?", f"{key_text(row)}."),
        ("meter", "What is the time signature?", f"{row['meter']}."),
        ("tempo", "How fast is it?", f"It is {tempo_text(row['tempo_bpm'])} ({round(row['tempo_bpm'])} BPM)."),
        ("parts", "How many instruments are playing?",
         f"{row['n_parts']}: {_join(names)}." if row["n_parts"] > 1 else f"One: {names[0]}."),
        ("instruments", "Which instruments can you hear?", f"{_join(sorted(set(names)))}.".capitalize()),
    ]
    if row.get("style"):
        pairs.append(("style", "What kind of piece is this?", f"{'An' if row['style'][0] in 'aeiou' else 'A'} {row['style']}."))
    return pairs


def _short_key(row: Mapping[str, Any]) -> str:
    """The key as people ask for it: "D" for D major, "E minor" for E minor."""
    return row["key"]["tonic"] if row["key"]["mode"] == "major" else key_text(row)


def _spoken_names(row: Mapping[str, Any]) -> list[str]:
    """Instrument names, the violin sometimes called a fiddle as folk players do."""
    fiddle = _pick(row["id"], "fiddle", ["violin", "fiddle"])
    return [fiddle if name == "violin" else name for name in _names(row)]


def request(row: Mapping[str, Any]) -> str:
    """A composition request the clip fulfils, phrased one of several ways (by clip id), e.g.
    "a jig in D major in 6/8 time for violin, at 120 BPM" or "a lively jig in D for fiddle"."""
    piece = _piece(row)
    names, spoken, bpm = _join(_names(row)), _join(_spoken_names(row)), round(row["tempo_bpm"])
    word = tempo_text(row["tempo_bpm"]).split(",")[0]
    options = [
        f"{piece} in {key_text(row)} in {row['meter']} time for {names}, at {bpm} BPM",
        f"{word} {piece} in {_short_key(row)} for {spoken}",
        f"{piece} in {_short_key(row)} for {spoken}",
        f"{piece} for {spoken} in {key_text(row)}, {row['meter']} time, {bpm} BPM",
    ]
    text = _pick(row["id"], "request", options)
    return f"{'an' if text[0] in 'aeiou' else 'a'} {text}"


def compose_instruction(row: Mapping[str, Any]) -> str:
    """The user's words asking for the clip's score."""
    verb = _pick(row["id"], "verb", ["Write", "Compose", "Write", "Give me"])
    return f"{verb} {request(row)} in ABC notation."


def edit_instruction(edit: Mapping[str, Any], source: Mapping[str, Any], target: Mapping[str, Any]) -> tuple[str, str]:
    """The user's words for an exact edit, with the facts of both sides, and the ``<edit ...>`` tag that
    does exactly what they ask (short requests such as "Slower." get the tools' usual step, x0.8)."""
    kind = edit["kind"]
    pick = functools.partial(_pick, target["id"], "edit")
    if kind == "transpose":
        steps = edit["semitones"]
        direction = "up" if steps > 0 else "down"
        interval = _INTERVALS[abs(steps)]
        tonic = target["key"]["tonic"] + ("m" if target["key"]["mode"] == "minor" else "")
        return pick([
            (f"Transpose this {direction} a {interval}.", f"<edit transpose={steps:+d}>"),
            (f"Move it {direction} {abs(steps)} semitone{'s' if abs(steps) > 1 else ''}, to {key_text(target)}.",
             f"<edit transpose={steps:+d}>"),
            (f"Transpose it to {_short_key(target)}.", f"<edit key={tonic}>"),
        ])
    if kind == "tempo":
        faster = target["tempo_bpm"] > source["tempo_bpm"]
        word = "faster" if faster else "slower"
        return pick([
            (f"Make it {word}: {round(target['tempo_bpm'])} BPM instead of {round(source['tempo_bpm'])}.",
             f"<edit tempo={round(target['tempo_bpm'])}>"),
            (f"Play it at {round(target['tempo_bpm'])} BPM.", f"<edit tempo={round(target['tempo_bpm'])}>"),
            (f"{word.capitalize()}.", f"<edit tempo=x{1.25 if faster else 0.8}>"),
            (f"Now make it {word}.", f"<edit tempo=x{1.25 if faster else 0.8}>"),
        ])
    by_part = {inst["part"]: inst["name"].lower() for inst in source["instruments"]}
    tag = edit_tag(edit)
    if kind == "instrument":
        new = next(inst["name"].lower() for inst in target["instruments"] if inst["part"] == edit["part"])
        if len(by_part) == 1:
            return pick([(f"Play it on the {new}.", tag), (f"Play the {by_part[edit['part']]} part on {new} instead.", tag)])
        return f"Play the {by_part[edit['part']]} part on {new} instead.", tag
    if kind == "remove_part":
        return f"Remove the {by_part[edit['part']]} part (part {edit['part'] + 1}).", tag
    if edit["part"] == 0:
        return pick([("Only the melody.", tag), (f"Keep only the {by_part[0]} part (part 1).", tag)])
    return f"Keep only the {by_part[edit['part']]} part (part {edit['part'] + 1}).", tag


def score_edit(edit: Mapping[str, Any]) -> Edit:
    """A clip edit (``{"kind", ...}`` of :func:`~datasets_build.corpus_augment.choose_edit`) as the score
    edit of :mod:`m2ugen.notation.edits` (voices 1-based: part ``p`` is voice ``p + 1``)."""
    from m2ugen.notation.edits import make_edit

    kind = edit["kind"]
    if kind == "transpose":
        return make_edit("transpose", edit["semitones"])
    if kind == "tempo":
        return make_edit("tempo", f"x{edit['tempo_scale']}")
    if kind == "instrument":
        return make_edit("instrument", edit["program"], voice=edit["part"] + 1)
    return make_edit("remove" if kind == "remove_part" else "solo", edit["part"] + 1)


def edit_tag(edit: Mapping[str, Any]) -> str:
    """The edit as the ``<edit ...>`` tag of :mod:`m2ugen.notation.edits`, e.g. ``<edit transpose=+3>``."""
    return str(score_edit(edit))


def edited_abc(source_abc: str, edit: Mapping[str, Any]) -> str:
    """The source clip's ABC with ``edit`` applied by :func:`m2ugen.notation.edits.apply_edits`, the
    function the assistant calls for the same ``<edit ...>`` tag, so both give the identical score.

    Raises:
        M2UGenError: the source ABC cannot be read (AbcError) or the edit cannot be applied (EditError).
    """
    return tagged_abc(source_abc, edit_tag(edit))


def _tag_response(tag: str, kind: str, target: Mapping[str, Any]) -> str:
    """The words after a tag: a tempo step (``tempo=x0.8``) says which way, not the clip's tempo."""
    if "=x" in tag:
        return f"Here it is, {'faster' if float(tag.split('=x')[1].rstrip('>')) > 1 else 'slower'}."
    return _edit_response(kind, target)


def tagged_abc(source_abc: str, tag: str) -> str:
    """The source ABC with the ``<edit ...>`` tag applied, as the assistant applies a model's tag."""
    from m2ugen.notation.edits import apply_edits, parse_edits
    from m2ugen.notation.score import parse_abc, score_to_abc

    return score_to_abc(apply_edits(parse_abc(source_abc), parse_edits(tag)))


def _edit_response(kind: str, target: Mapping[str, Any]) -> str:
    return {"transpose": f"Here it is in {key_text(target)}.", "tempo": f"Here it is at {round(target['tempo_bpm'])} BPM.",
            "instrument": f"Here it is for {_join(_names(target))}.", "remove_part": f"Here it is for {_join(_names(target))}.",
            "solo_part": f"Here is the {_names(target)[0]} part alone."}[kind]


def clip_records(row: Mapping[str, Any], rows_by_id: Mapping[str, Mapping[str, Any]]) -> dict[str, list[ManifestRecord]]:
    """The text records of one clip, by manifest kind (see :data:`MANIFEST_KINDS`)."""
    cid, audio, meta = row["id"], row["audio"], {"clip": row["id"], "work_id": row["work_id"], "split": row["split"]}
    text = caption(row)
    out: dict[str, list[ManifestRecord]] = {kind: [] for kind in MANIFEST_KINDS}
    ask = _pick(cid, "describe", list(DESCRIBE_REQUESTS))
    out["captions"].append(ManifestRecord(f"{cid}:caption", "caption", ask, text, audio=audio, meta=meta))
    out["qa"] += [ManifestRecord(f"{cid}:qa:{fact}", "qa", question, answer, audio=audio, meta={**meta, "fact": fact})
                  for fact, question, answer in qa_pairs(row)]
    out["transcribe"].append(ManifestRecord(f"{cid}:abc", "qa", "Transcribe this music into ABC notation.", row["abc"],
                                            audio=audio, meta=meta))
    ask = request(row)
    out["compose"].append(ManifestRecord(f"{cid}:compose", "text", compose_instruction(row), row["abc"], meta=meta))
    out["generate"].append(ManifestRecord(f"{cid}:generate", "generate", f"Play {ask}.", f"Here is {ask}.",
                                          target_audio=audio, target_caption=text, meta=meta))
    edit = row.get("edit")
    source = rows_by_id.get(edit["source"]) if edit else None
    if not edit or source is None or not edit_names_its_voice(edit, [inst["part"] for inst in source["instruments"]]):
        return out
    try:
        target_abc = edited_abc(source["abc"], edit)  # in a current build, row["abc"] already
    except M2UGenError:
        target_abc = None  # the source ABC is outside what the score tools read: no ABC pair
    instruction, tag = edit_instruction(edit, source, row)
    pair_meta = {**meta, "edit": edit, "edit_tag": tag, "source_clip": source["id"]}
    out["edit"].append(ManifestRecord(f"{cid}:edit", "edit", instruction, _edit_response(edit["kind"], row),
                                      audio=source["audio"], target_audio=audio, target_caption=text,
                                      meta={**pair_meta, "source_abc": source["abc"], "target_abc": target_abc or row["abc"]}))
    if target_abc is not None:
        # The model answers with the tag, the assistant's tools apply it (m2ugen.notation.edits); meta keeps the score.
        out["edit_abc"].append(ManifestRecord(f"{cid}:edit_abc", "text", f"{source['abc']}\n{instruction}",
                                              f"{tag}\n{_tag_response(tag, edit['kind'], row)}",
                                              meta={**pair_meta, "target_abc": target_abc if tag == edit_tag(edit)
                                                    else tagged_abc(source["abc"], tag)}))
    return out


def edit_names_its_voice(edit: Mapping[str, Any], source_parts: list[int]) -> bool:
    """Whether the part an edit names (if any) is voice ``part + 1`` of the source's ABC, i.e. it
    plays in the source excerpt and so does every part before it (``source_parts``: those that play)."""
    return "part" not in edit or sorted(set(source_parts))[: edit["part"] + 1] == list(range(edit["part"] + 1))


def text_records(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[ManifestRecord]]:
    """All text records of a build, keyed by ``(split, kind)``; an edit whose source clip failed has no pair."""
    rows = list(rows)
    by_id = {row["id"]: row for row in rows}
    out: dict[tuple[str, str], list[ManifestRecord]] = {}
    for row in rows:
        for kind, records in clip_records(row, by_id).items():
            out.setdefault((row["split"], kind), []).extend(records)
    return out
