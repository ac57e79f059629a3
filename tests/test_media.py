"""m2ugen.media: loaders for audio, images and video, and the bad-input table."""

from __future__ import annotations

import struct
import time
import warnings

import numpy as np
import pytest
from PIL import Image

from m2ugen.audio import Audio
from m2ugen.errors import MediaError
from m2ugen.media import SilentAudioWarning, frame_indices, load_audio, load_image, load_video
from media_utils import (chord, frame_ids, image_array, noise, tone, video_frames, write_audio, write_image,
                         write_video)

# --------------------------------------------------------------------------------------------
# the bad-input table: each case must raise MediaError with a one-line message naming the file


def _missing(tmp):
    return tmp / "nope.wav", "not found"


def _directory(tmp):
    d = tmp / "folder.wav"
    d.mkdir()
    return d, "directory"


def _zero_bytes(tmp):
    p = tmp / "empty.wav"
    p.write_bytes(b"")
    return p, "empty"


def _truncated_wav(tmp):
    full = write_audio(tmp / "full.wav", tone(seconds=1.0))
    p = tmp / "truncated.wav"
    p.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return p, "truncated"


def _header_only_wav(tmp):
    full = write_audio(tmp / "full.wav", tone(seconds=1.0))
    p = tmp / "header.wav"
    p.write_bytes(full.read_bytes()[:30])
    return p, "corrupt"


def _text_as_mp3(tmp):
    p = tmp / "song.mp3"
    p.write_text("this is not music\n" * 20)
    return p, "not a supported audio file"


def _nan_samples(tmp):
    x = tone(seconds=0.5)
    x[100] = np.nan
    return write_audio(tmp / "nan.wav", x, subtype="FLOAT"), "non-finite"


def _one_sample(tmp):
    return write_audio(tmp / "one.wav", np.array([0.5], np.float32)), "too short"


def _over_limit_declared(tmp):
    """A tiny file whose WAV header declares two hours: must fail from the header, before decoding."""
    full = write_audio(tmp / "full.wav", tone(seconds=0.2), sr=16000)
    head = bytearray(full.read_bytes()[:44])
    size = 2 * 3600 * 16000 * 2
    head[4:8], head[40:44] = struct.pack("<I", size + 36), struct.pack("<I", size)
    p = tmp / "two_hours.wav"
    p.write_bytes(bytes(head) + full.read_bytes()[44:])
    return p, "longer than the limit"


def _zero_length_wav(tmp):
    return write_audio(tmp / "zero.wav", np.zeros(0, np.float32)), "zero length"


def _tiny_image(tmp):
    return write_image(tmp / "pixel.png", 1, 1), "too small"


def _not_an_image(tmp):
    p = tmp / "photo.jpg"
    p.write_text("no pixels here")
    return p, "not a readable image"


def _zero_frame_video(tmp):
    return write_video(tmp / "zero.mp4", num_frames=0), "0 frames"


def _text_as_mp4(tmp):
    p = tmp / "clip.mp4"
    p.write_text("not a video")
    return p, "not a supported video"


AUDIO_CASES = [_missing, _directory, _zero_bytes, _truncated_wav, _header_only_wav, _text_as_mp3, _nan_samples,
               _one_sample, _over_limit_declared, _zero_length_wav]
IMAGE_CASES = [_missing, _directory, _zero_bytes, _tiny_image, _not_an_image]
VIDEO_CASES = [_missing, _directory, _zero_bytes, _zero_frame_video, _text_as_mp4]


def _check(err: MediaError, path, reason: str) -> None:
    message = str(err)
    assert "\n" not in message
    assert str(path) in message
    assert reason in message


@pytest.mark.parametrize("case", AUDIO_CASES, ids=lambda f: f.__name__.strip("_"))
def test_bad_audio_raises_media_error(tmp_path, case):
    path, reason = case(tmp_path)
    with pytest.raises(MediaError) as info:
        load_audio(path, 16000)
    _check(info.value, path, reason)


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda f: f.__name__.strip("_"))
def test_bad_image_raises_media_error(tmp_path, case):
    path, reason = case(tmp_path)
    with pytest.raises(MediaError) as info:
        load_image(path)
    _check(info.value, path, reason)


@pytest.mark.parametrize("case", VIDEO_CASES, ids=lambda f: f.__name__.strip("_"))
def test_bad_video_raises_media_error(tmp_path, case):
    path, reason = case(tmp_path)
    with pytest.raises(MediaError) as info:
        load_video(path)
    _check(info.value, path, reason)


def test_over_limit_fails_fast_from_header(tmp_path):
    path, _ = _over_limit_declared(tmp_path)
    start = time.perf_counter()
    with pytest.raises(MediaError, match="header declares 7200.0 s"):
        load_audio(path, 16000)
    assert time.perf_counter() - start < 0.5


def test_configurable_limits(tmp_path):
    path = write_audio(tmp_path / "two_s.wav", tone(seconds=2.0))
    with pytest.raises(MediaError, match="longer than the limit"):
        load_audio(path, 16000, max_seconds=1.0)
    assert load_audio(path, 16000, max_seconds=None).shape == (32000,)
    with pytest.raises(MediaError, match="too short"):
        load_audio(path, 16000, min_seconds=3.0)
    long_clip = write_video(tmp_path / "long.mp4", num_frames=40, fps=10)
    with pytest.raises(MediaError, match="longer than the limit"):
        load_video(long_clip, max_seconds=1.0)


