"""Trainable parameter counts per stage and memory estimates, computed on the meta device (no weights, no RAM).

The paper-size components are described by their published configs (LLaMA-2-7B, MERT-v1-330M,
ViT-B/16, ViViT-B 16x2), so the counts need no checkpoint on disk.
"""

from __future__ import annotations

import dataclasses

import torch

from m2ugen.config import M2UGenConfig
from m2ugen.encoders import ImageEncoder, MusicEncoder, VideoEncoder
from m2ugen.llm import M2UGenLLM
from m2ugen.model import M2UGen
from training.stages import STAGES, named_groups

# Published architecture configs (config.json of each published checkpoint).
LLAMA2_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
                 rope_theta=10000.0, bos_token_id=1, eos_token_id=2)
MERT_330M = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                 conv_dim=[512] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2],
                 conv_bias=True, feat_extract_norm="layer", do_stable_layer_norm=True,
                 num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16)
VIT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                image_size=224, patch_size=16)
VIVIT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                  image_size=224, num_frames=32, tubelet_size=[2, 16, 16])

# Bytes per parameter: frozen weights in bf16; a trained one in fp32 with its gradient and AdamW's two moments.
FROZEN_BYTES = 2
TRAINED_BYTES = 4 + 4 + 8


def meta_model(preset: str) -> M2UGen:
    """The network of ``preset`` at full size on the meta device (component paths replaced by configs)."""
    cfg = M2UGenConfig.preset(preset)
    if cfg.llm_path is not None:
        cfg = dataclasses.replace(cfg, llm_path=None, llm_config=LLAMA2_7B, mert_path=None, mert_config=MERT_330M,
                                  vit_path=None, vit_config=VIT_BASE, vivit_path=None, vivit_config=VIVIT_BASE)
    with torch.device("meta"):
        llm = M2UGenLLM.from_config(cfg)
        music = MusicEncoder.from_config(cfg.mert_config)
        image = ImageEncoder.from_config(cfg.vit_config)
        video = VideoEncoder.from_config(cfg.vivit_config)
        return M2UGen(cfg, None, llm, music, image, video)


def stage_counts(preset: str) -> dict[str, dict[str, int]]:
    """{stage: {kind: count, ..., "total": trainable, "all": every parameter}}."""
    model = meta_model(preset)
    sizes = dict((n, p.numel()) for n, p in model.named_parameters())
    groups = named_groups(model)
    result = {}
    for name, spec in STAGES.items():
        counts = {kind: sum(sizes[n] for n in groups[kind]) for kind in spec.trainable}
        counts["total"] = sum(counts.values())
        counts["all"] = sum(sizes.values())
        result[name] = counts
    return result


def activation_bytes(preset: str, batch: int, tokens: int, checkpointing: bool) -> int:
    """Rough LLM activation memory of one bf16 training micro-batch (Korthikanti et al. 2022, SDPA attention).

    Without checkpointing each layer keeps about ``34 * B * T * D`` bytes; with it, each layer keeps
    its bf16 input (``2 * B * T * D``) and one layer is live at a time during recomputation.
    """
    llm = M2UGenConfig.preset(preset).llm_config or LLAMA2_7B
    hidden, layers = llm["hidden_size"], llm["num_hidden_layers"]
    per_layer = 34 * batch * tokens * hidden
    logits = batch * tokens * (llm["vocab_size"] + 8) * 4 * 2  # fp32 logits and their gradient
    if checkpointing:
        return layers * 2 * batch * tokens * hidden + per_layer + logits
    return layers * per_layer + logits


def _amount(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 100_000 else f"{n:,}"


def format_counts(counts: dict[str, dict[str, int]], preset: str, batch: int = 4, tokens: int = 512) -> str:
    """A Markdown table of the counts and of the training memory (weights + grads + AdamW + activations)."""
    lines = [f"Trainable parameters per stage, preset {preset!r} (meta device)", "",
             "| stage | trainable kinds | trainable | of all | memory, weights+optimizer | "
             f"+ activations B={batch} T={tokens} (no ckpt / ckpt) |",
             "|---|---|---:|---:|---:|---:|"]
    gib = 2**30
    for stage, c in counts.items():
        kinds = ", ".join(f"{k} {_amount(v)}" for k, v in c.items() if k not in ("total", "all"))
        static = (c["all"] - c["total"]) * FROZEN_BYTES + c["total"] * TRAINED_BYTES
        act = [activation_bytes(preset, batch, tokens, ck) for ck in (False, True)]
        lines.append(f"| {stage} | {kinds} | {c['total']:,} | {c['total'] / c['all']:.2%} | "
                     f"{static / gib:.1f} GiB | {(static + act[0]) / gib:.1f} / {(static + act[1]) / gib:.1f} GiB |")
    any_counts = next(iter(counts.values()))
    lines += ["", f"All parameters of the network without the music decoder: {any_counts['all']:,}"]
    return "\n".join(lines)
