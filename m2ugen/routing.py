"""Which task a chat turn is: the model's choice where it can make one, these rules where it cannot.

A turn is one of four tasks (see ``docs/usage.md``):

* ``"transcribe"``: write the music down (ABC + MIDI) with :mod:`m2ugen.transcribe`;
* ``"edit"``: change the music the conversation is about (the attached audio, else the last audio);
* ``"generate"``: make new music from text, an image or a video;
* ``"answer"``: a text reply (music question answering, captioning, plain chat).

**The model decides** (:func:`model_task`) when its config says it was trained to end music
replies with the [AUD] tokens (``emits_aud``: trained stage-2/3 and converted checkpoints): a reply
without [AUD] is an answer; a reply with [AUD] is new music, or an edit when the conversation has
music and the turn asks to change it (:func:`is_edit_request`), and then the decoder hears the source.
Transcription is not something the LLM can signal, so its wording (:func:`is_transcription_request`)
is checked first for every model.

**The rules** (:func:`route`) decide for models that cannot (the random demo model, caption-mode
checkpoints), in this order; the first that matches wins:

1. transcription wording and there is audio -> ``transcribe``;
2. there is audio, the turn is not a question or a request for words, it asks to change "it" (make
   it slower, add drums, give it a jazz feel, ...) and not for a new piece -> ``edit``;
3. the turn asks for new music (compose a song, play something relaxing, some lo-fi hip hop,
   surprise me, music for this picture, ...) and is not a question -> ``generate``;
4. an image or a video is attached, no audio is, and the turn is neither a question, a greeting nor a
   request for words (a poem, a story, a caption) -> ``generate``;
5. anything else -> ``answer``.

A question has a clause that starts with a question word ("what ...", "I want to change the subject:
who was Bach?"); polite requests ("can you make it faster?") are not questions. Negated edits
("don't change anything") and adding to a playlist are not edits.
"""

from __future__ import annotations

import re

TASKS: tuple[str, ...] = ("answer", "generate", "edit", "transcribe")

_QUESTION_WORDS = (r"what|which|who|whom|whose|where|when|why|how|is|are|was|were|does|do|did|has|have|had|"
                   r"describe|caption|explain|identify|name|list|summari[sz]e|tell me|tell us|analy[sz]e")
_QUESTION = re.compile(rf"^({_QUESTION_WORDS})\b")
# A later clause that asks something ("..., just tell me the key", "...: who was Bach?").
_QUESTION_CLAUSE = re.compile(r"(^|[.,:;!?]\s*|\b(just|instead|now|then|and|but|so|please)\s+)"
                              r"(what|which|who|whom|whose|where|when|why|how|tell me|tell us|explain|describe)\b")
_TALK = re.compile(r"\b(change the subject|talk about|let'?s talk|chat about)\b")
# Requests for words, not sound: "write a poem about this", "give me a caption".
_WORDS = re.compile(r"\b(poem|poetry|story|stories|essay|haiku|limerick|lyrics|letter|caption|description|"
                    r"summary|joke|title|slogan|tweet|paragraph|sentence|review|translation|translate)\b")
_GREETING = re.compile(r"^(hi|hello|hey|hiya|yo|thanks|thank you|good (morning|afternoon|evening)|bye|goodbye|"
                       r"ok|okay|cool|nice|great|wow)( there| you| again| so much)?[\s!.,]*$")
_GENRES = (r"jazz|blues|rock|pop|hip hop|hip-hop|rap|lo-fi|lofi|funk|soul|disco|techno|house|trance|edm|ambient|"
           r"classical|baroque|folk|country|reggae|metal|punk|gospel|bossa nova|samba|salsa|tango|swing|"
           r"drum and bass|dubstep|synthwave|chillwave|chiptune|orchestral|cinematic|electronic|r&b")
