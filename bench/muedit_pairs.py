"""MUEdit pair search at scale: the sorted-tempo index vs the brute-force O(N^2) reference.

20,000 random clips (tempo, key, chroma, loudness, beat regularity, instrument tags; the default
:class:`~datasets_build.pairing.PairingConfig`). Checks that the indexed search returns exactly the
brute-force pairs and per-criterion counts on a random 2,000-clip subset (and on the full set),
then times both on all 20,000. Last line: ``muedit_pairs: bruteforce_over_indexed=<ratio>x``.

Run: ``.venv/bin/python bench/muedit_pairs.py [--clips 20000] [--subset 2000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from datasets_build.pairing import PairingConfig, bruteforce_pairs, find_pairs, random_feature_table


def timed(fn, repeats: int):
    """(best wall time in seconds, last result) over ``repeats`` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20_000)
    parser.add_argument("--subset", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cfg = PairingConfig()
    table = random_feature_table(args.clips, seed=args.seed)
    subset = table.subset(np.sort(np.random.default_rng(args.seed).choice(args.clips, args.subset, replace=False)))
    small_indexed, small_reference = find_pairs(subset, cfg), bruteforce_pairs(subset, cfg)
    if not np.array_equal(small_indexed.pairs, small_reference.pairs) or small_indexed.admitted != small_reference.admitted:
        raise SystemExit("indexed search differs from brute force on the subset")
    print(f"subset {args.subset}: {len(small_indexed.pairs)} pairs, identical to brute force; admitted {small_indexed.admitted}")

    indexed_s, indexed = timed(lambda: find_pairs(table, cfg), args.repeats)
    brute_s, reference = timed(lambda: bruteforce_pairs(table, cfg), 1)
    if not np.array_equal(indexed.pairs, reference.pairs):
        raise SystemExit("indexed search differs from brute force on the full set")
    print(f"full {args.clips}: {len(indexed.pairs)} pairs (identical); admitted {indexed.admitted}")
    print(f"indexed (sorted-tempo sweep per key, best of {args.repeats}): {indexed_s:.3f} s")
    print(f"brute force O(N^2): {brute_s:.3f} s")
    print(f"muedit_pairs: bruteforce_over_indexed={brute_s / indexed_s:.1f}x")


if __name__ == "__main__":
    main()
