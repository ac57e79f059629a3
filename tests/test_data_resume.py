"""Kill ``m2ugen-data mucaps`` with SIGKILL in the middle of a build, rerun it, and check nothing is lost,
duplicated or captioned twice (the captioner is a plugin that logs every item it captions)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from data_utils import music, sine, write_wav

from datasets_build.cli import main
from datasets_build.manifest import JsonlAppender, load_index, read_manifest

PLUGIN = textwrap.dedent('''
    import os
    import signal
    from pathlib import Path


    class LoggingCaptioner:
        """Logs each captioned item; SIGKILLs its own process at the start of call number KILL_AT_CALL."""

        name = "logging-fake"

        def __init__(self):
            self.log = Path(os.environ["CAPTION_LOG"])
            self.kill_at_call = int(os.environ.get("KILL_AT_CALL", "0"))
            self.calls = 0

        def caption(self, items):
            self.calls += 1
            if self.calls == self.kill_at_call:
                os.kill(os.getpid(), signal.SIGKILL)
            with self.log.open("a") as handle:
                handle.writelines(f"{Path(p).stem}\\n" for p in items)
            return [f"a song called {Path(p).stem}" for p in items]
''')


def run_cli(args: list[str], tmp_path: Path, kill_at_call: int = 0) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
        "CAPTION_LOG": str(tmp_path / "calls.log"),
        "KILL_AT_CALL": str(kill_at_call),
    }
    return subprocess.run([sys.executable, "-m", "datasets_build.cli", *args], env=env, capture_output=True, text=True, timeout=300)


def test_sigkill_then_rerun_gives_every_item_once_and_never_recaptions(tmp_path):
    src = tmp_path / "src"
    songs = [f"song{i:02d}" for i in range(9)]
    for i, stem in enumerate(songs):
        write_wav(src / f"{stem}.wav", music(90 + 5 * i, 60 + i % 5, seconds=1.5))
    write_wav(src / "silence.wav", sine(440, 1.5, 0.0))
    (tmp_path / "fakecap.py").write_text(PLUGIN)
    out = tmp_path / "out"
    args = ["mucaps", "--source", str(src), "--out", str(out), "--batch-size", "2", "--no-progress",
            "--music-captioner", "plugin:fakecap:LoggingCaptioner"]

    killed = run_cli(args, tmp_path, kill_at_call=3)
    assert killed.returncode == -9, killed.stderr
    captioned_before = set(load_index(out / "cache" / "music_captions.jsonl"))
    written_before = [r.id for r in read_manifest(out / "mucaps.jsonl")]
    assert 0 < len(written_before) < len(songs)
    calls_before = (tmp_path / "calls.log").read_text().split()
    # Simulate the worst moment of the kill too: half a line written to the manifest.
    with (out / "mucaps.jsonl").open("a") as handle:
        handle.write('{"id": "song99", "task": "capt')

    finished = run_cli(args, tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert "mucaps: 9 records" in finished.stdout
    ids = [r.id for r in read_manifest(out / "mucaps.jsonl")]
    assert sorted(ids) == songs  # no duplicates, nothing missing, the partial line is gone
    calls = (tmp_path / "calls.log").read_text().split()
    calls_after = calls[len(calls_before):]
    assert Counter(calls) == Counter(songs)  # every song captioned exactly once over both runs
    assert not set(calls_after) & captioned_before
    assert not set(calls_after) & set(written_before)
    assert load_index(out / "mucaps_filter.jsonl")["silence"]["keep"] is False


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    code = main(["mucaps", "--source", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                 "--music-captioner", "plugin:fakecap:LoggingCaptioner"])
    assert code == 2 and capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing'}: source folder not found"
    assert main(["muedit", "--stage", "pairs", "--out", str(tmp_path), "--shard", "3/2"]) == 2
    assert "--shard '3/2': need 0 <= i < n" in capsys.readouterr().err
    assert main(["muedit", "--stage", "pairs", "--out", str(tmp_path)]) == 2
    assert "no muedit_clips*.jsonl; run the clips stage first" in capsys.readouterr().err
    src = tmp_path / "src"
    write_wav(src / "a.wav", music(100, 60, seconds=1.0))
    assert main(["mucaps", "--source", str(src), "--out", str(tmp_path / "o"), "--music-captioner", "nonsense:x"]) == 2
    assert "expected assistant:DIR, image:DIR, video:DIR or plugin:module:attr" in capsys.readouterr().err


def test_same_shard_started_twice_is_refused(tmp_path):
    with JsonlAppender(tmp_path / "m.jsonl"):
        result = subprocess.run(
            [sys.executable, "-c", "from datasets_build.manifest import JsonlAppender; import sys; JsonlAppender(sys.argv[1])",
             str(tmp_path / "m.jsonl")], capture_output=True, text=True)
    assert result.returncode != 0 and "another process is writing" in result.stderr
