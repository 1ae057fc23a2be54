"""
TCP that writes at once.

Twisted's TCP transport queues every write, asks epoll to say when the
socket is writable, writes on the next turn of the reactor and then asks
epoll to stop: two C{epoll_ctl} calls and a turn's delay for each burst of
replies, where a C daemon calls C{send} and is done.  On a chat server
nearly every write fits in the kernel's buffer, so here a write goes to the
socket at once while nothing is queued, and only what the kernel does not
take (a short write, C{EAGAIN}) is queued the usual way, with the
writability watch that comes with it.

The transport's contract is unchanged: data is written in order (nothing
is sent directly while anything is queued); the registered producer is
paused when the queue passes C{bufferSize} and resumed when it drains, so
the slow-reader bound (L{chat.server.edges.bounded}) holds as before; a
connection lost during a direct write is found and reported by the usual
path, since the data is then queued and C{doWrite} meets the error.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from twisted.internet import defer, fdesc, tcp
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.posixbase import PosixReactorBase
from zope.interface import implementer

from chat.server import twisted_internals

#: Errors of C{send} that mean "try later": the data is queued.
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EINTR)


class WriteThroughServer(tcp.Server):
    """A server-side TCP transport whose writes go to the socket at once when they can."""

    def write(self, data: bytes) -> None:
        if twisted_internals.tcp_write_must_queue(self):
            # Something is queued (it must go first); the connection is
            # closing or aborted; TLS was started (it must encrypt); or a
            # pull producer is asked for more only from doWrite: the usual
            # path decides.
            super().write(data)
            return
        if not data:
            return
        try:
            sent = self.socket.send(data)
        except OSError as e:
            # EAGAIN: the kernel's buffer is full.  Anything else (a reset):
            # queue it, and let doWrite meet the error and report the loss
            # through the usual path.
            if e.errno not in _AGAIN:
                super().write(data)
                return
            sent = 0
        if sent < len(data):
            super().write(data[sent:])

    def writeSequence(self, iovec: Any) -> None:
        self.write(b"".join(iovec))


class WriteThroughPort(tcp.Port):
    transport = WriteThroughServer


@implementer(IStreamServerEndpoint)
class WriteThroughEndpoint:
    """
    A TCP server endpoint (as parsed from C{tcp:...} by C{serverFromString})
    whose connections write at once.  On a reactor that is not a posix one
    (a test's memory reactor) it is the plain endpoint.
    """

    def __init__(self, inner: TCP4ServerEndpoint | TCP6ServerEndpoint) -> None:
        self.inner = inner

    def listen(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        if not isinstance(twisted_internals.endpoint_reactor(self.inner), PosixReactorBase):
            return self.inner.listen(protocolFactory)

        def listen() -> IListeningPort:
            port = twisted_internals.tcp_endpoint_port(self.inner, WriteThroughPort, protocolFactory)
            port.startListening()
            return port

        return defer.execute(listen)


@implementer(IStreamServerEndpoint)
class WriteThroughAdoptedEndpoint:
    """
    A TCP socket handed over already listening (systemd's socket
    activation, C{systemd:domain=INET:index=0}), whose connections write at
    once like those of L{WriteThroughEndpoint}.
    """

    def __init__(self, inner: AdoptedStreamServerEndpoint) -> None:
        self.inner = inner

    def listen(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        inner = self.inner
        reactor = inner.reactor
        if not isinstance(reactor, PosixReactorBase):
            return inner.listen(protocolFactory)

        def listen() -> IListeningPort:
            # What AdoptedStreamServerEndpoint.listen does, with our port
            # class in the place of tcp.Port.
            fdesc.setNonBlocking(inner.fileno)
            port = twisted_internals.adopt_port(inner, WriteThroughPort, protocolFactory)
            port.startListening()
            os.close(inner.fileno)
            return port

        return defer.execute(listen)


def write_through(endpoint: IStreamServerEndpoint) -> IStreamServerEndpoint:
    """
    C{endpoint} made to write at once, if it is TCP (parsed, or a socket
    systemd handed over); otherwise (TLS, a UNIX socket) as it is.
    """
    if type(endpoint) in (TCP4ServerEndpoint, TCP6ServerEndpoint):
        return WriteThroughEndpoint(endpoint)  # type: ignore[arg-type]
    if type(endpoint) is AdoptedStreamServerEndpoint and endpoint.addressFamily in (
        socket.AF_INET,
        socket.AF_INET6,
    ):
        return WriteThroughAdoptedEndpoint(endpoint)
    return endpoint
