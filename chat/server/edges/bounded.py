"""
What every edge does about a client that stops reading.

The edge is the producer registered on its own transport: the transport
calls C{pauseProducing} when its send buffer is full and C{resumeProducing}
when it has drained.  Between the two, what is written is counted, and past
C{max_backlog} bytes the connection is aborted (the client is not reading,
so a goodbye would not arrive); C{_backlog} is then -1 and nothing more is
written.  Nobody else notices: the bound is per connection.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from chat.server.quietlog import QuietLog


@implementer(IPushProducer)
class BoundedOutput:
    """
    A mixin for an edge with a C{transport}, a C{peer_host}, a
    C{max_backlog} and a C{log_name}; it calls C{_reroute} whenever the
    client starts or stops keeping up, so deliveries can go straight to the
    transport while it does.
    """

    transport: Any
    peer_host: str
    _congested = False
    _backlog = 0
    #: Whether the client was disconnected for not reading (a plain
    #: attribute: the edges look at it for every line and write).
    cut_off = False

    @property
    def max_backlog(self) -> int:
        raise NotImplementedError

    @property
    def log_name(self) -> str:
        raise NotImplementedError

    @property
    def quiet(self) -> QuietLog:
        raise NotImplementedError

    def _reroute(self) -> None:
        raise NotImplementedError

    def _write_congested(self, data: bytes) -> None:
        """
        The client is not keeping up: queue up to the bound, then cut it off.
        Once cut off, nothing more is queued for it.
        """
        if self._backlog < 0:
            return
        self._backlog += len(data)
        if self._backlog > self.max_backlog:
            self._cut_off(self._backlog)
        else:
            self.transport.write(data)

    def _cut_off(self, queued: int) -> None:
        """Disconnect a client that would have more than the bound queued for it."""
        self.quiet.warn(
            "clients not reading",
            "{user} at {host} is not reading; disconnected with {bytes} bytes queued",
            self.peer_host,
            user=self.log_name,
            bytes=queued,
        )
        self._backlog = -1
        self.cut_off = True
        self.transport.abortConnection()
        self._reroute()

    # --- IPushProducer, for the transport's send buffer ---------------------

    def pauseProducing(self) -> None:
        if not self._congested:
            self._congested = True
            self._backlog = 0
            self._reroute()

    def resumeProducing(self) -> None:
        if self._backlog >= 0:
            self._congested = False
            self._backlog = 0
            self._reroute()

    def stopProducing(self) -> None:
        pass
