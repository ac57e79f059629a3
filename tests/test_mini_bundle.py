"""m2ugen-mini as shipped: the bundle format and ``m2ugen convert bundle``, then the bundled model itself.

The first part builds a tiny run whose LLM and music encoder come from folders (as m2ugen-mini's come
from ``pretrain-lm`` and ``pretrain-encoder``), bundles it and deletes the run: the bundle alone must
reproduce the run's model. The second part loads ``m2ugen/assets/mini/`` (skipped where this checkout
has no bundle) and asks it about clips it has never heard: tunes written here, rendered with the
MuseScore_General font, which no training clip uses.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open

import m2ugen.assistant
from m2ugen.assistant import DEMO_LABEL, Assistant, bundled_mini
from m2ugen.checkpoints import CONFIG_NAME, WEIGHTS_NAME, trained_parameters, write_weights
from m2ugen.cli import main
from m2ugen.config import MINI_DIR, TINY_TOKENIZER_DIR, M2UGenConfig
from m2ugen.errors import MediaError
from m2ugen.model import M2UGen
from m2ugen.seeding import seeded

FAST = dict(max_new_tokens=8, seed=0)


# --- the format and the command (a tiny run) --------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(bundle folder, the run's model, the command's output): a tiny run with its LLM, tokenizer and
    music encoder in folders, bundled, then every folder of the run deleted."""
    from transformers import HubertConfig, HubertModel, LlamaConfig, LlamaForCausalLM

    from training.checkpoint import save_final

    root = tmp_path_factory.mktemp("bundle")
    tiny = M2UGenConfig.preset("tiny")
    with seeded(3):
        LlamaForCausalLM(LlamaConfig(**tiny.llm_config)).save_pretrained(root / "lm")
        HubertModel(HubertConfig(**tiny.mert_config)).save_pretrained(root / "enc")
    shutil.copy(TINY_TOKENIZER_DIR / "tokenizer.model", root / "lm")
    (root / "enc" / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True}))
    config = M2UGenConfig.preset("tiny", llm_path=str(root / "lm"), tokenizer_path=str(root / "lm"),
                                 mert_path=str(root / "enc"), music_outputs="score", decoder_path=None,
                                 input_modalities=["audio"])
    model = M2UGen.from_config(config)
    trained = {n: p for n, p in trained_parameters(model).items() if not n.startswith("projector.")}
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # "training": every trained tensor moves, the gates open (the projector never trains)
        for p in trained.values():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))
        model.llm.injection.gate.fill_(0.5)
    save_final(root / "run", trained, config.to_dict(), {"steps": 1})
    assert main(["convert", "bundle", str(root / "run"), "--out", str(root / "bundle")]) == 0
    for folder in ("lm", "enc", "run"):
        shutil.rmtree(root / folder)
    return root / "bundle", model.eval()


def test_bundle_command_reports_what_it_wrote(tmp_path, capsys):
    from m2ugen.convert.bundle import MAX_ROUND_TRIP_ERROR

    assert main(["convert", "bundle", str(tmp_path / "none"), "--out", str(tmp_path / "b")]) == 2
    assert "neither model.safetensors nor final/model.safetensors" in capsys.readouterr().err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old.txt").write_text("x")
    assert main(["convert", "bundle", str(tmp_path / "none"), "--out", str(tmp_path / "b")]) == 2
    assert "not empty" in capsys.readouterr().err
    final = tmp_path / "run" / "final"  # a run whose config names its LLM relative to another folder
    final.mkdir(parents=True)
    M2UGenConfig.preset("tiny", llm_path="runs/no-such-run/pretrain-lm/final").save(final / CONFIG_NAME)
    write_weights({}, final / WEIGHTS_NAME)
    assert main(["convert", "bundle", str(tmp_path / "run"), "--out", str(tmp_path / "c")]) == 2
    assert "llm_path runs/no-such-run/pretrain-lm/final is not found from" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    assert MAX_ROUND_TRIP_ERROR < 0.05


