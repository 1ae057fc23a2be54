"""
The web edge: an HTTP site whose C{/ws} is a WebSocket to the same sessions
as the TCP port, speaking JSON (L{chat.server.edges.jsonwire}).

Built on C{twisted.web.websocket}, with what it leaves to the application:

- the C{Origin} of an upgrade is checked before it happens (the page's own
  origin, and those given with C{--web-origin}); anything else gets 403;
  so does a page of the site's own origin under a host name nobody listed
  (C{--web-host}): that is a name rebound to this server's address (DNS
  rebinding), not this site;
- every connection to the site is counted from the moment it is accepted,
  with the TCP edge's, per address and against the descriptors
  (L{chat.server.limits.ConnectionCount}); an upgraded WebSocket keeps the
  count of its HTTP connection;
- a request must arrive whole within L{REQUEST_DEADLINE} seconds, however
  slowly it is trickled;
- the page is four files held in memory; any other path is a short 404, and
  no request is logged;
- a message is at most 4 KiB, like a TCP line: a longer one gets one error
  and the connection closes, and is never buffered whole;
- a ping every 30 seconds, and a peer that has not answered the last one by
  the next is disconnected;
- what is queued for a browser that stops reading is bounded, as for TCP.

Frames the server sends are written straight to the TCP transport: they are
not masked, so a delivery's frame is built once for every browser.  The
upgrade itself uses the parts of Twisted's implementation that it keeps
private (the wire protocol, its event handlers, and the channel's upgrade
hook, all imported here and nowhere else); the tests of this module cover
each of them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Callable, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import attrs
import h11
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, resource, server
from twisted.web.server import NOT_DONE_YET, Request
from wsproto import ConnectionType
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.handshake import H11Handshake
from wsproto.utilities import LocalProtocolError, ProtocolError, RemoteProtocolError
from zope.interface import implementer

from chat import __version__
from chat.server import commands, twisted_internals
from chat.server.context import ServerContext
from chat.server.edges import jsonwire
from chat.server.edges.bounded import BoundedOutput
from chat.server.edges.tcp import Refuse, host_of
from chat.server.edges.text import render as sentence
from chat.server.events import (
    Ask,
    Event,
    Goodbye,
    Reason,
    SessionInfo,
    StoredMessage,
    TooManyConnections,
    Welcome,
)
from chat.server.interfaces import IEdge
from chat.server.limits import Slot
from chat.server.quietlog import QuietLog
from chat.server.session import Session, State

log = Logger()

#: The largest message a browser may send, in bytes of UTF-8.
MAX_MESSAGE = 4096
PING_INTERVAL = 30.0

#: Seconds a request has to arrive whole, from when the connection is made
#: or the last response is sent: headers trickled a line every few seconds
#: do not keep a connection (and its descriptor) for ever.  An idle
#: keep-alive connection is closed after as long.
REQUEST_DEADLINE = 10.0

#: The page, its style and its script: files in the package, no build step.
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

#: The files of the page, each served under its own name ("/" is the page),
#: with the type static.File gave it.
FILES: dict[str, bytes] = {
    "index.html": b"text/html",
    "chat.js": b"text/javascript",
    "chat.css": b"text/css",
    "icon.svg": b"image/svg+xml",
}

#: Host names a browser may reach the site by without their being listed:
#: they cannot be rebound to this server by someone else's DNS.
LOCAL_NAMES = frozenset({"localhost"})

#: Every response of the site carries these, and a Content-Security-Policy.
SECURITY_HEADERS: dict[bytes, bytes] = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"cache-control": b"no-cache",
}

_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def host_name(host: str) -> str | None:
    """
    The name or address a C{Host} header names, in lower case and without
    its port (an IPv6 address keeps its brackets); None if it names none.
    """
    if not _HOST.fullmatch(host):
        return None
    host = host.lower()
    if host.startswith("["):
        return host[: host.index("]") + 1]
    return host.partition(":")[0]


_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def parse_hosts(text: str) -> tuple[str, ...]:
    """
    C{--web-host}: host names, comma-separated, in lower case.

    @raise ValueError: naming the first that is not a host name (a port or
        a scheme with it, say).
    """
    names = []
    for item in text.split(","):
        name = item.strip().lower()
        if not name:
            continue
        if len(name) > 253 or not _NAME.fullmatch(name):
            raise ValueError(f"{item.strip()!r} is not a host name")
        names.append(name)
    return tuple(names)


def is_address(name: str) -> bool:
    """Whether C{name} (from L{host_name}) is an IP address: IPv4, or IPv6 in brackets."""
    try:
        if name.startswith("["):
            ipaddress.IPv6Address(name[1:-1])
        else:
            ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def loggable(text: str | None, limit: int = 100) -> str:
    """What a client sent, fit for one line of the log: escaped, and cut at C{limit} characters."""
    if text is None:
        return "-"
    shown = repr(text[:limit])[1:-1]
    return shown + "..." if len(text) > limit else shown


def content_security_policy(host: str | None, secure: bool) -> bytes:
    """
    No inline script, no eval, nothing from elsewhere; and the page's own
    WebSocket written out, for browsers that do not count C{ws:} and C{wss:}
    as C{'self'}.  C{host} comes from the request, so it is used only if it
    looks like a host; an IPv6 address is left out, as CSP's grammar has no
    place for one (Chromium reports it as invalid) and the browsers that
    reach a page by one count its WebSocket as C{'self'}.
    """
    connect = "'self'"
    if host is not None and _HOST.fullmatch(host) and not host.startswith("["):
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
    #: How a message to this user reaches the transport (L{IParticipant}):
    #: held until the welcome is done, then straight to the transport (they
    #: are whole frames) while the browser keeps up.
    deliver: Callable[[bytes], None]
    kind = "web"
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
        #: Messages to this user, until the welcome is done (L{start_deliveries}).
        self._waiting: list[bytes] = []
        self._live = False
        self.deliver = self._waiting.append
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
        settings = self.context.settings
        limits = {
            "max_message": settings.limits.max_message,
            "max_frame": MAX_MESSAGE,
            "last_hour": settings.limits.last_hour,
            "history": settings.history,
        }
        hello = jsonwire.hello(f"chat {__version__}", settings.idle_timeout, limits)
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
        admin = self.session is not None and self.session.admin
        request = jsonwire.parse_request(message, self.context.settings.limits, admin)
        if isinstance(request, jsonwire.BadRequest):
            self._refuse(request)
        elif isinstance(request, jsonwire.Login | jsonwire.Resume):
            if session.state is not State.USERNAME:
                self._refuse(jsonwire.BadRequest("not_now", "type", "login"))
            elif isinstance(request, jsonwire.Resume):
                session.resume(request.token)
            else:
                session.login(request.username, request.password)
        elif isinstance(request, jsonwire.Line):
            session.line_received(request.text)
        elif isinstance(
            request,
            jsonwire.Active | jsonwire.Ack | jsonwire.Read | jsonwire.IsTyping | jsonwire.ListConversations,
        ):
            if session.state.logging_in:
                self._refuse(jsonwire.BadRequest("login_first", "type"))
            elif isinstance(request, jsonwire.Active):
                session.active()
            elif isinstance(request, jsonwire.IsTyping):
                session.typing(request.conversation)
            elif isinstance(request, jsonwire.Read):
                session.read(request.conversations, request.until)
            elif isinstance(request, jsonwire.ListConversations):
                session.list_conversations()
            else:
                session.acknowledge(request.ids)
        elif not isinstance(request, commands.COMMAND_TYPES):
            # An error of the command language: the same event a typed line gets.
            session.input_error(request)
        elif session.state.logging_in:
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

    def answering_held_line(self) -> None:
        pass  # frames are not lines after a prompt

    def send_prompt(self, prompt: Ask) -> None:
        asked = jsonwire.prompt(prompt)
        if asked is not None:
            self._send_text(asked)

    def _send_text(self, text: str) -> None:
        self._write(jsonwire.frame(text))

    # --- IParticipant: messages from others ---------------------------------------

    def start_deliveries(self) -> None:
        waiting, self._waiting = self._waiting, []
        self._live = True
        for payload in waiting:
            self._write(payload)
        self._reroute()

    def stop_deliveries(self) -> None:
        self._live = False
        self._waiting = []
        self.deliver = _drop

    def handed(self, messages: Sequence[StoredMessage]) -> None:
        if self.session is not None:
            self.session.handed(messages)

    def goodbye(self, reason: Goodbye) -> Deferred[None]:
        if self.session is None:
            return succeed(None)
        return self.session.goodbye(reason)

    def about(self) -> SessionInfo | None:
        return None if self.session is None else self.session.about()

    def _reroute(self) -> None:
        """
        Deliveries go straight to the transport (they are whole frames)
        unless the browser is not keeping up, when they are counted.
        """
        if self._live:
            self.deliver = self._write if self._congested else self.transport.write

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
    def logged_in(self) -> bool:
        """Whether its user has logged in: then it is never closed to make room."""
        return self.session is not None and self.session.logged_in

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
            self.quiet.info(
                "WebSockets closed: no answer to a ping",
                "{host} stopped answering pings; disconnected",
                self.peer_host,
            )
            self._closing = True
            self.transport.abortConnection()
            return
        self._awaiting_pong = True
        self.wire.ping(b"chat")


def _drop(payload: bytes) -> None:
    """Where messages to a closed session go."""


class _ChatWire(twisted_internals.WebSocketWire):
    """
    Twisted's wire protocol, with a bound on the size of a message: the
    parts of a message are counted as they arrive, so a peer cannot make the
    server buffer more than L{MAX_MESSAGE} of one.

    It also keeps to the state wsproto is in once either side has closed:
    Twisted's handlers answer a ping or a bad frame however the connection
    stands, and wsproto raises when asked to send anything after the
    server's close frame; what a peer sends then is not answered.  Anything
    wsproto refuses aborts the connection, without a traceback: it is the
    peer's doing.
    """

    _inbound = 0

    def dataReceived(self, data: bytes) -> None:
        try:
            self._receive(data)
        except (LocalProtocolError, RemoteProtocolError):
            cast(Any, self.transport).abortConnection()

    def _receive(self, data: bytes) -> None:
        connection = twisted_internals.wire_connection(self)
        if connection.state is ConnectionState.CLOSED:
            return  # both close frames are through: nothing more is read
        connection.receive_data(data)
        for event in connection.events():
            if isinstance(event, TextMessage | BytesMessage):
                chunk = event.data
                self._inbound += len(chunk.encode("utf-8")) if isinstance(chunk, str) else len(chunk)
                if self._inbound > MAX_MESSAGE:
                    twisted_internals.wire_protocol(self).message_too_big()
                    return
                if event.message_finished:
                    self._inbound = 0
                twisted_internals.handle_event(event, self)
            elif isinstance(event, Ping):
                if connection.state is ConnectionState.OPEN:
                    self.transport.write(connection.send(event.response()))
            elif isinstance(event, CloseConnection):
                # The peer's close, or wsproto's for a frame it could not
                # parse: answered only if the server has not closed first.
                if connection.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                    self.transport.write(connection.send(event.response()))
                self.transport.loseConnection()
                return
            else:
                twisted_internals.handle_event(event, self)

    def ping(self, payload: bytes = b"") -> None:
        if twisted_internals.wire_connection(self).state is ConnectionState.OPEN:
            super().ping(payload)


class ChatWebSocketResource(resource.Resource):
    """
    C{/ws}: checks the upgrade (origin, host), then hands the connection to
    a L{ChatWebSocket}, which keeps its channel's place in the count of
    connections.
    """

    isLeaf = True

    def __init__(
        self,
        context: ServerContext,
        origins: Sequence[str],
        max_backlog: int,
        hosts: Sequence[str] = (),
    ) -> None:
        """
        @param hosts: host names the site is reached by (C{--web-host}),
            besides IP addresses, C{localhost} and the hosts of C{origins}.
        """
        super().__init__()
        self.context = context
        self.origins = frozenset(o.lower().rstrip("/") for o in origins)
        names = set(LOCAL_NAMES)
        names.update(h.strip().lower() for h in hosts if h.strip())
        for origin in self.origins:
            try:
                name = urlsplit(origin).hostname
            except ValueError:
                continue
            if name:
                names.add(name)
        self.hosts = frozenset(names)
        self.max_backlog = max_backlog

    def refusal(self, request: Request) -> str | None:
        """
        What makes the page that asks unfit to connect ("origin" or
        "host"), or None if it may.  Requests without an C{Origin} come
        from programs, not pages, and are allowed: a program chooses its
        C{Host} as it likes, so checking it would protect nobody.  A page
        must be on an origin given with C{--web-origin}, or on this site:
        an origin of the same scheme and host as the request, under a host
        that is an address or a name this server is known by.  The same
        origin under any other name is a page whose name was rebound to
        this server's address, reaching it in its visitor's name.
        """
        origin = request.getHeader("origin")
        if origin is None:
            return None
        origin = origin.lower().rstrip("/")
        if origin in self.origins:
            return None
        host = (request.getHeader("host") or "").lower()
        if origin != f"{'https' if request.isSecure() else 'http'}://{host}":
            return "origin"
        name = host_name(host)
        if name is None or not (name in self.hosts or is_address(name)):
            return "host"
        return None

    def allowed(self, request: Request) -> bool:
        """Whether the page (or program) that asks may connect; see L{refusal}."""
        return self.refusal(request) is None

    def render_GET(self, request: Request) -> bytes | int:
        channel = cast(ChatChannel, request.channel)
        refusal = self.refusal(request)
        if refusal is not None:
            self.context.service.quiet.info(
                f"WebSockets refused: {refusal} not allowed",
                "refused a WebSocket from {origin} to {to}: {what} not allowed",
                channel.slot.host,
                origin=loggable(request.getHeader("origin")),
                to=loggable(request.getHeader("host")),
                what=refusal,
            )
            return _final(
                request, 403, f"This page may not open a chat connection here ({refusal} not allowed).\n"
            )
        handshake = H11Handshake(ConnectionType.SERVER)
        headers = [(k, v) for k, values in request.requestHeaders.getAllRawHeaders() for v in values]
        try:
            handshake.initiate_upgrade_connection(headers, request.path)
            accept = handshake.send(AcceptConnection())
        except (ProtocolError, h11.ProtocolError, UnicodeError):
            # Not an upgrade, or headers wsproto (or h11 under it) will not
            # take: bad names, or bytes that are not ASCII where it decodes.
            return _final(request, 400, "This is the chat's WebSocket; connect with a WebSocket client.\n")
        connection = handshake.connection
        assert connection is not None
        slot = channel.slot
        edge = ChatWebSocket(self.context, slot.host, self.max_backlog, slot.release)
        wire = _ChatWire(connection, twisted_internals.server_bootstrap, edge)
        channel.upgrade(wire, edge)
        cast(Any, channel.transport).write(accept)
        edge.negotiationFinished()
        return NOT_DONE_YET


#: Reason phrases Twisted does not know.
_PHRASES = {429: b"Too Many Requests"}


def _plain(request: Request, code: int, text: str) -> bytes:
    request.setResponseCode(code, _PHRASES.get(code))
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return text.encode("utf-8")


def _final(request: Request, code: int, text: str) -> bytes:
    """
    L{_plain}, and the connection closes after it: a refused upgrade has
    nothing more to ask, and the connection stops counting against its
    address at once.
    """
    request.setHeader(b"connection", b"close")
    cast(ChatChannel, request.channel).persistent = False
    return _plain(request, code, text)


@attrs.frozen
class _File:
    """One of the page's files, read once at startup."""

    body: bytes
    content_type: bytes
    etag: bytes

    @classmethod
    def read(cls, path: str, content_type: bytes) -> _File:
        with open(path, "rb") as f:
            body = f.read()
        return cls(body, content_type, b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"')


class _Root(resource.Resource):
    """
    The whole site: the page's files, C{/ws}, and a short 404 for anything
    else.  Paths are looked up as sent, bytes for bytes, never decoded nor
    taken to the file system, so no path can make it fail.
    """

    isLeaf = True

    def __init__(self, files: dict[bytes, _File], socket: ChatWebSocketResource) -> None:
        super().__init__()
        self.files = files
        self.socket = socket

    def render(self, request: Request) -> bytes | int:
        path, method = request.path, request.method
        if path == b"/ws":
            if method != b"GET":
                request.setHeader(b"allow", b"GET")
                return _final(request, 405, "Method not allowed.\n")
            return self.socket.render_GET(request)
        found = self.files.get(path)
        if found is None:
            return _plain(request, 404, "Not found.\n")
        if method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return _plain(request, 405, "Method not allowed.\n")
        request.setHeader(b"content-type", found.content_type)
        if request.setETag(found.etag) is http.CACHED:
            return b""
        return found.body


class _TooMany(resource.Resource):
    """What every request on a connection over its address's limit gets: 429, then the connection closes."""

    isLeaf = True

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def render(self, request: Request) -> bytes:
        return _final(request, 429, sentence(TooManyConnections(self.limit)) + "\n")


class ChatChannel(http.HTTPChannel):
    """
    One connection to the site, with its place in the count of connections
    (taken when it was accepted, released when it is lost, or handed to
    the WebSocket it becomes) and a deadline for each request.

    The deadline runs from when the channel starts waiting for a request
    (the connection is made, or a response is sent) until the request is
    whole; Twisted's own timeout, which every byte restarts, is off.  A
    request still coming at the deadline is aborted; a connection that sent
    nothing is closed, as an idle keep-alive connection is.
    """

    site: ChatSite

    def __init__(self, site: ChatSite, slot: Slot) -> None:
        super().__init__()
        self.site = site
        self.factory = site
        self.requestFactory = site.requestFactory
        self.timeOut = None
        self.slot = slot
        self._deadline: IDelayedCall | None = None
        self._heard = False
        self._addressed = False
        self._upgraded = False
        #: Lines of the head of the request being read.
        self._head_lines = 0
        #: Past Twisted's bound on a line: the status to answer once the head
        #: has been read to its end (and its last bytes, to find that end).
        self._too_long: int | None = None
        self._tail = b""
        self._answered = False

    @property
    def context(self) -> ServerContext:
        return self.site.context

    def connectionMade(self) -> None:
        super().connectionMade()
        self._await_request()

    def dataReceived(self, data: bytes) -> None:
        if not self._addressed:
            # Behind a proxy speaking the PROXY protocol the address is
            # known only now, once the proxy has said it.
            self._addressed = True
            host = host_of(cast(Any, self.transport).getPeer())
            self.context.connections.readdress(self.slot, host, self.context.service.quiet)
        self._heard = True
        if self._too_long is not None:
            self._discard(data)
            return
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        self._head_lines += 1
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        A request line or a header longer than Twisted's bound (16 KiB):
        what is left of the head is read and dropped, then answered (414 or
        431), and the connection closed.  Closed at once, with the rest
        unread, the connection would be reset and the answer lost.
        """
        self._too_long = 414 if self._head_lines == 0 else 431
        self._discard(line)

    def _discard(self, data: bytes) -> None:
        code = self._too_long
        if code is None or self._answered:
            return
        seen = self._tail + data
        self._tail = seen[-3:]
        if b"\r\n\r\n" not in seen:
            return
        self._answered = True
        phrase = b"URI Too Long" if code == 414 else b"Request Header Fields Too Large"
        body = b"The request is too long.\n"
        cast(Any, self.transport).write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (code, phrase, len(body), body)
        )
        self.slot.closing()
        self.loseConnection()

    def allContentReceived(self) -> None:
        self._stop_deadline()
        self._head_lines = 0
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        if not self.persistent:
            self.slot.closing()
        # Armed before the next request, which may be whole already and
        # handled inside the call below, is read.
        self._heard = False
        self._await_request()
        super().requestDone(request)

    def upgrade(self, wire: _ChatWire, edge: ChatWebSocket) -> None:
        """
        The connection becomes C{edge}'s WebSocket: no more deadlines, and
        its place in the count goes with it (the edge releases it, once
        lost); it is closed to make room only while its user has not logged in.
        """
        self._upgraded = True
        self._stop_deadline()
        self.slot.logged_in = lambda: edge.logged_in
        # The channel registered itself as the transport's producer; the edge
        # takes its place, to see a browser that stops reading.
        cast(Any, self.transport).unregisterProducer()
        twisted_internals.upgrade_channel(self, wire)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_deadline()
        self.slot.release()
        super().connectionLost(reason)

    def _await_request(self) -> None:
        self._stop_deadline()
        self._deadline = self.context.clock.callLater(REQUEST_DEADLINE, self._expired)

    def _stop_deadline(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _expired(self) -> None:
        self._deadline = None
        transport: Any = self.transport
        if self._heard:
            self.context.service.quiet.info(
                "web connections closed: request not whole in time",
                "closed the connection from {host}: its request was not whole after {seconds:g} s",
                self.slot.host,
                seconds=REQUEST_DEADLINE,
            )
            transport.abortConnection()
        elif transport.disconnecting:
            # Closed already, with a response the client does not read.
            transport.abortConnection()
        else:
            transport.loseConnection()
            self._deadline = self.context.clock.callLater(REQUEST_DEADLINE, transport.abortConnection)


class ChatSite(server.Site):
    """
    The site: counts and times every connection (L{ChatChannel}), and
    answers with the security headers (L{_SecureRequest}).  No access log:
    a line per request is a line per request an attacker sends.
    """

    def __init__(self, root: resource.Resource, context: ServerContext) -> None:
        super().__init__(root, timeout=None, reactor=context.clock)
        self.context = context
        self.requestFactory = _SecureRequest
        self.displayTracebacks = False
        self.too_many = _TooMany(context.connections.max_per_host)

    # Twisted types what its factory builds as its own channel (a private
    # class); this one builds a channel of its own, or a refusal.
    def buildProtocol(self, addr: IAddress | None) -> Protocol:  # type: ignore[override]
        slot = self.context.connections.admit(host_of(addr), self.context.service.quiet)
        if slot.dropped:
            return Refuse(None, slot)
        channel = ChatChannel(self, slot)
        slot.owner = channel
        return channel

    def startFactory(self) -> None:
        """No access log to open (nor its clock ticking every second)."""

    def stopFactory(self) -> None:
        pass

    def log(self, request: Any) -> None:
        pass


class _SecureRequest(server.Request):
    """
    Every response with the security headers, and without a C{Server}
    header naming what runs the site.  The resource is the site's root
    (which serves everything itself) or, on a connection over its
    address's limit, the refusal.
    """

    def process(self) -> None:
        channel = cast(ChatChannel, self.channel)
        site = channel.site
        self.site = site
        self.setHeader(b"date", http.datetimeToString(site.context.clock.seconds()))
        for name, value in SECURITY_HEADERS.items():
            self.setHeader(name, value)
        self.setHeader(
            b"content-security-policy", content_security_policy(self.getHeader("host"), self.isSecure())
        )
        self.prepath = []
        self.postpath = []
        resource = site.too_many if channel.slot.refused else site.resource
        try:
            body = resource.render(self)
        except Exception:
            self.processingFailed(Failure())
            return
        if body is NOT_DONE_YET:
            return
        # Written here rather than by Request.render, which logs a line (with
        # the URL) for each HEAD answered with a body: write() leaves the
        # body out of an answer to HEAD by itself.
        self.setHeader(b"content-length", b"%d" % len(body))
        self.write(body)
        self.finish()

    def processingFailed(self, reason: Failure) -> Failure:
        quiet = cast(ChatSite, self.site).context.service.quiet
        quiet.failure("web requests failed", "answering a web request", reason)
        body = b"The server failed to answer; it has been logged.\n"
        self.setResponseCode(http.INTERNAL_SERVER_ERROR)
        self.setHeader(b"content-type", b"text/plain; charset=utf-8")
        self.setHeader(b"content-length", b"%d" % len(body))
        self.write(body)
        self.finish()
        return reason


def make_site(
    context: ServerContext, origins: Sequence[str], max_backlog: int, hosts: Sequence[str] = ()
) -> ChatSite:
    """The site, with the page's files read now, once."""
    files = {f"/{name}".encode(): _File.read(os.path.join(STATIC, name), t) for name, t in FILES.items()}
    files[b"/"] = files[b"/index.html"]
    socket = ChatWebSocketResource(context, origins, max_backlog, hosts)
    return ChatSite(_Root(files, socket), context)
