"""
The web edge: an HTTP site whose C{/ws} is a WebSocket to the same sessions
as the TCP port, speaking JSON (L{chat.server.edges.jsonwire}).

Built on C{twisted.web.websocket}, with what it leaves to the application:

- the C{Origin} of an upgrade is checked before it happens (the page's own
  origin, and those given with C{--web-origin}); anything else gets 403;
- the connections of one address are counted with the TCP edge's;
- a message is at most 4 KiB, like a TCP line: a longer one gets one error
  and the connection closes, and is never buffered whole;
- a ping every 30 seconds, and a peer that has not answered the last one by
  the next is disconnected;
- what is queued for a browser that stops reading is bounded, as for TCP.

Frames the server sends are written straight to the TCP transport: they are
not masked, so a delivery's frame is built once for every browser.  The
upgrade itself uses the parts of Twisted's implementation that it keeps
private (the wire protocol and the channel's upgrade hook); the tests of
this module cover each of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server, static
from twisted.web._websocket_impl import _handleEvent, _WebSocketWireProtocol, serverBootstrap
from twisted.web.server import NOT_DONE_YET, Request
from wsproto import ConnectionType
from wsproto.events import AcceptConnection, BytesMessage, TextMessage
from wsproto.handshake import H11Handshake
from wsproto.utilities import LocalProtocolError, RemoteProtocolError
from zope.interface import implementer

from chat import __version__
from chat.server import commands
from chat.server.edges import jsonwire
from chat.server.edges.bounded import BoundedOutput
from chat.server.edges.tcp import host_of
from chat.server.edges.text import render as sentence
from chat.server.events import Ask, Event, Goodbye, Reason, TooManyConnections, Welcome
from chat.server.interfaces import IEdge, IParticipant
from chat.server.quietlog import QuietLog
from chat.server.session import ServerContext, Session

log = Logger()

#: The largest message a browser may send, in bytes of UTF-8.
MAX_MESSAGE = 4096
PING_INTERVAL = 30.0

#: The page, its style and its script: files in the package, no build step.
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

#: Every response of the site carries these, and a Content-Security-Policy.
SECURITY_HEADERS: dict[bytes, bytes] = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"cache-control": b"no-cache",
}

_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def content_security_policy(host: str | None, secure: bool) -> bytes:
    """
    No inline script, no eval, nothing from elsewhere; and the page's own
    WebSocket written out, for browsers that do not count C{ws:} and C{wss:}
    as C{'self'}.  C{host} comes from the request, so it is used only if it
    looks like a host.
    """
    connect = "'self'"
    if host is not None and _HOST.fullmatch(host):
        connect += f" {'wss' if secure else 'ws'}://{host}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ).encode("ascii")


@implementer(IEdge)
class ChatWebSocket(BoundedOutput):
    """
    One browser (or any WebSocket client): an edge for a L{Session}.

    Requests are parsed as they arrive; while the session waits (a password
    check, the store) they are held, in order, and the socket is not read.
    """

    format = jsonwire.JSON
    acknowledges = True
    #: Seconds that C{close} waits for queued output before aborting.
    close_timeout = 10.0

    def __init__(
        self,
        context: ServerContext,
        peer_host: str,
        max_backlog: int,
        release: Callable[[], None],
        ping_interval: float = PING_INTERVAL,
    ) -> None:
        self.context = context
        self.peer_host = peer_host
        self._max_backlog = max_backlog
        self._release = release
        self._ping_interval = ping_interval
        self.session: Session | None = None
        self.wire: Any = None
        self.transport: Any = None
        self._paused = False
        self._held: list[str] = []
        self._closing = False
        self._routed: IParticipant | None = None
        self._awaiting_pong = False
        self._pinger: LoopingCall | None = None
        self._refresher: LoopingCall | None = None
        self._abort_call: IDelayedCall | None = None
        #: The user, once logged in.
        self._name: str | None = None
        #: What must be sent before the connection closes (the token that
        #: resumes a session ended for being idle), while it is on its way.
        self._parting: Deferred[None] | None = None
        self._lost = False

    # --- the WebSocket protocol -------------------------------------------------

    def negotiationStarted(self, transport: Any) -> None:
        self.wire = transport
        self.transport = transport.transport

    def negotiationFinished(self) -> None:
        self.transport.registerProducer(self, True)
        hello = jsonwire.hello(f"chat {__version__}", self.context.settings.idle_timeout)
        self._write(jsonwire.frame(hello))
        self.session = Session(self, self.context)
        self.session.start()
        pinger = self._pinger = LoopingCall(self._ping)
        pinger.clock = self.context.clock
        pinger.start(self._ping_interval, now=False)

    def textMessageReceived(self, message: str) -> None:
        if self._closing:
            return
        if self._paused:
            self._held.append(message)
            return
        self._handle(message)
        assert self.session is not None
        self.session.input_done()

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        if self._closing or self.session is None or not self.session.admit_input():
            return
        self._refuse(jsonwire.BadRequest("binary"))

    def pongReceived(self, payload: bytes) -> None:
        self._awaiting_pong = False

    def message_too_big(self) -> None:
        """The peer's message passed L{MAX_MESSAGE}: say so once and close."""
        if not self._closing:
            self._send_text(
                jsonwire.render_bad(jsonwire.BadRequest("message_too_big", detail=str(MAX_MESSAGE)))
            )
            self.close(1009)

    def connectionLost(self, reason: Failure) -> None:
        for timer in (self._pinger, self._refresher):
            if timer is not None and timer.running:
                timer.stop()
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._closing = True
        self._lost = True
        self._release()
        if self.session is not None:
            self.session.connection_lost()

    # --- requests ---------------------------------------------------------------

    def _handle(self, message: str) -> None:
        session = self.session
        assert session is not None
        if not session.admit_input():
            return
        request = jsonwire.parse_request(message, self.context.settings.limits)
        if isinstance(request, jsonwire.BadRequest):
            self._refuse(request)
        elif isinstance(request, jsonwire.Login | jsonwire.Resume):
            if session.state != "USERNAME":
                self._refuse(jsonwire.BadRequest("not_now", "type", "login"))
            elif isinstance(request, jsonwire.Resume):
                session.resume(request.token)
            else:
                session.login(request.username, request.password)
        elif isinstance(request, jsonwire.Line):
            session.line_received(request.text)
        elif isinstance(request, jsonwire.Active | jsonwire.Ack):
            if session.state in ("USERNAME", "PASSWORD"):
                self._refuse(jsonwire.BadRequest("login_first", "type"))
            elif isinstance(request, jsonwire.Active):
                session.active()
            else:
                session.acknowledge(request.ids)
        elif not isinstance(request, commands.COMMAND_TYPES):
            # An error of the command language: the same event a typed line gets.
            session.input_error(request)
        elif session.state in ("USERNAME", "PASSWORD"):
            self._refuse(jsonwire.BadRequest("login_first", "type"))
        else:
            session.command(request)

    def _refuse(self, error: jsonwire.BadRequest) -> None:
        self._send_text(jsonwire.render_bad(error))

    # --- IEdge ------------------------------------------------------------------

    def send(self, event: Event, prompt: Ask | None = None) -> None:
        if isinstance(event, Goodbye) and event.reason is Reason.IDLE and self._idle_token(event):
            return
        data = jsonwire.frames(event)
        if prompt is not None:
            asked = jsonwire.prompt(prompt)
            if asked is not None:
                data += jsonwire.frame(asked)
        self._write(data)
        if isinstance(event, Welcome):
            self._name = event.name
            self._start_tokens(event.name)

    # --- resume tokens ----------------------------------------------------------

    def _start_tokens(self, name: str) -> None:
        """
        Give the browser a token to come back with if the connection is
        lost, and a fresh one now and then, so the one it holds is never
        near its expiry.
        """
        tokens = self.context.tokens
        if tokens is None:
            return

        def issue() -> None:
            if self._closing:
                return
            tokens.issue(name).addCallbacks(self._send_token, self._token_failed)

        refresher = self._refresher = LoopingCall(issue)
        refresher.clock = self.context.clock
        refresher.start(tokens.lifetime / 3, now=True)

    def _idle_token(self, goodbye: Goodbye) -> bool:
        """
        A session ended for being idle is not a logout: the page keeps a
        token, good for longer than the usual ones, so that its reader comes
        back with one click and no password.  The goodbye follows the token;
        the connection closes once both are sent (L{close} waits for them).
        """
        tokens, name = self.context.tokens, self._name
        if tokens is None or name is None:
            return False

        def issued(token: tuple[str, float]) -> None:
            self._write(jsonwire.frame(jsonwire.session_token(*token)))

        parting = tokens.issue(name, tokens.idle_lifetime).addCallbacks(issued, self._token_failed)
        parting.addBoth(lambda _: self._write(jsonwire.frames(goodbye)))
        if not parting.called:
            self._parting = parting
        return True

    def _send_token(self, issued: tuple[str, float]) -> None:
        if not self._closing:
            self._send_text(jsonwire.session_token(*issued))

    def _token_failed(self, f: Failure) -> None:
        log.failure("could not issue a resume token", f)

    def send_prompt(self, prompt: Ask) -> None:
        asked = jsonwire.prompt(prompt)
        if asked is not None:
            self._send_text(asked)

    def send_rendered(self, payload: bytes) -> None:
        self._write(payload)

    def _send_text(self, text: str) -> None:
        self._write(jsonwire.frame(text))

    def route_deliveries(self, participant: IParticipant | None) -> None:
        self._routed = participant
        self._reroute()

    def _reroute(self) -> None:
        """
        Deliveries go straight to the transport (they are whole frames)
        unless the browser is not keeping up, when they are counted.
        """
        participant = self._routed
        if participant is not None:
            participant.receive = self._write if self._congested else self.transport.write

    def pause_input(self) -> None:
        self._paused = True
        self.transport.pauseProducing()

    def resume_input(self) -> None:
        if not self._paused:
            return
        self._paused = False
        session = self.session
        assert session is not None
        while self._held and not self._paused and not self._closing:
            self._handle(self._held.pop(0))
        session.input_done()
        if not self._paused and not self._closing:
            self.transport.resumeProducing()

    def close(self, code: int = 1000) -> None:
        if self._closing:
            return
        self._closing = True
        parting, self._parting = self._parting, None
        if parting is not None and not parting.called:
            parting.addBoth(lambda _: self._close_now(code))
            self._abort_later()
            return
        self._close_now(code)

    def _close_now(self, code: int) -> None:
        if self._lost:
            return
        try:
            self.wire.loseConnection(code)
        except LocalProtocolError:
            # The peer closed first; its close was answered already.
            self.transport.loseConnection()
        self._abort_later()

    def _abort_later(self) -> None:
        if self._abort_call is None:
            self._abort_call = self.context.clock.callLater(
                self.close_timeout, self.transport.abortConnection
            )

    # --- output -----------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._congested:
            self._write_congested(data)
        elif not self.cut_off:
            self.transport.write(data)

    @property
    def log_name(self) -> str:
        return self.session.log_name if self.session is not None else "-"

    @property
    def max_backlog(self) -> int:
        return self._max_backlog

    @property
    def quiet(self) -> QuietLog:
        return self.context.service.quiet

    def _ping(self) -> None:
        if self._closing:
            return
        if self._awaiting_pong:
            log.info("{host} stopped answering pings; disconnected", host=self.peer_host)
            self._closing = True
            self.transport.abortConnection()
            return
        self._awaiting_pong = True
        self.wire.ping(b"chat")


