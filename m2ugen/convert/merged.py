"""The merged export: an M2UGen's LLM as a plain Hugging Face ``LlamaForCausalLM`` directory."""

from __future__ import annotations

from pathlib import Path

import torch

from m2ugen.convert.shards import ShardWriter
from m2ugen.model import M2UGen


def export_merged(model: M2UGen, path: str | Path, max_shard_bytes: int = 2 << 30) -> Path:
    """Write the LLM as a plain Hugging Face ``LlamaForCausalLM`` directory, LoRA merged.

    Biases are kept (``attention_bias``/``mlp_bias``), the [AUD] rows are appended to the vocabulary
    and the tokenizer is saved with them. The gated media injection has no place in a plain LLaMA, so
    the export is the text-only LLM (equal to M2UGen when no media is given and the gates are zero).
    The model is not modified.
    """
    out = Path(path)
    llm = model.llm.model
    cfg = llm.config.__class__.from_dict(llm.config.to_dict())
    cfg.vocab_size = model.llm.base_vocab_size + model.llm.num_aud_tokens
    cfg.attention_bias = cfg.mlp_bias = True
    cfg.tie_word_embeddings = False
    cfg.architectures = ["LlamaForCausalLM"]
    out.mkdir(parents=True, exist_ok=True)
    cfg.save_pretrained(out)
    model.tokenizer.save_pretrained(out)
    with ShardWriter(out, max_shard_bytes) as writer, torch.no_grad():
        emb, head = llm.model.embed_tokens, llm.lm_head
        writer.add("model.embed_tokens.weight", torch.cat([emb.weight, emb.new_weight.to(emb.weight.dtype)]))
        writer.add("lm_head.weight", torch.cat([head.weight, head.new_weight.to(head.weight.dtype)]))
        writer.add("model.norm.weight", llm.model.norm.weight)
        for i, layer in enumerate(llm.model.layers):
            prefix = f"model.layers.{i}."
            for sub, module in [("self_attn", layer.self_attn), ("mlp", layer.mlp)]:
                for proj_name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
                    proj = getattr(module, proj_name, None)
                    if proj is None:
                        continue
                    base = getattr(proj, "base_layer", proj)
                    weight = base.weight.float()
                    if hasattr(proj, "lora_A"):
                        for adapter in proj.lora_A:
                            delta = proj.lora_B[adapter].weight.float() @ proj.lora_A[adapter].weight.float()
                            weight = weight + delta * proj.scaling[adapter]
                    writer.add(f"{prefix}{sub}.{proj_name}.weight", weight.to(base.weight.dtype))
                    writer.add(f"{prefix}{sub}.{proj_name}.bias", base.bias)
            writer.add(prefix + "input_layernorm.weight", layer.input_layernorm.weight)
            writer.add(prefix + "post_attention_layernorm.weight", layer.post_attention_layernorm.weight)
    return out
