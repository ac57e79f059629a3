"""The chat/generate/caption/edit commands, in-process through ``m2ugen.cli.main``.

Commands check their inputs before loading a model, so the bad-input table never builds one; the
others share one tiny random assistant (``load_assistant`` is patched), except the README's own demo run.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from m2ugen.assistant import DEMO_LABEL, Assistant, bundled_mini
from m2ugen.cli import main
from m2ugen.commands import common
from media_utils import melody, tone, write_audio, write_image, write_video

FAST = ["--max-new-tokens", "8", "--seed", "0"]


@pytest.fixture(scope="module")
def bot():
    return Assistant.tiny()


@pytest.fixture
def shared(bot, monkeypatch):
    """Make every command's ``--demo`` use the module's tiny random assistant (fresh conversation)."""
    loads = []

    def load(args, output_dir=None, **kwargs):
        assert args.demo
        loads.append(args)
        bot.reset()
        bot._output_dir = Path(output_dir) if output_dir is not None else None
        return bot

    monkeypatch.setattr(common, "load_assistant", load)
    return loads


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    return write_audio(tmp_path_factory.mktemp("cli") / "song.wav", melody(sr=32000), sr=32000)


def _wav_seconds(path: Path) -> float:
    info = sf.info(str(path))
    return info.frames / info.samplerate


def _one_line_error(capsys, only_line: bool = True) -> str:
    """The one ``error:`` line on stderr (with ``only_line``, also the only line there)."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    if only_line:
        assert err.strip() == errors[0], err
    return errors[0]


# --- working commands ------------------------------------------------------------------------------

def test_readme_demo_command(tmp_path, monkeypatch, capsys):
    """Exactly what .ci/run runs: a real Assistant.demo() (the bundled m2ugen-mini, or the tiny random model
    in an install without it), and -o's parent folder is created."""
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "--demo", "a lively jig in D major on the fiddle", "--seed", "0", "-o", "out/jig.wav"]) == 0
    captured = capsys.readouterr()
    if bundled_mini() is None:
        assert _wav_seconds(tmp_path / "out" / "jig.wav") > 0.5
        assert captured.out.startswith(DEMO_LABEL)
        assert "wrote out/jig.wav (" in captured.err
    else:  # m2ugen-mini writes a score: played at its own length, its ABC and MIDI files beside the audio
        from m2ugen.notation.score import parse_abc

        assert "loaded the bundled m2ugen-mini" in captured.err and not captured.out.startswith(DEMO_LABEL)
        assert _wav_seconds(tmp_path / "out" / "jig.wav") > 0.5 and (tmp_path / "out" / "jig.mid").is_file()
        parse_abc((tmp_path / "out" / "jig.abc").read_text())


@pytest.mark.parametrize("media", ["text", "image", "cmyk", "video"])
def test_generate(shared, tmp_path, capsys, media):
    extra = {
        "text": [],
        "image": ["--image", str(write_image(tmp_path / "p.png"))],
        "cmyk": ["--image", str(write_image(tmp_path / "p.jpg", mode="CMYK"))],
        "video": ["--video", str(write_video(tmp_path / "v.mp4", num_frames=12))],
    }[media]
    out = tmp_path / "music.flac"
    assert main(["generate", "--demo", "music for this", *extra, "--seconds", "0.75", "-o", str(out), *FAST]) == 0
    assert _wav_seconds(out) == pytest.approx(0.75)
    assert capsys.readouterr().out.startswith(DEMO_LABEL)


def test_generate_refuses_to_overwrite_unless_asked(shared, tmp_path, capsys):
    out = tmp_path / "x.wav"
    out.write_bytes(b"keep me")
    assert main(["generate", "--demo", "a song", "--seconds", "0.3", "-o", str(out), *FAST]) == 2
    assert "--overwrite" in _one_line_error(capsys) and out.read_bytes() == b"keep me"
    assert not shared  # refused before loading a model
    assert main(["generate", "--demo", "a song", "--seconds", "0.3", "-o", str(out), "--overwrite", *FAST]) == 0
    assert _wav_seconds(out) == pytest.approx(0.3)


def test_caption(shared, song, capsys):
    assert main(["caption", "--demo", str(song), *FAST]) == 0
    out = capsys.readouterr().out
    assert out.startswith(DEMO_LABEL) and len(out.strip()) > len(DEMO_LABEL)


def test_caption_with_question(shared, song, capsys, bot):
    assert main(["caption", "--demo", str(song), "-q", "Which instruments play?", *FAST]) == 0
    assert bot.history[-1].instruction == "Which instruments play?"


