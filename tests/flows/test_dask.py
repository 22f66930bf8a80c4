"""The build flow on a local Dask cluster of two worker processes (prefect-dask), reporting to the one
Prefect server the test session started: the same rows as the threaded build; the units that declare a GPU
(the speech stage's Whisper, the fine LLM step, the encoders) and a stage named in run.gpu_stages placed
only on the worker that has the GPU resource; nothing left running."""

import json
import os

import pandas as pd
import psutil

from flows.build import run_build
from merr_builder.config import load_config


def test_the_build_runs_on_a_two_process_dask_cluster_with_the_same_rows(clips, tiny_encoders, tiny_lm, tmp_path):
    from distributed import Client, Nanny, Scheduler, SpecCluster

    folder = tmp_path / "input"
    folder.mkdir()
    for name in ("speech_en_happy", "speech_en_angry", "speech_en_fast_loud"):
        os.symlink(clips.speech[name], folder / clips.speech[name].name)
    # The fine step with a local model (a tiny random Llama: fast) and an encoder: both want a GPU.
    settings = ["annotate.au_filter=false", "annotate.fine_backend=transformers", f"annotate.model_dir={tiny_lm}", "annotate.max_new_tokens=8",
                "run.partition_size=1", f"encode.image_encoder={tiny_encoders / 'vit'}"]  # fmt: skip
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
            config = load_config(None, [*settings, f"run.dask_address={cluster.scheduler_address}", "run.gpu_stages=[faces]"])
            summary = run_build(folder, tmp_path / "dask", config)
    finally:
        cluster.close()
    assert summary.rows == 3
    runs = [run for partition in json.loads((tmp_path / "dask" / "manifest.json").read_text())["partitions"] for run in partition]
    manifest = json.loads((tmp_path / "dask" / "manifest.json").read_text())
    runs += [run for step_runs in manifest["steps"].values() for run in step_runs]
    on = {unit: {int(r["worker"].rsplit(":", 1)[1]) for r in runs if r["stage"] == unit} for unit in manifest["stages"]}
    assert on["faces"] == on["speech"] == on["fine"] == on["encoders"] == {gpu_pid} and set().union(*on.values()) <= set(pid_of.values())
    assert manifest["stages"]["speech"]["wants_gpu"] and manifest["stages"]["fine"]["wants_gpu"]
    assert not manifest["stages"]["coarse"]["wants_gpu"] and not manifest["stages"]["media"]["wants_gpu"]
    threads = pd.read_parquet(tmp_path / "threads" / "shards").sort_values("clip_id").reset_index(drop=True)
    dask = pd.read_parquet(tmp_path / "dask" / "shards").sort_values("clip_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(threads, dask)
    # (multiprocessing's resource tracker is the standard library's helper of this test process; it ends with it)
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline())]  # fmt: skip
    assert left == [], [p.cmdline() for p in left]
