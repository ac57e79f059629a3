"""MUCaps: music clips -> music filter -> captions, as ``caption`` records.

Output in ``out_dir``: ``mucaps.jsonl`` (kept, captioned clips; their filter measurements in
``meta.filter``), ``mucaps_t2m.jsonl`` (the same clips as text -> music ``generate`` records, the
stage-2 data), ``mucaps_filter.jsonl`` (every clip's measurements and decision, kept or not),
``mucaps_failures.jsonl``, ``cache/music_captions.jsonl`` and the summary JSON/PNG; each name gets
``.shard-i-of-n`` before the extension when sharded. No input file is ever deleted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from typing import Any

from datasets_build.captioners import MUSIC_CAPTION_QUESTION, CaptionCache, Captioner
from datasets_build.common import ensure_media, load_audio_quiet, manifest_path
from datasets_build.download import YtDlpDownloader
from datasets_build.engine import BatchResult, BuildConfig, Failure, ShardFiles, run_build
from datasets_build.manifest import JsonlAppender, ManifestRecord, load_index, read_manifest, write_manifest
from datasets_build.musicfilter import FilterConfig, MusicFilter
from datasets_build.sources import SourceItem
from datasets_build.summary import write_summary
from m2ugen.errors import M2UGenError

NAME = "mucaps"
# Rate the filter analyses audio at, Hz (VAD resamples to 16 kHz itself).
ANALYSIS_SR = 24_000


def build_mucaps(
    items: Sequence[SourceItem],
    config: BuildConfig,
    *,
    captioner: Captioner,
    filter_config: FilterConfig | None = None,
    use_filter: bool = True,
    downloader: YtDlpDownloader | None = None,
) -> dict[str, Any]:
    """Filter and caption this shard's clips; resumable. Returns the summary (also written to disk).

    Args:
        items: source items (all shards); an item needs an audio file, or a video with sound.
        config: output folder, shard, batch size, limit, failure policy.
        captioner: music captioner (e.g. :class:`~datasets_build.captioners.AssistantCaptioner`).
        filter_config: thresholds (defaults: :class:`FilterConfig`).
        use_filter: False keeps every readable clip (durations are still measured and logged).
        downloader: fetches CSV segments that are not on disk yet.

    Raises:
        DataError: too many items failed.
    """
    files = ShardFiles(config.out_dir, NAME, config.shard)
    filter_log_path = files.jsonl(f"{NAME}_filter")
    decisions = load_index(filter_log_path)
    rejected = {key for key, entry in decisions.items() if not entry["keep"]}
    music_filter = MusicFilter(filter_config) if use_filter else None

    with JsonlAppender(filter_log_path) as filter_log, closing(
        CaptionCache(captioner, files.cache("music_captions"), role="music")
    ) as cache:

        def decide(item: SourceItem) -> tuple[SourceItem, dict[str, Any]]:
            item = ensure_media(item, downloader, needs=("audio", "video"))
            if item.id in decisions:
                return item, decisions[item.id]
            source = item.audio or item.video
            wave = load_audio_quiet(source, ANALYSIS_SR)
            if music_filter is not None:
                measured = music_filter.measure(wave, ANALYSIS_SR).to_dict()
            else:
                measured = {"keep": True, "reasons": ["filter off"], "duration_s": round(wave.size / ANALYSIS_SR, 3)}
            entry = {"id": item.id, "audio": str(source), **measured}
            filter_log.append([entry])
            decisions[item.id] = entry
            return item, entry

        def process(batch: list[SourceItem]) -> BatchResult:
            result = BatchResult()
            kept = []
            for item in batch:
                try:
                    item, entry = decide(item)
                except M2UGenError as err:
                    result.failures.append(Failure(item.id, "media", str(err)))
                    continue
                if entry["keep"]:
                    kept.append((item, entry))
                else:
                    result.skipped.append(item.id)
            captions, failures = cache.get([(item.id, item.audio or item.video) for item, _ in kept])
            result.failures.extend(failures)
            for item, entry in kept:
                if item.id not in captions:
                    continue
                measurements = {key: value for key, value in entry.items() if key not in ("id", "audio")}
                result.records.append(ManifestRecord(
                    id=item.id,
                    task="caption",
                    audio=manifest_path(item.audio or item.video, config.out_dir),
                    instruction=MUSIC_CAPTION_QUESTION,
                    response=captions[item.id],
                    meta={"duration_s": entry["duration_s"], "filter": measurements, "captioner": captioner.name},
                ))
            return result

        report = run_build(NAME, items, config, process, handled_elsewhere=rejected)

    t2m_path = files.jsonl(f"{NAME}_t2m")
    write_manifest(t2m_path, (
        ManifestRecord(
            id=record.id, task="generate", instruction=record.response, response=record.response,
            target_audio=record.audio, target_caption=record.response, meta={"duration_s": record.meta["duration_s"]},
        )
        for record in read_manifest(files.manifest)
    ))

    reasons = Counter(reason.split(" ")[0] for entry in decisions.values() if not entry["keep"] for reason in entry["reasons"])
    extra = {
        "filter": {
            "measured": len(decisions),
            "kept": sum(1 for entry in decisions.values() if entry["keep"]),
            "rejected": sum(1 for entry in decisions.values() if not entry["keep"]),
            "rejections_by_check": dict(reasons),
            "log": str(filter_log_path),
        },
        "text_to_music_manifest": str(t2m_path),
    }
    return write_summary(files, report, extra=extra)
