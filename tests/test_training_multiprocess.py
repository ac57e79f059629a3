"""Multi-process training for real: two CPU processes (gloo, DDP) started by ``accelerate launch``.

Two processes with 2 samples each per step give the same loss curve and final weights as one process
with 4 samples per step; SIGKILL of one rank and ``--resume`` give the same result as no interruption.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load_file

from training_utils import write_tone_set

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
STEPS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(processes: int, config: Path, out: Path, *extra: str) -> subprocess.Popen:
    """``accelerate launch`` of stage 1 on CPU: ``processes`` gloo ranks (torchrun) or a plain process."""
    mode = ["--multi_gpu"] if processes > 1 else []
    command = [sys.executable, "-m", "accelerate.commands.launch", *mode, "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()),
               "-m", "training.cli", "stage1", "--config", str(config), f"output_dir={out}", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1",
           "HF_HOME": str(out.parent / "hf-home")}  # no user accelerate config file
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run(processes: int, config: Path, out: Path, *extra: str) -> str:
    proc = _launch(processes, config, out, *extra)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-3000:]
    return output


def _losses(out: Path) -> list[float]:
    rows = [line.split(",") for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert [int(r[0]) for r in rows] == list(range(1, STEPS + 1))  # one row per step: only rank 0 logs
    return [float(r[3]) for r in rows]


def _max_difference(a: Path, b: Path) -> float:
    x, y = load_file(a / "final" / "model.safetensors"), load_file(b / "final" / "model.safetensors")
    assert set(x) == set(y) and len(x) > 10
    return max(float((x[k] - y[k]).abs().max()) for k in x)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    manifest = write_tone_set(folder, "train", per_class=2, seed=0)  # 8 clips: 2 global batches of 4
    base = dict(model="tiny", lr=3e-3, min_lr=3e-4, warmup_steps=1, max_steps=STEPS, save_every=2,
                num_threads=1, progress=False, log_every=1, data=[{"format": "manifest", "path": str(manifest)}])
    configs = {}
    for processes, batch in ((1, 4), (2, 2)):  # the same global batch
        configs[processes] = folder / f"stage1-{processes}.json"
        configs[processes].write_text(json.dumps({**base, "batch_size": batch}))
    return folder, configs


def test_two_processes_match_one_with_the_same_global_batch(setup):
    folder, configs = setup
    _run(1, configs[1], folder / "one")
    _run(2, configs[2], folder / "two")
    one, two = _losses(folder / "one"), _losses(folder / "two")
    assert max(abs(a - b) for a, b in zip(one, two)) <= 1e-5, (one, two)
    assert one[-1] < one[0]
    assert _max_difference(folder / "one", folder / "two") <= 1e-5
    state = json.loads((folder / "two" / "checkpoints" / "step_00000004" / "state.json").read_text())
    assert state["world_size"] == 2 and state["seen"] * 2 == STEPS * 4
    assert sorted(p.name for p in (folder / "two" / "checkpoints" / "step_00000004").glob("rng.rank*.pt")) == [
        "rng.rank0.pt", "rng.rank1.pt"]


def test_sigkill_of_one_rank_then_resume_equals_the_uninterrupted_run(setup):
    folder, configs = setup
    if not (folder / "two" / "final").exists():
        _run(2, configs[2], folder / "two")
    killed = folder / "killed"
    proc = _launch(2, configs[2], killed)
    deadline = time.monotonic() + 300
    while not (killed / "checkpoints" / "step_00000002").is_dir():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    ranks = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.environ().get("RANK") == "1"]
    assert len(ranks) == 1
    ranks[0].send_signal(signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)  # the launcher stops the other rank and fails
    assert proc.returncode != 0 and not (killed / "final").exists()

    _run(2, configs[2], killed, "--resume")
    assert _max_difference(folder / "two", killed) <= 1e-6
    assert _losses(killed) == pytest.approx(_losses(folder / "two"), abs=1e-6)


def test_resume_refuses_changed_settings_and_process_count(setup, capsys):
    from training.cli import main

    folder, configs = setup
    if not (folder / "two" / "final").exists():
        _run(2, configs[2], folder / "two")
    out = folder / "two"
    assert main(["stage1", "--config", str(configs[2]), f"output_dir={out}", "--resume", "lr=1e-2",
                 "batch_size=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "batch_size: 2 -> 3" in err and "lr: 0.003 -> 0.01" in err
    assert "--override-resume-settings" in err
    assert main(["stage1", "--config", str(configs[2]), f"output_dir={out}", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "ran on 2 process(es), this run has 1" in err and err.count("\n") == 1
