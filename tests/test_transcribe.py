"""Transcription: MIDI -> FluidSynth audio -> notes round trips, windows, scores, bad input, routing, CLI."""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from m2ugen.cli import main
from m2ugen.errors import ConfigError, MediaError
from m2ugen.metrics.transcription import note_scores
from m2ugen.notation.abc import quantize_notes
from m2ugen.routing import is_transcription_request
from m2ugen.transcribe import TranscribeConfig, Transcription, transcribe
from transcription_utils import chords, melody, needs_abc2midi, needs_fluidsynth, note_tuples, render


@dataclass
class Piece:
    midi: pretty_midi.PrettyMIDI
    wav: Path
    result: Transcription


@pytest.fixture(scope="session")
def piano_melody(tmp_path_factory) -> Piece:
    """12 s monophonic piano melody, rendered and transcribed once (this also warms up numba)."""
    if needs_fluidsynth.args[0]:
        pytest.skip(needs_fluidsynth.kwargs["reason"])
    directory = tmp_path_factory.mktemp("melody")
    midi = melody(12.0, seed=3)
    wav = render(midi, directory, "melody")
    return Piece(midi, wav, transcribe(wav))


@needs_fluidsynth
def test_monophonic_piano_melody_reaches_onset_f1_0_8(piano_melody: Piece) -> None:
    scores = note_scores(note_tuples(piano_melody.midi), [(n.start_s, n.end_s, n.pitch) for n in piano_melody.result.notes])
    print(f"monophonic piano melody: onset F1 {scores.f1:.3f}, with offsets {scores.f1_with_offsets:.3f}")
    assert scores.f1 >= 0.8
    assert 80 <= piano_melody.result.tempo_bpm <= 125  # the piece is at 100 BPM; allow estimator slack


@needs_fluidsynth
def test_piano_chords_are_mostly_found(tmp_path: Path) -> None:
    midi = chords(8.0, seed=1)
    result = transcribe(render(midi, tmp_path, "chords"))
    scores = note_scores(note_tuples(midi), [(n.start_s, n.end_s, n.pitch) for n in result.notes])
    print(f"piano triads: onset F1 {scores.f1:.3f}")
    assert scores.f1 >= 0.6


@needs_fluidsynth
def test_small_windows_give_the_same_notes_as_one_window(tmp_path: Path, piano_melody: Piece) -> None:
    # A note held across the seams at 4 s and 8 s must come back as one note, not two halves.
    midi = melody(12.0, seed=3)
    midi.instruments[0].notes = [n for n in midi.instruments[0].notes if not 2.5 < n.start < 9.0]
    midi.instruments[0].notes.append(pretty_midi.Note(velocity=100, pitch=67, start=3.0, end=8.6))
    wav = render(midi, tmp_path, "held")
    whole = transcribe(wav, config=TranscribeConfig(window_s=60.0))
    windowed = transcribe(wav, config=TranscribeConfig(window_s=4.0, context_s=1.0))
    held = [n for n in windowed.notes if n.pitch == 67 and abs(n.start_s - 3.0) < 0.1]
    assert len(held) == 1 and held[0].end_s > 8.0
    whole_f1 = note_scores(note_tuples(midi), [(n.start_s, n.end_s, n.pitch) for n in whole.notes]).f1
    windowed_f1 = note_scores(note_tuples(midi), [(n.start_s, n.end_s, n.pitch) for n in windowed.notes]).f1
    assert windowed_f1 >= whole_f1 - 0.1 and windowed_f1 >= 0.7


@needs_fluidsynth
@needs_abc2midi
def test_abc_parses_back_into_the_same_notes_as_the_midi(tmp_path: Path, piano_melody: Piece) -> None:
    result = piano_melody.result
    midi_path = result.save_midi(tmp_path / "melody.mid")
    abc_path = result.save_abc(tmp_path / "melody.abc")
    subprocess.run(["abc2midi", str(abc_path), "-o", str(tmp_path / "from_abc.mid")], check=True, capture_output=True)
    grid_s = 60.0 / round(result.tempo_bpm) * 4 / result.unit  # L:1/unit at Q:1/4=tempo
    shift = result.downbeat_s  # the ABC's first bar line
    expected = quantize_notes([pretty_midi.Note(n.velocity, n.pitch, max(0.0, n.start - shift), max(0.0, n.end - shift))
                               for n in pretty_midi.PrettyMIDI(str(midi_path)).instruments[0].notes], grid_s=grid_s)
    parsed = [n for inst in pretty_midi.PrettyMIDI(str(tmp_path / "from_abc.mid")).instruments for n in inst.notes]
    assert sorted((n.pitch, round(n.start / grid_s), round(n.end / grid_s)) for n in parsed) == sorted(
        (n.pitch, n.onset, n.offset) for n in expected)
    assert len(expected) == len(result.notes) > 0