def test_cmyk_image_loads_as_rgb(tmp_path):
    path = write_image(tmp_path / "cmyk.jpg", 40, 30, mode="CMYK")
    assert Image.open(path).mode == "CMYK"
    rgb = load_image(path)
    assert rgb.shape == (40, 30, 3) and rgb.dtype == np.uint8
    reference = image_array(40, 30).astype(int)
    assert np.abs(rgb.astype(int) - reference).mean() < 12  # JPEG + CMYK round trip keeps the picture


def test_array_without_sample_rate_is_an_error():
    with pytest.raises(MediaError, match="sample_rate"):
        load_audio(np.zeros(1000, np.float32), 16000)


# --------------------------------------------------------------------------------------------
# audio that loads


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3"])
def test_audio_formats_resample_to_mono(tmp_path, suffix):
    stereo = np.stack([tone(440.0, 1.0, 44100), tone(440.0, 1.0, 44100)])
    path = write_audio(tmp_path / f"a{suffix}", stereo, sr=44100)
    x = load_audio(path, 16000)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 16000) <= 1200  # mp3/ogg encoders add a little padding
    spectrum = np.abs(np.fft.rfft(x[2000:14000]))
    peak_hz = np.argmax(spectrum) * 16000 / 12000
    assert abs(peak_hz - 440.0) < 3


def test_pyav_fallback_reads_audio_track_of_mp4(tmp_path):
    import av

    path = tmp_path / "audio.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = tone(440.0, 1.0, 16000)
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    x = load_audio(path, 24000)
    assert abs(len(x) - 24000) < 3000
    assert np.abs(x).max() > 0.1


def test_array_and_audio_inputs():
    x = chord(seconds=0.5, sr=32000)
    from_array = load_audio(np.stack([x, x]), 16000, sample_rate=32000)
    from_audio = load_audio(Audio(x, 32000), 16000)
    assert from_array.shape == (8000,)
    np.testing.assert_allclose(from_array, from_audio, atol=1e-6)
    same_rate = load_audio(x, 32000, sample_rate=32000)
    np.testing.assert_array_equal(same_rate, x)


def test_silent_audio_warns(tmp_path):
    path = write_audio(tmp_path / "silence.wav", np.zeros(16000, np.float32))
    with pytest.warns(SilentAudioWarning, match="silent"):
        load_audio(path, 16000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SilentAudioWarning)
        load_audio(write_audio(tmp_path / "noise.wav", noise()), 16000)


# --------------------------------------------------------------------------------------------
# images that load


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "LA", "I;16"])
def test_image_modes_become_rgb(tmp_path, mode):
    path = write_image(tmp_path / f"img_{mode.replace(';', '')}.png", 20, 24, mode=mode)
    rgb = load_image(path)
    assert rgb.shape == (20, 24, 3) and rgb.dtype == np.uint8


def test_transparent_pixels_become_white():
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:8, :, 3] = 255  # top half opaque red, bottom half fully transparent
    rgb = load_image(Image.fromarray(rgba, "RGBA"))
    assert (rgb[:8] == [200, 0, 0]).all()
    assert (rgb[8:] == 255).all()


def test_image_arrays():
    assert load_image(np.full((10, 12), 0.5)).shape == (10, 12, 3)
    assert load_image(image_array(9, 9)).tolist() == image_array(9, 9).tolist()
    with pytest.raises(MediaError, match="NaN"):
        load_image(np.full((10, 10, 3), np.nan))


# --------------------------------------------------------------------------------------------
# video


def test_frame_indices_are_even_and_repeat_short_clips():
    assert frame_indices(64, 32).tolist() == list(range(1, 64, 2))
    short = frame_indices(8, 32)
    assert np.bincount(short).tolist() == [4] * 8
    assert (np.diff(short) >= 0).all()


def test_video_samples_evenly_over_whole_clip(tmp_path):
    path = write_video(tmp_path / "clip.mp4", num_frames=36, fps=12, height=24, width=40)
    frames = load_video(path, num_frames=12)
    assert frames.shape == (12, 24, 40, 3) and frames.dtype == np.uint8
    assert frame_ids(frames).tolist() == frame_indices(36, 12).tolist() == list(range(1, 36, 3))
    np.testing.assert_array_equal(frames, load_video(path, num_frames=12))  # deterministic


def test_short_video_repeats_frames(tmp_path):
    path = write_video(tmp_path / "short.mp4", num_frames=5)
    frames = load_video(path)
    assert frames.shape[0] == 32
    assert frame_ids(frames).tolist() == frame_indices(5, 32).tolist()
    assert sorted(np.bincount(frame_ids(frames)).tolist()) == [6, 6, 6, 7, 7]


def test_a_still_one_frame_video_repeats_its_frame(tmp_path):
    path = write_video(tmp_path / "still.mp4", num_frames=1)
    frames = load_video(path)
    assert frames.shape[0] == 32 and frame_ids(frames).tolist() == [0] * 32


def test_video_frames_helper_is_distinct():
    frames = video_frames(10)
    assert frame_ids(frames).tolist() == list(range(10))


def test_large_frames_are_scaled_down_while_decoding(tmp_path):
    path = write_video(tmp_path / "wide.mp4", num_frames=6, height=96, width=160)
    frames = load_video(path, num_frames=4, max_short_side=48)
    assert frames.shape == (4, 48, 80, 3)  # shorter side 48, aspect kept
    assert load_video(path, num_frames=4, max_short_side=None).shape == (4, 96, 160, 3)
    assert load_video(path, num_frames=4).shape == (4, 96, 160, 3)  # already small
    with pytest.raises(MediaError, match="max_short_side"):
        load_video(path, max_short_side=1)
