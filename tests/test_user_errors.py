"""Every user mistake of issue 12, through the real entry points: one ``error:`` line naming the
problem and the user's file, exit code 2, no traceback, and no existing file changed.

(The 2-process ``--resume`` refusals are in test_training_multiprocess.py; the web UI's in
test_app.py and test_app_browser.py.)
"""

from __future__ import annotations

import builtins
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import datasets_build.cli
import m2ugen.cli
import training.cli
from training_utils import write_tone_set

TOKENIZER = Path(m2ugen.cli.__file__).parent / "assets" / "tiny_tokenizer"
UNWRITABLE = "/proc/m2ugen-no-such-folder"  # refused even for root


class _Eval:
    def __reduce__(self):
        return builtins.eval, ("1 + 1",)


def _files(tmp: Path) -> None:
    (tmp / "existing.txt").write_text("keep me\n")
    (tmp / "media").mkdir()
    sf.write(tmp / "media" / "tune.wav", 0.3 * np.sin(np.arange(24000) / 10.0), 24000)
    (tmp / "plain.pth").write_bytes(pickle.dumps({"model": {"a": [1, 2]}}, protocol=4))
    (tmp / "evil.pth").write_bytes(pickle.dumps({"model": _Eval()}, protocol=2))
    torch.save({"model": {"extra_head.weight": torch.zeros(2)}}, tmp / "partial.pth")
    write_tone_set(tmp, "train", per_class=1, seed=0)


def _train(*overrides: str) -> list[str]:
    return ["stage1", "data=[{format: manifest, path: {tmp}/train.jsonl}]", "batch_size=1", "max_steps=1",
            "progress=false", *overrides]


def _data(out: str) -> list[str]:
    return ["mucaps", "--source", "{tmp}/media", "--out", out, "--music-captioner", "plugin:nowhere:nothing",
            "--no-progress"]


CASES = [
    # (entry point, argv, text the line must hold)
    (datasets_build.cli.main, _data("{tmp}/existing.txt"), "--out {tmp}/existing.txt: cannot write files there"),
    (datasets_build.cli.main, _data("{tmp}/existing.txt/sub"), "{tmp}/existing.txt is not a folder"),
    (datasets_build.cli.main, _data(UNWRITABLE), f"--out {UNWRITABLE}: cannot write files there"),
    (training.cli.main, _train("output_dir={tmp}/existing.txt"), "output_dir={tmp}/existing.txt: cannot write"),
    (training.cli.main, _train(f"output_dir={UNWRITABLE}"), f"output_dir={UNWRITABLE}: cannot write"),
    (training.cli.main, _train("output_dir={tmp}/run", "feature_cache_dir={tmp}/existing.txt"),
     "feature_cache_dir={tmp}/existing.txt: cannot write"),
    (m2ugen.cli.main, ["convert", "released", "{tmp}/plain.pth", "--out", "{tmp}/conv", "--tokenizer", str(TOKENIZER)],
     "{tmp}/plain.pth: refused to load: not a weights-only PyTorch checkpoint"),
    (m2ugen.cli.main, ["convert", "released", "{tmp}/evil.pth", "--out", "{tmp}/conv", "--tokenizer", str(TOKENIZER)],
     "{tmp}/evil.pth: refused to load: it would run code or build objects other than tensors (GLOBAL eval)"),
    (m2ugen.cli.main, ["convert", "released", "{tmp}/partial.pth", "--out", "{tmp}/conv", "--tokenizer",
                       str(TOKENIZER)], "key group(s): LLaMA embeddings (llama.tok_embeddings.weight); LLaMA attention"),
    (m2ugen.cli.main, ["convert", "released", "{tmp}/partial.pth", "--out", "{tmp}/conv", "--tokenizer",
                       str(TOKENIZER)], "output projector queries (output_projector.query_embs); "),
    (m2ugen.cli.main, ["convert", "released", "{tmp}/partial.pth", "--out", "{tmp}/conv", "--tokenizer",
                       str(TOKENIZER)], "unknown key group(s): extra_head.*"),
    (m2ugen.cli.main, ["caption", "--model", "{tmp}/nodir", "{tmp}/media/tune.wav"],
     "{tmp}/nodir: model folder not found"),
    (m2ugen.cli.main, ["caption", "--model", "{tmp}/existing.txt", "{tmp}/media/tune.wav"],
     "{tmp}/existing.txt: is a file, not a model folder"),
    (m2ugen.cli.main, ["generate", "--demo", "", "-o", "{tmp}/out.wav"], "the message is empty"),
    (m2ugen.cli.main, ["edit", "--demo", "{tmp}/media/tune.wav", " ", "-o", "{tmp}/out.wav"], "the message is empty"),
    (m2ugen.cli.main, ["caption", "--demo", "{tmp}/media"], "{tmp}/media: is a directory, not an audio file"),
    (m2ugen.cli.main, ["transcribe", "--demo", "{tmp}/missing.wav"], "{tmp}/missing.wav: audio file not found"),
    (m2ugen.cli.main, ["transcribe", "--model", "{tmp}/m", "{tmp}/missing.wav"], "audio file not found"),
]


def _snapshot(tmp: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp.rglob("*") if p.is_file()}


@pytest.mark.parametrize("entry, argv, expected", CASES, ids=[f"{i}-{c[1][0]}" for i, c in enumerate(CASES)])
def test_each_mistake_is_one_error_line_exit_2_and_changes_no_file(tmp_path, capfd, entry, argv, expected):
    _files(tmp_path)
    before = _snapshot(tmp_path)
    capfd.readouterr()
    code = entry([a.replace("{tmp}", str(tmp_path)) for a in argv])
    out, err = capfd.readouterr()
    skipped = ("loading the model", "loaded ", "Assistant.demo()", "Assistant.tiny()")
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(skipped)]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected.replace("{tmp}", str(tmp_path)) in lines[0]
    assert "Traceback" not in out + err and "Warning" not in err and "allowlist" not in err
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing that existed changed
    assert "loading the model" not in err  # refused before any model is built
