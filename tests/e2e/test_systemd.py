"""
A real C{twistd} started the way systemd starts it
(C{systemd-socket-activate}: the listening socket handed over, a notify
socket of the test's own).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket

from twisted.internet.error import ConnectionRefusedError
from twisted.trial import unittest

from tests import ROOT
from tests.e2e.support import Lab
from tests.expect import pause
from tests.unit.test_systemd import NotifySocket

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"


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
            under=(
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
