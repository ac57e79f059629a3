"""m2ugen.decoders on tiny random MusicGen, MusicGen-melody and AudioLDM2 (CPU), and Audio.save."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from m2ugen.audio import Audio
from m2ugen.decoders import MusicDecoder, load_decoder
from m2ugen.decoders.audioldm2 import AudioLDM2Decoder, ZeroNegativesWarning
from m2ugen.decoders.musicgen import MusicGenDecoder
from m2ugen.decoders.musicgen_melody import chroma_features
from m2ugen.decoders.tiny import tiny_audioldm2, tiny_musicgen, tiny_musicgen_melody
from m2ugen.errors import CheckpointError, ConfigError, MediaError
from media_utils import chord, midi_to_hz, tone

CAPTIONS = ["a", "piano"]  # "a" is shorter than the 4-token text length: its mask has padding


@pytest.fixture(scope="module")
def musicgen():
    return tiny_musicgen()


@pytest.fixture(scope="module")
def melody():
    return tiny_musicgen_melody()


@pytest.fixture(scope="module")
def audioldm2():
    return tiny_audioldm2()


def spy_codes(decoder: MusicGenDecoder) -> list[torch.Tensor]:
    """Record every code tensor the decoder's EnCodec turns into audio."""
    codes: list[torch.Tensor] = []
    codec = decoder.model.audio_encoder
    original = codec.decode

    def decode(audio_codes, *args, **kwargs):
        codes.append(audio_codes.clone())
        return original(audio_codes, *args, **kwargs)

    codec.decode = decode
    return codes


def spy_generate(decoder: MusicGenDecoder) -> list[dict]:
    """Record the keyword arguments of every ``model.generate`` call."""
    calls: list[dict] = []
    model = decoder.model
    original = model.generate

    def generate(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)

    model.generate = generate
    return calls


def test_all_decoders_follow_the_protocol(musicgen, melody, audioldm2):
    for decoder in (musicgen, melody, audioldm2):
        assert isinstance(decoder, MusicDecoder)
        states, mask = decoder.conditioning_for_captions(CAPTIONS)
        assert states.shape == mask.shape == (2, *decoder.conditioning_shape)
    assert musicgen.conditioning_shape == (4, 16)  # the tiny preset's projector output
    assert audioldm2.conditioning_shape == (1, 4 * 32 + 8 * 16)
    assert musicgen.frame_rate == 50.0 and musicgen.sample_rate == 32000


def test_projector_output_really_conditions_musicgen(musicgen):
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 1, 4, 16, generator=gen)
    codes = spy_codes(musicgen)
    try:
        first = musicgen.generate(a, 0.3, seed=7)[0].samples
        again = musicgen.generate(a.clone(), 0.3, seed=7)[0].samples
        other = musicgen.generate(b, 0.3, seed=7)[0].samples
    finally:
        del musicgen.model.audio_encoder.decode
    np.testing.assert_array_equal(first, again)
    assert torch.equal(codes[0], codes[1])
    assert (codes[0] != codes[2]).float().mean() > 0.3  # most tokens change with the conditioning
    assert not np.array_equal(first, other)


def test_embedding_path_is_token_identical_to_text_path(musicgen):
    codes = spy_codes(musicgen)
    try:
        states, mask = musicgen.conditioning_for_captions(CAPTIONS)
        assert mask[0, :, 0].tolist() == [1, 1, 1, 0]
        from_text = musicgen.caption_generate(CAPTIONS, 0.4, guidance_scale=3.0, seed=3)
        from_states = musicgen.generate(states, 0.4, mask=mask, guidance_scale=3.0, seed=3)
    finally:
        del musicgen.model.audio_encoder.decode
    assert codes[0].shape == (1, 2, 2, 20)
    assert torch.equal(codes[0], codes[1])
    for x, y in zip(from_text, from_states):
        np.testing.assert_array_equal(x.samples, y.samples)


@pytest.mark.parametrize("seconds", [0.013, 0.37, 0.61])
def test_duration_is_exact(musicgen, seconds):
    states, _ = musicgen.conditioning_for_captions(["a"])
    (clip,) = musicgen.generate(states, seconds, seed=0)
    assert clip.samples.shape == (round(seconds * 32000),) and clip.sample_rate == 32000


