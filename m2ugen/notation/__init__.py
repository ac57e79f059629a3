"""Music notation: ABC writing and reading (:mod:`.abc`), key estimation (:mod:`.key`), MIDI rendering (:mod:`.render`)."""
