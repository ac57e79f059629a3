"""Configs of the pretraining stages: ``tokenizer``, ``pretrain-lm`` and ``pretrain-encoder``.

Read like the M2UGen stages' configs (JSON/YAML file, then ``key=value`` overrides; relative paths
are relative to the current directory). The network sizes come from an M2UGen preset (``model``,
default ``mini``): ``pretrain-lm`` builds its ``llm_config``, ``pretrain-encoder`` its ``mert_config``.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field
from typing import Any

from m2ugen.config import M2UGenConfig
from m2ugen.errors import ConfigError
from training.config import (DATA_FORMATS, _check, apply_overrides, loop_setting_problems, model_config,
                             read_config_file)

TEXT_FORMATS: tuple[str, ...] = ("music21_abc", "clips", *DATA_FORMATS)
SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass
class TextSource:
    """Text for the tokenizer and the language model.

    ``music21_abc``: the ABC tunes of the corpus builder's default collections of music21's corpus
    (``path``: optional corpus ``clips.jsonl``; its valid/test works are left out). ``clips``: the ABC score of every
    clip of ``split`` in a corpus ``clips.jsonl``. Any data format of the M2UGen stages (``manifest``,
    ``musicqa``, ...): each record's instruction and response. ``limit``: the first N texts only.
    ``repeat``: each text that many times (weights a source up, e.g. the composition requests).
    """

    format: str
    path: str | None = None
    split: str = "train"
    limit: int | None = None
    repeat: int = 1

    def __post_init__(self) -> None:
        if self.format not in TEXT_FORMATS:
            raise ConfigError(f"text format {self.format!r} is unknown; use one of {', '.join(TEXT_FORMATS)}")
        if self.path is None and self.format != "music21_abc":
            raise ConfigError(f"text format {self.format!r} needs a path")
        if self.split not in SPLITS:
            raise ConfigError(f"text split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"text limit must be >= 1, got {self.limit}")
        if self.repeat < 1:
            raise ConfigError(f"text repeat must be >= 1, got {self.repeat}")


def _text_sources(value: list[Any], name: str) -> list[TextSource]:
    hints = typing.get_type_hints(TextSource)
    sources = []
    for i, obj in enumerate(value):
        if isinstance(obj, TextSource):
            sources.append(obj)
            continue
        if not isinstance(obj, dict) or "format" not in obj or set(obj) - set(hints):
            raise ConfigError(f"{name}[{i}] {obj!r}: needs 'format'; allowed keys: {sorted(hints)}")
        sources.append(TextSource(**{k: _check(f"{name}[{i}].{k}", v, hints[k]) for k, v in obj.items()}))
    return sources


@dataclass
class TokenizerConfig:
    """A sentencepiece BPE model of ``vocab_size`` pieces (byte fallback, newlines kept) in HF LLaMA layout."""

    stage: str = "tokenizer"
    output_dir: str = "runs/mini/tokenizer"
    text: list[TextSource] = field(default_factory=list)
    vocab_size: int = 2048
    num_threads: int = 1

    def __post_init__(self) -> None:
        self.text = _text_sources(self.text, "text")
        if not self.text:
            raise ConfigError("tokenizer config: text must name at least one source")
        if self.vocab_size < 300:
            raise ConfigError(f"tokenizer config: vocab_size must be >= 300 (256 byte pieces + specials), "
                              f"got {self.vocab_size}")
        if self.num_threads < 1:
            raise ConfigError(f"tokenizer config: num_threads must be >= 1, got {self.num_threads}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PretrainConfig:
    """What both pretraining loops share: network preset, optimisation and bookkeeping (as in TrainConfig)."""

    stage: str = ""
    model: str = "mini"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    output_dir: str = "runs/pretrain"
    batch_size: int = 8
    grad_accum: int = 1
    epochs: float = 1.0
    max_steps: int | None = None
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    mixed_precision: str = "auto"
    seed: int = 0
    shuffle: bool = True
    num_threads: int | None = None
    log_every: int = 10
    save_every: int = 200
    keep_checkpoints: int = 2
    eval_every: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        problems = loop_setting_problems(self)
        if problems:
            raise ConfigError(f"{self.stage} config: " + "; ".join(problems))

    def model_config(self) -> M2UGenConfig:
        return model_config(self.model, self.model_overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LMConfig(PretrainConfig):
    """``pretrain-lm``: a LlamaForCausalLM from scratch on packed blocks of ``seq_len`` tokens.

    ``sample_prompts``: after training, one sampled continuation of each is written to ``final/samples.txt``
    (each after a ``% sample N`` line, an ABC comment).
    """

    stage: str = "pretrain-lm"
    tokenizer: str = "runs/mini/tokenizer"
    text: list[TextSource] = field(default_factory=list)
    val_text: list[TextSource] = field(default_factory=list)
    seq_len: int = 512
    sample_prompts: list[str] = field(default_factory=list)
    sample_tokens: int = 400

    def __post_init__(self) -> None:
        super().__post_init__()
        self.text = _text_sources(self.text, "text")
        self.val_text = _text_sources(self.val_text, "val_text")
        if not self.text:
            raise ConfigError("pretrain-lm config: text must name at least one source")
        if self.seq_len < 8 or self.sample_tokens < 1:
            raise ConfigError(f"pretrain-lm config: need seq_len >= 8 and sample_tokens >= 1, got {self.seq_len}, "
                              f"{self.sample_tokens}")


@dataclass
class EncoderConfig(PretrainConfig):
    """``pretrain-encoder``: a MERT-architecture HubertModel on rendered corpus clips with their exact labels.

    ``clips``: corpus ``clips.jsonl`` files; clips of ``train_split`` train, of ``val_split`` evaluate
    (the first ``val_limit`` of them, each from its start). ``crop_seconds``: length of the random
    crop one training sample is. ``loss_weights``: per head (pitch, onset, family, key, metre, tempo,
    style, families), 1.0 when not given. ``front_end_init``: ``"gabor"`` starts the first convolution
    (the filter bank) as cosine/sine pairs at log-spaced frequencies instead of random; ``None``: random.
    """

    stage: str = "pretrain-encoder"
    clips: list[str] = field(default_factory=list)
    train_split: str = "train"
    val_split: str | None = "valid"
    val_limit: int | None = 200
    crop_seconds: float = 6.0
    loss_weights: dict[str, float] = field(default_factory=dict)
    front_end_init: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.front_end_init not in (None, "gabor"):
            raise ConfigError(f"pretrain-encoder config: front_end_init must be 'gabor' or null, got {self.front_end_init!r}")
        if not self.clips:
            raise ConfigError("pretrain-encoder config: clips must name at least one clips.jsonl")
        if self.train_split not in SPLITS or self.val_split not in (*SPLITS, None):
            raise ConfigError(f"pretrain-encoder config: splits must be one of {', '.join(SPLITS)}")
        if self.crop_seconds <= 0:
            raise ConfigError(f"pretrain-encoder config: crop_seconds must be > 0, got {self.crop_seconds}")
        if self.val_limit is not None and self.val_limit < 1:
            raise ConfigError(f"pretrain-encoder config: val_limit must be >= 1, got {self.val_limit}")


CONFIG_CLASSES: dict[str, type] = {"tokenizer": TokenizerConfig, "pretrain-lm": LMConfig,
                                   "pretrain-encoder": EncoderConfig}


def load_pretrain_config(stage: str, path: str | None, overrides: list[str] | None = None) -> Any:
    """The config of pretraining ``stage`` from a JSON/YAML file (or defaults) and ``key=value`` overrides."""
    data = read_config_file(path)
    if data.get("stage", stage) != stage:
        raise ConfigError(f"{path}: the file is for {data['stage']}, but {stage} was asked for")
    data = apply_overrides({**data, "stage": stage}, list(overrides or []))
    cls = CONFIG_CLASSES[stage]
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"{stage} config: unknown keys {unknown}; known: {sorted(hints)}")
    return cls(**{name: _check(name, value, hints[name]) for name, value in data.items()})
