"""The build flow on a local Dask cluster of two worker processes (prefect-dask), reporting to the one
Prefect server the test session started: the same rows as the threaded build, nothing left running."""

import os

import pandas as pd
import psutil

from flows.build import run_build
from merr_builder.config import load_config


def test_the_build_runs_on_a_two_process_dask_cluster_with_the_same_rows(clips, tmp_path):
    from distributed import Client, LocalCluster

    folder = tmp_path / "input"
    folder.mkdir()
    for name in ("speech_en_happy", "speech_en_angry", "speech_en_fast_loud"):
        os.symlink(clips.speech[name], folder / clips.speech[name].name)
    settings = ["annotate.fine_backend=none", "run.partition_size=1"]
    run_build(folder, tmp_path / "threads", load_config(None, settings))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with Client(cluster) as client:
            workers = {w["id"] for w in client.scheduler_info()["workers"].values()}
            assert len(workers) == 2
            summary = run_build(folder, tmp_path / "dask", load_config(None, [*settings, f"run.dask_address={cluster.scheduler_address}"]))
            ran_on = client.run(lambda dask_worker: len(dask_worker.state.log))  # both workers did work
    finally:
        cluster.close()
    assert summary.rows == 3 and all(n > 0 for n in ran_on.values())
    threads = pd.read_parquet(tmp_path / "threads" / "shards").sort_values("clip_id").reset_index(drop=True)
    dask = pd.read_parquet(tmp_path / "dask" / "shards").sort_values("clip_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(threads, dask)
    # (multiprocessing's resource tracker is the standard library's helper of this test process; it ends with it)
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline())]  # fmt: skip
    assert left == [], [p.cmdline() for p in left]
