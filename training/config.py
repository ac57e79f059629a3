"""Training configuration: one dataclass, read from a JSON or YAML file, overridden by ``key=value``.

Relative paths (data files, media roots, ``output_dir``, ``init_from``) are taken as they are, i.e.
relative to the current directory of the process that trains.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from m2ugen.config import M2UGenConfig
from m2ugen.errors import ConfigError
from training.stages import STAGES, StageSpec

DATA_FORMATS: tuple[str, ...] = ("manifest", "mucaps", "mucaps_t2m", "coco", "muvideo_captions", "musicqa",
                                 "alpaca", "muimage", "muvideo", "muedit")
MIXED_PRECISION: tuple[str, ...] = ("auto", "no", "bf16", "fp16")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; this loader reads it as a float, like YAML 1.2 and JSON."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+"
               r"(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


@dataclass
class DataSource:
    """One data file.

    ``format``: ``manifest`` (our JSONL, docs/manifests.md) or a released M2UGen JSON:
    ``mucaps`` (audio captions), ``mucaps_t2m`` (the same file as text -> music, stage 2), ``coco``
    (image captions), ``muvideo_captions``, ``musicqa``, ``alpaca``, ``muimage``, ``muvideo``,
    ``muedit`` (instruction lists). ``media_root``: folder the media names are relative to (default:
    the manifest's folder, or the released layout's media folder next to the JSON). ``limit``: use
    only the first N records. ``repeat``: each record that many times per epoch (weights a source up).
    """

    format: str
    path: str
    media_root: str | None = None
    limit: int | None = None
    repeat: int = 1

    def __post_init__(self) -> None:
        if self.format not in DATA_FORMATS:
            raise ConfigError(f"data format {self.format!r} is unknown; use one of {', '.join(DATA_FORMATS)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"data limit must be >= 1, got {self.limit}")
        if self.repeat < 1:
            raise ConfigError(f"data repeat must be >= 1, got {self.repeat}")


def loop_setting_problems(cfg: Any) -> list[str]:
    """What is wrong with the training-loop settings every stage config shares (batch, steps, lr,
    logging, threads, precision): one message per problem."""
    problems = [f"{name} must be >= 1, got {getattr(cfg, name)}"
                for name in ("batch_size", "grad_accum", "log_every", "save_every", "keep_checkpoints")
                if getattr(cfg, name) < 1]
    if cfg.num_threads is not None and cfg.num_threads < 1:
        problems.append(f"num_threads must be >= 1, got {cfg.num_threads}")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        problems.append(f"max_steps must be >= 1, got {cfg.max_steps}")
    if cfg.epochs <= 0:
        problems.append(f"epochs must be > 0, got {cfg.epochs}")
    if not 0 <= cfg.min_lr <= cfg.lr:
        problems.append(f"need 0 <= min_lr <= lr, got min_lr={cfg.min_lr}, lr={cfg.lr}")
    if cfg.mixed_precision not in MIXED_PRECISION:
        problems.append(f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got {cfg.mixed_precision!r}")
    return problems


@dataclass
class TrainConfig:
    """Everything one training stage needs. ``None`` loss weights / trainable set mean the stage's defaults."""

    stage: str = "stage1"
    # Model: a preset name ("tiny", "paper-musicgen", ...) or a path to an M2UGenConfig JSON file.
    model: str = "tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    # Directory of the previous stage's final checkpoint (model.safetensors); its tensors are loaded first.
    init_from: str | None = None
    output_dir: str = "runs/stage1"
    data: list[DataSource] = field(default_factory=list)
    val_data: list[DataSource] = field(default_factory=list)
    # What trains and how the losses mix (explicit; defaults per stage in training/stages.py).
    trainable: list[str] | None = None
    ce_weight: float | None = None
    mse_weight: float | None = None
    # Optimisation.
    batch_size: int = 4  # per process
    grad_accum: int = 1
    epochs: float = 1.0
    max_steps: int | None = None  # optimizer steps; overrides epochs
    lr: float = 1e-4
    min_lr: float = 1e-6
    # LR multipliers per trainable parameter kind (training/stages.py named_groups), e.g. {gate: 20}.
    lr_scales: dict[str, float] = field(default_factory=dict)
    # Start every injection gate at tanh(gate) = gate_init (after init_from) instead of where it was;
    # None keeps them (zero in a new model). A short run on a small model learns faster with open gates.
    gate_init: float | None = None
    warmup_steps: int = 0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    mixed_precision: str = "auto"  # auto = bf16 on a GPU that supports it, else full precision
    gradient_checkpointing: bool = False
    seed: int = 0
    shuffle: bool = True
    num_threads: int | None = None  # CPU threads for torch (None: torch's default); 1 is fastest for tiny models
    # Text.
    max_tokens: int | None = None  # default: the model's max_context
    # Features of frozen encoders and decoder targets: in-memory LRU budget and optional disk cache.
    feature_cache_dir: str | None = None
    feature_memory_mb: float = 2048.0
    # Stop when more than this fraction of the samples seen had unreadable media or did not fit.
    max_bad_fraction: float = 0.05
    # Bookkeeping.
    log_every: int = 10
    save_every: int = 500
    keep_checkpoints: int = 2
    eval_every: int = 0  # 0: evaluate val_data only before the first and after the last step
    progress: bool = True

    def __post_init__(self) -> None:
        self.data = [d if isinstance(d, DataSource) else _data_source(d) for d in self.data]
        self.val_data = [d if isinstance(d, DataSource) else _data_source(d) for d in self.val_data]
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        problems = []
        if self.stage not in STAGES:
            problems.append(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        problems += loop_setting_problems(self)
        if len(self.betas) != 2:
            problems.append(f"betas must be two numbers, got {self.betas}")
        if not 0 <= self.max_bad_fraction <= 1:
            problems.append(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")
        if self.gate_init is not None and not -1 < self.gate_init < 1:
            problems.append(f"gate_init is tanh(gate), so it must be in (-1, 1), got {self.gate_init}")
        if problems:
            raise ConfigError("training config: " + "; ".join(problems))

    @property
    def spec(self) -> StageSpec:
        return STAGES[self.stage]

    @property
    def trainable_kinds(self) -> tuple[str, ...]:
        return tuple(self.trainable) if self.trainable is not None else self.spec.trainable

    @property
    def loss_weights(self) -> tuple[float, float]:
        ce = self.spec.ce_weight if self.ce_weight is None else self.ce_weight
        mse = self.spec.mse_weight if self.mse_weight is None else self.mse_weight
        return float(ce), float(mse)

    def model_config(self) -> M2UGenConfig:
        return model_config(self.model, self.model_overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Fields that may differ on --resume without changing what is trained (bookkeeping and speed only).
RESUME_FREE: frozenset[str] = frozenset({"output_dir", "progress", "log_every", "save_every", "keep_checkpoints",
                                         "eval_every", "num_threads", "feature_cache_dir", "feature_memory_mb"})


def changed_settings(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``"name: saved -> now"`` for each training setting that differs (JSON values; bookkeeping ignored)."""
    saved, now = json.loads(json.dumps(saved)), json.loads(json.dumps(now))
    return [f"{k}: {json.dumps(saved.get(k))} -> {json.dumps(now.get(k))}" for k in sorted(set(saved) | set(now))
            if k not in RESUME_FREE and saved.get(k) != now.get(k)]


def model_config(model: str, overrides: dict[str, Any]) -> M2UGenConfig:
    """The network's config: preset name or JSON file ``model``, then ``overrides`` of its fields."""
    path = Path(model)
    base = M2UGenConfig.load(path) if path.suffix == ".json" or path.is_file() else M2UGenConfig.preset(model)
    unknown = sorted(set(overrides) - set(base.to_dict()))
    if unknown:
        raise ConfigError(f"training config: model_overrides has unknown keys {unknown}")
    return dataclasses.replace(base, **overrides)


def _data_source(obj: Any, name: str = "data") -> DataSource:
    if not isinstance(obj, dict):
        raise ConfigError(f"training config: {name} must be a mapping with format and path, got {obj!r}")
    hints = typing.get_type_hints(DataSource)
    unknown = sorted(set(obj) - set(hints))
    if unknown or "format" not in obj or "path" not in obj:
        raise ConfigError(f"{name} {obj!r}: needs 'format' and 'path'; allowed keys: {sorted(hints)}")
    return DataSource(**{key: _check(f"{name}.{key}", value, hints[key]) for key, value in obj.items()})


def _parse_value(text: str) -> Any:
    """JSON first (so ``1e-3`` is a number), then YAML (``[a, b]``), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        return text


def _check(name: str, value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` asks for, or a ConfigError naming the key.

    Numbers written as strings (YAML 1.1 reads some as text, overrides are text) become numbers; ints
    become floats where a float is asked for. Data entries stay mappings (``_data_source`` checks them).
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(name, value, inner[0]) if len(inner) == 1 else value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"training config: {name} must be true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, str) and value:
            try:
                value = hint(value)
            except ValueError:
                pass
        if isinstance(value, int | float) and not isinstance(value, bool) and (hint is float or float(value).is_integer()):
            return hint(value)
        kind = "an integer" if hint is int else "a number"
        raise ConfigError(f"training config: {name} must be {kind}, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"training config: {name} must be a string, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"training config: {name} must be a list, got {value!r}")
        if origin is tuple and len(args) != len(value):
            raise ConfigError(f"training config: {name} must be {len(args)} items, got {value!r}")
        items = args if origin is tuple else args * len(value)
        return origin(_check(f"{name}[{i}]", v, h) for i, (v, h) in enumerate(zip(value, items)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"training config: {name} must be a mapping, got {value!r}")
        return value
    if hint is DataSource:
        return value if isinstance(value, DataSource) else _data_source(value, name)
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` (``a.b=value`` for nested mappings) to a raw config dict."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value")
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a mapping")
        node[last] = _parse_value(text)
    return data


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    hints = typing.get_type_hints(TrainConfig)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"training config: unknown keys {unknown}; known: {sorted(hints)}")
    return TrainConfig(**{name: _check(name, value, hints[name]) for name, value in data.items()})


def read_config_file(path: str | Path | None) -> dict[str, Any]:
    """The mapping of a JSON/YAML config file (empty for ``None``), or a ConfigError naming the file."""
    if path is None:
        return {}
    path = Path(path)
    try:
        loaded = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError:
        raise ConfigError(f"{path}: training config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the training config ({err})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML/JSON ({str(err).splitlines()[0]})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a training config must be a mapping, got {type(loaded).__name__}")
    return dict(loaded or {})


def load_config(path: str | Path | None, overrides: list[str] | None = None, stage: str | None = None) -> TrainConfig:
    """Read a JSON/YAML file (or start from defaults), set ``stage``, apply ``key=value`` overrides."""
    data = read_config_file(path)
    if stage is not None:
        if data.get("stage", stage) != stage:
            raise ConfigError(f"{path}: the file is for {data['stage']}, but {stage} was asked for")
        data["stage"] = stage
    return config_from_dict(apply_overrides(data, list(overrides or [])))
