"""Render MIDI to audio with the FluidSynth program and a General MIDI soundfont.

Used to check transcription on music whose notes are known, and to listen to a transcription.
Needs the ``fluidsynth`` executable and a soundfont (Debian: ``fluidsynth fluid-soundfont-gm``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from m2ugen.errors import ConfigError, MediaError

SOUNDFONT_PATHS = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
    Path("/usr/share/soundfonts/default.sf2"),
)


def find_soundfont() -> Path | None:
    """The first General MIDI soundfont of :data:`SOUNDFONT_PATHS` that exists, else None."""
    return next((path for path in SOUNDFONT_PATHS if path.is_file()), None)


def render_midi(
    midi_path: str | Path,
    wav_path: str | Path,
    *,
    sample_rate: int = 22050,
    soundfont: str | Path | None = None,
    gain: float = 0.6,
) -> Path:
    """Synthesize ``midi_path`` into a 16-bit WAV file (stereo, as FluidSynth writes it).

    Args:
        midi_path: a Standard MIDI File.
        wav_path: output path; overwritten if it exists.
        sample_rate: output sample rate in Hz.
        soundfont: a ``.sf2`` file; None takes :func:`find_soundfont`.
        gain: FluidSynth master gain (0-10); 0.6 keeps dense chords from clipping.

    Raises:
        ConfigError: ``fluidsynth`` or a soundfont is missing.
        MediaError: FluidSynth failed on the MIDI file.
    """
    executable = shutil.which("fluidsynth")
    if executable is None:
        raise ConfigError("fluidsynth is not installed (Debian: apt-get install fluidsynth fluid-soundfont-gm)")
    font = Path(soundfont) if soundfont is not None else find_soundfont()
    if font is None or not font.is_file():
        raise ConfigError(f"no General MIDI soundfont found (looked for {soundfont or ', '.join(map(str, SOUNDFONT_PATHS))})")
    midi_path, wav_path = Path(midi_path), Path(wav_path)
    if not midi_path.is_file():
        raise MediaError(f"{midi_path}: no such MIDI file")
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    command = [executable, "-ni", "-q", "-g", str(gain), "-r", str(sample_rate), "-T", "wav", "-F", str(wav_path),
               str(font), str(midi_path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not wav_path.is_file():
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise MediaError(f"{midi_path}: fluidsynth failed ({reason[-1] if reason else f'exit {result.returncode}'})")
    return wav_path