_MUSIC_NOUN = (r"(music|song|songs|melody|melodies|tune|tunes|track|tracks|piece|soundtrack|score|beat|beats|"
               r"accompaniment|jingle|loop|riff|chords|chord progression|anthem|lullaby|ballad|symphony|"
               r"sonata|theme|waltz|march|fugue|prelude|nocturne|etude|concerto|overture|serenade|hymn|"
               # dance and song forms of the folk, chorale and madrigal collections m2ugen-mini learned from
               r"reel|reels|jig|jigs|hornpipe|hornpipes|strathspey|fling|slide|polka|mazurka|minuet|gavotte|"
               r"air|chorale|madrigal|quartet|carol|"
               rf"instrumental|groove|jam|{_GENRES})")
_MUSIC_REQUEST = re.compile(
    r"\b(generate|compose|create|make|write|produce|play|give me|sing|improvise|render|i want|i'd like|"
    r"i would like|let me hear|can i hear|could i hear)\b.*\b" + _MUSIC_NOUN + r"\b"
    r"|\bcompos(e|ing)\b"
    r"|\bplay (me )?(something|some|a|an|another|anything)\b"
    r"|\bsurprise me\b"
    r"|\b(music|soundtrack|song|score) (for|to|that (fits|matches))\b"
    r"|\bscore (this|the|my)\b"
    r"|\bset (this|it) to music\b|\bturn (this|it) into (music|a song)\b")
_EDIT = re.compile(
    r"\b(make|turn|get|give) (it|this|that|the (music|song|track|piece|melody|tune))\b"
    r"|\b(change|edit|modify|remix|rearrange|rework|transform|alter|adjust|transpose|reharmoni[sz]e|"
    r"speed|slow|extend|shorten)\b"
    r"|\b(add|remove|replace|swap|drop|mute)\b"
    r"|\b(faster|slower|louder|quieter|softer|calmer|happier|sadder|darker|brighter|heavier|lighter)\b"
    r"|\b(version|variation|cover) of (it|this|that)\b"
    r"|\binstead\b|\bwithout\b")
# What is not an edit although it uses an edit word.
_NOT_EDIT = re.compile(
    r"\b(don'?t|do not|never|no need to|without|not)\s+(\w+\s+)?(change|changing|edit|editing|modify|modifying|"
    r"alter|altering|touch|touching|remix|remixing)\w*(\s+(anything|it|this|that|a thing))?"
    r"|\b(add|save|put)\s+(it|this|that)\s+to\s+(my|the|a)\s+\w+"
    r"|\bto (my|the|a) (playlist|favou?rites|library|queue|collection)\b")
# "compose a faster song" asks for new music even when it uses an edit word, unless it says what
# the new piece is made from ("a faster version of the song").
_NEW_MUSIC = re.compile(
    r"\b(generate|compose|create|write|produce|make)\s+(me\s+)?(a|an|some|another|new)\b"
    r"(?!.*\b(of|from) (it|this|that|the (music|song|track|piece|melody|tune|audio|recording))\b)"
    r"|\bsurprise me\b|\b(a|another) new (song|track|piece|tune)\b")

# Transcription wording.
_ALWAYS = re.compile(r"\b(transcrib\w*|notate|notating|write (it|this|that) down)\b")
_TARGET = re.compile(r"\b(abc|midi|score|sheet|notation|notes)\b")
_AS_TARGET = re.compile(r"\b(to|into|as|in)\s+(an?\s+)?(abc|midi)\b")
_REQUEST = re.compile(r"\b(give|show|write|make|get|send|produce|create|print|export|convert|turn|extract|"
                      r"output|need|want|generate|render|save|please|can i have|could i have)\b")
_WHICH_NOTES = re.compile(r"\b(what|which) notes\b|\bnotes (are|were) (played|being played|in)\b")
_COMPOSE = re.compile(r"\b(compose|write|create|generate|make)\s+(me\s+)?(a|an|some|new)\s+(new\s+)?"
                      r"(song|tune|melody|piece|track|music)\b")
