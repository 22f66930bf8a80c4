"""Crash safety: a build killed (SIGKILL to its whole process group) at random moments and started again
ends with exactly the rows of an uninterrupted build, never shows a partial file under a final name, and
one output folder takes one writer at a time (a crashed holder's lock does not count)."""

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from merr_builder.lock import LOCK_NAME, BuildLockedError, build_lock

SETTINGS = ["--partition-size", "1", "--set", "annotate.fine_backend=none", "--set", "annotate.au_filter=false", "--k-frames", "4"]


def _build(input_dir: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "merr_builder.cli", "build", str(input_dir), "--out", str(out), *SETTINGS]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _rows(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "shards").sort_values("clip_id").reset_index(drop=True)


def _nothing_partial_under_a_final_name(out: Path) -> None:
    for shard in (out / "shards").glob("merr-*.parquet") if (out / "shards").exists() else []:
        pq.read_metadata(shard)  # a complete Parquet file (footer present)
    for stored in (out / "stages").rglob("part-*.parquet") if (out / "stages").exists() else []:
        pq.read_metadata(stored)
    if (out / "manifest.json").exists():
        json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def crash_input(clips, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("crash-input")
    for name in ("speech_en_happy", "speech_en_angry"):
        os.symlink(clips.speech[name], folder / clips.speech[name].name)
    return folder


def test_a_build_killed_at_three_random_moments_resumes_to_the_same_rows(crash_input, tmp_path):
    started = time.monotonic()
    reference = _build(crash_input, tmp_path / "reference")
    assert reference.wait(timeout=600) == 0, reference.stderr.read().decode()[-2000:]
    duration = time.monotonic() - started
    expected = _rows(tmp_path / "reference")
    rng = random.Random(1234)
    for point in range(3):  # (each kill and resume costs two builds; the same first moments as with more)
        out = tmp_path / f"killed-{point}"
        victim = _build(crash_input, out)
        moment = rng.uniform(0.3, duration)
        try:
            victim.wait(timeout=moment)
        except subprocess.TimeoutExpired:
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
        _nothing_partial_under_a_final_name(out)
        resumed = _build(crash_input, out)
        assert resumed.wait(timeout=600) == 0, f"after a kill at {moment:.1f} s: {resumed.stderr.read().decode()[-2000:]}"
        pd.testing.assert_frame_equal(_rows(out), expected, obj=f"rows after a kill at {moment:.1f} s")
        leftovers = [p.name for p in (out / "shards").iterdir() if not p.name.startswith("merr-")]
        assert leftovers == [], leftovers


def test_a_second_build_on_the_same_folder_is_refused_until_the_holder_dies(crash_input, tmp_path):
    out = tmp_path / "out"
    holder = _build(crash_input, out)
    deadline = time.monotonic() + 120
    while not ((out / LOCK_NAME).exists() and (out / LOCK_NAME).read_text().strip()):
        assert time.monotonic() < deadline and holder.poll() is None
        time.sleep(0.05)
    second = subprocess.run([sys.executable, "-m", "merr_builder.cli", "build", str(crash_input), "--out", str(out), *SETTINGS],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert second.returncode == 2 and f"pid {holder.pid}" in second.stderr.replace("\n", " ")
    os.killpg(holder.pid, signal.SIGKILL)  # the holder crashes: its lock goes with it
    holder.wait()
    with build_lock(out) as lock:  # taken over at once, no clean-up needed
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(BuildLockedError, match=f"pid {os.getpid()}"):
            with build_lock(out):  # a second writer in this very process is refused as well
                pass


def _stored_answers(out: Path) -> int:
    with sqlite3.connect(out / "cache" / "llm.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


def test_a_fine_step_killed_midway_asks_the_llm_again_only_for_rows_without_a_stored_answer(sample_build, tmp_path):
    """SIGKILL to `merr annotate` while the fine step talks to a real `transformers serve` (one request at a
    time), at a random request: the rerun sends exactly the requests whose answers were not stored, and the
    shards equal those of an uninterrupted run."""
    from serving import requests_received, transformers_serve

    from merr_builder.assets import smollm2_dir

    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for copy in (reference, killed):
        shutil.copytree(sample_build, copy, symlinks=True)
    log = tmp_path / "serve.log"
    with transformers_serve(smollm2_dir(), log) as url:
        # With the AU filter off the clips it left out come back as neutral rows (a rerun of au_filter on
        # the stored stages), so the fine step has enough rows to be killed among.
        annotate = ["annotate", "--llm", url, "--llm-model", str(smollm2_dir()), "--set", "annotate.concurrency=1",
                    "--set", "annotate.max_new_tokens=24", "--set", "annotate.au_filter=false"]  # fmt: skip

        def merr(out: Path) -> subprocess.Popen:
            command = [sys.executable, "-m", "merr_builder.cli", *annotate[:1], "--from", str(out), *annotate[1:]]
            return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

        assert merr(reference).wait(timeout=600) == 0
        asked = requests_received(log)  # every selected row, once
        assert asked >= 3
        stored_before = _stored_answers(killed)  # (the sample build's own answers, from its in-process model)
        victim = merr(killed)
        kill_at = asked + random.Random(7).randint(3, asked)  # the k-th request of this run has arrived
        deadline = time.monotonic() + 600
        while requests_received(log) < kill_at:
            assert victim.poll() is None and time.monotonic() < deadline, victim.stderr.read().decode()[-2000:]
            time.sleep(0.02)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        stored = _stored_answers(killed) - stored_before
        sent_before_kill = requests_received(log) - asked
        assert 0 < stored < asked and stored <= sent_before_kill
        resumed = merr(killed)
        assert resumed.wait(timeout=600) == 0, resumed.stderr.read().decode()[-2000:]
        asked_again = requests_received(log) - asked - sent_before_kill
    assert asked_again == asked - stored  # no row whose answer was stored was asked again
    pd.testing.assert_frame_equal(_rows(killed), _rows(reference))
