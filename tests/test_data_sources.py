"""Sources (folders, segment CSVs), shards, and the yt-dlp downloader's failure reporting."""

from __future__ import annotations

import importlib.util

import pytest

from datasets_build.download import DownloadConfig, YtDlpDownloader
from datasets_build.sources import load_sources, parse_shard, read_segment_csv, scan_folder, select_shard, shard_of
from m2ugen.errors import ConfigError, DataError


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folder_items_group_media_by_stem(tmp_path):
    touch(tmp_path / "a.wav")
    touch(tmp_path / "a.jpg")
    touch(tmp_path / "sub" / "b.mp4")
    touch(tmp_path / "c.wav")
    touch(tmp_path / "c.mp3")
    touch(tmp_path / "notes.txt")
    items = {item.id: item for item in scan_folder(tmp_path)}
    assert sorted(items) == ["a", "c", "sub__b"]
    assert items["a"].audio.name == "a.wav" and items["a"].image.name == "a.jpg" and items["a"].video is None
    assert items["sub__b"].video.name == "b.mp4"
    assert items["c"].error == "ambiguous audio: both c.mp3 and c.wav"
    with pytest.raises(DataError, match="source folder not found"):
        scan_folder(tmp_path / "nope")


def test_empty_or_unreadable_sources_are_errors_not_empty_builds(tmp_path):
    (tmp_path / "empty").mkdir()
    touch(tmp_path / "text" / "notes.txt")
    with pytest.raises(DataError, match="empty: no media files found"):
        load_sources([tmp_path / "empty"])
    with pytest.raises(DataError, match="text: no media files found"):
        load_sources([tmp_path / "text"])
    with pytest.raises(DataError, match="must be a media folder or a .csv"):
        load_sources([tmp_path / "text" / "notes.txt"])
    binary = tmp_path / "segments.csv"
    binary.write_bytes(b"\xff\xfe\x00abc,0,10\n")
    with pytest.raises(DataError, match="segments.csv: not a UTF-8 CSV"):
        load_sources([binary])
    header_only = tmp_path / "header.csv"
    header_only.write_text("YTID,start_seconds,end_seconds\n")
    with pytest.raises(DataError, match="header.csv: no segments"):
        load_sources([header_only])
    odd = tmp_path / "odd.csv"
    odd.write_text("abc,nan,10\ndef,-5,3\nghi,0,10\n")
    items = read_segment_csv(odd)
    assert [item.error is None for item in items] == [False, False, True]
    assert "finite seconds >= 0" in items[0].error and "finite seconds >= 0" in items[1].error


def test_segment_csv_in_audioset_and_plain_layouts(tmp_path):
    media = tmp_path / "media"
    touch(media / "abc_30.mp3")
    audioset = tmp_path / "audioset.csv"
    audioset.write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# num_ytids=3, num_segs=3, num_unique_labels=527, num_positive_labels=3\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        'abc, 30.000, 40.000, "/m/04rlf,/m/0l14md"\n'
        'abc, 30.000, 40.000, "/m/04rlf"\n'
        "def, 12.500, 22.500, /m/04rlf\n"
        "bad, x, 10\n"
    )
    items = read_segment_csv(audioset, media)
    assert [item.id for item in items] == ["abc_30", "def_12.5", "row7"]
    assert items[0].audio == media / "abc_30.mp3" and items[0].segment.url.endswith("watch?v=abc")
    assert items[1].audio is None and items[1].segment.start_s == 12.5 and items[1].segment.end_s == 22.5
    assert "expected YTID,start_seconds,end_seconds" in items[2].error
    plain = tmp_path / "plain.csv"
    plain.write_text("YTID,start_seconds,end_seconds\nxyz,0,10\n")
    assert [item.id for item in read_segment_csv(plain)] == ["xyz_0"]
    with pytest.raises(DataError, match="also comes from another source"):
        load_sources([plain, plain])


def test_shards_partition_the_items_stably(tmp_path):
    for i in range(40):
        touch(tmp_path / f"clip{i:02d}.wav")
    items = scan_folder(tmp_path)
    shards = [select_shard(items, (i, 3)) for i in range(3)]
    ids = [item.id for shard in shards for item in shard]
    assert sorted(ids) == sorted(item.id for item in items) and len(set(ids)) == 40
    assert all(shards) and all(shard_of(item.id, 3) == i for i, shard in enumerate(shards) for item in shard)
    assert [item.id for item in select_shard(items, (1, 3), limit=2)] == [item.id for item in shards[1][:2]]
    # Adding items never moves old ones to another shard.
    touch(tmp_path / "zzz.wav")
    grown = scan_folder(tmp_path)
    for i, shard in enumerate(shards):
        assert {item.id for item in shard} <= {item.id for item in select_shard(grown, (i, 3))}


@pytest.mark.parametrize("text", ["1", "a/b", "2/2", "-1/3", "0/0"])
def test_bad_shard_specs(text):
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(text)


@pytest.mark.skipif(importlib.util.find_spec("yt_dlp") is None, reason="yt-dlp (extra 'download') not installed")
def test_downloader_failure_carries_the_reason(tmp_path):
    """Offline (as in CI) yt-dlp cannot reach YouTube; the reason must surface, never be swallowed."""
    items = read_segment_csv(_csv(tmp_path), tmp_path / "media")
    downloader = YtDlpDownloader(DownloadConfig(media_dir=tmp_path / "media", socket_timeout_s=3))
    with pytest.raises(DataError, match=r"download of https://www.youtube.com/watch\?v=zzzzzzzzzzz failed: .+"):
        downloader.fetch(items[0])


def _csv(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("zzzzzzzzzzz, 0.000, 10.000\n")
    return path
