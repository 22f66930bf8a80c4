"""Atomic file writes: nothing is ever visible under its final name until it is complete."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

TMP_MARK = ".tmp-"


def temp_path_for(final: Path) -> Path:
    """A hidden sibling of `final`, unique to this writer; cleaned up by `remove_stale_temps`."""
    return final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(temp: Path, final: Path) -> None:
    """fsync `temp`, rename it to `final` in one step, and make the rename durable."""
    with open(temp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(temp, final)
    _fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `final`, on failure it is removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(final)
    try:
        yield temp
        publish(temp, final)
    finally:
        temp.unlink(missing_ok=True)


def write_bytes_atomic(final: Path, data: bytes) -> None:
    with atomic_path(final) as temp:
        temp.write_bytes(data)


def _writer_alive(path: Path) -> bool:
    """Whether the process that named this temporary file still runs (its pid is in the name)."""
    try:
        pid = int(path.name.rsplit(TMP_MARK, 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return True  # another thread of this process is writing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: Path) -> int:
    """Delete leftovers of writers that died mid-write (never a live writer's file); returns how many."""
    if not directory.is_dir():
        return 0
    removed = 0
    for path in directory.glob(f".*{TMP_MARK}*"):
        if not _writer_alive(path):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
