"""Frozen encoders: eval mode, MERT windowing, bounded memory on long audio."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from m2ugen.config import M2UGenConfig
from m2ugen.encoders import MusicEncoder
from m2ugen.errors import MediaError

SR = 24000


@pytest.fixture(scope="module")
def mert() -> MusicEncoder:
    cfg = M2UGenConfig.preset("tiny")
    return MusicEncoder.from_config(cfg.mert_config, window_seconds=cfg.mert_window_seconds)


def tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_frozen_and_always_eval(mert):
    mert.train()
    assert not mert.training and not mert.model.training
    assert not any(p.requires_grad for p in mert.parameters())


def test_short_audio_equals_single_pass(mert):
    wav = tone(440, 2.0)
    with torch.no_grad():
        out = mert.model(torch.from_numpy(wav)[None], output_hidden_states=True)
    expected = torch.stack(out.hidden_states, 1).mean(2)[0]
    got = mert.encode_one(wav)
    assert got.shape == (mert.num_layers, mert.hidden_size)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_long_audio_uses_every_window(mert):
    # 3 windows: changing only the last window must change the features (the original kept 60 s).
    a = np.concatenate([tone(220, 10.0), tone(220, 5.0)])
    b = np.concatenate([tone(220, 10.0), tone(880, 5.0)])
    assert (mert.encode_one(a) - mert.encode_one(b)).abs().max() > 1e-4
    # Length weighting: two equal windows of the same tone give that window's features.
    one = mert.encode_one(tone(220, 5.0))
    torch.testing.assert_close(mert.encode_one(tone(220, 10.0)), one, atol=1e-4, rtol=1e-4)


def test_too_short_audio_is_a_media_error(mert):
    with pytest.raises(MediaError, match="too short"):
        mert.encode_one(np.zeros(10, np.float32))


PEAK_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    import numpy as np, psutil, torch
    torch.set_num_threads(1)
    from m2ugen.config import M2UGenConfig
    from m2ugen.encoders import MusicEncoder
    cfg = M2UGenConfig.preset("tiny")
    enc = MusicEncoder.from_config(cfg.mert_config, window_seconds=cfg.mert_window_seconds)
    n = int(float(sys.argv[1]) * 24000)
    wav = np.empty(n, np.float32)  # filled in place: no float64 temporaries before the measurement
    rng = np.random.default_rng(0)
    for i in range(0, n, 1 << 20):
        rng.standard_normal(out=wav[i:i + (1 << 20)], dtype=np.float32)
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak, done = [base], threading.Event()
    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)
    t = threading.Thread(target=sample); t.start()
    enc.encode_one(wav)
    done.set(); t.join()
    print(json.dumps({"extra_kib": (peak[0] - base) // 1024}))
""")


def peak_extra_kib(seconds: float) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(seconds)], capture_output=True, text=True,
                         check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_kib"]


@pytest.mark.slow
def test_memory_does_not_grow_with_duration():
    """Extra peak memory while encoding 10 minutes is within 1.5x of that for 30 s."""
    short = peak_extra_kib(30)
    long = peak_extra_kib(600)
    assert long <= 1.5 * short, (short, long)
