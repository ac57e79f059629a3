"""``m2ugen-eval``: evaluate a model on a corpus ``clips.jsonl`` or a training manifest and write a report.

``m2ugen-eval --demo`` runs everything on the demo model (the bundled m2ugen-mini; without the bundle,
the tiny random model), with tiny random scoring models and a four-tune demo corpus unless others are
given: the scoring models' numbers are at chance, and the run shows the whole pipeline in a few minutes
on two CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from m2ugen.errors import M2UGenError
from m2ugen.evaluation.examples import TASKS
from m2ugen.evaluation.runner import MODEL_KINDS

EXAMPLES = {"clap": "laion/clap-htsat-unfused", "encodec": "facebook/encodec_24khz",
            "tagger": "an AudioSet AST such as MIT/ast-finetuned-audioset-10-10-0.4593", "bertscore": "roberta-large"}


def _names(text: str, allowed: Sequence[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {unknown}; choose from {', '.join(allowed)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m2ugen-eval", description="Evaluate a model on a corpus clips.jsonl or "
                                     "a training manifest and write scores.json, report.md, report.html and plots.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", metavar="DIR", help="checkpoint directory to evaluate")
    which.add_argument("--demo", action="store_true",
                       help="the demo model, the bundled m2ugen-mini (without it, the tiny random model); tiny "
                            "random scoring models and the demo corpus if not given")
    parser.add_argument("--manifest", metavar="FILE", help="clips.jsonl of a corpus build, or a training manifest")
    parser.add_argument("--split", default="test", help="corpus split to evaluate (default test; 'all' for every clip)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most this many clips/records")
    parser.add_argument("--tasks", type=lambda t: _names(t, TASKS, "task"), default=list(TASKS),
                        help=f"comma-separated subset of {','.join(TASKS)} (default all)")
    for kind in MODEL_KINDS:
        parser.add_argument(f"--{kind}", metavar="DIR", help=f"local {kind} model folder (e.g. {EXAMPLES[kind]})")
    parser.add_argument("--skip", type=lambda t: _names(t, MODEL_KINDS, "scoring model"), default=[],
                        help="scoring models not to use, comma-separated; their metrics are reported as not computed")
    parser.add_argument("--seconds", type=float, default=None,
                        help="music length (default: the reference clip's; with --demo 1 s)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="longest text answer in tokens (default 256; 48 with the tiny random model)")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling and of the controls (default 0)")
    parser.add_argument("--device", default=None, help="torch device for --model (default cpu)")
    parser.add_argument("-o", "--out", metavar="DIR", help="report folder (default: out/eval-demo with --demo)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")
    return parser


def run(args: argparse.Namespace) -> int:
    from m2ugen.evaluation.api import run_evaluation

    if args.limit is not None and args.limit < 1:
        raise M2UGenError(f"--limit must be at least 1, got {args.limit}")
    if args.out is None and not args.demo:
        raise M2UGenError("give the report folder with -o/--out DIR")
    out = Path(args.out or "out/eval-demo")
    dirs = {kind: getattr(args, kind) for kind in MODEL_KINDS}
    manifest = args.manifest
    context = []
    if args.demo:
        from m2ugen.evaluation.demo_data import write_demo_corpus
        from m2ugen.evaluation.tiny import write_tiny_models

        tiny = [kind for kind in MODEL_KINDS if dirs[kind] is None]
        if tiny:
            written = write_tiny_models(out / "tiny-scoring-models")
            dirs.update({kind: written[kind] for kind in tiny})
            context.append(f"untrained, random scoring models (their scores mean nothing): {', '.join(tiny)}")
        if manifest is None:
            manifest = write_demo_corpus(out / "demo-corpus")
            context.append("data: the four-tune demo corpus (m2ugen/evaluation/demo_data.py)")
    if manifest is None:
        raise M2UGenError("give the examples with --manifest FILE (a clips.jsonl or a training manifest)")
    if not args.demo:
        for kind in MODEL_KINDS:  # fail before loading the model
            if kind not in args.skip:
                from m2ugen.evaluation.weights import require_model_dir

                require_model_dir(dirs[kind], what=f"{kind} model", option=f"--{kind}", example=EXAMPLES[kind])
    def load_assistant():
        from m2ugen.assistant import Assistant

        print("loading the model ...", file=sys.stderr, flush=True)
        if args.demo:
            return Assistant.demo()
        return Assistant.from_pretrained(args.model, device=args.device)

    from m2ugen.assistant import bundled_mini

    random_model = args.demo and bundled_mini() is None
    name = ("tiny random demo model (untrained)" if random_model else "bundled m2ugen-mini" if args.demo
            else str(args.model))
    seconds = 1.0 if args.demo and args.seconds is None else args.seconds
    max_new_tokens = args.max_new_tokens or (48 if random_model else 256)
    _, paths = run_evaluation(manifest, out, assistant=load_assistant, model_dirs=dirs, model_name=name, tasks=args.tasks,
                              split=None if args.split == "all" else args.split, limit=args.limit, skip=args.skip,
                              seconds=seconds, seed=args.seed, chat_settings={"max_new_tokens": max_new_tokens},
                              overwrite=args.overwrite, context=context)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from m2ugen.cli import run_command

    args = build_parser().parse_args(argv)
    return run_command(run, args)


if __name__ == "__main__":
    sys.exit(main())
