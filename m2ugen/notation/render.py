"""Render notes or MIDI files to audio with a General MIDI sound font (TinySoundFont, in process).

Every render is bounded: the output has exactly as many samples as the notes need plus a release
tail, capped at ``max_seconds``, so a render can neither run on forever nor fill the disk (the
FluidSynth command line can, on some files). A sound font is loaded once per process and reused.
Fonts are found by name among the Debian packages (``fluid-soundfont-gm``,
``musescore-general-soundfont-small``, ``timgm6mb-soundfont``) and pretty_midi's bundled TimGM6mb.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m2ugen.errors import ConfigError, MediaError

SOUNDFONT_DIRS = (
    Path("/usr/share/sounds/sf2"), Path("/usr/share/sounds/sf3"), Path("/usr/share/soundfonts"),
)
# Known General MIDI fonts by the name m2ugen uses for them, in order of preference.
SOUNDFONT_NAMES = ("FluidR3_GM.sf2", "MuseScore_General.sf3", "TimGM6mb.sf2")
RELEASE_TAIL_S = 1.0
MAX_SECONDS = 1800.0
_DRUM_CHANNEL = 9


@dataclass(frozen=True)
class SynthNote:
    """One note to play: times in seconds, 0-based GM ``program``; each ``part`` plays on its own MIDI channel."""

    onset: float
    offset: float
    pitch: int
    velocity: int
    program: int
    part: int = 0
    is_drum: bool = False


def _pretty_midi_font() -> Path:
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def find_soundfonts() -> dict[str, Path]:
    """The known GM fonts installed here: name (see :data:`SOUNDFONT_NAMES`) -> path."""
    found: dict[str, Path] = {}
    for name in SOUNDFONT_NAMES:
        candidates = [folder / name for folder in SOUNDFONT_DIRS]
        if name == "TimGM6mb.sf2":  # the copy pinned by the pretty_midi version first: same bytes everywhere
            candidates.insert(0, _pretty_midi_font())
        path = next((c for c in candidates if c.is_file()), None)
        if path is not None:
            found[name] = path
    return found


def find_soundfont(name: str | None = None) -> Path | None:
    """The font called ``name`` (a :data:`SOUNDFONT_NAMES` entry), or the first installed one; None if missing."""
    fonts = find_soundfonts()
    if name is not None:
        return fonts.get(name)
    return next(iter(fonts.values()), None)


def resolve_soundfont(font: str | Path | None) -> Path:
    """A font given as a known name, a path, or None (the first installed one).

    Raises:
        ConfigError: no such font.
    """
    if font is None:
        path = find_soundfont()
        if path is None:
            raise ConfigError(f"no General MIDI sound font found (looked for {', '.join(SOUNDFONT_NAMES)} "
                              f"in {', '.join(map(str, SOUNDFONT_DIRS))}); Debian: apt-get install fluid-soundfont-gm")
        return path
    if str(font) in SOUNDFONT_NAMES and (known := find_soundfont(str(font))) is not None:
        return known
    path = Path(font)
    if not path.is_file():
        raise ConfigError(f"{font}: sound font not found (known names: {', '.join(SOUNDFONT_NAMES)})")
    return path


@functools.lru_cache(maxsize=3)
def _synth(font: str, mtime: float, sample_rate: int):  # -> (tinysoundfont.Synth, font id)
    """A synthesizer with ``font`` loaded, kept per process (loading a font takes 0.1-5 s)."""
    try:
        import tinysoundfont
    except ImportError:
        raise ConfigError("tinysoundfont is not installed (pip install --no-deps tinysoundfont)") from None
    synth = tinysoundfont.Synth(samplerate=sample_rate, gain=0.0)
    try:
        font_id = synth.sfload(font)
    except Exception as err:  # tinysoundfont raises its own exception types
        raise MediaError(f"{font}: not a readable SF2/SF3 sound font ({err})") from None
    return synth, font_id


def _silence(synth, sample_rate: int) -> None:  # noqa: ANN001 - tinysoundfont.Synth
    """Stop every voice left by an earlier render and let it fade out, so each render starts from silence."""
    synth.sounds_off(None)
    for _ in range(max(1, sample_rate // 1024)):  # at most ~1 s of fade
        if not np.any(np.frombuffer(synth.generate(1024), dtype=np.float32)):
            return


def _reset(synth, channel: int) -> None:  # noqa: ANN001 - tinysoundfont.Synth
    """Controllers of ``channel`` back to their defaults, so a render does not depend on the previous one."""
    for controller, value in ((7, 127), (10, 64), (11, 127), (64, 0)):
        synth.control_change(channel, controller, value)
    synth.pitchbend(channel, 8192)


def synthesize(
    notes: Sequence[SynthNote],
    *,
    sample_rate: int,
    soundfont: str | Path | None = None,
    part_volume: dict[int, float] | None = None,
    end_s: float | None = None,
    tail_s: float = RELEASE_TAIL_S,
    max_seconds: float = MAX_SECONDS,
) -> np.ndarray:
    """Play ``notes`` with a sound font: float32 stereo ``(samples, 2)``, unnormalised.

    The length is ``max(end_s, last offset) + tail_s`` seconds (``end_s``: the score's end, which
    may follow the last note by a rest). Each part gets its own
    MIDI channel (drums share channel 10); ``part_volume`` (0-1) sets channel volume (CC7) per part.

    Raises:
        ConfigError: no such font, or too many parts for 15 melodic channels.
        MediaError: the font is not a sound font, lacks a program, or the notes need more than ``max_seconds``.
    """
    font = resolve_soundfont(soundfont)
    length_s = max(max((n.offset for n in notes), default=0.0), end_s or 0.0) + tail_s
    if length_s > max_seconds:
        raise MediaError(f"render of {length_s:.0f} s is longer than the {max_seconds:.0f} s limit")
    synth, font_id = _synth(str(font), font.stat().st_mtime, sample_rate)
    _silence(synth, sample_rate)
    channels: dict[tuple[int, bool], int] = {}
    for note in sorted(notes, key=lambda n: (n.part, n.is_drum)):
        if (note.part, note.is_drum) in channels:
            continue
        if note.is_drum:
            channel = _DRUM_CHANNEL
        else:
            free = [c for c in range(16) if c != _DRUM_CHANNEL and c not in channels.values()]
            if not free:
                raise ConfigError("more than 15 melodic parts cannot be rendered")
            channel = free[0]
        channels[(note.part, note.is_drum)] = channel
        _reset(synth, channel)
        try:
            synth.program_select(channel, font_id, 0, note.program, is_drums=note.is_drum)
        except Exception as err:
            raise MediaError(f"{font.name}: cannot select GM program {note.program} ({err})") from None
        volume = (part_volume or {}).get(note.part, 1.0)
        synth.control_change(channel, 7, int(round(127 * min(1.0, max(0.0, volume)))))
    events: list[tuple[int, int, int, int, int]] = []  # (sample, on?, channel, pitch, velocity); offs first
    for note in notes:
        channel = channels[(note.part, note.is_drum)]
        start = int(round(note.onset * sample_rate))
        stop = max(start + 1, int(round(note.offset * sample_rate)))
        events.append((start, 1, channel, note.pitch, note.velocity))
        events.append((stop, 0, channel, note.pitch, 0))
    events.sort()
    total = int(round(length_s * sample_rate))
    out = np.zeros((total, 2), dtype=np.float32)
    position = 0
    for sample, is_on, channel, pitch, velocity in events:
        if sample > position:
            out[position:sample] = np.frombuffer(synth.generate(sample - position), dtype=np.float32).reshape(-1, 2)
            position = sample
        if is_on:
            synth.noteon(channel, pitch, max(1, min(127, velocity)))
        else:
            synth.noteoff(channel, pitch)
    if total > position:
        out[position:] = np.frombuffer(synth.generate(total - position), dtype=np.float32).reshape(-1, 2)
    return out


def midi_notes(midi_path: str | Path) -> list[SynthNote]:
    """The notes of a Standard MIDI File (one part per track/instrument), times in seconds.

    Raises:
        MediaError: the file is missing or not a MIDI file.
    """
    import pretty_midi

    midi_path = Path(midi_path)
    if not midi_path.is_file():
        raise MediaError(f"{midi_path}: no such MIDI file")
    try:
        midi = pretty_midi.PrettyMIDI(str(midi_path))
    except Exception as err:  # mido/pretty_midi raise many types for bad files
        raise MediaError(f"{midi_path}: not a readable MIDI file ({err})") from None
    return [SynthNote(n.start, n.end, n.pitch, n.velocity, inst.program, part, inst.is_drum)
            for part, inst in enumerate(midi.instruments) for n in inst.notes]


def render_midi(
    midi_path: str | Path,
    wav_path: str | Path,
    *,
    sample_rate: int = 22050,
    soundfont: str | Path | None = None,
    gain: float = 0.6,
    max_seconds: float = MAX_SECONDS,
) -> Path:
    """Synthesize ``midi_path`` into a 16-bit stereo WAV file, bounded in time and size.

    Args:
        midi_path: a Standard MIDI File.
        wav_path: output path; overwritten if it exists (written atomically).
        sample_rate: output sample rate in Hz.
        soundfont: a font name of :data:`SOUNDFONT_NAMES`, a ``.sf2``/``.sf3`` path, or None (first installed).
        gain: linear output gain; a render whose peak would clip is scaled to a 0.99 peak instead.
        max_seconds: longest render allowed (the MIDI's end plus a 1 s release tail).

    Raises:
        ConfigError: no sound font.
        MediaError: the MIDI or the font cannot be read, or the render would exceed ``max_seconds``.
    """
    import soundfile as sf

    from m2ugen.files import write_atomically

    audio = synthesize(midi_notes(midi_path), sample_rate=sample_rate, soundfont=soundfont, max_seconds=max_seconds)
    audio = audio * gain
    peak = float(np.abs(audio).max(initial=0.0))
    if peak > 0.99:
        audio *= 0.99 / peak
    wav_path = Path(wav_path)
    return write_atomically(wav_path, lambda tmp: sf.write(str(tmp), audio, sample_rate, subtype="PCM_16", format="WAV"), "WAV")
