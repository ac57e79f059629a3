"""m2ugen.evaluation: FAD, cosine/CLAP accumulation, text metrics against their reference packages,
factual accuracy, missing weights, the runner and the report (tiny random scoring models, a stub model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import linalg

from m2ugen.evaluation import fad as fadlib
from m2ugen.evaluation import text
from m2ugen.evaluation.facts import Labels, parse_facts, score_facts
from m2ugen.evaluation.weights import WeightsMissingError


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    from m2ugen.evaluation.tiny import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("tiny-scoring"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from m2ugen.evaluation.demo_data import write_demo_corpus

    return write_demo_corpus(tmp_path_factory.mktemp("corpus"))


def _noise(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * rate)) * 0.1).astype(np.float32)


# --- FAD --------------------------------------------------------------------------------------

def test_fad_of_a_set_with_itself_is_zero(tiny_dirs):
    from m2ugen.evaluation.embeddings import EncodecEmbedder

    embeddings = EncodecEmbedder.from_dir(tiny_dirs["encodec"]).embed(_noise(3.0, 0), 16000)
    assert embeddings.shape[0] > embeddings.shape[1]  # full-rank covariance
    assert fadlib.fad(embeddings, embeddings) == pytest.approx(0.0, abs=1e-6)


def test_fad_equals_the_closed_form_frechet_distance(tiny_dirs):
    from m2ugen.evaluation.embeddings import EncodecEmbedder

    embedder = EncodecEmbedder.from_dir(tiny_dirs["encodec"])
    a = embedder.embed(_noise(3.0, 1), 16000).astype(np.float64)
    b = embedder.embed(np.sin(np.arange(48000) * 0.05).astype(np.float32) * 0.3 + _noise(3.0, 2), 16000)
    b = b.astype(np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a = (a - mu_a).T @ (a - mu_a) / (len(a) - 1)
    s_b = (b - mu_b).T @ (b - mu_b) / (len(b) - 1)
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * linalg.sqrtm(s_a @ s_b).real)
    assert expected > 1e-6
    assert fadlib.fad(a, b) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_cosine_is_a_scalar_even_for_row_vectors():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((1, 512)), rng.standard_normal((1, 512))
    value = fadlib.cosine(a, b)
    assert isinstance(value, float) and -1.0 <= value <= 1.0
    assert fadlib.cosine(a, a) == pytest.approx(1.0) and fadlib.cosine(a, -a) == pytest.approx(-1.0)


def test_kl_divergence():
    p = np.array([0.7, 0.2, 0.1])
    assert fadlib.kl_divergence(p, p) == pytest.approx(0.0, abs=1e-9)
    assert fadlib.kl_divergence(p, p[::-1]) == pytest.approx(float(np.sum(p * np.log(p / p[::-1]))))


# --- text metrics against their reference packages ------------------------------------------------

HYPS = ["a lively jig played on the fiddle in d major", "the cat sat"]
REFS = ["a fast jig for violin in d major and six eight time", "the cat sat on the mat"]


def test_bleu_is_sacrebleu_word_level():
    import sacrebleu
    from sacrebleu.metrics import BLEU

    scores = text.bleu(HYPS, REFS)
    assert scores["bleu4"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    for n in range(1, 5):
        assert scores[f"bleu{n}"] == pytest.approx(BLEU(max_ngram_order=n).corpus_score(HYPS, [REFS]).score)
    # Word level, by hand: "the cat sat" vs "the cat sat on the mat": unigram precision 1, brevity 3/6.
    assert text.bleu(["the cat sat"], ["the cat sat on the mat"])["bleu1"] == pytest.approx(100 * np.exp(1 - 6 / 3))


def test_rouge_l_is_rouge_score_f1():
    from rouge_score.rouge_scorer import RougeScorer

    for hyp, ref in zip(HYPS, REFS):
        expected = RougeScorer(["rougeL"], use_stemmer=True).score(ref, hyp)["rougeL"].fmeasure
        assert text.rouge_l(hyp, ref) == pytest.approx(expected)
    # F1, not recall: LCS 3 words, precision 3/3, recall 3/6.
    assert text.rouge_l("the cat sat", "the cat sat on the mat") == pytest.approx(2 * 1 * 0.5 / 1.5)


def test_meteor_exact_and_stem_matches():
    assert text.meteor("the cat sat on the mat", "the cat sat on the mat") > 0.99
    assert text.meteor("jigs played", "jig playing") > 0.5  # stems match
    assert text.meteor("violin", "fiddle") == 0.0  # no synonym stage


def test_bertscore_needs_a_local_model_and_gives_one_f1_per_pair(tiny_dirs, tmp_path):
    with pytest.raises(WeightsMissingError, match="--bertscore"):
        text.bert_score_f1(["a"], ["b"], None)
    with pytest.raises(WeightsMissingError, match="config.json"):
        text.bert_score_f1(["a"], ["b"], tmp_path)
    values = text.bert_score_f1(HYPS, REFS, tiny_dirs["bertscore"])
    assert len(values) == 2 and all(-1.0 <= v <= 1.0 + 1e-6 for v in values)


# --- factual accuracy ---------------------------------------------------------------------------------

def test_a_fiddle_tune_in_d_major():
    answer = "A fiddle tune in D major."
    right = score_facts(answer, Labels(programs=(40,), key=("D", "major")))
    wrong = score_facts(answer, Labels(programs=(73,), key=("D", "major")))
    assert right == {"instrument": 1.0, "key": 1.0}
    assert wrong == {"instrument": 0.0, "key": 1.0}


def test_fluent_wrong_and_silent_answers_score_zero():
    labels = Labels(programs=(0,), key=("A", "minor"), meter="3/4", tempo_bpm=100.0, style="waltz")
    assert score_facts("A beautiful, flowing and expressive piece of music.", labels) == dict.fromkeys(
        ("instrument", "key", "meter", "tempo", "style"), 0.0)
    good = score_facts("A waltz for piano in A minor, 3/4, at about 104 bpm.", labels)
    assert good == dict.fromkeys(("instrument", "key", "meter", "tempo", "style"), 1.0)
    assert score_facts("at 110 bpm", labels, ["tempo"]) == {"tempo": 0.0}  # 10 % off


def test_key_parsing_and_mirex_weights():
    assert parse_facts("in F sharp minor").key == ("F#", "minor")
    assert parse_facts("a minor change of mood").key is None
    assert parse_facts("in the key of G dorian").key == ("G", "minor")  # church modes by their third
    assert parse_facts("in the key of F# minor").key == ("F#", "minor")
    assert Labels.from_clip({"key": {"tonic": "G", "mode": "mixolydian"}}).key == ("G", "major")
    labels = Labels(key=("D", "major"))
    assert score_facts("in A major", labels, ["key"])["key"] == 0.5  # a fifth above
    assert score_facts("in B minor", labels, ["key"])["key"] == 0.3  # relative
    assert score_facts("in D minor", labels, ["key"])["key"] == 0.2  # parallel


def test_compound_metre_tempo_in_dotted_quarters():
    labels = Labels(meter="6/8", tempo_bpm=150.0)
    assert score_facts("a jig in 6/8 at 100 bpm", labels, ["tempo", "meter"]) == {"tempo": 1.0, "meter": 1.0}


# --- missing weights ----------------------------------------------------------------------------------

def test_missing_embedding_weights_give_one_clear_error(tmp_path):
    from m2ugen.evaluation.embeddings import AudioTagger, ClapEmbedder, EncodecEmbedder

    with pytest.raises(WeightsMissingError, match=r"no CLAP model given.*laion/clap-htsat-unfused.*--clap DIR"):
        ClapEmbedder.from_dir(None)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsMissingError, match=r"lacks model.safetensors.*--encodec DIR"):
        EncodecEmbedder.from_dir(tmp_path)
    with pytest.raises(WeightsMissingError, match="no such folder"):
        AudioTagger.from_dir(tmp_path / "nope")


def test_cli_missing_weights_is_one_error_line(corpus, tmp_path, capsys):
    from m2ugen.evaluation.cli import main

    code = main(["--model", str(tmp_path / "m"), "--manifest", str(corpus), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: no clap model given") and "\n" not in err


def test_cli_bad_manifest_is_one_error_line(tmp_path, capsys):
    from m2ugen.evaluation.cli import main

    bad = tmp_path / "clips.jsonl"
    bad.write_text("{not json\n")
    code = main(["--model", str(tmp_path), "--manifest", str(bad), "-o", str(tmp_path / "o"),
                 "--skip", "clap,encodec,tagger,bertscore"])
    assert code == 2 and capsys.readouterr().err.strip() == f"error: {bad}:1: not JSON (Expecting property name " \
                                                            "enclosed in double quotes)"


# --- the runner, on a stub model --------------------------------------------------------------------

class StubAssistant:
    """Answers with a fixed sentence and makes a different tone for each request (no network at all)."""

    def __init__(self):
        self.calls = 0

    def reset(self):
        pass

    def chat(self, text, audio=None, image=None, video=None, *, task="auto", seconds=None, **settings):
        from m2ugen.assistant import Reply
        from m2ugen.audio import Audio

        self.calls += 1
        if task in ("generate", "edit"):
            rate, n = 16000, int((seconds or 2.0) * 16000)
            t = np.arange(n) / rate
            return Reply("", task, Audio(0.3 * np.sin(2 * np.pi * (200 + 50 * self.calls) * t), rate))
        return Reply("A fiddle jig in D major, 6/8, at 150 bpm.", "answer")


def test_clap_scores_are_accumulated_over_every_example(corpus, tiny_dirs, tmp_path):
    from dataclasses import replace

    from m2ugen.evaluation.examples import read_examples
    from m2ugen.evaluation.runner import EvalModels, evaluate

    # Nothing requested: only the CLAP score and FAD are computed (adherence is tested end to end below).
    examples = [replace(ex, requested={}) for ex in read_examples(corpus, tasks=["generate"])]
    models = EvalModels.load({"clap": tiny_dirs["clap"]}, tasks=["generate"], skip=["encodec", "tagger"])
    results = evaluate(StubAssistant(), examples, models=models, out_dir=tmp_path, seconds=1.0, progress=False)
    values = [rec["scores"]["clap_score"] for rec in results.records]
    assert len(values) == len(examples) == 4
    assert all(isinstance(v, float) and -1.0 <= v <= 1.0 for v in values)
    assert len(set(values)) == 4  # one per example, not one overwritten value
    assert results.summary["generate"]["clap_score"]["value"] == pytest.approx(np.mean(values))
    assert results.summary["generate"]["clap_score"]["n"] == 4
    assert -1.0 <= results.summary["generate"]["clap_score"]["control"] <= 1.0


@pytest.mark.slow
def test_run_evaluation_writes_every_score_and_the_report(corpus, tiny_dirs, tmp_path):
    from m2ugen.evaluation import run_evaluation

    out = tmp_path / "report"
    results, paths = run_evaluation(
        corpus, out, assistant=StubAssistant(), model_dirs=dict(tiny_dirs), model_name="stub",
        tasks=["caption", "qa", "generate", "score", "score_edit"], limit=2, seconds=1.0, progress=False)
    data = json.loads(paths["json"].read_text())
    assert len(data["examples"]) == 2 * 6
    caption = results.summary["caption"]
    # The stub says "fiddle, D major, 6/8, 150 bpm, jig": all right for the jig; for the G major reel
    # (flute, 4/4, 120 bpm) only the key earns 0.5 (D is a fifth above G) of five facts.
    assert caption["fact_accuracy"]["value"] == pytest.approx((1.0 + 0.5 / 5) / 2)
    assert 0.0 < caption["fact_key"]["chance"] <= 1.0 and "control" in caption["fact_key"]
    assert {"bleu1", "bleu4", "meteor", "rouge_l", "bertscore_f1"} <= set(caption)
    assert {"fad_clap", "fad_encodec", "kl", "clap_score"} <= set(results.summary["generate"])
    assert results.summary["score"]["valid"]["value"] == 0.0 and results.summary["score"]["valid"]["control"] == 1.0
    assert results.summary["score"]["adherence_key"]["control"] == 1.0
    assert "## Music captioning" in paths["markdown"].read_text()
    assert "<table>" in paths["html"].read_text()
    assert (out / "plots" / "caption.png").stat().st_size > 1000
    with pytest.raises(Exception, match="already holds an evaluation"):
        run_evaluation(corpus, out, assistant=StubAssistant(), model_dirs=dict(tiny_dirs), model_name="stub")


def test_score_edits_are_exact_only_when_every_note_moves(corpus):
    from m2ugen.evaluation import scores
    from m2ugen.notation.score import parse_abc, score_to_abc

    abc = json.loads(corpus.read_text().splitlines()[0])["abc"]
    source = parse_abc(abc)
    moved = source.transpose(2)
    output, problem = scores.read_score(f"Here it is:\n```abc\n{score_to_abc(moved)}```")
    assert problem is None and scores.exact_transposition(output, source, 2)
    assert not scores.exact_transposition(source, source, 2)
    assert scores.adherence(source, {"key": ("D", "major"), "meter": "6/8", "tempo_bpm": 150.0, "program": 40}) == \
        {"key": 1.0, "meter": 1.0, "tempo": 1.0, "instrument": 1.0}
    assert scores.read_score("no music here") == (None, "no ABC tune (X: ... K:) in the response")


def test_training_manifest_records_become_examples(tmp_path, corpus):
    from m2ugen.evaluation.examples import read_examples

    audio = corpus.parent / "audio" / "demo-0.wav"
    manifest = tmp_path / "qa.jsonl"
    manifest.write_text(json.dumps({"id": "q1", "task": "qa", "audio": str(audio), "instruction": "Which key?",
                                    "response": "D major."}) + "\n")
    [example] = read_examples(manifest)
    assert (example.task, example.reference, example.audio) == ("qa", "D major.", audio)


@pytest.mark.slow
def test_demo_command_writes_the_report(corpus, tiny_dirs, tmp_path, capsys, monkeypatch):
    import m2ugen.assistant
    from m2ugen.evaluation.cli import main

    monkeypatch.setattr(m2ugen.assistant, "bundled_mini", lambda: None)  # the tiny random model, bundle or not
    out = tmp_path / "demo"
    code = main(["--demo", "--manifest", str(corpus), "--limit", "1", "--tasks", "qa", "--max-new-tokens", "8",
                 "--bertscore", str(tiny_dirs["bertscore"]), "-o", str(out)])
    assert code == 0
    data = json.loads((out / "scores.json").read_text())
    assert [e["id"] for e in data["examples"]] == ["demo-0/qa-instrument", "demo-0/qa-key"]
    assert data["model"] == "tiny random demo model (untrained)"
    assert "fact_accuracy" in data["summary"]["qa"] and (out / "report.html").is_file()
    assert main(["--demo", "--manifest", str(corpus), "-o", str(out)]) == 2
    assert "already holds an evaluation" in capsys.readouterr().err


def test_the_reference_sentence_states_every_fact_right(corpus):
    from m2ugen.evaluation.facts import describe

    for line in corpus.read_text().splitlines():
        labels = Labels.from_clip(json.loads(line))
        assert score_facts(describe(labels), labels) == dict.fromkeys(
            ("instrument", "key", "meter", "tempo", "style"), 1.0)
