"""The one training loop (accelerate): single CPU, one GPU, or DDP / FSDP / DeepSpeed by ``accelerate config``.

Per optimizer step: ``grad_accum`` micro-batches of ``batch_size`` samples per process (gradients
synchronised on the last one), global gradient-norm clipping, AdamW, then the LR schedule (linear
warmup, cosine to ``min_lr``). The data order is a pure function of (seed, epoch), and the position
is the number of micro-batches consumed, so ``--resume`` continues exactly where the last checkpoint
was taken: same batches, same optimizer and RNG states.

Samples whose media cannot be read (or whose dialogue does not fit the context) are written to
``data_problems.jsonl`` and counted; the run stops with :class:`DataError` once they exceed
``max_bad_fraction`` of the samples seen. The step itself has no ``try``/``except``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs, DistributedType
from accelerate.utils import set_seed
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from m2ugen.errors import ConfigError, DataError, M2UGenError
from m2ugen.files import check_folder
from m2ugen.model import M2UGen
from training import checkpoint as ckpt
from training.config import TrainConfig, changed_settings
from training.data import Example, Problem, TextDataset, collate, read_sources
from training.features import Featurizer
from training.logs import (EVAL_COLUMNS, TRAIN_COLUMNS, CsvLog, TensorBoard, append_jsonl, drop_jsonl_after,
                            plot_losses)
from training.stages import optimizer_groups, trainable_names

# The bad-sample fraction is only judged after this many samples, so one early failure cannot stop a run.
MIN_SAMPLES_FOR_BAD_FRACTION = 50


@dataclass
class RunResult:
    output_dir: Path
    final_dir: Path
    steps: int
    samples: int
    problems: int
    last_loss: float


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """LR multiplier at ``step`` (0-based): linear warmup to 1, then cosine down to ``min_ratio``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class BatchOrder:
    """Micro-batch ``i`` -> sample indices of this process. Epoch ``e`` is a permutation seeded by ``seed + e``.

    Each micro-batch position is one global batch of ``batch_size * world_size`` samples, split by rank;
    the last incomplete global batch of an epoch is skipped (so every process gets the same count).
    """

    def __init__(self, num_samples: int, batch_size: int, world_size: int, rank: int, seed: int, shuffle: bool) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.shuffle = shuffle
        self.per_epoch = num_samples // (batch_size * world_size)
        if self.per_epoch == 0:
            raise DataError(f"only {num_samples} usable samples: fewer than one global batch "
                            f"({batch_size} x {world_size} processes)")
        self._epoch = -1
        self._order: list[int] = []

    def indices(self, position: int) -> list[int]:
        epoch, i = divmod(position, self.per_epoch)
        if epoch != self._epoch:
            if self.shuffle:
                self._order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
            else:
                self._order = list(range(self.num_samples))
            self._epoch = epoch
        start = (i * self.world_size + self.rank) * self.batch_size
        return self._order[start:start + self.batch_size]


def _mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _load_decoder(model: M2UGen) -> Any:
    """The frozen music decoder whose own caption conditioning is the MSE target."""
    from m2ugen.decoders import load_decoder

    cfg = model.config
    if cfg.decoder_path is None:
        raise ConfigError("an MSE target needs the music decoder: set decoder_path in the model config")
    options = {} if str(cfg.decoder_path) == "tiny" else {"device": model.device}
    return load_decoder(cfg.decoder, cfg.decoder_path, **options)


class Batches:
    """Turns sample indices into a collated batch, collecting problems instead of failing."""

    def __init__(self, dataset: TextDataset, featurizer: Featurizer, pad_id: int, source: str, with_targets: bool) -> None:
        self.dataset = dataset
        self.featurizer = featurizer
        self.pad_id = pad_id
        self.source = source
        self.with_targets = with_targets

    def make(self, indices: Sequence[int]) -> tuple[dict[str, Any] | None, list[Problem]]:
        examples: list[Example] = []
        feats, targets, problems = [], [], []
        for index in indices:
            record = self.dataset.records[index]
            try:
                example = self.dataset[index]
                feat = (self.featurizer.features(example.modality, example.media_path)
                        if example.modality else None)
                target = (self.featurizer.target(example.target_caption)
                          if self.with_targets and example.target_caption else None)
            except M2UGenError as err:
                problems.append(Problem(self.source, record.id, str(err)))
                continue
            examples.append(example)
            feats.append(feat)
            targets.append(target)
        if not examples:
            return None, problems
        return collate(examples, self.pad_id, feats, targets if self.with_targets else None), problems


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Batches, batch_size: int, ce_weight: float,
             mse_weight: float) -> dict[str, float]:
    """Sample-weighted mean CE and MSE over a whole data set (unreadable samples skipped, counted)."""
    was_training = model.training
    model.eval()
    totals = {"ce": 0.0, "mse": 0.0, "samples": 0, "problems": 0}
    n = len(batches.dataset)
    for start in range(0, n, batch_size):
        batch, problems = batches.make(range(start, min(n, start + batch_size)))
        totals["problems"] += len(problems)
        if batch is None:
            continue
        out = model(batch, ce_weight=ce_weight, mse_weight=mse_weight)
        size = batch["input_ids"].shape[0]
        totals["ce"] += float(out.ce_loss) * size
        totals["mse"] += float(out.mse_loss) * size
        totals["samples"] += size
    model.train(was_training)
    count = max(1, totals["samples"])
    return {"ce": totals["ce"] / count, "mse": totals["mse"] / count, "samples": totals["samples"],
            "problems": totals["problems"]}


