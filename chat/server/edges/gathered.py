"""
Writes gathered per turn of the reactor, one C{send} per connection.

A connection written to several times in one turn (the answers to its
commands, then a message from someone whose line was read in the same
turn, then another) gets all of it in one C{send} at the turn's end,
rather than one each: under load the reactor reads many connections per
turn, and a private message's two writes (the sender's answer, the
recipient's delivery) meet those of the other messages to the same people.
Twisted's own transport gathers the same way, but asks epoll for
writability to do it (two C{epoll_ctl} per burst); here the turn's end is
a call made once per turn for every connection that has something waiting.
Nothing waits past the turn: a lone message goes out as soon as its read
is handled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Gathering(Protocol):
    def flush_output(self) -> None:
        """Write what gathered this turn."""


class TurnWrites:
    """
    The connections with writes waiting for the end of this turn.  Writes
    gather from the first read handled in a turn to its end; a write made
    before any (a greeting as a client connects, a timer's) goes at once,
    as it would alone anyway.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._waiting: list[Gathering] = []
        self._call: IDelayedCall | None = None
        #: Run first at the turn's end: the service's delivery of what the
        #: turn's lines sent others, so that it joins the turn's writes.
        self.before: Callable[[], None] | None = None

    @property
    def gathering(self) -> bool:
        """Whether writes wait for the end of this turn."""
        return self._call is not None

    def begin(self) -> None:
        """A read is being handled: writes gather until the end of the turn."""
        if self._call is None:
            self._call = self._clock.callLater(0, self.flush)

    def add(self, connection: Gathering) -> None:
        """C{connection} has started gathering: flush it at the end of the turn."""
        self._waiting.append(connection)

    def flush(self) -> None:
        """Write what every connection gathered (a connection lost meanwhile has nothing)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self.before is not None:
            self.before()
        waiting, self._waiting = self._waiting, []
        for connection in waiting:
            connection.flush_output()