def test_edit(shared, song, tmp_path, capsys):
    out = tmp_path / "slower.wav"
    assert main(["edit", "--demo", str(song), "make it slower", "-o", str(out), *FAST]) == 0
    assert _wav_seconds(out) == pytest.approx(sf.info(str(song)).duration, abs=1e-3)  # default: the source's length
    out = tmp_path / "drums.wav"
    assert main(["edit", "--demo", str(song), "add drums", "-o", str(out), "--seconds", "0.4", *FAST]) == 0
    assert _wav_seconds(out) == pytest.approx(0.4)


def test_chat_one_shot(shared, song, tmp_path, capsys):
    out_dir = tmp_path / "chat"
    assert main(["chat", "--demo", "-m", "What instruments are playing?", "--audio", str(song),
                 "--output-dir", str(out_dir), *FAST]) == 0
    assert capsys.readouterr().out.startswith(DEMO_LABEL)
    assert not out_dir.exists() or not list(out_dir.iterdir())  # a text answer writes no file
    argv = ["chat", "--demo", "-m", "Compose a song", "--seconds", "0.5", "--output-dir", str(out_dir), *FAST]
    assert main(argv) == 0
    assert _wav_seconds(out_dir / "reply-1.wav") == pytest.approx(0.5)


def test_chat_interactive_multi_turn(shared, bot, song, tmp_path, monkeypatch, capsys):
    script = "\n".join([
        "/audio /no/such/file.wav",  # an error prints one line and the chat goes on
        "Compose a lullaby",
        "make it slower",
        f"/audio {song}",
        "What instruments are playing?",
        "/reset",
        "hello",
    ]) + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    edits = []
    original = bot.decoder.generate
    monkeypatch.setattr(bot.decoder, "generate",
                        lambda *a, **k: edits.append(k.get("source_audio")) or original(*a, **k))
    out_dir = tmp_path / "session"
    assert main(["chat", "--demo", "--seconds", "0.4", "--output-dir", str(out_dir), *FAST]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("error: ") == 1 and "/no/such/file.wav" in captured.err
    assert sorted(p.name for p in out_dir.iterdir()) == ["reply-1.wav", "reply-2.wav"]
    assert edits[0] is None and edits[1] is not None  # the edit was given the music just made
    np.testing.assert_allclose(edits[1].samples, sf.read(str(out_dir / "reply-1.wav"))[0], atol=1e-4)
    assert [t.instruction for t in bot.history] == ["hello"]  # /reset forgot the earlier turns


def test_one_line_warning_for_silent_audio(shared, tmp_path, capsys):
    silent = write_audio(tmp_path / "silence.wav", np.zeros(16000, np.float32))
    assert main(["caption", "--demo", str(silent), *FAST]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "silent" in warnings[0]


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("chat", "generate", "caption", "edit", "serve"))


# --- the bad-input table ------------------------------------------------------------------------------

def _missing(tmp):
    return tmp / "nope.wav"


def _directory(tmp):
    (tmp / "folder.wav").mkdir()
    return tmp / "folder.wav"


def _zero_bytes(tmp):
    (tmp / "empty.wav").write_bytes(b"")
    return tmp / "empty.wav"


def _truncated_wav(tmp):
    full = write_audio(tmp / "full.wav", tone(seconds=1.0))
    (tmp / "cut.wav").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return tmp / "cut.wav"


def _text_as_mp3(tmp):
    (tmp / "song.mp3").write_text("this is not music\n" * 20)
    return tmp / "song.mp3"


def _nan_samples(tmp):
    x = tone(seconds=0.5)
    x[100] = np.nan
    return write_audio(tmp / "nan.wav", x, subtype="FLOAT")


def _one_sample(tmp):
    return write_audio(tmp / "one.wav", np.array([0.5], np.float32))


def _over_limit(tmp):
    """A small file whose WAV header declares two hours (the limit is one)."""
    full = write_audio(tmp / "full.wav", tone(seconds=0.2))
    head = bytearray(full.read_bytes()[:44])
    size = 2 * 3600 * 16000 * 2
    head[4:8], head[40:44] = struct.pack("<I", size + 36), struct.pack("<I", size)
    (tmp / "long.wav").write_bytes(bytes(head) + full.read_bytes()[44:])
    return tmp / "long.wav"


def _tiny_image(tmp):
    return write_image(tmp / "pixel.png", 1, 1)


def _zero_frame_video(tmp):
    return write_video(tmp / "zero.mp4", num_frames=0)


def _caption(path, tmp):
    return ["caption", "--demo", str(path)]


def _edit(path, tmp):
    return ["edit", "--demo", str(path), "make it slower", "-o", str(tmp / "out.wav")]


def _chat(path, tmp):
    return ["chat", "--demo", "-m", "describe it", "--audio", str(path), "--output-dir", str(tmp / "chat")]


def _image(path, tmp):
    return ["generate", "--demo", "music", "--image", str(path), "-o", str(tmp / "out.wav")]


def _video(path, tmp):
    return ["generate", "--demo", "music", "--video", str(path), "-o", str(tmp / "out.wav")]


BAD_INPUTS = [
    (_missing, _caption, "not found"),
    (_directory, _edit, "is a directory"),
    (_zero_bytes, _caption, "empty file"),
    (_truncated_wav, _caption, "truncated"),
    (_text_as_mp3, _chat, "not a supported audio file"),
    (_nan_samples, _edit, "non-finite"),
    (_one_sample, _caption, "too short"),
    (_over_limit, _chat, "longer than the limit"),
    (_tiny_image, _image, "too small"),
    (_zero_frame_video, _video, "0 frames"),
    (_missing, _image, "not found"),
]


@pytest.mark.parametrize("make, command, reason", BAD_INPUTS,
                         ids=[f"{m.__name__.strip('_')}-{c.__name__.strip('_')}" for m, c, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_nonzero(shared, tmp_path, capsys, make, command, reason):
    path = make(tmp_path)
    assert main(command(path, tmp_path)) != 0
    line = _one_line_error(capsys)
    assert str(path) in line and reason in line
    assert not shared  # the model was never loaded


@pytest.mark.parametrize("argv, reason", [
    (["generate", "--demo", "x", "--seconds", "100000", "-o", "{tmp}/o.wav"], "seconds must be in"),
    (["generate", "--demo", "x", "--seconds", "0", "-o", "{tmp}/o.wav"], "seconds must be in"),
    (["generate", "--demo", "x", "--seconds", "nan", "-o", "{tmp}/o.wav"], "seconds must be in"),
    (["generate", "--demo", "x", "-o", "{tmp}/o.mp3"], "output must end in"),
    (["generate", "--demo", "x", "-o", "{tmp}"], "output must end in"),
    (["generate", "--demo", "x", "--top-p", "0", "-o", "{tmp}/o.wav"], "top_p"),
    (["chat", "--demo", "-m", "  ", "--output-dir", "{tmp}/c"], "message is empty"),
    (["generate", "--model", "{tmp}/no-model", "x", "-o", "{tmp}/o.wav"], "no-model"),
    (["serve", "--demo", "--port", "70000"], "not a TCP port"),
    (["generate", "--demo", "x", "--seed", str(2**70), "-o", "{tmp}/o.wav"], "seed must be between"),
    (["generate", "--demo", "x", "-o", "{tmp}/file.txt/o.wav"], "o.wav: cannot be written ({tmp}/file.txt is not"),
    (["edit", "--demo", "{tmp}/file.txt", "slower", "-o", "/proc/o.wav"], "/proc/o.wav: cannot be written"),
    (["chat", "--demo", "-m", "hi", "--output-dir", "{tmp}/file.txt/c"], "cannot write files there"),
])
def test_bad_settings_are_one_line_errors(tmp_path, capsys, argv, reason, bot, monkeypatch):
    monkeypatch.setattr(Assistant, "demo", classmethod(lambda cls, **kw: bot))
    (tmp_path / "file.txt").write_text("not a folder")
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    assert reason.format(tmp=tmp_path) in _one_line_error(capsys, only_line=False)


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["generate", "--demo", "x"])  # no -o
    assert info.value.code == 2
    assert "-o/--output" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "x", "-o", "o.wav"])  # neither --model nor --demo


def test_model_directory(song, tmp_path, capsys):
    from m2ugen.checkpoints import save_pretrained
    from m2ugen.config import M2UGenConfig
    from m2ugen.model import M2UGen

    save_pretrained(M2UGen.from_config(M2UGenConfig.preset("tiny")), tmp_path / "ckpt")
    assert main(["caption", "--model", str(tmp_path / "ckpt"), str(song), *FAST]) == 0
    out = capsys.readouterr().out
    assert out.strip() and not out.startswith(DEMO_LABEL)
