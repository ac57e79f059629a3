"""One audio path: a file gives the same MERT features in chat (Assistant) and in training (Featurizer)."""

from __future__ import annotations

import pytest
import torch

from m2ugen.assistant import Assistant
from m2ugen.audio import Audio
from m2ugen.config import M2UGenConfig
from m2ugen.decoders.tiny import tiny_decoder
from m2ugen.media import read_audio, resample
from m2ugen.model import M2UGen
from media_utils import melody, noise, write_audio
from training.features import Featurizer


@pytest.mark.parametrize("decoder", ["musicgen", "audioldm2"])
def test_mert_features_are_equal_in_chat_and_in_the_training_cache(tmp_path, decoder):
    model = M2UGen.from_config(M2UGenConfig.preset("tiny", decoder=decoder))
    bot = Assistant(model, tiny_decoder(decoder))
    # 44.1 kHz with energy up to 22 kHz: a 16 kHz (AudioLDM2) copy would lose what MERT hears above 8 kHz.
    path = write_audio(tmp_path / "song.wav", melody(sr=44100) + noise(seconds=1.25, sr=44100, amp=0.15), sr=44100)

    heard = []
    hook = model.encoders["audio"].register_forward_hook(lambda module, args, out: heard.append(out.detach().clone()))
    bot.chat("What instruments are playing?", audio=path, task="answer", max_new_tokens=2, temperature=0.0)
    hook.remove()
    (chat,) = heard

    trained = Featurizer(model, cache_dir=tmp_path / "cache").features("audio", str(path))
    from_disk = Featurizer(model, cache_dir=tmp_path / "cache").features("audio", str(path))  # the on-disk cache
    torch.testing.assert_close(chat[0], trained, atol=1e-6, rtol=0)
    torch.testing.assert_close(from_disk, trained, atol=1e-6, rtol=0)

    # Control: MERT fed a copy that went through the decoder's rate first (the old path) hears other music
    # when that rate is below the file's bandwidth (AudioLDM2 at 16 kHz), so the test can tell the paths apart.
    audio = read_audio(path)
    rate = bot.decoder.sample_rate
    via_decoder = resample(Audio(resample(audio, rate), rate), model.config.audio_sample_rate)
    detour = model.encode_audio([via_decoder])[0]
    if rate < 24000:
        assert float((detour - trained).abs().max()) > 1e-2  # measured: 0.074 (vs 1.8e-4 through 32 kHz)
