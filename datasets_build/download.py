"""Optional yt-dlp downloader for AudioSet-style segments (extra: ``pip install 'm2ugen[download]'``).

Each item is fetched on its own and every failure raises :class:`~m2ugen.errors.DataError` with
yt-dlp's reason, which the builder records in its failures file (the original swallowed them all).
Trimming to ``start..end`` and audio extraction use yt-dlp's FFmpeg post-processing, so a system
``ffmpeg`` must be on PATH.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from datasets_build.sources import SourceItem, attach_media
from m2ugen.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


class _YtDlpLog:
    """Routes yt-dlp's own messages to logging (its errors also reach us as exceptions)."""

    def debug(self, message: str) -> None:
        logger.debug(message)

    info = warning = error = debug


@dataclass(frozen=True)
class DownloadConfig:
    """Where and what to download.

    Attributes:
        media_dir: files are saved as ``<media_dir>/<item id>.<ext>``.
        kind: ``audio`` (best audio, converted to ``audio_format``) or ``video`` (mp4 with sound).
        trim: download only the segment (the original's MUCaps step took whole videos).
        max_height: largest video height, pixels.
        socket_timeout_s: network timeout per request, seconds.
    """

    media_dir: Path
    kind: Literal["audio", "video"] = "audio"
    trim: bool = True
    audio_format: str = "mp3"
    max_height: int = 1080
    socket_timeout_s: float = 20.0


class YtDlpDownloader:
    """Fetches one segment at a time with yt-dlp's Python API."""

    def __init__(self, config: DownloadConfig) -> None:
        try:
            import yt_dlp
        except ImportError:
            raise ConfigError("downloading needs yt-dlp: pip install 'm2ugen[download]'") from None
        self._yt_dlp = yt_dlp
        self.config = config
        config.media_dir.mkdir(parents=True, exist_ok=True)

    def _options(self, item: SourceItem) -> dict[str, object]:
        cfg = self.config
        options: dict[str, object] = {
            "outtmpl": str(cfg.media_dir / f"{item.id}.%(ext)s"),
            "quiet": True,
            "logger": _YtDlpLog(),
            "no_warnings": True,
            "noprogress": True,
            "noplaylist": True,
            "socket_timeout": cfg.socket_timeout_s,
            "retries": 1,
        }
        if cfg.kind == "audio":
            options["format"] = "bestaudio/best"
            options["postprocessors"] = [{"key": "FFmpegExtractAudio", "preferredcodec": cfg.audio_format}]
        else:
            options["format"] = f"bestvideo[height<={cfg.max_height}]+bestaudio/best[height<={cfg.max_height}]"
            options["merge_output_format"] = "mp4"
        if cfg.trim and item.segment is not None:
            segment = item.segment
            options["download_ranges"] = self._yt_dlp.utils.download_range_func(None, [(segment.start_s, segment.end_s)])
            options["force_keyframes_at_cuts"] = True
        return options

    def fetch(self, item: SourceItem) -> SourceItem:
        """Download ``item``'s segment and return the item with its media attached.

        Raises:
            DataError: the item has no segment, yt-dlp failed (its message is the reason), or no file appeared.
        """
        if item.segment is None:
            raise DataError(f"{item.id}: nothing to download (not from a segment CSV)")
        try:
            with self._yt_dlp.YoutubeDL(self._options(item)) as ydl:
                ydl.download([item.segment.url])
        except self._yt_dlp.utils.DownloadError as err:
            message = " ".join(str(err).split()).removeprefix("ERROR: ")
            raise DataError(f"download of {item.segment.url} failed: {message}") from None
        for path in sorted(self.config.media_dir.glob(f"{item.id}.*")):
            if not path.name.endswith((".part", ".ytdl")):
                item = attach_media(item, path)
        if item.audio is None and item.video is None:
            raise DataError(f"download of {item.segment.url} produced no media file in {self.config.media_dir}")
        return item
