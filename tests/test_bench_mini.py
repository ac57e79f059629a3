"""bench/mini.py: its scoring on fixed inputs, scripted model replies scored end to end, and a whole run
of the tiny random model on a three-tune corpus (seconds)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datasets_build.corpus_text import qa_pairs, tagged_abc
from m2ugen.assistant import Assistant
from m2ugen.evaluation.facts import Labels, score_facts
from m2ugen.model import Generation
from m2ugen.notation.render import find_soundfont
from m2ugen.notation.score import parse_abc, score_notes

pytestmark = pytest.mark.skipif(find_soundfont() is None, reason="needs a General MIDI sound font")

_spec = importlib.util.spec_from_file_location("bench_mini", Path(__file__).parents[1] / "bench" / "mini.py")
mini = importlib.util.module_from_spec(_spec)
sys.modules["bench_mini"] = mini  # dataclasses look their module up
_spec.loader.exec_module(mini)

REEL_D = """X:1
T:Reel in D
M:2/2
L:1/8
Q:1/4=120
K:D
V:1 name="Violin"
%%MIDI program 40
d2 fd A2 FA | d2 fd e2 ce | d2 fd A2 FA | Bcde f2 d2 |
fgaf gefd | e2 ce A2 ce | fgaf gefd | edcB A2 D2 |]
"""
JIG_G = """X:1
T:Jig in G
M:6/8
L:1/8
Q:1/4=150
K:G
V:1 name="Flute"
%%MIDI program 73
GBd gdB | c2 e dBG | ABc BAG | FAF D3 |
GBd gdB | c2 e dBG | ABc AFD | G3 G3 |]
"""
CHORALE_C = """X:1
T:Chorale in C
M:4/4
L:1/4
Q:1/4=80
K:C
V:1 name="Oboe"
%%MIDI program 68
c d e d | c B c2 |]
V:2 name="Bassoon"
%%MIDI program 70
C, G, C, G, | A, G, C,2 |]
"""


def _row(folder: Path, cid: str, split: str, abc: str, key: tuple[str, str], meter: str, bpm: float,
         instruments: list[tuple[int, str, str]], style: str | None) -> dict:
    notes = [[n.onset_s, n.offset_s, n.pitch, 80, n.program, n.part, False] for n in score_notes(parse_abc(abc))]
    (folder / f"{cid}.json").write_text(json.dumps(notes))
    t = np.arange(22050) / 22050
    sf.write(folder / f"{cid}.wav", 0.2 * np.sin(2 * np.pi * 440 * t).astype(np.float32), 22050)
    return {"id": cid, "work_id": cid.split("__")[0], "split": split, "audio": f"{cid}.wav", "notes": f"{cid}.json",
            "abc": abc, "key": {"tonic": key[0], "mode": key[1]}, "meter": meter, "tempo_bpm": bpm,
            "instruments": [{"part": i, "program": p, "name": n, "family": f} for i, (p, n, f) in enumerate(instruments)],
            "n_parts": len(instruments), "style": style, "melody_part": 0, "title": None, "composer": None, "edit": None}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    rows = [_row(folder, "jig__v0", "train", JIG_G, ("G", "major"), "6/8", 150.0, [(73, "Flute", "pipe")], "jig"),
            _row(folder, "reel__v0", "test", REEL_D, ("D", "major"), "2/2", 120.0, [(40, "Violin", "strings")], "reel"),
            _row(folder, "chorale__v0", "test", CHORALE_C, ("C", "major"), "4/4", 80.0,
                 [(68, "Oboe", "reed"), (70, "Bassoon", "reed")], None)]
    (folder / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    record = {"id": "reel__e0:edit_abc", "task": "text", "instruction": f"{REEL_D}\nSlower.",
              "response": "<edit tempo=x0.8>\nHere it is, slower.",
              "meta": {"split": "test", "edit": {"kind": "tempo"}, "edit_tag": "<edit tempo=x0.8>",
                       "target_abc": tagged_abc(REEL_D, "<edit tempo=x0.8>")}}
    (folder / "edit_abc.test.jsonl").write_text(json.dumps(record) + "\n")
    return folder


class Script:
    """A stand-in for ``M2UGen.generate`` answering with the next scripted text."""

    def __init__(self, *responses: str) -> None:
        self.responses = list(responses)

    def __call__(self, ids, **kwargs):
        return [Generation(token_ids=[], text=self.responses.pop(0), aud_states=None)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    bot = Assistant.tiny(output_dir=tmp_path_factory.mktemp("scores"))
    bot.config.music_outputs = "score"
    return bot


def test_request_attributes_and_composition_scores_on_fixed_inputs() -> None:
    request = mini.parse_request("Write a reel in D for fiddle and piano in ABC notation.")
    assert (request.key, request.style, request.families) == (("D", "major"), "reel", frozenset({"strings", "piano"}))
    air = mini.parse_request("Write a slow air in E minor for flute in ABC notation.")
    assert (air.key, air.tempo_range, air.families) == (("E", "minor"), (60.0, 80.0), frozenset({"pipe"}))
    exact = mini.parse_request("a reel in D major in 2/2 time for violin, at 120 BPM")
    right = mini.adherence(REEL_D, parse_abc(REEL_D), exact)
    assert right == {"key_field": 1.0, "key_profile": 1.0, "meter": 1.0, "tempo": 1.0, "instrument": 1.0, "rhythm": 1.0}
    wrong_abc = tagged_abc(REEL_D, "<edit transpose=+1>")  # Eb: a key the request did not ask for
    wrong = mini.adherence(wrong_abc, parse_abc(wrong_abc), exact)
    assert wrong["key_field"] == 0.0 and wrong["key_profile"] == 0.0 and wrong["meter"] == 1.0
    assert mini.adherence(JIG_G, parse_abc(JIG_G), exact)["rhythm"] == 0.0  # a jig is no reel
    assert mini.k_field_key("X:1\nK:Ador\n") == ("A", "minor") and mini.k_field_key("K:F#m") == ("F#", "minor")
    dorian = mini.parse_request("a tune in A dorian for violin")  # ABC writes its signature: K:G or K:Ador
    for k, right in (("G", 1.0), ("Ador", 1.0), ("A", 0.0), ("Am", 0.0)):
        abc = f"X:1\nK:{k}\nABc|\n"
        assert mini.adherence(abc, parse_abc(abc), dorian)["key_field"] == right
    # GM names as the training answers say them are read as their programs (not "synth" + "choir").
    for answer, program in (("The synth choir.", 54), ("The lead 2 (sawtooth).", 81), ("The pizzicato strings.", 45)):
        assert score_facts(answer, Labels(programs=(program,)), ["instrument"]) == {"instrument": 1.0}


def test_novelty_of_a_copy_is_its_length_and_edits_compare_whole_scores() -> None:
    tune = [62, 66, 69, 74, 69, 66, 62, 64, 66, 67]
    index = mini.NgramIndex([[60, 62, 64], tune, [70, 71]])
    assert index.longest_common(tune) == len(tune)
    assert index.longest_common([62, 64, 99, 70, 71, 72]) == 2
    assert index.longest_common([64, 60]) == 1  # 64 then 60 are in different tunes
    assert mini.same_score(tagged_abc(REEL_D, "<edit key=G>"), tagged_abc(REEL_D, "<edit transpose=+5>"))
    assert not mini.same_score(REEL_D, tagged_abc(REEL_D, "<edit tempo=x0.8>"))
    assert not mini.same_score(None, REEL_D)


def test_scripted_right_and_wrong_replies_score_one_and_zero(tiny, corpus, monkeypatch) -> None:
    data = mini.Corpus.load(corpus)
    reel = next(r for r in data.test if r["id"] == "reel__v0")
    answers = [a for f, _, a in qa_pairs(reel) if f in mini.FACT_OF_QUESTION]  # the training answers
    monkeypatch.setattr(tiny.model, "generate", Script(*answers))
    described = mini.describe(tiny, data, [reel], {"temperature": 0.0})
    assert [r["fact"] for r in described] == list(mini.FACTS) and all(r["score"] == 1.0 for r in described)

    index = mini.NgramIndex(s for row in data.train for s in mini.clip_pitches(data, row))
    requests = [{"id": "r", "text": "Write a reel in D major in 2/2 time for violin, at 120 BPM in ABC notation.",
                 "reference": REEL_D}, {"id": "w", "text": "Write a jig in D for flute.", "reference": None}]
    followups = mini.FollowUps(data, data.test, 1, {"edit": {}, "answer": {}})
    monkeypatch.setattr(tiny.model, "generate", Script(f"```abc\n{REEL_D}```", "<edit tempo=x1.25>",
                                                       f"```abc\n{JIG_G}```", "A reel for violin in D major."))
    composed = mini.compose(tiny, requests, index, {}, 0, followups)
    assert composed[0]["valid"] and set(composed[0]["adherence"].values()) == {1.0}
    assert composed[0]["reference_adherence"] == composed[0]["adherence"]
    assert composed[1]["adherence"]["key_field"] == 0.0 and composed[1]["adherence"]["rhythm"] == 1.0
    assert composed[1]["novelty"] == len(parse_abc(JIG_G).parts[0].notes)  # a copy of the training jig
    faster, question = followups.results
    assert faster["right"] == 1.0 and faster["tempo_after"] > faster["tempo_before"]
    assert question["kind"] == "clip_question" and question["clip"] == "chorale__v0"

    cases = mini.corpus_edit_cases(data.edit_records) + mini.issue_edit_cases(data.test, 1)
    assert [c.request for c in cases] == ["Slower.", "Transpose it to G.", "Slower.", "Play it on the cello.",
                                          "Only the melody."]
    monkeypatch.setattr(tiny.model, "generate", Script("<edit tempo=x0.8>", "<edit key=G>", "<edit tempo=x0.5>",
                                                       "<edit instrument=cello>", "<edit remove=2>"))
    assert [r["exact"] for r in mini.edit(tiny, cases, {})] == [1.0, 1.0, 0.0, 1.0, 1.0]


def test_gates_at_zero_silence_the_media_and_are_restored(tiny) -> None:
    import torch

    injection = tiny.model.llm.injection
    saved = injection.gate.detach().clone()
    with torch.no_grad():
        injection.gate.fill_(0.5)
    try:
        tokens = {"audio": torch.ones(1, injection.prefix_query.shape[1])}  # an adapter token (B, hidden)
        assert tiny.model.llm.injection_vectors(tokens, 1).abs().sum() > 0
        with injection.closed():
            assert tiny.model.llm.injection_vectors(tokens, 1).abs().sum() == 0
        assert bool((injection.gate == 0.5).all())
    finally:
        with torch.no_grad():
            injection.gate.copy_(saved)


def test_a_whole_run_of_the_tiny_random_model(tiny, corpus, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(mini, "load_assistant", lambda model, threads: (tiny, 0.1, 0.1, []))
    out = tmp_path / "mini.json"
    assert mini.main(["--corpus", str(corpus), "--limit", "2", "--repeats", "1", "--threads", "1",
                      "--answer-tokens", "8", "--compose-tokens", "16", "--edit-tokens", "8", "--out", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"mini: instrument=\S+ key=\S+ metre=\S+ tempo=\S+ compose_valid=\S+ compose_adherence=\S+ "
                        r"edit_exact=\S+ frozen_gates_instrument=\S+", last)
    results = json.loads(out.read_text())
    assert {"describe", "describe_frozen", "chance", "compose", "edit", "multi_turn", "speed", "summary"} <= set(results)
    assert len(results["describe"]) == len(results["describe_frozen"]) > 0


def test_a_missing_corpus_is_one_error_line(capsys, tmp_path) -> None:
    assert mini.main(["--corpus", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: ")
