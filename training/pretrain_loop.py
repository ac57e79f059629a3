"""The pretraining loop: one network trained whole from scratch, with the M2UGen stages' machinery.

Same accelerate setup, data order (:class:`training.loop.BatchOrder`), LR schedule, checkpoints
(every parameter is "trained", so ``trained.safetensors`` holds the whole network), exact
``--resume``, ``log.csv`` / ``eval.csv`` / ``loss.png`` as :mod:`training.loop`. What differs per stage
lives in a :class:`PretrainTask`: the network, its batches, its loss terms and its final folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from m2ugen.errors import ConfigError
from m2ugen.files import check_folder
from training import checkpoint as ckpt
from training.logs import CsvLog, TensorBoard, plot_losses
from training.loop import BatchOrder, _mixed_precision, check_run_folder, lr_factor
from training.pretrain_config import PretrainConfig
from training.stages import is_decayed


class PretrainTask(Protocol):
    """What one pretraining stage provides to :func:`run_pretrain`."""

    model: nn.Module
    terms: tuple[str, ...]  # names of the loss terms logged beside the total
    scores: tuple[str, ...]  # names of the validation scores (accuracies, F1) logged in eval.csv

    def __len__(self) -> int:
        """Number of training samples."""

    def batch(self, indices: Sequence[int], position: int) -> dict[str, torch.Tensor]:
        """Training batch of ``indices``; any randomness is a function of ``position`` (exact resume)."""

    def val_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """The fixed validation batches (none: no evaluation)."""

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and the value of each of ``terms``."""

    def score(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, tuple[float, int]]:
        """(sum, count) of each of ``scores`` over the batch (a count of 0: nothing to score)."""

    def save_final(self, model: nn.Module, folder: Path) -> None:
        """Write the trained network to ``folder`` in the layout the next stage loads."""


@dataclass
class PretrainResult:
    output_dir: Path
    final_dir: Path
    steps: int
    samples: int
    last_loss: float
    val: dict[str, float]


@torch.no_grad()
def evaluate(model: nn.Module, task: PretrainTask) -> dict[str, float]:
    """Mean total loss and terms (batch-weighted by sample count) and scores over the validation batches."""
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {"loss": 0.0, **{t: 0.0 for t in task.terms}}
    scored = {s: [0.0, 0] for s in task.scores}
    count = 0
    for batch in task.val_batches():
        size = len(next(iter(batch.values())))
        loss, terms = task.loss(model, batch)
        totals["loss"] += float(loss) * size
        for key, value in terms.items():
            totals[key] += value * size
        for key, (value, n) in task.score(model, batch).items():
            scored[key][0] += value
            scored[key][1] += n
        count += size
    model.train(was_training)
    if not count:
        return {}
    return {**{k: v / count for k, v in totals.items()}, **{k: s / n for k, (s, n) in scored.items() if n}}


