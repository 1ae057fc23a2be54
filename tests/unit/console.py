"""
The console programs in-process: L{FakeConsole} keeps what the program tells
the user, and L{stop_while_connecting} runs a program on a reactor that
connects nowhere.  (The programs run for real: L{tests.e2e.programs}.)
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from zope.interface import implementer

from chat.terminal import IConsole, IConsoleApp


def stop_while_connecting(
    test: unittest.TestCase,
    run: Callable[[MemoryReactorClock], Coroutine[Any, Any, None]],
    address: tuple[str, int],
) -> str:
    """
    Run C{run}, a program connecting to C{address}, until its TCP connection
    is being made, then stop the reactor as SIGTERM does (or SIGINT before
    the console takes it).  It must exit with status 2; what it wrote on
    stderr.
    """
    stderr = io.StringIO()
    test.patch(sys, "stderr", stderr)
    reactor = MemoryReactorClock()
    running = Deferred.fromCoroutine(run(reactor))
    reactor.advance(0)
    test.assertEqual([(host, port) for host, port, *_ in reactor.tcpClients], [address])
    for trigger, args, kwargs in reactor.triggers["before"]["shutdown"]:
        trigger(*args, **kwargs)
    failure = test.failureResultOf(running, SystemExit)
    test.assertEqual(failure.value.code, 2)
    return stderr.getvalue()


@implementer(IConsole)
class FakeConsole:
    """Keeps what it is told, for a test to read what the user would see."""

    def __init__(self, app: IConsoleApp) -> None:
        self.app = app
        #: A person types, as at a terminal; a test sets False for a script.
        self.interactive = True
        self.shown: list[str] = []
        self.prompts: list[tuple[str, bool]] = []
        #: The prompts whose lines are not to go into the history.
        self.unremembered: list[str] = []
        self.closed = False
        self.closing: Deferred[None] = succeed(None)

    def show(self, text: str) -> None:
        self.shown.append(text)

    def set_prompt(self, prompt: str, secret: bool = False, history: bool = True) -> None:
        self.prompts.append((prompt, secret))
        if not history:
            self.unremembered.append(prompt)

    def close(self) -> Deferred[None]:
        self.closed = True
        return self.closing
