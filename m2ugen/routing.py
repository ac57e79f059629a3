"""Which task a chat turn asks for: the assistant's routing rules, in one place.

A turn is routed to one of four tasks (see ``docs/usage.md``):

* ``"transcribe"``: write the music down (ABC + MIDI) with :mod:`m2ugen.transcribe`;
* ``"edit"``: change the music the conversation is about (the attached audio, else the last audio);
* ``"generate"``: make new music from text, an image or a video;
* ``"answer"``: a text reply (music question answering, captioning, plain chat).

The rules are applied in this order; the first that matches wins:

1. transcription wording (:func:`m2ugen.transcribe.is_transcription_request`) and there is audio
   -> ``transcribe``;
2. there is audio, the text is not a question, it asks to change "it" (make it slower, add drums,
   remove the vocals, a calmer version of it, ...) and does not ask for a new piece ("compose a
   faster song") -> ``edit``;
3. the text asks for new music (compose a song, write music for this picture, score this clip,
   ...) and is not a question -> ``generate``;
4. an image or a video is attached, no audio is, and the text is not a question -> ``generate``;
5. anything else -> ``answer``.

A question starts with a question word ("what", "is", "describe", ...); polite requests ("can you
make it faster?") are not questions. A trained model may still emit the [AUD] tokens in an
``answer`` turn; the assistant then returns music too.
"""

from __future__ import annotations

import re

TASKS: tuple[str, ...] = ("answer", "generate", "edit", "transcribe")

_QUESTION = re.compile(
    r"^(what|which|who|whom|whose|where|when|why|how|is|are|was|were|does|do|did|has|have|had|"
    r"describe|caption|explain|identify|name|list|summari[sz]e|tell me|analy[sz]e)\b")
_MUSIC_NOUN = (r"(music|song|songs|melody|melodies|tune|track|piece|soundtrack|score|beat|beats|"
               r"accompaniment|jingle|loop|riff|chords|chord progression|anthem|lullaby|ballad|symphony|"
               r"sonata|theme|waltz|march|fugue|prelude|nocturne|etude|concerto|overture|serenade|hymn|instrumental)")
_MUSIC_REQUEST = re.compile(
    r"\b(generate|compose|create|make|write|produce|play|give me|sing|improvise|render)\b.*\b" + _MUSIC_NOUN + r"\b"
    r"|\bcompos(e|ing)\b"
    r"|\b(music|soundtrack|song|score) (for|to|that (fits|matches))\b"
    r"|\bscore (this|the|my)\b"
    r"|\bset (this|it) to music\b|\bturn (this|it) into (music|a song)\b")
_EDIT = re.compile(
    r"\b(make|turn|get) (it|this|that|the (music|song|track|piece|melody|tune))\b"
    r"|\b(change|edit|modify|remix|rearrange|rework|transform|alter|adjust|transpose|reharmoni[sz]e|"
    r"speed|slow|extend|shorten)\b"
    r"|\b(add|remove|replace|swap|drop|mute)\b"
    r"|\b(faster|slower|louder|quieter|softer|calmer|happier|sadder|darker|brighter|heavier|lighter)\b"
    r"|\b(version|variation|cover) of (it|this|that)\b"
    r"|\binstead\b|\bwithout\b")
# "compose a faster song" asks for new music even when it uses an edit word, unless it says what
# the new piece is made from ("a faster version of the song").
_NEW_MUSIC = re.compile(
    r"\b(generate|compose|create|write|produce|make)\s+(me\s+)?(a|an|some|another|new)\b"
    r"(?!.*\b(of|from) (it|this|that|the (music|song|track|piece|melody|tune|audio|recording))\b)")


def normalise(text: str) -> str:
    """Lower case with single spaces."""
    return " ".join(text.lower().split())


def is_question(text: str) -> bool:
    """True when ``text`` starts with a question word ("what", "is", "describe", ...)."""
    return bool(_QUESTION.match(normalise(text)))


def is_music_request(text: str) -> bool:
    """True when ``text`` asks for new music ("compose a song", "music for this picture")."""
    return bool(_MUSIC_REQUEST.search(normalise(text)))


def is_edit_request(text: str) -> bool:
    """True when ``text`` asks to change existing music ("make it slower", "add drums")."""
    return bool(_EDIT.search(normalise(text)))


def is_new_music_request(text: str) -> bool:
    """True when ``text`` asks for a new piece ("compose a faster song"), not a version of "it"."""
    return bool(_NEW_MUSIC.search(normalise(text)))


def route(text: str, *, has_audio: bool, has_image: bool = False, has_video: bool = False,
          audio_attached: bool | None = None) -> str:
    """The task of a chat turn (one of :data:`TASKS`), by the rules in the module docstring.

    Args:
        text: the user's message.
        has_audio: audio is available: attached to this turn or carried over from an earlier one.
        has_image, has_video: an image / a video is attached to this turn.
        audio_attached: audio is attached to this very turn (default: ``has_audio``).
    """
    from m2ugen.transcribe import is_transcription_request

    attached = has_audio if audio_attached is None else audio_attached
    question = is_question(text)
    if has_audio and is_transcription_request(text):
        return "transcribe"
    if has_audio and not question and is_edit_request(text) and not is_new_music_request(text):
        return "edit"
    if not question and is_music_request(text):
        return "generate"
    if (has_image or has_video) and not attached and not question:
        return "generate"
    return "answer"
