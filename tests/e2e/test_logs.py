"""
A real server logging through the observers of C{chat.server.logs} (twistd's
C{--logger}): JSON lines on disk.
"""

from __future__ import annotations

import json
import os
import signal

from twisted.trial import unittest

from tests.e2e.support import Lab, ServerProcess
from tests.expect import until


class JsonServerTests(unittest.TestCase):
    async def test_a_server_logging_json_lines_to_a_file_that_sigusr1_rotates(self) -> None:
        lab = Lab(self)
        directory = os.path.abspath(self.mktemp())
        path = os.path.join(directory, "chat.log")
        server = ServerProcess(
            directory,
            twistd_args=("--logger", "chat.server.logs.json"),
            environ={"CHAT_LOG_FILE": path},
        )
        self.addCleanup(lambda: server.stop() if server.running else None)
        # The port is in the log file, not on standard output: find it there.
        server.start().addErrback(lambda f: None)
        port = await _port_from(path)
        columbia = await lab.login(port, "columbia")
        columbia.send("logout")
        await columbia.closed
        server.send_signal(signal.SIGUSR1)
        await until(lambda: os.path.exists(path + ".1"), "the log rotated", every=0.05)
        await server.signal(signal.SIGTERM)
        events = []
        for name in (path + ".1", path):
            with open(name) as f:
                events += [json.loads(line) for line in f if line.strip()]
        logins = [e for e in events if e.get("log_namespace") == "chat.server.session"]
        self.assertEqual([e["reason"] for e in logins if "reason" in e], ["logout"])
        self.assertEqual(logins[0]["user"], "columbia")
        self.assertEqual(logins[0]["edge"], "tcp")
        said = [e.get("log_text") or e.get("log_format") for e in events]
        self.assertIn("Server Shut Down.", said)


async def _port_from(path: str) -> int:
    """The TCP port of a server that logs JSON lines to C{path}."""
    found: list[int] = []

    def listening() -> bool:
        if not os.path.exists(path):
            return False
        with open(path) as f:
            for line in f:
                text = json.loads(line).get("log_text", "")
                if text.startswith("ChatFactory starting on "):
                    found.append(int(text.rsplit(" ", 1)[1]))
                    return True
        return False

    await until(listening, f"the port in {path}", 20, every=0.05)
    return found[0]
