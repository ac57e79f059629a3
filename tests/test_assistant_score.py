"""The assistant writing, editing and playing scores, with scripted model responses (tiny demo model)."""

from __future__ import annotations

import pretty_midi
import pytest

from m2ugen.assistant import Assistant
from m2ugen.errors import MediaError
from m2ugen.model import Generation
from m2ugen.notation.edits import apply_edits, make_edit
from m2ugen.notation.render import find_soundfont
from m2ugen.notation.score import AbcError, parse_abc, part_notes, part_program, score_seconds, score_to_abc

pytestmark = pytest.mark.skipif(find_soundfont() is None, reason="needs a General MIDI sound font")

WALTZ = """X:1
T:Little waltz
M:3/4
L:1/8
Q:1/4=120
K:C
V:1 name="Violin"
%%MIDI program 40
e4 g2 | f4 d2 | c6 |]
V:2 name="Piano"
%%MIDI program 0
C,2 [EG]2 [EG]2 | D,2 [FA]2 [FA]2 | C,6 |]
"""


class Script:
    """A stand-in for ``M2UGen.generate`` that answers with the next scripted text and records each prompt."""

    def __init__(self, *responses: str) -> None:
        self.responses = list(responses)
        self.prompts: list[list[int]] = []
        self.forced: list[bool] = []

    def __call__(self, ids, **kwargs):
        self.prompts.append(list(ids[0]))
        self.forced.append(kwargs["force_music"])
        return [Generation(token_ids=[], text=self.responses.pop(0), aud_states=None)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    bot = Assistant.tiny(output_dir=tmp_path_factory.mktemp("scores"))
    bot.config.music_outputs = "score"
    return bot


@pytest.fixture
def bot(demo, monkeypatch):
    demo.reset()
    yield demo
    demo.reset()


def test_a_score_reply_carries_abc_midi_and_audio_and_stays_in_the_conversation(bot, monkeypatch) -> None:
    script = Script(f"Here is a waltz:\n```abc\n{WALTZ}```\nEnjoy!", "<edit transpose=P4>",
                    "<edit instrument=cello voice=1>")
    monkeypatch.setattr(bot.model, "generate", script)
    first = bot.chat("Write a little waltz for violin and piano", seconds=None)
    assert first.task == "generate" and first.abc == WALTZ and not script.forced[0]
    midi = pretty_midi.PrettyMIDI(str(first.midi_path))
    assert [inst.program for inst in midi.instruments] == [40, 0]
    assert first.audio.duration == pytest.approx(score_seconds(parse_abc(WALTZ)) + 1.0, abs=0.05)
    assert first.audio.mono().std() > 0.01  # it sounds

    # The next turn's prompt holds the score; its edit is applied to that score by the tool.
    second = bot.chat("Now transpose it up a fourth")
    assert WALTZ.strip() in bot.model.tokenizer.decode(script.prompts[1])
    assert second.task == "edit"
    # The data builder's path (apply_edits on the score) gives the identical score.
    expected = apply_edits(parse_abc(WALTZ), [make_edit("transpose", 5)])
    assert second.abc == score_to_abc(expected)
    assert [part_notes(p) for p in parse_abc(second.abc).parts] == [part_notes(p) for p in expected.parts]
    assert bot.conversation.score == second.abc and second.abc in bot.history[-1].response
    assert second.midi_path != first.midi_path and second.midi_path.is_file()

    third = bot.chat("Play the melody on the cello")
    assert "K:F" in second.abc and second.abc.replace('name="Violin"\n%%MIDI program 40',
                                                       'name="Cello"\n%%MIDI program 42') == third.abc
    assert [part_program(p) for p in parse_abc(third.abc).parts] == [42, 0]
    assert second.abc.strip() in bot.model.tokenizer.decode(script.prompts[2])  # the score as it now is


def test_an_edit_without_a_score_is_a_clear_error(bot, monkeypatch) -> None:
    monkeypatch.setattr(bot.model, "generate", Script("<edit transpose=+2>"))
    with pytest.raises(MediaError, match="nothing to edit: the conversation has no score"):
        bot.chat("Make it higher", task="answer")
    assert bot.history == []


def test_a_score_pasted_into_the_message_is_the_one_edited_and_joins_the_conversation(bot, monkeypatch) -> None:
    script = Script("<edit key=G>\nHere it is in G major.", "<edit tempo=x0.8>")
    monkeypatch.setattr(bot.model, "generate", script)
    reply = bot.chat(f"{WALTZ}\nTranspose it to G.")  # the edit_abc training format: tune, blank line, request
    assert reply.task == "edit" and reply.abc == score_to_abc(apply_edits(parse_abc(WALTZ), [make_edit("key", "G")]))
    assert WALTZ.strip() in bot.model.tokenizer.decode(script.prompts[0])
    slower = bot.chat("Slower.")  # the next turn edits the edited score
    assert slower.abc == score_to_abc(apply_edits(parse_abc(reply.abc), [make_edit("tempo", "x0.8")]))


def test_a_pasted_score_joins_the_conversation_after_a_text_answer_and_bad_abc_fails_first(bot, monkeypatch) -> None:
    monkeypatch.setattr(bot.model, "generate", Script("It is in C major."))
    bot.chat(f"{WALTZ}\nWhat key is this in?")
    assert bot.conversation.score == WALTZ
    with pytest.raises(AbcError, match="line 3"):
        bot.chat("X:1\nK:C\nC D & E|\n\nTranspose it to G.")
    assert bot.conversation.score == WALTZ and len(bot.history) == 1


def test_an_invalid_score_from_the_model_fails_the_turn_and_keeps_the_conversation(bot, monkeypatch) -> None:
    monkeypatch.setattr(bot.model, "generate", Script(f"```abc\n{WALTZ}```", "```abc\nX:1\nK:C\nC D & E|\n```"))
    bot.chat("Write a waltz")
    before = (list(bot.history), bot.conversation.score)
    with pytest.raises(AbcError, match="line 3: voice overlay"):
        bot.chat("Another one")
    assert (bot.history, bot.conversation.score) == before


def test_a_plain_answer_from_a_score_model_has_no_music(bot, monkeypatch) -> None:
    monkeypatch.setattr(bot.model, "generate", Script("A waltz is in three."))
    reply = bot.chat("Compose a waltz")
    assert reply.task == "answer" and reply.audio is None and reply.abc is None


class Transcribed:
    """A stand-in for a transcription of a recording (the transcriber itself is tested elsewhere)."""

    abc = "X:1\nT:Transcription\nM:4/4\nL:1/16\nQ:1/4=100\nK:C\nV:1\n%%MIDI program 0\nc4 e4 g4 c'4 |]\n"
    message = "Transcribed 4 notes (C5 to C6) from 2.4 s of audio at about 100 BPM."
    notes = [object()] * 4

    def save_midi(self, path, *, overwrite: bool = False):
        from m2ugen.notation.score import save_midi

        return save_midi(parse_abc(self.abc), path)


def test_a_transcribed_recording_becomes_the_score_that_is_edited(bot, monkeypatch, tmp_path) -> None:
    import m2ugen.transcribe

    heard = []
    monkeypatch.setattr(m2ugen.transcribe, "transcribe", lambda audio, **kwargs: heard.append(audio) or Transcribed())
    path = bot._score_decoder.render(Transcribed.abc).save(tmp_path / "played.wav")
    reply = bot.chat("Transcribe this", audio=path)
    assert heard and reply.task == "transcribe" and bot.conversation.score == reply.abc == Transcribed.abc
    assert Transcribed.abc.strip() in bot.history[-1].response  # the next prompt shows the score
    script = Script("<edit transpose=-12>")
    monkeypatch.setattr(bot.model, "generate", script)
    edited = bot.chat("Put it an octave lower")
    assert Transcribed.abc.strip() in bot.model.tokenizer.decode(script.prompts[0])
    expected = apply_edits(parse_abc(Transcribed.abc), [make_edit("transpose", -12)])
    assert edited.task == "edit" and edited.abc == score_to_abc(expected)
    assert [p for _, _, p in part_notes(parse_abc(edited.abc).parts[0])] == [60, 64, 67, 72]


def test_the_config_names_the_music_a_model_writes() -> None:
    from m2ugen.config import M2UGenConfig
    from m2ugen.errors import ConfigError

    assert M2UGenConfig.preset("tiny").music_outputs == "audio"
    assert M2UGenConfig.preset("tiny", music_outputs="both").music_outputs == "both"
    with pytest.raises(ConfigError, match="music_outputs must be 'audio', 'score' or 'both'"):
        M2UGenConfig.preset("tiny", music_outputs="midi")