def run_stage(cfg: TrainConfig, resume: bool = False, override_resume_settings: bool = False) -> RunResult:
    """Train one stage as configured; returns where the final tensors are.

    ``resume`` continues the newest checkpoint with the run's saved settings: one that differs (or a
    different number of processes) is refused unless ``override_resume_settings``.

    Raises:
        ConfigError: ``output_dir`` already holds a run and ``resume`` is False, or ``resume`` finds none,
            or resumes with changed settings; ``output_dir`` or ``feature_cache_dir`` cannot be written.
        DataError / CheckpointError: bad data beyond ``max_bad_fraction``, or unusable checkpoints.
    """
    threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _run_stage(cfg, resume, override_resume_settings)
    finally:
        torch.set_num_threads(threads)


def check_run_folder(out: Path, settings: dict[str, Any], resume: bool, override: bool) -> Path | None:
    """The checkpoint to resume from (None: a new run). Refuses to start over an existing run without
    ``resume``, to resume nothing, or to resume with ``settings`` that differ from the run's saved
    ``train_config.json`` (unless ``override``)."""
    existing = ckpt.checkpoint_dirs(out)
    if not resume and (existing or (out / "final").exists()):
        raise ConfigError(f"{out} already holds a training run; pass --resume to continue it or choose another "
                          "output_dir")
    if resume and not existing:
        raise ConfigError(f"--resume: {out} has no checkpoint to resume from")
    saved_config = out / "train_config.json"
    if resume and not override and saved_config.is_file():
        changed = changed_settings(json.loads(saved_config.read_text()), settings)
        if changed:
            raise ConfigError(f"--resume: settings differ from the run's saved ones in {saved_config} ("
                              + "; ".join(changed) + "); use them, or pass --override-resume-settings")
    return existing[-1] if resume else None


