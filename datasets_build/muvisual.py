"""MUImage and MUVideo: (image or video, music) -> captions of both -> instruction -> ``generate`` records.

An item needs its picture (an image, or a video to take the middle frame from) or its video, and its
music (an audio file with the same stem, or the video's own sound track, extracted to WAV under
``<out>/media/``). The music is captioned by the music captioner, the picture by the image / video
captioner, and the instruction writer turns both captions into the user's request and the
assistant's answer. MUVideo also writes ``muvideo_captions.jsonl`` (video -> caption records, the
stage-1 video captioning data).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Literal

from datasets_build.captioners import CaptionCache, Captioner
from datasets_build.common import audio_duration_s, ensure_media, extract_audio, extract_frame, manifest_path
from datasets_build.download import YtDlpDownloader
from datasets_build.engine import BatchResult, BuildConfig, Failure, ShardFiles, run_build
from datasets_build.manifest import ManifestRecord, read_manifest, write_manifest
from datasets_build.sources import SourceItem
from datasets_build.summary import write_summary
from datasets_build.writers import InstructionRequest, InstructionWriter
from m2ugen.errors import DataError, M2UGenError

VIDEO_CAPTION_QUESTION = "Describe the video in detail."


def _resolve(item: SourceItem, kind: Literal["image", "video"], media_dir: Path, downloader: YtDlpDownloader | None) -> tuple[Path, Path]:
    """(picture, music) files of an item, extracting them from its video where needed."""
    item = ensure_media(item, downloader, needs=(kind, "video"))
    if kind == "image":
        picture = item.image or extract_frame(item.video, media_dir / "images" / f"{item.id}.jpg")
    elif item.video is None:
        raise DataError(f"{item.id}: no video file")
    else:
        picture = item.video
    if item.audio is not None:
        return picture, item.audio
    if item.video is None:
        raise DataError(f"{item.id}: no audio file and no video to take the music from")
    return picture, extract_audio(item.video, media_dir / "audio" / f"{item.id}.wav")


def _build_generate(
    kind: Literal["image", "video"],
    items: Sequence[SourceItem],
    config: BuildConfig,
    *,
    music_captioner: Captioner,
    picture_captioner: Captioner,
    writer: InstructionWriter,
    downloader: YtDlpDownloader | None,
) -> tuple[ShardFiles, Any]:
    name = f"mu{kind}"
    files = ShardFiles(config.out_dir, name, config.shard)
    media_dir = config.out_dir / "media"
    with closing(CaptionCache(music_captioner, files.cache("music_captions"), role="music")) as music_cache, closing(
        CaptionCache(picture_captioner, files.cache(f"{kind}_captions"), role=kind)
    ) as picture_cache:

        def process(batch: list[SourceItem]) -> BatchResult:
            result = BatchResult()
            ready = []
            for item in batch:
                try:
                    picture, music = _resolve(item, kind, media_dir, downloader)
                    ready.append((item.id, picture, music, audio_duration_s(music)))
                except M2UGenError as err:
                    result.failures.append(Failure(item.id, "media", str(err)))
            music_captions, failures = music_cache.get([(key, music) for key, _, music, _ in ready])
            result.failures.extend(failures)
            ready = [entry for entry in ready if entry[0] in music_captions]
            picture_captions, failures = picture_cache.get([(key, picture) for key, picture, _, _ in ready])
            result.failures.extend(failures)
            ready = [entry for entry in ready if entry[0] in picture_captions]
            requests = [InstructionRequest(kind, context=picture_captions[key], target=music_captions[key]) for key, *_ in ready]
            written = writer.write(requests) if requests else []
            if len(written) != len(requests):
                raise DataError(f"writer {writer.name} returned {len(written)} instructions for {len(requests)} requests")
            for (key, picture, music, duration), text in zip(ready, written):
                if not text.instruction.strip() or not text.response.strip():
                    result.failures.append(Failure(key, "writer", f"writer {writer.name} returned empty text"))
                    continue
                result.records.append(ManifestRecord(
                    id=key,
                    task="generate",
                    **{kind: manifest_path(picture, config.out_dir)},
                    instruction=text.instruction.strip(),
                    response=text.response.strip(),
                    target_audio=manifest_path(music, config.out_dir),
                    target_caption=music_captions[key],
                    meta={
                        "duration_s": round(duration, 3),
                        f"{kind}_caption": picture_captions[key],
                        "captioners": {"music": music_captioner.name, kind: picture_captioner.name},
                        "writer": writer.name,
                    },
                ))
            return result

        report = run_build(name, items, config, process)
    return files, report


def build_muimage(
    items: Sequence[SourceItem],
    config: BuildConfig,
    *,
    music_captioner: Captioner,
    image_captioner: Captioner,
    writer: InstructionWriter,
    downloader: YtDlpDownloader | None = None,
) -> dict[str, Any]:
    """Build this shard of MUImage (``muimage.jsonl``); resumable. Returns the summary.

    Raises:
        DataError: too many items failed.
    """
    files, report = _build_generate(
        "image", items, config, music_captioner=music_captioner, picture_captioner=image_captioner,
        writer=writer, downloader=downloader,
    )
    return write_summary(files, report)


def build_muvideo(
    items: Sequence[SourceItem],
    config: BuildConfig,
    *,
    music_captioner: Captioner,
    video_captioner: Captioner,
    writer: InstructionWriter,
    downloader: YtDlpDownloader | None = None,
) -> dict[str, Any]:
    """Build this shard of MUVideo (``muvideo.jsonl`` and ``muvideo_captions.jsonl``); resumable. Returns the summary.

    Raises:
        DataError: too many items failed.
    """
    files, report = _build_generate(
        "video", items, config, music_captioner=music_captioner, picture_captioner=video_captioner,
        writer=writer, downloader=downloader,
    )
    captions_path = files.jsonl("muvideo_captions")
    _write_video_captions(files.manifest, captions_path)
    return write_summary(files, report, extra={"video_captions_manifest": str(captions_path)})


def _write_video_captions(manifest: Path, dest: Path) -> None:
    """Rewrite ``dest`` with one ``caption`` record (video -> its caption) per MUVideo record."""
    write_manifest(dest, (
        ManifestRecord(
            id=record.id,
            task="caption",
            video=record.video,
            instruction=VIDEO_CAPTION_QUESTION,
            response=record.meta["video_caption"],
            meta={"captioner": record.meta["captioners"]["video"], "duration_s": record.meta["duration_s"]},
        )
        for record in read_manifest(manifest)
    ))
