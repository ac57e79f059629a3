"""Text-overlap scores of answers against reference answers: BLEU-1..4, METEOR, ROUGE-L F1, BERTScore F1.

Each wraps the maintained reference implementation: sacrebleu (word-level BLEU with its ``13a``
tokeniser), nltk (METEOR), rouge-score (ROUGE-L) and bert-score (BERTScore). Text metrics reward
fluent paraphrase, not correct musical facts: read them beside :mod:`m2ugen.evaluation.facts`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from m2ugen.evaluation.weights import require_model_dir

_WORD = re.compile(r"\w+|[^\w\s]")


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU-1..4 in [0, 100] (sacrebleu, word level, one reference per hypothesis).

    Returns:
        ``{"bleu1": ..., "bleu2": ..., "bleu3": ..., "bleu4": ...}``; BLEU-n uses n-grams up to n
        with uniform weights and the brevity penalty, as in the BLEU paper.
    """
    from sacrebleu.metrics import BLEU

    _check_pairs(hypotheses, references)
    return {f"bleu{n}": float(BLEU(max_ngram_order=n).corpus_score(list(hypotheses), [list(references)]).score)
            for n in range(1, 5)}


def sentence_bleu4(hypothesis: str, reference: str) -> float:
    """Sentence BLEU-4 in [0, 100] (sacrebleu, with effective n-gram order for short sentences)."""
    from sacrebleu.metrics import BLEU

    return float(BLEU(effective_order=True).sentence_score(hypothesis, [reference]).score)


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 in [0, 1] (rouge-score, Porter stemming): the harmonic mean of LCS precision and recall."""
    from rouge_score.rouge_scorer import RougeScorer

    return float(RougeScorer(["rougeL"], use_stemmer=True).score(reference, hypothesis)["rougeL"].fmeasure)


class _NoSynonyms:
    """Stands in for WordNet in nltk's METEOR: no synonyms, so only exact and stem matches count."""

    @staticmethod
    def synsets(word: str) -> list:
        return []


def meteor(hypothesis: str, reference: str) -> float:
    """METEOR in [0, 1] (nltk's implementation, exact + Porter-stem matching stages, default α, β, γ).

    The WordNet synonym stage is off: WordNet's data is not distributed on PyPI and this library
    downloads nothing, so the score is METEOR's exact+stem variant (``docs/evaluation.md``).
    Words are lower-cased and split into runs of word characters and single punctuation marks.
    """
    from nltk.translate.meteor_score import single_meteor_score

    return float(single_meteor_score(_tokens(reference), _tokens(hypothesis), wordnet=_NoSynonyms()))


def bert_score_f1(hypotheses: Sequence[str], references: Sequence[str], model_dir: str | Path | None,
                  *, batch_size: int = 16, device: str | None = None) -> list[float]:
    """BERTScore F1 of each pair (bert-score; no baseline rescaling, no idf weighting).

    Args:
        model_dir: a local transformers encoder (e.g. ``roberta-large`` saved with ``save_pretrained``);
            its last hidden layer is used unless the folder's ``config.json`` has ``"bertscore_layer"``.
        device: torch device; None: CUDA when available, else CPU.

    Raises:
        WeightsMissingError: ``model_dir`` is None or holds no model.
    """
    from bert_score import BERTScorer

    _check_pairs(hypotheses, references)
    folder = require_model_dir(model_dir, what="BERTScore encoder", option="--bertscore",
                               example="roberta-large")
    config = json.loads((folder / "config.json").read_text())
    layers = int(config.get("bertscore_layer", config.get("num_hidden_layers", 0)))
    scorer = BERTScorer(model_type=str(folder), num_layers=layers, batch_size=batch_size, device=device)
    _, _, f1 = scorer.score(list(hypotheses), list(references))
    return [float(x) for x in f1]


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
