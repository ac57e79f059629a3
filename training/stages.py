"""The three training stages as data: what trains, which losses, which data.

The trainable sets are parameter-group kinds of :meth:`m2ugen.model.M2UGen.parameter_groups`
(adapters, projector, gate, prefix_query, bias, norm, lora, new_tokens). Unlike the original, the
gates train (docs/original.md) and only the 8 new token rows of the embedding train, never the
whole vocabulary. The same names decide what ``requires_grad``, what the optimizer sees and what a
checkpoint stores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from m2ugen.errors import ConfigError


@dataclass(frozen=True)
class StageSpec:
    name: str
    trainable: tuple[str, ...]
    ce_weight: float
    mse_weight: float
    tasks: tuple[str, ...]  # manifest tasks the stage is meant for
    summary: str


STAGES: dict[str, StageSpec] = {
    "stage1": StageSpec(
        name="stage1",
        trainable=("adapters", "gate", "prefix_query", "bias", "norm", "lora", "new_tokens"),
        ce_weight=1.0, mse_weight=0.0, tasks=("caption",),
        summary="encoder side: audio/image/video captions -> text (MUCaps, COCO, MUVideo captions)"),
    "stage2": StageSpec(
        name="stage2",
        trainable=("projector", "new_tokens", "bias", "lora"),
        ce_weight=1.0, mse_weight=1.0, tasks=("generate",),
        summary="decoder side: caption -> caption + [AUD], MSE to the decoder's own conditioning (MUCaps)"),
    "stage3": StageSpec(
        name="stage3",
        trainable=("adapters", "projector", "gate", "lora"),
        ce_weight=1.0, mse_weight=1.0, tasks=("qa", "text", "generate", "edit"),
        summary="instruction tuning: MusicQA, Alpaca, MUImage, MUVideo, MUEdit"),
}

# Stages that train a component from scratch before the M2UGen stages (configs in training/pretrain_config.py).
PRETRAIN_STAGES: dict[str, str] = {
    "tokenizer": "sentencepiece BPE tokenizer trained on the corpus text (captions, answers, ABC scores)",
    "pretrain-lm": "the preset's LLaMA trained from scratch as a language model on that text",
    "pretrain-encoder": "the preset's MERT-architecture encoder trained on rendered clips with their exact labels",
}

# Kinds whose parameters are offsets, scales or rows that must not shrink towards zero.
NO_DECAY_KINDS: tuple[str, ...] = ("bias", "norm", "gate", "prefix_query", "new_tokens")


def named_groups(model: nn.Module) -> dict[str, list[str]]:
    """Parameter names per kind of ``model.parameter_groups()``."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    return {kind: [name_of[id(p)] for p in params] for kind, params in model.parameter_groups().items()}


def trainable_names(model: nn.Module, kinds: Sequence[str]) -> list[str]:
    """Names of the parameters of ``kinds``, in ``named_parameters`` order."""
    groups = named_groups(model)
    unknown = sorted(set(kinds) - set(groups))
    if unknown:
        raise ConfigError(f"trainable: unknown parameter groups {unknown}; known: {sorted(groups)}")
    wanted = {n for kind in kinds for n in groups[kind]}
    return [n for n, _ in model.named_parameters() if n in wanted]


def is_decayed(name: str, param: nn.Parameter, no_decay_names: set[str]) -> bool:
    """Weight decay only on matrices (adapters, LoRA, projector), never on 1-D tensors or ``no_decay_names``."""
    return param.ndim >= 2 and name not in no_decay_names


def optimizer_groups(model: nn.Module, names: Sequence[str], weight_decay: float, lr: float,
                     lr_scales: Mapping[str, float] | None = None) -> list[dict]:
    """AdamW groups over ``names``: decayed matrices and everything else at weight decay 0, each at
    ``lr`` times the ``lr_scales`` of its parameter kind (e.g. ``{gate: 20}``: the zero-initialised
    gates open in a short run on a small model; kinds not named keep ``lr``)."""
    groups = named_groups(model)
    unknown = sorted(set(lr_scales or {}) - set(groups))
    if unknown:
        raise ConfigError(f"lr_scales: unknown parameter groups {unknown}; known: {sorted(groups)}")
    scale_of = {n: float(scale) for kind, scale in (lr_scales or {}).items() for n in groups[kind]}
    no_decay = {n for kind in NO_DECAY_KINDS for n in groups.get(kind, [])}
    params = dict(model.named_parameters())
    out: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for n in names:
        out.setdefault((is_decayed(n, params[n], no_decay), scale_of.get(n, 1.0)), []).append(params[n])
    return [{"params": ps, "weight_decay": weight_decay if decayed else 0.0, "lr": lr * scale}
            for (decayed, scale), ps in sorted(out.items(), key=lambda item: (not item[0][0], item[0][1]))]
