"""The parts of transcription beyond the note engine: one line for monophonic sources, metre and tempo,
the instrument of each note, and voices within an instrument. :mod:`m2ugen.transcribe` puts them together."""
