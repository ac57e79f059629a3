"""Training checkpoints: only the trained tensors, written to a temporary folder and renamed into place.

Layout under ``output_dir``::

    checkpoints/step_00000100/   trained.safetensors  this stage's trainable tensors
                                 optimizer.rank{r}.pt optimizer state of process r (sharded optimizers differ per rank)
                                 scheduler.pt         LR scheduler state
                                 rng.rank{r}.pt       torch / CUDA / numpy / python RNG states of process r
                                 state.json           step, data position, world size, trained names
    final/                       model.safetensors    every tensor this and earlier stages trained
                                 config.json          the network's M2UGenConfig
                                 training.json        the training config and the number of steps

A folder appears under its final name only once complete (``os.replace`` of a finished temporary
folder), so a process killed at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from m2ugen.checkpoints import WEIGHTS_NAME, load_tensors, load_torch_file, write_weights
from m2ugen.errors import CheckpointError

STEP_DIR = re.compile(r"^step_(\d{8})$")
TRAINED_FILE = "trained.safetensors"
FINAL_WEIGHTS = WEIGHTS_NAME


@dataclass
class TrainingState:
    """What ``--resume`` needs besides the tensors."""

    step: int
    position: int  # micro-batches consumed (all processes together advance one global batch per unit)
    world_size: int
    names: list[str]
    problems: int
    seen: int


def _fsync_dir(path: Path) -> None:
    for file in path.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": json.dumps(random.getstate())}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """Complete step checkpoints, oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name))


def begin_checkpoint(output_dir: Path, step: int) -> Path:
    """A fresh temporary folder for the checkpoint of ``step`` (main process only)."""
    tmp = Path(output_dir) / "checkpoints" / f".step_{step:08d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def write_rank_state(tmp: Path, rank: int, optimizer_state: dict, rng: dict[str, Any]) -> None:
    torch.save(optimizer_state, tmp / f"optimizer.rank{rank}.pt")
    torch.save(rng, tmp / f"rng.rank{rank}.pt")


def write_main_state(tmp: Path, tensors: dict[str, torch.Tensor], scheduler_state: dict, state: TrainingState) -> None:
    write_weights(tensors, tmp / TRAINED_FILE)
    torch.save(scheduler_state, tmp / "scheduler.pt")
    (tmp / "state.json").write_text(json.dumps(state.__dict__, indent=1) + "\n")


def finish_checkpoint(tmp: Path, keep: int) -> Path:
    """Rename the completed folder into place and delete all but the newest ``keep`` checkpoints."""
    _fsync_dir(tmp)
    final = tmp.parent / tmp.name[1:-len(".tmp")]
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(tmp.parent.parent)[:-keep]:
        shutil.rmtree(old)
    return final


def save_checkpoint(accelerator: Any, output_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, state: TrainingState, keep: int, after: Any = None) -> None:
    """Write checkpoint ``state.step`` from every process of ``accelerator``: each rank its optimizer and
    RNG state, the main process the trained tensors (``state.names``), scheduler and state, then the
    atomic rename (keeping ``keep``). ``after()`` runs on the main process once it is complete."""
    is_main = accelerator.is_main_process
    tmp = (begin_checkpoint(output_dir, state.step) if is_main
           else output_dir / "checkpoints" / f".step_{state.step:08d}.tmp")
    accelerator.wait_for_everyone()
    write_rank_state(tmp, accelerator.process_index, optimizer.state_dict(), rng_state())
    full = accelerator.get_state_dict(model)
    if is_main:
        write_main_state(tmp, {n: full[n] for n in state.names}, scheduler.state_dict(), state)
    accelerator.wait_for_everyone()
    if is_main:
        finish_checkpoint(tmp, keep)
        if after is not None:
            after()
    accelerator.wait_for_everyone()


def read_state(path: Path) -> TrainingState:
    try:
        return TrainingState(**json.loads((path / "state.json").read_text()))
    except (OSError, json.JSONDecodeError, TypeError) as err:
        raise CheckpointError(f"{path}: unreadable training state ({err})") from None


def read_rank_state(path: Path, rank: int, sharded: bool) -> tuple[dict, dict[str, Any]]:
    """Optimizer and RNG state of ``rank`` (rank 0's optimizer state when it is replicated)."""
    opt_rank = rank if sharded else 0
    rng_file = path / f"rng.rank{rank}.pt"
    return (load_torch_file(path / f"optimizer.rank{opt_rank}.pt"),
            load_torch_file(rng_file if rng_file.is_file() else path / "rng.rank0.pt"))


def read_scheduler(path: Path) -> dict:
    return load_torch_file(path / "scheduler.pt")


def save_final(output_dir: Path, tensors: dict[str, torch.Tensor], model_config: dict, training: dict) -> Path:
    """Write ``final/`` atomically (replacing an older one)."""
    output_dir = Path(output_dir)
    tmp = output_dir / ".final.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write_weights(tensors, tmp / FINAL_WEIGHTS)
    (tmp / "config.json").write_text(json.dumps(model_config, indent=2, sort_keys=True) + "\n")
    (tmp / "training.json").write_text(json.dumps(training, indent=2) + "\n")
    _fsync_dir(tmp)
    final = output_dir / "final"
    old = output_dir / ".final.old"
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    return final


def load_stage_output(model: nn.Module, path: str | Path) -> list[str]:
    """Load a stage's ``final`` folder (or a ``model.safetensors`` file) into ``model``; returns the names."""
    path = Path(path)
    file = path / FINAL_WEIGHTS if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(f"{path}: no {FINAL_WEIGHTS} (expected the 'final' folder of a finished stage)")
    return load_tensors(model, file)
