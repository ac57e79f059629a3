"""Pretraining stages (tokenizer, pretrain-lm, pretrain-encoder) chained into the M2UGen stages, at tiny sizes.

A synthetic rendered corpus (``clips.jsonl`` in the corpus schema: sine-tone notes with their exact
note list, key, metre, tempo, style and ABC) stands in for the real one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from m2ugen.config import M2UGenConfig
from m2ugen.encoders import MusicEncoder
from m2ugen.model import M2UGen
from m2ugen.tokenizer import load_tokenizer
from training.cli import main
from training.clip_labels import (IGNORE, NUM_PITCHES, TEMPO_BINS, Vocabulary, frame_targets, key_index,
                                  tempo_bin, tempo_of_bin)
from training.params import meta_model
from training.stages import PRETRAIN_STAGES, STAGES
from training.pretrain_config import TextSource
from training.text_data import held_out_works, music21_abc_texts, read_texts

FAST = ["num_threads=1", "progress=false", "log_every=1"]
SR = 24000
TUNES = [
    "X:1\nT:Little Jig\nM:6/8\nL:1/8\nK:D\n|:d2e fed|cBA B2A|d2e fed|e3 e2z:|\n",
    "X:2\nT:Plain Reel\nM:4/4\nL:1/8\nK:G\n|:GABc dBGB|cBAG FGAF|GABc dBGB|AGFA G4:|\n",
    "X:3\nT:Slow Air\nM:3/4\nL:1/8\nK:Em\nE2 G2 B2|e4 d2|B2 A2 G2|E6|\n",
    "X:4\nT:Held Out Hornpipe\nM:2/4\nL:1/16\nK:Am\nA2c2 e2a2|g2e2 c2A2|\n",
]
CLIPS = [  # (tune, split, key, metre, tempo, style, pitches of its notes, program)
    (0, "train", ("D", "major"), "6/8", 120.0, "jig", (62, 64, 66), 40),
    (1, "train", ("G", "major"), "4/4", 100.0, "reel", (67, 71, 74), 0),
    (2, "train", ("E", "minor"), "3/4", 70.0, "air", (64, 67, 71), 73),
    (0, "train", ("D", "major"), "6/8", 126.0, "jig", (62, 66, 69), 0),
    (1, "train", ("G", "major"), "4/4", 96.0, None, (67, 69, 71), 40),
    (2, "train", ("E", "dorian"), "3/4", 72.0, "air", (64, 66, 67), 73),
    (3, "valid", ("A", "minor"), "2/4", 88.0, "hornpipe", (69, 72, 76), 0),
    (3, "test", ("A", "minor"), "2/4", 90.0, "hornpipe", (69, 71, 72), 40),
]


def _write_corpus(folder: Path) -> Path:
    """Eight 1-second clips of three sine notes each, with notes JSON and labels in the corpus schema."""
    (folder / "audio").mkdir(parents=True)
    lines = []
    for i, (tune, split, (tonic, mode), metre, tempo, style, pitches, program) in enumerate(CLIPS):
        notes, wave = [], np.zeros(SR, dtype=np.float32)
        for k, pitch in enumerate(pitches):
            onset, offset = k / 3, (k + 1) / 3
            t = np.arange(int(onset * SR), int(offset * SR)) / SR
            freq = 440 * 2 ** ((pitch - 69) / 12)
            wave[int(onset * SR):int(onset * SR) + len(t)] = 0.3 * np.sin(2 * np.pi * freq * t)
            notes.append([onset, offset, pitch, 90, program, 0, 0])
        notes.append([0.5, 0.6, 38, 100, 0, 1, 1])  # a drum hit
        sf.write(folder / "audio" / f"c{i}.wav", wave, SR)
        (folder / "audio" / f"c{i}.json").write_text(json.dumps(notes))
        lines.append({"id": f"c{i}", "work_id": f"w{tune}", "split": split, "audio": f"audio/c{i}.wav",
                      "sample_rate": SR, "duration": 1.0, "soundfont": "sine", "seed": i,
                      "notes": f"audio/c{i}.json", "midi": f"audio/c{i}.mid", "abc": TUNES[tune],
                      "key": {"tonic": tonic, "mode": mode}, "meter": metre, "tempo_bpm": tempo,
                      "instruments": [{"part": 0, "program": program, "name": "x", "family": "x"}], "n_parts": 1,
                      "style": style, "collection": "test", "title": TUNES[tune].split("\n")[1][2:],
                      "composer": None, "license": "CC0", "transpose": 0, "tempo_scale": 1.0})
    clips = folder / "clips.jsonl"
    clips.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return clips


def _write_manifests(folder: Path) -> tuple[Path, Path]:
    captions, qa = [], []
    for i, (_, split, (tonic, mode), metre, _, style, _, _) in enumerate(CLIPS):
        if split != "train":
            continue
        captions.append({"id": f"cap{i}", "task": "caption", "audio": f"audio/c{i}.wav", "instruction": "",
                         "response": f"A {style or 'tune'} in {tonic} {mode}, {metre} time."})
        qa.append({"id": f"qa{i}", "task": "qa", "audio": f"audio/c{i}.wav", "instruction": "What is the metre?",
                   "response": metre})
    qa.append({"id": "compose", "task": "text", "instruction": "Write a jig in D.", "response": TUNES[0]})
    paths = folder / "captions.jsonl", folder / "qa.jsonl"
    for path, records in zip(paths, (captions, qa)):
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return paths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    clips = _write_corpus(folder)
    captions, qa = _write_manifests(folder)
    return {"clips": clips, "captions": captions, "qa": qa}


def _text(corpus) -> str:
    return json.dumps([{"format": "clips", "path": str(corpus["clips"])},
                       {"format": "manifest", "path": str(corpus["captions"])},
                       {"format": "manifest", "path": str(corpus["qa"])}])


@pytest.fixture(scope="module")
def tokenizer_dir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    assert main(["tokenizer", f"text={_text(corpus)}", f"output_dir={out}", "vocab_size=320"]) == 0
    return out


def _lm_args(corpus, tokenizer_dir, out: Path) -> list[str]:
    return ["pretrain-lm", "model=tiny", f"tokenizer={tokenizer_dir}", f"text={_text(corpus)}",
            f'val_text=[{{"format": "clips", "path": "{corpus["clips"]}", "split": "valid"}}]', f"output_dir={out}",
            "seq_len=32", "batch_size=2", "warmup_steps=1", "lr=3e-3", *FAST]


def _encoder_args(corpus, out: Path) -> list[str]:
    return ["pretrain-encoder", "model=tiny", f"clips=[{corpus['clips']}]", f"output_dir={out}", "crop_seconds=0.5",
            "batch_size=2", "warmup_steps=1", "lr=3e-3", *FAST]


# --- labels -----------------------------------------------------------------------------------


def test_clip_labels_are_exact():
    notes = np.array([[0.10, 0.30, 60, 90, 40, 0, 0], [0.20, 0.25, 36, 100, 0, 1, 1]])
    hop = 0.04
    frames = frame_targets(notes, start_s=0.08, num_frames=6, hop_s=hop)  # frame t is at 0.08 + (t + 0.5) * 0.04
    sounding = [t for t in range(6) if frames[t, 60]]
    assert sounding == [0, 1, 2, 3, 4]  # 0.10, 0.14, ..., 0.26 lie in [0.10, 0.30)
    assert [t for t in range(6) if frames[t, NUM_PITCHES + 60]] == [0]  # onset 0.10 in [0.08, 0.12)
    assert [t for t in range(6) if frames[t, 2 * NUM_PITCHES]] == [3]  # drum onset 0.20 in [0.20, 0.24)
    assert frames[:, :NUM_PITCHES].sum() == 5  # drums add no pitch
    assert key_index({"tonic": "F#", "mode": "minor"}) == 6 * 2 + 1
    assert key_index({"tonic": "Bb", "mode": "major"}) == 10 * 2
    assert key_index({"tonic": "D", "mode": "dorian"}) == IGNORE
    assert [tempo_bin(tempo_of_bin(i)) for i in range(TEMPO_BINS)] == list(range(TEMPO_BINS))
    assert abs(tempo_of_bin(tempo_bin(123.0)) / 123.0 - 1) < 0.03
    vocab = Vocabulary.of([{"meter": "6/8", "style": "jig"}, {"meter": "3/4", "style": None}])
    assert vocab.metres == ("3/4", "6/8") and vocab.styles == ("jig",)
    assert vocab.clip_targets({"key": None, "meter": "5/4", "tempo_bpm": 40, "style": "jig"}).tolist() == [
        IGNORE, IGNORE, 0, 0]


def test_music21_tunes_leave_out_the_held_out_works(tmp_path):
    everything = music21_abc_texts(set())
    clips = tmp_path / "clips.jsonl"
    rows = [{"id": "a", "work_id": "oneills__0001-0050__X1", "split": "test"},
            {"id": "b", "work_id": "airds__book1__X0001", "split": "train"}]
    clips.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert held_out_works(clips) == {"oneills__0001-0050__X1"}
    kept = read_texts([TextSource("music21_abc", str(clips))])
    assert len(everything) > 4000 and len(kept) == len(everything) - 1
    assert all(t.lstrip().startswith(("X:", "%")) and "\nK:" in t for t in kept[::500])
    assert read_texts([TextSource("music21_abc", str(clips), limit=3, repeat=2)]) == kept[:3] * 2


def test_mini_preset_fits_the_bundle_budget():
    model = meta_model("mini")
    assert sum(p.numel() for p in model.parameters()) * 4 <= 60e6  # float32 bytes
    cfg = M2UGenConfig.preset("mini")
    assert cfg.llm_config["vocab_size"] == 2048 and cfg.num_injected_layers <= cfg.llm_config["num_hidden_layers"]
    assert cfg.music_outputs == "score" and cfg.decoder_path is None


MINI_CONFIGS = sorted((Path(__file__).resolve().parent.parent / "training" / "configs" / "mini").glob("*.yaml"))


@pytest.mark.parametrize("path", MINI_CONFIGS, ids=lambda p: p.stem)
def test_committed_mini_configs_are_valid(path):
    from training.config import load_config, read_config_file
    from training.pretrain_config import load_pretrain_config

    stage = read_config_file(path).get("stage", path.stem)
    cfg = load_pretrain_config(stage, path) if stage in PRETRAIN_STAGES else load_config(path, stage=stage)
    assert stage == "tokenizer" or cfg.model == "mini"
    if stage in STAGES:
        model = cfg.model_config()
        assert Path(model.llm_path).parts[:2] == ("runs", "mini") and model.decoder_path is None
        assert cfg.loss_weights[1] == 0.0  # the mini model's music output is the score, not decoder conditioning


def test_every_mini_step_has_a_config():
    assert {p.stem for p in MINI_CONFIGS} == {"tokenizer", "pretrain-lm", "pretrain-encoder", "stage1", "stage3"}


# --- the chain ----------------------------------------------------------------------------------


def test_tokenizer_keeps_abc_exactly_and_loads_for_m2ugen(tokenizer_dir):
    tok = load_tokenizer(tokenizer_dir, num_aud_tokens=8, base_vocab_size=json.loads(
        (tokenizer_dir / "training.json").read_text())["vocab_size"])
    for text in (TUNES[0], "A reel  in G major,\n\tfor fiddle: é!"):
        assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text
    assert tok.convert_tokens_to_ids("[AUD0]") == len(tok) - 8


@pytest.mark.slow
def test_pretraining_feeds_stage1_and_stage3(corpus, tokenizer_dir, tmp_path, capsys):
    lm, enc = tmp_path / "lm", tmp_path / "enc"
    assert main([*_lm_args(corpus, tokenizer_dir, lm), "max_steps=3", 'sample_prompts=["X:1\\nK:D\\n"]',
                 "sample_tokens=5"]) == 0
    assert main([*_encoder_args(corpus, enc), "max_steps=3"]) == 0
    out = capsys.readouterr().out
    assert "pretrain-lm: 3 steps" in out and "pretrain-encoder: 3 steps" in out and "validation" in out
    assert (lm / "final" / "samples.txt").read_text().startswith("% sample 1\nX:1\nK:D\n")
    for run, columns in ((lm, 1), (enc, 9)):
        rows = (run / "log.csv").read_text().splitlines()
        assert len(rows) == 4 and len(rows[0].split(",")) == 6 + columns
        assert len((run / "eval.csv").read_text().splitlines()) == 3  # before and after
        assert (run / "loss.png").stat().st_size > 1000
    scores = dict(zip(*(line.split(",") for line in (enc / "eval.csv").read_text().splitlines()[::2])))
    assert all(0 <= float(scores[k]) <= 1 for k in ("pitch_f1", "onset_f1", "family_f1", "key_acc", "tempo_acc",
                                                          "families_f1"))
    assert scores["metre_acc"] == scores["style_acc"] == ""  # the valid clip's 2/4 hornpipe is unknown to training
    heads = json.loads((enc / "final" / "heads.json").read_text())
    assert heads["metres"] == ["3/4", "4/4", "6/8"] and heads["styles"] == ["air", "jig", "reel"]  # train split only
    assert MusicEncoder.from_pretrained(enc / "final").normalize

    paths = {"llm_path": str(lm / "final"), "tokenizer_path": str(lm / "final"), "mert_path": str(enc / "final")}
    model = M2UGen.from_config(M2UGenConfig.preset("tiny", **paths))
    trained = load_file(enc / "final" / "model.safetensors")
    mert = dict(model.encoders["audio"].model.named_parameters())
    assert all(torch.equal(mert[k], v) for k, v in trained.items() if k in mert) and len(trained) > 20

    overrides = json.dumps(paths)
    stage1 = ["stage1", "model=tiny", f"model_overrides={overrides}", f"output_dir={tmp_path / 's1'}",
              f'data=[{{"format": "manifest", "path": "{corpus["captions"]}"}}]', "batch_size=2", "max_steps=2",
              *FAST]
    assert main(stage1) == 0
    stage3 = ["stage3", "model=tiny", f"model_overrides={overrides}", f"output_dir={tmp_path / 's3'}",
              f"init_from={tmp_path / 's1' / 'final'}", "trainable=[adapters, gate, prefix_query, lora, bias, norm]",
              "mse_weight=0", f'data=[{{"format": "manifest", "path": "{corpus["qa"]}"}}]', "batch_size=2",
              "max_steps=2", *FAST]
    assert main(stage3) == 0
    assert (tmp_path / "s3" / "final" / "model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["pretrain-lm", "pretrain-encoder"])
def test_resume_continues_exactly(stage, corpus, tokenizer_dir, tmp_path):
    def args(out: Path) -> list[str]:
        base = _lm_args(corpus, tokenizer_dir, out) if stage == "pretrain-lm" else _encoder_args(corpus, out)
        return [*base, "max_steps=4", "save_every=2"]

    assert main(args(tmp_path / "straight")) == 0
    broken = tmp_path / "broken"
    assert main(args(broken)) == 0
    import shutil

    shutil.rmtree(broken / "final")  # as if killed after the checkpoint of step 2
    shutil.rmtree(broken / "checkpoints" / "step_00000004")
    assert main([*args(broken), "--resume", "lr=1e-3"]) == 2  # a different setting is refused
    assert main([*args(broken), "--resume"]) == 0
    a, b = (load_file(run / "final" / "model.safetensors") for run in (tmp_path / "straight", broken))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert [r.split(",")[0] for r in (broken / "log.csv").read_text().splitlines()[1:]] == ["1", "2", "3", "4"]


def test_language_model_learns_its_text(corpus, tokenizer_dir, tmp_path):
    """120 steps on four short tunes and their records in the prompt template: the next-token loss falls
    from chance (ln V) to well below it."""
    assert main([*_lm_args(corpus, tokenizer_dir, tmp_path / "lm"), "max_steps=120", "lr=1e-2", "val_text=[]"]) == 0
    rows = (tmp_path / "lm" / "log.csv").read_text().splitlines()[1:]
    first, last = float(rows[0].split(",")[3]), float(rows[-1].split(",")[3])
    vocab = json.loads((tokenizer_dir / "training.json").read_text())["vocab_size"]
    assert first > 0.8 * np.log(vocab) and last < 0.5 * first


@pytest.mark.parametrize("override, message", [
    ('text=[{"format": "csv", "path": "x"}]', "text format 'csv' is unknown"),
    ("text=[{format: clips}]", "needs a path"),
    ("vocab_size=100", "vocab_size must be >= 300"),
])
def test_tokenizer_config_errors_are_one_line(override, message, tmp_path, capsys):
    assert main(["tokenizer", 'text=[{"format": "music21_abc"}]', f"output_dir={tmp_path / 't'}", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_pretrain_errors_are_one_line(corpus, tokenizer_dir, tmp_path, capsys):
    assert main([*_encoder_args(corpus, tmp_path / "e"), "loss_weights={pitchh: 2}"]) == 2
    assert "unknown heads ['pitchh']" in capsys.readouterr().err
    assert main([*_encoder_args(corpus, tmp_path / "e"), f"clips=[{tmp_path / 'none.jsonl'}]"]) == 2
    assert "clips file not found" in capsys.readouterr().err
    assert main([*_lm_args(corpus, tmp_path / "no_tokenizer", tmp_path / "l")]) == 2
    assert "no tokenizer.model" in capsys.readouterr().err
    assert main([*_lm_args(corpus, tokenizer_dir, tmp_path / "l"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["tokenizer", f"text={_text(corpus)}", f"output_dir={tokenizer_dir}"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_gabor_front_end_starts_as_a_filter_bank():
    """The 'gabor' start: the filters whose frequency is nearest a 440 Hz sine respond to it most."""
    from training.pretrain_encoder import gabor_filterbank_

    weight = torch.zeros(64, 1, 1024)
    gabor_filterbank_(weight, 16000, low_hz=100.0, high_hz=4000.0)
    wave = torch.sin(2 * torch.pi * 440.0 * torch.arange(16000) / 16000)[None, None]
    energy = torch.nn.functional.conv1d(wave, weight, stride=64).pow(2).mean(-1)[0]
    pair_energy = energy[:32] + energy[32:]
    freqs = torch.logspace(2, float(torch.log10(torch.tensor(4000.0))), 32)
    assert abs(float(freqs[pair_energy.argmax()]) / 440.0 - 1) < 0.07
    assert torch.allclose(weight.norm(dim=-1), torch.ones(64, 1))
