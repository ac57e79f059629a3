"""Meta LLaMA (``consolidated.*.pth`` + ``params.json`` + ``tokenizer.model``) -> Hugging Face directory.

Meta rotates interleaved pairs (2i, 2i+1) of each head; Hugging Face rotates halves (i, i + d/2).
:func:`permute_rows` reorders the output rows of q and k (and anything producing them: the q bias and
the LoRA up-matrices of M2UGen) so that every q.k product, hence the model, is unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import sentencepiece
import torch
from tqdm import tqdm
from transformers import LlamaConfig, LlamaTokenizer

from m2ugen.checkpoints import check_keys, load_torch_file
from m2ugen.convert.shards import ShardWriter
from m2ugen.errors import CheckpointError

# Model-parallel split dimension of each Meta tensor (None: replicated in every shard).
_SPLIT_DIM = {"tok_embeddings.weight": 1, "output.weight": 0, "norm.weight": None,
              "attention.wq.weight": 0, "attention.wk.weight": 0, "attention.wv.weight": 0,
              "attention.wo.weight": 1, "feed_forward.w1.weight": 0, "feed_forward.w3.weight": 0,
              "feed_forward.w2.weight": 1, "attention_norm.weight": None, "ffn_norm.weight": None}
_TOP_LEVEL = ("tok_embeddings.weight", "output.weight", "norm.weight")
# Meta layer key -> Hugging Face layer key.
LAYER_NAMES = {"attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj",
               "attention.wv": "self_attn.v_proj", "attention.wo": "self_attn.o_proj",
               "feed_forward.w1": "mlp.gate_proj", "feed_forward.w2": "mlp.down_proj",
               "feed_forward.w3": "mlp.up_proj", "attention_norm": "input_layernorm",
               "ffn_norm": "post_attention_layernorm"}


def permute_rows(w: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Meta -> HF row order of a q/k projection output: (num_heads * head_dim, ...) -> same shape.

    Within each head, HF row j takes Meta row ``[0, 2, 4, ..., d-2, 1, 3, ..., d-1][j]``.
    """
    rows = w.shape[0]
    if rows % num_heads or (rows // num_heads) % 2:
        raise CheckpointError(f"cannot split {rows} rows into {num_heads} heads of even size")
    head_dim = rows // num_heads
    return w.reshape(num_heads, head_dim // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def llama_config(dim: int, num_layers: int, num_heads: int, num_kv_heads: int, ffn_dim: int, vocab_size: int,
                 norm_eps: float = 1e-5, rope_theta: float = 10000.0, max_positions: int = 4096) -> LlamaConfig:
    return LlamaConfig(hidden_size=dim, intermediate_size=ffn_dim, num_hidden_layers=num_layers,
                       num_attention_heads=num_heads, num_key_value_heads=num_kv_heads, vocab_size=vocab_size,
                       rms_norm_eps=norm_eps, rope_theta=rope_theta, max_position_embeddings=max_positions,
                       bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
                       architectures=["LlamaForCausalLM"])


def find_tokenizer_model(*candidates: Path) -> Path:
    """The first ``tokenizer.model`` among ``candidates``, checked to be a SentencePiece model.

    Checked here, before any weights are written, so a bad tokenizer fails the conversion at once.
    """
    for folder in candidates:
        path = folder / "tokenizer.model"
        if path.is_file():
            try:
                sentencepiece.SentencePieceProcessor(model_file=str(path))
            except (RuntimeError, OSError) as err:
                raise CheckpointError(f"{path}: not a SentencePiece tokenizer model ({err})") from None
            return path
    raise CheckpointError("tokenizer.model not found in " + ", ".join(str(c) for c in candidates)
                          + "; pass --tokenizer DIR")


_PARAM_TYPES = {"n_layers": int, "n_heads": int, "n_kv_heads": (int, type(None)), "norm_eps": (int, float),
                "rope_theta": (int, float)}


def read_params(path: Path, required: tuple[str, ...] = ()) -> dict:
    """Meta's ``params.json`` as a dict, with the keys we use checked: ``required`` present, numbers typed.

    Raises:
        CheckpointError: missing or unreadable file, not a JSON object, a missing key or a wrong type.
    """
    path = Path(path)
    try:
        params = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: params.json not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(params, dict):
        raise CheckpointError(f"{path}: expected a JSON object of LLaMA hyper-parameters")
    missing = [key for key in required if key not in params]
    if missing:
        raise CheckpointError(f"{path}: missing {', '.join(missing)}")
    for key, kind in _PARAM_TYPES.items():
        value = params.get(key)
        if key in params and (isinstance(value, bool) or not isinstance(value, kind)):
            raise CheckpointError(f"{path}: {key} must be a number, got {value!r}")
    return params


def write_tokenizer(tokenizer_model: Path, out: Path) -> None:
    """Copy ``tokenizer.model`` into ``out`` and add the transformers tokenizer files."""
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_model.resolve() != (out / "tokenizer.model").resolve():
        shutil.copyfile(tokenizer_model, out / "tokenizer.model")
    LlamaTokenizer.from_pretrained(out).save_pretrained(out)


def convert_meta_llama(src: str | Path, out: str | Path, tokenizer: str | Path | None = None,
                       max_positions: int = 4096, max_shard_bytes: int = 2 << 30) -> Path:
    """Convert a Meta LLaMA folder (``consolidated.*.pth``, ``params.json``) into an HF directory.

    Shards are memory-mapped and written layer by layer, so memory stays around one layer.
    """
    src, out = Path(src), Path(out)
    files = sorted(src.glob("consolidated.*.pth"))
    if not files:
        raise CheckpointError(f"{src}: no consolidated.*.pth files (a Meta LLaMA folder such as LLaMA/7B)")
    params = read_params(src / "params.json", required=("n_layers", "n_heads"))
    tok_model = find_tokenizer_model(*([Path(tokenizer)] if tokenizer else [src, src.parent]))
    shards = [load_torch_file(f) for f in files]
    for f, shard in zip(files, shards):
        if not isinstance(shard, dict) or not all(isinstance(v, torch.Tensor) for v in shard.values()):
            raise CheckpointError(f"{f}: expected a dict of tensors (a Meta consolidated checkpoint)")
    num_layers, num_heads = params["n_layers"], params["n_heads"]
    num_kv_heads = params.get("n_kv_heads") or num_heads
    expected = set(_TOP_LEVEL) | {f"layers.{i}.{k}" for i in range(num_layers) for k in _SPLIT_DIM
                                  if k not in _TOP_LEVEL}
    for f, shard in zip(files, shards):  # every shard, before anything is written
        check_keys(f"{f}", {k for k in shard if k != "rope.freqs"}, expected)
    for key in sorted(expected):
        shapes = [tuple(shard[key].shape) for shard in shards]
        if len(set(shapes)) > 1:
            raise CheckpointError(f"{src}: {key} has different shapes in the shards ({', '.join(map(str, shapes))}); "
                                  "the consolidated.*.pth files are not one model-parallel checkpoint")

    def merged(key: str) -> torch.Tensor:
        dim = _SPLIT_DIM[key.split(".", 2)[-1] if key.startswith("layers.") else key]
        if dim is None or len(shards) == 1:
            return shards[0][key]
        return torch.cat([s[key] for s in shards], dim=dim)

    emb = merged("tok_embeddings.weight")
    dim, vocab = emb.shape[1], emb.shape[0]
    ffn_dim = merged("layers.0.feed_forward.w1.weight").shape[0]
    config = llama_config(dim, num_layers, num_heads, num_kv_heads, ffn_dim, vocab,
                          norm_eps=float(params.get("norm_eps", 1e-5)),
                          rope_theta=float(params.get("rope_theta", 10000.0)), max_positions=max_positions)
    config.dtype = str(emb.dtype).removeprefix("torch.")
    out.mkdir(parents=True, exist_ok=True)
    with ShardWriter(out, max_shard_bytes) as writer:
        writer.add("model.embed_tokens.weight", emb)
        for i in tqdm(range(num_layers), desc="converting LLaMA", unit="layer"):
            for meta, hf in LAYER_NAMES.items():
                w = merged(f"layers.{i}.{meta}.weight")
                if meta == "attention.wq":
                    w = permute_rows(w, num_heads)
                elif meta == "attention.wk":
                    w = permute_rows(w, num_kv_heads)
                writer.add(f"model.layers.{i}.{hf}.weight", w)
        writer.add("model.norm.weight", merged("norm.weight"))
        writer.add("lm_head.weight", merged("output.weight"))
    config.save_pretrained(out)
    write_tokenizer(tok_model, out)
    return out
