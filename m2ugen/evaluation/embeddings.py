"""Audio embedding models loaded from local folders: CLAP (audio and text), EnCodec, an audio tagger.

Each model reads the WHOLE clip: it is cut into consecutive windows of the model's length (the last
one padded the model's own way) and every window is embedded, so nothing after the first 10 s is
dropped. ``embed`` returns one row per window; clip-level vectors are the mean of the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from m2ugen.evaluation.weights import require_model_dir


def _resample(samples: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """float32 mono (S,) at ``target_rate``."""
    import soxr

    mono = np.asarray(samples, dtype=np.float32)
    mono = mono if mono.ndim == 1 else mono.mean(axis=0)
    return mono if sample_rate == target_rate else soxr.resample(mono, sample_rate, target_rate).astype(np.float32)


def _windows(samples: np.ndarray, window: int) -> list[np.ndarray]:
    """Consecutive windows of ``window`` samples covering all of ``samples`` (the last may be shorter)."""
    if samples.size == 0:
        raise ValueError("cannot embed an empty clip")
    return [samples[i:i + window] for i in range(0, samples.size, window)]


def _pooled(output: Any) -> torch.Tensor:
    """transformers returns a tensor or (v5) an output whose ``pooler_output`` is the projected embedding."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@dataclass
class ClapEmbedder:
    """CLAP (transformers ``ClapModel``): audio and text embeddings in one space, 10 s windows at 48 kHz.

    Load with :meth:`from_dir` from a folder holding e.g. ``laion/clap-htsat-unfused`` saved with
    ``save_pretrained`` (model, feature extractor and tokenizer).
    """

    model: Any
    feature_extractor: Any
    tokenizer: Any
    name: str = "clap"

    @classmethod
    def from_dir(cls, path: str | Path | None) -> "ClapEmbedder":
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

        folder = require_model_dir(path, what="CLAP model", option="--clap", example="laion/clap-htsat-unfused")
        model = ClapModel.from_pretrained(folder, local_files_only=True).eval()
        return cls(model, ClapFeatureExtractor.from_pretrained(folder, local_files_only=True),
                   AutoTokenizer.from_pretrained(folder, local_files_only=True))

    @property
    def sample_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    @torch.inference_mode()
    def embed(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """(W, D) audio embeddings, one per 10 s window of the whole clip."""
        audio = _resample(samples, sample_rate, self.sample_rate)
        window = int(self.feature_extractor.nb_max_samples)
        inputs = self.feature_extractor(_windows(audio, window), sampling_rate=self.sample_rate, return_tensors="pt",
                                        truncation="rand_trunc", padding="repeatpad")
        # One window never exceeds the model's length, so "rand_trunc" never truncates (nothing random).
        return _pooled(self.model.get_audio_features(input_features=inputs["input_features"])).numpy()

    @torch.inference_mode()
    def embed_text(self, texts: list[str]) -> np.ndarray:
        """(N, D) text embeddings."""
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        return _pooled(self.model.get_text_features(input_ids=tokens["input_ids"],
                                                    attention_mask=tokens["attention_mask"])).numpy()


@dataclass
class EncodecEmbedder:
    """EnCodec's encoder (transformers ``EncodecModel``): one continuous latent frame per hop (75 Hz at 24 kHz)."""

    model: Any
    sample_rate: int
    name: str = "encodec"
    chunk_seconds: float = 30.0  # encoder input per call, to bound memory on long clips

    @classmethod
    def from_dir(cls, path: str | Path | None) -> "EncodecEmbedder":
        from transformers import EncodecModel

        folder = require_model_dir(path, what="EnCodec model", option="--encodec", example="facebook/encodec_24khz")
        model = EncodecModel.from_pretrained(folder, local_files_only=True).eval()
        return cls(model, int(model.config.sampling_rate))

    @torch.inference_mode()
    def embed(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """(T, D) latent frames of the whole clip (mono input; channels are averaged first)."""
        audio = _resample(samples, sample_rate, self.sample_rate)
        channels = int(self.model.config.audio_channels)
        frames = []
        for chunk in _windows(audio, int(self.chunk_seconds * self.sample_rate)):
            x = torch.from_numpy(chunk).reshape(1, 1, -1).expand(1, channels, -1)
            frames.append(self.model.encoder(x)[0].T.numpy())
        return np.concatenate(frames, axis=0)


@dataclass
class AudioTagger:
    """An audio classifier (transformers ``AutoModelForAudioClassification``, e.g. an AudioSet AST).

    :meth:`posterior` is the clip's class distribution: softmax of the logits averaged over windows.
    """

    model: Any
    feature_extractor: Any
    name: str = "tagger"
    window_seconds: float = 10.0

    @classmethod
    def from_dir(cls, path: str | Path | None) -> "AudioTagger":
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        folder = require_model_dir(path, what="audio tagger", option="--tagger",
                                   example="MIT/ast-finetuned-audioset-10-10-0.4593")
        model = AutoModelForAudioClassification.from_pretrained(folder, local_files_only=True).eval()
        return cls(model, AutoFeatureExtractor.from_pretrained(folder, local_files_only=True))

    @property
    def sample_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    @torch.inference_mode()
    def logits(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """(W, C) class logits, one row per window of the whole clip."""
        audio = _resample(samples, sample_rate, self.sample_rate)
        windows = _windows(audio, int(self.window_seconds * self.sample_rate))
        inputs = self.feature_extractor(windows, sampling_rate=self.sample_rate, return_tensors="pt")
        return self.model(**inputs).logits.float().numpy()

    def posterior(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """(C,) class probabilities of the whole clip."""
        mean = self.logits(samples, sample_rate).mean(axis=0)
        exp = np.exp(mean - mean.max())
        return exp / exp.sum()
