"""Configuration of the whole M2UGen network, with presets.

A component is given either by a local directory in Hugging Face layout (``*_path``) or, for random
test models, by the keyword arguments of its transformers config (``*_config``). Nothing is ever
downloaded.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m2ugen.errors import ConfigError

MODALITIES: tuple[str, ...] = ("audio", "image", "video")
TINY_TOKENIZER_DIR = Path(__file__).parent / "assets" / "tiny_tokenizer"
# The bundled m2ugen-mini (``m2ugen convert bundle``): what ``Assistant.demo()`` loads when it is installed.
MINI_DIR = Path(__file__).parent / "assets" / "mini"
# Frozen components and the prefix of their parameters in ``M2UGen.state_dict()``.
COMPONENTS: dict[str, str] = {"llm": "llm.", "mert": "encoders.audio.", "vit": "encoders.image.",
                              "vivit": "encoders.video."}


# Field annotations (strings, see ``from __future__ import annotations``) -> the accepted types.
_SIMPLE_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
    "str | None": (str, type(None)), "dict[str, Any] | None": (dict, type(None)), "list[str]": (list,),
}


def _check_field_types(obj: Any) -> None:
    """Raise ConfigError for a field whose value does not have its annotated (simple) type."""
    for f in dataclasses.fields(obj):
        allowed = _SIMPLE_TYPES.get(f.type)
        value = getattr(obj, f.name)
        if allowed is None:
            continue
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            raise ConfigError(f"{type(obj).__name__}.{f.name} must be {f.type}, got {value!r}")


@dataclass
class ProjectorConfig:
    """Output projector: 8 [AUD] states (B, 8, llm_dim) -> decoder conditioning (B, num_queries, out_dim)."""

    d_model: int = 512
    num_heads: int = 4
    num_encoder_layers: int = 4
    num_decoder_layers: int = 4
    ffn_dim: int = 2048
    num_queries: int = 128
    out_dim: int = 768
    # The projector predicts ``target_scale x`` the decoder's conditioning (the released weights use 10).
    target_scale: float = 10.0

    def __post_init__(self) -> None:
        _check_field_types(self)


@dataclass
class M2UGenConfig:
    """Every size and component of the network.

    Layer layout: the top ``3 * layers_per_modality`` LLM layers receive, bottom-up, the music,
    image and video adapter tokens (each summed with a learned prefix query per layer).
    """

    name: str = "custom"
    # LLM (LLaMA): a local HF directory, or LlamaConfig kwargs for a randomly initialised model.
    llm_path: str | None = None
    llm_config: dict[str, Any] | None = None
    tokenizer_path: str | None = None
    # Frozen encoders.
    mert_path: str | None = None
    mert_config: dict[str, Any] | None = None
    vit_path: str | None = None
    vit_config: dict[str, Any] | None = None
    vivit_path: str | None = None
    vivit_config: dict[str, Any] | None = None
    # Music decoder: "musicgen", "musicgen-melody" or "audioldm2"; a local directory or "tiny".
    decoder: str = "musicgen"
    decoder_path: str | None = None
    # "embeddings": projector output conditions the decoder; "caption": the LLM's text prompts it.
    decoder_conditioning: str = "embeddings"
    # The LLM was trained to end its music replies with [AUD0..N-1] (trained stage-2/3 and converted
    # checkpoints), so it decides each turn's task itself; False: keyword rules decide (m2ugen.routing).
    emits_aud: bool = False
    # The music the model writes: "audio" ([AUD] -> the decoder), "score" (ABC notation, played by the
    # score decoder, m2ugen.decoders.score) or "both" (the model chooses per reply).
    music_outputs: str = "audio"
    # Injection and tuning.
    layers_per_modality: int = 6
    lora_rank: int = 16
    lora_alpha: float = 16.0  # scaling = alpha / rank = 1, as in the original
    num_aud_tokens: int = 8
    adapter_blocks: int = 3
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    # Media.
    audio_sample_rate: int = 24000
    mert_window_seconds: float = 30.0
    mert_window_batch: int = 4
    num_video_frames: int = 32
    max_audio_seconds: float = 3600.0
    # Text.
    max_context: int = 1024
    # Earlier turns repeated in each prompt (None: all that fit). A model trained on single turns
    # (m2ugen-mini: 0) gets the conversation's state in the instruction instead: the score to edit.
    history_turns: int | None = None
    dtype: str = "float32"
    # The media the model was trained to understand; a turn with another is refused with a clear error
    # instead of being answered from an untrained encoder (m2ugen-mini: audio only).
    input_modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    # Frozen components ("llm", "mert", "vit", "vivit") whose every weight is in model.safetensors (a
    # self-contained bundle, ``m2ugen convert bundle``): given by ``*_config``, built, then overwritten.
    bundled: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.projector, dict):
            self.projector = ProjectorConfig(**self.projector)
        _check_field_types(self)
        if self.decoder not in ("musicgen", "musicgen-melody", "audioldm2"):
            raise ConfigError(f"unknown decoder {self.decoder!r}: use musicgen, musicgen-melody or audioldm2")
        if self.decoder_conditioning not in ("embeddings", "caption"):
            raise ConfigError(f"decoder_conditioning must be 'embeddings' or 'caption', not {self.decoder_conditioning!r}")
        if self.music_outputs not in ("audio", "score", "both"):
            raise ConfigError(f"music_outputs must be 'audio', 'score' or 'both', not {self.music_outputs!r}")
        for component in COMPONENTS:
            if getattr(self, f"{component}_path") is None and getattr(self, f"{component}_config") is None:
                raise ConfigError(f"{component}: give {component}_path (a local directory) or {component}_config")
        unknown = [m for m in self.input_modalities if m not in MODALITIES]
        if unknown or not all(isinstance(m, str) for m in self.input_modalities):
            raise ConfigError(f"input_modalities: unknown {unknown}; use some of {', '.join(MODALITIES)}")
        for component in self.bundled:
            if component not in COMPONENTS:
                raise ConfigError(f"bundled: unknown component {component!r}; use some of {', '.join(COMPONENTS)}")
            if getattr(self, f"{component}_path") is not None or getattr(self, f"{component}_config") is None:
                raise ConfigError(f"bundled: {component} is stored in the weights file, so give its "
                                  f"{component}_config and no {component}_path")

    @property
    def num_injected_layers(self) -> int:
        return len(MODALITIES) * self.layers_per_modality

    # --- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "M2UGenConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "M2UGenConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(data)

    # --- presets -------------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "M2UGenConfig":
        presets = {"tiny": _tiny, "mini": _mini, "paper": _paper_musicgen, "paper-musicgen": _paper_musicgen,
                   "paper-audioldm2": _paper_audioldm2}
        if name not in presets:
            raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(presets)}")
        cfg = presets[name]()
        return dataclasses.replace(cfg, **overrides) if overrides else cfg


def _tiny() -> M2UGenConfig:
    """Every real architecture at toy size, random weights; runs on a CPU in milliseconds."""
    hidden = 64
    return M2UGenConfig(
        name="tiny",
        llm_config=dict(vocab_size=1000, hidden_size=hidden, intermediate_size=176, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                        rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=1, eos_token_id=2),
        tokenizer_path=str(TINY_TOKENIZER_DIR),
        mert_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=[16, 16, 16, 16], conv_kernel=[10, 4, 4, 4], conv_stride=[5, 4, 4, 4],
                         conv_bias=False, feat_extract_norm="group", do_stable_layer_norm=True,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, mask_time_prob=0.0),
        vit_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        image_size=32, patch_size=8),
        vivit_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          image_size=32, num_frames=32, tubelet_size=[2, 8, 8]),
        decoder="musicgen",
        decoder_path="tiny",
        layers_per_modality=1,
        lora_rank=4,
        lora_alpha=4.0,
        projector=ProjectorConfig(d_model=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                                  ffn_dim=64, num_queries=4, out_dim=16),
        mert_window_seconds=5.0,
        max_context=512,
    )


def _mini() -> M2UGenConfig:
    """m2ugen-mini: the sizes of the small model trained here from scratch (training/configs/mini/).

    ``llm_config`` / ``mert_config`` are what ``m2ugen-train pretrain-lm`` / ``pretrain-encoder`` build
    (the LLM's vocabulary comes from the trained tokenizer, 2048 pieces); the M2UGen stages then point
    ``llm_path`` / ``mert_path`` at those stages' ``final`` folders. Its music is the score (ABC); image
    and video encoders stay tiny and untrained, so it takes audio only (``input_modalities``).
    13.2 M parameters, 26.5 MB bundled (float16 matrices); ``m2ugen convert bundle`` makes it self-contained.
    """
    return M2UGenConfig(
        name="mini",
        llm_config=dict(vocab_size=2048, hidden_size=256, intermediate_size=704, num_hidden_layers=8,
                        num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=1024,
                        rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=1, eos_token_id=2),
        # Front end: one learned filter bank (1024 taps = 64 ms at 16 kHz, hop 4 ms), then a 5-frame
        # pooling conv: 50 frames/s. A quarter of the cost of MERT's 7-conv stack here, and each
        # filter is long enough to resolve a semitone above ~250 Hz.
        mert_config=dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                         conv_dim=[256, 256], conv_kernel=[1024, 5], conv_stride=[64, 5], conv_bias=True,
                         feat_extract_norm="layer",
                         do_stable_layer_norm=True, num_conv_pos_embeddings=64, num_conv_pos_embedding_groups=16,
                         mask_time_prob=0.05, mask_time_length=10),
        vit_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        image_size=32, patch_size=8),
        vivit_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          image_size=32, num_frames=32, tubelet_size=[2, 8, 8]),
        decoder="musicgen",
        decoder_path=None,
        music_outputs="score",
        input_modalities=["audio"],
        layers_per_modality=2,
        lora_rank=8,
        lora_alpha=8.0,
        adapter_blocks=2,
        projector=ProjectorConfig(d_model=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                                  ffn_dim=64, num_queries=4, out_dim=16),
        audio_sample_rate=16000,
        mert_window_seconds=10.0,
        max_context=1024,
        history_turns=0,
    )


def _paper_musicgen() -> M2UGenConfig:
    """The paper's sizes with a MusicGen decoder; paths are local directories the user provides."""
    return M2UGenConfig(
        name="paper-musicgen",
        llm_path="checkpoints/Llama-2-7b-hf",
        tokenizer_path="checkpoints/Llama-2-7b-hf",
        mert_path="checkpoints/MERT-v1-330M",
        vit_path="checkpoints/vit-base-patch16-224-in21k",
        vivit_path="checkpoints/vivit-b-16x2-kinetics400",
        decoder="musicgen",
        decoder_path="checkpoints/musicgen-small",
        layers_per_modality=6,
        lora_rank=16,
        lora_alpha=16.0,
        projector=ProjectorConfig(num_queries=128, out_dim=768),
    )


def _paper_audioldm2() -> M2UGenConfig:
    cfg = _paper_musicgen()
    return dataclasses.replace(cfg, name="paper-audioldm2", decoder="audioldm2",
                               decoder_path="checkpoints/audioldm2-music",
                               projector=ProjectorConfig(num_queries=1, out_dim=128 * 1024 + 8 * 768))
