"""Metre, tempo and the first downbeat of a piece, from its note onsets.

1. The pulse: the longest period of which the intervals between successive onsets are whole
   multiples about as well as of any shorter one (:func:`pulse_period`) - the eighth note of a jig,
   the sixteenth of a reel, the quarter or eighth of a chorale.
2. Rhythm features on that pulse (:func:`rhythm_features`): how strongly onsets, weighted by the
   length of the note they start, recur after 1..48 pulses, how much weight each bar length's best
   phase gathers, and the log of the pulse in seconds.
3. Two small classifiers trained on corpus tunes (``training/transcription_models.py``) read them:
   the metre (2/4, 3/4, 4/4, 6/8, 9/8, 12/8) and how many quarter notes the pulse is
   (1/4, 1/3, 1/2, 3/4, 1, 3/2, 2); the tempo is ``60 * quarters / pulse_s``.
4. The bars start on the phase that gathers the most weight (:func:`downbeat`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

METERS = ("2/4", "3/4", "4/4", "6/8", "9/8", "12/8")
PULSE_QUARTERS = ("1/4", "1/3", "1/2", "3/4", "1", "3/2", "2")
FRAME_S = 0.01
MAX_LAG = 48
BAR_PULSES = (2, 3, 4, 6, 8, 9, 12, 16)
N_FEATURES = 2 * MAX_LAG + len(BAR_PULSES) + 2


@dataclass(frozen=True)
class MeterTempo:
    """Metre ``"N/D"``, quarter notes per minute, time of the first downbeat (s) and ABC unit ``L:1/unit``."""

    meter: str
    tempo_bpm: float
    downbeat_s: float
    unit: int


def _weights(durations: np.ndarray) -> np.ndarray:
    return np.log1p(10.0 * np.clip(durations, 0.02, 4.0))


def _onset_groups(onsets: np.ndarray, weights: np.ndarray, tolerance_s: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Onsets closer than ``tolerance_s`` merged (chords): their first time and summed weight."""
    order = np.argsort(onsets)
    times: list[float] = []
    totals: list[float] = []
    for t, w in zip(onsets[order], weights[order]):
        if times and t - times[-1] < tolerance_s:
            totals[-1] += w
        else:
            times.append(float(t))
            totals.append(float(w))
    return np.array(times), np.array(totals)


def pulse_period(onsets: np.ndarray, *, low_s: float = 0.09, high_s: float = 1.2, sigma_s: float = 0.02,
                 share: float = 0.9) -> float:
    """The longest period in ``low_s..high_s`` whose fit to the inter-onset intervals (onsets in s,
    chords merged) is at least ``share`` of the best fit, refined by least squares. An interval's fit
    to a period is ``exp(-d^2 / 2 sigma^2)``, d its distance (s) to the nearest whole multiple (>= 1)."""
    times, _ = _onset_groups(np.asarray(onsets, dtype=float), np.ones(len(onsets)))
    intervals = np.diff(times)
    intervals = intervals[(intervals > 0.05) & (intervals < 4.0)]
    if intervals.size < 4:
        return 0.5
    periods = np.geomspace(high_s, low_s, 400)
    multiples = np.maximum(1.0, np.round(intervals[None, :] / periods[:, None]))  # (P, I)
    fit = np.exp(-0.5 * ((intervals[None, :] - multiples * periods[:, None]) / sigma_s) ** 2).mean(axis=1)
    best = float(periods[int(np.argmax(fit >= share * fit.max()))])
    multiple = np.maximum(1.0, np.round(intervals / best))
    close = np.abs(intervals - multiple * best) < 2 * sigma_s
    if close.sum() >= 3:
        best = float((intervals[close] * multiple[close]).sum() / (multiple[close] ** 2).sum())
    return best


def rhythm_features(onsets: np.ndarray, durations: np.ndarray, period_s: float) -> np.ndarray:
    """``(N_FEATURES,)``: the weighted-onset autocorrelation at 1..48 pulses (max within 4 % of the lag),
    the same for unweighted onsets; for bars of 2, 3, 4, 6, 8, 9, 12, 16 pulses, how much of the onset
    weight the best bar phase gathers (relative to an even spread); the log2 of the pulse in seconds
    and of the median note length in pulses."""
    onsets = np.asarray(onsets, dtype=float)
    weights = _weights(np.asarray(durations, dtype=float))
    features = []
    for w in (weights, np.ones_like(weights)):
        times, totals = _onset_groups(onsets, w)
        n_frames = int((times.max() - times.min()) / FRAME_S) + MAX_LAG * int(period_s / FRAME_S + 2) + 8
        train = np.zeros(n_frames)
        np.add.at(train, np.round((times - times.min()) / FRAME_S).astype(int), totals)
        kernel = np.exp(-0.5 * (np.arange(-6, 7) * FRAME_S / 0.02) ** 2)
        train = np.convolve(train, kernel, mode="same")
        energy = float(train @ train) + 1e-9
        for k in range(1, MAX_LAG + 1):
            lag = k * period_s / FRAME_S
            lags = range(max(1, int(lag * 0.96)), int(np.ceil(lag * 1.04)) + 1)
            features.append(max(float(train[:-lag_i] @ train[lag_i:]) / energy if lag_i < train.size else 0.0
                                for lag_i in lags))
    positions = np.round((onsets - onsets.min()) / period_s).astype(int)
    for bar in BAR_PULSES:
        gathered = np.bincount(positions % bar, weights=weights, minlength=bar)
        features.append(float(gathered.max() / gathered.sum() * bar) if gathered.sum() > 0 else 1.0)
    median_length = float(np.median(np.clip(durations, 0.02, None))) / period_s
    features += [float(np.log2(period_s)), float(np.log2(median_length))]
    return np.array(features, dtype=np.float32)


