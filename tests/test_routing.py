"""m2ugen.routing: the documented rules that pick a chat turn's task."""

from __future__ import annotations

import pytest

from m2ugen.routing import is_question, model_task, route

AUD, IMG, VID = "audio", "image", "video"


@pytest.mark.parametrize("text, inputs, task", [
    # rule 1: transcription, only with audio
    ("Transcribe this", {AUD}, "transcribe"),
    ("Can I have the MIDI of it?", {AUD}, "transcribe"),
    ("Give me the sheet music", {AUD}, "transcribe"),
    ("Transcribe this", set(), "answer"),
    # rule 2: edits of the music at hand
    ("Make it slower", {AUD}, "edit"),
    ("Now make a calmer version of it with strings", {AUD}, "edit"),
    ("Add drums", {AUD}, "edit"),
    ("Can you remove the vocals?", {AUD}, "edit"),
    ("Make a faster version of the song", {AUD}, "edit"),
    ("Make it slower", set(), "answer"),  # nothing to edit
    ("Is it faster than 120 BPM?", {AUD}, "answer"),  # a question, not an edit
    ("Compose a faster song", {AUD}, "generate"),  # a new piece, not a version of "it"
    # rule 3: new music from text
    ("Compose a calm piano melody", set(), "generate"),
    ("Compose something sad", set(), "generate"),
    ("Please generate a jazz tune for a rainy day", set(), "generate"),
    ("Write music for this picture", {IMG}, "generate"),
    ("Score this clip", {VID}, "generate"),
    ("Compose a sad waltz", set(), "generate"),
    ("Write a reel in D for fiddle and piano.", set(), "generate"),  # the folk forms m2ugen-mini writes
    ("Give me a hornpipe in G for flute.", set(), "generate"),
    ("Write a chorale in G major for organ", set(), "generate"),
    ("Is this a reel?", {AUD}, "answer"),
    ("What kind of music is this?", {AUD}, "answer"),
    ("What music would fit this picture?", {IMG}, "answer"),
    # rule 4: an image or a video without a question
    ("Something upbeat", {IMG}, "generate"),
    ("Make this feel epic", {VID}, "generate"),
    ("What is in this picture?", {IMG}, "answer"),
    # rule 5: everything else is a text answer
    ("What instruments are playing?", {AUD}, "answer"),
    ("Describe this music in detail.", {AUD}, "answer"),
    ("Who was Mozart?", set(), "answer"),
    ("hello", set(), "answer"),
    # phrasings tried as a user would, with music in the conversation
    ("Instead, tell me about Mozart", {AUD}, "answer"),
    ("I want to change the subject: who was Bach?", {AUD}, "answer"),
    ("Add this to my playlist", {AUD}, "answer"),
    ("Don't change anything, just tell me the key", {AUD}, "answer"),
    ("Do not modify it. What tempo is it?", {AUD}, "answer"),
    ("Thanks, that's lovely", {AUD}, "answer"),
    ("Play something relaxing", {AUD}, "generate"),
    ("Give me some lo-fi hip hop", {AUD}, "generate"),
    ("Surprise me with a new track", {AUD}, "generate"),
    ("I'd like to hear some bossa nova", {AUD}, "generate"),
    ("Could you give it a jazz feel?", {AUD}, "edit"),
    ("Use a piano instead", {AUD}, "edit"),
    ("Can you make it a bit louder?", {AUD}, "edit"),
    ("Now make it slower, with strings", {AUD}, "edit"),
    ("Play it without the drums", {AUD}, "edit"),
    ("Transpose it up a fourth", {AUD}, "edit"),
    ("What notes are played in the intro?", {AUD}, "transcribe"),
    ("Convert this to MIDI", {AUD}, "transcribe"),
    ("Write a song in ABC", set(), "generate"),
    ("What was the score of the game?", {AUD}, "answer"),
    # with an image or a video attached
    ("Hello", {IMG}, "answer"),
    ("Write a poem about this", {IMG}, "answer"),
    ("Give this photo a caption", {IMG}, "answer"),
    ("Something dreamy for this picture", {IMG}, "generate"),
    ("Tell me what happens in this clip", {VID}, "answer"),
    ("A soundtrack please", {VID}, "generate"),
])
def test_route(text, inputs, task):
    assert route(text, has_audio=AUD in inputs, has_image=IMG in inputs, has_video=VID in inputs) == task


def test_the_routing_table_has_at_least_40_phrasings():
    (mark,) = [m for m in test_route.pytestmark if m.name == "parametrize"]
    assert len(mark.args[1]) >= 40


@pytest.mark.parametrize("text, made_music, has_audio, task", [
    ("Make it slower", True, True, "edit"),  # the model made music and the turn asks to change "it"
    ("Make it slower", False, True, "answer"),  # the model chose to answer in words
    ("Make it slower", True, False, "generate"),  # nothing to edit
    ("Play something relaxing", True, True, "generate"),  # a new piece, although music is at hand
    ("Instead, tell me about Mozart", True, True, "generate"),  # not a change request: new music
    ("Compose a faster song", True, True, "generate"),
    ("Who was Bach?", False, True, "answer"),
])
def test_model_task(text, made_music, has_audio, task):
    assert model_task(text, made_music=made_music, has_audio=has_audio) == task


def test_carried_over_audio_does_not_block_image_to_music():
    # audio from an earlier turn is there, but this turn attached only an image
    assert route("Something upbeat", has_audio=True, has_image=True, audio_attached=False) == "generate"
    assert route("Something upbeat", has_audio=True, has_image=True, audio_attached=True) == "answer"


@pytest.mark.parametrize("text, expected", [
    ("What is this?", True), ("  describe the song", True), ("Is it loud", True),
    ("Can you make it louder?", False), ("Please make it louder", False), ("Whatever you like", False),
    ("I want to change the subject: who was Bach?", True), ("Instead, tell me about Mozart", True),
])
def test_is_question(text, expected):
    assert is_question(text) is expected
