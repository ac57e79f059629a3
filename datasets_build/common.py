"""Media helpers shared by the builders: fetch missing media, load quietly, pull audio or a frame out of a video."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from datasets_build.download import YtDlpDownloader
from datasets_build.sources import SourceItem
from m2ugen.errors import DataError
from m2ugen.files import write_atomically

# Audio pulled out of a video is stored as mono WAV at this rate (Hz); loaders resample as they need.
EXTRACTED_AUDIO_SR = 44_100


def manifest_path(path: Path, manifest_dir: Path) -> str:
    """How a manifest refers to ``path``: relative to the manifest's folder when inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path(manifest_dir).resolve()).as_posix()
    except ValueError:
        return str(path)


def ensure_media(item: SourceItem, downloader: YtDlpDownloader | None, *, needs: tuple[str, ...]) -> SourceItem:
    """Return ``item`` with at least one of the media kinds in ``needs``, downloading it if possible.

    Raises:
        DataError: nothing usable is on disk and it cannot be downloaded (no downloader, or the download failed).
    """
    if any(getattr(item, kind) is not None for kind in needs):
        return item
    if downloader is None or item.segment is None:
        where = "in the media folder (pass --download to fetch it)" if item.segment is not None else "next to the item"
        raise DataError(f"{item.id}: no {' or '.join(needs)} file found {where}")
    item = downloader.fetch(item)
    if not any(getattr(item, kind) is not None for kind in needs):
        raise DataError(f"{item.id}: the download gave no {' or '.join(needs)} file")
    return item


def load_audio_quiet(path: Path, sample_rate: int) -> np.ndarray:
    """:func:`m2ugen.media.load_audio` without the silence warning: silence is measured and recorded instead."""
    from m2ugen.media import SilentAudioWarning, load_audio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SilentAudioWarning)
        return load_audio(path, sample_rate)


def extract_audio(video: Path, dest: Path) -> Path:
    """Write the sound track of ``video`` to ``dest`` (WAV, mono, :data:`EXTRACTED_AUDIO_SR`) unless it exists.

    Raises:
        MediaError: the video has no readable audio stream.
    """
    from m2ugen.audio import Audio

    if not dest.is_file():
        Audio(load_audio_quiet(video, EXTRACTED_AUDIO_SR), EXTRACTED_AUDIO_SR).save(dest, overwrite=True)
    return dest


def extract_frame(video: Path, dest: Path) -> Path:
    """Save the middle frame of ``video`` as a JPEG at ``dest`` unless it exists (the original took a random one).

    Raises:
        MediaError: the video cannot be decoded.
    """
    from PIL import Image

    from m2ugen.media import load_video

    if not dest.is_file():
        frame = Image.fromarray(load_video(video, num_frames=1)[0])
        write_atomically(dest, lambda tmp: frame.save(tmp, format="JPEG", quality=95), "video frame")
    return dest


def audio_duration_s(path: Path) -> float:
    """Length of an audio file in seconds, from its header when soundfile can read it, else by decoding."""
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return load_audio_quiet(path, 16_000).size / 16_000
