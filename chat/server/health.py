"""
Whether something the server depends on works now: the store's disk, the
cluster's Redis.

One L{Health} per dependency decides "up" or "down" in one place, so the
rest of the server asks instead of finding out by failing, and the log says
it once each way: one warning when it goes, one line when it is back, with
how long it was gone and how much was refused meanwhile.  Whatever waits
for it to come back (a batch of history, a reconnect) subscribes here
rather than retrying every turn of the reactor.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()


class Health:
    """
    Up or down, with the reason; changes are logged once and announced to
    whoever watches.
    """

    def __init__(self, what: str, clock: IReactorTime) -> None:
        #: What this is, as the log names it: "the database chat.sqlite",
        #: "Redis at tcp:10.0.0.5:6379".
        self.what = what
        self._clock = clock
        self.available = True
        #: Why it is down, while it is.
        self.reason: str | None = None
        #: When it went down, while it is.
        self.since: float | None = None
        #: Operations refused because it was down, since it went.
        self.refusals = 0
        #: How many times it went down since the server started.
        self.outages = 0
        self._waiting: list[Deferred[None]] = []
        self._watchers: list[Callable[[bool], None]] = []

    def __repr__(self) -> str:
        state = "up" if self.available else f"down ({self.reason})"
        return f"<Health of {self.what}: {state}>"

    def lost(self, why: str) -> None:
        """It stopped working; said in the log the first time only."""
        if not self.available:
            return
        self.available = False
        self.reason = why
        self.since = self._clock.seconds()
        self.refusals = 0
        self.outages += 1
        log.warn("{what} is unavailable: {why}", what=self.what, why=why)
        self._announce(False)

    def restored(self) -> None:
        """It works again; said once, with how long it was gone."""
        if self.available:
            return
        since = self.since if self.since is not None else self._clock.seconds()
        log.info(
            "{what} is back after {seconds:.1f} s; {refused} operations were refused meanwhile",
            what=self.what,
            seconds=self._clock.seconds() - since,
            refused=self.refusals,
        )
        self.available = True
        self.reason = None
        self.since = None
        self._announce(True)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def refused(self) -> None:
        """Count one operation refused because this is down."""
        self.refusals += 1

    def when_available(self) -> Deferred[None]:
        """Fires once this works again (at once if it does now)."""
        if self.available:
            return succeed(None)
        d: Deferred[None] = Deferred(lambda d: self._waiting.remove(d) if d in self._waiting else None)
        self._waiting.append(d)
        return d

    def watch(self, watcher: Callable[[bool], None]) -> None:
        """Call C{watcher(available)} at every change from now on."""
        self._watchers.append(watcher)

    def _announce(self, available: bool) -> None:
        for watcher in list(self._watchers):
            try:
                watcher(available)
            except Exception:
                log.failure("telling {watcher!r} that {what} changed", watcher=watcher, what=self.what)


class Backoff:
    """
    The delays between attempts at something that keeps failing: from
    C{first}, twice as long each time up to C{most}, each spread by
    C{jitter} either way so that many who failed together do not all try
    again together.
    """

    def __init__(self, first: float = 0.25, most: float = 5.0, jitter: float = 0.2) -> None:
        self.first = first
        self.most = most
        self.jitter = jitter
        self.attempts = 0

    def next(self, random: Callable[[], float] | None = None) -> float:
        """The delay before the next attempt; counts the attempt."""
        base = min(self.most, self.first * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        if random is None:
            import random as _random

            random = _random.random
        return base * (1 - self.jitter + 2 * self.jitter * random())

    def reset(self) -> None:
        self.attempts = 0