def downbeat(onsets: np.ndarray, durations: np.ndarray, period_s: float, bar_pulses: int) -> float:
    """Time (s) of the first downbeat: the phase of the bar grid that gathers the most onset weight,
    where an onset also counts a little for the phases of the half bar."""
    onsets = np.asarray(onsets, dtype=float)
    if onsets.size == 0 or bar_pulses < 1:
        return 0.0
    first = float(onsets.min())
    positions = np.round((onsets - first) / period_s).astype(int)
    weights = _weights(np.asarray(durations, dtype=float))
    scores = np.zeros(bar_pulses)
    np.add.at(scores, positions % bar_pulses, weights)
    phase = int(np.argmax(scores))
    return first + phase * period_s - (bar_pulses * period_s if phase > 0 else 0.0)


def _bar_quarters(meter: str) -> Fraction:
    numerator, denominator = (int(x) for x in meter.split("/"))
    return Fraction(4 * numerator, denominator)


def pulse_onsets(onsets: np.ndarray, durations: np.ndarray, *, polyphonic: bool) -> np.ndarray:
    """The onsets the pulse is measured on: all of them, or for several parts only the chords and notes
    weighing at least the median (stray onsets of single short notes blur the pulse of an ensemble)."""
    if not polyphonic or onsets.size < 8:
        return onsets
    times, totals = _onset_groups(onsets, _weights(durations))
    return times[totals >= np.median(totals)]


def estimate(onsets: np.ndarray, durations: np.ndarray, *, meter: str | None = None,
             tempo_bpm: float | None = None, polyphonic: bool = False) -> MeterTempo:
    """Metre, tempo and first downbeat of notes (onsets and durations in s) of one part or several
    (``polyphonic``); ``meter``/``tempo_bpm`` override the estimates (the other is then chosen to agree with it)."""
    from m2ugen.transcription.classifier import load_asset

    onsets, durations = np.asarray(onsets, dtype=float), np.asarray(durations, dtype=float)
    if onsets.size < 4:
        tempo = tempo_bpm or 120.0
        return MeterTempo(meter or "4/4", tempo, 0.0, 8 if (meter or "4/4") in ("6/8", "9/8", "12/8") else 16)
    period = pulse_period(pulse_onsets(onsets, durations, polyphonic=polyphonic))
    features = rhythm_features(onsets, durations, period)[None, :]
    if meter is None:
        meter_model = load_asset("meter")
        meter = meter_model.labels[int(np.argmax(meter_model.predict_proba(features)[0]))]
    if tempo_bpm is None:
        pulse_model = load_asset("pulse")
        probabilities = pulse_model.predict_proba(np.concatenate([features, meter_one_hot(meter)], axis=1))[0]
        quarters = float(Fraction(pulse_model.labels[int(np.argmax(probabilities))]))
        tempo_bpm = float(np.clip(60.0 * quarters / period, 30, 300))
    pulse_quarters = period * tempo_bpm / 60.0
    bar_pulses = max(1, int(round(float(_bar_quarters(meter)) / pulse_quarters)))
    compound = meter in ("6/8", "9/8", "12/8")
    unit = 8 if compound or pulse_quarters >= 0.45 else 16
    return MeterTempo(meter, round(tempo_bpm, 1), downbeat(onsets, durations, period, bar_pulses), unit)


def pulse_label(period_s: float, tempo_bpm: float) -> str | None:
    """The :data:`PULSE_QUARTERS` label of a pulse at a known tempo (for training), None if none is within 8 %."""
    quarters = period_s * tempo_bpm / 60.0
    best = min(PULSE_QUARTERS, key=lambda label: abs(np.log(quarters / float(Fraction(label)))))
    return best if abs(np.log(quarters / float(Fraction(best)))) < 0.08 else None


def meter_one_hot(meter: str) -> np.ndarray:
    """``(1, 6)`` indicator of ``meter`` among :data:`METERS` (the pulse model's extra input)."""
    return np.array([[1.0 if m == meter else 0.0 for m in METERS]], dtype=np.float32)
