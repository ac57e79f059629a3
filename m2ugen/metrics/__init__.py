"""Evaluation metrics: note-level transcription scores and ABC comparison (:mod:`.transcription`)."""
