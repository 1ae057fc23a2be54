"""
Helpers for end-to-end tests: a real ``twistd -n chat`` in a subprocess and
line clients over real loopback TCP.

The server listens on ``tcp:0:interface=127.0.0.1``; the port it got is read
from its own log line ("ChatFactory starting on N", or "ChatFactory (TLS)
starting on N"), so there is no race for
a free port.
"""

from __future__ import annotations

import codecs
import os
import re
import signal
import sys
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.python.failure import Failure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

USERS = {
    "columbia": "116bway",
    "seas": "summerisover",
    "csee4119": "lotsofassignments",
    "foobar": "passpass",
    "windows": "withglass",
    "google": "partofalphabet",
    "facebook": "wastetime",
    "wikipedia": "donation",
    "network": "seemsez",
}

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def timeout_deferred(d: defer.Deferred[Any], seconds: float, what: str) -> defer.Deferred[Any]:
    """Fail C{d} with a message naming C{what} if it has not fired in time."""

    def expired() -> None:
        if not d.called:
            d.errback(Failure(defer.TimeoutError(f"timed out after {seconds}s waiting for {what}")))

    call = reactor.callLater(seconds, expired)

    def cancel(result: object) -> object:
        if call.active():
            call.cancel()
        return result

    return d.addBoth(cancel)


class _ServerProtocol(protocol.ProcessProtocol):
    def __init__(self, server: ServerProcess) -> None:
        self.server = server

    def outReceived(self, data: bytes) -> None:
        self.server._output(data)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.server._ended(reason)


