"""What a corpus build holds: counts per label, hours of audio, failures; as JSON, a Markdown table and a plot.

Computed from the build folder (every shard, every run), so it describes the whole corpus so far.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from datasets_build.engine import BuildReport, ShardFiles
from datasets_build.manifest import load_index
from m2ugen.files import write_atomically

SUMMARY_LABELS: tuple[str, ...] = ("split", "collection", "family", "key", "meter", "style", "n_parts", "soundfont")


def label_counts(rows: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    """Clips per value of each label of :data:`SUMMARY_LABELS` (family counts every part)."""
    counts: dict[str, Counter[str]] = {name: Counter() for name in SUMMARY_LABELS}
    for row in rows:
        counts["split"][row["split"]] += 1
        counts["collection"][row["collection"]] += 1
        counts["family"].update(inst["family"] for inst in row["instruments"])
        counts["key"][f"{row['key']['tonic']} {row['key']['mode']}"] += 1
        counts["meter"][row["meter"]] += 1
        counts["style"][row["style"] or "(none)"] += 1
        counts["n_parts"][str(row["n_parts"])] += 1
        counts["soundfont"][row["soundfont"]] += 1
    return counts


def _markdown(summary: dict[str, Any], counts: dict[str, Counter[str]]) -> str:
    lines = [f"# Corpus build: {summary['clips']} clips, {summary['works']} works, {summary['audio_hours']} h of audio",
             "", f"Failures: {summary['failures']} ({json.dumps(summary['failures_by_stage'])}).", ""]
    for name, counter in counts.items():
        lines += [f"## {name}", "", "| value | clips |", "|---|---|"]
        lines += [f"| {value} | {count} |" for value, count in counter.most_common(25)]
        if len(counter) > 25:
            lines.append(f"| ({len(counter) - 25} more) | {sum(c for _, c in counter.most_common()[25:])} |")
        lines.append("")
    return "\n".join(lines)


def _plot(path: Path, counts: dict[str, Counter[str]], durations: list[float]) -> None:
    from matplotlib.figure import Figure

    panels = ["family", "key", "meter", "style", "collection"]
    figure = Figure(figsize=(18, 9))
    axes = figure.subplots(2, 3)
    for axis, name in zip(axes.flat, panels):
        top = counts[name].most_common(15)
        axis.barh([str(v) for v, _ in top][::-1], [c for _, c in top][::-1], color="#4477aa")
        axis.set_title(f"clips per {name}")
    axes.flat[-1].hist(durations or [0.0], bins=30, color="#4477aa")
    axes.flat[-1].set_title("clip duration (s)")
    figure.tight_layout()
    write_atomically(path, lambda tmp: figure.savefig(tmp, dpi=70, format="png"), "summary plot")


def write_corpus_summary(out_dir: Path, files: ShardFiles, report: BuildReport, manifests: dict[str, int],
                         rows: list[dict[str, Any]], stages: Counter[str]) -> dict[str, Any]:
    """Write ``corpus_summary.json``, ``corpus_summary.md`` and ``corpus_summary.png``; return the summary.

    ``rows`` are the build's clip rows, ``stages`` its standing failures by stage.
    """
    out_dir = Path(out_dir)
    counts = label_counts(rows)
    reasons: Counter[str] = Counter()
    done = {row["id"] for row in rows}
    for path in sorted(out_dir.glob("clips_failures*.jsonl")):
        reasons.update(e["reason"][:160] for key, e in load_index(path).items() if key not in done)
    durations = [float(row["duration"]) for row in rows]
    summary: dict[str, Any] = {
        "dataset": "corpus", "clips": len(rows), "works": len({row["work_id"] for row in rows}),
        "audio_hours": round(sum(durations) / 3600.0, 3),
        "disk_gb": round(sum(f.stat().st_size for f in (out_dir / "clips").rglob("*") if f.is_file()) / 1e9, 3)
        if (out_dir / "clips").is_dir() else 0.0,
        "failures": sum(stages.values()), "failures_by_stage": dict(stages),
        "top_failure_reasons": [{"reason": r, "count": c} for r, c in reasons.most_common(10)],
        "this_run": {"items_in_shard": report.items_in_shard, "done_before": report.done_before,
                     "written": report.written, "failed": report.failed, "seconds": round(report.seconds, 2)},
        "counts": {name: dict(counter.most_common()) for name, counter in counts.items()},
        "manifests": manifests, "clips_manifest": str(files.manifest),
        "table": str(out_dir / "corpus_summary.md"), "plot": str(out_dir / "corpus_summary.png"),
    }
    write_atomically(out_dir / "corpus_summary.md", lambda tmp: tmp.write_text(_markdown(summary, counts), encoding="utf-8"),
                     "summary table")
    _plot(out_dir / "corpus_summary.png", counts, durations)
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    write_atomically(out_dir / "corpus_summary.json", lambda tmp: tmp.write_text(text, encoding="utf-8"), "summary")
    return summary
