"""
systemd: the notify protocol on its own, and a real ``twistd`` started the
way systemd starts it (``systemd-socket-activate``: the listening socket
handed over, a notify socket of the test's own).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile

from twisted.internet import defer, protocol, reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial import unittest

from chat.server.systemd import Notifier, notify
from tests.e2e_helpers import Lab, pause
from tests.support import ROOT, timeout_deferred

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"


class NotifySocket(protocol.DatagramProtocol):
    """A notify socket, as systemd listens on one: each datagram is one state."""

    def __init__(self, case: unittest.TestCase) -> None:
        # Unix socket paths are short: not under the trial directory.
        self.directory = tempfile.mkdtemp(prefix="chat-notify-")
        case.addCleanup(shutil.rmtree, self.directory, True)
        self.path = os.path.join(self.directory, "notify.sock")
        self.states: list[str] = []
        self._waiting: list[tuple[str, defer.Deferred[None]]] = []
        port = reactor.listenUNIXDatagram(self.path, self)  # type: ignore[attr-defined]
        case.addCleanup(port.stopListening)

    def datagramReceived(self, data: bytes, addr: object) -> None:
        self.states.append(data.decode())
        still = []
        for wanted, d in self._waiting:
            if any(wanted in state.split("\n") for state in self.states):
                d.callback(None)
            else:
                still.append((wanted, d))
        self._waiting = still

    def said(self, wanted: str, timeout: float = 15) -> defer.Deferred[None]:
        """Fires once a datagram held the line C{wanted}."""
        if any(wanted in state.split("\n") for state in self.states):
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append((wanted, d))
        return timeout_deferred(d, timeout, lambda: f"{wanted!r} on the notify socket; got {self.states!r}")


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


class SocketActivationTests(unittest.TestCase):
    timeout = 60

    async def test_the_server_runs_on_a_socket_systemd_hands_over_and_says_ready(self) -> None:
        if not os.path.exists(SOCKET_ACTIVATE):
            if os.environ.get("CI"):
                self.fail(f"{SOCKET_ACTIVATE} is missing: apt-get install systemd (.ci/run does)")
            raise unittest.SkipTest(f"{SOCKET_ACTIVATE} is missing (apt-get install systemd)")
        notify_socket = NotifySocket(self)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        lab = Lab(self)
        server = lab.server(
            "--port",
            "systemd:domain=INET:index=0",
            twistd=(
                SOCKET_ACTIVATE,
                "-l",
                f"127.0.0.1:{port}",
                "--fdname=chat",
                "-E",
                f"NOTIFY_SOCKET={notify_socket.path}",
                "-E",
                "WATCHDOG_USEC=1000000",
                "-E",
                f"PYTHONPATH={ROOT}",
                sys.executable,
                "-c",
                "from twisted.scripts.twistd import run; run()",
            ),
        )
        started = server.start()
        # systemd-socket-activate listens first, and starts the server at the
        # first connection, which waits in the socket's backlog meanwhile.
        for _ in range(100):
            try:
                columbia = await lab.login(port, "columbia")
                break
            except ConnectionRefusedError:
                await pause(0.1)
        else:
            self.fail("systemd-socket-activate never listened:\n" + server.log.decode())
        self.assertEqual(await started, port)
        await notify_socket.said("READY=1")
        await notify_socket.said("WATCHDOG=1")
        columbia.send("whoelse")
        await columbia.expect("Nobody else is online")
        await server.signal(signal.SIGTERM)
        await columbia.expect(r"The server is shutting down\. Goodbye\.")
        await notify_socket.said("STOPPING=1")
        self.assertEqual(server.tracebacks(), [])
