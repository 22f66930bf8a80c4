"""One writer per output folder: a build, `merr annotate` and `merr encode` hold `OUT/.merr.lock`.

The lock is an `flock` on that file, which the kernel releases when its holder exits in any way (SIGKILL
included), so a crashed holder never blocks the next run: a lock file whose flock is free is stale and
is simply taken over. The file names the holder (pid, host, start time) for the refusal message. (On a
network filesystem without working flock, run one build per output folder by hand.)
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

LOCK_NAME = ".merr.lock"


class BuildLockedError(RuntimeError):
    """Another live process is writing this output folder."""


@contextmanager
def build_lock(out_dir: Path, what: str = "build") -> Iterator[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_NAME
    handle = open(path, "a+")  # noqa: SIM115 (held for the whole block)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # (an export reading it holds the lock too, and writes no record: the record is the last writer's)
            raise BuildLockedError(f"{out_dir} is in use by another process (the last to write it: {_holder(handle)}); "
                                   "wait for it or use another --out") from None  # fmt: skip
        handle.seek(0)
        handle.truncate()
        record = {"what": what, "pid": os.getpid(), "host": socket.gethostname(), "started": datetime.now(UTC).isoformat(timespec="seconds")}
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        yield path
    finally:
        handle.close()  # releases the flock; the file stays (a later run takes it over)


@contextmanager
def read_lock(out_dir: Path) -> Iterator[None]:
    """Hold a finished build as a reader (an export): refused while a writer holds it; readers share it.
    A build folder without a lock file (nothing ever wrote it with this tool) or one that cannot be
    written needs none: no writer can run there."""
    path = Path(out_dir) / LOCK_NAME
    try:
        handle = open(path, "r")  # noqa: SIM115 (held for the whole block)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # only a writer holds it alone
            raise BuildLockedError(f"{out_dir} is being written by {_holder(handle)}; export it when that has finished") from None
        yield
    finally:
        handle.close()


def _holder(handle) -> str:  # type: ignore[no-untyped-def]
    """Who the lock file names: 'merr annotate (pid 12 on host, since 2026-12-02T07:00:00+00:00)'."""
    handle.seek(0)
    try:
        record = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        record = {}
    return f"{record.get('what', 'a run')} (pid {record.get('pid', '?')} on {record.get('host', '?')}, since {record.get('started', '?')})"
