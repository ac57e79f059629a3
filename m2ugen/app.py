"""The gradio web UI: a chat with audio, image and video inputs, sampling sliders and a clear button.

``m2ugen serve`` launches it on 127.0.0.1; it is reachable from other machines only with an explicit
``--host``, and through a public gradio link only with ``--share``. Each browser session has its
own :class:`~m2ugen.assistant.Conversation` (history and music); the model is shared and runs one
turn at a time.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m2ugen.errors import ConfigError, M2UGenError

if TYPE_CHECKING:
    from m2ugen.assistant import Assistant, Conversation

TITLE = "M2UGen: any-to-music assistant"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


class ChatSession:
    """The UI's turn handler: one shared assistant, one conversation per browser session.

    Args:
        assistant: the model; its conversation is swapped in for each turn, under a lock.
        output_dir: where generated music is written for the browser to play.
    """

    def __init__(self, assistant: Assistant, output_dir: str | Path | None = None) -> None:
        self.assistant = assistant
        self.output_dir = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="m2ugen-ui-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._count = 0

    def respond(self, text: str, audio: str | None, image: str | None, video: str | None, task: str,
                seconds: float, temperature: float, top_p: float, max_new_tokens: float, guidance_scale: float,
                seed: float | None, messages: list[dict[str, Any]] | None, conversation: Conversation | None,
                ) -> tuple[list[dict[str, Any]], Conversation, str, None, None, None]:
        """One turn: returns (chat messages, conversation, cleared text, cleared audio/image/video).

        Raises:
            gradio.Error: with the one-line message of a bad input or setting.
        """
        import gradio as gr

        from m2ugen.assistant import Conversation

        messages = list(messages or [])
        conversation = conversation if conversation is not None else Conversation()
        settings = dict(task=task, seconds=float(seconds), temperature=float(temperature), top_p=float(top_p),
                        max_new_tokens=int(max_new_tokens), guidance_scale=float(guidance_scale),
                        seed=None if seed in (None, "") else int(seed))
        with self._lock:
            self.assistant.conversation = conversation
            try:
                reply = self.assistant.chat(text, audio=audio, image=image, video=video, **settings)
                if reply.audio is not None:
                    self._count += 1
                    wav = reply.audio.save(self.output_dir / f"reply-{self._count}.wav", overwrite=True)
            except M2UGenError as err:
                raise gr.Error(str(err)) from None
            finally:
                conversation = self.assistant.conversation
        messages.append({"role": "user", "content": text})
        for path in (audio, image, video):
            if path:
                messages.append({"role": "user", "content": {"path": str(path)}})
        shown = f"```\n{reply.abc}\n```" if reply.abc is not None else reply.text
        messages.append({"role": "assistant", "content": shown})
        if reply.audio is not None:
            messages.append({"role": "assistant", "content": {"path": str(wav)}})
        if reply.midi_path is not None:
            messages.append({"role": "assistant", "content": {"path": str(reply.midi_path)}})
        return messages, conversation, "", None, None, None

    @staticmethod
    def clear() -> tuple[list, Conversation, str, None, None, None]:
        """A fresh conversation: empty chat, history and music, cleared inputs."""
        from m2ugen.assistant import Conversation

        return [], Conversation(), "", None, None, None


def build_app(assistant: Assistant, output_dir: str | Path | None = None) -> Any:
    """The gradio ``Blocks`` of the UI (not launched)."""
    import gradio as gr

    from m2ugen.routing import TASKS

    session = ChatSession(assistant, output_dir)
    note = ("**Demo model: random, untrained weights.** Every part of the pipeline runs, but its text and "
            "music are noise." if assistant.untrained else "")
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        app.session = session
        gr.Markdown(f"# {TITLE}\n{note}")
        conversation = gr.State(None)  # a Conversation, made on the session's first turn
        chatbot = gr.Chatbot(label="Chat", height=440)
        with gr.Row():
            text = gr.Textbox(label="Message", scale=5,
                              placeholder="Ask about the music, ask for music, or say how to change it")
            send = gr.Button("Send", variant="primary", scale=1)
        with gr.Row():
            audio = gr.Audio(label="Audio", type="filepath", sources=["upload", "microphone"])
            image = gr.Image(label="Image", type="filepath")
            video = gr.Video(label="Video")
        with gr.Accordion("Options", open=False):
            task = gr.Radio(["auto", *TASKS], value="auto", label="Task (auto: decided from the message)")
            seconds = gr.Slider(1, 60, value=10, step=1, label="Music length (s)")
            guidance = gr.Slider(1, 10, value=3, step=0.5, label="Music guidance scale")
            temperature = gr.Slider(0, 1.5, value=0.6, step=0.05, label="Temperature (0 = greedy)")
            top_p = gr.Slider(0.05, 1, value=0.8, step=0.05, label="Top-p")
            max_new_tokens = gr.Slider(8, 768, value=256, step=8, label="Longest text reply (tokens)")
            seed = gr.Number(value=None, precision=0, label="Seed (empty = random)")
        clear = gr.Button("Clear history")
        inputs = [text, audio, image, video, task, seconds, temperature, top_p, max_new_tokens, guidance, seed, chatbot,
                  conversation]
        outputs = [chatbot, conversation, text, audio, image, video]
        gr.on([send.click, text.submit], session.respond, inputs, outputs, api_name="respond")
        clear.click(session.clear, None, outputs, api_name="clear")
    return app


def serve(assistant: Assistant, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, share: bool = False,
          block: bool = True) -> Any:
    """Launch the UI on ``host:port`` (loopback by default, no public link unless ``share``).

    With ``block`` it serves until Ctrl-C; otherwise it returns the running app (``app.close()`` stops it).

    Raises:
        ConfigError: ``host:port`` cannot be listened on.
    """
    app = build_app(assistant)
    try:
        app.queue().launch(server_name=host, server_port=port, share=share, inbrowser=False, quiet=True,
                           prevent_thread_lock=True,
                           allowed_paths=[str(app.session.output_dir), str(assistant.output_dir)])
    except OSError as err:  # gradio's message is a paragraph of advice; its first sentence says what failed
        reason = str(err).split(". ")[0]
        raise ConfigError(f"{host}:{port}: cannot listen there (port in use, or not an address of this "
                          f"machine): {reason}") from None
    where = app.local_url + (f" and {app.share_url}" if share and app.share_url else "")
    print(f"m2ugen UI running on {where} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    if block:
        app.block_thread()
    return app