class ServerProcess:
    """A ``twistd -n chat`` subprocess with its own users file and database."""

    def __init__(
        self,
        directory: str,
        users: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        twistd: tuple[str, ...] | None = None,
    ) -> None:
        """
        @param twistd: the command that runs twistd, such as an installed
            C{bin/twistd}; by default this checkout's code is run with this
            Python, with the checkout put on C{PYTHONPATH}.
        """
        self.twistd = twistd
        self.directory = directory = os.path.abspath(directory)
        os.makedirs(directory, exist_ok=True)
        self.users_path = os.path.join(directory, "users.txt")
        if not os.path.exists(self.users_path):
            with open(self.users_path, "w") as f:
                for name, password in (users or USERS).items():
                    f.write(f"{name} {password}\n")
        self.database = os.path.join(directory, "chat.sqlite")
        self.args = args
        self.log = b""
        self.port: int | None = None
        self.exit: Failure | None = None
        self._listening: defer.Deferred[int] | None = None
        self._exit_waiters: list[defer.Deferred[None]] = []
        self._transport: Any = None

    def start(self, timeout: float = 20) -> defer.Deferred[int]:
        """Start the server; fires with its port once it listens."""
        self.log = b""
        self.port = None
        self.exit = None
        self._listening = defer.Deferred()
        argv = [
            *(self.twistd or TWISTD),
            "-n",
            "--pidfile=",
            "chat",
            "--port",
            "tcp:0:interface=127.0.0.1",
            "--users",
            self.users_path,
            "--database",
            self.database,
            *self.args,
        ]
        env = dict(os.environ)
        if self.twistd is None:
            env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        self._transport = reactor.spawnProcess(
            _ServerProtocol(self), argv[0], argv, env=env, path=self.directory
        )
        return timeout_deferred(self._listening, timeout, "the server to listen")

    def _output(self, data: bytes) -> None:
        self.log += data
        if self.port is None and self._listening is not None:
            m = re.search(rb"ChatFactory (?:\(TLS\) )?starting on (\d+)", self.log)
            if m:
                self.port = int(m.group(1))
                self._listening.callback(self.port)

    def _ended(self, reason: Failure) -> None:
        self.exit = reason
        if self._listening is not None and not self._listening.called:
            self._listening.errback(
                Failure(
                    RuntimeError("server exited before listening:\n" + self.log.decode("utf-8", "replace"))
                )
            )
        waiters, self._exit_waiters = self._exit_waiters, []
        for d in waiters:
            d.callback(None)

    @property
    def pid(self) -> int:
        return int(self._transport.pid)

    def status_kib(self, field: str) -> int:
        """A field of /proc/PID/status in KiB, e.g. VmRSS or VmHWM (peak RSS)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    @property
    def running(self) -> bool:
        return self._transport is not None and self.exit is None

    def wait_exit(self, timeout: float = 20) -> defer.Deferred[None]:
        """Fires once the process has ended; C{exit} then says how."""
        if self.exit is not None:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._exit_waiters.append(d)

        def forget(failure: Failure) -> Failure:
            if d in self._exit_waiters:
                self._exit_waiters.remove(d)
            return failure

        return timeout_deferred(d, timeout, "the server to exit").addErrback(forget)

    def signal(self, sig: int, timeout: float = 20) -> defer.Deferred[None]:
        """Send C{sig}; fires once the process has ended."""
        if self.running:
            self._transport.signalProcess(sig)
        return self.wait_exit(timeout)

    def stop(self) -> defer.Deferred[None]:
        return self.signal(signal.SIGTERM)

    def kill(self) -> defer.Deferred[None]:
        return self.signal(signal.SIGKILL)

    def clean_exit(self) -> bool:
        return self.exit is not None and self.exit.check(ProcessDone) is not None

    def killed_by(self) -> int | None:
        if self.exit is not None and isinstance(self.exit.value, ProcessTerminated):
            return self.exit.value.signal
        return None

    def tracebacks(self) -> list[str]:
        text = self.log.decode("utf-8", "replace")
        return [line for line in text.splitlines() if "Traceback" in line]


class LineClient(protocol.Protocol):
    """
    A person at a terminal, as a test sees one: sends lines, waits for text.

    Everything received is kept in C{text}; C{expect} waits until a pattern
    appears after the read position, then moves the position past it.
    """

    def __init__(self) -> None:
        self.text = ""
        self.position = 0
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._waiters: list[tuple[re.Pattern[str], defer.Deferred[re.Match[str]]]] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def dataReceived(self, data: bytes) -> None:
        self.text += self._decoder.decode(data)
        self._check()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed.callback(None)
        waiters, self._waiters = self._waiters, []
        for pattern, d in waiters:
            d.errback(
                Failure(
                    AssertionError(
                        f"connection closed while waiting for {pattern.pattern!r}; "
                        f"received after position {self.position}: {self.text[self.position :]!r}"
                    )
                )
            )

    def _check(self) -> None:
        still = []
        for pattern, d in self._waiters:
            m = pattern.search(self.text, self.position)
            if m is not None:
                self.position = m.end()
                d.callback(m)
            else:
                still.append((pattern, d))
        self._waiters = still

    def send(self, *lines: str) -> None:
        self.transport.write("".join(line + "\n" for line in lines).encode("utf-8"))  # type: ignore[union-attr]

    def send_bytes(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def expect(self, pattern: str, timeout: float = 10) -> defer.Deferred[re.Match[str]]:
        """Wait for the regular expression C{pattern} after the read position."""
        compiled = re.compile(pattern)
        d: defer.Deferred[re.Match[str]] = defer.Deferred()
        m = compiled.search(self.text, self.position)
        if m is not None:
            self.position = m.end()
            d.callback(m)
            return d
        self._waiters.append((compiled, d))

        def expired() -> None:
            if not d.called:
                self._waiters = [(p, w) for p, w in self._waiters if w is not d]
                d.errback(
                    Failure(
                        AssertionError(
                            f"timed out after {timeout}s waiting for {pattern!r}; "
                            f"received after position {self.position}: {self.text[self.position :]!r}"
                        )
                    )
                )

        call = reactor.callLater(timeout, expired)

        def cancel(result: object) -> object:
            if call.active():
                call.cancel()
            return result

        return d.addBoth(cancel)

    def unread(self) -> str:
        return self.text[self.position :]

    def close(self) -> defer.Deferred[None]:
        self.transport.loseConnection()  # type: ignore[union-attr]
        return self.closed


async def connect(port: int) -> LineClient:
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    client = await connectProtocol(endpoint, LineClient())
    return client


async def login(port: int, name: str, password: str | None = None) -> LineClient:
    """Connect and log in, waiting for the first ``Command:`` prompt."""
    client = await connect(port)
    await client.expect("Username: ")
    client.send(name)
    await client.expect("Password: ")
    client.send(password if password is not None else USERS[name])
    await client.expect("Welcome")
    await client.expect("Command: ")
    return client
