"""Released M2UGen ``checkpoint.pth`` -> an m2ugen checkpoint directory.

The released file is the whole original ``M2UGen.state_dict()`` (docs/original.md). It is
memory-mapped, and every key is mapped:

- ``llama.*`` (Meta names): frozen weights -> ``llama/`` (a Hugging Face LLaMA directory, q/k rows
  permuted); biases (wq, wo, w1, w2, w3), norms, LoRA (``l1`` -> ``lora_A``, ``l2`` -> ``lora_B``, q/k
  up-matrices and the q bias permuted), gates of the injected layers, [AUD] rows -> ``model.safetensors``;
- ``mu_mert_*`` / ``iu_vit_*`` / ``iu_vivit_*``, ``prefix_query``, ``output_projector.*`` -> ``model.safetensors``;
- ``mert_model.*``, ``vit_model.*``, ``vivit_model.*`` -> ``mert/``, ``vit/``, ``vivit/``;
- ``generation_model.*`` (MusicGen builds) -> ``musicgen/`` (config and processor copied from a local
  transformers MusicGen directory of the same size).

The original adds no scaling to LoRA, so ``lora_alpha = rank``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import (HubertConfig, HubertModel, LlamaForCausalLM, MusicgenForConditionalGeneration, ViTConfig,
                          ViTImageProcessorPil, ViTModel, VivitConfig, VivitImageProcessor, VivitModel)

from adapters import ModalityAdapter
from m2ugen.checkpoints import CONFIG_NAME, WEIGHTS_NAME, check_keys, check_shapes, load_torch_file, write_weights
from m2ugen.config import MODALITIES, M2UGenConfig, ProjectorConfig
from m2ugen.convert.llama import LAYER_NAMES, find_tokenizer_model, llama_config, permute_rows, write_tokenizer
from m2ugen.convert.shards import ShardWriter
from m2ugen.encoders import _MERT_ONLY_KEYS
from m2ugen.errors import CheckpointError
from m2ugen.llm import M2UGenLLM, gate_report
from m2ugen.projector import OutputProjector
from m2ugen.tokenizer import load_tokenizer

# Original adapter prefix -> our modality.
ADAPTER_PREFIXES = {"mu_mert": "audio", "iu_vit": "image", "iu_vivit": "video"}
_ADAPTER_KEY = re.compile(r"(mu_mert|iu_vit|iu_vivit)_(agg|proj|norm_(\d+)|f([123])_(\d+))\.(weight|bias)")
_LAYER_KEY = re.compile(r"llama\.layers\.(\d+)\.(.+)")
_LORA_KEY = re.compile(r"(attention|feed_forward)\.lora_(w[qkvo123])_l([12])\.weight")
_LORA_TARGET = {"wq": "self_attn.q_proj", "wk": "self_attn.k_proj", "wv": "self_attn.v_proj",
                "wo": "self_attn.o_proj", "w1": "mlp.gate_proj", "w2": "mlp.down_proj", "w3": "mlp.up_proj"}
_BIASED = {"attention.wq", "attention.wo", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"}

# Architectures of the paper's frozen encoders, used when no local directory is given
# (the published config.json files).
PAPER_MERT = dict(hidden_size=1024, intermediate_size=4096, hidden_act="gelu", layer_norm_eps=1e-5,
                  conv_dim=[512] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2],
                  conv_bias=False, feat_extract_norm="group", feat_extract_activation="gelu",
                  do_stable_layer_norm=True, feat_proj_layer_norm=True, num_attention_heads=16,
                  num_hidden_layers=24, num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
                  num_feat_extract_layers=7, mask_time_prob=0.075, vocab_size=32, hidden_dropout=0.0,
                  attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0)


@dataclass
class ConversionReport:
    """What a conversion wrote, and what the user should know about the checkpoint."""

    out: Path
    lines: list[str] = field(default_factory=list)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """``checkpoint['model']`` of a released file (``module.`` prefixes removed), memory-mapped."""
    obj = load_torch_file(path)
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: expected {{'model': state_dict}} (a released M2UGen checkpoint.pth)")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {', '.join(map(str, bad[:10]))}")
    return {k.removeprefix("module."): v for k, v in state.items()}


# Key groups of a released checkpoint, each with one key that stands for it.
_REQUIRED = (("LLaMA embeddings", "llama.tok_embeddings.weight"), ("LLaMA attention", "llama.layers.0.attention.wk.weight"),
             ("LLaMA feed-forward", "llama.layers.0.feed_forward.w1.weight"),
             ("injection gates", "llama.layers.0.attention.gate"), ("LLaMA final norm", "llama.norm.weight"),
             ("prefix queries", "prefix_query.weight"), ("output projector queries", "output_projector.query_embs"),
             ("output projector output layer", "output_projector.model.weight"),
             ("output projector transformer", "output_projector.tfm.encoder.layers.0.linear1.weight"),
             *((f"{m} adapter", f"{p}_{part}.weight") for p, m in ADAPTER_PREFIXES.items() for part in ("agg", "proj")))
_ENCODER_PREFIXES = {"mert": "mert_model.", "vit": "vit_model.", "vivit": "vivit_model."}
_KNOWN_PREFIXES = ("llama.", "prefix_query.", "output_projector.", "generation_model.", *_ENCODER_PREFIXES.values())


def _local_weights(path: str | None) -> Path | None:
    """``path`` when it is a local Hugging Face directory holding weights, else None."""
    folder = Path(path) if path else None
    if folder is None or not (folder / "config.json").is_file():
        return None
    return folder.resolve() if any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")) else None


def check_groups(path: str | Path, state: dict[str, torch.Tensor], base: M2UGenConfig) -> None:
    """Refuse a checkpoint that lacks key groups or holds unknown ones, naming all of them at once.

    A frozen encoder (``mert_model.*``, ``vit_model.*``, ``vivit_model.*``) may be absent when
    ``base`` names a local directory with its weights: a checkpoint of only the trained tensors.
    """
    missing = [f"{what} ({key})" for what, key in _REQUIRED if key not in state]
    for sub, prefix in _ENCODER_PREFIXES.items():
        if not any(k.startswith(prefix) for k in state) and _local_weights(getattr(base, f"{sub}_path")) is None:
            missing.append(f"{sub} encoder ({prefix}*; or give --{sub} DIR holding its weights)")
    unexpected = sorted({k.split(".")[0] + ".*" for k in state
                         if not k.startswith(_KNOWN_PREFIXES) and not _ADAPTER_KEY.fullmatch(k)})
    if missing or unexpected:
        parts = ([f"missing {len(missing)} key group(s): " + "; ".join(missing)] if missing else []) + (
            [f"unknown key group(s): {', '.join(unexpected)}"] if unexpected else [])
        raise CheckpointError(f"{path}: not a released M2UGen checkpoint as expected: " + "; ".join(parts))


def _sub(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _count_layers(state: dict[str, torch.Tensor], prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


def _architecture(state: dict[str, torch.Tensor], base: M2UGenConfig, norm_eps: float):
    """LlamaConfig and M2UGenConfig implied by the tensor shapes."""
    emb = state.get("llama.tok_embeddings.weight")
    gate = state.get("llama.layers.0.attention.gate")
    if emb is None or gate is None:
        raise CheckpointError("not a released M2UGen checkpoint: llama.tok_embeddings.weight or "
                              "llama.layers.0.attention.gate is missing")
    dim = emb.shape[1]
    vocab = emb.shape[0] - base.num_aud_tokens
    num_layers = 1 + max(int(m.group(1)) for k in state if (m := _LAYER_KEY.match(k)))
    num_heads = gate.shape[1]
    num_kv_heads = state["llama.layers.0.attention.wk.weight"].shape[0] // (dim // num_heads)
    ffn = state["llama.layers.0.feed_forward.w1.weight"].shape[0]
    lora = state.get("llama.layers.0.attention.lora_wq_l1.weight")
    rank = 0 if lora is None else lora.shape[0]
    llama_cfg = llama_config(dim, num_layers, num_heads, num_kv_heads, ffn, vocab, norm_eps=norm_eps)
    llama_cfg.dtype = str(emb.dtype).removeprefix("torch.")
    blocks = sum(1 for k in state if re.fullmatch(r"mu_mert_norm_\d+\.weight", k))
    queries = state["output_projector.query_embs"]
    out_w = state["output_projector.model.weight"]
    projector = ProjectorConfig(
        d_model=queries.shape[2], num_heads=base.projector.num_heads,
        num_encoder_layers=_count_layers(state, "output_projector.tfm.encoder.layers."),
        num_decoder_layers=_count_layers(state, "output_projector.tfm.decoder.layers."),
        ffn_dim=state["output_projector.tfm.encoder.layers.0.linear1.weight"].shape[0],
        num_queries=queries.shape[1], out_dim=out_w.shape[0], target_scale=base.projector.target_scale)
    has_musicgen = any(k.startswith("generation_model.") for k in state)
    if has_musicgen:
        decoder, decoder_path = "musicgen", "musicgen"
    else:  # the AudioLDM2 build: its pipeline is not in the file
        decoder = "audioldm2"
        decoder_path = base.decoder_path if base.decoder == "audioldm2" else None
        if decoder_path and Path(decoder_path).exists():
            decoder_path = str(Path(decoder_path).resolve())
    config = dataclasses.replace(
        base, name="m2ugen-released", llm_path="llama", llm_config=None, tokenizer_path=".",
        mert_path="mert", mert_config=None, vit_path="vit", vit_config=None, vivit_path="vivit", vivit_config=None,
        decoder=decoder, decoder_path=decoder_path,
        decoder_conditioning="caption", emits_aud=True,  # the released LLM ends music replies with [AUD]
        layers_per_modality=state["prefix_query.weight"].shape[0] // len(MODALITIES),
        lora_rank=rank, lora_alpha=float(rank), adapter_blocks=blocks, projector=projector,
        dtype=llama_cfg.dtype)
    return llama_cfg, config


def _map_llama(state: dict[str, torch.Tensor], llama_cfg, config: M2UGenConfig, writer: ShardWriter,
               trained: dict[str, torch.Tensor]) -> tuple[set[str], torch.Tensor, list[str]]:
    """Write the frozen LLaMA, fill ``trained``; returns consumed keys, the injected gates and notes."""
    heads, kv_heads, vocab = llama_cfg.num_attention_heads, llama_cfg.num_key_value_heads, llama_cfg.vocab_size
    num_layers = llama_cfg.num_hidden_layers
    first = num_layers - config.num_injected_layers
    base = ".base_layer" if config.lora_rank > 0 else ""
    consumed: set[str] = set()
    notes: list[str] = []

    def take(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(f"released checkpoint: missing key {key}")
        consumed.add(key)
        return state[key]

    emb, head = take("llama.tok_embeddings.weight"), take("llama.output.weight")
    writer.add("model.embed_tokens.weight", emb[:vocab])
    trained["llm.model.model.embed_tokens.new_weight"] = emb[vocab:]
    gates = []
    for i in tqdm(range(num_layers), desc="converting LLaMA", unit="layer"):
        pre, ours = f"llama.layers.{i}.", f"llm.model.model.layers.{i}."
        for meta, hf in LAYER_NAMES.items():
            w = take(f"{pre}{meta}.weight")
            rows = {"attention.wq": heads, "attention.wk": kv_heads}.get(meta)
            if rows:
                w = permute_rows(w, rows)
            writer.add(f"model.layers.{i}.{hf}.weight", w)
            if "norm" in meta:
                trained[f"{ours}{hf}.weight"] = state[f"{pre}{meta}.weight"]
            elif meta in _BIASED:
                b = take(f"{pre}{meta}.bias")
                trained[f"{ours}{hf}{base}.bias"] = permute_rows(b, heads) if meta == "attention.wq" else b
        for key in [k for k in state if k.startswith(pre)]:
            m = _LORA_KEY.fullmatch(key[len(pre):])
            if m is None:
                continue
            target, which = _LORA_TARGET[m.group(2)], m.group(3)
            w = take(key)
            if which == "2" and m.group(2) in ("wq", "wk"):
                w = permute_rows(w, heads if m.group(2) == "wq" else kv_heads)
            trained[f"{ours}{target}.lora_{'A' if which == '1' else 'B'}.default.weight"] = w
        gate = take(f"{pre}attention.gate").reshape(-1)
        if i >= first:
            gates.append(gate)
        elif bool((gate != 0).any()):
            notes.append(f"note: gate of layer {i} is non-zero but unused (the original injects only layers "
                         f"{first}-{num_layers - 1})")
    writer.add("model.norm.weight", take("llama.norm.weight"))
    trained["llm.model.model.norm.weight"] = state["llama.norm.weight"]
    writer.add("lm_head.weight", head[:vocab])
    trained["llm.model.lm_head.new_weight"] = head[vocab:]
    gate = torch.stack(gates).float()
    trained["llm.injection.gate"] = gate
    return consumed, gate, notes


def _map_trained_rest(state: dict[str, torch.Tensor], trained: dict[str, torch.Tensor]) -> set[str]:
    """Adapters, prefix queries and the output projector; returns consumed keys."""
    consumed = set()
    for key, value in state.items():
        m = _ADAPTER_KEY.fullmatch(key)
        if m:
            modality = ADAPTER_PREFIXES[m.group(1)]
            part, kind = m.group(2), m.group(6)
            if m.group(3):
                name = f"blocks.{int(m.group(3)) - 1}.norm.{kind}"
            elif m.group(4):
                name = f"blocks.{int(m.group(5)) - 1}.w{m.group(4)}.{kind}"
            else:
                name = f"{part}.{kind}"
            trained[f"adapters.{modality}.{name}"] = value
        elif key == "prefix_query.weight":
            trained["llm.injection.prefix_query"] = value
        elif key.startswith("output_projector."):
            rest = key.removeprefix("output_projector.")
            for old, new in (("fc.", "in_proj."), ("tfm.", "transformer."), ("model.", "out_proj."),
                             ("query_embs", "queries")):
                if rest.startswith(old):
                    trained[f"projector.{new}{rest[len(old):]}"] = value
                    break
            else:
                continue
        else:
            continue
        consumed.add(key)
    return consumed


def _expected_trained(llama_cfg, config: M2UGenConfig, state: dict[str, torch.Tensor]) -> dict[str, tuple]:
    """Names and shapes of the trained tensors of the model ``config`` describes (built on meta)."""
    with torch.device("meta"):
        llm_cfg = llama_cfg.__class__.from_dict(llama_cfg.to_dict())
        llm_cfg.attention_bias = llm_cfg.mlp_bias = True
        llm = M2UGenLLM(LlamaForCausalLM(llm_cfg), config)
        hidden = llama_cfg.hidden_size
        adapters = {}
        for prefix, modality in ADAPTER_PREFIXES.items():
            agg = state.get(f"{prefix}_agg.weight")
            proj = state.get(f"{prefix}_proj.weight")
            if agg is None or proj is None:
                raise CheckpointError(f"released checkpoint: missing keys {prefix}_agg.weight / {prefix}_proj.weight")
            adapters[modality] = ModalityAdapter(agg.shape[1], proj.shape[1], hidden, config.adapter_blocks)
        projector = OutputProjector(hidden, config.projector)
    shapes = {}
    for group in llm.parameter_groups().values():
        ids = {id(p) for p in group}
        shapes.update({f"llm.{n}": tuple(p.shape) for n, p in llm.named_parameters() if id(p) in ids})
    for modality, adapter in adapters.items():
        shapes.update({f"adapters.{modality}.{n}": tuple(p.shape) for n, p in adapter.named_parameters()})
    shapes.update({f"projector.{n}": tuple(p.shape) for n, p in projector.named_parameters()})
    return shapes


def _write_component(name: str, tensors: dict[str, torch.Tensor], out: Path, save_config, model_cls,
                     max_shard_bytes: int, **load_kwargs: Any) -> None:
    """Write one frozen HF component, then check that transformers loads every key (lazily, via mmap)."""
    with ShardWriter(out, max_shard_bytes) as writer:
        for key, value in tqdm(tensors.items(), desc=f"writing {name}", unit="tensor", leave=False):
            writer.add(key, value)
    save_config(out)
    try:
        _, info = model_cls.from_pretrained(out, output_loading_info=True, **load_kwargs)
    except (OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"released checkpoint: {name} weights do not load ({err})") from None
    missing = [k for k in info.get("missing_keys", []) if "masked_spec_embed" not in k]
    unexpected = info.get("unexpected_keys", [])
    mismatched = [str(m[0]) if isinstance(m, tuple) else str(m) for m in info.get("mismatched_keys", [])]
    if missing or unexpected or mismatched:
        raise CheckpointError(f"released checkpoint: {name} keys do not fit its architecture: missing "
                              f"{sorted(missing)[:10]}, unexpected {sorted(unexpected)[:10]}, "
                              f"wrong shape {mismatched[:10]}")


def _encoder_specs(base: M2UGenConfig) -> dict[str, tuple]:
    """For each frozen encoder: (state prefix, subdir, function writing config + preprocessor, model class)."""

    def local_dir(path: str | None) -> Path | None:
        return Path(path) if path and (Path(path) / "config.json").is_file() else None

    def mert_config(out: Path) -> None:
        src = local_dir(base.mert_path)
        if src is not None:
            raw = json.loads((src / "config.json").read_text())
            kwargs = {k: v for k, v in raw.items() if k not in _MERT_ONLY_KEYS}
            if (src / "preprocessor_config.json").is_file():
                shutil.copyfile(src / "preprocessor_config.json", out / "preprocessor_config.json")
        else:
            kwargs = base.mert_config or PAPER_MERT
        HubertConfig(**kwargs).save_pretrained(out)  # MusicEncoder sets tie_last_hidden_states itself

    def vit_config(out: Path) -> None:
        src = local_dir(base.vit_path)
        if src is not None:
            ViTConfig.from_pretrained(src).save_pretrained(out)
            if (src / "preprocessor_config.json").is_file():
                shutil.copyfile(src / "preprocessor_config.json", out / "preprocessor_config.json")
            return
        cfg = ViTConfig(**(base.vit_config or {}))
        cfg.save_pretrained(out)
        ViTImageProcessorPil(size={"height": cfg.image_size, "width": cfg.image_size}, image_mean=[0.5] * 3,
                             image_std=[0.5] * 3).save_pretrained(out)

    def vivit_config(out: Path) -> None:
        src = local_dir(base.vivit_path)
        if src is not None:
            VivitConfig.from_pretrained(src).save_pretrained(out)
            if (src / "preprocessor_config.json").is_file():
                shutil.copyfile(src / "preprocessor_config.json", out / "preprocessor_config.json")
            return
        cfg = VivitConfig(**(base.vivit_config or {}))
        cfg.save_pretrained(out)
        size = cfg.image_size
        VivitImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                            rescale_factor=1 / 127.5, offset=True, image_mean=[0.5] * 3,
                            image_std=[0.5] * 3).save_pretrained(out)

    return {"mert": ("mert_model.", mert_config, HubertModel, {}),
            "vit": ("vit_model.", vit_config, ViTModel, {"add_pooling_layer": False}),
            "vivit": ("vivit_model.", vivit_config, VivitModel, {"add_pooling_layer": False})}


def convert_released(checkpoint: str | Path, out: str | Path, tokenizer: str | Path,
                     base: M2UGenConfig | None = None, norm_eps: float = 1e-5,
                     max_shard_bytes: int = 2 << 30) -> ConversionReport:
    """Convert a released ``checkpoint.pth`` into the m2ugen directory ``out``.

    ``tokenizer``: a folder holding LLaMA's ``tokenizer.model``. ``base``: sizes not stored in the
    file and local directories of the frozen parts' configs (default: the paper preset); for
    MusicGen builds ``base.decoder_path`` must be a local transformers MusicGen directory of the same
    size (its config and processor are copied). ``norm_eps``: from LLaMA's ``params.json``.
    """
    base = base or M2UGenConfig.preset("paper")
    out = Path(out)
    state = read_state_dict(checkpoint)
    check_groups(checkpoint, state, base)
    llama_cfg, config = _architecture(state, base, norm_eps)
    given = {f"{sub}_path": str(_local_weights(getattr(base, f"{sub}_path")))
             for sub, prefix in _ENCODER_PREFIXES.items() if not any(k.startswith(prefix) for k in state)}
    config = dataclasses.replace(config, **given)  # encoders not in the file: used from their local folders
    tok_model = find_tokenizer_model(Path(tokenizer), Path(tokenizer).parent)
    out.mkdir(parents=True, exist_ok=True)
    trained: dict[str, torch.Tensor] = {}
    with ShardWriter(out / "llama", max_shard_bytes) as writer:
        consumed, gate, notes = _map_llama(state, llama_cfg, config, writer, trained)
    llama_cfg.save_pretrained(out / "llama")
    write_tokenizer(tok_model, out / "llama")
    consumed |= _map_trained_rest(state, trained)

    for sub, (prefix, save_config, model_cls, kwargs) in _encoder_specs(base).items():
        tensors = {k: v for k, v in _sub(state, prefix).items() if not k.startswith("pooler.")}
        if not tensors:  # check_groups made sure that its local folder is given
            continue
        consumed |= {k for k in state if k.startswith(prefix)}
        _write_component(sub, tensors, out / sub, save_config, model_cls, max_shard_bytes, **kwargs)
    musicgen = _sub(state, "generation_model.")
    if musicgen:
        _write_musicgen(musicgen, base, out / "musicgen", max_shard_bytes)
        consumed |= {k for k in state if k.startswith("generation_model.")}

    check_keys("released checkpoint", state, consumed)  # keys no rule consumed are unexpected
    expected = _expected_trained(llama_cfg, config, state)
    check_keys("released checkpoint (trained tensors, our names)", trained, expected)
    check_shapes("released checkpoint", {k: tuple(v.shape) for k, v in trained.items()}, expected)

    write_tokenizer(tok_model, out)
    load_tokenizer(out, config.num_aud_tokens, llama_cfg.vocab_size).save_pretrained(out)
    write_weights(trained, out / WEIGHTS_NAME)
    config.save(out / CONFIG_NAME)
    lines = gate_report(gate, config.layers_per_modality, llama_cfg.num_hidden_layers - config.num_injected_layers)
    lines += notes
    if config.decoder == "audioldm2" and not config.decoder_path:
        lines.append("AudioLDM2 build: give the local audioldm2-music pipeline at load time "
                     "(load_pretrained(dir, decoder_path=...)) or with --audioldm2 DIR")
    lines.append(f"wrote {out}: LLaMA {llama_cfg.num_hidden_layers} layers x {llama_cfg.hidden_size}, "
                 f"LoRA rank {config.lora_rank}, decoder {config.decoder} ({config.decoder_conditioning} conditioning)")
    return ConversionReport(out=out, lines=lines)


def _write_musicgen(tensors: dict[str, torch.Tensor], base: M2UGenConfig, out: Path, max_shard_bytes: int) -> None:
    src = Path(base.decoder_path) if base.decoder_path else None
    if src is None or not (src / "config.json").is_file():
        raise CheckpointError(f"the checkpoint holds MusicGen weights (generation_model.*); give a local "
                              f"transformers MusicGen directory of the same size for its config and processor "
                              f"(--musicgen DIR; {base.decoder_path!r} has no config.json)")
    out.mkdir(parents=True, exist_ok=True)

    def copy_config(dest: Path) -> None:
        for f in src.iterdir():
            if f.is_file() and not f.name.endswith((".safetensors", ".bin", ".pth", ".index.json", ".msgpack", ".h5")):
                shutil.copyfile(f, dest / f.name)

    _write_component("musicgen", tensors, out, copy_config, MusicgenForConditionalGeneration, max_shard_bytes)
