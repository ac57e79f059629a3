"""The resumable, sharded batch loop every builder runs.

A builder supplies ``process(batch) -> BatchResult``; the engine picks this shard's items, skips what
earlier runs finished (ids in the manifest, in ``failures.jsonl``, or handled elsewhere such as a
filter rejection), appends each batch's records and failures atomically, and stops with
:class:`~m2ugen.errors.DataError` when too many items fail.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from datasets_build.manifest import JsonlAppender, ManifestRecord, load_index, validate_record
from datasets_build.sources import SourceItem, select_shard
from m2ugen.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildConfig:
    """Settings shared by all builders.

    ``limit`` keeps the first ``limit`` items (by id) of this shard, so rerunning with the same
    limit resumes the same set. A run stops once at least ``min_items_before_abort`` items were
    processed and more than ``max_failure_fraction`` of them failed.
    """

    out_dir: Path
    shard: tuple[int, int] = (0, 1)
    batch_size: int = 8
    limit: int | None = None
    device: str = "cpu"
    max_failure_fraction: float = 0.5
    min_items_before_abort: int = 20
    retry_failed: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"limit must be >= 0, got {self.limit}")
        if not 0.0 <= self.max_failure_fraction <= 1.0:
            raise ConfigError(f"max_failure_fraction must be in [0, 1], got {self.max_failure_fraction}")


@dataclass(frozen=True)
class Failure:
    """An item that could not be built, the step that failed and why."""

    id: str
    stage: str
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "stage": self.stage, "reason": self.reason, "time": time.time()}


@dataclass
class BatchResult:
    """What ``process`` made of one batch: every input id must appear in exactly one of the lists.

    ``skipped`` holds ids handled without a record or a failure (e.g. rejected by the music filter,
    whose decision is logged by the builder itself).
    """

    records: list[ManifestRecord] = field(default_factory=list)  # or any row with ``id`` and ``to_dict()``
    failures: list[Failure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class ShardFiles:
    """File names of one builder's shard: ``<out>/<stem>[.shard-i-of-n].jsonl`` and ``<out>/cache/...``."""

    def __init__(self, out_dir: Path, name: str, shard: tuple[int, int]) -> None:
        self.out_dir = Path(out_dir)
        self.name = name
        index, count = shard
        self.suffix = "" if count == 1 else f".shard-{index:05d}-of-{count:05d}"

    def jsonl(self, stem: str) -> Path:
        return self.out_dir / f"{stem}{self.suffix}.jsonl"

    def cache(self, stem: str) -> Path:
        return self.out_dir / "cache" / f"{stem}{self.suffix}.jsonl"

    @property
    def manifest(self) -> Path:
        return self.jsonl(self.name)

    @property
    def failures(self) -> Path:
        return self.jsonl(f"{self.name}_failures")

    @property
    def summary_json(self) -> Path:
        return self.out_dir / f"{self.name}_summary{self.suffix}.json"

    @property
    def summary_png(self) -> Path:
        return self.out_dir / f"{self.name}_summary{self.suffix}.png"


@dataclass
class BuildReport:
    """Counts of one run over one shard (the summary adds totals over everything written so far)."""

    name: str
    manifest: Path
    failures_path: Path
    items_in_shard: int
    done_before: int
    written: int = 0
    failed: int = 0
    skipped: int = 0
    failure_stages: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


def batched(items: Sequence[SourceItem], size: int) -> Iterable[list[SourceItem]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def run_build(
    name: str,
    items: Sequence[SourceItem],
    config: BuildConfig,
    process: Callable[[list[SourceItem]], BatchResult],
    *,
    handled_elsewhere: Iterable[str] = (),
    validate: Callable[..., Any] = validate_record,
) -> BuildReport:
    """Process this shard's pending items in batches, appending to ``<name>.jsonl`` and ``<name>_failures.jsonl``.

    Args:
        name: manifest stem, e.g. ``"mucaps"``.
        items: all source items (every shard's); this function selects the shard and the limit.
        config: shard, batch size, limit, failure policy.
        process: turns a batch into records, failures and skipped ids.
        handled_elsewhere: ids finished by an earlier run without a record (e.g. filter rejections).
        validate: ``validate(row_dict, where=...)`` -> an object with ``to_dict()``; the manifest schema
            by default, another row schema for builders whose log is not a manifest (corpus clips).

    Raises:
        DataError: if too many items fail (names the counts and the failures file).
    """
    files = ShardFiles(config.out_dir, name, config.shard)
    chosen = select_shard(items, config.shard, config.limit)
    done = set(load_index(files.manifest)) | set(handled_elsewhere)
    if not config.retry_failed:
        done |= set(load_index(files.failures))
    pending = [item for item in chosen if item.id not in done]
    report = BuildReport(name, files.manifest, files.failures, len(chosen), len(chosen) - len(pending))
    started = time.perf_counter()
    processed = 0
    with JsonlAppender(files.manifest) as manifest, JsonlAppender(files.failures) as failures, tqdm(
        total=len(pending), desc=name, unit="item", disable=not config.progress
    ) as bar:
        broken = [Failure(item.id, "source", item.error) for item in pending if item.error]
        report.failed += failures.append(f.to_dict() for f in broken)
        report.failure_stages.update(f.stage for f in broken)
        bar.update(len(broken))
        processed += len(broken)
        _check_failure_rate(name, files.failures, processed, report.failed, config)
        for batch in batched([item for item in pending if not item.error], config.batch_size):
            result = process(batch)
            _check_accounted(name, batch, result)
            rows = [validate(record.to_dict(), where=f"{name} record {record.id}").to_dict() for record in result.records]
            report.written += manifest.append(rows)
            report.failed += failures.append(f.to_dict() for f in result.failures)
            report.failure_stages.update(f.stage for f in result.failures)
            report.skipped += len(result.skipped)
            processed += len(batch)
            bar.update(len(batch))
            _check_failure_rate(name, files.failures, processed, report.failed, config)
    report.seconds = time.perf_counter() - started
    logger.info("%s: %d written, %d failed, %d skipped in %.1f s", name, report.written, report.failed, report.skipped, report.seconds)
    return report


def _check_accounted(name: str, batch: list[SourceItem], result: BatchResult) -> None:
    given = [item.id for item in batch]
    returned = [r.id for r in result.records] + [f.id for f in result.failures] + list(result.skipped)
    if sorted(given) != sorted(returned):
        raise RuntimeError(f"{name}: process() must account for every item once; got {sorted(returned)} for {sorted(given)}")


def _check_failure_rate(name: str, path: Path, processed: int, failed: int, config: BuildConfig) -> None:
    if processed >= config.min_items_before_abort and failed > config.max_failure_fraction * processed:
        raise DataError(
            f"{name}: {failed} of {processed} items failed (more than {config.max_failure_fraction:.0%}); "
            f"reasons are in {path}"
        )
