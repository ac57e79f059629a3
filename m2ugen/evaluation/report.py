"""Writing evaluation results: ``scores.json`` (every per-example score), ``report.md``, ``report.html``
and one bar chart per task (``plots/<task>.png``: each metric beside its chance level and control).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from m2ugen.files import write_atomically

TASK_TITLES = {
    "caption": "Music captioning", "qa": "Music question answering", "generate": "Text → music",
    "edit": "Music editing", "transcribe": "Transcription", "score": "Writing scores (ABC)",
    "score_edit": "Editing scores (ABC)",
}
# Metrics whose values are not in [0, 1] are not drawn on the shared 0..1 axis of the plots.
UNBOUNDED = ("bleu", "fad_", "kl")


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _rows(metrics: dict[str, dict[str, Any]]) -> list[list[str]]:
    return [[name, _format(m.get("value")), _format(m.get("chance")), _format(m.get("control")), str(m.get("n", ""))]
            for name, m in sorted(metrics.items())]


HEADER = ["metric", "value", "chance", "control", "n"]


def markdown(results, *, title: str, context: list[str], plots: dict[str, str]) -> str:
    """The report as Markdown: a context list, then one table (and plot) per task."""
    lines = [f"# {title}", ""] + [f"- {line}" for line in context] + [""]
    for task, metrics in results.summary.items():
        lines += [f"## {TASK_TITLES.get(task, task)}", "", "| " + " | ".join(HEADER) + " |",
                  "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(row) + " |" for row in _rows(metrics)]
        if task in plots:
            lines += ["", f"![{task}]({plots[task]})"]
        lines.append("")
    if results.notes:
        lines += ["## Not computed", ""] + [f"- {note}" for note in sorted(set(results.notes))] + [""]
    return "\n".join(lines)


def html_page(results, *, title: str, context: list[str], plots: dict[str, str]) -> str:
    """The same report as a standalone HTML page."""
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #aaa;padding:2px 8px;text-align:right}td:first-child{text-align:left}</style>",
             f"</head><body><h1>{esc(title)}</h1><ul>"]
    parts += [f"<li>{esc(line)}</li>" for line in context]
    parts.append("</ul>")
    for task, metrics in results.summary.items():
        parts.append(f"<h2>{esc(TASK_TITLES.get(task, task))}</h2><table><tr>")
        parts += [f"<th>{esc(h)}</th>" for h in HEADER]
        parts.append("</tr>")
        for row in _rows(metrics):
            parts.append("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>")
        parts.append("</table>")
        if task in plots:
            parts.append(f"<p><img src='{esc(plots[task])}' alt='{esc(task)}'></p>")
    if results.notes:
        parts.append("<h2>Not computed</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in sorted(set(results.notes)))
                     + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def plot_task(metrics: dict[str, dict[str, Any]], title: str, path: Path) -> bool:
    """Bar chart of the [0, 1] metrics of one task with chance (dashes) and control (dots); False if none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in sorted(metrics) if not n.startswith(UNBOUNDED) and metrics[n].get("value") is not None
             and 0.0 <= metrics[n]["value"] <= 1.0]
    if not names:
        return False
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(names) + 1.5), 3.2))
    xs = range(len(names))
    ax.bar(xs, [metrics[n]["value"] for n in names], color="#4c72b0", label="model")
    for marker, field, colour in (("_", "chance", "#c44e52"), ("o", "control", "#55a868")):
        points = [(x, metrics[n][field]) for x, n in zip(xs, names) if metrics[n].get(field) is not None]
        if points:
            ax.scatter(*zip(*points), marker=marker, s=200 if marker == "_" else 30, color=colour, label=field,
                       zorder=3)
    ax.set_xticks(list(xs), names, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), "plot")
    plt.close(fig)
    return True


def write_report(results, out_dir: str | Path, *, title: str, context: list[str]) -> dict[str, Path]:
    """Write scores.json, report.md, report.html and plots/ into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    plots = {}
    for task, metrics in results.summary.items():
        if plot_task(metrics, TASK_TITLES.get(task, task), out / "plots" / f"{task}.png"):
            plots[task] = f"plots/{task}.png"
    data = {"title": title, "model": results.model, "context": context, "summary": results.summary,
            "notes": sorted(set(results.notes)), "examples": results.records}
    paths = {"json": out / "scores.json", "markdown": out / "report.md", "html": out / "report.html"}
    write_atomically(paths["json"], lambda tmp: tmp.write_text(json.dumps(data, indent=1, default=str)), "scores")
    write_atomically(paths["markdown"], lambda tmp: tmp.write_text(markdown(results, title=title, context=context,
                                                                            plots=plots)), "report")
    write_atomically(paths["html"], lambda tmp: tmp.write_text(html_page(results, title=title, context=context,
                                                                         plots=plots)), "report")
    return paths