def test_long_output_is_generated_in_prompted_windows():
    decoder = tiny_musicgen(max_position_embeddings=30)  # windows of 28 frames = 0.56 s
    assert decoder.window_frames() == 28
    calls = spy_generate(decoder)
    encoded = []  # (audio, codes) of every prompt encoding
    encode = decoder._encode_prompt
    decoder._encode_prompt = lambda audio: encoded.append((audio.clone(), encode(audio))) or encoded[-1][1]
    states, mask = decoder.conditioning_for_captions(CAPTIONS)
    clips = decoder.generate(states, 1.0, mask=mask, seed=1)
    assert [c.samples.shape for c in clips] == [(32000,), (32000,)]
    assert len(calls) == 3  # 28 + 14 + 8 new frames
    assert "decoder_input_ids" not in calls[0]
    for call in calls[1:]:  # later windows continue from the tail (14 frames) of what came before
        assert call["decoder_input_ids"].shape == (2 * 2, 14)
        assert call["max_new_tokens"] + 1 - 2 + 14 <= 28
    # the prompt of window 2 is the EnCodec encoding of the last 14 frames of window 1's audio
    window1 = torch.from_numpy(np.stack([c.samples[: 28 * 640] for c in clips]))[:, None, 14 * 640:]
    assert len(encoded) == 2 and torch.equal(encoded[0][1], calls[1]["decoder_input_ids"])
    torch.testing.assert_close(encoded[0][0], window1, atol=1e-6, rtol=0)


def test_musicgen_source_audio_is_continued(musicgen, tmp_path):
    states, _ = musicgen.conditioning_for_captions(["a"])
    src_a = Audio(chord((60, 64, 67), 0.5, 32000), 32000)
    src_b = Audio(tone(midi_to_hz(75), 0.5, 32000), 32000)
    a = musicgen.generate(states, 0.2, seed=2, source_audio=src_a)[0].samples
    b = musicgen.generate(states, 0.2, seed=2, source_audio=src_b)[0].samples
    again = musicgen.generate(states, 0.2, seed=2, source_audio=src_b)[0].samples
    from_path = musicgen.generate(states, 0.2, seed=2, source_audio=src_b.save(tmp_path / "b.wav"))[0].samples
    assert a.shape == b.shape == from_path.shape == (6400,)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(b, again)


def test_chroma_matches_pitch_class():
    assert chroma_features(tone(440.0, 1.0, 32000), 32000).argmax(-1).tolist() == [9] * 8  # A
    one_hot = chroma_features(tone(midi_to_hz(62), 0.3, 16000), 16000)  # D, at another rate
    assert one_hot.shape == (5, 12)  # padded to one 8192-sample FFT window
    assert set(one_hot.argmax(-1).tolist()) == {2}
    assert (one_hot.sum(-1) == 1).all()


def test_melody_edit_uses_the_source_chroma(melody):
    calls = spy_generate(melody)
    try:
        states, mask = melody.conditioning_for_captions(["a"])
        src_c = Audio(chord((60, 64, 67), 1.0, 32000), 32000)
        src_d = Audio(chord((62, 66, 69), 1.0, 32000), 32000)
        out_c = melody.generate(states, 0.3, mask=mask, seed=4, source_audio=src_c)[0].samples
        out_d = melody.generate(states, 0.3, mask=mask, seed=4, source_audio=src_d)[0].samples
        by_caption = melody.caption_generate(["a"], 0.3, seed=4, source_audio=src_d)[0].samples
    finally:
        del melody.model.generate
    prefix_c, prefix_d = calls[0]["encoder_hidden_states"], calls[1]["encoder_hidden_states"]
    assert prefix_c.shape == (2, 10 + 4, 24)  # [cond; null] x (chroma_length + text_length) x hidden
    assert not torch.allclose(prefix_c[0, :10], prefix_d[0, :10])  # the chroma part differs ...
    torch.testing.assert_close(prefix_c[:, 10:], prefix_d[:, 10:])  # ... the text part does not
    torch.testing.assert_close(prefix_c[1], prefix_d[1])  # null branch: one-hot bin 0 and zeros
    assert not np.array_equal(out_c, out_d)
    np.testing.assert_array_equal(out_d, by_caption)  # same tokens as the model's own chroma path


