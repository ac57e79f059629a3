"""Music filter for MUCaps: speech (Silero VAD), loudness (LUFS, ITU-R BS.1770 via pyloudnorm), silence, clipping.

Replaces the original's filter, whose "SNR >= 10" was really a loudness ceiling and which deleted
rejected files. Here every measurement and the decision with its reasons are returned (and
written to the filter log by the builder); no file is touched.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from m2ugen.errors import ConfigError

VAD_SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds; a clip is kept only if it passes every check.

    Attributes:
        max_speech_ratio: largest fraction of the clip that Silero VAD may mark as speech.
        vad_threshold: Silero speech probability threshold.
        min_lufs, max_lufs: allowed integrated loudness, LUFS.
        silence_dbfs: a 50 ms frame quieter than this (RMS, dBFS) counts as silent.
        max_silence_ratio: largest fraction of silent frames.
        clip_level: |sample| at or above this counts as clipped.
        max_clip_ratio: largest fraction of clipped samples.
        min_duration_s: shortest clip kept, seconds.
    """

    max_speech_ratio: float = 0.1
    vad_threshold: float = 0.5
    min_lufs: float = -40.0
    max_lufs: float = -5.0
    silence_dbfs: float = -60.0
    max_silence_ratio: float = 0.5
    clip_level: float = 0.999
    max_clip_ratio: float = 0.001
    min_duration_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("max_speech_ratio", "vad_threshold", "max_silence_ratio", "max_clip_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"FilterConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.min_lufs >= self.max_lufs:
            raise ConfigError(f"FilterConfig: min_lufs {self.min_lufs} must be below max_lufs {self.max_lufs}")


@dataclass(frozen=True)
class FilterDecision:
    """Measurements of one clip and the verdict. ``lufs`` is None when every block is under the BS.1770 absolute gate (-70 LUFS), e.g. silence."""

    keep: bool
    reasons: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    speech_ratio: float = 0.0
    lufs: float | None = None
    silence_ratio: float = 0.0
    clip_ratio: float = 0.0
    peak_dbfs: float | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _db(value: float) -> float | None:
    return round(20.0 * math.log10(value), 2) if value > 0 else None


class MusicFilter:
    """Measures clips and decides whether they are usable music. Loads the VAD model once."""

    def __init__(self, config: FilterConfig | None = None) -> None:
        from silero_vad import get_speech_timestamps, load_silero_vad

        self.config = config or FilterConfig()
        self._vad = load_silero_vad()
        self._timestamps = get_speech_timestamps

    def speech_ratio(self, wave: np.ndarray, sample_rate: int) -> float:
        """Fraction of ``wave`` (float32 mono, any rate) that Silero VAD marks as speech."""
        import soxr
        import torch

        audio = wave if sample_rate == VAD_SAMPLE_RATE else soxr.resample(wave, sample_rate, VAD_SAMPLE_RATE)
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.size == 0:
            return 0.0
        self._vad.reset_states()
        spans = self._timestamps(torch.from_numpy(audio), self._vad, threshold=self.config.vad_threshold, sampling_rate=VAD_SAMPLE_RATE)
        return float(sum(span["end"] - span["start"] for span in spans) / audio.size)

    def measure(self, wave: np.ndarray, sample_rate: int) -> FilterDecision:
        """Measure ``wave`` (float32 mono in [-1, 1], shape (T,)) and decide.

        Loudness needs at least 0.4 s (one BS.1770 block); shorter clips get ``lufs=None`` and fail
        the duration check anyway unless ``min_duration_s`` is lowered.
        """
        import pyloudnorm

        cfg = self.config
        wave = np.asarray(wave, dtype=np.float32)
        duration_s = wave.size / sample_rate
        frame = max(1, int(0.05 * sample_rate))
        frames = wave[: wave.size // frame * frame].reshape(-1, frame)
        rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) if frames.size else np.zeros(1)
        silence_ratio = float(np.mean(rms < 10.0 ** (cfg.silence_dbfs / 20.0)))
        peak = float(np.max(np.abs(wave))) if wave.size else 0.0
        clip_ratio = float(np.mean(np.abs(wave) >= cfg.clip_level)) if wave.size else 0.0
        lufs = None
        if duration_s >= 0.4:
            value = float(pyloudnorm.Meter(sample_rate).integrated_loudness(wave.astype(np.float64)))
            lufs = round(value, 2) if math.isfinite(value) else None
        speech = self.speech_ratio(wave, sample_rate)
        reasons = []
        if duration_s < cfg.min_duration_s:
            reasons.append(f"duration {duration_s:.2f} s < {cfg.min_duration_s} s")
        if speech > cfg.max_speech_ratio:
            reasons.append(f"speech ratio {speech:.2f} > {cfg.max_speech_ratio}")
        if lufs is None or lufs < cfg.min_lufs:
            reasons.append(f"loudness {lufs if lufs is not None else '-inf'} LUFS < {cfg.min_lufs}")
        elif lufs > cfg.max_lufs:
            reasons.append(f"loudness {lufs} LUFS > {cfg.max_lufs}")
        if silence_ratio > cfg.max_silence_ratio:
            reasons.append(f"silence ratio {silence_ratio:.2f} > {cfg.max_silence_ratio}")
        if clip_ratio > cfg.max_clip_ratio:
            reasons.append(f"clipped ratio {clip_ratio:.4f} > {cfg.max_clip_ratio}")
        return FilterDecision(
            keep=not reasons,
            reasons=reasons,
            duration_s=round(duration_s, 3),
            speech_ratio=round(speech, 4),
            lufs=lufs,
            silence_ratio=round(silence_ratio, 4),
            clip_ratio=round(clip_ratio, 6),
            peak_dbfs=_db(peak),
        )
