"""
Helpers for the end-to-end tests: real servers and the clients that talk to
them, over real loopback TCP and WebSocket.

- L{ServerProcess} is the one way a test starts a server: ``twistd -n chat``
  in a subprocess, with its own users file and database, the options a test
  passes (C{args} for chat; C{twistd}, C{twistd_args}, C{under} and
  C{max_files} for how it is run).  It listens on
  ``tcp:0:interface=127.0.0.1`` and the port it got is read from its own log
  line ("ChatFactory starting on N", "ChatSite starting on N" with
  C{--web}), so there is no race for a free port.
- L{Lab} owns what one test starts (servers, connections) and tears all of
  it down, failing the test if a server logged a traceback.
- L{LineClient} is a person at a terminal (lines over TCP);
  L{WebSocketClient} is a browser (the JSON of C{/ws} over Twisted's
  WebSocket client); L{RawWebSocket} does the upgrade by hand, to send the
  headers and bytes a test chooses.  Each waits with C{expect}, through the
  one mechanism of L{tests.expect}: text by regular expression, JSON
  messages by their fields.
- L{drain} and L{ws_drain} are how a test says "this client received
  nothing": a harmless command, and everything that arrived before its
  answer, which the server writes in order on the one connection.
- The wire's fixed texts (L{USERNAME}, L{COMMAND}, ...) and patterns for
  what a terminal shows (L{delivered}, L{offline_line}, ...).
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.websocket import WebSocketClientEndpoint, WebSocketTransport
from wsproto import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from tests import ROOT
from tests.expect import Expectations, TextStream, timeout_deferred

T = TypeVar("T")

#: The users of the seeds' C{user_pass.txt}, written to each server's users file.
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

#: This checkout's twistd, run with this Python (the checkout on C{PYTHONPATH}).
TWISTD = (sys.executable, "-c", "from twisted.scripts.twistd import run; run()")

# --- what the server says --------------------------------------------------------

#: The prompts, exactly: no newline after them.
USERNAME = "Username: "
PASSWORD = "Password: "
COMMAND = "Command: "

#: The reply to a wrong password and to an unknown username alike.
INVALID = r"Invalid username or password\."

#: The arguments that make a server serve the web edge too, on a port of its choosing.
WEB = ("--web", "tcp:0:interface=127.0.0.1")

#: One offline message as shown at login: time, sender, kind, text.
STAMP = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\]"


def offline_line(sender: str, kind: str, text: str) -> str:
    """A pattern for one offline message line."""
    return rf"{STAMP} {re.escape(sender)} \({kind}\): {re.escape(text)}\r\n"


def delivered(sender: str, kind: str, text: str) -> str:
    """A pattern for a message delivered live."""
    return rf"{re.escape(sender)} \({kind}\): {re.escape(text)}\r\n"


def entries(listing: str) -> list[str]:
    """The lines of a whoelse or wholast listing, with runs of spaces made one."""
    return [" ".join(line.split()) for line in listing.splitlines() if line.strip()]


def seconds_in(reply: str) -> float:
    """The duration in a reply such as 'blocked ... for 45 seconds' (or '1 minute')."""
    m = re.search(r"(\d+) (?:more )?(second|minute|hour)s?\b", reply)
    if m is None:
        raise AssertionError(f"no duration in {reply!r}")
    return int(m.group(1)) * {"second": 1, "minute": 60, "hour": 3600}[m.group(2)]


# --- servers ---------------------------------------------------------------------


class _ServerProtocol(protocol.ProcessProtocol):
    def __init__(self, server: ServerProcess) -> None:
        self.server = server

    def outReceived(self, data: bytes) -> None:
        self.server._output(data)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.server._ended(reason)


class ServerProcess:
    """
    A ``twistd -n chat`` subprocess with its own users file and database:
    the one way the end-to-end tests start a server.
    """

    def __init__(
        self,
        directory: str,
        users: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
        twistd: tuple[str, ...] | None = None,
        environ: Mapping[str, str] | None = None,
        twistd_args: tuple[str, ...] = (),
        under: tuple[str, ...] = (),
        max_files: int | None = None,
    ) -> None:
        """
        @param args: options for C{chat}, after the port, users file and
            database it is always given (a later C{--port} or C{--database}
            wins).
        @param twistd: the command that runs twistd, such as an installed
            C{bin/twistd}; by default L{TWISTD}, this checkout's code with
            this Python, the checkout put on C{PYTHONPATH}.
        @param twistd_args: options for twistd itself, before C{chat}
            (C{--logger ...}).
        @param under: a command that runs the server, given the rest as its
            arguments (C{systemd-socket-activate ...}).
        @param max_files: the server's limit of open descriptors
            (C{RLIMIT_NOFILE}), as C{prlimit --nofile} would set it.
        """
        self.twistd = twistd
        self.twistd_args = twistd_args
        self.under = under
        self.max_files = max_files
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
        #: Waits on the log, and for the end of the process.
        self.expectations: Expectations[Any] = Expectations()
        self._transport: Any = None

    @property
    def serves_web(self) -> bool:
        """Whether the server was given C{--web}, so it has a web port too."""
        return any(arg == "--web" or arg.startswith("--web=") for arg in self.args)

    @property
    def clustered(self) -> bool:
        """Whether the server was given C{--redis}: it is ready once it has joined the cluster."""
        return any(arg == "--redis" or arg.startswith("--redis=") for arg in self.args)

    def argv(self) -> list[str]:
        """The command line that starts the server."""
        twistd = list(self.twistd or TWISTD)
        if self.max_files is not None:
            if self.twistd is not None:
                raise ValueError("max_files applies to this checkout's twistd only")
            limit = f"({self.max_files}, {self.max_files})"
            twistd[-1] = f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, {limit}); {twistd[-1]}"
        return [
            *self.under,
            *twistd,
            "-n",
            "--pidfile=",
            *self.twistd_args,
            "chat",
            "--port",
            "tcp:0:interface=127.0.0.1",
            "--users",
            self.users_path,
            "--database",
            self.database,
            *self.args,
        ]

    def environment(self) -> dict[str, str]:
        env = {**os.environ, **self.environ}
        if self.twistd is None:
            env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        return env

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
        self.expectations = Expectations()
        argv = self.argv()
        self._transport = reactor.spawnProcess(
            _ServerProtocol(self), argv[0], argv, env=self.environment(), path=self.directory
        )

        def exited(failure: Failure) -> Failure:
            if self.exit is not None and failure.check(AssertionError):
                log = self.log.decode("utf-8", "replace")
                return Failure(RuntimeError("server exited before listening:\n" + log))
            return failure

        listening = self.expectations.wait(self._listening, lambda: "the server to listen", timeout)
        return listening.addErrback(exited)

    def _listening(self) -> int | None:
        """The TCP port, once the server serves every port it was given (and has joined its cluster)."""
        if self.port is None:
            m = re.search(rb"ChatFactory (?:\(TLS\) )?starting on (\d+)", self.log)
            if m:
                self.port = int(m.group(1))
        if self.web_port is None and self.serves_web:
            m = re.search(rb"ChatSite (?:\((?:TLS|PROXY)\) )?starting on (\d+)", self.log)
            if m:
                self.web_port = int(m.group(1))
        if self.clustered and b"joined the cluster" not in self.log:
            return None
        if self.port is not None and (self.web_port is not None or not self.serves_web):
            return self.port
        return None

    def _output(self, data: bytes) -> None:
        self.log += data
        self.expectations.check()

    def _ended(self, reason: Failure) -> None:
        # A wait that fires here may start the server again, with new
        # expectations: only this process's are ended.
        expectations = self.expectations
        self.exit = reason
        expectations.check()
        expectations.end("the server exited")

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
        ended = self.expectations.wait(
            lambda: self.exit is not None or None, lambda: "the server to exit", timeout
        )
        return ended.addCallback(lambda _: None)

    def expect_log(
        self, pattern: str, timeout: float = 10, since: int = 0
    ) -> defer.Deferred[re.Match[bytes]]:
        """Wait until the server's output, from byte C{since} on, matches C{pattern}."""
        compiled = re.compile(pattern.encode("utf-8"))
        return self.expectations.wait(
            lambda: compiled.search(self.log, since), lambda: f"{pattern!r} in the server's log", timeout
        )

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