@needs_fluidsynth
def test_outputs_midi_abc_and_piano_roll(tmp_path: Path, piano_melody: Piece) -> None:
    result = piano_melody.result
    path = result.save_midi(tmp_path / "out.mid")
    assert result.midi_path == path
    written = pretty_midi.PrettyMIDI(str(path))
    written_notes = sorted((n.start, n.pitch) for n in written.instruments[0].notes)
    assert [p for _, p in written_notes] == [n.pitch for n in result.notes]
    np.testing.assert_allclose([t for t, _ in written_notes], [n.start_s for n in result.notes], atol=0.01)
    assert round(float(written.get_tempo_changes()[1][0])) == round(result.tempo_bpm)
    with pytest.raises(ConfigError, match="already exists"):
        result.save_midi(path)
    name = pretty_midi.program_to_instrument_name(result.programs[0])
    for field in ("X:1", f"M:{result.meter}", f"L:1/{result.unit}", f"Q:1/4={round(result.tempo_bpm)}", "K:",
                  f'V:1 name="{name}"', f"%%MIDI program {result.programs[0]}"):
        assert field in result.abc
    png = result.plot(tmp_path / "roll.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



def test_a_full_disk_is_named_and_the_earlier_files_are_kept(tmp_path: Path, piano_melody: Piece,
                                                             monkeypatch) -> None:
    result = piano_melody.result
    midi, abc = result.save_midi(tmp_path / "out.mid"), result.save_abc(tmp_path / "out.abc")
    before = midi.read_bytes(), abc.read_bytes()

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pretty_midi.PrettyMIDI, "write", no_space)
    monkeypatch.setattr(Path, "write_text", no_space)
    with pytest.raises(MediaError, match=r"out\.mid: cannot write MIDI \(.*No space left"):
        result.save_midi(midi, overwrite=True)
    with pytest.raises(MediaError, match=r"out\.abc: cannot write ABC \(.*No space left"):
        result.save_abc(abc, overwrite=True)
    assert (midi.read_bytes(), abc.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.abc", "out.mid"]


@needs_fluidsynth
def test_pitch_bends_are_written_to_the_midi_file(piano_melody: Piece) -> None:
    result = transcribe(piano_melody.wav, config=TranscribeConfig(pitch_bends=True))
    assert result.notes and all(n.pitch_bends is not None for n in result.notes)
    midi = result.to_midi()
    assert sum(len(inst.pitch_bends) for inst in midi.instruments) > 0
    assert sum(len(inst.notes) for inst in midi.instruments) == len(result.notes)


def test_silence_gives_an_empty_result_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(22050 * 2, dtype=np.float32), 22050)
    with pytest.warns(UserWarning, match="silent"):
        result = transcribe(path)
    assert result.notes == [] and "No notes found" in result.message
    assert "z16" in result.abc  # still a valid one-bar score


def test_noise_and_arrays_do_not_crash() -> None:
    noise = np.random.default_rng(0).standard_normal((2, 44100)).astype(np.float32) * 0.3
    result = transcribe(noise, sample_rate=44100)
    assert result.duration_s == pytest.approx(1.0, abs=0.01)
    assert result.abc.startswith("X:1")
    assert all(21 <= n.pitch <= 108 and n.end_s > n.start_s for n in result.notes)


def test_one_sample_file_and_two_hour_header_raise_media_error(tmp_path: Path) -> None:
    tiny = tmp_path / "one_sample.wav"
    sf.write(tiny, np.zeros(1, dtype=np.float32), 22050)
    with pytest.raises(MediaError, match="too short"):
        transcribe(tiny)
    fake = tmp_path / "two_hours.wav"
    sf.write(fake, np.zeros(22050, dtype=np.float32), 22050, subtype="PCM_16")
    data = bytearray(fake.read_bytes())
    declared = 2 * 3600 * 22050 * 2
    at = data.find(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", declared)
    data[4:8] = struct.pack("<I", declared + 36)
    fake.write_bytes(bytes(data))
    with pytest.raises(MediaError, match="7200"):
        transcribe(fake)
    with pytest.raises(MediaError, match="not found"):
        transcribe(tmp_path / "missing.wav")


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="window_s"):
        TranscribeConfig(window_s=1.0)
    with pytest.raises(ConfigError, match="meter"):
        TranscribeConfig(meter="four")


