"""``m2ugen-data``: build MUCaps, MUEdit, MUImage and MUVideo manifests from local media or a segment CSV,
and the rendered corpus (``corpus``) from music21's bundled scores or a folder of your own.

Each subcommand parses its options, builds the models it was given, calls one builder function and
prints the summary. Library errors are printed as one ``error: ...`` line with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets_build.musicfilter import FilterConfig
from datasets_build.pairing import PairingConfig
from m2ugen.errors import ConfigError

_FILTER = FilterConfig()
_PAIRING = PairingConfig()


def _common(parser: argparse.ArgumentParser, *, sources_required: bool = True) -> None:
    parser.add_argument("--source", type=Path, action="append", required=sources_required, default=[],
                        help="media folder or YTID,start_seconds,end_seconds CSV (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for manifests, logs and summaries")
    parser.add_argument("--media-dir", type=Path, default=None,
                        help="where CSV segments are (or get downloaded to); default OUT/media/downloads")
    parser.add_argument("--download", action=argparse.BooleanOptionalAction, default=False,
                        help="download CSV segments missing from --media-dir with yt-dlp (extra 'download')")
    parser.add_argument("--shard", default="0/1", help="this worker's shard i/n (default 0/1)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None, help="only the first N items of this shard")
    parser.add_argument("--device", default="cpu", help="torch device for the models (cpu, cuda, cuda:1, mps)")
    parser.add_argument("--max-failure-fraction", type=float, default=0.5,
                        help="stop when more than this fraction of processed items failed")
    parser.add_argument("--retry-failed", action=argparse.BooleanOptionalAction, default=False,
                        help="process items recorded as failed by earlier runs again")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)


def _writer_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--writer", default="template",
                        help="instruction writer: template, lm:DIR (causal LM with chat template) or plugin:module:attr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m2ugen-data", description="Build MUCaps, MUEdit, MUImage and MUVideo manifests from local media or a segment CSV, "
                                    "and the rendered corpus of scores (corpus)."
    )
    sub = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    captioner_help = "music captioner: assistant:DIR or plugin:module:attr"

    mucaps = sub.add_parser("mucaps", help="filtered, captioned music clips")
    _common(mucaps)
    mucaps.add_argument("--music-captioner", required=True, help=captioner_help)
    mucaps.add_argument("--filter", action=argparse.BooleanOptionalAction, default=True,
                        help="speech / loudness / silence / clipping filter")
    mucaps.add_argument("--max-speech-ratio", type=float, default=_FILTER.max_speech_ratio)
    mucaps.add_argument("--min-lufs", type=float, default=_FILTER.min_lufs)
    mucaps.add_argument("--max-lufs", type=float, default=_FILTER.max_lufs)
    mucaps.add_argument("--max-silence-ratio", type=float, default=_FILTER.max_silence_ratio)
    mucaps.add_argument("--max-clip-ratio", type=float, default=_FILTER.max_clip_ratio)
    mucaps.add_argument("--min-duration", type=float, default=_FILTER.min_duration_s, help="seconds")
    mucaps.set_defaults(func=run_mucaps)

    muedit = sub.add_parser("muedit", help="pairs of clips alike in tempo and key, with edit instructions")
    _common(muedit, sources_required=False)
    muedit.add_argument("--stage", choices=("clips", "pairs", "all"), default="all",
                        help="clips: features+captions of this shard; pairs: match all clip shards; all: both")
    muedit.add_argument("--music-captioner", help=captioner_help + " (clips stage)")
    _writer_option(muedit)
    muedit.add_argument("--tempo-tol", type=float, default=_PAIRING.tempo_tol_bpm, help="BPM")
    muedit.add_argument("--same-key", action=argparse.BooleanOptionalAction, default=_PAIRING.same_key)
    muedit.add_argument("--min-chroma-similarity", type=float, default=_PAIRING.min_chroma_similarity,
                        help="cosine of mean chroma; negative value: off")
    muedit.add_argument("--loudness-tol", type=float, default=_PAIRING.loudness_tol_lu, help="LU; 0: off")
    muedit.add_argument("--regularity-tol", type=float, default=0.0, help="beat regularity difference; 0: off")
    muedit.add_argument("--min-instrument-distance", type=float, default=_PAIRING.min_instrument_distance,
                        help="Jaccard distance between instrument tag sets")
    muedit.add_argument("--max-partners", type=int, default=_PAIRING.max_partners_per_clip, help="0: no cap")
    muedit.add_argument("--both-directions", action=argparse.BooleanOptionalAction, default=_PAIRING.both_directions)
    muedit.set_defaults(func=run_muedit)

    for name, kind, text in (("muimage", "image", "image"), ("muvideo", "video", "video")):
        visual = sub.add_parser(name, help=f"{text} -> music generation instructions")
        _common(visual)
        visual.add_argument("--music-captioner", required=True, help=captioner_help)
        visual.add_argument(f"--{kind}-captioner", required=True, help=f"{kind} captioner: {kind}:DIR or plugin:module:attr")
        _writer_option(visual)
        visual.set_defaults(func=run_muimage if kind == "image" else run_muvideo)
    _corpus_parser(sub)
    return parser


def _corpus_parser(sub: Any) -> None:
    from datasets_build.corpus import CorpusConfig
    from datasets_build.corpus_sources import COLLECTIONS, DEFAULT_COLLECTIONS

    defaults = CorpusConfig()
    corpus = sub.add_parser("corpus", help="real compositions rendered with sound fonts, with exact labels")
    corpus.add_argument("--out", type=Path, required=True, help="build folder (clips, labels, manifests, summary)")
    corpus.add_argument("--collections", default=",".join(DEFAULT_COLLECTIONS),
                        help=f"music21 corpus collections, comma-separated, or 'none' (known: {', '.join(COLLECTIONS)}; "
                             "essen is non-commercial)")
    corpus.add_argument("--scores", type=Path, action="append", default=[],
                        help="a folder of your own ABC / MusicXML / kern / MIDI files (repeatable)")
    corpus.add_argument("--works", type=int, default=None, help="only N works, spread over the collections (hash order)")
    corpus.add_argument("--instrumentations", type=int, default=defaults.instrumentations, help="clips per work")
    corpus.add_argument("--edits-per-work", type=int, default=defaults.edits_per_work, help="exact edit clips per work")
    corpus.add_argument("--max-seconds", type=float, default=defaults.max_seconds,
                        help="excerpt length: whole bars up to this many seconds")
    corpus.add_argument("--sample-rate", type=int, default=defaults.sample_rate)
    corpus.add_argument("--seed", type=int, default=defaults.seed)
    corpus.add_argument("--train-soundfonts", default=",".join(defaults.train_soundfonts),
                        help="fonts for train/valid clips: names or paths, comma-separated")
    corpus.add_argument("--test-soundfonts", default=",".join(defaults.test_soundfonts or ()),
                        help="held-out fonts for test clips; 'same' uses the training fonts")
    corpus.add_argument("--valid-fraction", type=float, default=defaults.valid_fraction)
    corpus.add_argument("--test-fraction", type=float, default=defaults.test_fraction)
    corpus.add_argument("--shard", default="0/1", help="this worker's shard i/n (default 0/1)")
    corpus.add_argument("--batch-size", type=int, default=16)
    corpus.add_argument("--limit", type=int, default=None, help="only the first N clips of this shard")
    corpus.add_argument("--max-failure-fraction", type=float, default=0.5)
    corpus.add_argument("--retry-failed", action=argparse.BooleanOptionalAction, default=False)
    corpus.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    corpus.set_defaults(func=run_corpus, device="cpu")


def _build_config(args: argparse.Namespace) -> Any:
    from datasets_build.engine import BuildConfig
    from datasets_build.sources import parse_shard
    from m2ugen.files import check_folder

    return BuildConfig(
        out_dir=check_folder(args.out, "--out "), shard=parse_shard(args.shard), batch_size=args.batch_size, limit=args.limit,
        device=args.device, max_failure_fraction=args.max_failure_fraction, retry_failed=args.retry_failed,
        progress=args.progress,
    )


def _items_and_downloader(args: argparse.Namespace, kind: str) -> tuple[list[Any], Any]:
    from datasets_build.download import DownloadConfig, YtDlpDownloader
    from datasets_build.sources import load_sources

    media_dir = args.media_dir or args.out / "media" / "downloads"
    downloader = YtDlpDownloader(DownloadConfig(media_dir=media_dir, kind=kind)) if args.download else None
    return load_sources(args.source, media_dir), downloader


def _print_summary(summary: dict[str, Any]) -> None:
    durations = summary.get("duration_s") or {}
    print(
        f"{summary['dataset']}: {summary['records']} records, {summary['failures']} failures "
        f"({summary['items_in_shard']} items in shard), {summary['duration_hours']} h of audio"
        + (f", mean {durations['mean']} s" if durations else "")
    )
    for key in ("filter", "pairs_admitted_by_criterion", "failures_by_stage"):
        if summary.get(key):
            print(f"  {key}: {json.dumps(summary[key])}")
    print(f"  manifest: {summary['manifest']}")
    print(f"  summary:  {summary['histogram_png']}")


def run_mucaps(args: argparse.Namespace) -> int:
    from datasets_build.captioners import load_captioner
    from datasets_build.mucaps import build_mucaps

    config = _build_config(args)
    items, downloader = _items_and_downloader(args, "audio")
    filter_config = FilterConfig(
        max_speech_ratio=args.max_speech_ratio, min_lufs=args.min_lufs, max_lufs=args.max_lufs,
        max_silence_ratio=args.max_silence_ratio, max_clip_ratio=args.max_clip_ratio, min_duration_s=args.min_duration,
    )
    summary = build_mucaps(
        items, config, captioner=load_captioner(args.music_captioner, device=args.device),
        filter_config=filter_config, use_filter=args.filter, downloader=downloader,
    )
    _print_summary(summary)
    return 0


def run_muedit(args: argparse.Namespace) -> int:
    from datasets_build.captioners import load_captioner
    from datasets_build.muedit import build_muedit_clips, build_muedit_pairs
    from datasets_build.writers import load_writer

    config = _build_config(args)
    if args.stage in ("clips", "all"):
        if not args.source or not args.music_captioner:
            raise ConfigError("muedit --stage clips/all needs --source and --music-captioner")
        items, downloader = _items_and_downloader(args, "audio")
        captioner = load_captioner(args.music_captioner, device=args.device)
        _print_summary(build_muedit_clips(items, config, captioner=captioner, downloader=downloader))
    if args.stage in ("pairs", "all"):
        pairing = PairingConfig(
            tempo_tol_bpm=args.tempo_tol,
            same_key=args.same_key,
            min_chroma_similarity=None if args.min_chroma_similarity is None or args.min_chroma_similarity < 0 else args.min_chroma_similarity,
            loudness_tol_lu=args.loudness_tol or None,
            regularity_tol=args.regularity_tol or None,
            min_instrument_distance=args.min_instrument_distance,
            max_partners_per_clip=args.max_partners or None,
            both_directions=args.both_directions,
        )
        _print_summary(build_muedit_pairs(config, writer=load_writer(args.writer, device=args.device), pairing=pairing))
    return 0


def run_muimage(args: argparse.Namespace) -> int:
    from datasets_build.captioners import load_captioner
    from datasets_build.muvisual import build_muimage
    from datasets_build.writers import load_writer

    config = _build_config(args)
    items, downloader = _items_and_downloader(args, "video")
    summary = build_muimage(
        items, config, music_captioner=load_captioner(args.music_captioner, device=args.device),
        image_captioner=load_captioner(args.image_captioner, device=args.device),
        writer=load_writer(args.writer, device=args.device), downloader=downloader,
    )
    _print_summary(summary)
    return 0


def run_muvideo(args: argparse.Namespace) -> int:
    from datasets_build.captioners import load_captioner
    from datasets_build.muvisual import build_muvideo
    from datasets_build.writers import load_writer

    config = _build_config(args)
    items, downloader = _items_and_downloader(args, "video")
    summary = build_muvideo(
        items, config, music_captioner=load_captioner(args.music_captioner, device=args.device),
        video_captioner=load_captioner(args.video_captioner, device=args.device),
        writer=load_writer(args.writer, device=args.device), downloader=downloader,
    )
    _print_summary(summary)
    return 0


def run_corpus(args: argparse.Namespace) -> int:
    import zlib

    from datasets_build.corpus import CorpusConfig, build_corpus
    from datasets_build.corpus_sources import collection_works, folder_works

    names = [] if args.collections.strip().lower() == "none" else [n.strip() for n in args.collections.split(",") if n.strip()]
    works = collection_works(names) + [w for folder in args.scores for w in folder_works(folder)]
    if not works:
        raise ConfigError("corpus: no works (give --collections and/or --scores)")
    if args.works is not None:
        works = sorted(works, key=lambda w: zlib.crc32(w.id.encode("utf-8")))[: args.works]
    fonts = tuple(f.strip() for f in args.train_soundfonts.split(",") if f.strip())
    test = None if args.test_soundfonts.strip() == "same" else tuple(f.strip() for f in args.test_soundfonts.split(",") if f.strip())
    config = CorpusConfig(
        instrumentations=args.instrumentations, edits_per_work=args.edits_per_work, max_seconds=args.max_seconds,
        sample_rate=args.sample_rate, seed=args.seed, train_soundfonts=fonts, test_soundfonts=test or None,
        valid_fraction=args.valid_fraction, test_fraction=args.test_fraction,
    )
    summary = build_corpus(works, config, _build_config(args))
    print(f"corpus: {summary['clips']} clips of {summary['works']} works, {summary['audio_hours']} h of audio, "
          f"{summary['disk_gb']} GB, {summary['failures']} failures {json.dumps(summary['failures_by_stage'])}")
    print(f"  labels:    {summary['clips_manifest']}")
    print(f"  manifests: {', '.join(sorted(summary['manifests']))}")
    print(f"  summary:   {summary['table']}, {summary['plot']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from m2ugen.cli import run_command

    args = build_parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
