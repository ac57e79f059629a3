"""The Assistant: a chat turn -> routed task -> M2UGen (LLM + projector) -> music decoder -> Reply.

::

    bot = Assistant.demo()                       # the bundled m2ugen-mini (Assistant.tiny(): random, for tests)
    reply = bot.chat("Compose a calm piano melody", seconds=5)
    reply.audio.save("calm.wav")
    reply = bot.chat("Make it slower")           # edits the music just generated
    bot.reset()                                  # forget the history and the music

A model trained to emit [AUD] decides each turn's task itself (it answers in words or emits [AUD]; with
music at hand and a request to change it, that is an edit); other models are routed by the rules of
:func:`m2ugen.routing.route`; ``task=`` forces a task. Earlier turns are part
of the LLM prompt (:func:`m2ugen.prompt.encode_dialogue`, oldest dropped first when the context is
full). Audio carries over between turns: the music of the last turn that attached or produced audio
is what the next turn hears and what an edit changes. Images and videos belong to their own turn.

A model that writes scores (``config.music_outputs`` "score" or "both") may answer with an ABC tune,
which is played (:mod:`m2ugen.decoders.score`) and becomes the conversation's score, or with
``<edit ...>`` tags, which the exact tools of :mod:`m2ugen.notation.edits` apply to that score; a
transcription's ABC becomes the score too.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from m2ugen.audio import Audio
from m2ugen.config import MINI_DIR, MODALITIES, M2UGenConfig
from m2ugen.errors import ConfigError, MediaError
from m2ugen.model import Generation, M2UGen
from m2ugen.prompt import Turn, encode_dialogue, score_request, with_aud_tokens
from m2ugen.routing import TASKS, is_transcription_request, model_task, route
from m2ugen.settings import DEFAULT_SECONDS, MAX_DEFAULT_EDIT_SECONDS, ChatSettings

logger = logging.getLogger(__name__)

DEMO_LABEL = "[untrained demo model: random weights, the output is noise]"
MediaInput = str | os.PathLike | np.ndarray | Audio | Image.Image | None


@dataclass
class Reply:
    """The assistant's answer to one turn.

    Attributes:
        text: the text response (for a transcription: the ABC score).
        task: what the turn did: "answer", "generate", "edit" or "transcribe".
        audio: generated music (for a score: the score played), or None for a text-only turn.
        midi_path: the MIDI file of a transcription or a score, else None.
        abc: the ABC score of a transcription or a score reply (for an edit: the edited score), else None.
    """

    text: str
    task: str
    audio: Audio | None = None
    midi_path: Path | None = None
    abc: str | None = None


@dataclass
class Conversation:
    """What an :class:`Assistant` remembers between turns.

    Attributes:
        history: earlier turns, oldest first (their responses end with [AUD] tokens when they made music).
        last_audio: the music the conversation is about: the last attached or generated audio.
        last_prompt_ids: the token ids of the last prompt given to the LLM (for inspection).
        score: the ABC score the conversation is about (the last written, edited or transcribed one),
            for models that write scores; edits apply to it.
    """

    history: list[Turn] = field(default_factory=list)
    last_audio: Audio | None = None
    last_prompt_ids: list[int] | None = None
    score: str | None = None


@dataclass
class _Inputs:
    """One request's media, loaded: audio as mono Audio at its own rate, image RGB, video (F, H, W, 3)."""

    audio: Audio | None = None
    image: np.ndarray | None = None
    video: np.ndarray | None = None


