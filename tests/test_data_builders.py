"""End-to-end builds of MUCaps, MUEdit, MUImage and MUVideo on synthetic media, read back by the training reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_utils import (
    CountingCaptioner,
    has_espeak,
    music,
    sine,
    speech,
    tiny_blip,
    tiny_chat_lm,
    tiny_video_captioner,
    write_image,
    write_video,
    write_wav,
)

from datasets_build.captioners import ImageCaptioner, VideoCaptioner
from datasets_build.engine import BuildConfig
from datasets_build.manifest import load_index, read_manifest
from datasets_build.muedit import build_muedit_clips, build_muedit_pairs
from datasets_build.mucaps import build_mucaps
from datasets_build.muvisual import build_muimage, build_muvideo
from datasets_build.pairing import PairingConfig
from datasets_build.sources import SourceItem, load_sources, read_segment_csv, scan_folder
from datasets_build.writers import ChatLMWriter, TemplateWriter
from m2ugen.errors import DataError
from training.config import DataSource
from training.data import read_source


def training_records(path: Path) -> list:
    """What the training package reads from a manifest (media made absolute); every media file must exist."""
    records, problems = read_source(DataSource(format="manifest", path=str(path)))
    assert not problems
    for record in records:
        for media in (record.audio, record.image, record.video, record.target_audio):
            assert media is None or Path(media).is_file(), media
    return records


def config(out: Path, **kwargs) -> BuildConfig:
    return BuildConfig(out_dir=out, batch_size=kwargs.pop("batch_size", 3), progress=False, **kwargs)


# ----------------------------------------------------------------------------------------------
# MUCaps


@pytest.fixture(scope="module")
def mucaps_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mucaps_src")
    for i, (bpm, tonic) in enumerate([(120, 60), (96, 57), (140, 62), (80, 65)]):
        write_wav(root / f"song{i}.wav", music(bpm, tonic, seconds=3.0))
    write_wav(root / "quiet" / "silence.wav", sine(440, 3.0, 0.0))
    write_wav(root / "quiet" / "clipped.wav", (2.0 * music(100, 60, seconds=3.0) / 0.3).clip(-1, 1))
    if has_espeak():
        speech(root / "talk.wav")
    return root


def test_mucaps_filters_captions_and_resumes(mucaps_corpus, tmp_path):
    out = tmp_path / "mucaps"
    items = scan_folder(mucaps_corpus)
    captioner = CountingCaptioner(prefix="a calm piano piece")
    summary = build_mucaps(items, config(out), captioner=captioner)

    records = read_manifest(out / "mucaps.jsonl")
    assert sorted(r.id for r in records) == ["song0", "song1", "song2", "song3"]
    assert sorted(captioner.calls) == ["song0", "song1", "song2", "song3"]  # rejected clips are not captioned
    for record in records:
        assert record.task == "caption" and record.response == f"a calm piano piece {record.id}"
        assert -40 < record.meta["filter"]["lufs"] < -5 and record.meta["filter"]["speech_ratio"] <= 0.1
    decisions = load_index(out / "mucaps_filter.jsonl")
    assert set(decisions) == {item.id for item in items}  # every decision is logged, kept or not
    assert decisions["quiet__silence"]["keep"] is False and decisions["quiet__silence"]["lufs"] is None
    assert decisions["quiet__clipped"]["keep"] is False and decisions["quiet__clipped"]["clip_ratio"] > 0.001
    if has_espeak():
        assert decisions["talk"]["keep"] is False and decisions["talk"]["speech_ratio"] > 0.5
        assert decisions["talk"]["lufs"] is not None  # measured, recorded, file kept
        assert (mucaps_corpus / "talk.wav").is_file()
    assert summary["records"] == 4 and summary["filter"]["rejected"] == len(items) - 4
    assert Path(summary["histogram_png"]).stat().st_size > 1000
    assert len(training_records(out / "mucaps.jsonl")) == 4
    t2m = training_records(out / "mucaps_t2m.jsonl")
    assert {r.task for r in t2m} == {"generate"} and all(r.target_caption == r.instruction for r in t2m)

    again = build_mucaps(items, config(out), captioner=captioner)
    assert len(captioner.calls) == 4 and again["this_run"]["written"] == 0
    assert len(read_manifest(out / "mucaps.jsonl")) == 4


def test_csv_source_records_every_failure_with_its_reason(tmp_path):
    media = tmp_path / "downloads"
    write_wav(media / "AAAAAAAAAAA_30.wav", music(110, 60, seconds=2.0))
    csv_path = tmp_path / "segments.csv"
    csv_path.write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        'AAAAAAAAAAA, 30.000, 40.000, "/m/04rlf"\n'
        'BBBBBBBBBBB, 10.000, 20.000, "/m/04rlf"\n'
        'CCCCCCCCCCC, 0.000, 10.000, "/m/04rlf"\n'
        "DDDDDDDDDDD, 5, 1\n"
    )

    class RefusingDownloader:
        def fetch(self, item: SourceItem) -> SourceItem:
            if item.id.startswith("CCC"):
                raise DataError(f"download of {item.segment.url} failed: Video unavailable")
            return item

    items = read_segment_csv(csv_path, media)
    out = tmp_path / "out"
    build_mucaps(items, config(out), captioner=CountingCaptioner(), downloader=RefusingDownloader())
    assert [r.id for r in read_manifest(out / "mucaps.jsonl")] == ["AAAAAAAAAAA_30"]
    failures = load_index(out / "mucaps_failures.jsonl")
    assert "Video unavailable" in failures["CCCCCCCCCCC_0"]["reason"]
    assert "no audio or video file" in failures["BBBBBBBBBBB_10"]["reason"]
    assert failures["DDDDDDDDDDD_5"]["stage"] == "source" and "end_seconds" in failures["DDDDDDDDDDD_5"]["reason"]


def test_too_many_failures_stop_the_build(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(6):
        (broken / f"bad{i}.wav").write_bytes(b"RIFF not really a wav")
    with pytest.raises(DataError, match=r"6 of 6 items failed"):
        build_mucaps(scan_folder(broken), config(tmp_path / "out", min_items_before_abort=4), captioner=CountingCaptioner())


# ----------------------------------------------------------------------------------------------
# MUEdit

EDIT_CORPUS = {
    # stem: (bpm, tonic, minor, harmonic weights (timbre), caption)
    "a_piano": (120, 60, False, (1.0, 0.4, 0.2), "A bright piano melody with soft strings."),
    "b_guitar": (120, 60, False, (1.0, 0.8, 0.5, 0.3), "An acoustic guitar strums chords over drums."),
    "c_piano2": (120, 60, False, (1.0, 0.2), "Gentle piano chords with strings in the background."),
    "d_slow": (84, 57, True, (1.0, 0.5, 0.1), "A sad violin and cello duet."),
    "e_flute": (84, 57, True, (1.0, 0.1), "A flute melody over a harp."),
}


def test_muedit_pairs_alike_tempo_and_key_with_other_instruments(tmp_path):
    src = tmp_path / "clips"
    for stem, (bpm, tonic, minor, harmonics, _) in EDIT_CORPUS.items():
        write_wav(src / f"{stem}.wav", music(bpm, tonic, minor, seconds=6.0, harmonics=harmonics))
    out = tmp_path / "muedit"
    captioner = CountingCaptioner(captions={stem: spec[-1] for stem, spec in EDIT_CORPUS.items()})
    clips_summary = build_muedit_clips(scan_folder(src), config(out), captioner=captioner)
    assert clips_summary["records"] == 5 and clips_summary["tempo_bpm"]["count"] == 5

    clips = {r.id: r for r in training_records(out / "muedit_clips.jsonl")}
    for stem, (bpm, tonic, minor, _, _) in EDIT_CORPUS.items():
        features = clips[stem].meta["features"]
        assert abs(features["tempo_bpm"] - bpm) < 0.05 * bpm
        assert features["key"] == tonic % 12 + (12 if minor else 0)
    assert clips["b_guitar"].meta["instruments"] == ["acoustic guitar", "drums", "guitar"]

    pairing = PairingConfig(tempo_tol_bpm=6.0, loudness_tol_lu=6.0)
    summary = build_muedit_pairs(config(out), writer=TemplateWriter(), pairing=pairing)
    edits = training_records(out / "muedit.jsonl")
    assert sorted(r.id for r in edits) == ["a_piano__b_guitar", "b_guitar__c_piano2", "d_slow__e_flute"]
    counts = summary["pairs_admitted_by_criterion"]
    assert counts["key"] == 4 and counts["tempo"] == 4 and counts["instruments"] == 3 and counts["all"] == 3
    edit = next(r for r in edits if r.id == "a_piano__b_guitar")
    assert edit.task == "edit" and edit.target_caption == EDIT_CORPUS["b_guitar"][-1]
    assert edit.audio.endswith("a_piano.wav") and edit.target_audio.endswith("b_guitar.wav")
    assert edit.meta["source_caption"] == EDIT_CORPUS["a_piano"][-1]
    assert "acoustic guitar strums" in edit.instruction


# ----------------------------------------------------------------------------------------------
# MUImage and MUVideo (tiny random captioners and instruction LM, built in code)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "blip": tiny_blip(root / "blip"),
        "video": tiny_video_captioner(root / "video"),
        "lm": tiny_chat_lm(root / "lm"),
    }


def test_muimage_with_tiny_blip_and_chat_lm(tmp_path, tiny_models):
    src = tmp_path / "pairs"
    for i in range(3):
        write_image(src / f"pic{i}.jpg", seed=i)
        write_wav(src / f"pic{i}.wav", music(100 + 10 * i, 60, seconds=2.0))
    write_video(src / "clip.mp4", seconds=2.0)  # no image: the middle frame and the sound track are extracted
    out = tmp_path / "muimage"
    music_captioner = CountingCaptioner(prefix="an upbeat song")
    image_captioner = ImageCaptioner(tiny_models["blip"], max_new_tokens=6, num_beams=1)
    writer = ChatLMWriter(tiny_models["lm"], max_new_tokens=8, temperature=0.0)
    summary = build_muimage(load_sources([src]), config(out), music_captioner=music_captioner,
                            image_captioner=image_captioner, writer=writer)
    records = training_records(out / "muimage.jsonl")
    assert sorted(r.id for r in records) == ["clip", "pic0", "pic1", "pic2"], summary
    for record in records:
        assert record.task == "generate" and record.image and record.instruction and record.response
        assert record.target_caption == f"an upbeat song {record.id}"
        assert record.meta["image_caption"] and record.meta["captioners"]["image"] == "image:blip"
    clip = next(r for r in records if r.id == "clip")
    assert clip.image.endswith("media/images/clip.jpg") and clip.target_audio.endswith("media/audio/clip.wav")
    assert abs(clip.meta["duration_s"] - 2.0) < 0.2


def test_muvideo_with_tiny_videomae_gpt2(tmp_path, tiny_models):
    src = tmp_path / "videos"
    for i in range(3):
        write_video(src / f"v{i}.mp4", seconds=1.5, bpm=100 + 20 * i)
    write_video(src / "mute.mp4", seconds=1.5, with_audio=False)
    out = tmp_path / "muvideo"
    video_captioner = VideoCaptioner(tiny_models["video"], max_new_tokens=6, min_new_tokens=2, num_beams=1)
    summary = build_muvideo(load_sources([src]), config(out), music_captioner=CountingCaptioner(),
                            video_captioner=video_captioner, writer=TemplateWriter())
    records = training_records(out / "muvideo.jsonl")
    assert sorted(r.id for r in records) == ["v0", "v1", "v2"]
    assert all(r.video.endswith(f"{r.id}.mp4") and r.target_audio.endswith(f"media/audio/{r.id}.wav") for r in records)
    failures = load_index(out / "muvideo_failures.jsonl")
    assert set(failures) == {"mute"} and "audio" in failures["mute"]["reason"]
    captions = training_records(out / "muvideo_captions.jsonl")
    assert sorted(r.id for r in captions) == ["v0", "v1", "v2"] and all(r.task == "caption" and r.response for r in captions)
    assert json.loads((out / "muvideo_summary.json").read_text())["records"] == 3 == summary["records"]
