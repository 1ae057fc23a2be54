"""
What the server has done since it started, as plain numbers the service
and the sessions add to: logins by outcome, messages by kind, deliveries,
errors by code; and how long things took (L{Durations}).  Metrics
(L{chat.server.metrics}) read them when scraped; keeping them as plain
integers costs the hot path an addition, not a lock.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from typing import Any

import attrs

from chat.server.events import ERRORS, Event, LoginRefused

_ERROR_TYPES = frozenset(ERRORS)


@attrs.define
class Counters:
    #: Logins by outcome: C{ok}, C{resumed}, or the refusal's code
    #: (C{invalid}, C{blocked}, C{already_online}, C{busy}, ...).
    logins: Counter[str] = attrs.Factory(Counter)
    #: Messages sent by users, by kind (C{private}, C{broadcast}), and
    #: announcements by admins.
    messages: Counter[str] = attrs.Factory(Counter)
    #: Messages handed to a connection (one message to five people is five).
    deliveries: int = 0
    #: Errors the server answered with, by code.
    errors: Counter[str] = attrs.Factory(Counter)
    #: Sessions ended, by why.
    logouts: Counter[str] = attrs.Factory(Counter)

    def said(self, event: Event) -> None:
        """Count what a session says that counts: errors, refused logins."""
        # By exact type, one set lookup: said for every answer, and the
        # event types are final (isinstance on the tuple of errors tried
        # each in turn).
        kind = type(event)
        if kind in _ERROR_TYPES:
            error: Any = event
            self.errors[error.code] += 1
        elif kind is LoginRefused:
            refused: Any = event
            self.logins[refused.reason.value] += 1


class Durations:
    """
    How long something took, each time: a count, a sum and fixed buckets,
    as plain numbers (what a Prometheus histogram shows, without its lock).
    Recorded and read in the reactor thread only.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        #: The upper bounds of the buckets, in seconds, increasing.
        self.bounds = tuple(sorted(bounds))
        #: How many fell in each bucket (not cumulative); the last is above every bound.
        self.counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def record(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[float, int]]:
        """Each bound with how many took at most that long, ending with infinity and the count."""
        total = 0
        buckets = []
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            buckets.append((bound, total))
        return buckets
