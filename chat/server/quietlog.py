"""
A log that an outage or an attacker cannot flood.

Some lines repeat with every message or every connection while something is
wrong: a command refused while Redis is away, a failed login per guess, a
connection refused per attempt.  A line each would fill the disk in minutes
and hide everything else.  L{QuietLog} writes the first line of each kind
as it is, then counts the rest for a minute and writes one line about
them, naming the addresses most of them came from.  A minute with none of
a kind costs nothing: no timer runs while all is quiet.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

#: Seconds over which repeats of one kind are counted before one line says how many.
INTERVAL = 60.0
#: Addresses kept per kind and interval; beyond that the rest count as "others".
MAX_HOSTS = 1000
#: Addresses named in a summary line.
TOP = 3


class _Tally:
    __slots__ = ("count", "hosts", "level", "others")

    def __init__(self, level: LogLevel) -> None:
        self.level = level
        self.count = 0
        self.others = 0
        self.hosts: Counter[str] = Counter()

    def add(self, host: str | None) -> None:
        self.count += 1
        if host is None:
            return
        if host in self.hosts or len(self.hosts) < MAX_HOSTS:
            self.hosts[host] += 1
        else:
            self.others += 1


class QuietLog:
    """
    Lines of one logger, of which each C{kind} is written at most once per
    C{interval} (plus one line counting the repeats).
    """

    def __init__(self, logger: Logger, clock: IReactorTime, interval: float = INTERVAL) -> None:
        self._log = logger
        self._clock = clock
        self._interval = interval
        #: Kinds seen in this interval: those written, with their repeats.
        self._tallies: dict[str, _Tally] = {}
        self._timer: IDelayedCall | None = None

    def warn(self, kind: str, format: str, host: str | None = None, **fields: Any) -> None:
        self.emit(LogLevel.warn, kind, format, host, **fields)

    def info(self, kind: str, format: str, host: str | None = None, **fields: Any) -> None:
        self.emit(LogLevel.info, kind, format, host, **fields)

    def failure(self, kind: str, format: str, failure: Failure, **fields: Any) -> None:
        """A failure with its traceback, the first of its kind in an interval; the rest counted."""
        if self._count(kind, LogLevel.critical, None):
            return
        self._log.failure(format, failure, kind=kind, **fields)

    def emit(self, level: LogLevel, kind: str, format: str, host: str | None = None, **fields: Any) -> None:
        """
        Write C{format} with C{fields} if no line of C{kind} was written in
        this interval; otherwise count it (and C{host}, the address it
        concerns) for the summary.
        """
        if self._count(kind, level, host):
            return
        if host is not None:
            fields.setdefault("host", host)
        self._log.emit(level, format, kind=kind, **fields)

    def _count(self, kind: str, level: LogLevel, host: str | None) -> bool:
        """Count a repeat of C{kind} and say so, or start its interval and say it is the first."""
        tally = self._tallies.get(kind)
        if tally is not None:
            tally.add(host)
            return True
        self._tallies[kind] = _Tally(level)
        if self._timer is None:
            self._timer = self._clock.callLater(self._interval, self._summarise)
        return False

    def _summarise(self) -> None:
        self._timer = None
        tallies, self._tallies = self._tallies, {}
        for kind, tally in tallies.items():
            if not tally.count:
                continue
            top = tally.hosts.most_common(TOP)
            named = ", ".join(f"{host} ({n})" for host, n in top)
            self._log.emit(
                tally.level,
                "{kind}: {count} more in the last {interval:g} s{from_hosts}",
                kind=kind,
                count=tally.count,
                interval=self._interval,
                from_hosts=f", most from {named}" if named else "",
                top_hosts=dict(top),
                repeated=True,
            )
            # Still going on: the next interval only counts (its first line
            # was this summary), so a steady flood is one line a minute.
            self._tallies[kind] = _Tally(tally.level)
        if self._tallies:
            self._timer = self._clock.callLater(self._interval, self._summarise)
