"""The gradio web UI: a chat with audio, image and video inputs, sampling sliders and a clear button.

``m2ugen serve`` launches it on 127.0.0.1; it is reachable from other machines only with an explicit
``--host``, and through a public gradio link only with ``--share``. Each browser session has its
own :class:`~m2ugen.assistant.Conversation` (history and music); the model is shared and runs one
turn at a time.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m2ugen.errors import ConfigError, M2UGenError
from m2ugen.settings import DEFAULT_SECONDS, DEFAULTS

if TYPE_CHECKING:
    from m2ugen.assistant import Assistant, Conversation, Reply

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

    def respond(self, text: str, audio: Upload, image: Upload, video: Upload, task: str, seconds: float,
                temperature: float, top_p: float, max_new_tokens: float, guidance_scale: float, seed: str | float | None,
                messages: list[dict[str, Any]] | None, conversation: Conversation | None) -> tuple[Any, ...]:
        """One turn: returns (chat messages twice: shown and kept, conversation, text box, audio, image,
        video, MIDI download).

        Uploads arrive as gradio's raw payloads (nothing is decoded before this), so that a bad file
        never fails inside gradio: a bad input or setting becomes one assistant message naming the
        user's own file name and one line in the server log; the uploads are cleared, the text is kept
        to send again, and the history stays. An empty seed means a fresh random seed each turn.
        """
        from m2ugen.assistant import Conversation

        messages = list(messages or [])
        conversation = conversation if conversation is not None else Conversation()
        files = {kind: _upload(value) for kind, value in (("audio", audio), ("image", image), ("video", video))}
        paths = {kind: path for kind, (path, _) in files.items()}
        try:
            settings = dict(task=task, seconds=float(seconds), temperature=float(temperature), top_p=float(top_p),
                            max_new_tokens=int(max_new_tokens), guidance_scale=float(guidance_scale),
                            seed=_seed(seed))
            with self._lock:
                self.assistant.conversation = conversation
                try:
                    reply = self.assistant.chat(text, **paths, **settings)
                    shown = self._reply_messages(reply)
                finally:
                    conversation = self.assistant.conversation
        except M2UGenError as err:
            problem = str(err)
            for path, name in files.values():
                if path:
                    problem = problem.replace(path, name)
            print(f"m2ugen UI: user error: {problem}", file=sys.stderr, flush=True)
            messages += [{"role": "user", "content": text},
                         {"role": "assistant", "content": f"Could not do that: {problem}"}]
            return messages, messages, conversation, text, None, None, None, _midi_download(None)
        messages.append({"role": "user", "content": text})
        messages += [{"role": "user", "content": {"path": path}} for path in paths.values() if path]
        messages += shown
        return messages, messages, conversation, "", None, None, None, _midi_download(reply.midi_path)

    def _reply_messages(self, reply: Reply) -> list[dict[str, Any]]:
        """The chat messages of a reply: its text (a score's or transcription's ABC as a code block), its
        music (a score played), and a transcription's MIDI rendered to audio where a sound font is installed."""
        from m2ugen.notation.render import find_soundfont, render_midi

        shown = [{"role": "assistant", "content": _text_message(reply)}]
        self._count += 1
        if reply.audio is not None:
            wav = reply.audio.save(self.output_dir / f"reply-{self._count}.wav", overwrite=True)
            shown.append({"role": "assistant", "content": {"path": str(wav)}})
        if reply.midi_path is not None and reply.audio is None and find_soundfont() is not None:
            try:
                wav = render_midi(reply.midi_path, self.output_dir / f"score-{self._count}.wav")
                shown.append({"role": "assistant", "content": {"path": str(wav)}})
            except M2UGenError as err:  # the transcription stands; only its audio preview is missing
                shown.append({"role": "assistant", "content": f"(no audio preview of the score: {err})"})
        return shown

    @staticmethod
    def clear() -> tuple[Any, ...]:
        """A fresh conversation: empty chat, history and music, cleared inputs."""
        from m2ugen.assistant import Conversation

        return [], [], Conversation(), "", None, None, None, _midi_download(None)


def _text_message(reply: Reply) -> str:
    """A reply's text for the chat: a transcription as its ABC code block; a score reply as its words
    (edit tags shown as code, not as HTML) followed by the score's ABC code block."""
    import re

    from m2ugen.notation.score import find_abc

    if reply.abc is None:
        return reply.text
    if reply.task == "transcribe":
        return f"```\n{reply.abc}\n```"
    words = reply.text if find_abc(reply.text) is None else re.sub(r"```.*?```", "", reply.text, flags=re.DOTALL)
    words = re.sub(r"(<edit\b[^<>]*>)", r"`\1`", words).strip()
    return f"{words}\n\n```abc\n{reply.abc.strip()}\n```".strip()


