"""The web UI's part of a score reply: the ABC text, a player for its audio and a MIDI download."""

from __future__ import annotations

import pytest
import soundfile as sf

from m2ugen.assistant import Assistant, Conversation
from m2ugen.model import Generation
from m2ugen.notation.render import find_soundfont

pytest.importorskip("gradio")
pytestmark = pytest.mark.skipif(find_soundfont() is None, reason="needs a General MIDI sound font")

TUNE = "X:1\nT:Bells\nM:2/4\nL:1/8\nQ:1/4=120\nK:C\nV:1\n%%MIDI program 14\nc e g c' | c'4 |]\n"


def test_a_score_reply_shows_its_abc_a_player_and_the_midi(tmp_path, monkeypatch) -> None:
    from m2ugen.app import ChatSession

    bot = Assistant.tiny(output_dir=tmp_path / "out")
    bot.config.music_outputs = "score"
    responses = iter([f"Bells:\n```abc\n{TUNE}```", "<edit transpose=+2>"])
    monkeypatch.setattr(bot.model, "generate",
                        lambda ids, **kw: [Generation(token_ids=[], text=next(responses), aud_states=None)])
    session = ChatSession(bot, tmp_path / "ui")
    args = (None, None, None, "auto", 1, 0.6, 0.8, 8, 3.0, "0")
    shown, messages, conversation, *_, midi = session.respond("Write a bell tune", *args, [], Conversation())
    text, player = messages[1]["content"], messages[2]["content"]
    assert text.startswith("[untrained demo model") and text.endswith(f"```abc\n{TUNE.strip()}\n```")
    assert text.count("X:1") == 1  # the score once, not twice
    samples, rate = sf.read(player["path"])
    assert rate == 22050 and abs(samples).max() > 0.01 and len(messages) == 3  # one player, not a second render
    assert midi.visible is True and midi.value["orig_name"].endswith(".mid")

    shown, messages, conversation, *_, midi = session.respond("Up a tone", *args, messages, conversation)
    edit_text = messages[4]["content"]
    assert "`<edit transpose=+2>`" in edit_text and "K:D" in edit_text and "d f a d'" in edit_text
    assert conversation.score is not None and "K:D" in conversation.score
