"""Transcription: audio -> notes with basic-pitch (its bundled ONNX model) -> MIDI, ABC and a piano roll.

:func:`transcribe` decodes the audio with :func:`m2ugen.media.load_audio`, runs the model on windows
of ``window_s`` seconds (plus ``context_s`` on each side), so its working memory does not grow with
the file, and stitches the notes of neighbouring windows.
:func:`is_transcription_request` is the assistant's routing rule (``docs/transcription.md``).
This module does not score transcriptions (:mod:`m2ugen.metrics.transcription`) and does not hold
the ABC writer (:mod:`m2ugen.notation.abc`).
"""

from __future__ import annotations

import functools
import logging
import re
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
TEMPO_ANALYSIS_S = 120.0  # the global tempo is estimated from the first two minutes
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
        program: General MIDI program of the transcribed voice (basic-pitch does not tell instruments apart).
        meter: time signature written to the ABC score.
        tempo_bpm: quarter notes per minute for MIDI and ABC; None estimates it from the audio.
    """

    onset_threshold: float = 0.5
    frame_threshold: float = 0.3
    min_note_s: float = 0.1277
    pitch_bends: bool = False
    window_s: float = 30.0
    context_s: float = 1.0
    program: int = 0
    meter: str = "4/4"
    tempo_bpm: float | None = None

    def __post_init__(self) -> None:
        for name in ("onset_threshold", "frame_threshold"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{name} {getattr(self, name)} must be between 0 and 1")
        if self.window_s < 4.0 or self.context_s < 0.5 or self.context_s * 2 > self.window_s:
            raise ConfigError(f"window_s {self.window_s} must be >= 4 and context_s {self.context_s} in 0.5..window_s/2")
        if not 0 <= self.program <= 127:
            raise ConfigError(f"program {self.program} must be a General MIDI program 0..127")
        if self.min_note_s <= 0:
            raise ConfigError(f"min_note_s {self.min_note_s} must be positive")
        if self.tempo_bpm is not None and not 10 <= self.tempo_bpm <= 400:
            raise ConfigError(f"tempo_bpm {self.tempo_bpm} is outside 10..400")
        from m2ugen.notation.abc import parse_meter

        if parse_meter(self.meter) is None:
            raise ConfigError(f"meter {self.meter!r} is not of the form N/D (e.g. 4/4, 6/8)")


@dataclass(frozen=True)
class Note:
    """One transcribed note: times in seconds, MIDI pitch and velocity (1-127).

    ``pitch_bends`` (semitones, evenly spaced from start to end) is set only with ``pitch_bends=True``.
    """

    start_s: float
    end_s: float
    pitch: int
    velocity: int
    pitch_bends: tuple[float, ...] | None = None


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
        program: General MIDI program of the voice.
        midi_path: where :meth:`save_midi` last wrote the MIDI file.
    """

    notes: list[Note]
    duration_s: float
    tempo_bpm: float
    meter: str = "4/4"
    program: int = 0
    midi_path: Path | None = None
    _abc: str | None = field(default=None, repr=False)

    @property
    def message(self) -> str:
        """One line for the user: what was found, or why nothing was."""
        if not self.notes:
            return f"No notes found in {self.duration_s:.1f} s of audio: it is silent or has no pitched sound."
        pitches = [n.pitch for n in self.notes]
        import pretty_midi

        low, high = pretty_midi.note_number_to_name(min(pitches)), pretty_midi.note_number_to_name(max(pitches))
        return (f"Transcribed {len(self.notes)} notes ({low} to {high}) from {self.duration_s:.1f} s of audio "
                f"at about {self.tempo_bpm:.0f} BPM.")

    def to_midi(self, *, pitch_bends: bool = True) -> Any:
        """The notes as a :class:`pretty_midi.PrettyMIDI` at ``tempo_bpm``.

        Notes with pitch bends each need a channel to themselves while they sound, so they are spread
        over extra tracks of the same program (as few as the overlaps allow).
        """
        import pretty_midi

        midi = pretty_midi.PrettyMIDI(initial_tempo=self.tempo_bpm)
        name = pretty_midi.program_to_instrument_name(self.program)
        main = pretty_midi.Instrument(program=self.program, name=name)
        bend_tracks: list[pretty_midi.Instrument] = []
        for note in self.notes:
            midi_note = pretty_midi.Note(velocity=note.velocity, pitch=note.pitch, start=note.start_s, end=note.end_s)
            if not (pitch_bends and note.pitch_bends):
                main.notes.append(midi_note)
                continue
            track = next((t for t in bend_tracks if t.notes[-1].end <= note.start_s), None)
            if track is None:
                track = pretty_midi.Instrument(program=self.program, name=f"{name} (bends {len(bend_tracks) + 1})")
                bend_tracks.append(track)
            track.notes.append(midi_note)
            times = np.linspace(note.start_s, note.end_s, len(note.pitch_bends), endpoint=False)
            for time_s, semitones in zip(times, note.pitch_bends):
                value = int(np.clip(round(semitones * 4096), -8192, 8191))  # +-2 semitone bend range
                track.pitch_bends.append(pretty_midi.PitchBend(value, float(time_s)))
            track.pitch_bends.append(pretty_midi.PitchBend(0, note.end_s))
        midi.instruments.extend([main, *bend_tracks])
        return midi

    def save_midi(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the MIDI file and remember its path in :attr:`midi_path`."""
        midi = self.to_midi()
        path = write_atomically(_ensure_new(Path(path), overwrite), lambda tmp: midi.write(str(tmp)), "MIDI")
        self.midi_path = path
        return path

    @property
    def abc(self) -> str:
        """The notes as an ABC score (grid of sixteenth notes at ``tempo_bpm``, ``meter``)."""
        if self._abc is None:
            from m2ugen.notation.abc import AbcConfig, write_abc

            config = AbcConfig(meter=self.meter, tempo_bpm=self.tempo_bpm, title="Transcription")
            self._abc = write_abc(self.to_midi(pitch_bends=False), config)
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


def _estimate_tempo(onset_envelope: np.ndarray) -> float:
    """Quarter-note tempo (BPM) from an onset-strength envelope (librosa's estimator, prior at 120)."""
    import librosa

    if onset_envelope.size < 2 * FRAMES_PER_S or not np.any(onset_envelope > 0):
        return 120.0
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=onset_envelope, sr=MODEL_SAMPLE_RATE, hop_length=512))[0])
    return float(np.clip(round(tempo), 40, 240))


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
    import librosa

    from m2ugen.media import load_audio

    config = config or TranscribeConfig()
    samples = load_audio(audio, MODEL_SAMPLE_RATE, sample_rate=sample_rate, max_seconds=max_seconds,
                         min_seconds=MIN_DURATION_S)
    rate = MODEL_SAMPLE_RATE
    duration_s = samples.size / rate
    notes: list[Note] = []
    open_notes: dict[int, Note] = {}  # notes cut by the end of the previous window, by pitch
    envelopes: list[np.ndarray] = []
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
        if core_start < TEMPO_ANALYSIS_S:
            core = samples[core_start_n : min(end, int(min(core_end_n, samples.size)))]
            if core.size >= 2048:
                envelopes.append(librosa.onset.onset_strength(y=core, sr=rate, hop_length=512))
        if on_progress is not None:
            on_progress(end / rate, duration_s)
    notes.extend(open_notes.values())
    tempo = config.tempo_bpm or _estimate_tempo(np.concatenate(envelopes) if envelopes else np.zeros(0))
    return Transcription(
        notes=_merge_duplicates(notes),
        duration_s=duration_s,
        tempo_bpm=float(tempo),
        meter=config.meter,
        program=config.program,
    )


