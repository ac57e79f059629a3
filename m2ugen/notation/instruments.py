"""General MIDI instruments: program names, the families m2ugen reports, and the words people use for them.

One table for the whole project: the corpus builder labels clips with it, transcription names its
tracks with it, the score tools set ``%%MIDI program`` from it and the evaluation parses answers with it.
Programs are 0-based (0 = Acoustic Grand Piano), as in Standard MIDI Files and pretty_midi.
"""

from __future__ import annotations

import re

import pretty_midi

# The families m2ugen tells apart: GM's 16 groups of 8 programs, with the synth groups merged and
# "ensemble" covering choirs and voices. Drums (MIDI channel 10) are the family "drums".
FAMILIES: tuple[str, ...] = (
    "piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth", "ethnic", "percussive", "sound effects", "drums",
)
_FAMILY_OF_GROUP: tuple[str, ...] = (
    "piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth", "synth", "synth", "ethnic", "percussive", "sound effects",
)

# Words for instruments as users and captions say them -> GM program (longest match wins when parsing).
SYNONYMS: dict[str, int] = {
    "piano": 0, "grand piano": 0, "acoustic piano": 0, "bright piano": 1, "electric piano": 4,
    "honky-tonk piano": 3, "harpsichord": 6, "clavinet": 7, "celesta": 8, "glockenspiel": 9,
    "music box": 10, "vibraphone": 11, "vibes": 11, "marimba": 12, "xylophone": 13, "tubular bells": 14,
    "bells": 14, "dulcimer": 15, "organ": 19, "church organ": 19, "pipe organ": 19, "hammond organ": 16,
    "drawbar organ": 16, "rock organ": 18, "reed organ": 20, "accordion": 21, "harmonica": 22,
    "concertina": 21, "bandoneon": 23, "guitar": 24, "nylon guitar": 24, "classical guitar": 24,
    "acoustic guitar": 25, "steel guitar": 25, "jazz guitar": 26, "electric guitar": 27,
    "distortion guitar": 30, "bass": 32, "acoustic bass": 32, "double bass": 43, "upright bass": 32,
    "electric bass": 33, "bass guitar": 33, "fretless bass": 35, "slap bass": 36, "synth bass": 38,
    "violin": 40, "fiddle": 40, "viola": 41, "cello": 42, "violoncello": 42, "contrabass": 43,
    "harp": 46, "timpani": 47, "strings": 48, "string ensemble": 48, "string orchestra": 48,
    "string quartet": 48, "choir": 52, "voices": 52, "voice": 53, "vocals": 52, "trumpet": 56,
    "trombone": 57, "tuba": 58, "french horn": 60, "horn": 60, "brass": 61, "brass section": 61,
    "soprano sax": 64, "alto sax": 65, "saxophone": 65, "sax": 65, "tenor sax": 66, "baritone sax": 67,
    "oboe": 68, "english horn": 69, "cor anglais": 69, "bassoon": 70, "clarinet": 71, "piccolo": 72,
    "flute": 73, "recorder": 74, "pan flute": 75, "panpipes": 75, "whistle": 78, "tin whistle": 78,
    "ocarina": 79, "synth": 80, "synthesizer": 80, "lead synth": 80, "synth lead": 80, "synth pad": 88,
    "pad": 88, "sitar": 104, "banjo": 105, "shamisen": 106, "koto": 107, "kalimba": 108,
    "bagpipe": 109, "bagpipes": 109, "steel drums": 114,
}
# What the parser reads: every GM name too ("synth choir", "lead 2 (sawtooth)", as the corpus labels say
# them), the words above winning where both name one ("fiddle" is a violin, not GM's ethnic Fiddle).
_WORDS: dict[str, int] = {**{pretty_midi.program_to_instrument_name(p).lower(): p for p in range(128)}, **SYNONYMS}
_SYNONYM_PATTERN = re.compile(
    r"(?<!\w)(" + "|".join(re.escape(word) for word in sorted(_WORDS, key=len, reverse=True)) + r")(?!\w)")


def program_name(program: int) -> str:
    """GM name of a 0-based program, e.g. 40 -> "Violin"."""
    return pretty_midi.program_to_instrument_name(program)


def program_family(program: int, *, is_drum: bool = False) -> str:
    """m2ugen family of a 0-based GM program (one of :data:`FAMILIES`), e.g. 40 -> "strings"."""
    if is_drum:
        return "drums"
    if not 0 <= program <= 127:
        raise ValueError(f"GM program must be 0..127, got {program}")
    return _FAMILY_OF_GROUP[program // 8]


def programs_in_text(text: str) -> list[int]:
    """GM programs of the instruments named in ``text`` (a word of :data:`SYNONYMS` or a GM name, the
    longest that matches), in order of mention (no repeats).

    >>> programs_in_text("A jig for fiddle and piano, then the synth choir")
    [40, 0, 54]
    """
    found: list[int] = []
    for match in _SYNONYM_PATTERN.finditer(text.lower()):
        program = _WORDS[match.group(1)]
        if program not in found:
            found.append(program)
    return found
