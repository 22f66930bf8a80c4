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
            handle.seek(0)
            try:
                holder = json.loads(handle.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            raise BuildLockedError(
                f"{out_dir} is being written by another {holder.get('what', 'run')} (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, since {holder.get('started', '?')}); wait for it or use another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        record = {"what": what, "pid": os.getpid(), "host": socket.gethostname(), "started": datetime.now(UTC).isoformat(timespec="seconds")}
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        yield path
    finally:
        handle.close()  # releases the flock; the file stays (a later run takes it over)