# --- clients ---------------------------------------------------------------------


class LineClient(protocol.Protocol, TextStream):
    """
    A person at a terminal, as a test sees one: sends lines, waits for text.

    Everything received is kept in C{text}; C{expect} waits until a pattern
    appears after the read position, then moves the position past it.
    """

    def __init__(self) -> None:
        TextStream.__init__(self)
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def dataReceived(self, data: bytes) -> None:
        self.received(self._decoder.decode(data))

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed.callback(None)
        self.expectations.end("the connection closed")

    def send(self, *lines: str) -> None:
        self.transport.write("".join(line + "\n" for line in lines).encode("utf-8"))  # type: ignore[union-attr]

    def send_bytes(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def close(self) -> defer.Deferred[None]:
        self.transport.loseConnection()  # type: ignore[union-attr]
        return self.closed


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
        self.expectations: Expectations[dict[str, Any]] = Expectations()

    def _received(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            event = {"type": None, "raw": message}
        self.events.append(event)
        self.expectations.check()

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
        self.expectations.end("the connection closed")

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

        def what() -> str:
            return f"{fields!r}; received after position {self.position}: {self.unread()!r}"

        return self.expectations.wait(lambda: self._find(fields), what, timeout)


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


# --- what a test does with them ---------------------------------------------------


async def drain(client: LineClient) -> str:
    """
    Everything C{client} received from its read position up to the answer to
    a harmless command (C{help logout}), which is then consumed along with
    its prompt.  Use it to show that something did I{not} arrive.
    """
    start = client.position
    client.send("help logout")
    m = await client.expect(r"Usage: logout\r\n.*\r\n" + COMMAND)
    return client.text[start : m.start()]


def closing(client: LineClient | JsonEvents, timeout: float = 10) -> defer.Deferred[None]:
    """Fires once the server has closed C{client}'s connection; fails after C{timeout}."""
    d: defer.Deferred[None] = defer.Deferred()

    def gone(result: object) -> object:
        if not d.called:
            d.callback(None)
        return result

    client.closed.addBoth(gone)
    return timeout_deferred(d, timeout, "the server to close the connection")


async def timed(work: Awaitable[T]) -> tuple[T, float]:
    """Await C{work}; give its result and the seconds it took, on the reactor's clock."""
    started = reactor.seconds()
    result = await work
    return result, reactor.seconds() - started


class Lab:
    """
    What one test starts: servers and connections, all cleaned up after it.

    Servers are stopped with SIGTERM last, after every connection is closed;
    a traceback in a server's output then fails the test.
    """

    def __init__(self, case: unittest.TestCase) -> None:
        self.case = case

    # --- servers ------------------------------------------------------------

    def server(self, *args: str, directory: str | None = None, **options: Any) -> ServerProcess:
        """
        A server given C{args}, not yet started, stopped after the test;
        C{options} are L{ServerProcess}'s (C{users}, C{twistd}, C{under}, ...).
        """
        server = ServerProcess(directory or self.case.mktemp(), args=args, **options)
        self.case.addCleanup(self._finish, server)
        return server

    async def start(self, *args: str, users: dict[str, str] | None = None) -> tuple[ServerProcess, int]:
        """Start a server with extra C{args}; give it and its port."""
        server = self.server(*args, users=users)
        port = await server.start()
        return server, port

    async def start_web(
        self, *args: str, users: dict[str, str] | None = None
    ) -> tuple[ServerProcess, int, int]:
        """Start a server that also serves the web edge; give it, its TCP port and its web port."""
        server, port = await self.start(*WEB, *args, users=users)
        assert server.web_port is not None
        return server, port, server.web_port

    async def _finish(self, server: ServerProcess) -> None:
        if server.running:
            try:
                await server.signal(signal.SIGTERM)
            except defer.TimeoutError:
                await server.kill()
                self.case.fail(
                    "the server did not stop on SIGTERM:\n" + server.log.decode("utf-8", "replace")
                )
        problems = server.tracebacks()
        if problems:
            self.case.fail("the server logged a traceback:\n" + server.log.decode("utf-8", "replace")[-4000:])

    # --- clients ------------------------------------------------------------

    async def connect(self, port: int, source: str | None = None, host: str = "127.0.0.1") -> LineClient:
        """Connect to C{port} on C{host} (IPv4 or IPv6), from the loopback address C{source} if given."""
        bind = (source, 0) if source is not None else None
        endpoint: TCP4ClientEndpoint | TCP6ClientEndpoint
        if ":" in host:
            endpoint = TCP6ClientEndpoint(reactor, host, port, timeout=30, bindAddress=bind)
        else:
            endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=30, bindAddress=bind)
        client = await connectProtocol(endpoint, LineClient())
        self.case.addCleanup(abort, client)
        return client

    async def connect_with_small_window(self, port: int) -> LineClient:
        """
        Connect with a 4 KiB receive buffer, set before connecting so the
        window stays small: a client that stops reading is then noticed soon.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))  # loopback: immediate
            factory = _OneClient()
            reactor.adoptStreamConnection(sock.fileno(), socket.AF_INET, factory)  # type: ignore[attr-defined]
        finally:
            sock.close()  # the reactor has its own copy of the descriptor
        client = factory.client
        self.case.addCleanup(abort, client)
        return client

    async def login(
        self, port: int, name: str, password: str | None = None, source: str | None = None
    ) -> LineClient:
        """Connect and log in; the read position is then after the first C{Command:}."""
        client = await self.connect(port, source)
        await client.expect(USERNAME)
        client.send(name)
        await client.expect(PASSWORD)
        client.send(password if password is not None else USERS[name])
        await client.expect("Welcome")
        await client.expect(COMMAND)
        return client

    # --- WebSocket clients --------------------------------------------------

    async def websocket(self, web_port: int) -> WebSocketClient:
        """
        Open C{/ws} on C{web_port} with Twisted's WebSocket client (which
        sends no C{Origin}, as a program does).  A refused upgrade raises
        L{twisted.web.websocket.ConnectionRejected}.
        """
        client = WebSocketClient()
        self.case.addCleanup(abort, client)
        return await connect_websocket(web_port, client)

    async def ws_login(self, web_port: int, name: str, password: str | None = None) -> WebSocketClient:
        """
        Open C{/ws} and log in; the read position is then after the
        C{welcome}, so what follows it (offline messages) is still unread.
        """
        client = await self.websocket(web_port)
        await client.expect(type="hello", protocol=1)
        await client.expect({"type": "prompt", "for": "login"})
        client.send(
            {"type": "login", "username": name, "password": password if password is not None else USERS[name]}
        )
        await client.expect(type="welcome", name=name)
        return client

    async def upgrade(
        self,
        web_port: int,
        origin: str | None = None,
        timeout: float = 10,
        proxy_from: str | None = None,
        host: str | None = None,
    ) -> RawWebSocket:
        """
        Ask for C{/ws} on C{web_port} by hand, with C{origin} if given (and
        as if through a proxy for C{proxy_from}, and with C{host} as the
        C{Host} header instead of the address it connects to), over a plain
        TCP connection; give the client once the response is in (its
        C{status} and C{body} say how the server answered).
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", web_port, timeout=30)
        client = RawWebSocket(host or f"127.0.0.1:{web_port}", origin, proxy_from)
        await connectProtocol(endpoint, client)
        self.case.addCleanup(abort, client)
        await timeout_deferred(client.response, timeout, "the answer to a WebSocket upgrade")
        return client


