"""``m2ugen-train``: run a training stage, or count what each stage trains.

    m2ugen-train stage1 --config configs/stage1.yaml [--resume] [key=value ...]
    m2ugen-train params --preset paper-musicgen
    m2ugen-train tokenizer|pretrain-lm|pretrain-encoder --config training/configs/mini/pretrain-lm.yaml

Multi-GPU: ``accelerate launch -m training.cli stage1 --config ...`` (see docs/training.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from m2ugen.errors import M2UGenError
from training.stages import PRETRAIN_STAGES, STAGES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m2ugen-train", description="Train M2UGen in three stages.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, spec in STAGES.items():
        p = sub.add_parser(name, help=spec.summary, description=f"{name}: {spec.summary}. Trains "
                           f"{', '.join(spec.trainable)}; loss = {spec.ce_weight} CE + {spec.mse_weight} MSE by default.")
        p.add_argument("--config", help="training config, YAML or JSON (see docs/training.md)")
        p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir")
        p.add_argument("--override-resume-settings", action="store_true",
                       help="with --resume: accept settings that differ from the run's saved ones")
        p.add_argument("overrides", nargs="*", metavar="key=value",
                       help="override config fields, e.g. lr=3e-4 batch_size=8 model_overrides.lora_rank=8")
    for name, summary in PRETRAIN_STAGES.items():
        p = sub.add_parser(name, help=summary, description=f"{name}: {summary} (see docs/training.md).")
        p.add_argument("--config", help="pretraining config, YAML or JSON (e.g. training/configs/mini/)")
        p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir")
        p.add_argument("--override-resume-settings", action="store_true",
                       help="with --resume: accept settings that differ from the run's saved ones")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="override config fields, e.g. max_steps=100")
    p = sub.add_parser("params", help="trainable parameter counts per stage (built on the meta device)")
    p.add_argument("--preset", default="paper-musicgen", help="model preset (default: paper-musicgen)")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "params":
        from training.params import format_counts, stage_counts

        print(format_counts(stage_counts(args.preset), args.preset))
        return 0
    if args.command in PRETRAIN_STAGES:
        from training.pretrain import run_pretrain_stage

        print(run_pretrain_stage(args.command, args.config, args.overrides, args.resume,
                                 args.override_resume_settings))
        return 0
    from training.config import load_config
    from training.loop import run_stage

    cfg = load_config(args.config, args.overrides, stage=args.command)
    result = run_stage(cfg, resume=args.resume, override_resume_settings=args.override_resume_settings)
    print(f"{cfg.stage}: {result.steps} steps, {result.samples} samples ({result.problems} skipped), "
          f"last loss {result.last_loss:.4f}; trained tensors in {result.final_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and (args.command == "params" or any("=" not in item or item.startswith("-") for item in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:  # key=value overrides given after an option such as --resume
        args.overrides = [*args.overrides, *extra]
    try:
        return _run(args)
    except M2UGenError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
