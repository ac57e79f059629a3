import errno

import pytest

from m2ugen.audio import Audio
from m2ugen.errors import MediaError
from m2ugen.files import write_atomically


def full_disk(tmp):
    tmp.write_bytes(b"half a file")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "song.mid"
    path.write_bytes(b"the earlier take")
    with pytest.raises(MediaError, match=r"song\.mid: cannot write MIDI \(.*No space left on device"):
        write_atomically(path, full_disk, "MIDI")
    assert path.read_bytes() == b"the earlier take"
    assert [p.name for p in tmp_path.iterdir()] == ["song.mid"]


def test_write_creates_folders_and_names_an_impossible_one(tmp_path):
    path = write_atomically(tmp_path / "a" / "b.txt", lambda tmp: tmp.write_text("x"), "text")
    assert path.read_text() == "x" and not list(path.parent.glob(".*"))
    (tmp_path / "file").write_text("")
    with pytest.raises(MediaError, match=r"file/c\.wav: cannot write audio"):
        Audio([0.0] * 100, 16000).save(tmp_path / "file" / "c.wav")
