"""
What the server has done since it started, as plain numbers the service
and the sessions add to: logins by outcome, messages by kind, deliveries,
errors by code.  Metrics (L{chat.server.metrics}) read them when scraped;
keeping them as plain integers costs the hot path an addition, not a lock.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

from chat.server.events import ERRORS, Event, LoginRefused


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
        if isinstance(event, ERRORS):
            error: Any = event
            self.errors[error.code] += 1
        elif isinstance(event, LoginRefused):
            self.logins[event.reason.value] += 1
