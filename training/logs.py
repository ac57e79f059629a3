"""Training logs: ``log.csv`` / ``eval.csv`` (plus TensorBoard events when installed) and ``loss.png``."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TRAIN_COLUMNS: tuple[str, ...] = ("step", "epoch", "lr", "loss", "ce", "mse", "grad_norm", "samples", "problems",
                                  "elapsed_s")
EVAL_COLUMNS: tuple[str, ...] = ("step", "ce", "mse", "samples")


class CsvLog:
    """Append rows to a CSV file; on resume, rows after the resumed step (a killed run's) are dropped."""

    def __init__(self, path: Path, columns: Sequence[str], resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        kept = [r for r in self.rows() if resume_step is not None and int(r["step"]) <= resume_step]
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(kept)

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as handle:
            return list(csv.DictReader(handle))

    def append(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.columns).writerow({k: row.get(k, "") for k in self.columns})


class TensorBoard:
    """TensorBoard scalars if ``tensorboard`` is installed, otherwise nothing."""

    def __init__(self, log_dir: Path, resume_step: int | None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.writer = None
            return
        self.writer = SummaryWriter(str(log_dir), purge_step=resume_step)

    def scalars(self, prefix: str, step: int, values: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            self.writer.add_scalar(f"{prefix}/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def plot_losses(train_rows: list[dict[str, str]], eval_rows: list[dict[str, str]], path: Path, title: str,
                train_keys: Sequence[str] = ("loss", "ce", "mse"), eval_keys: Sequence[str] = ("ce", "mse")) -> None:
    """Loss curves (``train_keys`` per step, lines; ``eval_keys`` of the evaluations, markers) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [int(r["step"]) for r in train_rows]
    for i, key in enumerate(train_keys):
        values = [float(r[key]) for r in train_rows]
        if any(values):
            ax.plot(steps, values, ("-", "--", ":", "-.")[min(i, 3)], label=f"train {key}")
    for i, key in enumerate(eval_keys):
        values = [float(r[key]) for r in eval_rows]
        if any(values):
            ax.plot([int(r["step"]) for r in eval_rows], values, "osD^v<>"[i % 7], label=f"val {key}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def drop_jsonl_after(path: Path, step: int) -> None:
    """Keep only the lines of a JSONL log whose ``step`` (if any) is below ``step``: a killed run's tail goes."""
    path = Path(path)
    if not path.is_file():
        return
    lines = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
             if line.endswith("\n") and json.loads(line).get("step", -1) < step]
    path.write_text("".join(lines), encoding="utf-8")


def append_jsonl(path: Path, objects: Sequence[dict[str, Any]]) -> None:
    if not objects:
        return
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(o, ensure_ascii=False) + "\n" for o in objects)
