"""The MUCaps music filter: Silero VAD speech ratio, LUFS, silence and clipping, on synthetic clips."""

from __future__ import annotations

import numpy as np
import pytest
from data_utils import has_espeak, music, sine, speech

from datasets_build.musicfilter import FilterConfig, MusicFilter
from m2ugen.errors import ConfigError
from m2ugen.media import load_audio

SR = 24_000


@pytest.fixture(scope="module")
def music_filter() -> MusicFilter:
    return MusicFilter()


def test_music_kept_with_its_measurements(music_filter):
    decision = music_filter.measure(music(110, 62, seconds=4.0, sr=SR), SR)
    assert decision.keep, decision.reasons
    assert decision.speech_ratio <= 0.1 and decision.silence_ratio < 0.2 and decision.clip_ratio == 0.0
    assert -40 < decision.lufs < -10 and decision.duration_s == 4.0


def test_lufs_matches_the_bs1770_reference(music_filter):
    # A 1 kHz sine at full scale reads -3.01 LUFS under BS.1770; at amplitude 0.1 it is 20 dB lower.
    decision = music_filter.measure(sine(1000, 4.0, 0.1, sr=SR), SR)
    assert decision.lufs == pytest.approx(-23.01, abs=0.1)
    assert decision.peak_dbfs == pytest.approx(-20.0, abs=0.01)


@pytest.mark.skipif(not has_espeak(), reason="espeak-ng (Debian package) not installed")
def test_speech_is_rejected_and_music_is_not(music_filter, tmp_path):
    talk = load_audio(speech(tmp_path / "talk.wav"), SR)
    decision = music_filter.measure(talk, SR)
    assert not decision.keep and decision.speech_ratio > 0.5
    assert any(reason.startswith("speech ratio") for reason in decision.reasons)
    assert decision.lufs is not None and decision.lufs > -40  # loud enough: rejected for speech only
    # Speech mixed under music at -12 dB is still mostly speech for the VAD.
    bed = music(100, 60, seconds=talk.size / SR, sr=SR)[: talk.size]
    assert music_filter.speech_ratio(talk + 0.25 * bed, SR) > 0.5


def test_silence_too_quiet_short_and_clipped_are_rejected(music_filter):
    silence = music_filter.measure(np.zeros(3 * SR, dtype=np.float32), SR)
    assert not silence.keep and silence.lufs is None and silence.silence_ratio == 1.0 and silence.peak_dbfs is None
    quiet = music_filter.measure(0.01 * music(100, 60, seconds=3.0, sr=SR) / 0.3, SR)
    assert not quiet.keep and quiet.lufs < -40 and any(r.startswith("loudness") for r in quiet.reasons)
    short = music_filter.measure(music(100, 60, seconds=0.5, sr=SR), SR)
    assert not short.keep and any(r.startswith("duration") for r in short.reasons)
    clipped = music_filter.measure(np.clip(5.0 * music(100, 60, seconds=3.0, sr=SR), -1, 1), SR)
    assert not clipped.keep and clipped.clip_ratio > 0.001 and clipped.peak_dbfs == 0.0 and any(r.startswith("clipped") for r in clipped.reasons)


def test_thresholds_come_from_the_config():
    loose = MusicFilter(FilterConfig(min_lufs=-90.0, silence_dbfs=-90.0, min_duration_s=0.1))
    assert loose.measure(0.01 * music(100, 60, seconds=1.0, sr=SR) / 0.3, SR).keep
    with pytest.raises(ConfigError, match="min_lufs -5.0 must be below max_lufs -10.0"):
        FilterConfig(min_lufs=-5.0, max_lufs=-10.0)
    with pytest.raises(ConfigError, match="max_speech_ratio must be in"):
        FilterConfig(max_speech_ratio=2.0)