def test_bundle_is_self_contained_and_16_bit(tiny_run):
    bundle, model = tiny_run
    config = json.loads((bundle / CONFIG_NAME).read_text())
    assert config["llm_path"] is None and config["mert_path"] is None and config["tokenizer_path"] == "."
    assert config["bundled"] == ["llm", "mert"] and config["input_modalities"] == ["audio"]
    assert config["mert_config"]["do_normalize"] is True  # the encoder folder's input normalisation
    assert config["llm_config"]["vocab_size"] == 1000  # the base vocabulary; the [AUD] rows are added on load
    assert not list(bundle.parent.glob(".bundle.tmp*"))  # written beside --out, then renamed into place
    with safe_open(str(bundle / WEIGHTS_NAME), framework="pt") as f:
        dtypes = {name: f.get_slice(name).get_dtype() for name in f.keys()}
        shapes = {name: f.get_slice(name).get_shape() for name in f.keys()}
    assert {dtypes[n] for n in dtypes if len(shapes[n]) >= 2} == {"F16"}
    assert {dtypes[n] for n in dtypes if len(shapes[n]) < 2} == {"F32"}
    frozen = [n for n in dtypes if n.startswith(("llm.model.model.layers.0.mlp.up_proj.base_layer",
                                                 "encoders.audio.model.feature_extractor"))]
    assert frozen and not any(n.startswith(("encoders.image.", "encoders.video.")) for n in dtypes)
    size = (bundle / WEIGHTS_NAME).stat().st_size
    assert size < 2.4 * sum(int(np.prod(s)) for s in shapes.values())  # about 2 bytes per parameter


def test_the_bundle_alone_reproduces_the_run_and_loads_the_same_every_time(tiny_run):
    from m2ugen.convert.bundle import round_trip_error

    bundle, model = tiny_run
    first, second = M2UGen.from_pretrained(bundle), M2UGen.from_pretrained(bundle)
    assert first.config.music_outputs == "score" and first.encoders["audio"].normalize
    a, b = first.state_dict(), second.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and all(v.dtype == torch.float32 for v in a.values())
    assert round_trip_error(model, first) < 0.01
    ran = model.state_dict()
    for name in ("projector.queries", "llm.model.model.layers.1.mlp.up_proj.base_layer.weight"):  # untrained, frozen
        assert torch.equal(a[name], ran[name].half().float())  # matrices are stored in float16
    assert torch.equal(a["llm.model.model.norm.weight"], ran["llm.model.model.norm.weight"])  # vectors in float32
    assert not torch.equal(a["llm.injection.gate"], torch.zeros_like(a["llm.injection.gate"]))


def test_demo_is_the_bundled_model_and_tiny_without_it(tiny_run, tmp_path, monkeypatch):
    bundle, _ = tiny_run
    monkeypatch.setattr(m2ugen.assistant, "MINI_DIR", bundle)
    bot = Assistant.demo()
    assert not bot.untrained and bot.decoder.kind == "score" and bot.config.bundled == ["llm", "mert"]
    reply = bot.chat("What key is this in?", audio=_chord_audio(bot.config.audio_sample_rate), **FAST)
    assert not reply.text.startswith(DEMO_LABEL)
    monkeypatch.setattr(m2ugen.assistant, "MINI_DIR", tmp_path / "no-bundle")
    assert Assistant.demo().untrained and Assistant.tiny().untrained


def test_image_and_video_turns_say_which_models_have_them(tiny_run, tmp_path, monkeypatch, capsys):
    from media_utils import image_array, write_image

    bundle, _ = tiny_run
    monkeypatch.setattr(m2ugen.assistant, "MINI_DIR", bundle)
    bot = Assistant.demo()
    for kind, value in (("image", image_array()), ("video", np.zeros((8, 32, 32, 3), np.uint8))):
        with pytest.raises(MediaError, match=f"{kind} input is not available with this model .*m2ugen convert "
                                             "released"):
            bot.chat("Write music for this", **{kind: value}, **FAST)
    assert bot.history == []
    image = write_image(tmp_path / "beach.png")
    assert main(["generate", "--demo", "music for this", "--image", str(image), "-o", str(tmp_path / "o.wav")]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [
        line for line in err.splitlines() if "image input is not available" in line]
    assert not (tmp_path / "o.wav").exists()


def test_the_web_ui_says_it_in_the_chat(tiny_run, tmp_path, monkeypatch):
    from media_utils import write_image

    pytest.importorskip("gradio")
    from m2ugen.app import ChatSession, build_app

    bundle, _ = tiny_run
    bot = Assistant.from_pretrained(bundle)
    image = write_image(tmp_path / "beach.png")
    session = ChatSession(bot, tmp_path / "ui")
    shown, *_ = session.respond("Music for this picture", None, str(image), None, "auto", 1, 0.0, 0.8, 8, 3.0, "0",
                                [], None)
    assert shown[-1]["content"].startswith("Could not do that: image input is not available with this model")
    notes = [c["props"].get("value", "") for c in build_app(bot).config["components"] if c.get("type") == "markdown"]
    assert any("understands text and audio; image and video input needs a model trained on it" in n for n in notes)


def _chord_audio(rate: int):
    from m2ugen.audio import Audio

    t = np.arange(rate, dtype=np.float32) / rate
    return Audio(sum(0.2 * np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0)).astype(np.float32), rate)


