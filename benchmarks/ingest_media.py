"""Ingest + media stages against bare `ffmpeg -i X -f null -` decode of the same clips, in one run.

    python benchmarks/ingest_media.py [--shared-data DIR] [--repeats 3]

Both sides run one clip at a time in this process's order; each side's time is the median of the
repeats. Ours: ffprobe + sha256 (ingest), then 16 kHz audio and 16 uniform JPEG frames (media), through
the same stage classes the build runs. Baseline: decoding every audio and video frame and discarding it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))

import make_clips  # noqa: E402

from merr_builder.config import BuildConfig  # noqa: E402
from merr_builder.ingest import ClipSource, IngestStage  # noqa: E402
from merr_builder.media import MediaStage  # noqa: E402
from merr_builder.stage import PartitionBatch  # noqa: E402


def bare_decode(paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "fatal", "-i", str(path), "-f", "null", "-"], check=True)
    return time.perf_counter() - started


def ours(paths: list[Path], config: BuildConfig) -> float:
    sources = [ClipSource(p.stem, str(p)) for p in paths]
    started = time.perf_counter()
    ingest = IngestStage(config.ingest).run(PartitionBatch(0, sources))
    media = MediaStage(config.media).run(PartitionBatch(0, sources, clips=ingest.outputs))
    seconds = time.perf_counter() - started
    assert not ingest.quarantined and not media.quarantined and len(media.outputs) == len(paths)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared-data", type=Path, default=make_clips.DEFAULT_SHARED_DATA)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        fixtures = make_clips.make_all(Path(tmp) / "clips", args.shared_data)
        data = args.shared_data
        paths = sorted([*data.glob("*.mp4"), *data.glob("*.mov"), *(data / "mer2023_sample" / "video").glob("*.mp4")])
        paths += sorted(fixtures.speech.values())
        config = BuildConfig()
        seconds_of_video = sum(
            float(subprocess.run(
                ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(p)],
                capture_output=True, text=True, check=True,
            ).stdout)
            for p in paths
        )  # fmt: skip
        bare_decode(paths)  # warm the page cache for both sides
        baseline = statistics.median(bare_decode(paths) for _ in range(args.repeats))
        ours_s = statistics.median(ours(paths, config) for _ in range(args.repeats))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"clips: {len(paths)} ({seconds_of_video:.1f} s of video), repeats: {args.repeats} (median)")
    print(f"bare ffmpeg decode : {baseline:7.2f} s  ({seconds_of_video / baseline:6.1f}x real time)")
    print(f"ingest + media     : {ours_s:7.2f} s  ({seconds_of_video / ours_s:6.1f}x real time)")
    print(f"ratio ours / bare  : {ours_s / baseline:.2f}")


if __name__ == "__main__":
    main()
