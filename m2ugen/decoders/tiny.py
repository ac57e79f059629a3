"""Tiny random decoders of the real architectures, for tests and ``Assistant.tiny()``.

Every builder is seeded (the same call gives the same weights), needs no download, runs on a CPU in
well under a second, and returns a decoder whose ``save_pretrained`` folder ``from_pretrained`` reads
back. The output is noise-like: the weights are random.
"""

from __future__ import annotations

import string
from typing import Any

import torch

from m2ugen.decoders.audioldm2 import AudioLDM2Decoder, AudioLDM2Settings
from m2ugen.decoders.musicgen import MusicGenDecoder, MusicGenSettings
from m2ugen.decoders.musicgen_melody import MusicGenMelodyDecoder
from m2ugen.seeding import seeded

# Sizes shared by the tiny MusicGen family (small enough for CPU tests).
CODEBOOK_SIZE = 64
NUM_CODEBOOKS = 2
TINY_TEXT_LENGTH = 4     # matches the tiny preset's projector: 4 queries ...
TINY_TEXT_DIM = 16       # ... of width 16 (m2ugen.config, preset "tiny")


def tiny_t5_tokenizer(model_max_length: int = 512) -> Any:
    """A character-level sentencepiece-style T5 tokenizer (lower-case letters, digits, space)."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)]
    pieces += [(c, -2.0) for c in string.ascii_lowercase + string.digits]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def _musicgen_sub_configs(text_dim: int, max_position_embeddings: int, melody: bool) -> tuple[Any, Any, Any]:
    from transformers import EncodecConfig, MusicgenDecoderConfig, MusicgenMelodyDecoderConfig, T5Config

    t5 = T5Config(vocab_size=100, d_model=text_dim, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    # 32 kHz, hop 8*5*4*4 = 640 -> 50 frames/s like the real codec; 0.6 kbps with 64-entry codebooks
    # gives exactly NUM_CODEBOOKS quantizers.
    codec = EncodecConfig(target_bandwidths=[0.6], audio_channels=1, sampling_rate=32000, num_filters=4,
                          hidden_size=8, codebook_size=CODEBOOK_SIZE, upsampling_ratios=[8, 5, 4, 4],
                          num_lstm_layers=1, codebook_dim=8)
    decoder_class = MusicgenMelodyDecoderConfig if melody else MusicgenDecoderConfig
    # initializer_factor 0.5 (not 0.02): with near-zero weights every token is equally likely and the
    # conditioning could not change what is sampled.
    decoder = decoder_class(vocab_size=CODEBOOK_SIZE, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                            ffn_dim=32, num_codebooks=NUM_CODEBOOKS, pad_token_id=CODEBOOK_SIZE,
                            bos_token_id=CODEBOOK_SIZE, max_position_embeddings=max_position_embeddings,
                            initializer_factor=0.5)
    return t5, codec, decoder


def _finish(model: Any, seed: int) -> Any:
    """Random codebooks and MusicGen's special tokens.

    EnCodec starts its codebooks at zero, so every code would decode to the same sound. As EnCodec's
    own k-means initialisation does, codebooks are drawn from encoder outputs (of noise whose level
    rises over 2 s), each layer from the residual of the layers before, so different audio encodes
    to different codes (audio prompts) and different codes decode to different audio.
    """
    codec = model.audio_encoder
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        samples = 2 * codec.config.sampling_rate
        probe = torch.randn(1, 1, samples, generator=generator) * torch.linspace(0.01, 1.0, samples)
        residual = codec.encoder(probe)[0].T  # (T, D) frames
        for layer in codec.quantizer.layers:
            book = residual[torch.randperm(residual.shape[0], generator=generator)[: codec.config.codebook_size]]
            layer.codebook.embed.copy_(book)
            residual = residual - book[torch.cdist(residual, book).argmin(dim=1)]
    config = model.generation_config
    config.decoder_start_token_id = config.pad_token_id = config.bos_token_id = CODEBOOK_SIZE
    return model


def tiny_musicgen(*, text_length: int = TINY_TEXT_LENGTH, text_dim: int = TINY_TEXT_DIM,
                  max_position_embeddings: int = 256, max_window_seconds: float = 30.0,
                  prompt_seconds: float = 10.0, seed: int = 0) -> MusicGenDecoder:
    """Random MusicGen: conditioning_shape (text_length, text_dim), 32 kHz mono, 2 codebooks.

    A window holds ``max_position_embeddings - 2`` frames (50 per second), so small values make
    windowed generation cheap to test.
    """
    from transformers import MusicgenConfig, MusicgenForConditionalGeneration

    t5, codec, decoder = _musicgen_sub_configs(text_dim, max_position_embeddings, melody=False)
    with seeded(seed):
        model = MusicgenForConditionalGeneration(MusicgenConfig(
            text_encoder=t5.to_dict(), audio_encoder=codec.to_dict(), decoder=decoder.to_dict()))
    settings = MusicGenSettings(text_length=text_length, max_window_seconds=max_window_seconds,
                                prompt_seconds=prompt_seconds)
    return MusicGenDecoder(_finish(model, seed), tiny_t5_tokenizer(), settings)


def tiny_musicgen_melody(*, text_length: int = TINY_TEXT_LENGTH, text_dim: int = TINY_TEXT_DIM,
                         chroma_length: int = 10, max_position_embeddings: int = 512,
                         seed: int = 0) -> MusicGenMelodyDecoder:
    """Random MusicGen-melody with a ``chroma_length``-frame chroma prefix (128 ms per frame)."""
    from transformers import MusicgenMelodyConfig, MusicgenMelodyForConditionalGeneration

    t5, codec, decoder = _musicgen_sub_configs(text_dim, max_position_embeddings, melody=True)
    with seeded(seed):
        config = MusicgenMelodyConfig(text_encoder=t5.to_dict(), audio_encoder=codec.to_dict(),
                                      decoder=decoder.to_dict(), num_chroma=12, chroma_length=chroma_length)
        model = MusicgenMelodyForConditionalGeneration(config)
    return MusicGenMelodyDecoder(_finish(model, seed), tiny_t5_tokenizer(),
                                 MusicGenSettings(text_length=text_length))


def tiny_roberta_tokenizer(model_max_length: int = 77) -> Any:
    """A character-level byte-BPE (RoBERTa) tokenizer with no merges."""
    from transformers import RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    symbols = specials + ["Ġ"] + list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = {symbol: i for i, symbol in enumerate(symbols)}
    return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def tiny_audioldm2(*, text_length: int = TINY_TEXT_LENGTH, t5_dim: int = 32, gpt_dim: int = 16,
                   num_inference_steps: int = 2, with_tokenizers: bool = True, seed: int = 0) -> AudioLDM2Decoder:
    """Random AudioLDM2 pipeline (16 kHz): conditioning_shape (1, text_length * t5_dim + 8 * gpt_dim).

    Component sizes follow diffusers' own dummy pipeline (its AudioLDM2 pipeline tests).
    """
    from diffusers import AudioLDM2Pipeline, AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel, AutoencoderKL, DDIMScheduler
    from transformers import (ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig, GPT2Config,
                              GPT2LMHeadModel, SpeechT5HifiGan, SpeechT5HifiGanConfig, T5Config, T5EncoderModel)

    with seeded(seed):
        unet = AudioLDM2UNet2DConditionModel(
            block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, sample_size=32, in_channels=4,
            out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=([None, gpt_dim, t5_dim], [None, gpt_dim, t5_dim]))
        scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  clip_sample=False, set_alpha_to_one=False)
        vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=1, out_channels=1, latent_channels=4,
                            norm_num_groups=8, down_block_types=["DownEncoderBlock2D"] * 2,
                            up_block_types=["UpDecoderBlock2D"] * 2)
        clap_text = ClapTextConfig(vocab_size=1000, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                   intermediate_size=16, max_position_embeddings=80, projection_dim=8)
        clap_audio = ClapAudioConfig(spec_size=8, window_size=4, num_mel_bins=8, depths=[1, 1], num_attention_heads=[1, 1],
                                     hidden_size=192, patch_size=2, patch_stride=2, patch_embed_input_channels=4,
                                     projection_dim=8, num_hidden_layers=1, intermediate_size=16)
        clap = ClapModel(ClapConfig(text_config=clap_text.to_dict(), audio_config=clap_audio.to_dict(),
                                    projection_dim=16, projection_hidden_size=16))
        t5 = T5EncoderModel(T5Config(vocab_size=100, d_model=t5_dim, d_ff=37, d_kv=8, num_heads=2, num_layers=1))
        gpt = GPT2LMHeadModel(GPT2Config(n_embd=gpt_dim, n_head=2, n_layer=1, vocab_size=1000, n_ctx=99,
                                         n_positions=99))
        gpt.config.max_new_tokens = 8
        projection = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=t5_dim, langauge_model_dim=gpt_dim)
        vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
            model_in_dim=8, sampling_rate=16000, upsample_initial_channel=16, upsample_rates=[2, 2],
            upsample_kernel_sizes=[4, 4], resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]],
            normalize_before=False))
    pipe = AudioLDM2Pipeline(
        vae=vae, text_encoder=clap, text_encoder_2=t5, projection_model=projection, language_model=gpt,
        tokenizer=tiny_roberta_tokenizer() if with_tokenizers else None,
        tokenizer_2=tiny_t5_tokenizer(model_max_length=text_length) if with_tokenizers else None,
        feature_extractor=ClapFeatureExtractor(feature_size=8, sampling_rate=16000, hop_length=7900,
                                               max_length_s=1, fft_window_size=64),
        unet=unet, scheduler=scheduler, vocoder=vocoder)
    pipe.set_progress_bar_config(disable=True)
    return AudioLDM2Decoder(pipe, AudioLDM2Settings(text_length=text_length, num_inference_steps=num_inference_steps))


def tiny_decoder(kind: str, **kwargs: Any) -> Any:
    """The tiny decoder of ``kind`` ("musicgen", "musicgen-melody" or "audioldm2")."""
    from m2ugen.errors import ConfigError

    builders = {"musicgen": tiny_musicgen, "musicgen-melody": tiny_musicgen_melody, "audioldm2": tiny_audioldm2}
    if kind not in builders:
        raise ConfigError(f"unknown decoder {kind!r}; choose from {', '.join(builders)}")
    return builders[kind](**kwargs)