# --- the shipped m2ugen-mini ----------------------------------------------------------------------------

needs_bundle = pytest.mark.skipif(bundled_mini() is None, reason=f"no bundled m2ugen-mini in this checkout "
                                  f"({MINI_DIR}); `m2ugen convert bundle runs/mini/stage3 --out {MINI_DIR}` makes it")

# Held-out tunes, written for this test (not in any training collection): (row in the corpus schema, ABC).
HELD_OUT = [
    ("jig", "D", "major", "6/8", 200.0, 40, "Violin",
     "D F A d A F | G B d g d B | A c e a g e | f d d d3 | D F A d A F | G B d g f e | f d B A F E | D3 D3 |]"),
    ("waltz", "A", "minor", "3/4", 180.0, 0, "Acoustic Grand Piano",
     "A,2 C2 E2 | A4 E2 | D2 F2 A2 | E4 ^G2 | A2 c2 e2 | d2 c2 B2 | c2 B2 ^G2 | A6 |]"),
    ("reel", "G", "major", "4/4", 200.0, 73, "Flute",
     "G2 B d g2 d B | c2 e c B2 G2 | A B c d e d c B | A2 F A D4 | G2 B d g2 f e | d B c A B2 G2 | "
     "A c B G F A D F | G4 G4 |]"),
    ("polka", "E", "minor", "2/4", 120.0, 71, "Clarinet",
     "E G B G | E2 ^D2 | E G B e | d2 B2 | c B A G | F A ^D F | E G B,2 | E4 |]"),
]
# How many of the four held-out clips a working model must get right, per question.
MIN_RIGHT = 3
_MODE_TO_MAJOR = {"major": 0, "ionian": 0, "minor": 3, "aeolian": 3, "dorian": 10, "mixolydian": 5, "lydian": 7,
                  "phrygian": 8, "locrian": 1}
_LETTER = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def _row(index: int, style: str, tonic: str, mode: str, metre: str, bpm: float, program: int, name: str) -> dict:
    return {"id": f"held-out-{index}", "style": style, "key": {"tonic": tonic, "mode": mode}, "meter": metre,
            "tempo_bpm": bpm, "n_parts": 1, "melody_part": 0, "title": None, "composer": None,
            "instruments": [{"part": 0, "program": program, "name": name, "family": "x"}]}


def _abc(index: int, row: dict, body: str) -> str:
    key = row["key"]["tonic"] + ("m" if row["key"]["mode"] == "minor" else "")
    instrument = row["instruments"][0]
    return (f"X:{index}\nT:Held-out {row['style']}\nM:{row['meter']}\nL:1/8\nQ:1/4={round(row['tempo_bpm'])}\n"
            f"K:{key}\nV:1 name=\"{instrument['name']}\"\n%%MIDI program {instrument['program']}\n{body}\n")


def _signature(tonic: str, mode: str) -> int:
    """Pitch class of the relative major: equal for keys with the same key signature."""
    pc = _LETTER[tonic[0].upper()] + (tonic[1:].count("#") - tonic[1:].count("b"))
    return (pc + _MODE_TO_MAJOR[mode.lower()]) % 12


def _metre_family(metre: str) -> str:
    beats = int(metre.split("/")[0])
    return "compound" if beats % 3 == 0 and beats > 3 else "triple" if beats == 3 else "duple"


@pytest.fixture(scope="module")
def mini():
    return Assistant.demo()


@pytest.fixture(scope="module")
def clips():
    from m2ugen.decoders.score import ScoreDecoder, ScoreSettings

    player = ScoreDecoder(ScoreSettings(sample_rate=22050, soundfont="MuseScore_General.sf3"))
    out = []
    for i, (style, tonic, mode, metre, bpm, program, name, body) in enumerate(HELD_OUT):
        row = _row(i, style, tonic, mode, metre, bpm, program, name)
        out.append((row, player.render(_abc(i + 1, row, body))))
    return out


def _ask(bot, question: str, audio) -> str:
    bot.reset()
    return bot.chat(question, audio=audio, task="answer", temperature=0.0, max_new_tokens=24, seed=0).text


