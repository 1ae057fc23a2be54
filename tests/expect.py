"""
Waiting for what a test expects, with a deadline: L{timeout_deferred}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, reactor
from twisted.python.failure import Failure


def timeout_deferred(
    d: defer.Deferred[Any], seconds: float, what: str | Callable[[], str]
) -> defer.Deferred[Any]:
    """
    Fail C{d} with a message naming C{what} if it has not fired in time;
    C{what} may be a callable, to say what had arrived by then.
    """

    def expired() -> None:
        if not d.called:
            said = what() if callable(what) else what
            d.errback(Failure(defer.TimeoutError(f"timed out after {seconds}s waiting for {said}")))

    call = reactor.callLater(seconds, expired)

    def cancel(result: object) -> object:
        if call.active():
            call.cancel()
        return result

    return d.addBoth(cancel)
