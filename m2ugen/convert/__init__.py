"""Converters into Hugging Face / m2ugen layouts: released M2UGen, Meta LLaMA, audiocraft MusicGen, and the
merged export of a trained LLM (:mod:`m2ugen.convert.merged`)."""
