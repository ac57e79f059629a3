"""``m2ugen play`` and the score files ``chat`` / ``generate`` write beside a score reply's audio."""

from __future__ import annotations

from pathlib import Path

import pretty_midi
import pytest
import soundfile as sf

from m2ugen.assistant import Reply
from m2ugen.cli import main
from m2ugen.commands import chat
from m2ugen.decoders.score import ScoreDecoder
from m2ugen.notation.render import find_soundfont
from m2ugen.notation.score import parse_abc, score_seconds

pytestmark = pytest.mark.skipif(find_soundfont() is None, reason="needs a General MIDI sound font")

TUNE = "X:1\nT:Scale\nM:4/4\nL:1/8\nQ:1/4=150\nK:D\nV:1\n%%MIDI program 73\nDEFG ABcd |]\nV:2\n%%MIDI program 32\nD,8 |]\n"


def test_play_writes_audio_and_midi(tmp_path: Path, capsys) -> None:
    (tmp_path / "tune.abc").write_text(TUNE)
    out, midi = tmp_path / "out" / "tune.wav", tmp_path / "tune.mid"
    assert main(["play", str(tmp_path / "tune.abc"), "-o", str(out), "--midi", str(midi)]) == 0
    info = sf.info(str(out))
    assert info.samplerate == 22050 and info.duration == pytest.approx(score_seconds(parse_abc(TUNE)) + 1.0, abs=0.05)
    assert [inst.program for inst in pretty_midi.PrettyMIDI(str(midi)).instruments] == [73, 32]
    assert main(["play", str(tmp_path / "tune.abc"), "-o", str(out)]) == 2  # exists: not overwritten
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "expected"), [
    ("X:1\nK:C\nCDE & F|\n", "bad.abc: line 3: voice overlay"),
    ("X:1\nM:4/4\n", "bad.abc: no K: line"),
    (None, "bad.abc: ABC file not found"),
])
def test_play_reports_bad_input_in_one_line(tmp_path: Path, capsys, content: str | None, expected: str) -> None:
    if content is not None:
        (tmp_path / "bad.abc").write_text(content)
    assert main(["play", str(tmp_path / "bad.abc"), "-o", str(tmp_path / "bad.wav")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1
    assert not (tmp_path / "bad.wav").exists()


def test_a_chat_score_reply_writes_abc_and_midi_beside_the_audio(tmp_path: Path) -> None:
    class Bot:
        def chat(self, text, **kwargs):
            midi = tmp_path / "score-1.mid"
            audio = ScoreDecoder().render(TUNE, midi_path=midi)
            return Reply(text="A scale.", task="generate", audio=audio, midi_path=midi, abc=TUNE)

    chat._turn(Bot(), "Write a scale", {}, {}, tmp_path)
    assert (tmp_path / "reply-1.abc").read_text() == TUNE
    assert [i.program for i in pretty_midi.PrettyMIDI(str(tmp_path / "reply-1.mid")).instruments] == [73, 32]
    assert (tmp_path / "reply-1.wav").is_file() and not (tmp_path / "score-1.mid").exists()  # moved, not copied
