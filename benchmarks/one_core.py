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


def one_core_parser(doc: str, repeats: int = 2) -> argparse.ArgumentParser:
    """The per-core benchmarks' command line: `--shared-data DIR` and `--repeats N`."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--shared-data", type=Path, default=make_clips.DEFAULT_SHARED_DATA)
    parser.add_argument("--repeats", type=int, default=repeats)
    return parser


def pin_to_one_core() -> None:
    """This process, and every process it starts, on its first allowed core."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def arguments_on_one_core(doc: str, repeats: int = 2) -> argparse.Namespace:
    """`--shared-data DIR` and `--repeats N`, parsed; the process pinned to its first allowed core."""
    args = one_core_parser(doc, repeats).parse_args()
    pin_to_one_core()
    return args