# A file input as gradio passes it without preprocessing: a dict with "path" and "orig_name"
# (an upload), a plain path (the Python API), or None.
Upload = dict[str, Any] | str | None


def _upload(value: Upload) -> tuple[str | None, str]:
    """(local path, the name the user knows the file by) of a file input."""
    if value is None:
        return None, ""
    if isinstance(value, dict):
        path = value.get("path")
        return path, value.get("orig_name") or Path(path or "").name
    return str(value), Path(value).name


def _seed(value: str | float | None) -> int:
    """The seed box: empty means a fresh random seed for this turn."""
    text = "" if value is None else str(value).strip()
    if not text:
        return secrets.randbelow(2**63)
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise ConfigError(f"seed must be a whole number or empty (random), got {text!r}")
    return int(number)


def _midi_download(path: Path | None) -> Any:
    """The MIDI download box: shown with the file of a score or a transcription, hidden otherwise."""
    import gradio as gr

    return gr.File(value=str(path) if path else None, visible=path is not None)


def build_app(assistant: Assistant, output_dir: str | Path | None = None) -> Any:
    """The gradio ``Blocks`` of the UI (not launched)."""
    import gradio as gr

    from m2ugen.routing import TASKS

    session = ChatSession(assistant, output_dir)
    note = ("**Demo model: random, untrained weights.** Every part of the pipeline runs, but its text and "
            "music are noise." if assistant.untrained else "")
    cfg = assistant.config
    unavailable = [m for m in ("image", "video") if m not in cfg.input_modalities]
    if unavailable:  # the inputs stay, and a turn with one answers why it cannot be used
        note += (f"\n\nThis model ('{cfg.name}') understands {' and '.join(['text', *cfg.input_modalities])}; "
                 f"{' and '.join(unavailable)} input needs a model trained on it.")
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        app.session = session
        gr.Markdown(f"# {TITLE}\n{note}")
        conversation = gr.State(None)  # a Conversation, made on the session's first turn
        history = gr.State([])  # the chat messages as sent to the Chatbot
        chatbot = gr.Chatbot(label="Chat", height=440, elem_id="chat")
        midi = gr.File(label="MIDI of the score or transcription", interactive=False, visible=False)
        with gr.Row():
            text = gr.Textbox(label="Message", scale=5, elem_id="message",
                              placeholder="Ask about the music, ask for music, or say how to change it")
            send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
        with gr.Row():
            audio = gr.Audio(label="Audio", type="filepath", sources=["upload", "microphone"], elem_id="audio")
            image = gr.Image(label="Image", type="filepath", elem_id="image")
            video = gr.Video(label="Video", elem_id="video")
        with gr.Accordion("Options", open=False, elem_id="options"):
            task = gr.Radio(["auto", *TASKS], value="auto", label="Task (auto: decided from the message)")
            seconds = gr.Slider(1, 60, value=DEFAULT_SECONDS, step=1, label="Music length (s)")
            guidance = gr.Slider(1, 10, value=DEFAULTS.guidance_scale, step=0.5, label="Music guidance scale")
            temperature = gr.Slider(0, 1.5, value=DEFAULTS.temperature, step=0.05, label="Temperature (0 = greedy)")
            top_p = gr.Slider(0.05, 1, value=DEFAULTS.top_p, step=0.05, label="Top-p")
            max_new_tokens = gr.Slider(8, 768, value=DEFAULTS.max_new_tokens, step=8,
                                       label="Longest text reply (tokens)",
                                       elem_id="max-new-tokens")
            seed = gr.Textbox(value="", label="Seed (empty = random)", placeholder="random")
        clear = gr.Button("Clear history", elem_id="clear")
        inputs = [text, audio, image, video, task, seconds, temperature, top_p, max_new_tokens, guidance, seed, history,
                  conversation]
        outputs = [chatbot, history, conversation, text, audio, image, video, midi]
        # No preprocessing: a bad upload reaches respond() (and becomes a chat message) instead of failing in gradio.
        gr.on([send.click, text.submit], session.respond, inputs, outputs, api_name="respond", preprocess=False)
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
