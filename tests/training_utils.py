"""Synthetic training sets for the training tests: tones whose register and timbre name the caption.

Four classes: register ``low`` (110-130 Hz) or ``high`` (880-1000 Hz) times timbre ``soft`` (a sine)
or ``bright`` (every harmonic up to 6 kHz at equal strength, a buzzy pulse train). Every clip has its
own frequency and phase, so held-out clips are new sounds of known classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 24000
REGISTERS = {"low": (110.0, 130.0), "high": (880.0, 1000.0)}
TIMBRES = ("soft", "bright")
CAPTIONS = tuple(f"{r} {t}" for r in REGISTERS for t in TIMBRES)


def tone_clip(freq: float, timbre: str, phase: float, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    harmonics = range(1, int(6000 / freq) + 1) if timbre == "bright" else (1,)
    wave = sum(np.sin(2 * np.pi * freq * k * t + phase * k) for k in harmonics)
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def write_tone_set(folder: Path, name: str, per_class: int, seed: int) -> Path:
    """``per_class`` clips of each caption as WAV files plus a caption manifest; returns the manifest."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    (folder / name).mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(per_class):
        for register, (lo, hi) in REGISTERS.items():
            for timbre in TIMBRES:
                clip_id = f"{name}_{register}_{timbre}_{i}"
                wav = tone_clip(rng.uniform(lo, hi), timbre, rng.uniform(0, 2 * np.pi))
                sf.write(folder / name / f"{clip_id}.wav", wav, SAMPLE_RATE)
                lines.append({"id": clip_id, "task": "caption", "audio": f"{name}/{clip_id}.wav",
                              "instruction": "", "response": f"{register} {timbre}"})
    manifest = folder / f"{name}.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


def write_caption_set(folder: Path, name: str, captions: list[str]) -> Path:
    """A text -> music manifest (stage 2): each caption asks for music it describes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [{"id": f"{name}{i}", "task": "generate", "instruction": c, "response": c,
              "target_audio": f"{name}{i}.wav", "target_caption": c} for i, c in enumerate(captions)]
    manifest = folder / f"{name}.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest
