"""Decoding speed of M2UGen.generate against plain LLaMA and against the original's no-cache loop.

Model: LLaMA at dim 512, 12 layers, 32k vocabulary (random weights), all three modalities present,
batch 1, a 64-token prompt, 256 new tokens (EOS disabled so every run makes exactly 256).
Baselines, same weights, same run:
  plain    transformers ``LlamaForCausalLM.generate`` (KV cache), the floor for any injection scheme
  nocache  the original M2UGen algorithm: every step recomputes the whole prefix
Last line: ``decode: overhead_vs_plain=<ratio>x speedup_vs_nocache=<ratio>x``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList, SuppressTokensLogitsProcessor

from m2ugen.config import TINY_TOKENIZER_DIR, M2UGenConfig
from m2ugen.encoders import ImageEncoder, MusicEncoder, VideoEncoder
from m2ugen.llm import M2UGenLLM
from m2ugen.model import M2UGen
from m2ugen.tokenizer import load_tokenizer


def build(layers: int, dim: int, vocab: int) -> tuple[M2UGen, LlamaForCausalLM]:
    llm = dict(vocab_size=vocab, hidden_size=dim, intermediate_size=dim * 8 // 3 // 64 * 64 + 64,
               num_hidden_layers=layers, num_attention_heads=dim // 64, num_key_value_heads=dim // 64,
               max_position_embeddings=1024, bos_token_id=1, eos_token_id=2)
    cfg = M2UGenConfig.preset("tiny", llm_config=llm, layers_per_modality=layers // 6, lora_rank=16,
                              lora_alpha=16.0)
    # The benchmark feeds token ids directly, so the small shipped tokenizer serves a 32k-vocabulary LLM.
    tokenizer = load_tokenizer(TINY_TOKENIZER_DIR, cfg.num_aud_tokens, 1000)
    model = M2UGen(cfg, tokenizer, M2UGenLLM.from_config(cfg), MusicEncoder.from_config(cfg.mert_config),
                   ImageEncoder.from_config(cfg.vit_config), VideoEncoder.from_config(cfg.vivit_config)).eval()
    with torch.no_grad():
        model.llm.injection.gate.fill_(0.5)
    model.llm.fuse_lora()  # the inference setting the Assistant uses
    plain = LlamaForCausalLM(LlamaConfig(**llm, tie_word_embeddings=False)).eval()
    ours = dict(model.llm.model.named_parameters())
    with torch.no_grad():
        for name, p in plain.named_parameters():
            p.copy_(ours.get(name.replace(".weight", ".base_layer.weight"), ours.get(name)))
    return model, plain


def features(model: M2UGen) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    return {"audio": model.encode_audio([rng.standard_normal(24000 * 3).astype(np.float32) * 0.1]),
            "image": model.encode_images([Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))]),
            "video": model.encode_videos([rng.integers(0, 255, (32, 40, 40, 3), dtype=np.uint8)])}


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, plain = build(args.layers, args.dim, args.vocab)
    feats = features(model)
    prompt = torch.randint(3, 1000, (1, args.prompt)).tolist()[0]
    no_eos = dict(max_new_tokens=args.new)
    eos = model.tokenizer.eos_token_id  # suppressed in both, so every run makes exactly ``new`` tokens
    no_eos_processor = LogitsProcessorList([SuppressTokensLogitsProcessor([eos])])

    def run_ours():
        out = model.generate([prompt], features=feats, **no_eos, project=False, logits_processor=no_eos_processor)
        assert len(out[0].token_ids) == args.new

    ids = torch.tensor([prompt])

    def run_plain():
        out = plain.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, eos_token_id=eos,
                             pad_token_id=0, logits_processor=no_eos_processor, **no_eos)
        assert out.shape[1] == args.prompt + args.new

    vectors = model.llm.injection_vectors(model.adapter_tokens(feats), 1)

    def run_nocache():  # like the original: full prefix every step, logits of the last position only
        seq = list(prompt)
        model.llm.injection.set_vectors(vectors)
        for _ in range(args.new):
            logits = model.llm.model(input_ids=torch.tensor([seq]), use_cache=False, logits_to_keep=1).logits
            seq.append(int(logits[0, -1].argmax()))
        model.llm.injection.set_vectors(None)

    t_ours = timed(run_ours, args.repeats)
    t_plain = timed(run_plain, args.repeats)
    t_nocache = timed(run_nocache, 1)
    rows = [("M2UGen.generate (KV cache, injection)", t_ours), ("LlamaForCausalLM.generate", t_plain),
            ("no-cache loop (original)", t_nocache)]
    print("| decoder | seconds | tokens/s |\n|---|---|---|")
    for name, secs in rows:
        print(f"| {name} | {secs:.2f} | {args.new / secs:.1f} |")
    print(f"decode: overhead_vs_plain={t_ours / t_plain:.3f}x speedup_vs_nocache={t_nocache / t_ours:.1f}x")


if __name__ == "__main__":
    main()
