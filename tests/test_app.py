"""m2ugen.app: the gradio UI builds, serves GET / on loopback only, and its turn handler works."""

from __future__ import annotations

import socket

import pytest

from m2ugen.assistant import DEMO_LABEL, Assistant, Conversation

pytest.importorskip("gradio")


@pytest.fixture(scope="module")
def bot():
    return Assistant.demo()


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
        messages, *_ = client.predict("Compose a lullaby", None, None, None, "auto", 1, 0.6, 0.8, 8, 3.0, 0, [],
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
                max_new_tokens=8, guidance_scale=3.0, seed=0)
    args.update(overrides)
    return session.respond(text, *args.values(), messages, conversation)


def test_turns_keep_a_per_session_conversation(session, bot):
    messages, conversation, text, audio, image, video = _turn(session, "Compose a lullaby")
    assert (text, audio, image, video) == ("", None, None, None)  # inputs are cleared
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


def test_bad_input_is_a_gradio_error(session, tmp_path):
    import gradio as gr

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(gr.Error, match="empty file"):
        _turn(session, "describe it", audio=str(empty))


def test_clear_starts_over(session):
    messages, conversation, *inputs = session.clear()
    assert messages == [] and conversation.history == [] and conversation.last_audio is None
    assert inputs == ["", None, None, None]
