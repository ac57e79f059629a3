"""Decoding speed of M2UGen.generate against the machine's bandwidth bound, plain LLaMA and the original loop.

Model: LLaMA at dim 1024, 12 layers, 32k vocabulary by default (``--dim 256 --layers 8 --vocab 2048
--heads 8`` is the m2ugen-mini size), random fp32 weights, all three modalities injected, batch 1, a
64-token prompt, 256 new tokens (EOS suppressed everywhere, so every run makes exactly 256). Same
weights, same run, same thread count:
  bound    the time to read every weight of a decoding step once: the faster of a plain reduction
           (``sum``) over each weight and a one-row product with each weight (best of 7)
  ours     ``M2UGen.generate`` as the Assistant runs it (``optimize_for_inference``; m2ugen.decoding)
  int8     the same with ``optimize_for_inference(quantize="int8")``
  today    the previous path: transformers' ``generate`` on our model, injection by hooks
  plain    transformers ``LlamaForCausalLM.generate`` with stock ``nn.Linear`` (no injection): the
           floor for any injection scheme, so ``overhead_vs_plain`` is the cost of M2UGen's own machinery
  nocache  the original M2UGen algorithm on our model: every step recomputes the whole prefix
int8 accuracy: logits of the int8 model with the fp32 model's 256 greedy tokens forced (teacher
forcing): max |delta| and how often its argmax agrees; and its own free-running greedy tokens. On the
random weights above, and with ``--trained DIR`` also on a trained model folder (a composition request).
Last line: ``decode: bound_fraction=<f> overhead_vs_plain=<r>x speedup_vs_nocache=<s>x int8_speedup=<q>x``.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessor, LogitsProcessorList, \
    SuppressTokensLogitsProcessor

from m2ugen.config import TINY_TOKENIZER_DIR, M2UGenConfig
from m2ugen.encoders import ImageEncoder, MusicEncoder, VideoEncoder
from m2ugen.llm import M2UGenLLM
from m2ugen.model import M2UGen
from m2ugen.quantize import Int8Linear
from m2ugen.tokenizer import load_tokenizer


def build(layers: int, dim: int, vocab: int, heads: int) -> tuple[M2UGen, M2UGen, LlamaForCausalLM]:
    """-> (M2UGen as the Assistant runs it, the same quantized to int8, stock plain LLaMA, same weights)."""
    llm = dict(vocab_size=vocab, hidden_size=dim, intermediate_size=dim * 8 // 3 // 64 * 64 + 64,
               num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
               max_position_embeddings=1024, bos_token_id=1, eos_token_id=2)
    cfg = M2UGenConfig.preset("tiny", llm_config=llm, layers_per_modality=layers // 6, lora_rank=16,
                              lora_alpha=16.0)
    # The benchmark feeds token ids directly, so the small shipped tokenizer serves any vocabulary.
    tokenizer = load_tokenizer(TINY_TOKENIZER_DIR, cfg.num_aud_tokens, 1000)
    model = M2UGen(cfg, tokenizer, M2UGenLLM.from_config(cfg), MusicEncoder.from_config(cfg.mert_config),
                   ImageEncoder.from_config(cfg.vit_config), VideoEncoder.from_config(cfg.vivit_config)).eval()
    with torch.no_grad():
        model.llm.injection.gate.fill_(0.5)
    int8 = copy.deepcopy(model)
    model.llm.optimize_for_inference()  # the inference setting the Assistant uses
    int8.llm.optimize_for_inference(quantize="int8")
    stock = LlamaForCausalLM(LlamaConfig(**llm, tie_word_embeddings=False)).eval()
    ours = dict(model.llm.model.named_parameters())
    with torch.no_grad():
        for name, p in stock.named_parameters():
            p.copy_(ours[name])
    return model, int8, stock


def step_weights(model: M2UGen) -> list[torch.Tensor]:
    """The weight tensors one decoding step reads in full: every linear layer's and the LM head's."""
    llm = model.llm
    out = []
    for module in llm.layers.modules():
        if isinstance(module, Int8Linear):
            out += [module.qweight, module.scales]
        elif isinstance(module, nn.Linear):
            out.append(module.weight)
    head = llm.model.lm_head
    out += [head.base.qweight, head.base.scales] if isinstance(head.base, Int8Linear) else [head.weight]
    return out


def read_seconds(weights: list[torch.Tensor]) -> float:
    """Best time to read float ``weights`` (N, K) once: a reduction or a one-row product over each."""
    xs = {w.shape[-1]: torch.randn(1, w.shape[-1]) for w in weights}

    def reduce() -> None:
        for w in weights:
            w.sum()

    def products() -> None:
        for w in weights:
            F.linear(xs[w.shape[-1]], w)

    return min(best_times({"sum": reduce, "linear": products}, 7).values())


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


class ForceAndRecord(LogitsProcessor):
    """Records the scores of each step, then forces the next token of ``script`` (teacher forcing)."""

    def __init__(self, script: list[int]) -> None:
        self.script, self.scores = script, []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.scores.append(scores[0].clone())
        out = torch.full_like(scores, -float("inf"))
        out[:, self.script[len(self.scores) - 1]] = 0.0
        return out


def int8_agreement(model: M2UGen, int8: M2UGen, prompt: list[int], feats: dict | None, fp32_tokens: list[int],
                   int8_tokens: list[int], no_eos: LogitsProcessorList) -> str:
    """int8 against fp32: logits along the fp32 greedy answer (teacher forcing) and int8's own greedy answer."""
    recorded = {}
    for name, m in (("fp32", model), ("int8", int8)):
        proc = ForceAndRecord(fp32_tokens)
        m.generate([prompt], features=feats, max_new_tokens=len(fp32_tokens), project=False,
                   logits_processor=LogitsProcessorList([*no_eos, proc]))
        recorded[name] = torch.stack(proc.scores)
    fp32_logits, int8_logits = recorded["fp32"], recorded["int8"]
    finite = torch.isfinite(fp32_logits)
    delta = (int8_logits - fp32_logits)[finite].abs().max().item()
    spread = fp32_logits[finite].std().item()
    forced_same = int((int8_logits.argmax(-1) == fp32_logits.argmax(-1)).sum())
    free_same = sum(a == b for a, b in zip(fp32_tokens, int8_tokens))
    first_diff = next((i for i, (a, b) in enumerate(zip(fp32_tokens, int8_tokens)) if a != b), len(fp32_tokens))
    return (f"int8 logits along the fp32 answer: max |delta| {delta:.4f} (logits std {spread:.3f}), argmax equal "
            f"{forced_same}/{len(fp32_tokens)}; free-running greedy tokens equal {free_same}/{len(fp32_tokens)} "
            f"(first difference at {first_diff})")


