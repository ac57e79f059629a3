"""Train the transcription models shipped in ``m2ugen/assets/transcription`` and print their figures.

* ``meter`` and ``pulse``: metre and pulse length (in quarter notes) from the rhythm features of
  :mod:`m2ugen.transcription.meter`, computed on the notes of corpus tunes and chorales played at
  several tempos with timing jitter and dropped notes.
* ``instrument``: General MIDI program of a note from its timbre features
  (:mod:`m2ugen.transcription.features`), on corpus tunes (one instrument) and chorales (four, or one
  playing all parts) rendered with the training sound fonts FluidR3_GM and TimGM6mb.

Held out: the works :func:`training.transcription_data.split_of` puts in "test", and the evaluation
sound font (MuseScore_General), which is never used here except to report held-out figures.

Run (one core): ``OMP_NUM_THREADS=1 nice .venv/bin/python -m training.transcription_models``
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from m2ugen.notation.instruments import program_family
from m2ugen.transcription import features as note_features_module
from m2ugen.transcription import meter as meter_module
from m2ugen.transcription.classifier import ASSETS, from_sklearn
from training.transcription_data import (
    PROGRAM_RANGES,
    Piece,
    Work,
    choose_tempo,
    make_piece,
    programs_for,
    render_pieces,
    split_of,
)

TRAIN_FONTS = ("FluidR3_GM.sf2", "TimGM6mb.sf2")
EVAL_FONT = "MuseScore_General.sf3"
ONE_INSTRUMENT_CHOIRS = (0, 19, 48, 52, 6, 21)  # instruments that play all four parts of a chorale
MAX_NOTES_PER_PIECE = 80


def load_works(path: Path) -> tuple[list[Work], list[Work]]:
    """The folk tunes and chorales cached in ``path`` (parsed from music21's corpus first if missing)."""
    if not path.is_file():
        from dataclasses import asdict

        from training.transcription_data import chorale_works, folk_works

        folk, chorales = folk_works(limit=480, per_meter=120), chorale_works(limit=160)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"folk": [asdict(w) for w in folk], "chorales": [asdict(w) for w in chorales]}))
    data = json.loads(path.read_text())
    def build(items):
        return [Work(w["id"], w["meter"], [[tuple(n) for n in p] for p in w["parts"]], w["quarter_bpm"]) for w in items]
    return build(data["folk"]), build(data["chorales"])


def rhythm_example(piece: Piece, rng: np.random.Generator) -> tuple[np.ndarray, float] | None:
    notes = [n for part in piece.notes for n in part if rng.random() > 0.05]
    if len(notes) < 8:
        return None
    onsets = np.array([n[0] for n in notes]) + rng.normal(0, 0.005, len(notes))
    durations = np.array([n[1] - n[0] for n in notes]) * rng.uniform(0.7, 1.1, len(notes))
    polyphonic = len(piece.notes) > 1
    period = meter_module.pulse_period(meter_module.pulse_onsets(onsets, durations, polyphonic=polyphonic))
    return meter_module.rhythm_features(onsets, durations, period), period


def train_meter(works: list[Work], rng: np.random.Generator, out: Path) -> dict[str, float]:
    from sklearn.neural_network import MLPClassifier

    rows: dict[str, list] = {"train": [], "test": []}
    for work in tqdm(works, desc="rhythm features"):
        for repeat in range(4 if split_of(work.id) == "train" else 1):
            tempo = choose_tempo(work, rng) * (rng.uniform(0.85, 1.15) if repeat else 1.0)
            piece = make_piece(work, [(0, 0)] * len(work.parts), tempo, rng, tag=str(repeat))
            example = rhythm_example(piece, rng)
            if example is not None:
                rows[split_of(work.id)].append((example[0], work.meter, meter_module.pulse_label(example[1], tempo)))
    figures: dict[str, float] = {}
    for name, labels, extra in (("meter", meter_module.METERS, False), ("pulse", meter_module.PULSE_QUARTERS, True)):
        def arrays(split):
            kept = [r for r in rows[split] if (r[2] if extra else r[1]) is not None]
            x = np.stack([np.concatenate([r[0], meter_module.meter_one_hot(r[1])[0]]) if extra else r[0] for r in kept])
            y = np.array([labels.index(r[2] if extra else r[1]) for r in kept])
            return x, y
        x_train, y_train = arrays("train")
        x_test, y_test = arrays("test")
        mean, scale = x_train.mean(0), x_train.std(0) + 1e-6
        model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=600, alpha=1e-3, random_state=0)
        model.fit((x_train - mean) / scale, y_train)
        classifier = from_sklearn(model, mean, scale, [labels[c] for c in model.classes_])
        accuracy = float((classifier.predict_proba(x_test).argmax(1) == np.searchsorted(model.classes_, y_test)).mean())
        majority = Counter(y_train).most_common(1)[0][0]
        chance = float((y_test == majority).mean())
        figures.update({f"{name}_test_accuracy": accuracy, f"{name}_majority_class": chance,
                        f"{name}_train_examples": len(y_train), f"{name}_test_examples": len(y_test)})
        classifier.save(out / f"{name}.safetensors", figures=json.dumps({k: v for k, v in figures.items() if k.startswith(name)}))
        print(f"{name}: held-out works accuracy {accuracy:.3f} (majority class {chance:.3f}); "
              f"{len(y_train)} train / {len(y_test)} test examples; classes {Counter(y_test)}")
    return figures


