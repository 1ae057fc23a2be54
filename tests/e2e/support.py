"""
Helpers for end-to-end tests: a real ``twistd -n chat`` in a subprocess and
line clients over real loopback TCP.

The server listens on ``tcp:0:interface=127.0.0.1``; the port it got is read
from its own log line ("ChatFactory starting on N", or "ChatFactory (TLS)
starting on N"), so there is no race for
a free port.  A server also given ``--web`` logs its site's port too
("ChatSite starting on N"), and L{ServerProcess} waits for both.

L{WebSocketClient} is a browser as a test sees one: it speaks the JSON of
C{/ws} over Twisted's own WebSocket client.  L{RawWebSocket} does the
upgrade by hand, to send the headers and bytes a test chooses.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import json
import os
import re
import signal
import sys
from collections.abc import Mapping
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.python.failure import Failure
from twisted.web.websocket import WebSocketClientEndpoint, WebSocketTransport
from wsproto import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from tests import ROOT
from tests.expect import timeout_deferred

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
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """
        @param twistd: the command that runs twistd, such as an installed
            C{bin/twistd}; by default this checkout's code is run with this
            Python, with the checkout put on C{PYTHONPATH}.
        """
        self.twistd = twistd
        #: Variables added to the server's environment.
        self.environ = dict(environ or {})
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
        #: The port of the web site (C{/ws}), once a server given C{--web} listens.
        self.web_port: int | None = None
        self.exit: Failure | None = None
        self._listening: defer.Deferred[int] | None = None
        self._exit_waiters: list[defer.Deferred[None]] = []
        self._log_waiters: list[tuple[re.Pattern[bytes], int, defer.Deferred[re.Match[bytes]]]] = []
        self._transport: Any = None

    @property
    def serves_web(self) -> bool:
        """Whether the server was given C{--web}, so it has a web port too."""
        return any(arg == "--web" or arg.startswith("--web=") for arg in self.args)

    @property
    def clustered(self) -> bool:
        """Whether the server was given C{--redis}: it is ready once it has joined the cluster."""
        return any(arg == "--redis" or arg.startswith("--redis=") for arg in self.args)

    def start(self, timeout: float = 20) -> defer.Deferred[int]:
        """
        Start the server; fires with its TCP port once it listens.  A server
        given C{--web} must listen on both ports first; C{web_port} is then set.
        A node of a cluster (C{--redis}) must have joined it too.
        """
        self.log = b""
        self.port = None
        self.web_port = None
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
        env = {**os.environ, **self.environ}
        if self.twistd is None:
            env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        self._transport = reactor.spawnProcess(
            _ServerProtocol(self), argv[0], argv, env=env, path=self.directory
        )
        return timeout_deferred(self._listening, timeout, "the server to listen")

    def _output(self, data: bytes) -> None:
        self.log += data
        if self._log_waiters:
            still = []
            for pattern, start, d in self._log_waiters:
                m = pattern.search(self.log, start)
                if m is not None:
                    d.callback(m)
                else:
                    still.append((pattern, start, d))
            self._log_waiters = still
        if self._listening is None or self._listening.called:
            return
        if self.port is None:
            m = re.search(rb"ChatFactory (?:\(TLS\) )?starting on (\d+)", self.log)
            if m:
                self.port = int(m.group(1))
        if self.web_port is None and self.serves_web:
            m = re.search(rb"ChatSite (?:\((?:TLS|PROXY)\) )?starting on (\d+)", self.log)
            if m:
                self.web_port = int(m.group(1))
        if self.clustered and b"joined the cluster" not in self.log:
            return
        if self.port is not None and (self.web_port is not None or not self.serves_web):
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

    def expect_log(
        self, pattern: str, timeout: float = 10, since: int = 0
    ) -> defer.Deferred[re.Match[bytes]]:
        """Wait until the server's output, from byte C{since} on, matches C{pattern}."""
        compiled = re.compile(pattern.encode("utf-8"))
        d: defer.Deferred[re.Match[bytes]] = defer.Deferred()
        m = compiled.search(self.log, since)
        if m is not None:
            d.callback(m)
            return d
        self._log_waiters.append((compiled, since, d))

        def forget(failure: Failure) -> Failure:
            self._log_waiters = [w for w in self._log_waiters if w[2] is not d]
            return failure

        return timeout_deferred(d, timeout, lambda: f"{pattern!r} in the server's log").addErrback(forget)

    def send_signal(self, sig: int) -> None:
        """Send C{sig} and return at once (L{signal} waits for the process to end)."""
        self._transport.signalProcess(sig)

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

        def forget(failure: Failure) -> Failure:
            self._waiters = [(p, w) for p, w in self._waiters if w is not d]
            return failure

        def what() -> str:
            return f"{pattern!r}; received after position {self.position}: {self.unread()!r}"

        return timeout_deferred(d, timeout, what).addErrback(forget)

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


