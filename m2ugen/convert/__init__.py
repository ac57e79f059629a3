"""Converters into Hugging Face / m2ugen layouts: released M2UGen, Meta LLaMA, audiocraft MusicGen."""
