"""m2ugen.routing: the documented rules that pick a chat turn's task."""

from __future__ import annotations

import pytest

from m2ugen.routing import is_question, route

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
])
def test_route(text, inputs, task):
    assert route(text, has_audio=AUD in inputs, has_image=IMG in inputs, has_video=VID in inputs) == task


def test_carried_over_audio_does_not_block_image_to_music():
    # audio from an earlier turn is there, but this turn attached only an image
    assert route("Something upbeat", has_audio=True, has_image=True, audio_attached=False) == "generate"
    assert route("Something upbeat", has_audio=True, has_image=True, audio_attached=True) == "answer"


@pytest.mark.parametrize("text, expected", [
    ("What is this?", True), ("  describe the song", True), ("Is it loud", True),
    ("Can you make it louder?", False), ("Please make it louder", False), ("Whatever you like", False),
])
def test_is_question(text, expected):
    assert is_question(text) is expected
