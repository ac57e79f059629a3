"""Helpers for the dataset-builder tests: synthetic music and speech, fake captioners, tiny local models.

Everything is built in code: music is synthesised chords on a beat grid, speech comes from
espeak-ng (a Debian package), and the models are tiny random transformers saved to a folder.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22_050
# Scale degrees (semitones above the tonic) of I-IV-V-I in major and i-iv-v-i in minor.
_PROGRESSIONS = {
    False: [(0, 4, 7), (5, 9, 12), (7, 11, 14), (0, 4, 7)],
    True: [(0, 3, 7), (5, 8, 12), (7, 10, 14), (0, 3, 7)],
}


def music(bpm: float = 120.0, tonic: int = 60, minor: bool = False, seconds: float = 8.0, sr: int = SR,
          harmonics: Sequence[float] = (1.0, 0.4, 0.2), amp: float = 0.3) -> np.ndarray:
    """float32 (S,): plucked chords of I-IV-V-I (one chord per bar) struck on every beat, plus a low thump per beat."""
    beat = 60.0 / bpm
    n = int(seconds * sr)
    t = np.arange(n) / sr
    out = np.zeros(n)
    phase = (t % beat) / beat
    envelope = np.exp(-6.0 * phase * beat)
    bar = (t // (4 * beat)).astype(int) % 4
    for index, degrees in enumerate(_PROGRESSIONS[minor]):
        in_bar = bar == index
        for degree in degrees:
            freq = 440.0 * 2.0 ** ((tonic + degree - 69) / 12)
            for h, weight in enumerate(harmonics, start=1):
                out[in_bar] += weight * np.sin(2 * np.pi * freq * h * t[in_bar])
    out *= envelope
    out += 1.5 * np.sin(2 * np.pi * 60 * t) * np.exp(-25.0 * phase * beat)
    return (amp * out / np.abs(out).max()).astype(np.float32)


def sine(freq: float, seconds: float, amp: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, sr: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, sr)
    return path


def has_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speech(path: Path, text: str = "Hello there. This is a spoken sentence, read by a computer voice, for the music filter test.") -> Path:
    """Write espeak-ng speech to ``path`` (WAV, 22.05 kHz mono)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return path


def write_video(path: Path, seconds: float = 2.0, fps: int = 8, size: int = 32, bpm: float = 120.0,
                with_audio: bool = True) -> Path:
    """An H.264 mp4 of moving colour bars, with a synthetic music track (AAC) unless ``with_audio`` is False."""
    import av

    frames = int(seconds * fps)
    audio_sr = 22_050
    sound = music(bpm=bpm, seconds=seconds, sr=audio_sr)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=audio_sr) if with_audio else None
        if audio is not None:
            audio.layout = "mono"
        for i in range(frames):
            image = np.zeros((size, size, 3), dtype=np.uint8)
            image[:, (i * 3) % size] = (255, 128, 0)
            image[..., 2] = (i * 20) % 256
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio is not None:
            chunk = 1024
            for start in range(0, sound.size, chunk):
                block = sound[start:start + chunk]
                frame = av.AudioFrame.from_ndarray(block[None, :], format="flt", layout="mono")
                frame.sample_rate = audio_sr
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)
    return path


def write_image(path: Path, seed: int = 0, size: int = 40) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)).save(path)
    return path


class CountingCaptioner:
    """Deterministic fake captioner: caption = ``captions[stem]`` or ``"<prefix> <stem>"``.

    Records every item it captions in ``calls``; raises ``MediaError`` for stems in ``fail_on``, as a
    real captioner does for an unreadable file.
    """

    def __init__(self, name: str = "fake", captions: dict[str, str] | None = None, prefix: str = "music for",
                 fail_on: Sequence[str] = ()) -> None:
        self.name = name
        self.captions = captions or {}
        self.prefix = prefix
        self.fail_on = set(fail_on)
        self.calls: list[str] = []

    def caption(self, items: Sequence[Path]) -> list[str]:
        from m2ugen.errors import MediaError

        out = []
        for path in items:
            path = Path(path)
            if path.stem in self.fail_on:
                raise MediaError(f"{path}: cannot caption (test failure)")
            out.append(self.captions.get(path.stem, f"{self.prefix} {path.stem}"))
        self.calls.extend(Path(p).stem for p in items)
        return out


# ----------------------------------------------------------------------------------------------
# tiny local models


def _word_tokenizer(words: Sequence[str], specials: Sequence[str], **special_tokens: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([*specials, *dict.fromkeys(words)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", **special_tokens)


WORDS = ("the a an image video shows music piano guitar drums violin calm fast slow happy sad bright dark "
         "red blue green dog cat beach sky song melody with and of in is that for here generate change make").split()


def tiny_blip(directory: Path) -> Path:
    """A random 1-layer BLIP captioner with its processor, saved to ``directory``."""
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    torch.manual_seed(0)
    tokenizer = _word_tokenizer(WORDS, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], pad_token="[PAD]",
                                cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]")
    config = BlipConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64, bos_token_id=2, sep_token_id=3,
                         pad_token_id=0, eos_token_id=3),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=32,
    )
    BlipForConditionalGeneration(config).save_pretrained(directory)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer).save_pretrained(directory)
    return directory


def tiny_video_captioner(directory: Path) -> Path:
    """A random VideoMAE + GPT-2 VisionEncoderDecoder (4 frames of 32 px) with processor and tokenizer."""
    import torch
    from transformers import GPT2Config, VideoMAEConfig, VideoMAEImageProcessor, VisionEncoderDecoderConfig
    from transformers import VisionEncoderDecoderModel

    torch.manual_seed(0)
    tokenizer = _word_tokenizer(WORDS, ["<|endoftext|>", "[UNK]"], bos_token="<|endoftext|>",
                                eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    encoder = VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32,
                             num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    decoder = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=128,
                         add_cross_attention=True, is_decoder=True, bos_token_id=0, eos_token_id=0)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = config.pad_token_id = config.eos_token_id = 0
    model = VisionEncoderDecoderModel(config=config)
    model.generation_config.decoder_start_token_id = model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 0
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} [SEP] {% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)


def tiny_chat_lm(directory: Path) -> Path:
    """A random 1-layer Llama with a word-level tokenizer that has a chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = _word_tokenizer([*WORDS, "system", "user", "assistant", ":", "Input", "Target", "Music", "Image", "Video"],
                                ["[PAD]", "[UNK]", "<s>", "</s>", "[SEP]"], pad_token="[PAD]", bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=0, bos_token_id=2, eos_token_id=3)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
