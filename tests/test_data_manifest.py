"""The manifest schema (docs/manifests.md), atomic append with repair, the resume index."""

from __future__ import annotations

import json

import pytest

from datasets_build.manifest import FIELDS, JsonlAppender, ManifestRecord, load_index, read_manifest, validate_record
from datasets_build.manifest import write_manifest
from m2ugen.errors import DataError

VALID = [
    {"id": "a", "task": "caption", "audio": "a.wav", "instruction": "", "response": "a calm piano piece"},
    {"id": "b", "task": "qa", "image": "/abs/b.jpg", "instruction": "What is shown?", "response": "a beach"},
    {"id": "c", "task": "text", "instruction": "Name a scale.", "response": "C major"},
    {"id": "d", "task": "generate", "video": "d.mp4", "instruction": "Score this.", "response": "Here is a music that is calm.",
     "target_audio": "d.wav", "target_caption": "calm strings"},
    {"id": "e__f", "task": "edit", "audio": "e.wav", "instruction": "Swap the piano for a guitar.",
     "response": "Here is a music that is a guitar piece.", "target_audio": "f.wav", "target_caption": "a guitar piece",
     "meta": {"tempo_bpm": 120.0}},
]


@pytest.mark.parametrize("obj", VALID, ids=[o["task"] for o in VALID])
def test_valid_records_round_trip(obj):
    record = validate_record(obj)
    data = record.to_dict()
    assert list(data) == list(FIELDS)
    assert {k: v for k, v in data.items() if v is not None and v != {}} == {k: v for k, v in obj.items() if v != {}}
    assert validate_record(json.loads(json.dumps(data))) == record


@pytest.mark.parametrize("change, message", [
    ({"task": "sing"}, "task must be one of"),
    ({"id": ""}, "field 'id' is empty"),
    ({"response": None}, "field 'response' is missing or null"),
    ({"response": 3}, "field 'response' must be a string, got int"),
    ({"audio": None}, "needs exactly one of audio/image/video, got none"),
    ({"image": "x.jpg"}, "needs exactly one of audio/image/video, got ['audio', 'image']"),
    ({"meta": []}, "field 'meta' must be an object"),
    ({"captions": "x"}, "unknown field(s) ['captions']"),
])
def test_invalid_caption_records_name_the_problem(change, message):
    with pytest.raises(DataError, match="manifest.jsonl:7: .*" + message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        validate_record({**VALID[0], **change}, where="manifest.jsonl:7")


@pytest.mark.parametrize("obj, message", [
    ({**VALID[4], "audio": None}, "an 'edit' record needs the source 'audio'"),
    ({**VALID[4], "instruction": " "}, "field 'instruction' is empty"),
    ({**VALID[3], "target_caption": None}, "a 'generate' record needs 'target_caption'"),
    ({**VALID[2], "audio": "x.wav"}, "a 'text' record has no media"),
    ("not an object", "a record must be a JSON object, got str"),
])
def test_task_rules(obj, message):
    with pytest.raises(DataError, match=message):
        validate_record(obj)


def test_appender_repairs_a_partial_last_line_and_index_resumes(tmp_path):
    path = tmp_path / "m.jsonl"
    with JsonlAppender(path) as out:
        assert out.append([VALID[0], VALID[1]]) == 2
    with path.open("ab") as handle:
        handle.write(b'{"id": "half", "task": "cap')  # a killed writer
    assert set(load_index(path)) == {"a", "b"}  # the index ignores the partial line
    with pytest.raises(DataError, match=r"m.jsonl:3: truncated last line"):
        read_manifest(path)
    with JsonlAppender(path) as out:  # reopening cuts it off
        out.append([VALID[2]])
    assert [r.id for r in read_manifest(path)] == ["a", "b", "c"]
    assert path.read_bytes().endswith(b"\n") and b"half" not in path.read_bytes()


def test_read_manifest_rejects_duplicates_bad_json_and_missing_files(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(VALID[0]) + "\n" + json.dumps(VALID[0]) + "\n")
    with pytest.raises(DataError, match=r"m.jsonl:2: duplicate id 'a'"):
        read_manifest(path)
    path.write_text("{nope\n")
    with pytest.raises(DataError, match=r"m.jsonl:1: not valid JSON"):
        read_manifest(path)
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "none.jsonl")


def test_read_manifest_names_bad_bytes_and_accepts_a_whole_last_line_without_newline(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(VALID[0]) + "\n" + json.dumps(VALID[1]))  # hand-written, no final newline
    assert [r.id for r in read_manifest(path)] == ["a", "b"]
    path.write_bytes(json.dumps(VALID[0]).encode() + b"\n\xff\xfe{}\n")
    with pytest.raises(DataError, match=r"m.jsonl:2: not UTF-8 text"):
        read_manifest(path)
    log = tmp_path / "log.jsonl"
    log.write_text('{"id": "a"}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"log.jsonl:2: expected a JSON object with 'id'"):
        load_index(log)
    log.write_bytes(b'{"id": "a"}\n\xff\n')
    with pytest.raises(DataError, match=r"log.jsonl:2: not valid JSON"):
        load_index(log)


def test_write_manifest_replaces_atomically_and_validates(tmp_path):
    path = tmp_path / "derived.jsonl"
    records = [validate_record(o) for o in VALID]
    assert write_manifest(path, records) == 5
    assert read_manifest(path) == records
    with pytest.raises(DataError, match="task must be one of"):
        write_manifest(path, [ManifestRecord(id="x", task="bogus", instruction="", response="r")])
    assert read_manifest(path) == records  # the old file is untouched after a failed write
