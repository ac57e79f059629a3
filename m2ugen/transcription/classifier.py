"""A small fully connected classifier (standardise, ReLU layers, softmax) run with numpy from safetensors.

The transcription models (instrument of a note, metre and beat level of a piece) are trained with
scikit-learn by ``training/transcription_models.py`` and shipped as ``.safetensors`` files in
``m2ugen/assets/transcription``: weights only, no pickled code.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m2ugen.errors import ConfigError

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "transcription"


@dataclass(frozen=True)
class Classifier:
    """``labels[argmax(softmax(relu(...relu(((x - mean) / scale) @ W0 + b0)...) @ Wn + bn))]``.

    Attributes:
        mean, scale: ``(F,)`` feature standardisation.
        layers: ``(W (in, out), b (out,))`` per layer; ReLU between layers.
        labels: the class of each output, as strings.
    """

    mean: np.ndarray
    scale: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    labels: tuple[str, ...]

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, C)`` of features ``(N, F)``."""
        hidden = (np.asarray(features, dtype=np.float32) - self.mean) / self.scale
        for index, (weight, bias) in enumerate(self.layers):
            hidden = hidden @ weight + bias
            if index < len(self.layers) - 1:
                hidden = np.maximum(hidden, 0.0)
        hidden = hidden - hidden.max(axis=1, keepdims=True)
        exp = np.exp(hidden)
        return exp / exp.sum(axis=1, keepdims=True)

    def save(self, path: str | Path, **metadata: str) -> Path:
        """Write the weights to ``path`` (safetensors); ``metadata`` (e.g. training figures) goes in its header."""
        from safetensors.numpy import save_file

        tensors = {"mean": self.mean.astype(np.float32), "scale": self.scale.astype(np.float32)}
        for index, (weight, bias) in enumerate(self.layers):
            tensors[f"layer{index}.weight"] = weight.astype(np.float32)
            tensors[f"layer{index}.bias"] = bias.astype(np.float32)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={"labels": json.dumps(list(self.labels)), **metadata})
        return path

    @classmethod
    def load(cls, path: str | Path) -> Classifier:
        """Read a classifier written by :meth:`save`."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: transcription model missing (train it with training/transcription_models.py)")
        with safe_open(str(path), framework="numpy") as handle:
            labels = tuple(json.loads(handle.metadata()["labels"]))
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        n_layers = sum(1 for name in tensors if name.endswith(".weight"))
        layers = tuple((tensors[f"layer{i}.weight"], tensors[f"layer{i}.bias"]) for i in range(n_layers))
        return cls(tensors["mean"], tensors["scale"], layers, labels)


@functools.lru_cache(maxsize=4)
def load_asset(name: str) -> Classifier:
    """A shipped model by file stem, e.g. ``"instrument"``; loaded once per process."""
    return Classifier.load(ASSETS / f"{name}.safetensors")


def from_sklearn(model, mean: np.ndarray, scale: np.ndarray, labels: list[str]) -> Classifier:
    """Wrap a fitted ``sklearn.neural_network.MLPClassifier`` (softmax output) or ``LogisticRegression``."""
    if hasattr(model, "coefs_"):
        layers = tuple((w.astype(np.float32), b.astype(np.float32)) for w, b in zip(model.coefs_, model.intercepts_))
    else:
        layers = ((model.coef_.T.astype(np.float32), model.intercept_.astype(np.float32)),)
    if layers[-1][0].shape[1] == 1:  # binary sklearn models output one logit; make it two
        weight, bias = layers[-1]
        layers = layers[:-1] + ((np.concatenate([-weight / 2, weight / 2], axis=1), np.concatenate([-bias / 2, bias / 2])),)
    return Classifier(mean.astype(np.float32), scale.astype(np.float32), layers, tuple(labels))