@needs_bundle
def test_the_bundle_is_the_trained_mini_and_small(mini):
    cfg = mini.config
    assert cfg.name == "mini" and cfg.bundled == ["llm", "mert"] and cfg.input_modalities == ["audio"]
    assert cfg.llm_path is None and cfg.mert_path is None and cfg.music_outputs == "score"
    assert not mini.untrained and mini.decoder.kind == "score"
    size = sum(p.stat().st_size for p in MINI_DIR.iterdir() if p.is_file())
    assert size <= 60e6, f"the bundle is {size / 1e6:.1f} MB"
    with pytest.raises(MediaError, match="image input is not available"):
        mini.chat("Write music for this picture", image=np.zeros((32, 32, 3), np.uint8))


@needs_bundle
@pytest.mark.xfail(strict=True, reason="the shipped m2ugen-mini hears metre poorly: bench/mini.py measures 0.46 "
                   "against 0.26 by chance (docs/benchmarks.md); strict, so a bundle that learns it must drop this mark")
def test_held_out_metres(mini, clips):
    from datasets_build.corpus_text import qa_pairs

    answers, right = [], 0
    for row, audio in clips:
        question = dict((fact, q) for fact, q, _ in qa_pairs(row))["meter"]
        text = _ask(mini, question, audio)
        found = re.search(r"\b(\d{1,2})/(\d{1,2})\b", text)
        answers.append(f"{row['meter']}: {text!r}")
        right += found is not None and _metre_family(found.group(0)) == _metre_family(row["meter"])
    assert right >= MIN_RIGHT, f"right metre family for {right} of {len(clips)} held-out clips: {answers}"


@needs_bundle
def test_the_answers_come_from_the_audio(mini, clips):
    """The held-out clips get different answers, and the same model with its gates at zero (no audio
    reaches the LLM) gives one answer for all of them: a bundle whose encoder, adapters or gates are
    broken answers from the text prior alone."""
    from datasets_build.corpus_text import qa_pairs

    def answers() -> list[str]:
        return [_ask(mini, dict((f, q) for f, q, _ in qa_pairs(row))[fact], audio)
                for row, audio in clips for fact in ("key", "tempo", "style")]

    heard = answers()
    with mini.model.llm.injection.closed():
        deaf = answers()
    for k, fact in enumerate(("key", "tempo", "style")):
        assert len(set(deaf[k::3])) == 1, f"gates at zero, {fact}: {deaf[k::3]}"
    assert sum(len(set(heard[k::3])) > 1 for k in range(3)) >= 2, heard


@needs_bundle
@pytest.mark.xfail(strict=True, reason="the shipped m2ugen-mini names 1 of these 4 keys (bench/mini.py: MIREX "
                   "0.62 on 100 held-out clips, 0.34 with the gates at zero; docs/benchmarks.md); strict, so a "
                   "bundle that gets them must drop this mark")
def test_held_out_keys(mini, clips):
    from datasets_build.corpus_text import qa_pairs

    modes = "|".join(_MODE_TO_MAJOR)
    answers, right = [], 0
    for row, audio in clips:
        question = dict((fact, q) for fact, q, _ in qa_pairs(row))["key"]
        text = _ask(mini, question, audio)
        found = re.search(rf"\b([A-G][#b]?) ({modes})\b", text, re.IGNORECASE)
        answers.append(f"{row['key']['tonic']} {row['key']['mode']}: {text!r}")
        want = _signature(row["key"]["tonic"], row["key"]["mode"])
        right += found is not None and _signature(found.group(1), found.group(2)) == want
    assert right >= MIN_RIGHT, f"right key signature for {right} of {len(clips)} held-out clips: {answers}"


@needs_bundle
def test_a_composition_is_a_score_with_the_asked_metre_and_key(mini):
    from datasets_build.corpus_text import compose_instruction
    from m2ugen.notation.key import Key
    from m2ugen.notation.score import parse_abc, score_key, score_meter

    row = _row(0, "jig", "G", "major", "6/8", 120.0, 40, "Violin")
    request = next(r for r in (compose_instruction({**row, "id": f"held-out-compose-{i}"}) for i in range(50))
                   if "6/8" in r and "G major" in r)
    mini.reset()
    reply = mini.chat(request, temperature=0.0, max_new_tokens=400, seed=0)
    assert reply.task == "generate" and reply.abc is not None, f"{request!r} -> {reply.text!r}"
    score = parse_abc(reply.abc)
    assert score_meter(score) == (6, 8) and score_key(score) == Key(1, False), reply.abc
    assert reply.audio is not None and reply.audio.duration > 1.0 and reply.midi_path.is_file()
