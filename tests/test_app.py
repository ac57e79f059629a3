"""m2ugen.app: the gradio UI builds, serves GET / on loopback only, and its turn handler works."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from m2ugen.assistant import DEMO_LABEL, Assistant, Conversation

pytest.importorskip("gradio")


@pytest.fixture(scope="module")
def bot():
    return Assistant.tiny()


@pytest.fixture(scope="module")
def session(bot, tmp_path_factory):
    from m2ugen.app import ChatSession

    return ChatSession(bot, tmp_path_factory.mktemp("ui"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serves_on_loopback_and_answers_over_http(bot):
    import httpx
    from gradio_client import Client

    from m2ugen.app import serve

    port = _free_port()
    app = serve(bot, port=port, block=False)
    try:
        assert not app.share
        assert app.local_url.startswith(f"http://127.0.0.1:{port}")
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert response.status_code == 200 and "gradio" in response.text.lower()
        # one turn through the real event wiring (component order, queue, file serving)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        messages, *_ = client.predict("Compose a lullaby", None, None, None, "auto", 1, 0.6, 0.8, 8, 3.0, "0",
                                      api_name="/respond")
        assert messages[-1]["content"][0]["file"].endswith(".wav")
    finally:
        app.close()


def test_a_busy_port_is_a_one_line_error(bot):
    from m2ugen.app import serve
    from m2ugen.errors import ConfigError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}: cannot listen there") as info:
            serve(bot, port=port, block=False)
    assert "\n" not in str(info.value)


def _turn(session, text, conversation=None, messages=None, **overrides):
    args = dict(audio=None, image=None, video=None, task="auto", seconds=1, temperature=0.6, top_p=0.8,
                max_new_tokens=8, guidance_scale=3.0, seed="0")
    args.update(overrides)
    shown, messages, conversation, *inputs = session.respond(text, *args.values(), messages, conversation)
    assert shown == messages
    return (messages, conversation, *inputs)


def test_turns_keep_a_per_session_conversation(session, bot):
    messages, conversation, text, audio, image, video, midi = _turn(session, "Compose a lullaby")
    assert (text, audio, image, video) == ("", None, None, None)  # inputs are cleared
    assert midi.visible is False
    assert messages[0] == {"role": "user", "content": "Compose a lullaby"}
    assert messages[1]["content"].startswith(DEMO_LABEL)
    wav = messages[2]["content"]["path"]
    assert wav.endswith(".wav") and conversation.last_audio is not None
    # another browser session does not see this one's music
    _, other, *_ = _turn(session, "hello", conversation=Conversation())
    assert other.last_audio is None and len(other.history) == 1
    # a follow-up in the first session edits its music
    messages, conversation, *_ = _turn(session, "make it slower", conversation=conversation, messages=messages)
    assert len(conversation.history) == 2 and messages[-1]["content"]["path"] != wav


def test_bad_input_is_a_chat_message_naming_the_users_file(session, tmp_path, capfd):
    upload = tmp_path / "gradio-cache-1234" / "my song.wav"  # where gradio keeps an upload
    upload.parent.mkdir()
    upload.write_bytes(b"")
    before, conversation, *_ = _turn(session, "Compose a lullaby")
    capfd.readouterr()
    messages, after, text, audio, image, video, midi = _turn(
        session, "describe it", conversation=conversation, messages=before,
        audio={"path": str(upload), "orig_name": "my song.wav"})
    assert messages[:len(before)] == before  # the history stays
    assert messages[-1]["role"] == "assistant" and "my song.wav: empty file" in messages[-1]["content"]
    assert str(upload.parent) not in messages[-1]["content"]
    assert (text, audio, image, video) == ("describe it", None, None, None)  # text kept, upload cleared
    assert after.history == conversation.history
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "user error: my song.wav: empty file" in err and "Traceback" not in err
    messages, *_ = _turn(session, "describe it", conversation=after, messages=messages)  # the next send works
    assert messages[-1]["content"].startswith(DEMO_LABEL)


@pytest.mark.parametrize("seed, message", [("abc", "seed must be a whole number"), ("1.5", "whole number"),
                                           ("-1", "seed must be between")])
def test_a_bad_seed_is_a_chat_message(session, seed, message):
    messages, *_ = _turn(session, "Compose a lullaby", seed=seed)
    assert message in messages[-1]["content"]


def test_an_empty_seed_is_random_and_a_set_seed_repeats(session):
    def answer(seed):
        messages, *_ = _turn(session, "Tell me about jazz", seed=seed, task="answer", max_new_tokens=16,
                             conversation=Conversation())
        return messages[-1]["content"]

    assert answer("") != answer("")
    assert answer("7") == answer("7")


def test_a_transcription_offers_the_midi_the_abc_and_the_rendered_score(session, tmp_path, monkeypatch):
    import pretty_midi

    from m2ugen.assistant import Reply
    from m2ugen.notation.render import find_soundfont

    # The UI's part of a transcription turn (the transcriber itself is tested in test_transcribe.py).
    midi_file = tmp_path / "notes.mid"
    song = pretty_midi.PrettyMIDI()
    song.instruments.append(pretty_midi.Instrument(0))
    song.instruments[0].notes.append(pretty_midi.Note(velocity=90, pitch=69, start=0.0, end=0.5))
    song.write(str(midi_file))
    abc = "X:1\nK:C\nA4|\n"
    monkeypatch.setattr(session.assistant, "chat",
                        lambda *a, **k: Reply(text=abc, task="transcribe", midi_path=midi_file, abc=abc))
    messages, _, _, _, _, _, midi = _turn(session, "Transcribe this", conversation=Conversation())
    assert midi.visible is True and midi.value["orig_name"] == "notes.mid"  # a download, not an audio player
    assert messages[1]["content"] == f"```\n{abc}\n```"
    if find_soundfont() is not None:
        import soundfile as sf

        audio, _ = sf.read(messages[2]["content"]["path"])
        assert np.abs(audio).max() > 0.01


def test_clear_starts_over(session):
    shown, messages, conversation, *inputs = session.clear()
    assert shown == messages == [] and conversation.history == [] and conversation.last_audio is None
    assert inputs[:4] == ["", None, None, None] and inputs[4].visible is False
