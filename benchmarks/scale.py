"""Build throughput on 1 and 2 Dask worker processes, and peak memory per worker for clips of 4 s,
3 minutes and 10 minutes (memory must not grow with clip length).

    python benchmarks/scale.py [--clips N] [--memory-only]

Clips: the fixture speech clips (tests/fixtures/make_clips.py), repeated under new names to N clips;
the long clips loop one of them (a speaking face, 4 s) to 3 and to 10 minutes with ffmpeg (audio gaps at
the loop points filled), so ASR, tone and faces all have work for the whole length.
Each run is a real `run_build` against a local Dask cluster (prefect-dask), one Prefect server for all
(the one `flows.server.PrefectServer` starts). Worker memory is the peak resident set of each worker
process, sampled every 50 ms. The fine LLM step is off (it runs once, outside the workers).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))


class PeakMemory:
    """Peak RSS of each process under a set of pids (and their children), sampled in a thread."""

    def __init__(self, pids: list[int]) -> None:
        self.pids, self.peak = pids, dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                try:
                    proc = psutil.Process(pid)
                    rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
                    self.peak[pid] = max(self.peak[pid], rss)
                except psutil.Error:
                    pass
            time.sleep(0.05)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def build_on_cluster(folder: Path, out: Path, workers: int, partition_size: int) -> tuple[float, dict[int, int], int]:
    from distributed import Client, LocalCluster

    from flows.build import run_build
    from merr_builder.config import load_config

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with Client(cluster) as client:
            pids = list(client.run(os.getpid).values())
            settings = ["annotate.fine_backend=none", f"run.partition_size={partition_size}", f"run.dask_address={cluster.scheduler_address}"]
            with PeakMemory(pids) as memory:
                started = time.perf_counter()
                summary = run_build(folder, out, load_config(None, settings))
                seconds = time.perf_counter() - started
    finally:
        cluster.close()
    return seconds, memory.peak, summary.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--memory-only", action="store_true", help="skip the 1 vs 2 worker throughput runs")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import make_clips

    from flows.server import PrefectServer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        server = PrefectServer(tmp / "prefect")
        os.environ.update(server.env())
        server.start()
        try:
            fixtures = make_clips.make_all(tmp / "clips")
            folder = tmp / "input"
            folder.mkdir()
            speech = sorted(fixtures.speech.values())
            for i in range(args.clips):
                os.symlink(speech[i % len(speech)], folder / f"clip_{i:03d}.mp4")
            seconds_of = {}
            for workers in () if args.memory_only else (1, 2):
                seconds, peak, rows = build_on_cluster(folder, tmp / f"out{workers}", workers, partition_size=2)
                seconds_of[workers] = seconds
                print(f"{workers} worker(s): {rows} clips in {seconds:.1f} s = {rows / seconds:.2f} clips/s; "
                      f"peak RSS per worker {', '.join(f'{v / 2**20:.0f} MiB' for v in peak.values())}", flush=True)  # fmt: skip
            if seconds_of:
                efficiency = seconds_of[1] / (2 * seconds_of[2])
                print(f"scaling efficiency 1 → 2 workers: {efficiency:.0%} (speed-up {seconds_of[1] / seconds_of[2]:.2f}x)")

            speaking = fixtures.speech["speech_en_happy"]
            lengths = {"4 s clip": None, "3-minute clip": 180, "10-minute clip": 600}
            for name, length in lengths.items():
                folder_ = tmp / name.split()[0]
                folder_.mkdir()
                if length is None:
                    os.symlink(speaking, folder_ / "speaking.mp4")
                else:
                    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(speaking), "-t", str(length), "-af", "aresample=async=1",
                                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(folder_ / "speaking.mp4")], check=True)  # fmt: skip
                seconds, peak, rows = build_on_cluster(folder_, tmp / f"out-{folder_.name}", 1, partition_size=1)
                print(f"{name}: {rows} row(s), peak RSS of the worker {max(peak.values()) / 2**20:.0f} MiB ({seconds:.1f} s)", flush=True)
        finally:
            server.stop()
    print(f"machine: {platform.machine()}, {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB")


if __name__ == "__main__":
    main()
