"""Which instrument plays each note: the shipped note classifier, then a choice of the ensemble.

The classifier (``assets/transcription/instrument.safetensors``, trained by
``training/transcription_models.py``) gives each note a probability per General MIDI program from its
timbre features (:mod:`m2ugen.transcription.features`). A monophonic source is one instrument: the
program with the highest mean log probability over all its notes. Otherwise the ensemble is the
programs that win at least :data:`MIN_SHARE` of the notes (at most :data:`MAX_INSTRUMENTS`), and
each note goes to the most probable of them.
"""

from __future__ import annotations

import numpy as np

MIN_SHARE = 0.12
MAX_INSTRUMENTS = 6


def program_probabilities(audio: np.ndarray, notes: list[tuple[float, float, int]]) -> tuple[np.ndarray, np.ndarray]:
    """``(programs (C,), probabilities (N, C))`` for notes (onset_s, offset_s, pitch) in mono 22.05 kHz ``audio``."""
    from m2ugen.transcription.classifier import load_asset
    from m2ugen.transcription.features import note_features

    model = load_asset("instrument")
    programs = np.array([int(label) for label in model.labels])
    return programs, model.predict_proba(note_features(audio, notes))


def assign_programs(programs: np.ndarray, probabilities: np.ndarray, *, monophonic: bool) -> list[int]:
    """A GM program per note (see the module docstring)."""
    if probabilities.shape[0] == 0:
        return []
    log_probabilities = np.log(probabilities + 1e-6)
    if monophonic:
        return [int(programs[int(np.argmax(log_probabilities.mean(axis=0)))])] * probabilities.shape[0]
    winners = np.bincount(probabilities.argmax(axis=1), minlength=programs.size) / probabilities.shape[0]
    ranked = [int(i) for i in np.argsort(-winners)[:MAX_INSTRUMENTS] if winners[i] >= MIN_SHARE]
    present = ranked or [int(np.argmax(winners))]
    choice = np.array(present)[probabilities[:, present].argmax(axis=1)]
    return [int(programs[i]) for i in choice]
