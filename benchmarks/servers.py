"""
The servers a benchmark run compares: ours (``twistd -n chat``) and the bare
baseline (``python -m benchmarks.baseline``), each a subprocess on a free
loopback port.

Both listen on port 0 and log "<Factory> starting on N"; the port is read
from that line in the server's log file, so there is no race for a port.
Logs go to files rather than pipes: a server that logs every login must
never block on a pipe nobody is reading.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from twisted.logger import Logger

log = Logger()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LISTENING = re.compile(rb"(\w+) starting on (\d+)")
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class ServerError(Exception):
    """A server did not start; the message ends with the tail of its log."""


def ours_argv(users: str, database: str, extra: Sequence[str] = ()) -> list[str]:
    return [
        *TWISTD,
        "-n",
        "--pidfile=",
        "chat",
        "--port",
        "tcp:0:interface=127.0.0.1",
        "--users",
        users,
        "--database",
        database,
        *extra,
    ]


def baseline_argv(floor: str | None = None) -> list[str]:
    """The bare baseline; with C{floor}, a database path, the floor variant (see L{benchmarks.baseline})."""
    argv = [sys.executable, "-m", "benchmarks.baseline", "0"]
    return [*argv, "--floor", floor] if floor is not None else argv


def find_port(log_text: bytes) -> int | None:
    m = _LISTENING.search(log_text)
    return int(m.group(2)) if m else None


class Server:
    """One server subprocess; C{start} returns its port, C{stop} always ends it."""

    def __init__(self, name: str, argv: Sequence[str], directory: str) -> None:
        self.name = name
        self.argv = list(argv)
        self.directory = directory
        self.log_path = os.path.join(directory, f"{name}.log")
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> int:
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        start = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                port = find_port(f.read())
            if port is not None:
                self.port = port
                log.info("{name} listening on {port} (pid {pid})", name=self.name, port=port, pid=self.pid)
                return port
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"{self.name} did not start listening:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited in C{timeout} seconds."""
        process, self.process = self.process, None
        self.port = None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warn("{name} ignored SIGTERM for {t}s; killing it", name=self.name, t=timeout)
                process.kill()
                process.wait()