async def ws_drain(client: WebSocketClient | RawWebSocket) -> list[dict[str, Any]]:
    """
    The messages C{client} received from its read position up to the
    answer to a C{whoelse}, which is then consumed.  Use it to show that
    something did I{not} arrive, or arrived once.
    """
    start = client.position
    client.send({"type": "whoelse"})
    await client.expect(type="roster")
    return client.events[start : client.position - 1]


class _OneClient(protocol.Factory):
    client: LineClient

    def buildProtocol(self, addr: object) -> LineClient:
        self.client = LineClient()
        return self.client


def abort(client: LineClient | JsonEvents) -> defer.Deferred[None]:
    """Drop the connection if it is still open; fires once it is gone."""
    transport: Any = getattr(client, "transport", None)
    if client.closed.called or transport is None:
        return defer.succeed(None)
    d: defer.Deferred[None] = defer.Deferred()

    def gone(result: object) -> object:
        d.callback(None)
        return result

    client.closed.addBoth(gone)
    transport.abortConnection()
    return d


async def startup_failure(
    case: unittest.TestCase,
    *args: str,
    users_text: str | None = None,
    timeout: float = 30,
    reported: bytes | None = None,
    exit_within: float = 5,
) -> tuple[int, str]:
    """
    Start a server that should refuse to start; give its exit status and
    everything it printed.  A server that starts, or hangs, fails the test.

    With C{reported}, the server is allowed C{exit_within} seconds to exit
    once it has printed C{reported} (its own account of the failure).
    """
    directory = os.path.abspath(case.mktemp())
    os.makedirs(directory)
    if users_text is not None:
        with open(os.path.join(directory, "users.txt"), "w") as f:
            f.write(users_text)
    server = ServerProcess(directory, args=args)
    hung: list[bool] = []
    starting = server.start(timeout=timeout)
    watcher: defer.Deferred[None] = defer.succeed(None)
    if reported is not None:
        watcher = defer.ensureDeferred(_kill_if_hung(server, reported, timeout, exit_within, hung))
    problem = None
    try:
        await starting
    except RuntimeError:
        pass  # exited before listening, as it should
    except defer.TimeoutError:
        problem = "the server neither listened nor exited"
        await server.kill()
    else:
        problem = f"the server started with {args!r}"
        await server.stop()
    await server.wait_exit()
    await watcher
    if hung:
        problem = f"the server printed {reported!r} but had not exited {exit_within}s later"
    if problem is not None:
        case.fail(problem + ":\n" + server.log.decode("utf-8", "replace"))
    assert server.exit is not None
    value = server.exit.value
    code = value.exitCode if isinstance(value, ProcessTerminated) else 0
    return code, server.log.decode("utf-8", "replace")


async def _kill_if_hung(
    server: ServerProcess, reported: bytes, timeout: float, within: float, hung: list[bool]
) -> None:
    """Kill C{server} if it still runs C{within} seconds after printing C{reported}."""
    try:
        await server.expect_log(re.escape(reported.decode("utf-8")), timeout=timeout)
        await server.wait_exit(within)
    except AssertionError:
        return  # it exited without saying so; startup_failure shows the log
    except defer.TimeoutError:
        if server.exit is None:
            hung.append(True)
            await server.kill()
