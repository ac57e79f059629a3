"""``m2ugen-train tokenizer``: a sentencepiece BPE model trained on the pretraining text, in HF LLaMA layout.

LLaMA's conventions: ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2, no pad piece, byte fallback (any text encodes).
Unlike LLaMA, whitespace is kept exactly (no normalisation, runs of spaces stay) and ``"\\n"`` is one
piece, because ABC scores are line-based. The folder loads with ``transformers.LlamaTokenizer`` and
:func:`m2ugen.tokenizer.load_tokenizer`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm
from transformers import LlamaTokenizer

from m2ugen.errors import ConfigError
from training.pretrain_config import TokenizerConfig
from training.text_data import read_texts


@dataclass
class TokenizerResult:
    output_dir: Path
    vocab_size: int
    texts: int
    chars_per_token: float


def train_sentencepiece(texts: list[str], vocab_size: int, num_threads: int = 1) -> bytes:
    """A serialised sentencepiece BPE model of at most ``vocab_size`` pieces."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, model_type="bpe", vocab_size=vocab_size,
        hard_vocab_limit=False, byte_fallback=True, character_coverage=0.9999, split_digits=False,
        normalization_rule_name="identity", remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        user_defined_symbols=["\n"], unk_id=0, bos_id=1, eos_id=2, pad_id=-1, max_sentence_length=1 << 16,
        input_sentence_size=0, shuffle_input_sentence=False, num_threads=num_threads, minloglevel=2)
    return model.getvalue()


def run_tokenizer(cfg: TokenizerConfig) -> TokenizerResult:
    """Train the tokenizer of ``cfg`` and write it (``tokenizer.model`` + HF files) to ``output_dir``."""
    out = Path(cfg.output_dir)
    if out.exists():
        raise ConfigError(f"{out} already exists; choose another output_dir for the tokenizer")
    texts = read_texts(cfg.text)
    model = train_sentencepiece(texts, cfg.vocab_size, cfg.num_threads)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / "tokenizer.model").write_bytes(model)
    tokenizer = LlamaTokenizer.from_pretrained(tmp, add_bos_token=True, add_eos_token=False)
    tokenizer.save_pretrained(tmp)
    sample = texts[:: max(1, len(texts) // 500)]
    tokens = sum(len(ids) for ids in tokenizer(sample, add_special_tokens=False)["input_ids"])
    chars_per_token = sum(len(t) for t in sample) / max(1, tokens)
    (tmp / "training.json").write_text(json.dumps({"config": cfg.to_dict(), "texts": len(texts),
                                                   "vocab_size": len(tokenizer),
                                                   "chars_per_token": round(chars_per_token, 3)}, indent=2) + "\n")
    os.replace(tmp, out)
    return TokenizerResult(out, len(tokenizer), len(texts), chars_per_token)
