"""Entry point of the pretraining stages: ``m2ugen-train tokenizer | pretrain-lm | pretrain-encoder``."""

from __future__ import annotations

from m2ugen.errors import ConfigError
from training.pretrain_config import load_pretrain_config


def run_pretrain_stage(stage: str, config: str | None, overrides: list[str], resume: bool,
                       override_resume_settings: bool = False) -> str:
    """Run pretraining ``stage`` from a config file and overrides; returns the one-line summary."""
    cfg = load_pretrain_config(stage, config, overrides)
    if stage == "tokenizer":
        from training.tokenizer_stage import run_tokenizer

        if resume:
            raise ConfigError("tokenizer: --resume does not apply (training takes seconds); run it again")
        got = run_tokenizer(cfg)
        return (f"tokenizer: {got.vocab_size} pieces from {got.texts} texts, {got.chars_per_token:.2f} characters "
                f"per token; written to {got.output_dir}")
    from training.pretrain_loop import run_pretrain

    if stage == "pretrain-lm":
        from training.pretrain_lm import LMTask as task
    else:
        from training.pretrain_encoder import EncoderTask as task
    result = run_pretrain(cfg, task, resume=resume, override_resume_settings=override_resume_settings)
    val = ", ".join(f"{k} {v:.4f}" for k, v in result.val.items())
    return (f"{stage}: {result.steps} steps, {result.samples} samples, last loss {result.last_loss:.4f}"
            f"{f'; validation {val}' if val else ''}; model in {result.final_dir}")
