"""MUEdit pair search: clips alike in tempo and key (and chroma, loudness, beat regularity) but with different instruments.

Replaces the original's random-pair rejection sampling (which could not run, and would have needed
near-identical waveforms). Criteria, applied in this order and each counted:

1. ``key``: same estimated key (off with ``same_key=False``);
2. ``tempo``: ``|tempo_a - tempo_b| <= tempo_tol_bpm``;
3. ``chroma``: cosine of the mean chroma profiles ``>= min_chroma_similarity``;
4. ``loudness``: ``|lufs_a - lufs_b| <= loudness_tol_lu`` (unknown loudness fails);
5. ``regularity``: ``|regularity_a - regularity_b| <= regularity_tol``;
6. ``instruments``: both clips have tags and their Jaccard distance is ``>= min_instrument_distance``.

The search is exact: a sorted-tempo index per key proposes every same-key pair within the tempo
tolerance, and :func:`_admit` checks them with the same element-wise expressions that the
brute-force O(N^2) reference (:func:`bruteforce_pairs`) evaluates on every pair, so both return
identical pairs and counts. (An exact faiss range search was measured too and is slower for these
low-dimensional criteria; see ``docs/benchmarks.md``.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from datasets_build.features import INSTRUMENTS
from m2ugen.errors import ConfigError, DataError

INSTRUMENT_BITS = {tag: bit for bit, tag in enumerate(sorted(INSTRUMENTS))}
CRITERIA = ("key", "tempo", "chroma", "loudness", "regularity", "instruments")


@dataclass(frozen=True)
class PairingConfig:
    """Tolerances of the pair search; ``None`` switches a continuous criterion off.

    ``max_partners_per_clip`` caps how often one clip is used, applied after the exact search by
    keeping the closest pairs first (``None``: no cap).
    """

    tempo_tol_bpm: float = 4.0
    same_key: bool = True
    min_chroma_similarity: float | None = 0.9
    loudness_tol_lu: float | None = 6.0
    regularity_tol: float | None = None
    min_instrument_distance: float = 0.5
    max_partners_per_clip: int | None = 4
    both_directions: bool = False

    def __post_init__(self) -> None:
        if self.tempo_tol_bpm <= 0:
            raise ConfigError(f"tempo_tol_bpm must be > 0, got {self.tempo_tol_bpm}")
        if self.min_chroma_similarity is not None and not -1.0 <= self.min_chroma_similarity < 1.0:
            raise ConfigError(f"min_chroma_similarity must be in [-1, 1), got {self.min_chroma_similarity}")
        for name in ("loudness_tol_lu", "regularity_tol"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be > 0 or None, got {value}")
        if not 0.0 < self.min_instrument_distance <= 1.0:
            raise ConfigError(f"min_instrument_distance must be in (0, 1], got {self.min_instrument_distance}")
        if self.max_partners_per_clip is not None and self.max_partners_per_clip < 1:
            raise ConfigError(f"max_partners_per_clip must be >= 1 or None, got {self.max_partners_per_clip}")


@dataclass(frozen=True)
class FeatureTable:
    """Features of N clips as arrays.

    Attributes:
        ids: clip ids, length N.
        tempo: (N,) float64, BPM.
        key: (N,) int64, 0-23 (see ``features.KEY_NAMES``).
        chroma: (N, 12) float64, unit L2 norm.
        lufs: (N,) float64, NaN where unknown.
        regularity: (N,) float64 in [0, 1].
        instruments: (N,) uint64 bit masks over :data:`INSTRUMENT_BITS`.
    """

    ids: list[str]
    tempo: np.ndarray
    key: np.ndarray
    chroma: np.ndarray
    lufs: np.ndarray
    regularity: np.ndarray
    instruments: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[str, dict, Sequence[str]]]) -> FeatureTable:
        """Build from ``(id, features dict, instrument tags)``; the dict holds ``ClipFeatures.to_dict()`` fields.

        Raises:
            DataError: if a row lacks a feature or has a malformed chroma.
        """
        ids, tempo, key, chroma, lufs, regularity, masks = [], [], [], [], [], [], []
        for clip_id, feats, tags in rows:
            try:
                vector = np.asarray(feats["chroma"], dtype=np.float64)
                if vector.shape != (12,):
                    raise ValueError(f"chroma has shape {vector.shape}, expected (12,)")
                tempo.append(float(feats["tempo_bpm"]))
                key.append(int(feats["key"]))
                regularity.append(float(feats["beat_regularity"]))
                lufs.append(math.nan if feats.get("lufs") is None else float(feats["lufs"]))
            except (KeyError, TypeError, ValueError) as err:
                raise DataError(f"clip {clip_id!r}: bad features ({err})") from None
            norm = np.linalg.norm(vector)
            chroma.append(vector / norm if norm > 0 else np.full(12, 1.0 / math.sqrt(12.0)))
            masks.append(sum(1 << INSTRUMENT_BITS[t] for t in set(tags) if t in INSTRUMENT_BITS))
            ids.append(clip_id)
        return cls(
            ids=ids,
            tempo=np.asarray(tempo, dtype=np.float64),
            key=np.asarray(key, dtype=np.int64),
            chroma=np.asarray(chroma, dtype=np.float64).reshape(-1, 12),
            lufs=np.asarray(lufs, dtype=np.float64),
            regularity=np.asarray(regularity, dtype=np.float64),
            instruments=np.asarray(masks, dtype=np.uint64),
        )

    def subset(self, index: np.ndarray) -> FeatureTable:
        return FeatureTable(
            ids=[self.ids[i] for i in index], tempo=self.tempo[index], key=self.key[index], chroma=self.chroma[index],
            lufs=self.lufs[index], regularity=self.regularity[index], instruments=self.instruments[index],
        )


def random_feature_table(n: int, seed: int = 0) -> FeatureTable:
    """N random clips with realistic ranges (for tests and ``bench/muedit_pairs.py``).

    Chroma vectors are a key-dependent profile plus noise, so same-key clips are mostly similar.
    """
    rng = np.random.default_rng(seed)
    key = rng.integers(0, 24, n)
    base = np.stack([np.roll([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88], k % 12) for k in range(24)])
    chroma = base[key] + rng.gamma(2.0, 0.8, (n, 12))
    chroma /= np.linalg.norm(chroma, axis=1, keepdims=True)
    lufs = rng.normal(-16.0, 5.0, n)
    lufs[rng.random(n) < 0.02] = np.nan
    bits = len(INSTRUMENT_BITS)
    masks = np.zeros(n, dtype=np.uint64)
    for _ in range(3):
        take = rng.random(n) < 0.7
        masks |= np.where(take, np.left_shift(np.uint64(1), rng.integers(0, bits, n).astype(np.uint64)), np.uint64(0))
    return FeatureTable(
        ids=[f"clip{i:06d}" for i in range(n)], tempo=rng.uniform(60.0, 180.0, n), key=key, chroma=chroma,
        lufs=lufs, regularity=rng.uniform(0.3, 1.0, n), instruments=masks,
    )


@dataclass
class PairResult:
    """Pairs ``(a, b)`` with ``a < b`` as row indices of the table (sorted), and the admit count of each criterion.

    ``admitted[c]`` is the number of unordered pairs passing criterion ``c`` and every criterion before
    it in :data:`CRITERIA` order; ``admitted["all"]`` is the number of pairs.
    """

    pairs: np.ndarray
    admitted: dict[str, int]
    method: str


def _admit(table: FeatureTable, a: np.ndarray, b: np.ndarray, cfg: PairingConfig, counts: dict[str, int]) -> np.ndarray:
    """Mask over candidate pairs ``(a[k], b[k])`` (same key) passing tempo..instruments; adds each stage's survivors to ``counts``.

    The indexed search and the brute-force reference both call this on their candidate lists, so their
    arithmetic is identical and so are their results.
    """
    mask = np.abs(table.tempo[a] - table.tempo[b]) <= cfg.tempo_tol_bpm
    counts["tempo"] += int(mask.sum())
    if cfg.min_chroma_similarity is not None:
        mask &= np.einsum("kd,kd->k", table.chroma[a], table.chroma[b]) >= cfg.min_chroma_similarity
    counts["chroma"] += int(mask.sum())
    if cfg.loudness_tol_lu is not None:
        mask &= np.abs(table.lufs[a] - table.lufs[b]) <= cfg.loudness_tol_lu
    counts["loudness"] += int(mask.sum())
    if cfg.regularity_tol is not None:
        mask &= np.abs(table.regularity[a] - table.regularity[b]) <= cfg.regularity_tol
    counts["regularity"] += int(mask.sum())
    ia, ib = table.instruments[a], table.instruments[b]
    inter = np.bitwise_count(ia & ib).astype(np.float64)
    union = np.bitwise_count(ia | ib).astype(np.float64)
    mask &= (ia != 0) & (ib != 0) & (inter <= (1.0 - cfg.min_instrument_distance) * union)
    counts["instruments"] += int(mask.sum())
    return mask


def _key_groups(table: FeatureTable, cfg: PairingConfig) -> Iterable[np.ndarray]:
    if not cfg.same_key:
        yield np.arange(len(table))
        return
    order = np.argsort(table.key, kind="stable")
    bounds = np.flatnonzero(np.diff(table.key[order])) + 1
    yield from np.split(order, bounds)


def _sweep_candidates(table: FeatureTable, group: np.ndarray, cfg: PairingConfig) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of ``group`` whose tempos are within the tolerance (plus a hair, checked exactly later)."""
    order = group[np.argsort(table.tempo[group], kind="stable")]
    tempos = table.tempo[order]
    slack = cfg.tempo_tol_bpm * (1 + 1e-9) + 1e-9
    hi = np.searchsorted(tempos, tempos + slack, side="right")
    counts = hi - np.arange(order.size) - 1
    total = int(counts.sum())
    first = np.repeat(np.arange(order.size), counts)
    offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return order[first], order[first + 1 + offset]


