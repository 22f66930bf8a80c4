"""What the per-core benchmarks share: their command line, and pinning the process (and the ffmpeg it
starts) to one CPU core so that every number they print is per core."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))

import make_clips  # (found through the path just added)


def arguments_on_one_core(doc: str, repeats: int = 2) -> argparse.Namespace:
    """`--shared-data DIR` and `--repeats N`, parsed; the process pinned to its first allowed core."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--shared-data", type=Path, default=make_clips.DEFAULT_SHARED_DATA)
    parser.add_argument("--repeats", type=int, default=repeats)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    return args
