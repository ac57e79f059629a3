"""Decoding speed of M2UGen.generate against plain LLaMA and against the original's no-cache loop.

Model: LLaMA at dim 1024, 12 layers, 32k vocabulary (random fp32 weights; ``--dim 512`` for the
smaller example size), all three modalities injected, batch 1, a 64-token prompt, 256 new tokens
(EOS suppressed everywhere, so every run makes exactly 256). Same weights, same run:
  ours     ``M2UGen.generate`` as the Assistant runs it (``optimize_for_inference``: LoRA folded,
           multi-core CPU linear layers)
  plain    transformers ``LlamaForCausalLM.generate`` with the same linear layers: the floor for any
           injection scheme, so ``overhead_vs_plain`` is the cost of M2UGen's own machinery
  stock    the same, with stock ``nn.Linear`` (for reference)
  nocache  the original M2UGen algorithm on our model: every step recomputes the whole prefix
Last line: ``decode: overhead_vs_plain=<ratio>x speedup_vs_nocache=<ratio>x``.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Callable

import numpy as np
import torch
from PIL import Image
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList, SuppressTokensLogitsProcessor

from m2ugen.config import TINY_TOKENIZER_DIR, M2UGenConfig
from m2ugen.cpu_linear import use_blocked_linears
from m2ugen.encoders import ImageEncoder, MusicEncoder, VideoEncoder
from m2ugen.llm import M2UGenLLM
from m2ugen.model import M2UGen
from m2ugen.tokenizer import load_tokenizer


def build(layers: int, dim: int, vocab: int) -> tuple[M2UGen, LlamaForCausalLM, LlamaForCausalLM]:
    """-> (M2UGen as the Assistant runs it, plain LLaMA with the same linear layers, stock plain LLaMA)."""
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
    model.llm.optimize_for_inference()  # the inference setting the Assistant uses
    stock = LlamaForCausalLM(LlamaConfig(**llm, tie_word_embeddings=False)).eval()
    ours = dict(model.llm.model.named_parameters())
    with torch.no_grad():
        for name, p in stock.named_parameters():
            p.copy_(ours[name])
    plain = copy.deepcopy(stock)
    use_blocked_linears(plain)
    return model, plain, stock


def features(model: M2UGen) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    return {"audio": model.encode_audio([rng.standard_normal(24000 * 3).astype(np.float32) * 0.1]),
            "image": model.encode_images([Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))]),
            "video": model.encode_videos([rng.integers(0, 255, (32, 40, 40, 3), dtype=np.uint8)])}


def best_times(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Best wall time (s) of each run over ``repeats`` rounds, the runs interleaved within a round."""
    for fn in runs.values():
        fn()  # warm-up
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, plain, stock = build(args.layers, args.dim, args.vocab)
    feats = features(model)
    prompt = torch.randint(3, 1000, (1, args.prompt)).tolist()[0]
    no_eos = dict(max_new_tokens=args.new)
    eos = model.tokenizer.eos_token_id  # suppressed in both, so every run makes exactly ``new`` tokens
    no_eos_processor = LogitsProcessorList([SuppressTokensLogitsProcessor([eos])])

    tokens: dict[str, list[int]] = {}  # the last run's new tokens, to check both paths decode the same

    def run_ours() -> None:
        out = model.generate([prompt], features=feats, **no_eos, project=False, logits_processor=no_eos_processor)
        assert len(out[0].token_ids) == args.new
        tokens["ours"] = out[0].token_ids

    ids = torch.tensor([prompt])

    def run_plain(llama: LlamaForCausalLM = plain) -> None:
        out = llama.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, eos_token_id=eos,
                             pad_token_id=0, logits_processor=no_eos_processor, **no_eos)
        assert out.shape[1] == args.prompt + args.new

    vectors = model.llm.injection_vectors(model.adapter_tokens(feats), 1)

    def run_nocache(steps: int = args.new) -> None:  # the original: whole prefix every step, last logits only
        seq = list(prompt)
        model.llm.injection.set_vectors(vectors)
        for _ in range(steps):
            logits = model.llm.model(input_ids=torch.tensor([seq]), use_cache=False, logits_to_keep=1).logits
            logits[0, -1, eos] = float("-inf")  # EOS suppressed, as in the cached runs
            seq.append(int(logits[0, -1].argmax()))
        model.llm.injection.set_vectors(None)
        tokens["nocache"] = seq[len(prompt):]

    secs = best_times({"ours": run_ours, "plain": run_plain, "stock": lambda: run_plain(stock)}, args.repeats)
    run_nocache(8)  # warm-up
    start = time.perf_counter()
    run_nocache()
    secs["nocache"] = time.perf_counter() - start
    names = {"ours": "`M2UGen.generate` (KV cache, injection)",
             "plain": "`LlamaForCausalLM.generate`, same linear layers",
             "stock": "`LlamaForCausalLM.generate`, stock `nn.Linear`",
             "nocache": "no-cache loop (the original's algorithm)"}
    print("| decoder | seconds | tokens/s |\n|---|---|---|")
    for key, name in names.items():
        print(f"| {name} | {secs[key]:.2f} | {args.new / secs[key]:.1f} |")
    same = sum(a == b for a, b in zip(tokens["ours"], tokens["nocache"]))
    print(f"greedy tokens equal to the no-cache loop's: {same}/{args.new}")
    print(f"decode: overhead_vs_plain={secs['ours'] / secs['plain']:.3f}x "
          f"speedup_vs_nocache={secs['nocache'] / secs['ours']:.1f}x")


if __name__ == "__main__":
    main()
