"""The evaluation in one call: read examples, load the scoring models, run the model, write the report."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from m2ugen.errors import ConfigError
from m2ugen.evaluation.examples import TASKS, read_examples
from m2ugen.evaluation.report import write_report
from m2ugen.evaluation.runner import EvalModels, Results, evaluate


def run_evaluation(
    manifest: str | Path,
    out_dir: str | Path,
    *,
    assistant: Any,
    model_dirs: dict[str, str | Path | None],
    model_name: str,
    tasks: Sequence[str] = TASKS,
    split: str | None = "test",
    limit: int | None = None,
    skip: Sequence[str] = (),
    seconds: float | None = None,
    seed: int = 0,
    chat_settings: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    context: Sequence[str] = (),
) -> tuple[Results, dict[str, Path]]:
    """Evaluate ``assistant`` on the examples of ``manifest`` and write the report into ``out_dir``.

    Args:
        manifest: a corpus ``clips.jsonl`` or a training manifest (``docs/manifests.md``).
        assistant: an :class:`~m2ugen.assistant.Assistant`, or a function returning one: it is called
            once the examples and scoring models have loaded, so bad input fails before a large model loads.
        model_dirs: local folders of the scoring models, keys ``clap``, ``encodec``, ``tagger``, ``bertscore``.
        skip: scoring models not to use (their metrics are listed as not computed).
        chat_settings: other :class:`~m2ugen.assistant.ChatSettings` fields (temperature, max_new_tokens, ...).
        context: extra lines for the report's header.

    Returns:
        The results and the paths of ``scores.json``, ``report.md`` and ``report.html``.

    Raises:
        ConfigError: ``out_dir`` already holds a report and ``overwrite`` is False.
        DataError: the manifest is unreadable or has no examples for ``tasks``.
        WeightsMissingError: a scoring model that is needed and not skipped has no local folder.
    """
    out = Path(out_dir)
    if (out / "scores.json").exists() and not overwrite:
        raise ConfigError(f"{out} already holds an evaluation (scores.json); choose another folder or --overwrite")
    examples = read_examples(manifest, split=split, tasks=tasks, limit=limit)
    present = sorted({ex.task for ex in examples})
    models = EvalModels.load(model_dirs, tasks=present, skip=skip)
    if not hasattr(assistant, "chat"):
        assistant = assistant()
    results = evaluate(assistant, examples, models=models, out_dir=out, seconds=seconds, seed=seed,
                       progress=progress, model_name=model_name, chat_settings=chat_settings)
    lines = [f"model: {model_name}", f"examples: {len(examples)} from {manifest} (split {split or 'all'})",
             "scoring models: " + ", ".join(f"{k} = {v}" for k, v in model_dirs.items() if v and k not in skip),
             f"seed {seed}; written {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
             "chance: 1 / number of distinct labels; control: see docs/evaluation.md for each metric", *context]
    return results, write_report(results, out, title=f"m2ugen evaluation: {model_name}", context=lines)
