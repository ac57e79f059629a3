"""Synthetic media for tests: tones, chords, noise, WAV/FLAC files, images and mp4 clips.

Everything is deterministic (fixed seeds) and small. mp4s are written with PyAV's bundled libx264,
so no system ffmpeg is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

A4 = 440.0


def midi_to_hz(note: float) -> float:
    return A4 * 2.0 ** ((note - 69) / 12)


def tone(freq: float = A4, seconds: float = 1.0, sr: int = 16000, amp: float = 0.5) -> np.ndarray:
    """float32 (S,): a sine with a short fade in and out (no clicks)."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    fade = min(len(x) // 2, int(0.01 * sr))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    return x.astype(np.float32)


def chord(notes: tuple[int, ...] = (60, 64, 67), seconds: float = 1.0, sr: int = 16000, amp: float = 0.6) -> np.ndarray:
    """float32 (S,): MIDI notes summed, each with two harmonics, peak ``amp``."""
    x = sum(tone(midi_to_hz(n), seconds, sr) + 0.3 * tone(2 * midi_to_hz(n), seconds, sr) for n in notes)
    return (amp * x / np.abs(x).max()).astype(np.float32)


def melody(notes: tuple[int, ...] = (60, 62, 64, 65, 67), note_seconds: float = 0.25, sr: int = 16000) -> np.ndarray:
    """float32 (S,): the notes one after another."""
    return np.concatenate([tone(midi_to_hz(n), note_seconds, sr) for n in notes])


def noise(seconds: float = 1.0, sr: int = 16000, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    """float32 (S,): white noise."""
    return (amp * np.random.default_rng(seed).standard_normal(int(round(seconds * sr)))).astype(np.float32)


def write_audio(path: str | Path, samples: np.ndarray, sr: int = 16000, subtype: str | None = None) -> Path:
    """Write (S,) or (C, S) samples; the format follows the suffix (.wav, .flac, .ogg, .mp3)."""
    import soundfile as sf

    path = Path(path)
    data = samples if samples.ndim == 1 else samples.T
    sf.write(str(path), data, sr, subtype=subtype)
    return path


def image_array(height: int = 64, width: int = 48, seed: int = 0) -> np.ndarray:
    """uint8 (H, W, 3): a colour gradient with a little noise."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1), np.full_like(x, 128.0)], -1)
    rgb += np.random.default_rng(seed).normal(0, 4, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def write_image(path: str | Path, height: int = 64, width: int = 48, mode: str = "RGB") -> Path:
    """Save :func:`image_array` converted to a PIL ``mode`` (RGB, RGBA, L, P, CMYK, ...)."""
    from PIL import Image

    path = Path(path)
    Image.fromarray(image_array(height, width)).convert(mode).save(path)
    return path


def video_frames(num_frames: int, height: int = 32, width: int = 32) -> np.ndarray:
    """uint8 (F, H, W, 3): frame i is a flat grey of level ``(7 * i) % 256``, plus a moving bar.

    The grey level identifies the frame after lossy encoding (read it back with
    :func:`frame_ids`).
    """
    frames = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
    for i in range(num_frames):
        frames[i] = (7 * i) % 256
        frames[i, :, (i * 3) % width] = 255
    return frames


def frame_ids(frames: np.ndarray) -> np.ndarray:
    """Recover the index of each frame written by :func:`video_frames` (valid for < 37 frames)."""
    grey = np.median(frames.reshape(len(frames), -1), axis=1)
    return np.rint(grey / 7).astype(int)


def write_video(path: str | Path, num_frames: int = 50, fps: int = 10, height: int = 32, width: int = 32,
                frames: np.ndarray | None = None) -> Path:
    """Write an H.264 mp4 with PyAV. ``num_frames=0`` gives a file with no video stream."""
    import av

    path = Path(path)
    frames = video_frames(num_frames, height, width) if frames is None else frames
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "10"}
        container.start_encoding()
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
