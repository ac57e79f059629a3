"""End-of-build summary: counts, durations, tempos, failure reasons, and a histogram PNG.

Computed from what is on disk (the manifest and failures of this shard), so it covers every run
of a resumed build, not just the last one.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from datasets_build.engine import BuildReport, ShardFiles
from datasets_build.manifest import load_index


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    array = np.asarray(values, dtype=np.float64)
    return {
        "count": int(array.size),
        "total": round(float(array.sum()), 3),
        "mean": round(float(array.mean()), 3),
        "min": round(float(array.min()), 3),
        "max": round(float(array.max()), 3),
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _histograms(path: Path, title: str, series: dict[str, list[float]]) -> None:
    from matplotlib.figure import Figure

    panels = {name: values for name, values in series.items() if values}
    figure = Figure(figsize=(5 * max(1, len(panels)), 3.5))
    axes = figure.subplots(1, max(1, len(panels)), squeeze=False)
    for axis, (name, values) in zip(axes[0], panels.items()):
        axis.hist(values, bins=min(40, max(5, len(values) // 2)), color="#4477aa")
        axis.set_xlabel(name)
        axis.set_ylabel("items")
    if not panels:
        axes[0][0].text(0.5, 0.5, "no items yet", ha="center", va="center")
        axes[0][0].set_axis_off()
    figure.suptitle(title)
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(tmp, dpi=80)
    os.replace(tmp, path)


def write_summary(files: ShardFiles, report: BuildReport, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Summarise a shard's manifest and failures into ``<name>_summary.json`` and ``.png``; return the summary.

    Durations come from ``meta.duration_s`` and tempos from ``meta.tempo_bpm`` of each record.
    """
    records = list(load_index(files.manifest).values())
    failures = load_index(files.failures)
    done = set(load_index(files.manifest))
    still_failed = {key: entry for key, entry in failures.items() if key not in done}
    durations = [float(r["meta"]["duration_s"]) for r in records if r.get("meta", {}).get("duration_s") is not None]
    tempos = [float(r["meta"]["tempo_bpm"]) for r in records if r.get("meta", {}).get("tempo_bpm")]
    reasons = Counter(entry["reason"] for entry in still_failed.values())
    summary: dict[str, Any] = {
        "dataset": files.name,
        "manifest": str(files.manifest),
        "items_in_shard": report.items_in_shard,
        "records": len(records),
        "failures": len(still_failed),
        "failures_by_stage": dict(Counter(entry["stage"] for entry in still_failed.values())),
        "top_failure_reasons": [{"reason": reason, "count": count} for reason, count in reasons.most_common(10)],
        "this_run": {
            "done_before": report.done_before,
            "written": report.written,
            "failed": report.failed,
            "skipped": report.skipped,
            "seconds": round(report.seconds, 2),
        },
        "duration_s": _stats(durations),
        "duration_hours": round(sum(durations) / 3600.0, 4),
        "tempo_bpm": _stats(tempos),
        "histogram_png": str(files.summary_png),
        **(extra or {}),
    }
    _histograms(files.summary_png, f"{files.name}{files.suffix}: {len(records)} records", {"duration (s)": durations, "tempo (BPM)": tempos})
    _write_json(files.summary_json, summary)
    return summary
