"""MUEdit: music clips -> features + captions -> matched pairs -> edit instructions.

Two stages, both sharded and resumable:

* ``clips``: each clip gets its features (tempo, beat regularity, key, chroma, LUFS) and a caption
  whose instrument tags are parsed; written as ``caption`` records to ``muedit_clips.jsonl`` (a valid
  music-captioning manifest too).
* ``pairs``: reads every ``muedit_clips*.jsonl`` in the folder (so run it after all clip shards are
  done), finds pairs with :func:`~datasets_build.pairing.find_pairs`, and writes ``edit`` records
  (source audio, instruction, response, target audio and caption) to ``muedit.jsonl``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from contextlib import closing
from pathlib import Path
from typing import Any

from datasets_build.captioners import MUSIC_CAPTION_QUESTION, CaptionCache, Captioner
from datasets_build.common import ensure_media, load_audio_quiet, manifest_path
from datasets_build.download import YtDlpDownloader
from datasets_build.engine import BatchResult, BuildConfig, Failure, ShardFiles, run_build
from datasets_build.features import KEY_NAMES, extract_features, parse_instruments
from datasets_build.manifest import ManifestRecord, read_manifest
from datasets_build.pairing import FeatureTable, PairingConfig, find_pairs, limit_partners
from datasets_build.sources import SourceItem
from datasets_build.summary import write_summary
from datasets_build.writers import InstructionRequest, InstructionWriter
from m2ugen.errors import DataError, M2UGenError

CLIPS_NAME = "muedit_clips"
PAIRS_NAME = "muedit"
# librosa's default analysis rate, Hz.
FEATURE_SR = 22_050


def build_muedit_clips(
    items: Sequence[SourceItem],
    config: BuildConfig,
    *,
    captioner: Captioner,
    downloader: YtDlpDownloader | None = None,
) -> dict[str, Any]:
    """Features and captions of this shard's clips; resumable. Returns the summary.

    Raises:
        DataError: too many items failed.
    """
    files = ShardFiles(config.out_dir, CLIPS_NAME, config.shard)
    with closing(CaptionCache(captioner, files.cache("music_captions"), role="music")) as cache:

        def process(batch: list[SourceItem]) -> BatchResult:
            result = BatchResult()
            measured = []
            for item in batch:
                try:
                    item = ensure_media(item, downloader, needs=("audio", "video"))
                    source = item.audio or item.video
                    measured.append((item, source, extract_features(load_audio_quiet(source, FEATURE_SR), FEATURE_SR)))
                except M2UGenError as err:
                    result.failures.append(Failure(item.id, "media", str(err)))
            captions, failures = cache.get([(item.id, source) for item, source, _ in measured])
            result.failures.extend(failures)
            for item, source, features in measured:
                if item.id not in captions:
                    continue
                caption = captions[item.id]
                result.records.append(ManifestRecord(
                    id=item.id,
                    task="caption",
                    audio=manifest_path(source, config.out_dir),
                    instruction=MUSIC_CAPTION_QUESTION,
                    response=caption,
                    meta={
                        "duration_s": features.duration_s,
                        "tempo_bpm": features.tempo_bpm,
                        "features": features.to_dict(),
                        "instruments": parse_instruments(caption),
                        "captioner": captioner.name,
                    },
                ))
            return result

        report = run_build(CLIPS_NAME, items, config, process)
    return write_summary(files, report)


def clip_manifests(out_dir: Path) -> list[Path]:
    """Every shard's clip manifest in ``out_dir``."""
    return sorted({*Path(out_dir).glob(f"{CLIPS_NAME}.jsonl"), *Path(out_dir).glob(f"{CLIPS_NAME}.shard-*.jsonl")})


def build_muedit_pairs(
    config: BuildConfig,
    *,
    writer: InstructionWriter,
    pairing: PairingConfig | None = None,
) -> dict[str, Any]:
    """Match the clips of every clip shard in ``config.out_dir`` and write this shard's edit records.

    The pair list is computed identically by every shard; each pair id (``source__target``) then
    belongs to one shard. Returns the summary, including how many pairs each criterion admitted.

    Raises:
        DataError: no clip manifest in the folder, or too many items failed.
    """
    pairing = pairing or PairingConfig()
    paths = clip_manifests(config.out_dir)
    if not paths:
        raise DataError(f"{config.out_dir}: no {CLIPS_NAME}*.jsonl; run the clips stage first")
    clips = [record for path in paths for record in read_manifest(path)]
    table = FeatureTable.from_rows([(r.id, r.meta.get("features", {}), r.meta.get("instruments", [])) for r in clips])
    found = find_pairs(table, pairing)
    chosen = limit_partners(table, found.pairs, pairing)
    directed = [(int(a), int(b)) for a, b in chosen]
    if pairing.both_directions:
        directed += [(b, a) for a, b in directed]
    by_id = {f"{clips[a].id}__{clips[b].id}": (a, b) for a, b in directed}
    files = ShardFiles(config.out_dir, PAIRS_NAME, config.shard)

    def process(batch: list[SourceItem]) -> BatchResult:
        result = BatchResult()
        pairs = [by_id[item.id] for item in batch]
        requests = [InstructionRequest("edit", context=clips[a].response, target=clips[b].response) for a, b in pairs]
        written = writer.write(requests)
        if len(written) != len(requests):
            raise DataError(f"writer {writer.name} returned {len(written)} instructions for {len(requests)} requests")
        for item, (a, b), text in zip(batch, pairs, written):
            if not text.instruction.strip() or not text.response.strip():
                result.failures.append(Failure(item.id, "writer", f"writer {writer.name} returned empty text"))
                continue
            source, target = clips[a], clips[b]
            result.records.append(ManifestRecord(
                id=item.id,
                task="edit",
                audio=source.audio,
                instruction=text.instruction.strip(),
                response=text.response.strip(),
                target_audio=target.audio,
                target_caption=target.response,
                meta={
                    "duration_s": target.meta.get("duration_s"),
                    "source_caption": source.response,
                    "tempo_bpm": float(table.tempo[b]),
                    "source_tempo_bpm": float(table.tempo[a]),
                    "key": KEY_NAMES[int(table.key[b])],
                    "source_key": KEY_NAMES[int(table.key[a])],
                    "chroma_similarity": round(float(table.chroma[a] @ table.chroma[b]), 4),
                    "instruments": {"source": source.meta.get("instruments", []), "target": target.meta.get("instruments", [])},
                    "writer": writer.name,
                },
            ))
        return result

    report = run_build(PAIRS_NAME, [SourceItem(id=key) for key in by_id], config, process)
    extra = {
        "clips": len(clips),
        "clip_manifests": [str(p) for p in paths],
        "pairs_admitted_by_criterion": found.admitted,
        "pairs_after_partner_cap": len(chosen),
        "pairing": asdict(pairing),
    }
    return write_summary(files, report, extra=extra)
