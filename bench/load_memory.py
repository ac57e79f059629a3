"""Peak memory of loading a 7B-shaped LLaMA the way M2UGen loads its LLM.

Writes a random bf16 LLaMA-2-7B-shaped Hugging Face directory (sharded safetensors, written a few
layers at a time so writing it never holds the model in memory), then, in a fresh subprocess, builds
``M2UGenLLM.from_config`` on it (meta device + streamed safetensors, LoRA, biases, [AUD] rows,
injection) and measures the subprocess's peak resident set size. The baseline is the byte size of
the weights themselves. The temporary files are deleted afterwards.

    python bench/load_memory.py [--size 7b|1b] [--workdir DIR]

Last line: ``load: peak_rss_over_weights=<ratio>``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm
from transformers import LlamaConfig

SIZES = {
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32),
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=20, num_attention_heads=16),
}
LAYERS_PER_SHARD = 2


def layer_shapes(cfg: LlamaConfig, i: int) -> dict[str, tuple[int, ...]]:
    d, f = cfg.hidden_size, cfg.intermediate_size
    p = f"model.layers.{i}."
    return {p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (d, d),
            p + "self_attn.v_proj.weight": (d, d), p + "self_attn.o_proj.weight": (d, d),
            p + "mlp.gate_proj.weight": (f, d), p + "mlp.up_proj.weight": (f, d), p + "mlp.down_proj.weight": (d, f),
            p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,)}


def write_checkpoint(out: Path, size: str) -> int:
    """Write a random bf16 HF LLaMA directory shard by shard; returns the bytes of its weights."""
    cfg = LlamaConfig(vocab_size=32000, rms_norm_eps=1e-5, tie_word_embeddings=False,
                      max_position_embeddings=4096, **SIZES[size])
    cfg.save_pretrained(out)
    d = cfg.hidden_size
    groups = [{"model.embed_tokens.weight": (cfg.vocab_size, d)}]
    for start in range(0, cfg.num_hidden_layers, LAYERS_PER_SHARD):
        group = {}
        for i in range(start, min(start + LAYERS_PER_SHARD, cfg.num_hidden_layers)):
            group.update(layer_shapes(cfg, i))
        groups.append(group)
    groups.append({"model.norm.weight": (d,), "lm_head.weight": (cfg.vocab_size, d)})
    weight_map, total = {}, 0
    generator = torch.Generator().manual_seed(0)
    for n, group in enumerate(tqdm(groups, desc="writing shards", unit="shard")):
        name = f"model-{n + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for key, shape in group.items():
            t = torch.ones(shape) if len(shape) == 1 else torch.randn(shape, generator=generator) * 0.02
            tensors[key] = t.to(torch.bfloat16)
            total += tensors[key].numel() * 2
            weight_map[key] = name
        save_file(tensors, out / name, metadata={"format": "pt"})
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return total


def child(path: str) -> None:
    """Load the LLM as M2UGen does and print the peak RSS in bytes."""
    from m2ugen.config import M2UGenConfig
    from m2ugen.llm import M2UGenLLM

    tiny = M2UGenConfig.preset("tiny")
    cfg = M2UGenConfig(name="bench", llm_path=path, mert_config=tiny.mert_config, vit_config=tiny.vit_config,
                       vivit_config=tiny.vivit_config, layers_per_modality=6, lora_rank=16, lora_alpha=16.0,
                       dtype="bfloat16")
    start = time.perf_counter()
    llm = M2UGenLLM.from_config(cfg)
    seconds = time.perf_counter() - start
    # Touch every weight, so pages that a lazily mapped file has not read yet count too.
    with torch.no_grad():
        checksum = sum(float(p.sum()) for p in llm.parameters())
    params = sum(p.numel() for p in llm.parameters())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"peak_rss": peak, "params": params, "seconds": seconds, "checksum": checksum}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="7b")
    parser.add_argument("--workdir", default=None, help="where to write the temporary checkpoint")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="m2ugen-loadmem-") as tmp:
        weights = write_checkpoint(Path(tmp), args.size)
        proc = subprocess.run([sys.executable, __file__, "--child", tmp], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"loading failed:\n{proc.stderr[-4000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    ratio = result["peak_rss"] / weights
    print(f"size={args.size} weights={weights / 2**30:.2f} GiB params={result['params'] / 1e9:.2f} B "
          f"load_time={result['seconds']:.1f} s peak_rss={result['peak_rss'] / 2**30:.2f} GiB")
    print(f"load: peak_rss_over_weights={ratio:.3f}")


if __name__ == "__main__":
    main()
