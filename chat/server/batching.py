"""
Writes to the store gathered per turn of the reactor (L{TurnBatch}): what
many sessions change in one turn (last-seen times, history) costs the store
one write, and a store that is down or behind costs a bounded wait, never a
retry per turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sized
from typing import Any, Generic, TypeVar

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from chat.server.events import Delivery
from chat.server.health import Backoff, Health
from chat.server.interfaces import Unavailable
from chat.server.quietlog import QuietLog

C = TypeVar("C", bound=Sized)
T = TypeVar("T")


class TurnBatch(Generic[C]):
    """
    Writes gathered during one turn of the reactor and handed to the store
    together at its end, or sooner when someone needs them written (a
    reader that must see them, a shutdown).  Nobody waits for them: a
    failure is logged.

    With C{one_at_a_time} (the history), a turn's write is started only
    when the last one is done; what gathers meanwhile goes in the next, as
    one.  A store that falls behind (a busy node's Redis connection) then
    gets fewer, larger writes instead of a queue of small ones.  Without it
    (last-seen times), each turn's write goes at its end, in order with the
    store's other writes: once a later write is durable, so is it.  A write
    someone asks for goes at once.

    While the store is down (L{Unavailable}), what could not be written is
    kept, up to L{MAX_KEPT}, and written again when the store says it is
    back, or at the latest after a backoff: never once per turn, which is
    what made a node spin through a Redis outage.
    """

    MAX_KEPT = 100_000

    def __init__(
        self,
        clock: IReactorTime,
        empty: Callable[[], C],
        write: Callable[[C], Deferred[None]],
        what: str,
        merge: Callable[[C, C], C],
        health: Health,
        quiet: QuietLog,
        one_at_a_time: bool = False,
        every: float = 0.0,
    ) -> None:
        self._clock = clock
        self._empty = empty
        self._merge = merge
        self._write = write
        self._what = what
        self._health = health
        self._quiet = quiet
        self._items = empty()
        self._call: IDelayedCall | None = None
        self._in_flight = 0
        self._one_at_a_time = one_at_a_time
        #: Seconds from one write's start to the next's, at least (0: a turn).
        self._every = every
        self._started = -every
        self._backoff = Backoff(first=1.0, most=30.0)
        #: While the store is down: the timer and the wait for it to come
        #: back, whichever comes first starts the next write.
        self._retry: tuple[IDelayedCall, Deferred[None]] | None = None

    def pending(self) -> C:
        """What will be written at the end of this turn (or of its wait, with C{every}); add to it."""
        if self._call is None and self._retry is None:
            self._call = self._clock.callLater(self._wait(), self._turn_ended)
        return self._items

    def _wait(self) -> float:
        """Seconds until the next write may start."""
        if not self._every:
            return 0
        return max(0.0, self._started + self._every - self._clock.seconds())

    def compact(self, cut: Callable[[C], C]) -> int:
        """Replace what waits by C{cut} of it; give how much waits then."""
        self._items = cut(self._items)
        return len(self._items)

    def _turn_ended(self) -> None:
        self._call = None
        if not (self._one_at_a_time and self._in_flight):
            self.write()

    def write(self) -> Deferred[None]:
        """Write what has gathered, now."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        self._stop_waiting()
        if not self._items:
            return succeed(None)
        items, self._items = self._items, self._empty()
        self._in_flight += 1
        if self._every:
            self._started = self._clock.seconds()
        return self._write(items).addCallbacks(self._written, self._failed, errbackArgs=(items,))

    def _written(self, _: object) -> None:
        self._in_flight -= 1
        self._backoff.reset()
        self._next()

    def _next(self) -> None:
        if not self._in_flight and self._items and self._call is None and self._retry is None:
            # What gathered while the store was busy: next turn, as one.
            self._call = self._clock.callLater(self._wait(), self._turn_ended)

    def _failed(self, f: Failure, items: C) -> None:
        self._in_flight -= 1
        if not f.check(Unavailable):
            self._quiet.failure(self._what, "{what} failed", f, what=self._what)
            self._next()
            return
        # The store said it is down (once, in its own words): keep what was
        # not written for later, up to a bound, rather than lose it.
        if len(items) + len(self._items) <= self.MAX_KEPT:
            self._items = self._merge(items, self._items)
        else:
            self._quiet.warn(
                self._what + " dropped",
                "{what}: {count} entries dropped, more than {limit} waited for the store",
                what=self._what,
                count=len(items),
                limit=self.MAX_KEPT,
            )
        self._wait_for_store()

    def _wait_for_store(self) -> None:
        if self._retry is not None or not self._items:
            return
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        timer = self._clock.callLater(self._backoff.next(), self._retry_now)
        back = self._health.when_available()
        self._retry = (timer, back)
        back.addCallbacks(lambda _: self._retry_now(), lambda f: f.trap(CancelledError))

    def _stop_waiting(self) -> None:
        retry, self._retry = self._retry, None
        if retry is not None:
            timer, back = retry
            if timer.active():
                timer.cancel()
            if not back.called:
                back.cancel()

    def _retry_now(self) -> None:
        self._stop_waiting()
        if not self._in_flight:
            self.write()
        # Otherwise the write in flight decides: done, what waits goes next
        # turn; failed, the wait starts again.


class TurnCalls(Generic[T]):
    """
    Calls made during one turn of the reactor, sent as one at its end; each
    caller waits for that one.  Unlike L{TurnBatch}, someone waits: a
    message to a user of another node is acknowledged once it is in their
    inbox, and a busy node's messages of one turn cost Redis one command
    and the node one reply instead of one each.
    """

    def __init__(
        self, clock: IReactorTime, send: Callable[[list[T]], Deferred[Any]], most: int = 1000
    ) -> None:
        self._clock = clock
        self._send = send
        #: Items sent as one at most: a busy turn's calls go in several, so
        #: that none holds Redis (a script runs alone) for long.
        self._most = most
        self._items: list[T] = []
        self._waiting: list[Deferred[None]] = []

    def add(self, item: T) -> Deferred[None]:
        """Send C{item} with the rest of this turn's; fires when they are sent and answered."""
        if not self._items:
            self._clock.callLater(0, self.send)
        self._items.append(item)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        if len(self._items) >= self._most:
            self.send()
        return d

    def send(self) -> None:
        """Send what gathered (nothing, if it went already)."""
        if not self._items:
            return
        items, self._items = self._items, []
        waiting, self._waiting = self._waiting, []
        sent = maybeDeferred(self._send, items)

        def answered(result: object) -> None:
            for d in waiting:
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(None)

        sent.addBoth(answered)


#: Entries of history waiting for the store before the first trim.
TRIM_AT_LEAST = 2000


def newest_per_conversation(entries: list[tuple[Delivery, str]], limit: int) -> list[tuple[Delivery, str]]:
    """The entries the store would keep of C{entries}: the newest C{limit} of each conversation."""
    counts: dict[str, int] = {}
    kept = []
    for delivery, key in reversed(entries):
        count = counts[key] = counts.get(key, 0) + 1
        if count <= limit:
            kept.append((delivery, key))
    kept.reverse()
    return kept


def newer(older: dict[str, float], newer: dict[str, float]) -> dict[str, float]:
    return {**older, **newer}
