"""Summaries of a task's per-example scores: means, corpus-level scores and every metric's chance or control.

Corpus-level: BLEU (sacrebleu corpus statistics), BERTScore, FAD, KL and pooled transcription scores.
Controls (``docs/evaluation.md``): another example's reference as the answer, the majority label stated
fluently, mismatched text/audio pairs, two halves of the reference set, the unedited source, the
reference clip or score itself.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

from m2ugen.evaluation import fad as fadlib
from m2ugen.evaluation import measure, scores, text, transcription
from m2ugen.evaluation.examples import Example
from m2ugen.evaluation.facts import FACTS, Labels, describe, score_facts
from m2ugen.notation.instruments import program_family

if TYPE_CHECKING:
    from m2ugen.evaluation.runner import EvalModels


def _means(items: list[tuple[Example, dict]]) -> dict[str, dict[str, Any]]:
    values: dict[str, list[float]] = defaultdict(list)
    for _, rec in items:
        for name, value in rec["scores"].items():
            if value is not None:
                values[name].append(float(value))
    return {name: {"value": float(np.mean(v)), "n": len(v)} for name, v in values.items()}


def _summarise_answers(items, models: EvalModels, rng: random.Random, notes: list[str]) -> dict:
    summary = _means(items)
    pairs = [(rec["answer"], ex.reference) for ex, rec in items if ex.reference]
    if pairs:
        hyps, refs = [p[0] for p in pairs], [p[1] for p in pairs]
        shuffled = _derangement(refs, rng)
        for name, value in text.bleu(hyps, refs).items():
            summary[name] = {"value": value, "n": len(pairs), "control": text.bleu(shuffled, refs)[name]}
        for name, fn in (("meteor", text.meteor), ("rouge_l", text.rouge_l)):
            summary[name]["control"] = float(np.mean([fn(h, r) for h, r in zip(shuffled, refs)]))
        if models.bertscore is not None:
            f1 = text.bert_score_f1(hyps, refs, models.bertscore)
            summary["bertscore_f1"] = {"value": float(np.mean(f1)), "n": len(f1),
                                       "control": float(np.mean(text.bert_score_f1(shuffled, refs, models.bertscore)))}
            for (ex, rec), value in zip([i for i in items if i[0].reference], f1):
                rec["scores"]["bertscore_f1"] = value
        else:
            notes.append("BERTScore not computed (skipped): give --bertscore DIR")
    _fact_baselines(items, summary)
    return summary


def _fact_baselines(items, summary: dict) -> None:
    """Chance (1 / distinct labels) and a majority control: the most common label stated as a fluent
    answer, scored by the same parser; for ``fact_accuracy`` both are averaged the way the model's is."""
    labelled = [ex for ex, _ in items if ex.labels is not None and ex.facts]
    chance: dict[str, float] = {}
    majority: dict[str, Any] = {}
    for fact in FACTS:
        values = [v for ex in labelled if fact in ex.facts and (v := _label_value(ex.labels, fact)) is not None]
        if values:
            chance[fact] = 1.0 / len(set(values))
            majority[fact] = Counter(values).most_common(1)[0][0]
    control: dict[str, list[float]] = defaultdict(list)
    for ex in labelled:
        scores_of = {}
        for fact in ex.facts:
            if fact in majority and _label_value(ex.labels, fact) is not None:
                claim = describe(_with(ex.labels, fact, majority[fact]), [fact])
                scores_of[fact] = score_facts(claim, ex.labels, [fact])[fact]
                control[f"fact_{fact}"].append(scores_of[fact])
        if scores_of:
            control["fact_accuracy"].append(float(np.mean(list(scores_of.values()))))
            control["_chance"].append(float(np.mean([chance[f] for f in scores_of])))
    for fact, value in chance.items():
        if f"fact_{fact}" in summary:
            summary[f"fact_{fact}"].update(chance=value, control=float(np.mean(control[f"fact_{fact}"])))
    if "fact_accuracy" in summary and control["fact_accuracy"]:
        summary["fact_accuracy"].update(chance=float(np.mean(control["_chance"])),
                                        control=float(np.mean(control["fact_accuracy"])))


def _label_value(labels: Labels, fact: str):
    return {"instrument": tuple(sorted(labels.families())) or None, "key": labels.key, "meter": labels.meter,
            "tempo": round(labels.tempo_bpm) if labels.tempo_bpm else None, "style": labels.style}[fact]


def _with(labels: Labels, fact: str, value) -> Labels:
    """``labels`` with one fact replaced by ``value`` (the majority control's claim)."""
    from dataclasses import replace

    if fact == "instrument":
        return replace(labels, programs=tuple(_family_program(family) for family in value))
    if fact == "tempo":
        return replace(labels, tempo_bpm=float(value))
    return replace(labels, **{fact: value})


def _family_program(family: str) -> int:
    """The first GM program of a family (drums: 0, stated as "drums" by :func:`describe` anyway)."""
    return next((p for p in range(128) if program_family(p) == family), 0)