def find_pairs(table: FeatureTable, cfg: PairingConfig) -> PairResult:
    """All admitted pairs (before any partner cap, see :func:`limit_partners`), found with the tempo sweep index.

    Per key group, clips are sorted by tempo and each clip's tempo window is found with
    ``searchsorted``: O(N log N + candidates) instead of O(N^2).
    """
    counts = dict.fromkeys(CRITERIA, 0)
    found = []
    for group in _key_groups(table, cfg):
        counts["key"] += group.size * (group.size - 1) // 2
        a, b = _sweep_candidates(table, group, cfg)
        a, b = np.minimum(a, b), np.maximum(a, b)
        mask = _admit(table, a, b, cfg, counts)
        found.append(np.stack([a[mask], b[mask]], axis=1))
    return PairResult(_sorted_pairs(found), {**counts, "all": counts["instruments"]}, "sweep")


def bruteforce_pairs(table: FeatureTable, cfg: PairingConfig, *, block: int = 256) -> PairResult:
    """Reference: look at every pair ``a < b``, in (block x N) slabs. O(N^2) time, O(block x N) memory."""
    n = len(table)
    counts = dict.fromkeys(CRITERIA, 0)
    found = []
    columns = np.arange(n)[None, :]
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))[:, None]
        same = columns > rows
        if cfg.same_key:
            same &= table.key[rows] == table.key[columns]
        a, b = np.nonzero(same)
        a += start
        counts["key"] += a.size
        mask = _admit(table, a, b, cfg, counts)
        found.append(np.stack([a[mask], b[mask]], axis=1))
    return PairResult(_sorted_pairs(found), {**counts, "all": counts["instruments"]}, "bruteforce")


