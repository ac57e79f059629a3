"""Finding the local model folders that the evaluation's embedding models and scorers load from.

Nothing is ever downloaded: every model is a folder written by transformers' ``save_pretrained``
(``config.json`` plus ``model.safetensors`` or ``pytorch_model.bin``, and the preprocessor/tokenizer
files). A missing folder gives one :class:`WeightsMissingError` saying what to put where.
"""

from __future__ import annotations

from pathlib import Path

from m2ugen.errors import ConfigError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


class WeightsMissingError(ConfigError):
    """A metric needs a local model folder that was not given or holds no weights."""


def require_model_dir(path: str | Path | None, *, what: str, option: str, example: str) -> Path:
    """``path`` as a Path once it holds a transformers model (config.json and weights).

    Args:
        what: the model's role, e.g. "CLAP model".
        option: the command-line option that names it, e.g. "--clap".
        example: a public model that fits, e.g. "laion/clap-htsat-unfused".

    Raises:
        WeightsMissingError: naming the folder, the files it lacks and the option to pass.
    """
    hint = (f"save a transformers {what} (e.g. {example}) with save_pretrained() into a folder "
            f"and pass it with {option} DIR")
    if path is None:
        raise WeightsMissingError(f"no {what} given: {hint}")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise WeightsMissingError(f"{folder}: no such folder for the {what}: {hint}")
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append("model.safetensors (or pytorch_model.bin)")
    if missing:
        raise WeightsMissingError(f"{folder}: the {what} folder lacks {' and '.join(missing)}: {hint}")
    return folder