def _run_stage(cfg: TrainConfig, resume: bool, override: bool) -> RunResult:
    out = check_folder(cfg.output_dir, "output_dir=")
    if cfg.feature_cache_dir is not None:
        check_folder(cfg.feature_cache_dir, "feature_cache_dir=")
    resume_dir = check_run_folder(out, cfg.to_dict(), resume, override)

    # Several processes on a machine without an accelerator device (torchrun, accelerate launch --multi_gpu):
    # a gloo group on CPU. Without cpu=True accelerate would give each process a run of its own.
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true") and not torch.accelerator.is_available():
        raise ConfigError("FSDP needs GPUs (accelerate's FSDP plugin refuses to start on CPU); on CPU use "
                          "several processes without FSDP (see docs/training.md)")
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg.mixed_precision),
                              cpu=launched > 1 and not torch.accelerator.is_available(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    if accelerator.num_processes != launched:
        raise ConfigError(f"launched as {launched} processes, but accelerate formed a group of "
                          f"{accelerator.num_processes}; see docs/training.md for multi-process recipes")
    is_main = accelerator.is_main_process
    ce_weight, mse_weight = cfg.loss_weights

    # --- model and what trains ------------------------------------------------------------
    model_cfg = cfg.model_config()
    model = M2UGen.from_config(model_cfg)
    carried: list[str] = ckpt.load_stage_output(model, cfg.init_from) if cfg.init_from else []
    if cfg.gate_init is not None:  # open the gates: the adapters get the full gradient from the first step
        with torch.no_grad():
            model.llm.injection.gate.fill_(math.atanh(cfg.gate_init))
    names = trainable_names(model, cfg.trainable_kinds)
    model.set_trainable(cfg.trainable_kinds)
    if cfg.gradient_checkpointing:
        # Non-reentrant recomputation works with the injection: its vectors stay set until the next forward.
        model.llm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    set_seed(cfg.seed)
    model.to(accelerator.device)

    # --- data -----------------------------------------------------------------------------
    max_tokens = cfg.max_tokens or model_cfg.max_context
    records, reader_problems = read_sources(cfg.data)
    dataset = TextDataset(records, model.tokenizer, model_cfg.num_aud_tokens, max_tokens)
    needs_targets = mse_weight > 0 and any(r.target_caption for r in records)
    decoder = _load_decoder(model) if needs_targets or (mse_weight > 0 and cfg.val_data) else None
    featurizer = Featurizer(model, decoder, cfg.feature_cache_dir, cfg.feature_memory_mb)
    train_batches = Batches(dataset, featurizer, model.tokenizer.pad_token_id, "train", with_targets=mse_weight > 0)
    val_batches = None
    if cfg.val_data:
        val_records, _ = read_sources(cfg.val_data)
        val_batches = Batches(TextDataset(val_records, model.tokenizer, model_cfg.num_aud_tokens, max_tokens),
                              featurizer, model.tokenizer.pad_token_id, "val", with_targets=mse_weight > 0)
    order = BatchOrder(len(dataset), cfg.batch_size, accelerator.num_processes, accelerator.process_index,
                       cfg.seed, cfg.shuffle)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * order.per_epoch / cfg.grad_accum))

    # --- optimisation ---------------------------------------------------------------------
    optimizer = torch.optim.AdamW(optimizer_groups(model, names, cfg.weight_decay, cfg.lr, cfg.lr_scales),
                                  lr=cfg.lr, betas=cfg.betas)
    scheduler = LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, cfg.warmup_steps, cfg.min_lr / cfg.lr)
                         if cfg.lr > 0 else 0.0)
    start_step, position, problems_count, seen = 0, 0, 0, 0
    if resume_dir is not None:
        state = ckpt.read_state(resume_dir)
        if state.names != names:
            raise ConfigError(f"{resume_dir}: the checkpoint trained a different parameter set; resume with the "
                              "same stage, model and trainable settings")
        ckpt.load_tensors(model, resume_dir / ckpt.TRAINED_FILE)
        start_step, position, problems_count, seen = state.step, state.position, state.problems, state.seen
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if accelerator.distributed_type == DistributedType.FSDP:
        # The frozen encoders run outside the model's forward (in Featurizer): keep them whole on every rank.
        accelerator.state.fsdp_plugin.ignored_modules = list(model.encoders.values())
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    if resume_dir is not None:
        saved_world = ckpt.read_state(resume_dir).world_size
        if saved_world != accelerator.num_processes and (sharded or not override):
            why = "sharded optimizer state needs" if sharded else "the data order and global batch follow"
            raise ConfigError(f"--resume: {resume_dir} ran on {saved_world} process(es), this run has "
                              f"{accelerator.num_processes}; {why} the same number"
                              + ("" if sharded else " (or pass --override-resume-settings)"))
        opt_state, rng = ckpt.read_rank_state(resume_dir, accelerator.process_index, sharded)
        optimizer.load_state_dict(opt_state)
        scheduler.load_state_dict(ckpt.read_scheduler(resume_dir))
        ckpt.set_rng_state(rng)
    params = [p for _, p in model.named_parameters() if p.requires_grad]

    # --- logs -----------------------------------------------------------------------------
    resume_step = start_step if resume_dir is not None else None
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        train_log = CsvLog(out / "log.csv", TRAIN_COLUMNS, resume_step)
        eval_log = CsvLog(out / "eval.csv", EVAL_COLUMNS, resume_step)
        board = TensorBoard(out / "tensorboard", resume_step)
        if resume_dir is None:
            (out / "data_problems.jsonl").unlink(missing_ok=True)
            append_jsonl(out / "data_problems.jsonl", [p.to_dict() for p in reader_problems])
        else:
            drop_jsonl_after(out / "data_problems.jsonl", start_step)
    if reader_problems and len(reader_problems) > cfg.max_bad_fraction * (len(records) + len(reader_problems)):
        raise DataError(f"{len(reader_problems)} of {len(records) + len(reader_problems)} data items are unusable "
                        f"(limit {cfg.max_bad_fraction:.0%}); see {out / 'data_problems.jsonl'}")

    def run_eval(step: int) -> None:
        if val_batches is None:
            return
        result = evaluate(wrapped, val_batches, cfg.batch_size, ce_weight, mse_weight)
        if is_main:
            eval_log.append({"step": step, **result})
            board.scalars("val", step, {"ce": result["ce"], "mse": result["mse"]})

    def save(step: int) -> None:
        state = ckpt.TrainingState(step=step, position=position, world_size=accelerator.num_processes,
                                   names=names, problems=problems_count, seen=seen)
        ckpt.save_checkpoint(accelerator, out, wrapped, optimizer, scheduler, state, cfg.keep_checkpoints,
                             after=lambda: plot_losses(train_log.rows(), eval_log.rows(), out / "loss.png",
                                                       f"{cfg.stage} ({model_cfg.name})"))

    # --- loop -----------------------------------------------------------------------------
    if resume_dir is None:
        run_eval(0)
    wrapped.train()
    started = time.monotonic()
    last_loss = float("nan")
    window: dict[str, float] = {"loss": 0.0, "ce": 0.0, "mse": 0.0, "n": 0}
    bar = tqdm(total=total_steps, initial=start_step, desc=cfg.stage, disable=not (is_main and cfg.progress),
               dynamic_ncols=True)
    for step in range(start_step, total_steps):
        for micro in range(cfg.grad_accum):
            batch, problems = train_batches.make(order.indices(position))
            position += 1
            seen += cfg.batch_size
            problems_count += len(problems)
            if is_main:
                append_jsonl(out / "data_problems.jsonl", [{**p.to_dict(), "step": step} for p in problems])
            sync = micro == cfg.grad_accum - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(wrapped):
                if batch is None:  # every sample of the micro-batch failed: a zero loss keeps processes in step
                    loss = sum(p.sum() for p in params) * 0.0
                else:
                    output = wrapped(batch, ce_weight=ce_weight, mse_weight=mse_weight)
                    loss = output.loss
                    window["ce"] += float(output.ce_loss) / cfg.grad_accum
                    window["mse"] += float(output.mse_loss) / cfg.grad_accum
                    window["loss"] += float(loss.detach()) / cfg.grad_accum
                accelerator.backward(loss / cfg.grad_accum)
        if seen >= MIN_SAMPLES_FOR_BAD_FRACTION and problems_count > cfg.max_bad_fraction * seen:
            raise DataError(f"{problems_count} of {seen} samples had unreadable media or did not fit "
                            f"(limit {cfg.max_bad_fraction:.0%}); see {out / 'data_problems.jsonl'}")
        if cfg.grad_clip > 0:
            grad_norm = float(accelerator.clip_grad_norm_(params, cfg.grad_clip))
        else:
            grad_norm = float(torch.linalg.vector_norm(
                torch.stack([p.grad.detach().float().norm() for p in params if p.grad is not None])))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        window["n"] += 1
        done = step + 1
        bar.update(1)
        if done % cfg.log_every == 0 or done == total_steps:
            means = {k: window[k] / window["n"] for k in ("loss", "ce", "mse")}
            means = {k: float(accelerator.reduce(torch.tensor(v, device=accelerator.device), "mean"))
                     for k, v in means.items()}
            last_loss = means["loss"]
            if is_main:
                row = {"step": done, "epoch": f"{position / order.per_epoch:.4f}",
                       "lr": f"{scheduler.get_last_lr()[0]:.4g}", **{k: f"{v:.6g}" for k, v in means.items()},
                       "grad_norm": f"{grad_norm:.4g}", "samples": seen * accelerator.num_processes,
                       "problems": problems_count, "elapsed_s": f"{time.monotonic() - started:.1f}"}
                train_log.append(row)
                board.scalars("train", done, {**means, "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm})
                bar.set_postfix(loss=f"{means['loss']:.4f}", problems=problems_count)
            window = {"loss": 0.0, "ce": 0.0, "mse": 0.0, "n": 0}
        if cfg.eval_every and done % cfg.eval_every == 0 and done != total_steps:
            run_eval(done)
        if done % cfg.save_every == 0 or done == total_steps:
            save(done)
    bar.close()
    if start_step < total_steps or resume_dir is None:
        run_eval(total_steps)

    # --- final tensors: this stage's and those carried from earlier stages -----------------
    full = accelerator.get_state_dict(wrapped)
    final_dir = out / "final"
    if is_main:
        keep = sorted(set(carried) | set(names))
        # A stage with music targets taught the LLM to end music replies with [AUD]: the model then decides tasks.
        final_cfg = dataclasses.replace(model_cfg, emits_aud=model_cfg.emits_aud or cfg.loss_weights[1] > 0)
        ckpt.save_final(out, {n: full[n] for n in keep}, final_cfg.to_dict(),
                        {"config": cfg.to_dict(), "steps": total_steps, "samples": seen * accelerator.num_processes,
                         "problems": problems_count})
        plot_losses(train_log.rows(), eval_log.rows(), out / "loss.png", f"{cfg.stage} ({model_cfg.name})")
        board.close()
        if problems_count:
            print(f"{problems_count} of {seen} samples were skipped; reasons in {out / 'data_problems.jsonl'}")
    accelerator.wait_for_everyone()
    return RunResult(output_dir=out, final_dir=final_dir, steps=total_steps, samples=seen * accelerator.num_processes,
                     problems=problems_count, last_loss=last_loss)
