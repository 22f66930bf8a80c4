"""One shared Prefect server for a test session or a cluster's workers.

Without PREFECT_API_URL every process that runs a flow starts its own temporary server, a uvicorn
subprocess that outlives a killed parent. Starting one server in its own process group, and stopping the
whole group, leaves nothing behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrefectServer:
    """`prefect server start` on a loopback port; `url` is what PREFECT_API_URL should be."""

    def __init__(self, home: Path, port: int | None = None, log: Path | None = None) -> None:
        self.home = Path(home)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.log = log or self.home / "server.log"
        self._proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }

    def start(self, timeout_s: float = 120.0) -> "PrefectServer":
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env()}
        env.pop("PREFECT_API_URL")  # the server itself must not try to talk to a server
        cmd = [
            sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port),
            "--no-ui", "--analytics-off", "--no-scheduler", "--no-late-runs",
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with {self._proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"prefect server did not answer on {self.url} within {timeout_s:.0f} s; see {self.log}")

    def stop(self) -> None:
        """Stop the server and every process it started (its whole process group)."""
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGTERM)
            self._proc.wait(timeout=20)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
        try:  # anything of the group still alive (a worker that ignored SIGTERM)
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._proc.wait()
        self._proc = None

    def __enter__(self) -> "PrefectServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