_NOT_MUSIC_SCORE = re.compile(r"\bscore\w*\s+(of|in|for)\s+(the|this|that|a)\s+(game|match|team|test|exam|movie|film)\b"
                              r"|\b(game|match|final|test|exam|credit)\s+score\b|\bscored\b")


def normalise(text: str) -> str:
    """Lower case with single spaces and straight apostrophes."""
    return " ".join(text.lower().replace("\u2019", "'").split())


def is_question(text: str) -> bool:
    """True when ``text`` (or a later clause of it) asks something: "what is this?", "..., who was Bach?"."""
    text = normalise(text)
    return bool(_QUESTION.match(text) or _QUESTION_CLAUSE.search(text) or _TALK.search(text))


def asks_for_words(text: str) -> bool:
    """True when ``text`` asks for words rather than sound ("write a poem about this") or greets."""
    text = normalise(text)
    return bool(_WORDS.search(text) or _GREETING.match(text))


def is_music_request(text: str) -> bool:
    """True when ``text`` asks for new music ("compose a song", "play something relaxing")."""
    return bool(_MUSIC_REQUEST.search(normalise(text)))


def is_edit_request(text: str) -> bool:
    """True when ``text`` asks to change existing music ("make it slower", "add drums"); negated edits
    ("don't change anything") and playlist additions do not count."""
    return bool(_EDIT.search(_NOT_EDIT.sub(" ", normalise(text))))


def is_new_music_request(text: str) -> bool:
    """True when ``text`` asks for a new piece ("compose a faster song"), not a version of "it"."""
    return bool(_NEW_MUSIC.search(normalise(text)))


def is_transcription_request(text: str) -> bool:
    """True when ``text`` asks to write the given music down (in order):

    1. ``transcribe``/``transcription``/``notate``/``write it down`` -> yes.
    2. A request to compose something new ("write a song in ABC") -> no.
    3. A score that is not a musical one ("score of the game", "test score") -> no.
    4. "to/into/as/in MIDI|ABC" or "what/which notes" -> yes.
    5. A request word (give, show, write, convert, want, please, ...) together with abc/midi/
       score/sheet/notation/notes -> yes.  Anything else -> no.
    """
    lowered = normalise(text)
    if _ALWAYS.search(lowered):
        return True
    if _COMPOSE.search(lowered) or _NOT_MUSIC_SCORE.search(lowered):
        return False
    if _AS_TARGET.search(lowered) or _WHICH_NOTES.search(lowered):
        return True
    return bool(_REQUEST.search(lowered) and _TARGET.search(lowered))


def wants_change(text: str) -> bool:
    """True when the turn asks to change the music at hand: an edit request, not a new piece, not a question."""
    return is_edit_request(text) and not is_new_music_request(text) and not is_question(text)


def route(text: str, *, has_audio: bool, has_image: bool = False, has_video: bool = False,
          audio_attached: bool | None = None) -> str:
    """The task of a chat turn (one of :data:`TASKS`) by the rules in the module docstring.

    Args:
        text: the user's message.
        has_audio: audio is available: attached to this turn or carried over from an earlier one.
        has_image, has_video: an image / a video is attached to this turn.
        audio_attached: audio is attached to this very turn (default: ``has_audio``).
    """
    attached = has_audio if audio_attached is None else audio_attached
    question = is_question(text)
    words = asks_for_words(text)
    if has_audio and is_transcription_request(text):
        return "transcribe"
    if has_audio and not words and wants_change(text):
        return "edit"
    if not question and not words and is_music_request(text):
        return "generate"
    if (has_image or has_video) and not attached and not question and not words:
        return "generate"
    return "answer"


def model_task(text: str, *, made_music: bool, has_audio: bool) -> str:
    """The task a model that decides for itself chose: it answered in text (``"answer"``), or it emitted
    the [AUD] tokens: an ``"edit"`` when there is music and the turn asks to change it, else ``"generate"``."""
    if not made_music:
        return "answer"
    return "edit" if has_audio and wants_change(text) else "generate"
