"""Tokenizer loading: LLaMA's sentencepiece tokenizer plus the [AUD0..7] tokens."""

from __future__ import annotations

from pathlib import Path

from transformers import LlamaTokenizer, PreTrainedTokenizerBase

from m2ugen.errors import CheckpointError


def aud_token_strings(num: int) -> list[str]:
    return [f"[AUD{i}]" for i in range(num)]


def load_tokenizer(path: str | Path, num_aud_tokens: int, base_vocab_size: int) -> PreTrainedTokenizerBase:
    """Load the tokenizer of a local directory and make sure the [AUD] tokens follow the base vocabulary.

    The [AUD] ids must be ``base_vocab_size .. base_vocab_size + num_aud_tokens - 1`` so that they index
    the LLM's new embedding rows. Padding is on the left, for batched generation.
    """
    path = Path(path)
    if not path.is_dir() or not any((path / f).is_file() for f in ("tokenizer.model", "tokenizer.json")):
        raise CheckpointError(f"tokenizer: {path} has neither tokenizer.model nor tokenizer.json")
    tokenizer = LlamaTokenizer.from_pretrained(path, add_bos_token=True, add_eos_token=False)
    wanted = aud_token_strings(num_aud_tokens)
    missing = [t for t in wanted if t not in tokenizer.get_vocab()]
    if missing:
        if len(tokenizer) != base_vocab_size:
            raise CheckpointError(f"tokenizer at {path} has {len(tokenizer)} tokens but the LLM has "
                                  f"{base_vocab_size}; they must match before the [AUD] tokens are added")
        tokenizer.add_tokens(missing)
    ids = tokenizer.convert_tokens_to_ids(wanted)
    if ids != list(range(base_vocab_size, base_vocab_size + num_aud_tokens)):
        raise CheckpointError(f"tokenizer at {path}: [AUD] ids {ids} do not follow the LLM vocabulary "
                              f"of {base_vocab_size} tokens")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token
    tokenizer.padding_side = "left"
    return tokenizer
