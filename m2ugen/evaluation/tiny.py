"""Tiny models with random weights for the evaluation's local-folder loaders (``--demo`` and tests).

Each is the real architecture at toy size, saved with ``save_pretrained`` so that it is loaded
exactly like a downloaded model. Their scores mean nothing: they exercise the pipeline.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

TINY_MODELS: tuple[str, ...] = ("clap", "encodec", "tagger", "bertscore")
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _write_tokenizer(folder: Path):
    """A WordPiece tokenizer whose vocabulary is single characters (any English text tokenizes)."""
    from transformers import BertTokenizer

    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = _SPECIALS + chars + ["##" + c for c in string.ascii_lowercase + string.digits]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=512)
    tokenizer.save_pretrained(folder)
    return tokenizer


def write_tiny_models(root: str | Path, *, kinds: tuple[str, ...] = TINY_MODELS, seed: int = 0) -> dict[str, Path]:
    """Write the tiny models of ``kinds`` (CLAP, EnCodec, audio tagger, BERTScore encoder) under ``root``
    (each into ``root/<kind>``, kept when already there); returns their folders."""
    from transformers import (ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, BertConfig, BertModel,
                              EncodecConfig, EncodecModel)

    root = Path(root)
    torch.manual_seed(seed)
    folders = {name: root / name for name in kinds}
    todo = {name for name, folder in folders.items() if not (folder / "config.json").is_file()}
    if "clap" in todo:
        _write_clap(folders["clap"])
    if "encodec" in todo:
        EncodecModel(EncodecConfig(
            target_bandwidths=[1.5], sampling_rate=24000, audio_channels=1, hidden_size=16, num_filters=4,
            num_residual_layers=1, upsampling_ratios=[8, 5, 4, 2], codebook_size=16, codebook_dim=16,
        )).save_pretrained(folders["encodec"])
    if "tagger" in todo:
        labels = ["music", "speech", "piano", "violin", "flute", "guitar", "drums", "singing"]
        ASTForAudioClassification(ASTConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_length=1024,
            num_mel_bins=128, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
        )).save_pretrained(folders["tagger"])
        ASTFeatureExtractor().save_pretrained(folders["tagger"])
    if "bertscore" in todo:
        bert_tokenizer = _write_tokenizer(folders["bertscore"])
        BertModel(BertConfig(vocab_size=len(bert_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=512)).save_pretrained(folders["bertscore"])
    return folders


def _write_clap(folder: Path) -> None:
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    tokenizer = _write_tokenizer(folder)
    clap = ClapModel(ClapConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=80, pad_token_id=0),
        audio_config=dict(depths=[1, 1], num_attention_heads=[1, 2], patch_embeds_hidden_size=16, hidden_size=32,
                          enable_fusion=False, projection_hidden_size=64),
        projection_dim=16))
    clap.save_pretrained(folder)
    ClapFeatureExtractor().save_pretrained(folder)