# ----------------------------------------------------------------------------------------------
# Routing


_ALWAYS = re.compile(r"\b(transcrib\w*|notate|notating|write (it|this|that) down)\b")
_TARGET = re.compile(r"\b(abc|midi|score|sheet|notation|notes)\b")
_AS_TARGET = re.compile(r"\b(to|into|as|in)\s+(an?\s+)?(abc|midi)\b")
_REQUEST = re.compile(r"\b(give|show|write|make|get|send|produce|create|print|export|convert|turn|extract|"
                      r"output|need|want|generate|render|save|please|can i have|could i have)\b")
_WHICH_NOTES = re.compile(r"\b(what|which) notes\b|\bnotes (are|were) (played|being played|in)\b")
_COMPOSE = re.compile(r"\b(compose|write|create|generate|make)\s+(me\s+)?(a|an|some|new)\s+(new\s+)?"
                      r"(song|tune|melody|piece|track|music)\b")
_NOT_MUSIC_SCORE = re.compile(r"\bscore\w*\s+(of|in|for)\s+(the|this|that|a)\s+(game|match|team|test|exam|movie|film)\b"
                              r"|\b(game|match|final|test|exam|credit)\s+score\b|\bscored\b")


def is_transcription_request(text: str) -> bool:
    """True when ``text`` asks to write the given music down (the routing rule, in order):

    1. ``transcribe``/``transcription``/``notate``/``write it down`` -> yes.
    2. A request to compose something new ("write a song in ABC") -> no.
    3. A score that is not a musical one ("score of the game", "test score") -> no.
    4. "to/into/as/in MIDI|ABC" or "what/which notes" -> yes.
    5. A request word (give, show, write, convert, want, please, ...) together with abc/midi/
       score/sheet/notation/notes -> yes.  Anything else -> no.
    """
    lowered = " ".join(text.lower().split())
    if _ALWAYS.search(lowered):
        return True
    if _COMPOSE.search(lowered) or _NOT_MUSIC_SCORE.search(lowered):
        return False
    if _AS_TARGET.search(lowered) or _WHICH_NOTES.search(lowered):
        return True
    return bool(_REQUEST.search(lowered) and _TARGET.search(lowered))
