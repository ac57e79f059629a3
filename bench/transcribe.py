"""Benchmark transcription on held-out works rendered with a sound font never used in training.

Pieces: monophonic folk tunes (music21 corpus, several metres, one instrument each) and four-part
Bach chorales (four different instruments, or a string quartet), from the works that
``training.transcription_data.split_of`` holds out, rendered with MuseScore_General (the models are
trained on FluidR3_GM and TimGM6mb). Each piece is transcribed twice in the same run:

* **today's** output, as before this work: basic-pitch notes as heard, one Acoustic Grand Piano
  voice, 4/4, librosa's tempo estimate from the audio;
* **ours**: :func:`m2ugen.transcribe.transcribe` with every estimate on (one line when monophonic,
  instruments, voices, metre, tempo).

Scores: onset F1 (mir_eval, 50 ms, instrument-agnostic); MT3-style instrument-family F1 (a note counts
only with its family right; counts pooled over pieces); metre accuracy; tempo within 4 %; the ABC
score of :func:`m2ugen.metrics.transcription.abc_score` against the reference score written by the same
ABC writer; seconds of computing per second of audio, wall clock and CPU time of this process (the
headline is CPU time: on a shared machine the wall clock mostly measures the other jobs). Last line:
``transcribe: onset_f1_mono=<a> onset_f1_poly=<b> instrument_f1=<c> meter_acc=<d> tempo_acc=<e> abc_score=<f> seconds_per_audio_second=<g>``

Run: ``.venv/bin/python bench/transcribe.py [--tunes 25] [--chorales 8]``
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pretty_midi

from m2ugen.metrics.transcription import abc_score, note_scores
from m2ugen.notation.abc import AbcConfig, write_abc
from m2ugen.notation.instruments import program_family, program_name
from m2ugen.transcribe import MODEL_SAMPLE_RATE, Transcription, TranscribeConfig, transcribe
from training.transcription_data import Piece, chorale_works, choose_tempo, folk_works, make_piece, programs_for, render_pieces

EVAL_FONT = "MuseScore_General.sf3"
STRING_QUARTET = (40, 40, 41, 42)
TEMPO_TOLERANCE = 0.04


@dataclass
class Totals:
    """Pooled counts and per-piece scores of one system."""

    f1_mono: list[float] = field(default_factory=list)
    f1_poly: list[float] = field(default_factory=list)
    family_counts: list[int] = field(default_factory=lambda: [0, 0, 0])  # matched, estimated, reference
    family_counts_poly: list[int] = field(default_factory=lambda: [0, 0, 0])  # the same, ensembles only
    meter_right: list[bool] = field(default_factory=list)
    tempo_right: list[bool] = field(default_factory=list)
    abc: list[float] = field(default_factory=list)
    seconds: float = 0.0  # wall clock
    cpu_seconds: float = 0.0  # this process's CPU time (all its threads)

    @staticmethod
    def f1(counts: list[int]) -> float:
        matched, estimated, reference = counts
        return 2 * matched / max(1, estimated + reference)


def reference_notes(piece: Piece) -> list[tuple[float, float, int, int]]:
    """(onset_s, offset_s, pitch, program) of every note of the piece."""
    return [(s, e, p, program) for program, part in zip(piece.programs, piece.notes) for s, e, p, _ in part]


def reference_abc(piece: Piece) -> str:
    midi = pretty_midi.PrettyMIDI(initial_tempo=piece.tempo_bpm)
    for program, part in zip(piece.programs, piece.notes):
        instrument = pretty_midi.Instrument(program=program, name=program_name(program))
        instrument.notes = [pretty_midi.Note(v, p, max(0.0, s - 0.3), e - 0.3) for s, e, p, v in part]
        midi.instruments.append(instrument)
    return write_abc(midi, AbcConfig(meter=piece.meter, tempo_bpm=piece.tempo_bpm, title="Reference"))


def family_counts(reference: list[tuple[float, float, int, int]], result: Transcription) -> tuple[int, int, int]:
    """Notes matched with the right family (onset within 50 ms, same pitch), estimated, reference."""
    import mir_eval

    matched = 0
    families = {program_family(p) for *_, p in reference} | {program_family(n.program) for n in result.notes}
    for family in families:
        ref = [(s, max(e, s + 1e-3), p) for s, e, p, program in reference if program_family(program) == family]
        est = [(n.start_s, max(n.end_s, n.start_s + 1e-3), n.pitch) for n in result.notes if program_family(n.program) == family]
        if ref and est:
            r, e = np.array(ref), np.array(est)
            matched += len(mir_eval.transcription.match_notes(
                r[:, :2], 440 * 2 ** ((r[:, 2] - 69) / 12), e[:, :2], 440 * 2 ** ((e[:, 2] - 69) / 12), offset_ratio=None))
    return matched, len(result.notes), len(reference)


def librosa_tempo(audio: np.ndarray) -> float:
    """Today's tempo: librosa's estimate from the onset envelope (prior at 120 BPM), as the old code did."""
    import librosa

    envelope = librosa.onset.onset_strength(y=audio, sr=MODEL_SAMPLE_RATE, hop_length=512)
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=envelope, sr=MODEL_SAMPLE_RATE, hop_length=512))[0])
    return float(np.clip(round(tempo), 40, 240))


def score(piece: Piece, result: Transcription, totals: Totals, *, polyphonic: bool) -> dict[str, float]:
    reference = reference_notes(piece)
    f1 = note_scores([r[:3] for r in reference], [(n.start_s, n.end_s, n.pitch) for n in result.notes]).f1
    (totals.f1_poly if polyphonic else totals.f1_mono).append(f1)
    counts = family_counts(reference, result)
    totals.family_counts = [a + b for a, b in zip(totals.family_counts, counts)]
    if polyphonic:
        totals.family_counts_poly = [a + b for a, b in zip(totals.family_counts_poly, counts)]
    totals.meter_right.append(result.meter == piece.meter)
    totals.tempo_right.append(abs(result.tempo_bpm - piece.tempo_bpm) <= TEMPO_TOLERANCE * piece.tempo_bpm)
    totals.abc.append(abc_score(result.abc, reference_abc(piece)).total)
    return {"f1": f1, "family_f1": 2 * counts[0] / max(1, counts[1] + counts[2]), "abc": totals.abc[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunes", type=int, default=25, help="monophonic held-out tunes (spread over the metres)")
    parser.add_argument("--chorales", type=int, default=8, help="held-out four-part chorales")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # basic-pitch's import-time backend warnings
    rng = np.random.default_rng(16)
    start = time.perf_counter()
    tunes = folk_works(limit=args.tunes, split="test")
    chorales = chorale_works(limit=args.chorales, split="test")
    pieces: list[tuple[Piece, bool]] = []
    for work in tunes:
        pieces.append((make_piece(work, programs_for(work.parts, rng), choose_tempo(work, rng), rng, tag="bench"), False))
    for index, work in enumerate(chorales):
        if index % 2:
            programs = [(p, shift) for p, (_, shift) in zip(STRING_QUARTET, programs_for(work.parts, rng, candidates=[40, 41, 42], distinct=False))]
        else:
            programs = programs_for(work.parts, rng)
        pieces.append((make_piece(work, programs, choose_tempo(work, rng), rng, tag="bench"), True))
    render_pieces([p for p, _ in pieces], EVAL_FONT)
    audio_s = sum(p.audio.size for p, _ in pieces) / MODEL_SAMPLE_RATE
    print(f"{len(tunes)} tunes, {len(chorales)} chorales ({audio_s:.0f} s of audio) parsed and rendered with "
          f"{EVAL_FONT} in {time.perf_counter() - start:.0f} s; metres {dict(Counter(p.meter for p, _ in pieces))}")
    transcribe(np.zeros(22050, dtype=np.float32) + 1e-3 * np.sin(np.arange(22050)), sample_rate=22050)  # warm-up
    today, ours = Totals(), Totals()
    mono_detected = []
    print("| piece | metre | tempo | instruments | onset F1 today / ours | family F1 today / ours | metre, tempo ours | ABC today / ours |")
    print("|---|---|---|---|---|---|---|---|")
    for piece, polyphonic in pieces:
        begin, begin_cpu = time.perf_counter(), time.process_time()
        old_tempo = librosa_tempo(piece.audio)
        old = transcribe(piece.audio, sample_rate=MODEL_SAMPLE_RATE, config=TranscribeConfig(
            program=0, meter="4/4", tempo_bpm=old_tempo, mono=False, voices=False))
        today.seconds += time.perf_counter() - begin
        today.cpu_seconds += time.process_time() - begin_cpu
        begin, begin_cpu = time.perf_counter(), time.process_time()
        new = transcribe(piece.audio, sample_rate=MODEL_SAMPLE_RATE)
        ours.seconds += time.perf_counter() - begin
        ours.cpu_seconds += time.process_time() - begin_cpu
        mono_detected.append(new.monophonic != polyphonic)
        a, b = score(piece, old, today, polyphonic=polyphonic), score(piece, new, ours, polyphonic=polyphonic)
        names = "+".join(program_name(p) for p in piece.programs)
        found = "+".join(program_name(p) for p in new.programs)
        print(f"| {piece.work_id} | {piece.meter} | {piece.tempo_bpm:.0f} | {names} -> {found} | {a['f1']:.2f} / {b['f1']:.2f} "
              f"| {a['family_f1']:.2f} / {b['family_f1']:.2f} | {new.meter}, {new.tempo_bpm:.0f} | {a['abc']:.2f} / {b['abc']:.2f} |")
    majority_meter = Counter(p.meter for p, _ in pieces).most_common(1)[0]
    for name, totals in (("today", today), ("ours", ours)):
        print(f"{name}: median onset F1 mono {np.median(totals.f1_mono):.3f} (n={len(totals.f1_mono)}), poly "
              f"{np.median(totals.f1_poly):.3f} (n={len(totals.f1_poly)}); family F1 ensembles "
              f"{totals.f1(totals.family_counts_poly):.3f}, all pieces {totals.f1(totals.family_counts):.3f}; metre {np.mean(totals.meter_right):.3f}; tempo within 4 % "
              f"{np.mean(totals.tempo_right):.3f}; mean ABC score {np.mean(totals.abc):.3f}; "
              f"{totals.seconds / audio_s:.3f} s (wall) and {totals.cpu_seconds / audio_s:.3f} s (CPU) per audio second")
    print(f"chance: metre majority class ({majority_meter[0]}) {majority_meter[1] / len(pieces):.3f}; "
          f"monophony detected right on {np.mean(mono_detected):.3f} of the pieces")
    print(f"transcribe: onset_f1_mono={np.median(ours.f1_mono):.3f} onset_f1_poly={np.median(ours.f1_poly):.3f} "
          f"instrument_f1={ours.f1(ours.family_counts_poly):.3f} meter_acc={np.mean(ours.meter_right):.3f} "
          f"tempo_acc={np.mean(ours.tempo_right):.3f} abc_score={np.mean(ours.abc):.3f} "
          f"seconds_per_audio_second={ours.cpu_seconds / audio_s:.3f}")


if __name__ == "__main__":
    main()
