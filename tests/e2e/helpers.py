"""
More helpers for the end-to-end tests, on top of L{tests.e2e.support}.

L{Lab} owns what one test starts (servers, connections) and tears all of it
down, and fails the test if a server logged a traceback while it ran.
L{drain} is how a test says "this client received nothing": it runs a
harmless command and looks at everything that arrived before its answer,
which the server writes in order on the one connection; L{ws_drain} does
the same for a WebSocket client.
"""

from __future__ import annotations

import os
import re
import signal
import socket
from collections.abc import Awaitable
from typing import Any, TypeVar

from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ProcessTerminated
from twisted.trial import unittest

from tests.e2e.support import (
    USERS,
    JsonEvents,
    LineClient,
    RawWebSocket,
    ServerProcess,
    WebSocketClient,
    connect_websocket,
)
from tests.expect import timeout_deferred

T = TypeVar("T")

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


def pause(seconds: float) -> defer.Deferred[None]:
    """Let time pass (for polling loops only; never to wait for an event)."""
    return task.deferLater(reactor, seconds, lambda: None)


class Lab:
    """
    What one test starts: servers and connections, all cleaned up after it.

    Servers are stopped with SIGTERM last, after every connection is closed;
    a traceback in a server's output then fails the test.
    """

    def __init__(self, case: unittest.TestCase) -> None:
        self.case = case

    # --- servers ------------------------------------------------------------

    def server(
        self,
        *args: str,
        directory: str | None = None,
        users: dict[str, str] | None = None,
        twistd: tuple[str, ...] | None = None,
    ) -> ServerProcess:
        """A server not yet started, stopped after the test."""
        server = ServerProcess(directory or self.case.mktemp(), users=users, args=args, twistd=twistd)
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

    async def connect(self, port: int, source: str | None = None) -> LineClient:
        """Connect to C{port}, from the loopback address C{source} if given."""
        bind = (source, 0) if source is not None else None
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=30, bindAddress=bind)
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
    watcher: defer.Deferred[None] = defer.succeed(None)
    if reported is not None:
        watcher = defer.ensureDeferred(_kill_if_hung(server, reported, exit_within, hung))
    problem = None
    try:
        await server.start(timeout=timeout)
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


async def _kill_if_hung(server: ServerProcess, reported: bytes, within: float, hung: list[bool]) -> None:
    """Kill C{server} if it still runs C{within} seconds after printing C{reported}."""
    while server.exit is None and reported not in server.log:
        await pause(0.1)
    deadline = reactor.seconds() + within
    while server.exit is None and reactor.seconds() < deadline:
        await pause(0.1)
    if server.exit is None:
        hung.append(True)
        await server.kill()