@pytest.mark.parametrize("text", [
    "Transcribe this", "can you transcribe the piano part?", "Please notate this melody",
    "Give me the sheet music", "convert this to MIDI", "write it down in ABC notation",
    "I want the score of this piece", "what notes are played here?", "export as abc", "MIDI please",
])
def test_transcription_requests_are_recognised(text: str) -> None:
    assert is_transcription_request(text)


@pytest.mark.parametrize("text", [
    "What is the score of this game?", "show me the score of the match", "compose a song in ABC notation",
    "generate a new melody as MIDI", "describe this music", "what key is this in?", "make it faster",
    "what is ABC notation?", "he scored twice", "where can I buy sheet music",
])
def test_other_requests_are_not_routed_to_transcription(text: str) -> None:
    assert not is_transcription_request(text)


@needs_fluidsynth
def test_cli_writes_midi_abc_and_plot(tmp_path: Path, piano_melody: Piece, capsys) -> None:
    out = tmp_path / "cli"
    argv = ["transcribe", str(piano_melody.wav), "-o", str(out / "m.mid"), "--abc", str(out / "m.abc"),
            "--plot", str(out / "roll.png"), "--no-progress"]
    assert main(argv) == 0
    assert (out / "m.mid").is_file() and (out / "roll.png").is_file()
    assert (out / "m.abc").read_text().startswith("X:1")
    assert "Transcribed" in capsys.readouterr().out
    assert main(argv) == 2  # outputs exist and --overwrite was not given
    assert "already exists" in capsys.readouterr().err
    assert main(["transcribe", str(tmp_path / "missing.wav")]) == 2


@needs_fluidsynth
def test_cli_mono_meter_tempo_and_program_override_the_estimates(tmp_path: Path, piano_melody: Piece, capsys) -> None:
    argv = ["transcribe", str(piano_melody.wav), "-o", str(tmp_path / "m.mid"), "--no-progress",
            "--mono", "--meter", "6/8", "--tempo", "150", "--program", "40"]
    assert main(argv) == 0
    abc = capsys.readouterr().out
    assert "M:6/8" in abc and "Q:1/4=150" in abc and "L:1/8" in abc and "%%MIDI program 40" in abc
    assert abc.count("V:") == 1  # one line, one voice
    written = pretty_midi.PrettyMIDI(str(tmp_path / "m.mid"))
    assert [inst.program for inst in written.instruments] == [40]
    starts = sorted(n.start for n in written.instruments[0].notes)
    assert all(b - a >= 0.05 for a, b in zip(starts, starts[1:]))
    assert main(["transcribe", str(piano_melody.wav), "--meter", "waltz"]) == 2
    assert "meter 'waltz'" in capsys.readouterr().err


@pytest.mark.parametrize("extra, reason", [
    (["-o", "{tmp}/out.wav"], "out.wav: output must end in .mid, .midi"),
    (["-o", "{tmp}/folder.mid"], "folder.mid: is a directory"),
    (["--plot", "{tmp}/roll.txt"], "roll.txt: output must end in .png"),
    (["--abc", "{tmp}/file.txt/s.abc"], "s.abc: cannot be written"),
    (["--plot", "/proc/roll.png"], "/proc/roll.png: cannot be written"),
])
def test_cli_checks_outputs_before_transcribing(tmp_path: Path, capsys, monkeypatch, extra, reason) -> None:
    import m2ugen.transcribe

    monkeypatch.setattr(m2ugen.transcribe, "transcribe", lambda *a, **k: pytest.fail("transcribed anyway"))
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros(1600, np.float32), 16000)
    (tmp_path / "folder.mid").mkdir()
    (tmp_path / "file.txt").write_text("not a folder")
    argv = ["transcribe", str(song), *[a.format(tmp=tmp_path) for a in extra], "--overwrite"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and reason in err and "Traceback" not in err


def test_cli_names_a_directory_input(tmp_path: Path, capsys) -> None:
    assert main(["transcribe", str(tmp_path)]) == 2
    assert f"{tmp_path}: is a directory" in capsys.readouterr().err
