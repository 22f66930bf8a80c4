"""The `merr` command as a user runs it (a subprocess, real Prefect via the session's server)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

MERR = [sys.executable, "-m", "merr_builder.cli"]


def merr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MERR, *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("command", [[], ["build"], ["annotate"]])
def test_help_on_every_command(command):
    result = merr(*command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


def test_build_writes_shards_manifest_and_quarantine(clips, tmp_path: Path):
    (tmp_path / "in").mkdir()
    for path in (clips.speech["speech_en_happy"], clips.zero_bytes):
        os.symlink(path, tmp_path / "in" / path.name)
    result = merr("build", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--k-frames", "4", "--set", "annotate.max_new_tokens=32")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "manifest.json").is_file() and (tmp_path / "out" / "quarantine.parquet").is_file()
    assert list((tmp_path / "out" / "shards").glob("merr-00000-of-00001.parquet"))
    assert "rows written" in result.stderr and "empty_file" in result.stderr


def test_invalid_config_fails_before_any_work_naming_the_field(clips, tmp_path: Path):
    result = merr("build", str(clips.root), "--out", str(tmp_path / "out"), "--set", "media.k_frames=0")
    assert result.returncode == 2
    assert "media.k_frames" in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_input_is_an_input_error(tmp_path: Path):
    result = merr("build", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_exit_code_1_when_no_clip_succeeds(clips, tmp_path: Path):
    (tmp_path / "in").mkdir()
    for path in (clips.zero_bytes, clips.text_as_mp4):
        os.symlink(path, tmp_path / "in" / path.name)
    result = merr("build", str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "no clip succeeded" in result.stderr
    assert (tmp_path / "out" / "quarantine.parquet").is_file()


def test_annotate_on_a_folder_that_is_no_build_is_an_input_error(tmp_path: Path):
    result = merr("annotate", "--from", str(tmp_path))
    assert result.returncode == 2 and "not a finished build" in result.stderr