def _sorted_pairs(parts: list[np.ndarray]) -> np.ndarray:
    pairs = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
    pairs = pairs.astype(np.int64).reshape(-1, 2)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def pair_distance(table: FeatureTable, pairs: np.ndarray, cfg: PairingConfig) -> np.ndarray:
    """How alike each pair is, lower is closer: (delta tempo / tolerance)^2 + (1 - chroma cosine)."""
    a, b = pairs[:, 0], pairs[:, 1]
    tempo = ((table.tempo[a] - table.tempo[b]) / cfg.tempo_tol_bpm) ** 2
    return tempo + 1.0 - np.einsum("kd,kd->k", table.chroma[a], table.chroma[b])


def limit_partners(table: FeatureTable, pairs: np.ndarray, cfg: PairingConfig) -> np.ndarray:
    """Keep the closest pairs first while no clip exceeds ``max_partners_per_clip``; deterministic, sorted result."""
    if cfg.max_partners_per_clip is None or len(pairs) == 0:
        return pairs
    order = np.lexsort((pairs[:, 1], pairs[:, 0], pair_distance(table, pairs, cfg)))
    used = np.zeros(len(table), dtype=np.int64)
    kept = []
    for a, b in pairs[order]:
        if used[a] < cfg.max_partners_per_clip and used[b] < cfg.max_partners_per_clip:
            used[a] += 1
            used[b] += 1
            kept.append((a, b))
    return _sorted_pairs([np.asarray(kept, dtype=np.int64).reshape(-1, 2)])
