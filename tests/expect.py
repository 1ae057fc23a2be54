"""
How a test waits for what it expects, with a deadline: one mechanism.

L{Expectations} is the one expect loop.  Whatever a test reads from keeps
what has arrived so far and calls L{Expectations.check} when more arrives;
the test asks with L{Expectations.wait}, giving a function that finds what
it wants in what has arrived (or None).  A wait fires with what was found,
fails after its timeout saying what had arrived by then, and fails at once
when the stream ends (L{Expectations.end}).  The streams differ only in
their find function:

- text after a read position, matched by a regular expression: L{TextStream}
  (a TCP client's text, a console program's stdout);
- a server's whole log, from a given byte on (C{ServerProcess.expect_log}),
  and the server's end;
- JSON messages after a read position, matched by fields (C{JsonEvents});
- a terminal's screen, matched by a predicate (C{PtyProgram.until});
- raw bytes after a read position (a classic pair-chat peer's reads), the
  states on systemd's notify socket.

State that has no stream to watch (a Redis link's, a node's roster, a file
being written, a count the server gives when asked) is polled with
L{until}.  The browser tests' C{Browsers.wait_until} is the one other loop:
it blocks Playwright's own thread, where the reactor's Deferreds cannot be
used.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from twisted.internet import defer, reactor, task
from twisted.python.failure import Failure

T = TypeVar("T")


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


class Expectations(Generic[T]):
    """
    The waits of one stream: each a function that finds what it waits for
    in what has arrived, and the Deferred it fires.
    """

    def __init__(self) -> None:
        self._waiting: list[tuple[Callable[[], T | None], defer.Deferred[T], Callable[[], str]]] = []
        #: Why the stream ended (then every wait fails at once), or None.
        self.ended: str | None = None

    def wait(
        self, find: Callable[[], T | None], what: Callable[[], str], timeout: float
    ) -> defer.Deferred[T]:
        """
        Fire with what C{find} finds, now or once more has arrived; fail
        after C{timeout} seconds, or when the stream ends, with C{what()}
        (what was waited for, and what had arrived).
        """
        found = find()
        if found is not None:
            return defer.succeed(found)
        if self.ended is not None:
            return defer.fail(AssertionError(f"{self.ended} before {what()}"))
        d: defer.Deferred[T] = defer.Deferred()
        entry = (find, d, what)
        self._waiting.append(entry)

        def forget(failure: Failure) -> Failure:
            if entry in self._waiting:
                self._waiting.remove(entry)
            return failure

        return timeout_deferred(d, timeout, what).addErrback(forget)

    def check(self) -> None:
        """More has arrived: fire each wait whose C{find} now finds something, in order."""
        waiting, self._waiting = self._waiting, []
        still = []
        for entry in waiting:
            find, d, _ = entry
            if d.called:
                continue
            found = find()
            if found is not None:
                d.callback(found)
            else:
                still.append(entry)
        # Waits added by the callbacks above come after those still waiting.
        self._waiting = still + self._waiting

    def end(self, why: str) -> None:
        """The stream ended (C{why}: "the connection closed"): fail every wait."""
        self.ended = why
        waiting, self._waiting = self._waiting, []
        for _, d, what in waiting:
            if not d.called:
                d.errback(Failure(AssertionError(f"{why} while waiting for {what()}")))


class TextStream:
    """
    Text as it arrives, with a read position: L{expect} waits for a regular
    expression after the position, and moves the position past the match.
    """

    #: Seconds an expectation waits by default.
    timeout: float = 10

    def __init__(self) -> None:
        self.text = ""
        self.position = 0
        self.expectations: Expectations[re.Match[str]] = Expectations()

    def received(self, text: str) -> None:
        self.text += text
        self.expectations.check()

    def unread(self) -> str:
        return self.text[self.position :]

    def expect(self, pattern: str, timeout: float | None = None) -> defer.Deferred[re.Match[str]]:
        """Wait for the regular expression C{pattern} after the read position."""
        compiled = re.compile(pattern)

        def find() -> re.Match[str] | None:
            m = compiled.search(self.text, self.position)
            if m is not None:
                self.position = m.end()
            return m

        def what() -> str:
            return f"{pattern!r}; received after position {self.position}: {self.unread()!r}"

        return self.expectations.wait(find, what, self.timeout if timeout is None else timeout)


def pause(seconds: float) -> defer.Deferred[None]:
    """Let time pass (for polling loops only; never to wait for an event)."""
    return task.deferLater(reactor, seconds, lambda: None)


async def until(condition: Callable[[], Any], what: str, timeout: float = 10.0, every: float = 0.01) -> Any:
    """
    Let the reactor run until C{condition()} gives something true (it may
    give an awaitable: a question to a server), asking every C{every}
    seconds; give what it gave.  Fail after C{timeout} seconds, saying
    C{what} was awaited and what the condition gave last.
    """
    deadline = reactor.seconds() + timeout
    while True:
        last = condition()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if reactor.seconds() > deadline:
            seen = "" if last in (None, False) else f"; last seen: {last!r}"
            raise AssertionError(f"not so after {timeout} s: {what}{seen}")
        await pause(every)