# --- WebSocket clients ------------------------------------------------------

#: RFC 6455's key for C{Sec-WebSocket-Accept}.
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _matches(event: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return all(name in event and event[name] == value for name, value in wanted.items())


class JsonEvents:
    """
    The JSON messages a WebSocket client received, kept in C{events} in
    order, with a read position like L{LineClient}'s: C{expect} waits for the
    next message with the given fields and moves the position past it.

    A message that is not a JSON object is kept as C{{"type": None, "raw": ...}},
    which no C{expect} for a type matches, so it shows in the failure.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.position = 0
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._waiters: list[tuple[dict[str, Any], defer.Deferred[dict[str, Any]]]] = []

    def _received(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            event = {"type": None, "raw": message}
        self.events.append(event)
        self._check()

    def _check(self) -> None:
        still = []
        for wanted, d in self._waiters:
            found = self._find(wanted)
            if found is not None:
                d.callback(found)
            else:
                still.append((wanted, d))
        self._waiters = still

    def _find(self, wanted: Mapping[str, Any]) -> dict[str, Any] | None:
        for i in range(self.position, len(self.events)):
            if _matches(self.events[i], wanted):
                self.position = i + 1
                return self.events[i]
        return None

    def _lost(self) -> None:
        if self.closed.called:
            return
        self.closed.callback(None)
        waiters, self._waiters = self._waiters, []
        for wanted, d in waiters:
            d.errback(
                Failure(AssertionError(f"connection closed while waiting for {wanted!r}; {self._got()}"))
            )

    def _got(self) -> str:
        return f"received after position {self.position}: {self.unread()!r}"

    def unread(self) -> list[dict[str, Any]]:
        return self.events[self.position :]

    def expect(
        self, wanted: Mapping[str, Any] | None = None, /, *, timeout: float = 10, **fields: Any
    ) -> defer.Deferred[dict[str, Any]]:
        """
        Wait for the next message (after the read position) that has the
        given fields, e.g. C{expect(type="roster")}; fire with it.  Fields
        whose names are Python keywords go in C{wanted}:
        C{expect({"type": "message", "from": "seas"})}.
        """
        fields = {**(wanted or {}), **fields}
        d: defer.Deferred[dict[str, Any]] = defer.Deferred()
        found = self._find(fields)
        if found is not None:
            d.callback(found)
            return d
        if self.closed.called:
            d.errback(Failure(AssertionError(f"connection closed before {fields!r}; {self._got()}")))
            return d
        self._waiters.append((fields, d))

        def forget(failure: Failure) -> Failure:
            self._waiters = [(w, x) for w, x in self._waiters if x is not d]
            return failure

        return timeout_deferred(d, timeout, lambda: f"{fields!r}; {self._got()}").addErrback(forget)


class WebSocketClient(JsonEvents):
    """
    A browser, as a test sees one: sends JSON messages to C{/ws}, waits for
    the server's.  Connected with Twisted's own WebSocket client
    (L{connect_websocket}).
    """

    def __init__(self) -> None:
        super().__init__()
        self.wire: WebSocketTransport | None = None
        self.transport: Any = None

    # WebSocketProtocol

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self.wire = transport
        self.transport = getattr(transport, "transport", None)

    def negotiationFinished(self) -> None:
        pass

    def pongReceived(self, payload: bytes) -> None:
        pass

    def textMessageReceived(self, message: str) -> None:
        self._received(message)

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        self._received(bytes(data))

    def connectionLost(self, reason: Failure) -> None:
        self._lost()

    # the test's side

    def send(self, message: Mapping[str, Any]) -> None:
        """Send C{message} as one JSON text message."""
        self.send_text(json.dumps(message))

    def send_text(self, text: str) -> None:
        assert self.wire is not None
        self.wire.sendTextMessage(text)

    def close(self) -> defer.Deferred[None]:
        """Close with a close frame, as a browser's C{close()} does."""
        assert self.wire is not None
        self.wire.loseConnection()
        return self.closed


class _Only:
    """A L{WebSocketClientFactory} giving one client it was made with."""

    def __init__(self, client: WebSocketClient) -> None:
        self.client = client

    def buildProtocol(self, url: str) -> WebSocketClient:
        return self.client


def websocket_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws"


async def connect_websocket(
    port: int, client: WebSocketClient | None = None, timeout: float = 10
) -> WebSocketClient:
    """
    Open C{/ws} on the web port C{port} with Twisted's WebSocket client.
    An upgrade the server refuses raises
    L{twisted.web.websocket.ConnectionRejected}, whose C{response} is the
    server's answer.
    """
    client = client if client is not None else WebSocketClient()
    endpoint = WebSocketClientEndpoint.new(reactor, websocket_url(port), connectTimeout=int(timeout))
    connecting = defer.ensureDeferred(endpoint.connect(_Only(client)))
    connecting.addTimeout(timeout, reactor)
    return await connecting


class RawWebSocket(protocol.Protocol, JsonEvents):
    """
    A WebSocket client that writes the upgrade request itself (with the
    C{Origin} a test chooses) and, once upgraded, frames with wsproto: so a
    test can see the HTTP status of a refused upgrade, or write a frame in
    pieces.

    C{response} fires with the status code once the response is in: the
    head of a 101, the head and C{body} of any other.
    """

    def __init__(self, host: str, origin: str | None = None, proxy_from: str | None = None) -> None:
        """
        @param proxy_from: an address to claim to be, in a PROXY protocol
            header before the request, as a proxy in front of the server does.
        """
        JsonEvents.__init__(self)
        self.host = host
        self.origin = origin
        self.proxy_from = proxy_from
        self.key = base64.b64encode(os.urandom(16))
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""
        self.response: defer.Deferred[int] = defer.Deferred()
        self.ws = Connection(ConnectionType.CLIENT)
        self._head = b""
        self._text = ""

    def connectionMade(self) -> None:
        lines = [
            "GET /ws HTTP/1.1",
            f"Host: {self.host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self.key.decode('ascii')}",
            "Sec-WebSocket-Version: 13",
        ]
        if self.origin is not None:
            lines.append(f"Origin: {self.origin}")
        if self.proxy_from is not None:
            port = self.host.rsplit(":", 1)[1]
            lines.insert(0, f"PROXY TCP4 {self.proxy_from} 127.0.0.1 40000 {port}")
        self.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def dataReceived(self, data: bytes) -> None:
        if self.status is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self._head[:end].decode("latin-1"), self._head[end + 4 :]
            status_line, *header_lines = head.split("\r\n")
            self.status = int(status_line.split()[1])
            for line in header_lines:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
            if self.status == 101:
                expected = base64.b64encode(hashlib.sha1(self.key + _WS_GUID).digest()).decode("ascii")
                if self.headers.get("sec-websocket-accept") != expected:
                    self.response.errback(Failure(AssertionError(f"bad Sec-WebSocket-Accept in {head!r}")))
                    return
                self.response.callback(self.status)
        if self.status == 101:
            self._frames(data)
            return
        self.body += data
        length = int(self.headers.get("content-length", "0"))
        if not self.response.called and len(self.body) >= length:
            self.response.callback(self.status)

    def _frames(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self._text += event.data
                if event.message_finished:
                    text, self._text = self._text, ""
                    self._received(text)
            elif isinstance(event, BytesMessage):
                self._received(bytes(event.data))
            elif isinstance(event, Ping):
                self.write(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.events.append({"type": None, "close": event.code})

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if not self.response.called:
            self.response.errback(
                Failure(AssertionError(f"connection closed before a whole response: {self._head!r}"))
            )
        self._lost()

    def frame(self, message: Mapping[str, Any]) -> bytes:
        """The bytes of one masked client frame carrying C{message} as JSON."""
        return self.ws.send(TextMessage(json.dumps(message, ensure_ascii=False)))

    def send(self, message: Mapping[str, Any]) -> None:
        self.write(self.frame(message))

    def write(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]