def trained_int8_agreement(folder: str, new: int) -> str:
    """:func:`int8_agreement` on a trained model folder (e.g. the bundled m2ugen-mini), whose logits have
    the margins of a real model (random weights have many near-ties), for a composition request."""
    from m2ugen.prompt import encode_dialogue, score_request

    model = M2UGen.from_pretrained(folder).eval()
    int8 = copy.deepcopy(model)
    model.llm.optimize_for_inference()
    int8.llm.optimize_for_inference(quantize="int8")
    prompt, _ = encode_dialogue(model.tokenizer, score_request("Compose a lively jig in D major for fiddle."))
    no_eos = LogitsProcessorList([SuppressTokensLogitsProcessor([model.tokenizer.eos_token_id])])
    answers = [m.generate([prompt], max_new_tokens=new, project=False, logits_processor=no_eos)[0].token_ids
               for m in (model, int8)]
    return int8_agreement(model, int8, prompt, None, answers[0], answers[1], no_eos)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--heads", type=int, default=None, help="attention heads (default dim / 64)")
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trained", default=None,
                        help="also check int8 against fp32 on this trained model folder (e.g. m2ugen/assets/mini)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, int8, stock = build(args.layers, args.dim, args.vocab, args.heads or args.dim // 64)
    feats = features(model)
    prompt = torch.randint(3, 1000, (1, args.prompt)).tolist()[0]
    eos = model.tokenizer.eos_token_id  # suppressed everywhere, so every run makes exactly ``new`` tokens
    no_eos = LogitsProcessorList([SuppressTokensLogitsProcessor([eos])])
    tokens: dict[str, list[int]] = {}  # the last run's new tokens of each path

    def run_ours(name: str, m: M2UGen) -> None:
        out = m.generate([prompt], features=feats, max_new_tokens=args.new, project=False, logits_processor=no_eos)
        assert len(out[0].token_ids) == args.new
        tokens[name] = out[0].token_ids

    ids = torch.tensor([prompt])
    vectors = model.llm.injection_vectors(model.adapter_tokens(feats), 1)

    def run_hf(name: str, llama: LlamaForCausalLM, inject: bool) -> None:
        model.llm.injection.set_vectors(vectors if inject else None)
        out = llama.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, eos_token_id=eos,
                             pad_token_id=0, logits_processor=no_eos, max_new_tokens=args.new)
        model.llm.injection.set_vectors(None)
        assert out.shape[1] == args.prompt + args.new
        tokens[name] = out[0, args.prompt:].tolist()

    def run_nocache(steps: int = args.new) -> None:  # the original: whole prefix every step, last logits only
        seq = list(prompt)
        model.llm.injection.set_vectors(vectors)
        for _ in range(steps):
            logits = model.llm.model(input_ids=torch.tensor([seq]), use_cache=False, logits_to_keep=1).logits
            logits[0, -1, eos] = float("-inf")  # EOS suppressed, as in the cached runs
            seq.append(int(logits[0, -1].argmax()))
        model.llm.injection.set_vectors(None)
        tokens["nocache"] = seq[len(prompt):]

    fp32_bytes = sum(w.numel() * w.element_size() for w in step_weights(model))
    int8_bytes = sum(w.numel() * w.element_size() for w in step_weights(int8))
    secs = best_times({"ours": lambda: run_ours("ours", model),
                       "int8": lambda: run_ours("int8", int8),
                       "today": lambda: run_hf("today", model.llm.model, True),
                       "plain": lambda: run_hf("plain", stock, False)}, args.repeats)
    secs["bound"] = read_seconds(step_weights(model)) * args.new
    bandwidth = fp32_bytes * args.new / secs["bound"]
    run_nocache(8)  # warm-up
    start = time.perf_counter()
    run_nocache()
    secs["nocache"] = time.perf_counter() - start

    names = {"bound": "bandwidth bound (read every weight once per token)",
             "ours": "`M2UGen.generate` (static KV cache, injection)",
             "int8": "`M2UGen.generate`, int8 weights",
             "today": "previous path: transformers `generate` + injection hooks",
             "plain": "`LlamaForCausalLM.generate`, stock `nn.Linear`",
             "nocache": "no-cache loop (the original's algorithm)"}
    bytes_of = {"int8": int8_bytes}
    print(f"threads {torch.get_num_threads()}, weights read per token: fp32 {fp32_bytes / 1e6:.0f} MB, "
          f"int8 {int8_bytes / 1e6:.0f} MB; measured read bandwidth {bandwidth / 1e9:.1f} GB/s")
    print("| decoder | seconds | tokens/s | ms/token | of its bound |\n|---|---|---|---|---|")
    for key, name in names.items():
        bound = bytes_of.get(key, fp32_bytes) / bandwidth
        per_token = secs[key] / args.new
        print(f"| {name} | {secs[key]:.2f} | {args.new / secs[key]:.1f} | {1e3 * per_token:.1f} | "
              f"{bound / per_token:.2f} |")
    for key in ("today", "nocache"):  # (plain LLaMA has no injection, so its tokens differ)
        same = sum(a == b for a, b in zip(tokens["ours"], tokens[key]))
        print(f"greedy tokens equal to {key}'s: {same}/{args.new}")

    print("random weights: " + int8_agreement(model, int8, prompt, feats, tokens["ours"], tokens["int8"], no_eos))
    if args.trained:
        print(f"trained weights ({args.trained}): " + trained_int8_agreement(args.trained, args.new))
    bound_fraction = fp32_bytes / bandwidth / (secs["ours"] / args.new)
    print(f"decode: bound_fraction={bound_fraction:.2f} overhead_vs_plain={secs['ours'] / secs['plain']:.3f}x "
          f"speedup_vs_nocache={secs['nocache'] / secs['ours']:.1f}x int8_speedup={secs['ours'] / secs['int8']:.2f}x")


if __name__ == "__main__":
    main()