def instrument_pieces(folk: list[Work], chorales: list[Work], split: str, rng: np.random.Generator,
                      tag: str) -> list[Piece]:
    pieces = []
    for work in folk:
        if split_of(work.id) == split:
            programs = programs_for(work.parts, rng)
            pieces.append(make_piece(work, programs, choose_tempo(work, rng), rng, tag=tag))
    for work in chorales:
        if split_of(work.id) != split:
            continue
        if rng.random() < 0.25:
            program = int(rng.choice(ONE_INSTRUMENT_CHOIRS))
            programs = [(program, 0)] * 4
        else:
            programs = programs_for(work.parts, rng)
        pieces.append(make_piece(work, programs, choose_tempo(work, rng), rng, tag=tag))
    return pieces


def note_table(pieces: list[Piece], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, programs and number of parts of up to MAX_NOTES_PER_PIECE notes per piece."""
    xs, ys, parts = [], [], []
    for piece in pieces:
        notes = [(n, program) for program, part in zip(piece.programs, piece.notes) for n in part]
        chosen = rng.permutation(len(notes))[:MAX_NOTES_PER_PIECE]
        xs.append(note_features_module.note_features(piece.audio, [notes[i][0] for i in chosen]))
        ys += [notes[i][1] for i in chosen]
        parts += [len(piece.programs)] * len(chosen)
    return np.concatenate(xs), np.array(ys), np.array(parts)


def train_instruments(folk: list[Work], chorales: list[Work], rng: np.random.Generator, out: Path) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    tables = []
    for index, font in enumerate(TRAIN_FONTS):
        pieces = instrument_pieces(folk, chorales, "train", rng, tag=f"font{index}")
        start = time.perf_counter()
        render_pieces(pieces, font)
        print(f"rendered {len(pieces)} training pieces with {font} in {time.perf_counter() - start:.0f} s")
        tables.append(note_table(pieces, rng))
    x_train = np.concatenate([t[0] for t in tables])
    y_train = np.concatenate([t[1] for t in tables])
    test_pieces = instrument_pieces(folk, chorales, "test", rng, tag="eval")
    render_pieces(test_pieces, EVAL_FONT)
    x_test, y_test, parts_test = note_table(test_pieces, rng)
    mean, scale = x_train.mean(0), x_train.std(0) + 1e-6
    start = time.perf_counter()
    model = MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=150, alpha=1e-3, early_stopping=True,
                          random_state=0)
    model.fit((x_train - mean) / scale, y_train)
    print(f"instrument MLP trained on {len(y_train)} notes in {time.perf_counter() - start:.0f} s")
    labels = [str(int(c)) for c in model.classes_]
    classifier = from_sklearn(model, mean, scale, labels)
    predicted = np.array([int(labels[i]) for i in classifier.predict_proba(x_test).argmax(1)])
    # Control: a linear model on pitch and length only (no timbre).
    control = LogisticRegression(max_iter=500).fit(((x_train - mean) / scale)[:, -2:], y_train)
    control_predicted = control.predict(((x_test - mean) / scale)[:, -2:])
    family = np.vectorize(program_family)
    figures: dict[str, float] = {"train_notes": len(y_train), "test_notes": len(y_test)}
    for name, mask in (("all", np.ones_like(parts_test, bool)), ("solo", parts_test == 1), ("ensemble", parts_test > 1)):
        majority = Counter(y_train).most_common(1)[0][0]
        figures.update({
            f"program_accuracy_{name}": float((predicted[mask] == y_test[mask]).mean()),
            f"family_accuracy_{name}": float((family(predicted[mask]) == family(y_test[mask])).mean()),
            f"family_accuracy_{name}_pitch_only_control": float((family(control_predicted[mask]) == family(y_test[mask])).mean()),
            f"family_accuracy_{name}_majority_class": float((family(y_test[mask]) == program_family(int(majority))).mean()),
        })
    for key, value in figures.items():
        print(f"instrument {key}: {value:.3f}" if isinstance(value, float) else f"instrument {key}: {value}")
    classifier.save(out / "instrument.safetensors", figures=json.dumps(figures),
                    training="FluidR3_GM + TimGM6mb; evaluated on held-out works with MuseScore_General")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--works", type=Path, default=Path("build/transcribe16/works.json"))
    parser.add_argument("--workdir", type=Path, default=Path("build/transcribe16"), help="where the figures go")
    parser.add_argument("--out", type=Path, default=ASSETS)
    parser.add_argument("--only", choices=("meter", "instrument"), default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    folk, chorales = load_works(args.works)
    print(f"{len(folk)} folk tunes, {len(chorales)} chorales; test works: "
          f"{sum(split_of(w.id) == 'test' for w in folk + chorales)}; programs {sorted(PROGRAM_RANGES)}")
    figures = {}
    if args.only in (None, "meter"):
        figures.update(train_meter(folk + chorales, rng, args.out))
    if args.only in (None, "instrument"):
        figures.update(train_instruments(folk, chorales, rng, args.out))
    (args.workdir / f"figures_{args.only or 'all'}.json").write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
