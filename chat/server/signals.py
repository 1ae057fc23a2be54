"""
The signals an operator sends by habit, none of which may end the server
without a goodbye.

SIGTERM and SIGINT are the reactor's: a clean shutdown, with a goodbye to
every session.  Left alone, SIGHUP, SIGUSR1 and SIGUSR2 would kill the
process on the spot (their default action), so:

- SIGHUP reloads the users file (L{chat.server.reload});
- SIGUSR1 rotates the log where twistd logs to a file (its own handler,
  left in place) or where L{chat.server.logs} does; otherwise it is logged
  and ignored;
- SIGUSR2 logs one line about the server's state.

A handler only asks the reactor to do the work (C{callFromThread}), as
twistd's own SIGUSR1 handler does: nothing else is safe in a signal handler.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger

from chat.server import logs

log = Logger()

_Handler = Callable[[int, FrameType | None], Any] | int | None


class Signals(Service):
    """Installs the handlers when the server starts; puts back the old ones when it stops."""

    def __init__(
        self,
        reactor: IReactorFromThreads,
        reload: Callable[[], object],
        status: Callable[[], object],
    ) -> None:
        self._reactor = reactor
        self._actions: dict[int, Callable[[], object]] = {
            signal.SIGHUP: reload,
            signal.SIGUSR2: status,
            signal.SIGUSR1: self._rotate,
        }
        self._previous: dict[int, _Handler] = {}

    def privilegedStartService(self) -> None:
        # Before any listener binds (they bind in this phase too, after this
        # one): a signal sent as soon as the port answers must not find the
        # default action still in place.
        super().privilegedStartService()
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers (a test running elsewhere)
        for number in self._actions:
            current = signal.getsignal(number)
            if number == signal.SIGUSR1 and current not in (signal.SIG_DFL, None):
                continue  # twistd rotates its log file on SIGUSR1
            self._previous[number] = signal.signal(number, self._received)

    def stopService(self) -> None:
        super().stopService()
        previous, self._previous = self._previous, {}
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)

    def _received(self, number: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self._act, number)

    def _act(self, number: int) -> None:
        name = signal.Signals(number).name
        log.info("{signal} received", signal=name)
        try:
            self._actions[number]()
        except Exception:
            log.failure("handling {signal}", signal=name)

    def _rotate(self) -> None:
        if logs.rotate():
            log.info("rotated the log file")
        else:
            log.info("the log goes to standard output, so there is no log file to rotate")
