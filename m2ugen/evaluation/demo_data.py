"""A tiny held-out corpus for ``m2ugen-eval --demo`` and the tests, in the corpus ``clips.jsonl`` schema.

Four short tunes (different works, keys, metres, tempi, instruments and tune types) are written as
MIDI, rendered (:func:`m2ugen.notation.render.render_midi`) with the corpus's held-out test sound
font when it is installed (else the first GM font found) and labelled; their ABC is written by
:func:`m2ugen.notation.abc.write_abc`. The melodies are seeded random walks on the scale.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pretty_midi

from m2ugen.notation.abc import AbcConfig, write_abc
from m2ugen.notation.instruments import program_family, program_name
from m2ugen.notation.render import find_soundfont, render_midi

# (title, style, program, tonic, mode, meter, quarter-note BPM, note length in quarters)
DEMO_TUNES: tuple[tuple[str, str, int, str, str, str, float, float], ...] = (
    ("Demo Jig", "jig", 40, "D", "major", "6/8", 150.0, 0.5),
    ("Demo Reel", "reel", 73, "G", "major", "4/4", 120.0, 0.5),
    ("Demo Waltz", "waltz", 0, "A", "minor", "3/4", 100.0, 1.0),
    ("Demo Polka", "polka", 24, "E", "minor", "2/4", 110.0, 0.5),
)
_TONIC_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
SAMPLE_RATE = 22050


def _melody(tonic: str, mode: str, meter: str, bpm: float, step: float, bars: int, rng: random.Random):
    """Notes of a random walk on the scale that starts and ends on the tonic (4th octave)."""
    numerator, denominator = (int(x) for x in meter.split("/"))
    quarters = bars * numerator * 4 / denominator
    n_notes = int(round(quarters / step))
    base = 60 + _TONIC_PC[tonic]
    degree, notes = 0, []
    for i in range(n_notes):
        if 0 < i < n_notes - 1:
            degree = max(-3, min(9, degree + rng.choice((-2, -1, -1, 1, 1, 2))))
        else:
            degree = 0
        pitch = base + 12 * (degree // 7) + _SCALES[mode][degree % 7]
        start = i * step * 60.0 / bpm
        notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=start, end=start + step * 60.0 / bpm * 0.95))
    return notes


def write_demo_corpus(folder: str | Path, *, bars: int = 4, seed: int = 0) -> Path:
    """Write the demo corpus into ``folder`` (audio/, notes/, midi/, clips.jsonl); returns clips.jsonl.

    Every clip is in the "test" split. Raises ConfigError when no sound font is installed.
    """
    from datasets_build.corpus import TEST_SOUNDFONTS

    folder = Path(folder)
    manifest = folder / "clips.jsonl"
    if manifest.is_file():
        return manifest
    rng = random.Random(seed)
    font = next((f for name in TEST_SOUNDFONTS if (f := find_soundfont(name)) is not None), None) or find_soundfont()
    records = []
    for index, (title, style, program, tonic, mode, meter, bpm, step) in enumerate(DEMO_TUNES):
        cid = f"demo-{index}"
        midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
        numerator, denominator = (int(x) for x in meter.split("/"))
        midi.time_signature_changes.append(pretty_midi.TimeSignature(numerator, denominator, 0.0))
        track = pretty_midi.Instrument(program=program, name=program_name(program))
        track.notes = _melody(tonic, mode, meter, bpm, step, bars, rng)
        midi.instruments.append(track)
        for sub in ("midi", "audio", "notes"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        midi.write(str(folder / "midi" / f"{cid}.mid"))
        render_midi(folder / "midi" / f"{cid}.mid", folder / "audio" / f"{cid}.wav", sample_rate=SAMPLE_RATE,
                    soundfont=font)
        rows = [[n.start, n.end, n.pitch, n.velocity, program, 0, False] for n in track.notes]
        (folder / "notes" / f"{cid}.json").write_text(json.dumps(rows))
        key_name = tonic + ("m" if mode == "minor" else "")
        abc = write_abc(midi, AbcConfig(meter=meter, unit=8 if step >= 0.5 else 16, tempo_bpm=bpm, key=key_name,
                                        title=title))
        records.append({
            "id": cid, "work_id": f"demo-work-{index}", "split": "test", "audio": f"audio/{cid}.wav",
            "sample_rate": SAMPLE_RATE, "duration": float(midi.get_end_time()), "soundfont": font.name if font else "",
            "seed": seed, "notes": f"notes/{cid}.json", "midi": f"midi/{cid}.mid", "abc": abc,
            "key": {"tonic": tonic, "mode": mode}, "meter": meter, "tempo_bpm": bpm,
            "instruments": [{"part": 0, "program": program, "name": program_name(program),
                             "family": program_family(program)}],
            "n_parts": 1, "style": style, "collection": "m2ugen demo", "title": title, "composer": None,
            "license": "CC0-1.0", "transpose": 0, "tempo_scale": 1.0,
        })
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    return manifest
