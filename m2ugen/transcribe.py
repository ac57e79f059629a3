"""Transcription: audio -> notes with basic-pitch (its bundled ONNX model) -> who plays what -> MIDI, ABC, piano roll.

:func:`transcribe` decodes the audio with :func:`m2ugen.media.load_audio`, runs the model on windows
of ``window_s`` seconds (plus ``context_s`` on each side), so its working memory does not grow with
the file, and stitches the notes of neighbouring windows. Then (:mod:`m2ugen.transcription`): a
monophonic source is reduced to one line (no harmonic ghost notes), each note gets a General MIDI
program from the shipped instrument classifier, each instrument's notes are split into voices, and
metre, tempo and the first downbeat are estimated from the notes.
Whether a chat turn asks for a transcription is decided in :mod:`m2ugen.routing`.
This module does not score transcriptions (:mod:`m2ugen.metrics.transcription`) and does not hold
the ABC writer (:mod:`m2ugen.notation.abc`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from m2ugen.audio import Audio
from m2ugen.errors import ConfigError
from m2ugen.files import write_atomically

logger = logging.getLogger(__name__)

MODEL_SAMPLE_RATE = 22050  # basic-pitch's AUDIO_SAMPLE_RATE
FRAMES_PER_S = MODEL_SAMPLE_RATE / 256  # basic-pitch's output frame rate (FFT hop 256), ~86.1 Hz
MIN_DURATION_S = 0.05
MAX_AUDIO_S = 3600.0  # default limit on the input's length (m2ugen.media's MAX_AUDIO_SECONDS)
SILENCE_PEAK = 1e-4  # windows whose peak amplitude is below this are not run through the model
SEAM_MARGIN_S = 0.15  # a note ending this close to a window's end may continue in the next window
SEAM_GAP_S = 0.05  # ... and continues if the next window has the same pitch starting before its end plus this


@dataclass(frozen=True)
class TranscribeConfig:
    """Settings of :func:`transcribe`; the thresholds are basic-pitch's defaults.

    Attributes:
        onset_threshold: minimum onset activation (0-1) that starts a note.
        frame_threshold: minimum frame activation (0-1) that keeps a note sounding.
        min_note_s: shortest note kept, in seconds.
        pitch_bends: estimate a pitch-bend curve per note (written to the MIDI file only).
        window_s: seconds of audio decoded per window; memory grows with it, not with the file.
        context_s: extra seconds on each side of a window, so notes at its edges are decoded whole.
        program: General MIDI program of every note; None recognises each note's instrument.
        meter: time signature of the ABC score (e.g. "6/8"); None estimates it from the notes.
        tempo_bpm: quarter notes per minute for MIDI and ABC; None estimates it from the notes.
        mono: True: the source plays one note at a time (one line, no harmonic ghost notes);
            False: keep every note heard; None: decide from the notes (:mod:`m2ugen.transcription.mono`).
        voices: split each instrument's notes into voices (ABC ``V:`` per voice).
    """

    onset_threshold: float = 0.5
    frame_threshold: float = 0.3
    min_note_s: float = 0.1277
    pitch_bends: bool = False
    window_s: float = 30.0
    context_s: float = 1.0
    program: int | None = None
    meter: str | None = None
    tempo_bpm: float | None = None
    mono: bool | None = None
    voices: bool = True

    def __post_init__(self) -> None:
        for name in ("onset_threshold", "frame_threshold"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{name} {getattr(self, name)} must be between 0 and 1")
        if self.window_s < 4.0 or self.context_s < 0.5 or self.context_s * 2 > self.window_s:
            raise ConfigError(f"window_s {self.window_s} must be >= 4 and context_s {self.context_s} in 0.5..window_s/2")
        if self.program is not None and not 0 <= self.program <= 127:
            raise ConfigError(f"program {self.program} must be a General MIDI program 0..127")
        if self.min_note_s <= 0:
            raise ConfigError(f"min_note_s {self.min_note_s} must be positive")
        if self.tempo_bpm is not None and not 10 <= self.tempo_bpm <= 400:
            raise ConfigError(f"tempo_bpm {self.tempo_bpm} is outside 10..400")
        from m2ugen.notation.abc import parse_meter

        if self.meter is not None and parse_meter(self.meter) is None:
            raise ConfigError(f"meter {self.meter!r} is not of the form N/D (e.g. 4/4, 6/8)")


@dataclass(frozen=True)
class Note:
    """One transcribed note: times in seconds, MIDI pitch and velocity (1-127), GM program and voice.

    ``pitch_bends`` (semitones, evenly spaced from start to end) is set only with ``pitch_bends=True``.
    ``voice`` numbers the voices of one instrument from the highest (0).
    """

    start_s: float
    end_s: float
    pitch: int
    velocity: int
    pitch_bends: tuple[float, ...] | None = None
    program: int = 0
    voice: int = 0


def _ensure_new(path: Path, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
    return path


@dataclass
class Transcription:
    """The notes of a piece plus what is needed to write them as a score.

    Attributes:
        notes: sorted by onset, then pitch.
        duration_s: length of the audio that was transcribed.
        tempo_bpm: quarter notes per minute used for the MIDI tempo and the ABC grid.
        meter: time signature of the ABC score.
        downbeat_s: time of the first bar line of the ABC score (at or before the first note).
        unit: the ABC unit note length ``L:1/unit`` (also its grid).
        monophonic: whether the notes were reduced to one line.
        midi_path: where :meth:`save_midi` last wrote the MIDI file.
    """

    notes: list[Note]
    duration_s: float
    tempo_bpm: float
    meter: str = "4/4"
    downbeat_s: float = 0.0
    unit: int = 16
    monophonic: bool = False
    midi_path: Path | None = None
    _abc: str | None = field(default=None, repr=False)

    @property
    def message(self) -> str:
        """One line for the user: what was found, or why nothing was."""
        if not self.notes:
            return f"No notes found in {self.duration_s:.1f} s of audio: it is silent or has no pitched sound."
        pitches = [n.pitch for n in self.notes]
        import pretty_midi

        from m2ugen.notation.instruments import program_name

        low, high = pretty_midi.note_number_to_name(min(pitches)), pretty_midi.note_number_to_name(max(pitches))
        players = ", ".join(program_name(p) for p in self.programs)
        line = "one line, " if self.monophonic else ""
        return (f"Transcribed {len(self.notes)} notes ({line}{low} to {high}) from {self.duration_s:.1f} s of audio "
                f"in {self.meter} at about {self.tempo_bpm:.0f} BPM; instruments: {players}.")

    @property
    def programs(self) -> list[int]:
        """The GM programs that play, by number of notes (most first)."""
        counts: dict[int, int] = {}
        for note in self.notes:
            counts[note.program] = counts.get(note.program, 0) + 1
        return sorted(counts, key=lambda p: (-counts[p], p))

    def to_midi(self, *, pitch_bends: bool = True) -> Any:
        """The notes as a :class:`pretty_midi.PrettyMIDI` at ``tempo_bpm``: one track per instrument.

        Notes with pitch bends each need a channel to themselves while they sound, so they are spread
        over extra tracks of the same program (as few as the overlaps allow).
        """
        import pretty_midi

        midi = pretty_midi.PrettyMIDI(initial_tempo=self.tempo_bpm)
        for program in self.programs or [0]:
            midi.instruments.extend(self._tracks(program, pitch_bends))
        return midi

    def _tracks(self, program: int, pitch_bends: bool) -> list[Any]:
        import pretty_midi

        name = pretty_midi.program_to_instrument_name(program)
        main = pretty_midi.Instrument(program=program, name=name)
        bend_tracks: list[pretty_midi.Instrument] = []
        for note in (n for n in self.notes if n.program == program):
            midi_note = pretty_midi.Note(velocity=note.velocity, pitch=note.pitch, start=note.start_s, end=note.end_s)
            if not (pitch_bends and note.pitch_bends):
                main.notes.append(midi_note)
                continue
            track = next((t for t in bend_tracks if t.notes[-1].end <= note.start_s), None)
            if track is None:
                track = pretty_midi.Instrument(program=program, name=f"{name} (bends {len(bend_tracks) + 1})")
                bend_tracks.append(track)
            track.notes.append(midi_note)
            times = np.linspace(note.start_s, note.end_s, len(note.pitch_bends), endpoint=False)
            for time_s, semitones in zip(times, note.pitch_bends):
                value = int(np.clip(round(semitones * 4096), -8192, 8191))  # +-2 semitone bend range
                track.pitch_bends.append(pretty_midi.PitchBend(value, float(time_s)))
            track.pitch_bends.append(pretty_midi.PitchBend(0, note.end_s))
        return [main, *bend_tracks]

    def save_midi(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the MIDI file and remember its path in :attr:`midi_path`."""
        midi = self.to_midi()
        path = write_atomically(_ensure_new(Path(path), overwrite), lambda tmp: midi.write(str(tmp)), "MIDI")
        self.midi_path = path
        return path

    @property
    def abc(self) -> str:
        """The notes as an ABC score: ``meter``, ``tempo_bpm``, grid and ``L:`` of ``unit``, bars from
        ``downbeat_s``; one ``V:`` per voice of each instrument, named, with its ``%%MIDI program``."""
        if self._abc is None:
            import pretty_midi

            from m2ugen.notation.abc import AbcConfig, write_abc

            midi = pretty_midi.PrettyMIDI(initial_tempo=self.tempo_bpm)
            shift = self.downbeat_s
            for program in self.programs:
                own = [n for n in self.notes if n.program == program]
                n_voices = max(n.voice for n in own) + 1
                for voice in range(n_voices):
                    name = pretty_midi.program_to_instrument_name(program)
                    part = pretty_midi.Instrument(program=program, name=name if n_voices == 1 else f"{name} {voice + 1}")
                    part.notes = [pretty_midi.Note(n.velocity, n.pitch, max(0.0, n.start_s - shift), max(0.0, n.end_s - shift))
                                  for n in own if n.voice == voice]
                    if part.notes:
                        midi.instruments.append(part)
            config = AbcConfig(meter=self.meter, tempo_bpm=self.tempo_bpm, unit=self.unit, title="Transcription")
            self._abc = write_abc(midi, config)
        return self._abc

    def save_abc(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write :attr:`abc` to ``path``."""
        text = self.abc
        return write_atomically(_ensure_new(Path(path), overwrite),
                                lambda tmp: tmp.write_text(text, encoding="utf-8"), "ABC")

    def plot(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Draw a piano roll (time in seconds against pitch, shade = velocity) as a PNG."""
        from matplotlib import colormaps
        from matplotlib.figure import Figure

        path = _ensure_new(Path(path), overwrite)
        figure = Figure(figsize=(min(24.0, 6.0 + self.duration_s / 10.0), 5.0), dpi=100)
        axes = figure.add_subplot()
        if self.notes:
            shades = colormaps["viridis"](np.array([n.velocity for n in self.notes]) / 127.0)
            axes.barh([n.pitch for n in self.notes], [n.end_s - n.start_s for n in self.notes],
                      left=[n.start_s for n in self.notes], height=0.8, color=shades)
            low, high = min(n.pitch for n in self.notes), max(n.pitch for n in self.notes)
            c_notes = list(range((low // 12) * 12, high + 1, 12))
            axes.set_yticks(c_notes, [f"C{p // 12 - 1}" for p in c_notes])
            axes.set_ylim(low - 1, high + 1)
        else:
            axes.text(0.5, 0.5, "no notes", ha="center", va="center", transform=axes.transAxes)
        axes.set_xlim(0, max(self.duration_s, 1e-3))
        axes.set_xlabel("time (s)")
        axes.set_ylabel("pitch")
        axes.set_title(self.message, fontsize=9)
        figure.tight_layout()
        return write_atomically(path, lambda tmp: figure.savefig(tmp, format="png"), "piano roll")


# ----------------------------------------------------------------------------------------------
# Audio in windows


def _windows(n_samples: int, window: int, context: int) -> Iterator[tuple[int, int, int, float]]:
    """Yield ``(audio_start, audio_end, core_start, core_end)`` in samples; cores tile the audio.

    Each window's audio is its core plus up to ``context`` samples on each side; the last core
    (which takes the remainder, up to ``window + context // 2``) ends at ``inf``.
    """
    core_start = 0
    while True:
        core_end: float = core_start + window
        if core_end + context // 2 >= n_samples:
            core_end = float("inf")
        yield max(0, core_start - context), min(n_samples, core_start + window + context), core_start, core_end
        if core_end == float("inf"):
            return
        core_start += window


# ----------------------------------------------------------------------------------------------
# Model


@functools.lru_cache(maxsize=1)
def _load_model() -> Any:
    """basic-pitch's bundled ICASSP-2022 model on ONNX runtime, loaded once per process."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # basic-pitch logs a warning per missing backend at import
    try:
        from basic_pitch import FilenameSuffix, build_icassp_2022_model_path
        from basic_pitch.inference import Model
    except ImportError as err:
        raise ConfigError(f"transcription needs basic-pitch and onnxruntime ({err}); see docs/transcription.md") from err
    finally:
        logging.disable(previous)
    return Model(build_icassp_2022_model_path(FilenameSuffix.onnx))


def _decode(samples: np.ndarray, config: TranscribeConfig) -> list[Note]:
    """Notes of one window (times from its first sample), as basic-pitch's ``predict`` would find them."""
    model = _load_model()  # first: it imports basic-pitch with its import-time warnings silenced
    from basic_pitch import constants
    from basic_pitch.inference import unwrap_output, window_audio_file
    from basic_pitch.note_creation import model_output_to_notes

    overlap_frames = 30  # basic-pitch's run_inference: 30 frames overlap between its 2 s model windows
    overlap = overlap_frames * constants.FFT_HOP
    padded = np.concatenate([np.zeros(overlap // 2, dtype=np.float32), samples])
    batch = np.stack([w for w, _ in window_audio_file(padded, constants.AUDIO_N_SAMPLES - overlap)])
    output = {k: unwrap_output(v, samples.size, overlap_frames) for k, v in model.predict(batch).items()}
    if output["note"].shape[0] < 2:
        return []
    _, events = model_output_to_notes(
        output,
        onset_thresh=config.onset_threshold,
        frame_thresh=config.frame_threshold,
        min_note_len=max(1, int(round(config.min_note_s * FRAMES_PER_S))),
        include_pitch_bends=config.pitch_bends,
        multiple_pitch_bends=False,
        midi_tempo=120,
    )
    return [
        Note(float(start), float(end), int(pitch), int(np.clip(round(127 * amplitude), 1, 127)),
             tuple(float(b) / constants.CONTOURS_BINS_PER_SEMITONE for b in bends) if bends else None)
        for start, end, pitch, amplitude, bends in events
    ]


def _shift(note: Note, offset_s: float) -> Note:
    return Note(note.start_s + offset_s, note.end_s + offset_s, note.pitch, note.velocity, note.pitch_bends)


def _extend(note: Note, later: Note) -> Note:
    """``note`` lengthened to the end of ``later`` (the same note, seen again in the next window)."""
    bends = note.pitch_bends
    if bends is not None and later.pitch_bends:
        skip = int(round((note.end_s - later.start_s) * FRAMES_PER_S))
        bends = bends + later.pitch_bends[max(0, skip):]
    return Note(note.start_s, max(note.end_s, later.end_s), note.pitch, note.velocity, bends)


def _merge_duplicates(notes: list[Note], tolerance_s: float = 0.05) -> list[Note]:
    """Keep one of two same-pitch notes whose onsets are within ``tolerance_s`` (window seams)."""
    merged: list[Note] = []
    for note in sorted(notes, key=lambda n: (n.pitch, n.start_s)):
        if merged and merged[-1].pitch == note.pitch and note.start_s - merged[-1].start_s < tolerance_s:
            merged[-1] = _extend(merged[-1], note)
        else:
            merged.append(note)
    return sorted(merged, key=lambda n: (n.start_s, n.pitch))


def _describe(notes: list[Note], samples: np.ndarray, duration_s: float, config: TranscribeConfig) -> Transcription:
    """Who plays what and how it is counted: one line if monophonic, programs, voices, metre and tempo."""
    from dataclasses import replace

    from m2ugen.transcription import instruments, meter, mono, voices

    monophonic = config.mono if config.mono is not None else mono.is_monophonic(notes)
    if monophonic:
        notes = mono.one_line(notes)
    if config.program is not None:
        programs = [config.program] * len(notes)
    else:
        names, probabilities = instruments.program_probabilities(samples, [(n.start_s, n.end_s, n.pitch) for n in notes])
        programs = instruments.assign_programs(names, probabilities, monophonic=monophonic)
    notes = [replace(note, program=program) for note, program in zip(notes, programs)]
    if config.voices and not monophonic:
        for program in set(programs):
            own = [i for i, note in enumerate(notes) if note.program == program]
            for i, voice in zip(own, voices.assign_voices([notes[i] for i in own])):
                notes[i] = replace(notes[i], voice=voice)
    timing = meter.estimate(np.array([n.start_s for n in notes]), np.array([n.end_s - n.start_s for n in notes]),
                            meter=config.meter, tempo_bpm=config.tempo_bpm, polyphonic=not monophonic)
    return Transcription(notes=notes, duration_s=duration_s, tempo_bpm=float(timing.tempo_bpm), meter=timing.meter,
                         downbeat_s=timing.downbeat_s, unit=timing.unit, monophonic=monophonic)


def transcribe(
    audio: str | Path | np.ndarray | Audio,
    *,
    sample_rate: int | None = None,
    config: TranscribeConfig | None = None,
    max_seconds: float | None = MAX_AUDIO_S,
    on_progress: Callable[[float, float], None] | None = None,
) -> Transcription:
    """Transcribe the notes of a recording.

    Args:
        audio: a file path, an :class:`~m2ugen.audio.Audio`, or samples ``(S,)`` / ``(C, S)`` in [-1, 1].
        sample_rate: sample rate of an array ``audio`` in Hz.
        config: thresholds, windowing, voice and score settings; defaults when None.
        max_seconds: longest audio accepted (checked on the header before decoding); None: no limit.
            The decoded audio is held in memory (5.3 MB per minute); the model's working memory
            is bounded by ``config.window_s``.
        on_progress: called after each window with ``(seconds_done, seconds_total)``.

    Returns:
        A :class:`Transcription`; with no notes (silence) its :attr:`~Transcription.message` says so.

    Raises:
        MediaError: the audio is missing, unreadable, corrupt or truncated, shorter than 0.05 s or
            longer than ``max_seconds`` (see :func:`m2ugen.media.load_audio`).
        ConfigError: a setting is out of range, or basic-pitch / onnxruntime is not installed.
    """
    from m2ugen.media import load_audio

    config = config or TranscribeConfig()
    samples = load_audio(audio, MODEL_SAMPLE_RATE, sample_rate=sample_rate, max_seconds=max_seconds,
                         min_seconds=MIN_DURATION_S)
    rate = MODEL_SAMPLE_RATE
    duration_s = samples.size / rate
    notes: list[Note] = []
    open_notes: dict[int, Note] = {}  # notes cut by the end of the previous window, by pitch
    for start, end, core_start_n, core_end_n in _windows(samples.size, int(config.window_s * rate), int(config.context_s * rate)):
        window = samples[start:end]
        audio_start, core_start, core_end = start / rate, core_start_n / rate, core_end_n / rate
        silent = float(np.max(np.abs(window))) < SILENCE_PEAK
        found = [] if silent else sorted((_shift(n, audio_start) for n in _decode(window, config)), key=lambda n: n.start_s)
        last = core_end == float("inf")
        cut_at = end / rate - SEAM_MARGIN_S  # notes ending after this were cut by the window's end
        still_open: dict[int, Note] = {}
        continued: set[int] = set()  # ids of notes in ``found`` that continue an open note
        for pitch, earlier in open_notes.items():
            for later in found:  # the same note again, seen from this window (maybe split in two)
                if later.pitch == pitch and later.start_s <= earlier.end_s + SEAM_GAP_S:
                    earlier = _extend(earlier, later)
                    continued.add(id(later))
            if earlier.end_s >= cut_at and not last:
                still_open[pitch] = earlier
            else:
                notes.append(earlier)
        for note in found:
            if id(note) in continued or not core_start <= note.start_s < core_end:
                continue
            if note.end_s >= cut_at and not last:
                if note.pitch in still_open:
                    notes.append(still_open[note.pitch])
                still_open[note.pitch] = note
            else:
                notes.append(note)
        open_notes = still_open
        if on_progress is not None:
            on_progress(end / rate, duration_s)
    notes.extend(open_notes.values())
    return _describe(_merge_duplicates(notes), samples, duration_s, config)
