"""
Telling systemd how the server is doing, with its notify protocol: one
datagram per state on the socket named by C{$NOTIFY_SOCKET} (a path, or an
abstract name starting with C{@}).

- C{READY=1} once the server serves: its ports listen, and a node of a
  cluster has joined it (C{Type=notify} units wait for this, so a unit
  ordered after this one starts only then);
- C{STOPPING=1} as soon as it is asked to stop, before the goodbyes;
- C{WATCHDOG=1} every half of C{$WATCHDOG_USEC}, from the reactor: a
  reactor that stops turning stops it, and systemd restarts the server.

Without C{$NOTIFY_SOCKET} (not run by systemd) nothing is sent.  Sending is
one non-blocking C{sendto} on a datagram socket: it never waits.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send C{state} to systemd, if it listens; say whether it was sent."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(state.encode("utf-8"), address)
    except OSError as e:
        log.warn("could not tell systemd {state}: {why}", state=state, why=e.strerror)
        return False
    return True


class Notifier(Service):
    """
    Says READY=1 once C{ready} fires, STOPPING=1 when the server stops, and
    WATCHDOG=1 in between if systemd asked for it.  Added to the server's
    services last, so it stops first.
    """

    def __init__(
        self, clock: IReactorTime, ready: Deferred[None], environ: Mapping[str, str] | None = None
    ) -> None:
        self._clock = clock
        self._ready = ready
        self._environ = dict(os.environ if environ is None else environ)
        self._watchdog: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self._ready.addCallbacks(self._served, self._not_served)
        usec = self._environ.get("WATCHDOG_USEC", "")
        if usec.isdigit() and int(usec) > 0 and self._environ.get("NOTIFY_SOCKET"):
            self._watchdog = LoopingCall(notify, "WATCHDOG=1", self._environ)
            self._watchdog.clock = self._clock
            self._watchdog.start(int(usec) / 2e6, now=True)

    def _served(self, _: object) -> None:
        if self.running:
            notify("READY=1\nSTATUS=serving", self._environ)

    def _not_served(self, f: Failure) -> None:
        # The server is failing to start and says why itself.
        pass

    def stopService(self) -> None:
        super().stopService()
        notify("STOPPING=1", self._environ)
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
