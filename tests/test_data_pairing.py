"""MUEdit pairing: the indexed search equals the O(N^2) reference; caps, criteria counts, instrument tags, key finding."""

from __future__ import annotations

import numpy as np
import pytest

from datasets_build.features import KEY_NAMES, estimate_key, parse_instruments
from datasets_build.pairing import FeatureTable, PairingConfig, bruteforce_pairs, find_pairs, limit_partners
from datasets_build.pairing import random_feature_table
from m2ugen.errors import ConfigError, DataError

CONFIGS = [
    PairingConfig(),
    PairingConfig(same_key=False, min_chroma_similarity=None, loudness_tol_lu=None, regularity_tol=0.1),
    PairingConfig(tempo_tol_bpm=12.0, min_chroma_similarity=0.97, loudness_tol_lu=3.0, min_instrument_distance=1.0),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "any-key", "strict"])
def test_indexed_search_equals_bruteforce(cfg):
    table = random_feature_table(900, seed=3)
    # Put some tempos exactly on the tolerance boundary, where a sloppy index would differ.
    table.tempo[1::7] = table.tempo[0:-1:7][: table.tempo[1::7].size] + cfg.tempo_tol_bpm
    indexed, reference = find_pairs(table, cfg), bruteforce_pairs(table, cfg, block=97)
    assert len(indexed.pairs) > 20
    np.testing.assert_array_equal(indexed.pairs, reference.pairs)
    assert indexed.admitted == reference.admitted
    counts = [indexed.admitted[c] for c in ("key", "tempo", "chroma", "loudness", "regularity", "instruments")]
    assert counts == sorted(counts, reverse=True) and indexed.admitted["all"] == len(indexed.pairs)
    a, b = indexed.pairs[:, 0], indexed.pairs[:, 1]
    assert np.all(a < b) and np.all(np.abs(table.tempo[a] - table.tempo[b]) <= cfg.tempo_tol_bpm)
    if cfg.same_key:
        assert np.all(table.key[a] == table.key[b])


def test_partner_cap_keeps_the_closest_pairs():
    table = random_feature_table(600, seed=5)
    cfg = PairingConfig(tempo_tol_bpm=20.0, min_chroma_similarity=None, loudness_tol_lu=None, max_partners_per_clip=2)
    pairs = find_pairs(table, cfg).pairs
    kept = limit_partners(table, pairs, cfg)
    assert 0 < len(kept) < len(pairs)
    assert np.bincount(kept.ravel(), minlength=len(table)).max() <= 2
    # The closest pair of all always survives.
    gaps = np.abs(table.tempo[pairs[:, 0]] - table.tempo[pairs[:, 1]])
    assert pairs[np.argmin(gaps)].tolist() in kept.tolist()


def test_table_from_rows_checks_features():
    feats = {"tempo_bpm": 120.0, "key": 3, "beat_regularity": 0.9, "lufs": None, "chroma": [1.0] * 12}
    table = FeatureTable.from_rows([("a", feats, ["piano", "drums", "unknown-tag"]), ("b", feats, [])])
    assert np.isnan(table.lufs).all() and np.allclose(np.linalg.norm(table.chroma, axis=1), 1.0)
    assert bin(int(table.instruments[0])).count("1") == 2 and table.instruments[1] == 0
    with pytest.raises(DataError, match="clip 'c': bad features"):
        FeatureTable.from_rows([("c", {**feats, "chroma": [1.0] * 11}, [])])
    with pytest.raises(ConfigError, match="tempo_tol_bpm must be > 0"):
        PairingConfig(tempo_tol_bpm=0)


@pytest.mark.parametrize("caption, tags", [
    ("A calm piano piece with soft strings and no drums.", ["piano", "strings"]),
    ("Rock with electric guitar, a bass guitar and drums", ["bass", "drums", "electric guitar", "guitar"]),
    ("A drum machine beat with synthesizers and male vocals", ["beat machine", "synth", "vocals"]),
    ("Played without vocals or guitar; features a flute", ["flute"]),
    ("An electric piano and a saxophone", ["keyboard", "saxophone"]),
    ("Ambient soundscape", []),
])
def test_instrument_tags_from_captions(caption, tags):
    assert parse_instruments(caption) == tags


def test_key_profiles_find_major_and_minor_keys():
    major = np.zeros(12)
    major[[2, 6, 9]] = 1.0  # D F# A
    major[[4, 7, 11, 1]] += 0.3  # rest of the D major scale
    assert KEY_NAMES[estimate_key(major)[0]] == "D major"
    minor = np.zeros(12)
    minor[[9, 0, 4]] = 1.0  # A C E
    minor[[11, 2, 5, 7]] += 0.3
    assert KEY_NAMES[estimate_key(minor)[0]] == "A minor"
