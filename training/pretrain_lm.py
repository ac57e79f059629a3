"""``m2ugen-train pretrain-lm``: the LLaMA of a preset (``llm_config``) trained from scratch as a language model.

Documents (ABC tunes, corpus scores, manifest dialogue) become ``<s> text </s>`` and are packed into
blocks of ``seq_len`` tokens; the loss is next-token cross-entropy over every position. The
vocabulary is the trained tokenizer's (its size overrides the preset's ``vocab_size``). ``final/`` is
a Hugging Face LLaMA folder with the tokenizer, so an M2UGen config's ``llm_path`` can point at it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

from m2ugen.errors import ConfigError
from training.pretrain_config import LMConfig
from training.text_data import pack_blocks, read_texts


def load_pretrain_tokenizer(path: str | Path) -> LlamaTokenizer:
    """The tokenizer written by ``m2ugen-train tokenizer`` (BOS added, no EOS)."""
    path = Path(path)
    if not (path / "tokenizer.model").is_file():
        raise ConfigError(f"tokenizer {path}: no tokenizer.model (run `m2ugen-train tokenizer` first)")
    return LlamaTokenizer.from_pretrained(path, add_bos_token=True, add_eos_token=False)


class LMTask:
    """Packed text blocks and next-token cross-entropy for :func:`training.pretrain_loop.run_pretrain`."""

    terms: tuple[str, ...] = ()
    scores: tuple[str, ...] = ("token_accuracy",)

    def __init__(self, cfg: LMConfig) -> None:
        self.cfg = cfg
        self.tokenizer = load_pretrain_tokenizer(cfg.tokenizer)
        llm = cfg.model_config().llm_config
        if llm is None:
            raise ConfigError(f"pretrain-lm: model {cfg.model!r} has no llm_config to build the LLaMA from")
        if cfg.seq_len > llm.get("max_position_embeddings", 2048):
            raise ConfigError(f"pretrain-lm: seq_len {cfg.seq_len} exceeds the LLaMA's max_position_embeddings "
                              f"{llm['max_position_embeddings']}")
        config = LlamaConfig(**{**llm, "vocab_size": len(self.tokenizer), "bos_token_id": self.tokenizer.bos_token_id,
                                "eos_token_id": self.tokenizer.eos_token_id})
        self.model = LlamaForCausalLM(config)
        self.blocks = pack_blocks(read_texts(cfg.text), self.tokenizer, cfg.seq_len)
        self.val = pack_blocks(read_texts(cfg.val_text), self.tokenizer, cfg.seq_len) if cfg.val_text else None

    def __len__(self) -> int:
        return len(self.blocks)

    def batch(self, indices: Sequence[int], position: int) -> dict[str, torch.Tensor]:  # noqa: ARG002 - no randomness
        return {"input_ids": self.blocks[list(indices)]}

    def val_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.val is None:
            return
        for start in range(0, len(self.val), self.cfg.batch_size):
            yield {"input_ids": self.val[start:start + self.cfg.batch_size]}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        ids = batch["input_ids"].to(next(model.parameters()).device)
        return model(input_ids=ids, labels=ids).loss, {}

    def score(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, tuple[float, int]]:
        ids = batch["input_ids"].to(next(model.parameters()).device)
        predicted = model(input_ids=ids).logits[:, :-1].argmax(-1)
        return {"token_accuracy": (float((predicted == ids[:, 1:]).sum()), ids[:, 1:].numel())}

    def save_final(self, model: nn.Module, folder: Path) -> None:
        model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        if self.cfg.sample_prompts:
            texts = sample(model, self.tokenizer, self.cfg.sample_prompts, self.cfg.sample_tokens, self.cfg.seed)
            body = "".join(f"% sample {i + 1}\n{text.rstrip()}\n\n" for i, text in enumerate(texts))
            (folder / "samples.txt").write_text(body, encoding="utf-8")


@torch.no_grad()
def sample(model: nn.Module, tokenizer: LlamaTokenizer, prompts: Sequence[str], max_new_tokens: int,
           seed: int, temperature: float = 0.8, top_k: int = 40) -> list[str]:
    """One sampled continuation of each prompt (prompt included), stopping at ``</s>``."""
    was_training = model.training
    model.eval()
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)
    texts = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(next(model.parameters()).device)
        out = model.generate(ids, do_sample=True, temperature=temperature, top_k=top_k, max_new_tokens=max_new_tokens,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
        texts.append(tokenizer.decode(out[0], skip_special_tokens=True))
    torch.set_rng_state(generator_state)
    model.train(was_training)
    return texts