def run_pretrain(cfg: PretrainConfig, make_task: Any, resume: bool = False,
                 override_resume_settings: bool = False) -> PretrainResult:
    """Train ``make_task(cfg)``'s network as configured; the final folder is ``output_dir/final``.

    ``resume`` continues the newest checkpoint with the run's saved settings (a differing one is a
    ConfigError unless ``override_resume_settings``), as :func:`training.loop.run_stage` does.
    """
    threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _run(cfg, make_task, resume, override_resume_settings)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: PretrainConfig, make_task: Any, resume: bool, override: bool) -> PretrainResult:
    out = check_folder(cfg.output_dir, "output_dir=")
    resume_dir = check_run_folder(out, cfg.to_dict(), resume, override)
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg.mixed_precision))
    is_main = accelerator.is_main_process
    set_seed(cfg.seed)
    task: PretrainTask = make_task(cfg)
    model = task.model.to(accelerator.device)
    names = [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    decay = [params[n] for n in names if is_decayed(n, params[n], set())]
    rest = [params[n] for n in names if not is_decayed(n, params[n], set())]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)
    order = BatchOrder(len(task), cfg.batch_size, accelerator.num_processes, accelerator.process_index,
                       cfg.seed, cfg.shuffle)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * order.per_epoch / cfg.grad_accum))
    scheduler = LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, cfg.warmup_steps, cfg.min_lr / cfg.lr))
    start_step, position, seen = 0, 0, 0
    if resume_dir is not None:
        state = ckpt.read_state(resume_dir)
        if state.names != names:
            raise ConfigError(f"{resume_dir}: the checkpoint holds a different network; resume with the same "
                              "stage and model settings")
        ckpt.load_tensors(model, resume_dir / ckpt.TRAINED_FILE)
        start_step, position, seen = state.step, state.position, state.seen
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    if resume_dir is not None:
        opt_state, rng = ckpt.read_rank_state(resume_dir, accelerator.process_index, sharded=False)
        optimizer.load_state_dict(opt_state)
        scheduler.load_state_dict(ckpt.read_scheduler(resume_dir))
        ckpt.set_rng_state(rng)

    terms = task.terms
    train_columns = ("step", "epoch", "lr", "loss", *terms, "grad_norm", "samples", "elapsed_s")
    eval_columns = ("step", "loss", *terms, *task.scores)
    resume_step = start_step if resume_dir is not None else None
    title = f"{cfg.stage} ({cfg.model})"
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        train_log = CsvLog(out / "log.csv", train_columns, resume_step)
        eval_log = CsvLog(out / "eval.csv", eval_columns, resume_step)
        board = TensorBoard(out / "tensorboard", resume_step)
    val: dict[str, float] = {}

    def plot() -> None:
        plot_losses(train_log.rows(), eval_log.rows(), out / "loss.png", title, ("loss", *terms), ("loss",))

    def run_eval(step: int) -> None:
        nonlocal val
        val = evaluate(wrapped, task)
        if val and is_main:
            eval_log.append({"step": step, **{k: f"{v:.6g}" for k, v in val.items()}})
            board.scalars("val", step, val)

    def save(step: int) -> None:
        state = ckpt.TrainingState(step=step, position=position, world_size=accelerator.num_processes,
                                   names=names, problems=0, seen=seen)
        ckpt.save_checkpoint(accelerator, out, wrapped, optimizer, scheduler, state, cfg.keep_checkpoints, after=plot)

    if resume_dir is None:
        run_eval(0)
    wrapped.train()
    started = time.monotonic()
    last_loss = float("nan")
    window = {k: 0.0 for k in ("loss", *terms)}
    window_steps = 0
    bar = tqdm(total=total_steps, initial=start_step, desc=cfg.stage, disable=not (is_main and cfg.progress),
               dynamic_ncols=True)
    trained = [p for p in model.parameters() if p.requires_grad]
    for step in range(start_step, total_steps):
        for micro in range(cfg.grad_accum):
            batch = task.batch(order.indices(position), position)
            position += 1
            seen += cfg.batch_size
            sync = micro == cfg.grad_accum - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(wrapped):
                loss, parts = task.loss(wrapped, batch)
                accelerator.backward(loss / cfg.grad_accum)
            window["loss"] += float(loss.detach()) / cfg.grad_accum
            for key, value in parts.items():
                window[key] += value / cfg.grad_accum
        if cfg.grad_clip > 0:
            grad_norm = float(accelerator.clip_grad_norm_(trained, cfg.grad_clip))
        else:
            grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.detach().float().norm() for p in trained
                                                                    if p.grad is not None])))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        window_steps += 1
        done = step + 1
        bar.update(1)
        if done % cfg.log_every == 0 or done == total_steps:
            means = {k: float(accelerator.reduce(torch.tensor(v / window_steps, device=accelerator.device), "mean"))
                     for k, v in window.items()}
            last_loss = means["loss"]
            if is_main:
                train_log.append({"step": done, "epoch": f"{position / order.per_epoch:.4f}",
                                  "lr": f"{scheduler.get_last_lr()[0]:.4g}",
                                  **{k: f"{v:.6g}" for k, v in means.items()},
                                  "grad_norm": f"{grad_norm:.4g}", "samples": seen * accelerator.num_processes,
                                  "elapsed_s": f"{time.monotonic() - started:.1f}"})
                board.scalars("train", done, {**means, "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm})
                bar.set_postfix(loss=f"{means['loss']:.4f}")
            window = {k: 0.0 for k in window}
            window_steps = 0
        if cfg.eval_every and done % cfg.eval_every == 0 and done != total_steps:
            run_eval(done)
        if done % cfg.save_every == 0 or done == total_steps:
            save(done)
    bar.close()
    if start_step < total_steps or resume_dir is None:
        run_eval(total_steps)

    final_dir = out / "final"
    if is_main:
        tmp = out / ".final.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        task.save_final(accelerator.unwrap_model(wrapped), tmp)
        (tmp / "training.json").write_text(json.dumps(
            {"config": cfg.to_dict(), "steps": total_steps, "samples": seen * accelerator.num_processes,
             "val": val}, indent=2) + "\n")
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(tmp, final_dir)
        plot()
        board.close()
    accelerator.wait_for_everyone()
    return PretrainResult(output_dir=out, final_dir=final_dir, steps=total_steps,
                          samples=seen * accelerator.num_processes, last_loss=last_loss, val=val)