def test_audioldm2_end_to_end_with_embeddings(audioldm2):
    states, mask = audioldm2.conditioning_for_captions(CAPTIONS)
    prompt, generated = audioldm2.split(states)
    assert prompt.shape == (2, 4, 32) and generated.shape == (2, 8, 16)
    torch.testing.assert_close(audioldm2.join(prompt, generated), states)
    clips = audioldm2.generate(states, 0.05, mask=mask, guidance_scale=3.5, seed=0)
    assert [c.samples.shape for c in clips] == [(800,), (800,)] and clips[0].sample_rate == 16000
    again = audioldm2.generate(states, 0.05, mask=mask, guidance_scale=3.5, seed=0)
    np.testing.assert_array_equal(clips[0].samples, again[0].samples)
    other = audioldm2.generate(states[[1, 0]], 0.05, mask=mask[[1, 0]], guidance_scale=3.5, seed=0)
    assert np.abs(other[0].samples - clips[0].samples).max() > 0
    negatives = audioldm2.negatives()
    assert negatives is audioldm2.negatives()  # computed once, cached
    assert negatives[0].shape == (1, 4, 32) and negatives[2].shape == (1, 8, 16)
    with pytest.raises(ConfigError, match="source audio"):
        audioldm2.generate(states, 0.05, source_audio=Audio(tone(), 16000))


def test_audioldm2_without_tokenizers_warns_and_runs():
    decoder = tiny_audioldm2(with_tokenizers=False)
    with pytest.warns(ZeroNegativesWarning):
        (clip,) = decoder.generate(torch.randn(1, *decoder.conditioning_shape), 0.05, seed=0)
    assert clip.samples.shape == (800,)
    with pytest.raises(ConfigError, match="no tokenizers"):
        decoder.conditioning_for_captions(["a"])


def test_save_and_load_round_trip(musicgen, audioldm2, tmp_path):
    states, mask = musicgen.conditioning_for_captions(CAPTIONS)
    musicgen.save_pretrained(tmp_path / "musicgen")
    loaded = load_decoder("musicgen", tmp_path / "musicgen")
    assert isinstance(loaded, MusicGenDecoder) and loaded.settings == musicgen.settings
    a = musicgen.generate(states, 0.2, mask=mask, seed=5)[1].samples
    np.testing.assert_array_equal(a, loaded.generate(states, 0.2, mask=mask, seed=5)[1].samples)
    audioldm2.save_pretrained(tmp_path / "ldm")
    loaded_ldm = AudioLDM2Decoder.from_pretrained(tmp_path / "ldm")
    cond = audioldm2.conditioning_for_captions(["a"])[0]
    np.testing.assert_array_equal(audioldm2.generate(cond, 0.05, seed=1)[0].samples,
                                  loaded_ldm.generate(cond, 0.05, seed=1)[0].samples)
    with pytest.raises(CheckpointError, match="not found"):
        load_decoder("musicgen", tmp_path / "missing")
    with pytest.raises(ConfigError, match="unknown decoder"):
        load_decoder("jukebox", "tiny")


def test_bad_generation_arguments(musicgen):
    with pytest.raises(ConfigError, match=r"shape \(B, 4, 16\)"):
        musicgen.generate(torch.zeros(1, 3, 16), 1.0)
    with pytest.raises(ConfigError, match="positive"):
        musicgen.generate(torch.zeros(1, 4, 16), 0.0)
    with pytest.raises(ConfigError, match="NaN"):
        musicgen.generate(torch.full((1, 4, 16), float("nan")), 0.1)
    with pytest.raises(ConfigError, match="2 source audios for a batch of 1"):
        musicgen.generate(torch.zeros(1, 4, 16), 0.1, source_audio=[Audio(tone(), 16000)] * 2)


# --------------------------------------------------------------------------------------------
# Audio


def test_audio_save_round_trip(tmp_path):
    stereo = Audio(np.stack([tone(440.0, 0.5, 16000), 1.5 * tone(220.0, 0.5, 16000)]), 16000)
    assert stereo.duration == 0.5 and stereo.channels == 2
    path = stereo.save(tmp_path / "deep" / "out.flac")
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == 16000 and data.shape == (8000, 2)
    np.testing.assert_allclose(data[:, 0], stereo.samples[0], atol=1e-4)
    assert data[:, 1].max() <= 1.0  # clipped, not wrapped
    mono = Audio(tone(), 16000).save(tmp_path / "mono.wav")
    assert sf.info(mono).channels == 1


def test_audio_save_bad_paths(tmp_path):
    clip = Audio(tone(), 16000)
    with pytest.raises(MediaError, match="suffix"):
        clip.save(tmp_path / "out.mp4")
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(MediaError, match="directory"):
        clip.save(tmp_path / "dir.wav")
    clip.save(tmp_path / "once.wav")
    with pytest.raises(MediaError, match="overwrite=True"):
        clip.save(tmp_path / "once.wav")
    clip.save(tmp_path / "once.wav", overwrite=True)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MediaError, match="cannot write"):
        clip.save(blocker / "out.wav")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not list(tmp_path.glob(".*.tmp"))
