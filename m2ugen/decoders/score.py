"""The score decoder: ABC text -> validated score -> MIDI notes -> audio through a General MIDI sound font.

Beside MusicGen and AudioLDM2, for a model that writes its music as ABC notation. It needs no neural
weights: the "conditioning" is the ABC text itself, so it follows :class:`~m2ugen.decoders.base.MusicDecoder`
through :meth:`ScoreDecoder.caption_generate` (one ABC tune per text), and :meth:`ScoreDecoder.render`
gives a score's audio at its own length together with its MIDI file. Rendering is bounded: a score
plays at most :data:`~m2ugen.notation.score.MAX_SCORE_SECONDS` (checked before any sound is made).
The notes go to the synthesizer of :mod:`m2ugen.notation.render` (what ``render_midi`` plays a MIDI
file with) directly, without a MIDI file round trip; the MIDI file is written when asked for.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from m2ugen.audio import Audio
from m2ugen.decoders.base import DecoderSettings, SourceAudio, local_dir, num_output_samples
from m2ugen.errors import ConfigError
from m2ugen.notation.score import MAX_SCORE_SECONDS, find_abc, parse_abc, save_midi, score_notes


@dataclasses.dataclass
class ScoreSettings(DecoderSettings):
    """How scores are played.

    Attributes:
        sample_rate: output rate in Hz.
        soundfont: a sound font name or ``.sf2``/``.sf3`` path; None: the first one installed
            (see :mod:`m2ugen.notation.render`).
        gain: output gain (a render that would clip is scaled down instead).
    """

    sample_rate: int = 22050
    soundfont: str | None = None
    gain: float = 0.6

    def __post_init__(self) -> None:
        if not 8000 <= int(self.sample_rate) <= 96000:
            raise ConfigError(f"sample_rate {self.sample_rate} must be within 8000..96000 Hz")
        if not 0.0 < self.gain <= 10.0:
            raise ConfigError(f"gain {self.gain} must be in (0, 10]")


class ScoreDecoder:
    """Plays ABC scores; see the module docstring."""

    kind = "score"
    conditioning_shape: tuple[int, ...] = ()
    supports_source_audio = False

    def __init__(self, settings: ScoreSettings | None = None) -> None:
        self.settings = settings or ScoreSettings()

    @property
    def sample_rate(self) -> int:
        return int(self.settings.sample_rate)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, **settings) -> "ScoreDecoder":
        """Settings from ``m2ugen_decoder.json`` in a local folder (there are no weights, so ``device``
        and ``dtype`` do not apply); ``settings`` override :class:`ScoreSettings` fields."""
        saved = ScoreSettings.load(local_dir(path))
        return cls(dataclasses.replace(saved, **settings) if settings else saved)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.settings.save(folder)

    def render(self, score, *, midi_path: str | os.PathLike | None = None) -> Audio:
        """A score (ABC text or a parsed score) -> stereo audio lasting the score plus a release tail.

        Args:
            score: ABC text, or a score from :func:`m2ugen.notation.score.parse_abc`.
            midi_path: also write the score's MIDI file here (atomically).

        Raises:
            AbcError: the ABC is invalid, naming the line.
            ConfigError, MediaError: no sound font, or the font cannot be read.
        """
        from m2ugen.notation.render import SynthNote, synthesize

        if isinstance(score, str):
            score = parse_abc(score)
        if midi_path is not None:
            save_midi(score, midi_path)
        notes = [SynthNote(n.onset_s, n.offset_s, n.pitch, n.velocity, n.program, n.part) for n in score_notes(score)]
        samples = synthesize(notes, sample_rate=self.sample_rate, soundfont=self.settings.soundfont,
                             max_seconds=MAX_SCORE_SECONDS + 5.0) * self.settings.gain
        peak = float(np.abs(samples).max(initial=0.0))
        if peak > 0.99:  # as render_midi: scale a render that would clip
            samples *= 0.99 / peak
        return Audio(samples.T.copy(), self.sample_rate)

    # --- MusicDecoder protocol -------------------------------------------------------------------
    def caption_generate(self, texts: Sequence[str], seconds: float, *, guidance_scale: float = 3.0,
                         seed: int | None = None, source_audio: SourceAudio | None = None) -> list[Audio]:
        """Each text (ABC, or a reply holding an ABC block) played and cut or padded to ``seconds``.

        ``guidance_scale`` and ``seed`` do not apply (a score sounds the same every time).
        """
        if source_audio is not None:
            raise ConfigError("the score decoder cannot condition on source audio; edit the score instead")
        length = num_output_samples(seconds, self.sample_rate)
        clips = []
        for text in texts:
            abc = find_abc(text) or text
            audio = self.render(abc)
            samples = audio.samples[:, :length]
            if samples.shape[1] < length:
                samples = np.pad(samples, ((0, 0), (0, length - samples.shape[1])))
            clips.append(Audio(samples, audio.sample_rate))
        return clips

    def generate(self, conditioning: torch.Tensor, seconds: float, **kwargs) -> list[Audio]:
        raise ConfigError("the score decoder plays ABC text, not embeddings: use caption_generate or render")

    def conditioning_for_captions(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        raise ConfigError("the score decoder has no text-encoder conditioning to learn")
