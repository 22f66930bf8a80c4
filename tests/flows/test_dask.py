"""The build flow on a local Dask cluster of two worker processes (prefect-dask), reporting to the one
Prefect server the test session started: the same rows as the threaded build, a GPU stage placed only on
the worker that has the GPU resource, nothing left running."""

import json
import os

import pandas as pd
import psutil

from flows.build import run_build
from merr_builder.config import load_config


def test_the_build_runs_on_a_two_process_dask_cluster_with_the_same_rows(clips, tmp_path):
    from distributed import Client, Nanny, Scheduler, SpecCluster

    folder = tmp_path / "input"
    folder.mkdir()
    for name in ("speech_en_happy", "speech_en_angry", "speech_en_fast_loud"):
        os.symlink(clips.speech[name], folder / clips.speech[name].name)
    settings = ["annotate.fine_backend=none", "run.partition_size=1"]
    run_build(folder, tmp_path / "threads", load_config(None, settings))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    # Two worker processes; only the second has a GPU (as `dask worker --resources GPU=1` declares one).
    cluster = SpecCluster(
        scheduler={"cls": Scheduler, "options": {"dashboard_address": None}},
        workers={"cpu": {"cls": Nanny, "options": {"nthreads": 1}}, "gpu": {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}}}},
    )  # fmt: skip
    try:
        with Client(cluster) as client:
            client.wait_for_workers(2)
            pid_of = client.run(os.getpid)
            gpu_pid = next(pid for address, pid in pid_of.items() if client.scheduler_info()["workers"][address]["resources"])
            config = load_config(None, [*settings, f"run.dask_address={cluster.scheduler_address}", "run.gpu_stages=[speech]"])
            summary = run_build(folder, tmp_path / "dask", config)
    finally:
        cluster.close()
    assert summary.rows == 3
    runs = [run for partition in json.loads((tmp_path / "dask" / "manifest.json").read_text())["partitions"] for run in partition]
    on = {stage: {int(r["worker"].rsplit(":", 1)[1]) for r in runs if r["stage"] == stage} for stage in ("ingest", "media", "faces", "speech")}
    assert on["speech"] == {gpu_pid} and set().union(*on.values()) <= set(pid_of.values())
    threads = pd.read_parquet(tmp_path / "threads" / "shards").sort_values("clip_id").reset_index(drop=True)
    dask = pd.read_parquet(tmp_path / "dask" / "shards").sort_values("clip_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(threads, dask)
    # (multiprocessing's resource tracker is the standard library's helper of this test process; it ends with it)
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline())]  # fmt: skip
    assert left == [], [p.cmdline() for p in left]