def _summarise_generate(items, models: EvalModels, rng: random.Random, notes: list[str]) -> dict:
    summary = _means(items)
    generated = [rec.pop("_audio") for _, rec in items]
    targets = [measure.load_clip(ex.target_audio) if ex.target_audio is not None else None for ex, _ in items]
    references = [t for t in targets if t is not None]
    # Control for adherence: the same measurements on the reference clips, which are right by construction.
    control = defaultdict(list)
    for (ex, _), target in zip(items, targets):
        if target is not None:
            for name, value in measure.adherence(*target, ex.requested, models.clap).items():
                control[name].append(value)
    for name, values in control.items():
        if name in summary:
            summary[name]["control"] = float(np.mean(values))
    for name, value in measure.ADHERENCE_CHANCE.items():
        if name in summary:
            summary[name]["chance"] = value
    if models.clap is not None:
        texts = models.clap.embed_text([ex.instruction for ex, _ in items])
        audio = np.stack([models.clap.embed(s, r).mean(axis=0) for s, r in generated])
        shuffled = _derangement(list(range(len(items))), rng)
        summary["clap_score"]["control"] = float(np.mean([fadlib.cosine(audio[i], texts[j])
                                                          for i, j in enumerate(shuffled)]))
    else:
        notes.append("CLAP score and instrument adherence not computed (skipped): give --clap DIR")
    for name, embedder in (("clap", models.clap), ("encodec", models.encodec)):
        if embedder is None:
            notes.append(f"FAD ({name}) not computed (skipped): give --{name} DIR")
        elif references:
            gen = np.concatenate([embedder.embed(s, r) for s, r in generated])
            ref = np.concatenate([embedder.embed(s, r) for s, r in references])
            if min(len(gen), len(ref)) < 2:
                notes.append(f"FAD ({name}) not computed: fewer than 2 embeddings in a set (evaluate more clips)")
                continue
            entry = {"value": fadlib.fad(gen, ref), "n": len(generated)}
            if len(references) >= 4:  # control: FAD between two halves of the reference clips
                half = len(references) // 2
                entry["control"] = fadlib.fad(np.concatenate([embedder.embed(s, r) for s, r in references[:half]]),
                                              np.concatenate([embedder.embed(s, r) for s, r in references[half:]]))
            summary[f"fad_{name}"] = entry
    if models.tagger is None:
        notes.append("KL not computed (skipped): give --tagger DIR")
    elif references:
        values = []
        for (_, rec), (samples, rate), target in zip(items, generated, targets):
            if target is not None:
                rec["scores"]["kl"] = fadlib.kl_divergence(models.tagger.posterior(*target),
                                                           models.tagger.posterior(samples, rate))
                values.append(rec["scores"]["kl"])
        posts = [models.tagger.posterior(*t) for t in references]
        order = _derangement(list(range(len(posts))), rng)
        summary["kl"] = {"value": float(np.mean(values)), "n": len(values)}
        if len(posts) >= 2:  # control: KL between two different reference clips
            summary["kl"]["control"] = float(np.mean([fadlib.kl_divergence(posts[i], posts[j])
                                                      for i, j in enumerate(order)]))
    return summary


def _summarise_edit(items, models, rng, notes) -> dict:
    summary = _means(items)
    controls = [rec["control"]["change_present"] for _, rec in items if rec["control"]["change_present"] is not None]
    if "change_present" in summary and controls:
        summary["change_present"]["control"] = float(np.mean(controls))
    if len(items) >= 2:  # control: chroma similarity of unrelated clips
        order = _derangement(list(range(len(items))), rng)
        sources = [measure.load_clip(ex.audio) for ex, _ in items]
        summary["chroma_similarity"]["control"] = float(np.mean(
            [measure.chroma_similarity(*sources[i], *sources[j]) for i, j in enumerate(order)]))
    return summary


def _summarise_transcribe(items, models, rng, notes) -> dict:
    summary = _means(items)
    pieces = [rec.pop("_notes") for _, rec in items]
    for name, value in transcription.pooled_note_scores(pieces).items():
        summary[f"pooled_{name}"] = {"value": value, "n": len(pieces)}
    if len(pieces) >= 2:  # control: each piece's notes scored against another piece's reference
        order = _derangement(list(range(len(pieces))), rng)
        shuffled = [(pieces[i][0], pieces[j][0]) for i, j in enumerate(order)]
        summary["pooled_note_f1"]["control"] = transcription.pooled_note_scores(shuffled)["note_f1"]
    return summary


def _summarise_scores(items, models, rng, notes) -> dict:
    """Control: the reference score itself (score: the clip's ABC, whose adherence should be 1;
    score_edit: the unedited source given back, whose exact-edit rate is 0)."""
    from m2ugen.notation.score import parse_abc

    summary = _means(items)
    control = defaultdict(list)
    for ex, _ in items:
        if not ex.reference:
            continue
        reference = parse_abc(ex.reference)
        control["valid"].append(1.0)
        if ex.task == "score":
            for name, value in scores.adherence(reference, ex.requested).items():
                control[f"adherence_{name}"].append(value)
        else:
            control["exact_edit"].append(float(scores.exact_transposition(reference, reference,
                                                                          int(ex.requested["semitones"]))))
    for name, values in control.items():
        if name in summary:
            summary[name]["control"] = float(np.mean(values))
    return summary


SUMMARISERS = {"caption": _summarise_answers, "qa": _summarise_answers, "generate": _summarise_generate,
                "edit": _summarise_edit, "transcribe": _summarise_transcribe, "score": _summarise_scores,
                "score_edit": _summarise_scores}


def _derangement(items: list, rng: random.Random) -> list:
    """``items`` rotated by a random non-zero offset: every item moves (a mismatched-pair control)."""
    if len(items) < 2:
        return list(items)
    shift = rng.randrange(1, len(items))
    return items[shift:] + items[:shift]
