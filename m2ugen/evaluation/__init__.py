"""Evaluation of m2ugen models: the M2UGen paper's metrics, corrected, plus checks of musical fact.

``m2ugen-eval`` (:mod:`m2ugen.evaluation.cli`) and :func:`run_evaluation` run a model over a corpus
``clips.jsonl`` or a training manifest and write ``scores.json``, ``report.md``, ``report.html`` and plots.
The metrics are in their own modules: :mod:`~m2ugen.evaluation.text` (BLEU, METEOR, ROUGE-L,
BERTScore), :mod:`~m2ugen.evaluation.facts` (factual accuracy), :mod:`~m2ugen.evaluation.fad`
(FAD, KL, cosine), :mod:`~m2ugen.evaluation.embeddings` (CLAP, EnCodec, tagger from local folders),
:mod:`~m2ugen.evaluation.measure` and :mod:`~m2ugen.evaluation.scores` (adherence and editing),
:mod:`~m2ugen.evaluation.transcription`; :mod:`~m2ugen.evaluation.runner` asks the model,
:mod:`~m2ugen.evaluation.summary` adds chance levels and controls, :mod:`~m2ugen.evaluation.report`
writes the files. ``docs/evaluation.md`` documents each metric.
"""

from __future__ import annotations

from m2ugen.evaluation.api import run_evaluation

__all__ = ["run_evaluation"]
