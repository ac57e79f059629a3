"""Turn user media into checked arrays, or raise :class:`~m2ugen.errors.MediaError`.

* :func:`read_audio`: WAV/FLAC/OGG/MP3 (soundfile), anything else FFmpeg reads (PyAV), an array or
  an :class:`~m2ugen.audio.Audio` -> a checked mono :class:`~m2ugen.audio.Audio` at its own rate;
  :func:`resample` (soxr) brings it to a consumer's rate, once; :func:`load_audio` does both.
* :func:`load_image`: a path, a PIL image or an array, any PIL mode -> uint8 RGB (H, W, 3).
* :func:`load_video`: a path -> uint8 (F, H, W, 3), F frames (32 for ViViT) spaced evenly over the
  whole clip, decoded with PyAV.

Every error names the file and the reason. This module does no model preprocessing (resizing,
normalisation): that belongs to the encoders.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from m2ugen.audio import Audio
from m2ugen.errors import MediaError

# Shorter audio than this carries no usable music (MERT's receptive field is ~25 ms; a chroma
# frame is 128 ms). One-sample "audio" is a corrupt or mis-converted file, not music.
MIN_AUDIO_SECONDS = 0.1
# Default upper bound, checked on the duration the header declares, before any decoding.
MAX_AUDIO_SECONDS = 3600.0
# Peak amplitude below which audio counts as silent (-120 dBFS).
SILENCE_PEAK = 1e-6
# Smallest accepted image side in pixels: below this an image (icon, tracking pixel) holds no
# content that survives the upscaling to ViT's 224 px.
MIN_IMAGE_SIDE = 8
# A still (a one-frame video) is accepted: its frame is repeated to fill the clip, i.e. a video without motion.
MIN_VIDEO_FRAMES = 1
# Frames are scaled down to this shorter side while decoding (ViViT/ViT read 224 px).
MAX_VIDEO_SHORT_SIDE = 448

PathLike = str | os.PathLike


class SilentAudioWarning(UserWarning):
    """The audio is all (near) silence: the model will hear nothing."""


# --------------------------------------------------------------------------------------------
# shared file checks


def _check_file(path: Path, kind: str) -> None:
    """Raise MediaError unless ``path`` is an existing, readable, non-empty regular file."""
    if not path.exists():
        raise MediaError(f"{path}: {kind} file not found")
    if path.is_dir():
        raise MediaError(f"{path}: is a directory, not {'an' if kind[0] in 'aeiou' else 'a'} {kind} file")
    if not path.is_file():
        raise MediaError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{path}: not readable (permission denied)")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")


# --------------------------------------------------------------------------------------------
# audio


def read_audio(
    source: PathLike | np.ndarray | Audio,
    *,
    sample_rate: int | None = None,
    max_seconds: float | None = MAX_AUDIO_SECONDS,
    min_seconds: float = MIN_AUDIO_SECONDS,
) -> Audio:
    """Read and check audio, keeping its own sample rate: the one place user audio comes in.

    Each consumer then resamples once from it with :func:`resample` (MERT at 24 kHz, the decoder at
    its rate, transcription at 22.05 kHz), so no consumer hears a copy that lost bandwidth.

    Args:
        source: a file path; an array (S,) or (C, S) (then ``sample_rate`` is required); or an
            :class:`Audio`.
        sample_rate: rate of an array ``source`` in Hz.
        max_seconds: longest accepted input; checked on the header's declared duration before
            decoding, so a huge file fails at once. None: no limit.
        min_seconds: shortest accepted input.

    Returns:
        An :class:`Audio` with float32 mono (S,) samples at the source's rate.

    Raises:
        MediaError: missing, a directory, empty, unreadable or corrupt (including a truncated WAV),
            not audio, zero length, shorter than ``min_seconds``, longer than ``max_seconds``, or
            holding NaN/inf samples.

    Warns:
        SilentAudioWarning: every sample is (near) zero.
    """
    if isinstance(source, Audio):
        name, samples, sr = "<audio>", source.samples, source.sample_rate
    elif isinstance(source, np.ndarray) or hasattr(source, "__array__") and not isinstance(source, (str, os.PathLike)):
        if sample_rate is None:
            raise MediaError("<array>: pass sample_rate= with an array input")
        name, samples, sr = "<array>", _channels_first(np.asarray(source, dtype=np.float32)), int(sample_rate)
        if sr <= 0:
            raise MediaError(f"<array>: sample_rate must be positive, got {sample_rate}")
    else:
        path = Path(source)
        name = str(path)
        samples, sr = _read_audio_file(path, max_seconds)
    return Audio(_checked_mono(name, samples, sr, max_seconds=max_seconds, min_seconds=min_seconds), sr)


def resample(audio: Audio, target_sr: int) -> np.ndarray:
    """float32 mono (S,) samples of ``audio`` at ``target_sr`` (soxr; no copy when the rate matches)."""
    import soxr

    mono = np.ascontiguousarray(audio.mono(), dtype=np.float32)
    if audio.sample_rate == target_sr:
        return mono
    return soxr.resample(mono, audio.sample_rate, target_sr).astype(np.float32, copy=False)


def load_audio(
    source: PathLike | np.ndarray | Audio,
    target_sr: int,
    *,
    sample_rate: int | None = None,
    max_seconds: float | None = MAX_AUDIO_SECONDS,
    min_seconds: float = MIN_AUDIO_SECONDS,
) -> np.ndarray:
    """:func:`read_audio` then :func:`resample`: float32 mono (S,) at ``target_sr`` (24000 for MERT,
    32000 for MusicGen). Arguments, errors and warnings as for :func:`read_audio`."""
    return resample(read_audio(source, sample_rate=sample_rate, max_seconds=max_seconds, min_seconds=min_seconds),
                    target_sr)


def _channels_first(x: np.ndarray) -> np.ndarray:
    """(S,) or (C, S) as is; an (S, C) array with few channels (soundfile's layout) is transposed."""
    if x.ndim == 2 and x.shape[1] <= 8 < x.shape[0]:
        return x.T
    if x.ndim not in (1, 2):
        raise MediaError(f"<array>: audio must be (S,) or (C, S), got shape {x.shape}")
    return x


def _checked_mono(name: str, x: np.ndarray, sr: int, *, max_seconds: float | None,
                  min_seconds: float) -> np.ndarray:
    """The channel average of ``x`` as float32, after the length, finiteness and silence checks."""
    mono = x if x.ndim == 1 else x.mean(axis=0)
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if mono.size == 0:
        raise MediaError(f"{name}: contains no audio (zero length)")
    if not np.isfinite(mono).all():
        raise MediaError(f"{name}: contains non-finite samples (NaN or inf)")
    seconds = mono.size / sr
    if seconds < min_seconds:
        raise MediaError(f"{name}: too short ({mono.size} samples = {seconds:.4f} s; minimum {min_seconds} s)")
    if max_seconds is not None and seconds > max_seconds:
        raise MediaError(f"{name}: longer than the limit ({seconds:.1f} s > {max_seconds} s)")
    if float(np.abs(mono).max()) < SILENCE_PEAK:
        warnings.warn(f"{name}: audio is silent (peak below {SILENCE_PEAK})", SilentAudioWarning, stacklevel=3)
    return mono


@contextlib.contextmanager
def _native_stderr_silenced():
    """Mute what C libraries print on file descriptor 2 (mpg123 inside libsndfile reports bad MP3
    frames there) so that a bad file gives our one-line error and nothing else."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _read_audio_file(path: Path, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """Decode a file to float32 (C, S) and its rate; soundfile first, PyAV for everything else."""
    import soundfile as sf

    _check_file(path, "audio")
    _check_wav_header(path, max_seconds)
    try:
        with _native_stderr_silenced():
            info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return _read_audio_pyav(path, max_seconds)
    if info.frames == 0:
        raise MediaError(f"{path}: contains no audio (zero length)")
    if max_seconds is not None and info.duration > max_seconds:
        raise MediaError(f"{path}: longer than the limit ({info.duration:.1f} s > {max_seconds} s)")
    try:
        with _native_stderr_silenced():
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise MediaError(f"{path}: unreadable or corrupt audio ({err})") from err
    return data.T, int(sr)


def _check_wav_header(path: Path, max_seconds: float | None) -> None:
    """For RIFF/WAVE files, compare the declared data size with the file and the duration limit.

    libsndfile silently clamps a truncated WAV to what is present, so the header is read here.
    """
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        byte_rate = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise MediaError(f"{path}: truncated or corrupt WAV (no data chunk)")
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(size + (size & 1))
                if len(fmt) < 16:
                    raise MediaError(f"{path}: truncated or corrupt WAV (short fmt chunk)")
                byte_rate = struct.unpack("<I", fmt[8:12])[0]
            elif cid == b"data":
                break
            else:
                f.seek(size + (size & 1), os.SEEK_CUR)
        present = path.stat().st_size - f.tell()
    if size in (0, 0xFFFFFFFF) or not byte_rate:
        return  # streamed WAV without a declared length: soundfile decides
    declared = size / byte_rate
    if max_seconds is not None and declared > max_seconds:
        raise MediaError(f"{path}: longer than the limit (header declares {declared:.1f} s > {max_seconds} s)")
    if present < size:
        raise MediaError(f"{path}: truncated WAV (header declares {size} data bytes, file holds {present})")


def _open_av_stream(path: Path, kind: str, max_seconds: float | None) -> tuple[Any, Any]:
    """Open ``path`` with PyAV: (container, its first ``kind`` stream), after the container checks."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as err:
        raise MediaError(f"{path}: not a supported {kind} file ({err.__class__.__name__})") from err
    streams = container.streams.audio if kind == "audio" else container.streams.video
    declared = None if container.duration is None else container.duration / av.time_base
    if not streams or (max_seconds is not None and declared is not None and declared > max_seconds):
        container.close()
        if not streams:
            raise MediaError(f"{path}: has no {kind} stream" + (" (0 frames)" if kind == "video" else ""))
        raise MediaError(f"{path}: longer than the limit (header declares {declared:.1f} s > {max_seconds} s)")
    return container, streams[0]


def _read_audio_pyav(path: Path, max_seconds: float | None) -> tuple[np.ndarray, int]:
    import av

    container, stream = _open_av_stream(path, "audio", max_seconds)
    with container:
        sr = stream.codec_context.sample_rate or stream.sample_rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        limit = None if max_seconds is None else int(max_seconds * sr) + 1
        chunks: list[np.ndarray] = []
        total = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += chunk.size
                if limit is not None and total > limit:
                    raise MediaError(f"{path}: longer than the limit ({max_seconds} s)")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as err:
            raise MediaError(f"{path}: unreadable or corrupt audio ({err})") from err
    if not chunks:
        raise MediaError(f"{path}: contains no audio (zero length)")
    return np.concatenate(chunks)[None, :].astype(np.float32, copy=False), int(sr)


# --------------------------------------------------------------------------------------------
# images


def load_image(source: PathLike | Any, *, min_side: int = MIN_IMAGE_SIDE) -> np.ndarray:
    """Load an image as uint8 RGB (H, W, 3).

    Args:
        source: a path, a ``PIL.Image.Image`` or an array (H, W), (H, W, 1|3|4); float arrays are
            taken as [0, 1].
        min_side: smallest accepted width and height in pixels.

    Any PIL mode is accepted: CMYK, L, LA, P (with or without transparency), RGBA, I;16, F.
    Transparent pixels are composited onto white; EXIF orientation is applied.

    Raises:
        MediaError: missing, a directory, empty, not an image, truncated, smaller than
            ``min_side`` on a side, or an array of the wrong shape or with NaN/inf.
    """
    from PIL import Image, ImageOps

    if isinstance(source, Image.Image):
        name, image = "<image>", source
    elif isinstance(source, np.ndarray):
        name, image = "<array>", _array_to_pil(source)
    else:
        path = Path(source)
        name = str(path)
        _check_file(path, "image")
        try:
            with Image.open(path) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened)
        except Image.DecompressionBombError as err:
            raise MediaError(f"{path}: image too large ({err})") from err
        except (Image.UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise MediaError(f"{path}: not a readable image ({err})") from err
    width, height = image.size
    if width < min_side or height < min_side:
        raise MediaError(f"{name}: image too small ({width}x{height}; minimum {min_side}x{min_side} pixels)")
    return np.asarray(_to_rgb(image), dtype=np.uint8)


def _array_to_pil(x: np.ndarray):
    from PIL import Image

    if x.ndim == 3 and x.shape[2] == 1:
        x = x[:, :, 0]
    if not (x.ndim == 2 or (x.ndim == 3 and x.shape[2] in (3, 4))):
        raise MediaError(f"<array>: image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {x.shape}")
    if x.dtype != np.uint8:
        x = x.astype(np.float64)
        if not np.isfinite(x).all():
            raise MediaError("<array>: image contains non-finite values (NaN or inf)")
        scale = 255.0 if x.max(initial=0.0) <= 1.0 else 1.0
        x = np.clip(np.rint(x * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(x)


def _to_rgb(image):
    """Any PIL mode -> RGB; alpha is composited on white, high-bit-depth modes are rescaled."""
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        x = np.asarray(image, dtype=np.float64)
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(x)
        image = Image.fromarray(x.astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


# --------------------------------------------------------------------------------------------
# video


def frame_indices(num_available: int, num_frames: int) -> np.ndarray:
    """Evenly spaced frame indices: the centre of each of ``num_frames`` equal parts of the clip.

    Deterministic; a clip with fewer frames than asked repeats each frame about equally often.
    """
    positions = (np.arange(num_frames) + 0.5) * num_available / num_frames
    return np.minimum(positions.astype(np.int64), num_available - 1)


def load_video(
    path: PathLike,
    num_frames: int = 32,
    *,
    max_seconds: float | None = MAX_AUDIO_SECONDS,
    max_short_side: int | None = MAX_VIDEO_SHORT_SIDE,
) -> np.ndarray:
    """Load ``num_frames`` RGB frames spread evenly over a whole video clip.

    Only the selected frames are kept while decoding, each scaled down (aspect kept) so that its
    shorter side is at most ``max_short_side`` pixels: memory grows neither with the clip's length
    nor with its resolution (32 frames of an 8K clip would be ~3 GB; ViViT sees 224 px anyway).

    Args:
        path: a video file (anything FFmpeg reads: mp4, webm, mkv, avi, gif, ...).
        num_frames: frames to return (ViViT-B 16x2 takes exactly 32).
        max_seconds: longest accepted clip, checked on the declared duration. None: no limit.
        max_short_side: largest shorter side of a returned frame in pixels; None keeps full size.

    Returns:
        uint8 (num_frames, H, W, 3).

    Raises:
        MediaError: missing, a directory, empty, not a video, no video stream, no frame,
            longer than ``max_seconds``, or corrupt.
    """
    path = Path(path)
    _check_file(path, "video")
    if num_frames < 1:
        raise MediaError(f"{path}: num_frames must be >= 1, got {num_frames}")
    if max_short_side is not None and max_short_side < 2:
        raise MediaError(f"{path}: max_short_side must be at least 2 pixels, got {max_short_side}")
    import av

    count = _count_video_frames(path, max_seconds)
    try:
        selected, decoded = _decode_selected(path, frame_indices(count, num_frames), max_short_side)
        if selected is None and decoded >= MIN_VIDEO_FRAMES:
            # Fewer frames decoded than packets were counted: select again from those that exist.
            selected, decoded = _decode_selected(path, frame_indices(decoded, num_frames), max_short_side)
    except av.FFmpegError as err:
        raise MediaError(f"{path}: unreadable or corrupt video ({err})") from err
    if selected is None:
        raise MediaError(f"{path}: corrupt video (only {decoded} frame(s) could be decoded)")
    return selected


def _count_video_frames(path: Path, max_seconds: float | None) -> int:
    """Frames in the first video stream, counted from packets (no decoding), after the checks."""
    import av

    container, stream = _open_av_stream(path, "video", max_seconds)
    with container:
        try:
            count = sum(1 for packet in container.demux(stream) if packet.size)
        except av.FFmpegError as err:
            raise MediaError(f"{path}: unreadable or corrupt video ({err})") from err
    if count < MIN_VIDEO_FRAMES:
        raise MediaError(f"{path}: video has {count} frame(s); at least {MIN_VIDEO_FRAMES} is needed")
    return count


def scaled_size(width: int, height: int, max_short_side: int | None) -> tuple[int, int]:
    """(width, height) scaled down, aspect kept, so the shorter side is at most ``max_short_side``."""
    short = min(width, height)
    if max_short_side is None or short <= max_short_side:
        return width, height
    scale = max_short_side / short
    return max(1, round(width * scale)), max(1, round(height * scale))


def _decode_selected(path: Path, indices: np.ndarray, max_short_side: int | None) -> tuple[np.ndarray | None, int]:
    """Decode sequentially, converting only the frames in ``indices`` (sorted, may repeat).

    Returns (uint8 (len(indices), H, W, 3), frames decoded), or (None, frames in the clip) when
    the clip ends before the last wanted index.
    """
    import av

    wanted = np.unique(indices)
    kept: dict[int, np.ndarray] = {}
    decoded = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        target = iter(wanted.tolist())
        next_index = next(target)
        for i, frame in enumerate(container.decode(stream)):
            decoded = i + 1
            if i == next_index:
                width, height = scaled_size(frame.width, frame.height, max_short_side)
                kept[i] = frame.to_ndarray(format="rgb24", width=width, height=height)
                next_index = next(target, None)
                if next_index is None:
                    break
    if len(kept) < len(wanted):
        return None, decoded
    return np.stack([kept[int(i)] for i in indices]), decoded
