"""How a clip is played, chosen by seed: instruments, sound font, transposition, tempo, dynamics, mix, room.

:func:`choose_augmentation` draws a :class:`Augmentation` from ``(seed, work id, variant)`` only, so
the same seed always gives the same clip. Variant 0 is the work as written (no transposition, the
score's tempo, no reverb, EQ or noise); later variants vary everything. :func:`choose_edit` draws an
exact edit of variant 0 (transpose, tempo, instrument, remove or solo a part) and :func:`apply_edit`
applies it. :func:`apply_effects` is the post-render chain (EQ tilt, reverb, noise, peak level).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from m2ugen.notation.instruments import program_family, program_name

# Family-balanced instrument table: the family is drawn first, then a program inside it. Programs
# whose attack (time to half level) exceeds 100 ms in FluidR3, TimGM6mb or MuseScore_General are
# left out (viola, cello, string ensembles, choir aahs, slow pads): their onsets have no sharp time.
FAMILY_PROGRAMS: dict[str, tuple[int, ...]] = {
    "piano": (0, 1, 4, 6, 7), "chromatic percussion": (8, 11, 12, 13, 15), "organ": (16, 19, 21, 22),
    "guitar": (24, 25, 26, 27), "bass": (32, 33, 35), "strings": (40, 45, 46), "ensemble": (53, 54),
    "brass": (56, 57, 60, 61), "reed": (64, 65, 66, 68, 70, 71), "pipe": (72, 73, 74, 75, 79),
    "synth": (80, 81, 82, 88, 90),
}
# Families a part may get by register: bass instruments only for a low part of a multi-part work.
LOW_PART_MAX_MEDIAN = 55
PEAK_LEVEL = 0.9
# Edits of the clip's note list, so source and target audio differ by exactly the edit; the target's
# ABC is the source's ABC edited by m2ugen.notation.edits (corpus_text.edited_abc), as the assistant does.
EDIT_KINDS: tuple[str, ...] = ("transpose", "tempo", "instrument", "remove_part", "solo_part")


@dataclass(frozen=True)
class Augmentation:
    """How one clip is rendered. Per-part tuples are indexed by the work's part numbers."""

    programs: tuple[int, ...]
    soundfont: str
    transpose: int = 0
    tempo_scale: float = 1.0
    part_volume: tuple[float, ...] = ()
    velocity_scale: tuple[float, ...] = ()
    velocity_jitter: int = 0
    reverb_wet: float = 0.0
    reverb_decay_s: float = 0.5
    eq_tilt_db: float = 0.0
    noise_dbfs: float | None = None
    parts: tuple[int, ...] | None = None  # parts that play (None: all)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _rng(*keys: int | str) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(k.encode("utf-8")) if isinstance(k, str) else int(k) for k in keys])


def _program(rng: np.random.Generator, family: str) -> int:
    options = FAMILY_PROGRAMS[family]
    return int(options[rng.integers(len(options))])


def _families(low: bool) -> list[str]:
    return [f for f in FAMILY_PROGRAMS if low or f != "bass"]


def choose_augmentation(
    work_id: str, variant: int, *, part_medians: list[float], pitch_range: tuple[int, int],
    soundfonts: list[str], seed: int,
) -> Augmentation:
    """The augmentation of clip ``variant`` of ``work_id``, a function of its arguments only.

    The first part's family cycles through a per-work shuffle of the families, so a work's variants
    sound different; other parts draw their family freely (bass only for low parts).
    """
    n_parts = len(part_medians)
    order = list(_rng(seed, work_id).permutation(_families(low=False)))
    rng = _rng(seed, work_id, variant)
    programs = []
    for part, median in enumerate(part_medians):
        if part == 0:
            family = order[variant % len(order)]
        else:
            options = _families(low=n_parts > 1 and median <= LOW_PART_MAX_MEDIAN)
            family = options[rng.integers(len(options))]
        programs.append(_program(rng, family))
    font = soundfonts[(variant + zlib.crc32(work_id.encode("utf-8"))) % len(soundfonts)]
    if variant == 0:
        return Augmentation(programs=tuple(programs), soundfont=font, part_volume=(1.0,) * n_parts,
                            velocity_scale=(1.0,) * n_parts)
    low, high = pitch_range
    lowest, highest = max(-5, 24 - low), min(5, 103 - high)
    transpose = int(rng.integers(lowest, highest + 1)) if lowest <= highest else 0
    return Augmentation(
        programs=tuple(programs), soundfont=font, transpose=transpose,
        tempo_scale=round(float(rng.uniform(0.85, 1.15)), 3),
        part_volume=tuple(round(float(v), 3) for v in ([1.0] + list(rng.uniform(0.6, 1.0, n_parts - 1)))),
        velocity_scale=tuple(round(float(v), 3) for v in rng.uniform(0.7, 1.25, n_parts)),
        velocity_jitter=int(rng.integers(0, 12)),
        reverb_wet=round(float(rng.uniform(0.0, 0.25)), 3), reverb_decay_s=round(float(rng.uniform(0.3, 1.0)), 3),
        eq_tilt_db=round(float(rng.uniform(-4.0, 4.0)), 2),
        noise_dbfs=round(float(rng.uniform(-70.0, -50.0)), 1) if rng.random() < 0.5 else None,
    )


