"""Timbre features of a note: its harmonic profile over the first 0.6 s, from short spectra at the note's pitch.

Each note is described by spectra (2048-sample Hann windows) at :data:`FRAME_TIMES_S` after its onset;
in each, the level of the partials 0.5, 1, 1.5, 2, ... 12 times the note's fundamental (the largest
magnitude within 2.5 % of the partial's frequency) and the spectral centroid relative to the
fundamental. Levels are in dB below the note's loudest partial, so the features do not depend on the
recording level or (to first order) on the pitch; the pitch and duration are added as such (not the
velocity: note engines and sound fonts disagree about loudness).
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 22050
N_FFT = 2048
FRAME_TIMES_S = (-0.03, 0.0, 0.03, 0.06, 0.1, 0.15, 0.22, 0.3, 0.45, 0.6)
PARTIALS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0)
FLOOR_DB = -80.0
N_FEATURES = len(FRAME_TIMES_S) * (len(PARTIALS) + 2) + 2


def _bin_ranges(pitches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last FFT bin (N, P) of the band within 2.5 % of each partial; past Nyquist: empty."""
    f0 = 440.0 * 2.0 ** ((pitches[:, None] - 69) / 12.0)
    freqs = f0 * np.asarray(PARTIALS)[None, :]
    hz_per_bin = SAMPLE_RATE / N_FFT
    low = np.floor(freqs * 0.975 / hz_per_bin).astype(int)
    high = np.ceil(freqs * 1.025 / hz_per_bin).astype(int)
    high = np.maximum(high, low + 1)
    return np.clip(low, 0, N_FFT // 2), np.clip(high, 0, N_FFT // 2)


def note_features(audio: np.ndarray, notes: list[tuple[float, float, int]], *, chunk: int = 256) -> np.ndarray:
    """Features ``(N, N_FEATURES)`` of ``notes`` = (onset_s, offset_s, pitch, ...) in ``audio``.

    Args:
        audio: mono samples ``(S,)`` at :data:`SAMPLE_RATE`.
        notes: the notes to describe.
        chunk: notes analysed at once (memory: about 80 kB per note).
    """
    if not notes:
        return np.zeros((0, N_FEATURES), dtype=np.float32)
    padded = np.concatenate([np.zeros(N_FFT, np.float32), audio.astype(np.float32), np.zeros(N_FFT * 8, np.float32)])
    return np.concatenate([_features(padded, notes[i : i + chunk]) for i in range(0, len(notes), chunk)])


def _features(padded: np.ndarray, notes: list[tuple[float, float, int]]) -> np.ndarray:
    n = len(notes)
    onsets = np.array([note[0] for note in notes])
    pitches = np.array([note[2] for note in notes], dtype=float)
    centers = (onsets[:, None] + np.asarray(FRAME_TIMES_S)[None, :]) * SAMPLE_RATE + N_FFT
    starts = np.clip(np.round(centers - N_FFT // 2).astype(int), 0, padded.size - N_FFT)
    frames = padded[starts[..., None] + np.arange(N_FFT)]  # (N, T, N_FFT)
    spectra = np.abs(np.fft.rfft(frames * np.hanning(N_FFT).astype(np.float32), axis=-1))  # (N, T, F)
    low, high = _bin_ranges(pitches)
    partial_levels = np.zeros((n, len(FRAME_TIMES_S), len(PARTIALS)), dtype=np.float32)
    for p in range(len(PARTIALS)):
        width = int((high[:, p] - low[:, p]).max()) + 1
        index = np.minimum(low[:, p, None] + np.arange(width)[None, :], N_FFT // 2)  # (N, W)
        valid = (np.arange(width)[None, :] <= (high[:, p] - low[:, p])[:, None]) & (high[:, p, None] < N_FFT // 2)
        band = np.take_along_axis(spectra, np.broadcast_to(index[:, None, :], (n, spectra.shape[1], width)), axis=2)
        partial_levels[:, :, p] = np.where(valid[:, None, :], band, 0.0).max(axis=2)
    decibels = 20.0 * np.log10(partial_levels + 1e-6)
    reference = decibels.max(axis=(1, 2), keepdims=True)
    relative = np.clip(decibels - reference, FLOOR_DB, 0.0) / -FLOOR_DB  # (N, T, P) in [-1, 0]
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    power = spectra ** 2
    centroid = (power * freqs).sum(axis=2) / (power.sum(axis=2) + 1e-12)
    f0 = 440.0 * 2.0 ** ((pitches - 69) / 12.0)
    centroid_octaves = np.log2(np.maximum(centroid, 1.0) / f0[:, None]) / 4.0  # (N, T)
    loudness = np.clip(20.0 * np.log10(np.sqrt(power.sum(axis=2)) + 1e-6) - reference[:, :, 0], FLOOR_DB, 20.0) / -FLOOR_DB
    durations = np.array([max(note[1] - note[0], 0.01) for note in notes])
    extra = np.stack([(pitches - 60.0) / 24.0, np.log2(durations)], axis=1)
    return np.concatenate([relative.reshape(n, -1), centroid_octaves, loudness, extra], axis=1).astype(np.float32)
