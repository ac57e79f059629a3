"""MusicGen trained with audiocraft (``state_dict.bin`` + ``compression_state_dict.bin``) -> transformers.

audiocraft stores the language model (``best_state``) with fused attention projections; its T5 text
encoder is not stored (it stays the pretrained T5), and an exported compression state usually only
names the pretrained EnCodec (``{'pretrained': 'facebook/encodec_32khz'}``). So a local transformers
MusicGen directory of the same size is the *reference*: its config, processor, T5 and EnCodec are
kept, and its decoder and ``enc_to_dec_proj`` are replaced by the fine-tuned LM.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
from safetensors import safe_open

from m2ugen.checkpoints import check_keys, check_shapes, load_torch_file
from m2ugen.convert.shards import ShardWriter
from m2ugen.errors import CheckpointError

_DEC = "decoder.model.decoder."
_LAYER = re.compile(r"transformer\.layers\.(\d+)\.(.+)")
_LAYER_PARTS = {"self_attn.out_proj.weight": "self_attn.out_proj.weight",
                "cross_attention.out_proj.weight": "encoder_attn.out_proj.weight",
                "norm1.weight": "self_attn_layer_norm.weight", "norm1.bias": "self_attn_layer_norm.bias",
                "norm_cross.weight": "encoder_attn_layer_norm.weight",
                "norm_cross.bias": "encoder_attn_layer_norm.bias",
                "norm2.weight": "final_layer_norm.weight", "norm2.bias": "final_layer_norm.bias",
                "linear1.weight": "fc1.weight", "linear2.weight": "fc2.weight"}
_FUSED = {"self_attn.in_proj_weight": "self_attn", "cross_attention.in_proj_weight": "encoder_attn"}


def map_lm_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """audiocraft LM keys -> ``MusicgenForConditionalGeneration`` keys (unknown keys raise)."""
    out, unknown = {}, []
    for key, value in state.items():
        m = _LAYER.fullmatch(key)
        if m:
            prefix, part = f"{_DEC}layers.{m.group(1)}.", m.group(2)
            if part in _FUSED:
                for name, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                    out[f"{prefix}{_FUSED[part]}.{name}.weight"] = chunk
            elif part in _LAYER_PARTS:
                out[prefix + _LAYER_PARTS[part]] = value
            else:
                unknown.append(key)
        elif (m := re.fullmatch(r"emb\.(\d+)\.weight", key)):
            out[f"{_DEC}embed_tokens.{m.group(1)}.weight"] = value
        elif (m := re.fullmatch(r"linears\.(\d+)\.weight", key)):
            out[f"decoder.lm_heads.{m.group(1)}.weight"] = value
        elif key.startswith("out_norm."):
            out[f"{_DEC}layer_norm.{key.removeprefix('out_norm.')}"] = value
        elif key.startswith("condition_provider.conditioners.description.output_proj."):
            out["enc_to_dec_proj." + key.rsplit(".", 1)[1]] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"audiocraft MusicGen: {len(unknown)} keys with no transformers counterpart "
                              f"(melody and other conditioners are not supported): {', '.join(sorted(unknown)[:10])}")
    return out


def _reference_tensors(ref: Path) -> dict[str, torch.Tensor]:
    files = sorted(ref.glob("*.safetensors"))
    if not (ref / "config.json").is_file() or not files:
        raise CheckpointError(f"{ref}: not a transformers MusicGen directory with safetensors weights")
    tensors = {}
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            tensors.update({k: handle.get_tensor(k) for k in handle.keys()})
    return tensors


def _best_state(path: Path) -> dict:
    obj = load_torch_file(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected an audiocraft checkpoint dict")
    return obj


def convert_audiocraft_musicgen(lm_path: str | Path, compression_path: str | Path | None, reference: str | Path,
                                out: str | Path, max_shard_bytes: int = 2 << 30) -> list[str]:
    """Write a transformers MusicGen directory ``out``; returns notes for the user."""
    lm_path, ref, out = Path(lm_path), Path(reference), Path(out)
    pkg = _best_state(lm_path)
    state = pkg.get("best_state", pkg)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{lm_path}: no 'best_state' dict of tensors (an audiocraft state_dict.bin)")
    notes = []
    if compression_path is not None:
        comp = _best_state(Path(compression_path))
        if "best_state" in comp:
            raise CheckpointError(f"{compression_path}: holds audiocraft-trained EnCodec weights; only the "
                                  "pretrained EnCodec (an exported {'pretrained': ...} reference) is supported")
        notes.append(f"compression model {comp.get('pretrained', '?')!r}: using the EnCodec of {ref}")
    converted = map_lm_state(state)
    tensors = _reference_tensors(ref)
    replaced = {k for k in tensors if k.startswith(("decoder.", "enc_to_dec_proj."))}
    check_keys(f"{lm_path} (as transformers MusicGen decoder)", converted, replaced)
    check_shapes(str(lm_path), {k: tuple(v.shape) for k, v in converted.items()},
                 {k: tuple(tensors[k].shape) for k in replaced})
    out.mkdir(parents=True, exist_ok=True)
    for f in ref.iterdir():
        if f.is_file() and not f.name.endswith((".safetensors", ".safetensors.index.json", ".bin", ".pth")):
            shutil.copyfile(f, out / f.name)
    with ShardWriter(out, max_shard_bytes) as writer:
        for key, value in tensors.items():
            writer.add(key, converted[key].to(value.dtype) if key in converted else value)
    if isinstance(pkg.get("xp.cfg"), str):
        (out / "audiocraft_config.yaml").write_text(pkg["xp.cfg"])
    notes.append(f"wrote {out}: {len(converted)} decoder tensors from {lm_path}")
    return notes
