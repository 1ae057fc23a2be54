"""
systemd: the notify protocol on its own, to a notify socket of the test's
own.  A real ``twistd`` started the way systemd starts it:
L{tests.e2e.test_systemd}.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

from twisted.internet import defer, protocol, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from chat.server.systemd import Notifier, notify
from tests.expect import Expectations


class NotifySocket(protocol.DatagramProtocol):
    """A notify socket, as systemd listens on one: each datagram is one state."""

    def __init__(self, case: unittest.TestCase) -> None:
        # Unix socket paths are short: not under the trial directory.
        self.directory = tempfile.mkdtemp(prefix="chat-notify-")
        case.addCleanup(shutil.rmtree, self.directory, True)
        self.path = os.path.join(self.directory, "notify.sock")
        self.states: list[str] = []
        self.expectations: Expectations[bool] = Expectations()
        port = reactor.listenUNIXDatagram(self.path, self)  # type: ignore[attr-defined]
        case.addCleanup(port.stopListening)

    def datagramReceived(self, data: bytes, addr: object) -> None:
        self.states.append(data.decode())
        self.expectations.check()

    def said(self, wanted: str, timeout: float = 15) -> defer.Deferred[bool]:
        """Fires once a datagram held the line C{wanted}."""
        return self.expectations.wait(
            lambda: any(wanted in state.split("\n") for state in self.states) or None,
            lambda: f"{wanted!r} on the notify socket; got {self.states!r}",
            timeout,
        )


class NotifyTests(unittest.TestCase):
    def test_nothing_is_sent_without_a_notify_socket(self) -> None:
        self.assertFalse(notify("READY=1", environ={}))

    def test_a_state_reaches_a_socket_given_by_path(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(listener.close)
        path = os.path.join(tempfile.mkdtemp(prefix="chat-n-"), "n.sock")
        self.addCleanup(shutil.rmtree, os.path.dirname(path), True)
        listener.bind(path)
        self.assertTrue(notify("READY=1", environ={"NOTIFY_SOCKET": path}))
        self.assertEqual(listener.recv(100), b"READY=1")

    def test_an_abstract_socket_name_starts_with_an_at(self) -> None:
        name = f"chat-test-{os.getpid()}-{id(self)}"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(listener.close)
        listener.bind("\0" + name)
        self.assertTrue(notify("STOPPING=1", environ={"NOTIFY_SOCKET": "@" + name}))
        self.assertEqual(listener.recv(100), b"STOPPING=1")

    def test_a_socket_nobody_listens_on_is_one_warning_not_a_crash(self) -> None:
        self.assertFalse(notify("READY=1", environ={"NOTIFY_SOCKET": "/nonexistent/notify.sock"}))

    def test_the_notifier_says_ready_when_the_server_serves_and_stopping_first(self) -> None:
        received: list[bytes] = []
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(listener.close)
        path = os.path.join(tempfile.mkdtemp(prefix="chat-n-"), "n.sock")
        self.addCleanup(shutil.rmtree, os.path.dirname(path), True)
        listener.bind(path)
        listener.setblocking(False)
        clock = Clock()
        ready: defer.Deferred[None] = defer.Deferred()
        notifier = Notifier(clock, ready, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"})
        notifier.startService()

        def drain() -> list[bytes]:
            while True:
                try:
                    received.append(listener.recv(100))
                except BlockingIOError:
                    return received

        self.assertEqual(drain(), [b"WATCHDOG=1"])
        ready.callback(None)  # a node has joined its cluster, say
        clock.advance(5)
        self.assertEqual(drain()[1:], [b"READY=1\nSTATUS=serving", b"WATCHDOG=1"])
        notifier.stopService()
        clock.advance(5)
        self.assertEqual(drain()[3:], [b"STOPPING=1"])
