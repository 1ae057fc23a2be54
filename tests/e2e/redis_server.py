"""
A real C{redis-server} for the tests: its own data directory, listening on
a unix socket in it (no port to race for), AOF on with C{appendfsync
always}, stopped by PID.  The Redis tests never skip: without
C{redis-server} they fail and say how to install it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.trial import unittest

from chat.server.backends.redis.link import RedisLink

reactor: Any = _reactor

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """
    One redis-server process.  C{restart} keeps the data directory, so
    what was written before (with AOF on) is there again after it.
    """

    def __init__(self, directory: str | None = None, appendfsync: str = "always") -> None:
        if not os.path.exists(REDIS_SERVER):
            raise RuntimeError(
                "redis-server is not installed: 'apt-get install redis-server' (CI installs it)"
            )
        # Unix socket paths are limited to about 100 bytes: keep it short.
        self.directory = directory or tempfile.mkdtemp(prefix="chat-redis-")
        self.socket = os.path.join(self.directory, "redis.sock")
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"unix:{self.socket}"

    def start(self, timeout: float = 10) -> None:
        """Start and wait until it accepts connections (a blocking wait: at setup only)."""
        args = [
            REDIS_SERVER,
            "--port",
            "0",
            "--unixsocket",
            self.socket,
            "--unixsocketperm",
            "700",
            "--dir",
            self.directory,
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            os.path.join(self.directory, "redis.log"),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start in {timeout} s: {self.log()}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        import socket

        if not os.path.exists(self.socket):
            return False
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(self.socket)
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

    def command(self, *args: str) -> str:
        """One command through redis-cli, for a test to look or to meddle."""
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        out = subprocess.run([cli, "-s", self.socket, *args], capture_output=True, check=True, timeout=10)
        return out.stdout.decode().strip()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            with open(os.path.join(self.directory, "redis.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def redis_server(case: unittest.TestCase) -> RedisServer:
    """A running Redis for C{case}, stopped and removed when it ends."""
    server = RedisServer()
    server.start()
    case.addCleanup(server.remove)
    return server


def connect(case: unittest.TestCase, server: RedisServer) -> Deferred[RedisLink]:
    """A L{RedisLink} to C{server}, connected, closed when C{case} ends."""
    link = RedisLink(clientFromString(reactor, server.endpoint), reactor, description="test redis")
    case.addCleanup(link.stop)
    return link.start().addCallback(lambda _: link)