def choose_edit(work_id: str, index: int, *, source: Augmentation, n_parts: int, pitch_range: tuple[int, int],
                seed: int) -> dict[str, Any]:
    """The ``index``-th exact edit of a work's variant 0: ``{"kind", ...parameters}``.

    Kinds cycle through a per-work shuffle of the applicable :data:`EDIT_KINDS` (part removal and
    solo only for works with several parts).
    """
    kinds = [k for k in EDIT_KINDS if n_parts > 1 or k not in ("remove_part", "solo_part")]
    kind = str(_rng(seed, work_id, "edits").permutation(kinds)[index % len(kinds)])
    rng = _rng(seed, work_id, "edit", index)
    if kind == "transpose":
        low, high = pitch_range
        options = [s for s in range(-7, 8) if s != 0 and low + s >= 24 and high + s <= 103] or [1]
        return {"kind": kind, "semitones": int(options[rng.integers(len(options))])}
    if kind == "tempo":
        scale = float(rng.uniform(0.65, 0.85)) if rng.random() < 0.5 else float(rng.uniform(1.2, 1.5))
        return {"kind": kind, "tempo_scale": round(scale, 3)}
    if kind == "instrument":
        part = int(rng.integers(n_parts))
        old_family = program_family(source.programs[part])
        options = [f for f in _families(low=False) if f != old_family]
        family = options[rng.integers(len(options))]
        return {"kind": kind, "part": part, "program": _program(rng, family)}
    return {"kind": kind, "part": int(rng.integers(n_parts))}


def apply_edit(source: Augmentation, edit: dict[str, Any], n_parts: int) -> Augmentation:
    """The augmentation of the edited clip: ``source`` with exactly the change ``edit`` describes."""
    kind = edit["kind"]
    if kind == "transpose":
        return replace(source, transpose=source.transpose + edit["semitones"])
    if kind == "tempo":
        return replace(source, tempo_scale=round(source.tempo_scale * edit["tempo_scale"], 6))
    if kind == "instrument":
        programs = list(source.programs)
        programs[edit["part"]] = edit["program"]
        return replace(source, programs=tuple(programs))
    if kind == "remove_part":
        return replace(source, parts=tuple(p for p in range(n_parts) if p != edit["part"]))
    if kind == "solo_part":
        return replace(source, parts=(edit["part"],))
    raise ValueError(f"unknown edit kind {kind!r}")


def instrument_labels(programs: tuple[int, ...], parts: list[int]) -> list[dict[str, Any]]:
    """``[{"part", "program", "name", "family"}]`` of the parts that play."""
    return [{"part": p, "program": programs[p], "name": program_name(programs[p]), "family": program_family(programs[p])}
            for p in parts]


def apply_effects(stereo: np.ndarray, aug: Augmentation, sample_rate: int, seed_key: tuple[int | str, ...]) -> np.ndarray:
    """Mono mix of a render with the EQ tilt, reverb and noise of ``aug``, peak-normalised to :data:`PEAK_LEVEL`.

    Args:
        stereo: ``(samples, 2)`` float32 render.
        seed_key: what the noise and the reverb's impulse response are drawn from.

    Returns:
        ``(samples,)`` float32 in [-1, 1].
    """
    from scipy.signal import fftconvolve, lfilter

    audio = stereo.mean(axis=1).astype(np.float64)
    rng = _rng(*seed_key, "effects")
    if aug.eq_tilt_db:
        pole = np.exp(-2 * np.pi * 1000.0 / sample_rate)  # one-pole low-pass at 1 kHz
        low = lfilter([1 - pole], [1, -pole], audio)
        audio = low + (audio - low) * 10 ** (aug.eq_tilt_db / 20)
    if aug.reverb_wet > 0:
        t = np.arange(int(aug.reverb_decay_s * sample_rate * 1.5)) / sample_rate
        response = rng.standard_normal(t.size) * np.exp(-6.9 * t / aug.reverb_decay_s)  # -60 dB at decay_s
        response[: int(0.01 * sample_rate)] = 0.0  # 10 ms pre-delay keeps onsets dry
        response /= np.sqrt(np.sum(response**2)) or 1.0
        audio = audio + aug.reverb_wet * fftconvolve(audio, response)[: audio.size]
    peak = float(np.abs(audio).max(initial=0.0))
    if peak > 0:
        audio *= PEAK_LEVEL / peak
    if aug.noise_dbfs is not None:
        audio += rng.standard_normal(audio.size) * 10 ** (aug.noise_dbfs / 20)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)
