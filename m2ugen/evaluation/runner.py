"""Run a model over evaluation examples and score every output: :func:`evaluate`.

Every example is one fresh conversation (the assistant is reset before it). Per-example scores are
kept in :attr:`Results.records`; corpus-level scores (BLEU, BERTScore, FAD, pooled transcription)
and every metric's chance level or control are in :attr:`Results.summary`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from m2ugen.errors import ConfigError, M2UGenError
from m2ugen.evaluation import fad as fadlib
from m2ugen.evaluation import measure, scores, text, transcription
from m2ugen.evaluation.embeddings import AudioTagger, ClapEmbedder, EncodecEmbedder
from m2ugen.evaluation.examples import Example
from m2ugen.evaluation.facts import score_facts
from m2ugen.evaluation.summary import SUMMARISERS

MODEL_KINDS: tuple[str, ...] = ("clap", "encodec", "tagger", "bertscore")
# Which tasks need which scoring model (a model is loaded only when one of its tasks is evaluated).
MODEL_TASKS = {"clap": ("generate", "edit"), "encodec": ("generate",), "tagger": ("generate",),
               "bertscore": ("caption", "qa")}


@dataclass
class EvalModels:
    """The scoring models (each None when skipped): CLAP, EnCodec, an audio tagger, a BERTScore encoder folder."""

    clap: ClapEmbedder | None = None
    encodec: EncodecEmbedder | None = None
    tagger: AudioTagger | None = None
    bertscore: Path | None = None

    @classmethod
    def load(cls, dirs: dict[str, str | Path | None], *, tasks: Sequence[str], skip: Sequence[str] = ()) -> "EvalModels":
        """Load the models that ``tasks`` need from their folders, except those in ``skip``.

        Raises:
            WeightsMissingError: a needed, unskipped model's folder is not given or holds no model.
        """
        from m2ugen.evaluation.weights import require_model_dir

        unknown = sorted(set(skip) - set(MODEL_KINDS))
        if unknown:
            raise ConfigError(f"cannot skip {unknown}: choose from {', '.join(MODEL_KINDS)}")
        need = {kind for kind in MODEL_KINDS if kind not in skip and set(MODEL_TASKS[kind]) & set(tasks)}
        return cls(
            clap=ClapEmbedder.from_dir(dirs.get("clap")) if "clap" in need else None,
            encodec=EncodecEmbedder.from_dir(dirs.get("encodec")) if "encodec" in need else None,
            tagger=AudioTagger.from_dir(dirs.get("tagger")) if "tagger" in need else None,
            bertscore=require_model_dir(dirs.get("bertscore"), what="BERTScore encoder", option="--bertscore",
                                        example="roberta-large") if "bertscore" in need else None,
        )


@dataclass
class Results:
    """``records``: one dict per example (id, task, inputs, outputs, ``scores``); ``summary``: per task,
    per metric ``{"value", "n", "chance"?, "control"?}``; ``notes``: what was not computed and why."""

    records: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    model: str = ""


def _strip_label(reply_text: str) -> str:
    from m2ugen.assistant import DEMO_LABEL

    return reply_text.removeprefix(DEMO_LABEL).strip()


def evaluate(assistant: Any, examples: Sequence[Example], *, models: EvalModels, out_dir: str | Path,
             seconds: float | None = None, seed: int = 0, progress: bool = True, model_name: str = "",
             chat_settings: dict[str, Any] | None = None) -> Results:
    """Ask ``assistant`` every example, score its outputs, and summarise with chance levels and controls.

    Args:
        assistant: an :class:`~m2ugen.assistant.Assistant` (or anything with its ``chat``/``reset``).
        out_dir: generated and edited audio is written to ``out_dir/audio``.
        seconds: length of generated music (None: the length of the reference clip, else 10 s).
        seed: seeds the model's sampling, and the shuffled-pair controls.
    """
    out = Path(out_dir)
    settings = {"seed": seed, **(chat_settings or {})}
    results = Results(model=model_name)
    by_task: dict[str, list[tuple[Example, dict[str, Any]]]] = defaultdict(list)
    for example in tqdm(examples, desc="evaluating", unit="example", disable=not progress):
        assistant.reset()
        record = {"id": example.id, "task": example.task, "instruction": example.instruction, "scores": {}}
        _RUNNERS[example.task](assistant, example, record, models, out, seconds, settings)
        results.records.append(record)
        by_task[example.task].append((example, record))
    rng = random.Random(seed)
    for task, items in by_task.items():
        results.summary[task] = SUMMARISERS[task](items, models, rng, results.notes)
    return results


# --- running one example ------------------------------------------------------------------------

def _run_answer(bot, ex: Example, rec: dict, models: EvalModels, out: Path, seconds, settings) -> None:
    reply = bot.chat(ex.instruction, audio=ex.audio, image=ex.image, video=ex.video, task="answer", **settings)
    answer = _strip_label(reply.text)
    rec.update(answer=answer, reference=ex.reference)
    if ex.reference:
        rec["scores"].update(meteor=text.meteor(answer, ex.reference), rouge_l=text.rouge_l(answer, ex.reference),
                             bleu4_sentence=text.sentence_bleu4(answer, ex.reference))
    if ex.labels is not None and ex.facts:
        facts = score_facts(answer, ex.labels, ex.facts)
        rec["scores"].update({f"fact_{k}": v for k, v in facts.items()})
        if facts:
            rec["scores"]["fact_accuracy"] = float(np.mean(list(facts.values())))


def _music_seconds(ex: Example, seconds: float | None) -> float:
    if seconds is not None:
        return seconds
    if ex.target_audio is not None:
        import soundfile as sf

        return min(float(sf.info(str(ex.target_audio)).duration), 30.0)
    return 10.0


def _save(audio, out: Path, ex: Example) -> Path:
    path = out / "audio" / (ex.id.replace("/", "__") + ".wav")
    return audio.save(path, overwrite=True)


def _run_generate(bot, ex: Example, rec: dict, models: EvalModels, out: Path, seconds, settings) -> None:
    reply = bot.chat(ex.instruction, image=ex.image, video=ex.video, task="generate",
                     seconds=_music_seconds(ex, seconds), **settings)
    rec["output_audio"] = str(_save(reply.audio, out, ex))
    samples, rate = reply.audio.mono(), reply.audio.sample_rate
    rec["scores"].update(measure.adherence(samples, rate, ex.requested, models.clap))
    rec["_audio"] = (samples, rate)
    if models.clap is not None:
        text_emb = models.clap.embed_text([ex.instruction])[0]
        rec["scores"]["clap_score"] = fadlib.cosine(models.clap.embed(samples, rate).mean(axis=0), text_emb)


def _run_edit(bot, ex: Example, rec: dict, models: EvalModels, out: Path, seconds, settings) -> None:
    source, rate = measure.load_clip(ex.audio)
    reply = bot.chat(ex.instruction, audio=ex.audio, task="edit", seconds=seconds, **settings)
    rec["output_audio"] = str(_save(reply.audio, out, ex))
    edited, edited_rate = reply.audio.mono(), reply.audio.sample_rate
    rec["scores"]["chroma_similarity"] = measure.chroma_similarity(source, rate, edited, edited_rate)
    rec["scores"]["change_present"] = measure.change_present(source, rate, edited, edited_rate, ex.requested, models.clap)
    rec["control"] = {"change_present": measure.change_present(source, rate, source, rate, ex.requested, models.clap)}


def _run_transcribe(bot, ex: Example, rec: dict, models: EvalModels, out: Path, seconds, settings) -> None:
    reply = bot.chat(ex.instruction, audio=ex.audio, task="transcribe")
    reference, ref_families = transcription.reference_notes(ex.notes)
    estimate, est_families = transcription.midi_notes(reply.midi_path)
    rec.update(abc=reply.abc, _notes=(reference, estimate))
    rec["scores"].update(transcription.piece_scores(reference, ref_families, estimate, est_families,
                                                    reply.abc, ex.reference))


def _run_score(bot, ex: Example, rec: dict, models: EvalModels, out: Path, seconds, settings) -> None:
    try:
        reply = bot.chat(ex.instruction, task="answer", **settings)
        answer, failure = _strip_label(reply.text), None
        written = reply.abc or answer  # a score model's <edit> tags are applied by the assistant: judge its score
    except M2UGenError as err:  # e.g. an edit tag the score tools cannot apply: this example fails, the run goes on
        answer, written, failure = "", "", str(err)
    score, problem = scores.read_score(written)
    rec.update(answer=answer, invalid_because=failure or problem)
    rec["scores"]["valid"] = float(score is not None)
    if ex.task == "score":
        for name, value in (scores.adherence(score, ex.requested) if score is not None else
                            {k: 0.0 for k in _requested_names(ex.requested)}).items():
            rec["scores"][f"adherence_{name}"] = value
    else:
        from m2ugen.notation.score import parse_abc

        source = parse_abc(ex.reference)
        exact = score is not None and scores.exact_transposition(score, source, int(ex.requested["semitones"]))
        rec["scores"]["exact_edit"] = float(exact)


def _requested_names(requested: dict) -> list[str]:
    names = {"key": "key", "meter": "meter", "tempo_bpm": "tempo", "program": "instrument"}
    return [names[k] for k in names if requested.get(k) is not None]


_RUNNERS = {"caption": _run_answer, "qa": _run_answer, "generate": _run_generate, "edit": _run_edit,
            "transcribe": _run_transcribe, "score": _run_score, "score_edit": _run_score}