class Assistant:
    """Any-to-music chat: music QA and captioning, text/image/video -> music, editing, transcription.

    Args:
        model: the M2UGen network (LLM, encoders, adapters, projector).
        decoder: a :class:`~m2ugen.decoders.base.MusicDecoder` matching ``model.config``.
        untrained: the weights are random (:meth:`tiny`); replies are labelled as such.
        output_dir: where transcriptions write their MIDI files (default: a new temporary folder).
        progress: show tqdm progress bars for the stages of a turn.
        quantize: "int8" (CPU or CUDA) or "int4" (CUDA, bfloat16, torchao) weight-only quantization of the
            LLM's linear layers (:mod:`m2ugen.quantize`): half (a quarter) of the bytes read per token.
    """

    def __init__(self, model: M2UGen, decoder: Any, *, untrained: bool = False,
                 output_dir: str | os.PathLike | None = None, progress: bool = False,
                 quantize: str | None = None) -> None:
        # LoRA folded in; linear layers measured for this machine, or quantized.
        model.llm.optimize_for_inference(quantize=quantize)
        self.model = model.eval()
        self.decoder = decoder
        self.config: M2UGenConfig = model.config
        self.untrained = untrained
        self.progress = progress
        self._output_dir = Path(output_dir) if output_dir is not None else None
        self.conversation = Conversation()
        self._num_files = 0
        if untrained:
            logger.warning("Assistant.tiny(): a tiny model with random, untrained weights; "
                           "its text and music are noise")

    # --- construction --------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: str | torch.device | None = None,
                        **kwargs: Any) -> "Assistant":
        """Load a checkpoint directory written by :meth:`M2UGen.save_pretrained` and its decoder."""
        model = M2UGen.from_pretrained(path)
        if device is not None:
            model.to(device)
        return cls(model, _build_decoder(model.config, device), **kwargs)

    @classmethod
    def demo(cls, **kwargs: Any) -> "Assistant":
        """The demo model: m2ugen-mini, bundled in the package (``m2ugen/assets/mini/``).

        A 13 M-parameter M2UGen trained from scratch on rendered scores: it answers questions about
        audio and writes and edits ABC scores (played through a sound font); it takes no images or
        videos. An install without the bundle gets :meth:`tiny` instead, with a warning.
        """
        folder = bundled_mini()
        if folder is None:
            logger.warning("Assistant.demo(): this install has no bundled m2ugen-mini (%s); using the tiny "
                           "random model", MINI_DIR)
            return cls.tiny(**kwargs)
        return cls.from_pretrained(folder, **kwargs)

    @classmethod
    def tiny(cls, **kwargs: Any) -> "Assistant":
        """Every real architecture at toy size with random, untrained weights (the ``tiny`` preset).

        It runs on a CPU in a second and exercises the whole pipeline (tests), but its text and music
        are noise; replies are labelled :data:`DEMO_LABEL`.
        """
        config = M2UGenConfig.preset("tiny")
        model = M2UGen.from_config(config)
        return cls(model, _build_decoder(config, None), untrained=True, **kwargs)

    # --- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the conversation: history, the carried-over audio and the last prompt."""
        self.conversation = Conversation()

    @property
    def history(self) -> list[Turn]:
        return self.conversation.history

    @property
    def last_audio(self) -> Audio | None:
        return self.conversation.last_audio

    @property
    def output_dir(self) -> Path:
        if self._output_dir is None:
            self._output_dir = Path(tempfile.mkdtemp(prefix="m2ugen-"))
        return self._output_dir

    # --- chat ----------------------------------------------------------------------------------
    def chat(self, text: str, audio: MediaInput = None, image: MediaInput = None, video: MediaInput = None, *,
             task: str = "auto", seconds: float | None = None, **settings: Any) -> Reply:
        """Answer one turn of the conversation.

        Args:
            text: the user's message.
            audio: a file path or an :class:`Audio`; becomes the conversation's music. Without it,
                the music of an earlier turn (attached or generated) is used.
            image: a file path, a PIL image or an (H, W, 3) array, for this turn only.
            video: a file path or an (F, H, W, 3) uint8 array, for this turn only.
            task: "auto" (the model decides, or the rules of :mod:`m2ugen.routing` for models that
                cannot) or one of "answer", "generate", "edit", "transcribe".
            seconds: music length (see :class:`ChatSettings`).
            **settings: other :class:`ChatSettings` fields (temperature, top_p, seed, ...).

        Returns:
            A :class:`Reply`; ``audio`` is set for "generate" and "edit" turns.

        Raises:
            MediaError: an input is missing, unreadable or unusable, or an edit/transcription has no audio.
            ConfigError: a setting is out of range, or the task is unknown.
        """
        opts = ChatSettings(seconds=seconds, **settings)
        max_prompt = self._max_prompt_tokens(opts)
        text = _check_text(text)
        inputs = self._load_inputs(audio, image, video)
        source = inputs.audio if inputs.audio is not None else self.last_audio
        pasted = self._pasted_score(text)
        task = self._decide_task(text, task, inputs, source)
        if task == "transcribe":
            return self._transcribe(text, source)

        stages = tqdm(total=3, desc=task, unit="stage", disable=not self.progress, leave=False)
        with stages:
            stages.set_postfix_str("encoding inputs")
            instruction = self._instruction(text, task, pasted)
            reads_score = pasted is not None or (task == "edit" and instruction != text)
            heard = self._heard(task, inputs, source, reads_score)
            features, present = self._features([replace(inputs, audio=heard)])
            stages.update()
            stages.set_postfix_str("language model")
            ids, _ = encode_dialogue(self.model.tokenizer, instruction, history=self._prompt_history(),
                                     max_tokens=max_prompt)
            self.conversation.last_prompt_ids = ids
            gen = self.model.generate([ids], features=features, present=present, max_new_tokens=opts.max_new_tokens,
                                      temperature=opts.temperature, top_p=opts.top_p, seed=opts.seed,
                                      force_music=task in ("generate", "edit") and self.config.music_outputs == "audio")[0]
            stages.update()
            if self.config.music_outputs != "audio":
                stages.set_postfix_str("score")
                score_reply = self._score_reply(text, gen.text, pasted)
                if score_reply is not None:
                    return score_reply
                if gen.conditioning is None:  # neither a score nor [AUD]: a text answer
                    task = "answer"
            if task == "auto":  # the model decided: it answered in words or emitted [AUD]
                task = model_task(text, made_music=gen.conditioning is not None, has_audio=source is not None)
                self._check_task(task, source)
            audio_out = None
            if task in ("generate", "edit"):
                stages.set_postfix_str("music decoder")
                seconds_out = _music_seconds(opts.seconds, source if task == "edit" else None)
                audio_out = self._decode([gen], [text], seconds_out, opts, source if task == "edit" else None)[0]
            stages.update()
        # The conversation changes only once the turn has succeeded.
        response = gen.text
        remembered = with_aud_tokens(response, self.config.num_aud_tokens) if audio_out is not None else response
        self.history.append(Turn(text, remembered))
        self.conversation.last_audio = audio_out if audio_out is not None else source
        if pasted is not None:
            self.conversation.score = pasted
        return Reply(text=self._label(response), task=task, audio=audio_out)

    def _instruction(self, text: str, task: str, pasted: str | None) -> str:
        """What the LLM reads for this turn: the user's words; after the conversation's score when the
        turn edits it and the model sees no history (the score it asks for ``<edit ...>`` tags on); as
        a request for ABC (:func:`~m2ugen.prompt.score_request`) when a score model writes new music."""
        if task == "edit" and pasted is None and self._edits_scores and self.config.history_turns == 0:
            return f"{self.conversation.score.rstrip()}\n\n{text}"
        if task == "generate" and self.config.music_outputs == "score":
            return score_request(text)
        return text

    def _heard(self, task: str, inputs: _Inputs, source: Audio | None, reads_score: bool) -> Audio | None:
        """The music the LLM hears this turn: the conversation's. A model that writes only scores hears
        music attached to this turn, or earlier music when asked about it; it edits the score it reads
        and composes from words alone, as it was trained."""
        if self.config.music_outputs != "score" or inputs.audio is not None:
            return source
        return None if reads_score or task == "generate" else source

    def _prompt_history(self) -> list[Turn]:
        """The earlier turns the prompt repeats (``config.history_turns``; None: all that fit)."""
        keep = self.config.history_turns
        if keep is None:
            return self.history
        return self.history[-keep:] if keep else []

    def _decide_task(self, text: str, task: str, inputs: _Inputs, source: Audio | None) -> str:
        """The turn's task before the LLM runs, or "auto" when the model decides it from its reply.

        ``task=`` forces a task. Otherwise transcription wording with audio is a transcription (the LLM
        cannot signal one); a model that was trained to emit [AUD] (``config.emits_aud``) decides the
        rest itself (:func:`m2ugen.routing.model_task`); for other models the
        keyword rules of :func:`m2ugen.routing.route` decide.
        """
        if task not in ("auto", *TASKS):
            raise ConfigError(f"unknown task {task!r}; choose auto, {', '.join(TASKS)}")
        if task == "auto":
            if source is not None and is_transcription_request(text):
                task = "transcribe"
            elif not self.config.emits_aud:
                task = route(text, has_audio=source is not None, has_image=inputs.image is not None,
                             has_video=inputs.video is not None, audio_attached=inputs.audio is not None)
        self._check_task(task, source)
        return task

    def _check_task(self, task: str, source: Audio | None) -> None:
        if task in ("edit", "transcribe") and source is None:
            raise MediaError(f"nothing to {task}: attach audio (or generate music first)")
        if task == "edit" and not self.decoder.supports_source_audio and not self._edits_scores:
            raise ConfigError(f"the {self.decoder.kind} decoder cannot condition on source audio, so it cannot edit")

    @property
    def _edits_scores(self) -> bool:
        """The model writes scores and the conversation has one: an edit changes the score."""
        return self.config.music_outputs != "audio" and self.conversation.score is not None

    def _pasted_score(self, text: str) -> str | None:
        """The ABC tune in the user's message (:func:`~m2ugen.notation.score.find_abc`), for a model that
        writes scores: it becomes the conversation's score once the turn succeeds, and the turn's edits
        apply to it (a tune, a blank line, "Transpose it to G."). None when there is none.

        Raises:
            AbcError: the pasted tune cannot be read (the message names the line).
        """
        if self.config.music_outputs == "audio":
            return None
        from m2ugen.notation.score import find_abc, parse_abc

        abc = find_abc(text)
        if abc is not None:
            parse_abc(abc)
        return abc

    def _score_reply(self, text: str, response: str, pasted: str | None = None) -> Reply | None:
        """The reply of a turn whose response holds ``<edit ...>`` tags (applied to ``pasted``, the score
        in the user's message, else the conversation's score; :mod:`m2ugen.notation.edits`) or an ABC
        score; None when it holds neither.

        The score is played by the score decoder, its MIDI file written to :attr:`output_dir`, and it
        becomes the conversation's score; the history keeps the response with the edited score
        appended, so the next prompt shows the score as it now is.
        """
        from m2ugen.notation.edits import apply_edits, parse_edits
        from m2ugen.notation.score import abc_block, find_abc, parse_abc, score_to_abc

        edits = parse_edits(response)
        abc = find_abc(response)
        if edits:
            base = pasted if pasted is not None else self.conversation.score
            if base is None:
                raise MediaError("nothing to edit: the conversation has no score (ask for one, paste one or "
                                 "transcribe audio)")
            score = apply_edits(parse_abc(base), edits)
            abc, task = score_to_abc(score), "edit"
            remembered = f"{response.strip()}\n{abc_block(abc)}"
        elif abc is not None:
            score, remembered, task = parse_abc(abc), response, "generate"
        else:
            return None
        midi_path = self.output_dir / f"score-{self._num_files + 1}.mid"
        audio = self._score_decoder.render(score, midi_path=midi_path)
        self._num_files += 1
        self.history.append(Turn(text, remembered))
        self.conversation.score, self.conversation.last_audio = abc, audio
        return Reply(text=self._label(response), task=task, audio=audio, midi_path=midi_path, abc=abc)

    @functools.cached_property
    def _score_decoder(self) -> Any:
        """What plays scores: the model's decoder when it is the score decoder, else a default one."""
        from m2ugen.decoders.score import ScoreDecoder

        return self.decoder if isinstance(self.decoder, ScoreDecoder) else ScoreDecoder()

    # --- batched generation ----------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], *, audio: Sequence[MediaInput] | None = None,
                 image: Sequence[MediaInput] | None = None, video: Sequence[MediaInput] | None = None,
                 seconds: float | None = None, **settings: Any) -> list[Reply]:
        """Music for many prompts at once: one batched LLM pass and one batched decoder call.

        Independent of the conversation (history and carried-over audio are neither used nor
        changed). ``audio``/``image``/``video`` are None or one entry (possibly None) per prompt;
        audio here is heard by the LLM only (use :meth:`chat` to edit).

        Returns:
            One :class:`Reply` per prompt, each with ``audio`` of ``seconds`` (default 10 s).
        """
        opts = ChatSettings(seconds=seconds, **settings)
        max_prompt = self._max_prompt_tokens(opts)
        if isinstance(prompts, str):
            raise ConfigError("generate: give a list of prompts (for one prompt use chat(), or pass [prompt])")
        texts = [_check_text(t) for t in prompts]
        if not texts:
            raise ConfigError("generate: give at least one prompt")
        columns = {}
        for name, items in (("audio", audio), ("image", image), ("video", video)):
            items = [None] * len(texts) if items is None else list(items)
            if len(items) != len(texts):
                raise ConfigError(f"generate: {len(items)} {name} inputs for {len(texts)} prompts")
            columns[name] = items
        inputs = [self._load_inputs(a, i, v) for a, i, v in zip(columns["audio"], columns["image"], columns["video"])]
        with tqdm(total=3, desc="generate", unit="stage", disable=not self.progress, leave=False) as stages:
            features, present = self._features(inputs)
            stages.update()
            ids = [encode_dialogue(self.model.tokenizer, t, max_tokens=max_prompt)[0] for t in texts]
            gens = self.model.generate(ids, features=features, present=present, max_new_tokens=opts.max_new_tokens,
                                       temperature=opts.temperature, top_p=opts.top_p, seed=opts.seed,
                                       force_music=True)
            stages.update()
            audios = self._decode(gens, texts, _music_seconds(opts.seconds, None), opts, None)
            stages.update()
        return [Reply(text=self._label(g.text), task="generate", audio=a) for g, a in zip(gens, audios)]

    # --- steps ---------------------------------------------------------------------------------
    def _load_inputs(self, audio: MediaInput, image: MediaInput, video: MediaInput) -> _Inputs:
        from m2ugen.media import load_image, load_video, read_audio

        cfg = self.config
        for modality, value in (("audio", audio), ("image", image), ("video", video)):
            if value is not None and modality not in cfg.input_modalities:
                raise MediaError(f"{modality} input is not available with this model ('{cfg.name}' understands "
                                 f"{' and '.join(['text', *cfg.input_modalities])} only); {modality} needs a model "
                                 "trained on it, such as a converted released M2UGen checkpoint "
                                 "(`m2ugen convert released`, see docs/checkpoints.md)")
        out = _Inputs()
        if audio is not None:
            if isinstance(audio, np.ndarray):
                raise MediaError("pass audio as a file path or an Audio(samples, sample_rate), not a bare array")
            out.audio = read_audio(audio, max_seconds=cfg.max_audio_seconds)  # its own rate; consumers resample
        if image is not None:
            out.image = load_image(image)
        if video is not None:
            out.video = _video_frames(video, cfg.num_video_frames) if isinstance(video, np.ndarray) else \
                load_video(video, cfg.num_video_frames, max_seconds=cfg.max_audio_seconds)
        return out

    def _features(self, batch: Sequence[_Inputs]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Encoder features {modality: (B, N, D)} and presence flags {modality: (B,)} of a batch.

        Rows without a modality get zero features and a False flag (their adapter token is zeroed).
        """
        features, present = {}, {}
        for modality in MODALITIES:
            rows = [i for i, item in enumerate(batch) if getattr(item, modality) is not None]
            if not rows:
                continue
            encoded = self.model.encode_media(modality, [getattr(batch[i], modality) for i in rows])
            full = encoded.new_zeros(len(batch), *encoded.shape[1:])
            full[rows] = encoded
            flags = torch.zeros(len(batch), dtype=torch.bool)
            flags[rows] = True
            features[modality], present[modality] = full, flags
        return features, present

    def _max_prompt_tokens(self, opts: ChatSettings) -> int:
        room = self.config.max_context - opts.max_new_tokens
        if room < 16:
            raise ConfigError(f"max_new_tokens={opts.max_new_tokens} leaves no room for the prompt in the "
                              f"context of {self.config.max_context} tokens")
        return room

    def _decode(self, gens: Sequence[Generation], texts: Sequence[str], seconds: float, opts: ChatSettings,
                source: Audio | None) -> list[Audio]:
        """Music for each generation: from the projector output, or in caption mode from the LLM's text.

        In caption mode an empty response (only [AUD] tokens) falls back to the user's request.
        ``source`` (an edit) conditions the decoder on the source audio too.
        """
        decoder = self.decoder
        kwargs = dict(guidance_scale=opts.guidance_scale, seed=opts.seed, source_audio=source)
        if self.config.decoder_conditioning == "caption":
            captions = [g.text or t for g, t in zip(gens, texts)]
            return decoder.caption_generate(captions, seconds, **kwargs)
        cond = torch.stack([g.conditioning for g in gens])
        shape = tuple(decoder.conditioning_shape)
        if cond[0].numel() != int(np.prod(shape)):
            raise ConfigError(f"the projector produces {tuple(cond.shape[1:])} but the {decoder.kind} decoder "
                              f"takes {shape}: projector and decoder do not match")
        return decoder.generate(cond.reshape(len(gens), *shape).float().cpu(), seconds, **kwargs)

    def _transcribe(self, text: str, source: Audio) -> Reply:
        from m2ugen.transcribe import transcribe

        with tqdm(total=round(source.duration, 1), desc="transcribe", unit="s", disable=not self.progress,
                  leave=False) as bar:
            result = transcribe(source.mono(), sample_rate=source.sample_rate,
                                on_progress=lambda done, total: bar.update(round(done, 1) - bar.n))
        self._num_files += 1
        midi_path = result.save_midi(self.output_dir / f"transcription-{self._num_files}.mid", overwrite=True)
        if self.config.music_outputs != "audio" and result.notes:  # the score enters the conversation
            from m2ugen.notation.score import abc_block

            self.history.append(Turn(text, f"{result.message}\n{abc_block(result.abc)}"))
            self.conversation.score = result.abc
        else:
            self.history.append(Turn(text, result.message))
        self.conversation.last_audio = source
        return Reply(text=result.abc, task="transcribe", midi_path=midi_path, abc=result.abc)

    def _label(self, text: str) -> str:
        return f"{DEMO_LABEL} {text}".rstrip() if self.untrained else text


def _check_text(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("the message is empty: write what you want")
    return text.strip()


def _music_seconds(seconds: float | None, source: Audio | None) -> float:
    """The requested length, else DEFAULT_SECONDS for new music or the source's length (at most
    MAX_DEFAULT_EDIT_SECONDS) for an edit."""
    if seconds is not None:
        return float(seconds)
    if source is not None:
        return min(source.duration, MAX_DEFAULT_EDIT_SECONDS)
    return DEFAULT_SECONDS


def _video_frames(clip: np.ndarray, num_frames: int) -> np.ndarray:
    """An in-memory clip (F, H, W, 3) uint8 -> ``num_frames`` frames spaced evenly over it."""
    from m2ugen.media import MIN_VIDEO_FRAMES, frame_indices

    if clip.ndim != 4 or clip.shape[-1] != 3:
        raise MediaError(f"<video array>: must be (frames, height, width, 3), got shape {clip.shape}")
    if clip.shape[0] < MIN_VIDEO_FRAMES:
        raise MediaError(f"<video array>: has {clip.shape[0]} frame(s); at least {MIN_VIDEO_FRAMES} is needed")
    return np.asarray(clip[frame_indices(clip.shape[0], num_frames)], dtype=np.uint8)


def bundled_mini() -> Path | None:
    """The folder of the bundled m2ugen-mini (``m2ugen/assets/mini/``), or None when this install has none."""
    from m2ugen.checkpoints import WEIGHTS_NAME

    return MINI_DIR if (MINI_DIR / WEIGHTS_NAME).is_file() else None


def _build_decoder(config: M2UGenConfig, device: str | torch.device | None) -> Any:
    """The music decoder ``config`` names: a local checkpoint folder, or "tiny" for a tiny random one; a
    model that writes only scores and names no decoder folder (m2ugen-mini) gets the score decoder."""
    from m2ugen.decoders import load_decoder

    if config.decoder_path is None and config.music_outputs == "score":
        return load_decoder("score", "tiny")
    if config.decoder_path is None:
        raise ConfigError(f"config {config.name!r} names no decoder_path for its {config.decoder} decoder")
    if config.decoder_path == "tiny":
        return load_decoder(config.decoder, "tiny")
    return load_decoder(config.decoder, config.decoder_path, device=device or "cpu")
