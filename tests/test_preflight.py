"""The preflight: a build whose settings cannot work exits 2 before any stage runs, with one line and no
traceback, and leaves no output folder and no lock file behind (the real `merr` command, run as a user
runs it)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from serving import free_port  # (tests/fixtures)

MERR = [sys.executable, "-m", "merr_builder.cli", "build"]


@pytest.fixture(scope="module")
def one_clip(tmp_path_factory, shared_data) -> Path:
    folder = tmp_path_factory.mktemp("one-clip")
    os.symlink(shared_data / "single_face.mp4", folder / "single_face.mp4")
    return folder


def _refused(args: list[str], out: Path, match: str) -> None:
    proc = subprocess.run([*MERR, *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"}, timeout=300)
    message = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, message)
    assert len(message.splitlines()) == 1 and "Traceback" not in message + proc.stdout, message
    assert match in message, message
    assert not out.exists() or (out.is_file() and out.stat().st_size == 0), sorted(out.iterdir()) if out.is_dir() else out
    assert not (out / ".merr.lock").exists() and not list(out.parent.glob(".merr.lock"))


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        (["--language", "xx"], "speech.language 'xx' is not a language faster_whisper knows"),
        (["--set", "faces.landmarker_path=/nowhere/face_landmarker.task"], "the faces stage cannot find its model"),
        (["--set", "annotate.fine_backend=transformers", "--set", "annotate.model_dir=/nowhere/llm"], "annotate.model_dir /nowhere/llm is not a folder"),
        (["--set", "run.gpu_stages=[fine,nonsense]"], "no stage or step named nonsense"),
    ],
)
def test_settings_that_cannot_work_are_refused_before_any_stage(one_clip, tmp_path, settings, match):
    _refused([str(one_clip), "--out", str(tmp_path / "out"), *settings], tmp_path / "out", match)


def test_a_dead_llm_server_is_refused_before_any_stage(one_clip, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    _refused([str(one_clip), "--out", str(tmp_path / "out"), "--set", "annotate.fine_backend=openai", "--set", f"annotate.server_url={url}",
              "--set", "annotate.server_model=m"], tmp_path / "out", f"annotate.server_url: the LLM server at {url} does not answer")  # fmt: skip


def test_an_llm_folder_transformers_cannot_load_is_refused(one_clip, tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    _refused([str(one_clip), "--out", str(tmp_path / "out"), "--set", "annotate.fine_backend=transformers", "--set", f"annotate.model_dir={folder}"],
             tmp_path / "out", "is not a model transformers can load")  # fmt: skip


def test_an_output_that_is_a_file_or_under_one_is_refused(one_clip, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_bytes(b"")
    _refused([str(one_clip), "--out", str(a_file)], a_file, "is a file, not a folder")
    _refused([str(one_clip), "--out", str(a_file / "out")], a_file / "out", "which is a file")


def test_an_output_where_nothing_can_be_written_is_refused(one_clip):
    # procfs: a file system no one may create a folder in, root included (root passes every permission check)
    _refused([str(one_clip), "--out", "/proc/merr-out"], Path("/proc/merr-out"), "nothing can be written in /proc")