class _ChatWire(_WebSocketWireProtocol):
    """
    Twisted's wire protocol, with a bound on the size of a message: the
    parts of a message are counted as they arrive, so a peer cannot make the
    server buffer more than L{MAX_MESSAGE} of one.
    """

    _inbound = 0

    def dataReceived(self, data: bytes) -> None:
        self._wsconn.receive_data(data)
        for event in self._wsconn.events():
            if isinstance(event, TextMessage | BytesMessage):
                chunk = event.data
                self._inbound += len(chunk.encode("utf-8")) if isinstance(chunk, str) else len(chunk)
                if self._inbound > MAX_MESSAGE:
                    self._wsp.message_too_big()
                    return
                if event.message_finished:
                    self._inbound = 0
            _handleEvent(event, self)


class ChatWebSocketResource(resource.Resource):
    """
    C{/ws}: checks the upgrade (origin, connections per address), then hands
    the connection to a L{ChatWebSocket}.
    """

    isLeaf = True

    def __init__(self, context: ServerContext, origins: Sequence[str], max_backlog: int) -> None:
        super().__init__()
        self.context = context
        self.origins = frozenset(o.lower().rstrip("/") for o in origins)
        self.max_backlog = max_backlog

    def allowed(self, request: Request) -> bool:
        """
        Whether the page that asks may connect: requests without an
        C{Origin} come from programs, not pages, and are allowed; a page
        must be on this site or an origin given with C{--web-origin}.
        """
        origin = request.getHeader("origin")
        if origin is None:
            return True
        origin = origin.lower().rstrip("/")
        host = (request.getHeader("host") or "").lower()
        own = f"{'https' if request.isSecure() else 'http'}://{host}"
        return origin == own or origin in self.origins

    def render_GET(self, request: Request) -> bytes | int:
        if not self.allowed(request):
            log.info("refused a WebSocket from {origin}", origin=request.getHeader("origin"))
            return _plain(
                request, 403, "This page may not open a chat connection here (origin not allowed).\n"
            )
        host = host_of(request.getClientAddress())
        connections = self.context.connections
        counted = connections.open(host)
        if counted is False:
            limit = connections.max_per_host
            log.warn("refused a WebSocket from {host}: {count} open", host=host, count=limit)
            return _plain(request, 429, sentence(TooManyConnections(limit)) + "\n")
        release = (lambda: connections.close(host)) if counted else (lambda: None)
        handshake = H11Handshake(ConnectionType.SERVER)
        headers = [(k, v) for k, values in request.requestHeaders.getAllRawHeaders() for v in values]
        try:
            handshake.initiate_upgrade_connection(headers, request.path)
        except RemoteProtocolError:
            release()
            return _plain(request, 400, "This is the chat's WebSocket; connect with a WebSocket client.\n")
        edge = ChatWebSocket(self.context, host, self.max_backlog, release)
        accept = handshake.send(AcceptConnection())
        connection = handshake.connection
        assert connection is not None
        channel: Any = request.channel
        # The channel registered itself as the transport's producer; the edge
        # takes its place, to see a browser that stops reading.
        channel._networkProducer.unregisterProducer()
        channel.setTimeout(None)
        wire = _ChatWire(connection, serverBootstrap, edge)
        channel._protocolUpgradeForWebsockets(wire)
        channel.transport.write(accept)
        edge.negotiationFinished()
        return NOT_DONE_YET


def _plain(request: Request, code: int, text: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return text.encode("utf-8")


class Page(static.File):
    """The page's files, and nothing else: no directory listings."""

    def directoryListing(self) -> resource.Resource:
        return resource.NoResource()


class ChatSite(server.Site):
    """The site: every response carries the security headers."""

    def __init__(self, root: resource.Resource) -> None:
        super().__init__(root)
        self.requestFactory = _SecureRequest
        self.displayTracebacks = False


class _SecureRequest(server.Request):
    def process(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.setHeader(name, value)
        self.setHeader(
            b"content-security-policy", content_security_policy(self.getHeader("host"), self.isSecure())
        )
        super().process()


def make_site(context: ServerContext, origins: Sequence[str], max_backlog: int) -> ChatSite:
    root = Page(STATIC)
    root.indexNames = ["index.html"]
    root.putChild(b"ws", ChatWebSocketResource(context, origins, max_backlog))
    return ChatSite(root)
