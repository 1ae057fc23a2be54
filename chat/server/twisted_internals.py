"""
Every name of Twisted's that Twisted does not publish, and that this server
relies on: here, and nowhere else, each behind a small function that says
what is relied on.  C{tests/test_twisted_internals.py} imports each and
checks that behaviour, so an upgrade of Twisted that breaks one fails there,
by name, in a second; setup.cfg bounds Twisted to the versions tested.

- The WebSocket wire protocol of C{twisted.web.websocket}
  (C{_websocket_impl}): the public resource cannot bound a message's size
  as it arrives, refuse an upgrade quietly, or keep to wsproto's state
  after a close; the web edge builds on the wire protocol instead.
- The HTTP channel's upgrade hook, which hands the connection to that wire.
- TCP's transport and endpoint internals, for the write-through transport
  (L{chat.server.edges.writethrough}): whether anything is queued, and how
  to make a port of our own class from a parsed or an inherited endpoint.
- The per-turn send limit of a transport, raised for the link to Redis.
- A TCP transport's socket, closed at once when a connection is aborted to
  free its descriptor (L{abort_now}).
"""

from __future__ import annotations

import socket
import struct
from typing import Any, cast

from twisted.internet import tcp
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IProtocolFactory
from twisted.web._websocket_impl import _handleEvent, _WebSocketWireProtocol, serverBootstrap
from wsproto import Connection

__all__ = [
    "WebSocketWire",
    "abort_now",
    "adopt_port",
    "handle_event",
    "raise_send_limit",
    "server_bootstrap",
    "tcp_endpoint_port",
    "tcp_unjoined_bytes",
    "tcp_write_must_queue",
    "upgrade_channel",
    "wire_connection",
    "wire_protocol",
]

#: Twisted's WebSocket wire protocol: bytes to wsproto events to the
#: protocol's callbacks (C{textMessageReceived}, ...).
WebSocketWire = _WebSocketWireProtocol
#: What the server side of a WebSocket starts with.
server_bootstrap = serverBootstrap


def handle_event(event: object, wire: Any) -> None:
    """Hand one wsproto event to the wire's protocol, as Twisted would."""
    _handleEvent(event, wire)  # type: ignore[arg-type]


def wire_connection(wire: Any) -> Connection:
    """The wire's wsproto connection (its state says who has closed)."""
    return cast(Connection, wire._wsconn)


def wire_protocol(wire: Any) -> Any:
    """The protocol (our edge) the wire hands messages to."""
    return wire._wsp


def upgrade_channel(channel: Any, wire: Any) -> None:
    """From now on the HTTP channel's bytes go to C{wire}: the upgrade is done."""
    channel._protocolUpgradeForWebsockets(wire)


def tcp_write_must_queue(transport: tcp.Server) -> bool:
    """
    Whether a write must go through Twisted's queue rather than straight to
    the socket: something is queued already (it must go first), the
    connection is closing or aborted, TLS was started (it must encrypt), or
    a pull producer is asked for more only from C{doWrite}.
    """
    return bool(
        transport.dataBuffer
        or transport._tempDataLen
        or not transport.connected
        or transport._writeDisconnected
        or transport._aborting
        or transport.TLS
        or (transport.producer is not None and not transport.streamingProducer)
    )


def tcp_unjoined_bytes(transport: tcp.Server) -> int:
    """
    Bytes written to C{transport} but not yet joined into its C{dataBuffer}
    (Twisted gathers small writes in a list first): with the buffer, what
    is queued and not yet sent.
    """
    return int(cast(Any, transport)._tempDataLen)


def tcp_endpoint_port(
    endpoint: TCP4ServerEndpoint | TCP6ServerEndpoint, port_class: type[tcp.Port], factory: IProtocolFactory
) -> tcp.Port:
    """A port of C{port_class} on what a C{tcp:} endpoint string said (port, backlog, interface)."""
    inner: Any = endpoint
    return port_class(inner._port, factory, inner._backlog, inner._interface, inner._reactor)


def endpoint_reactor(endpoint: TCP4ServerEndpoint | TCP6ServerEndpoint) -> Any:
    return cast(Any, endpoint)._reactor


def adopt_port(
    endpoint: AdoptedStreamServerEndpoint, port_class: type[tcp.Port], factory: IProtocolFactory
) -> tcp.Port:
    """A port of C{port_class} on a socket handed over already listening (systemd)."""
    return cast(
        tcp.Port,
        port_class._fromListeningDescriptor(
            endpoint.reactor, endpoint.fileno, endpoint.addressFamily, factory
        ),
    )


def raise_send_limit(transport: object, limit: int) -> bool:
    """
    Let C{transport} hand the kernel up to C{limit} bytes per turn of the
    reactor (Twisted's C{FileDescriptor.SEND_LIMIT}, 128 KiB); say whether it
    could (a transport without it keeps its own).
    """
    if not hasattr(transport, "SEND_LIMIT"):
        return False
    cast(Any, transport).SEND_LIMIT = limit
    return True


def abort_now(transport: Any) -> None:
    """
    Abort the connection of C{transport} and give back its descriptor now.

    Twisted's C{abortConnection} closes the socket on the next turn of the
    reactor.  A port accepts dozens of connections in one turn; when each
    of them closes another to make room (L{chat.server.limits}), both
    descriptors were held until then, and a flood at the limit ran past it
    (C{EMFILE}).  Here the socket is closed at once, with the reset an
    abort sends, and the transport marked not connected, so that nothing
    writes to or watches the closed descriptor: what is written meanwhile
    is dropped, as after any abort.  The loss still reaches the protocol on
    the next turn, as after Twisted's own abort (C{ConnectionAborted}; over
    TLS, C{ConnectionLost}), where Twisted's own close finds nothing left to
    close.  A transport over TLS (or any wrapper) is closed through the TCP
    or UNIX transport under it; one with none is only aborted.
    """
    transport.abortConnection()
    connection = transport
    for _ in range(4):  # TLS wraps once; a few wrappers at most
        if isinstance(connection, tcp.Connection):
            break
        connection = getattr(connection, "transport", None)
    else:
        return
    skt = getattr(connection, "socket", None)
    if skt is None:  # lost already
        return
    connection.connected = False
    try:
        skt.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    skt.close()
