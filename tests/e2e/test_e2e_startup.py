"""
Startup through the real ``twistd -n chat``: a bad option value stops the
server with one line naming the problem, a non-zero exit and no traceback.
"""

from __future__ import annotations

import os
import re

from twisted.trial import unittest

from chat.server.tap import dual_stack
from tests.e2e.support import COMMAND, PASSWORD, USERNAME, USERS, Lab, startup_failure


class GoodOptionTests(unittest.TestCase):
    async def test_bare_port_number_means_tcp(self) -> None:
        lab = Lab(self)
        server, port = await lab.start("--port", "0")
        self.assertIn(b"ChatFactory starting on", server.log)
        client = await lab.login(port, "columbia")
        client.send("whoelse")
        await client.expect("Nobody else is online")

    async def test_bare_ports_listen_on_ipv6_and_ipv4_and_log_ipv4_clients_as_ipv4(self) -> None:
        if not dual_stack():
            raise unittest.SkipTest("this machine has no IPv6 socket that takes IPv4 too")
        lab = Lab(self)
        server, port = await lab.start("--port", "0", "--web", "0")
        for name, host in (("columbia", "127.0.0.1"), ("seas", "::1")):
            client = await lab.connect(port, host=host)
            await client.expect(USERNAME)
            client.send(name)
            await client.expect(PASSWORD)
            client.send(USERS[name])
            await client.expect(COMMAND)
            await server.expect_log(rf"{name} logged in from {re.escape(host)} over tcp")
        assert server.web_port is not None
        page = await lab.connect(server.web_port, host="::1")
        request = f"GET / HTTP/1.1\r\nHost: [::1]:{server.web_port}\r\nConnection: close\r\n\r\n"
        page.transport.write(request.encode())  # type: ignore[union-attr]
        await page.expect(r"^HTTP/1.1 200 OK\r\n")


class BadOptionTests(unittest.TestCase):
    def assertOneLine(self, output: str, *needles: str) -> str:
        """C{output} is one non-empty line, without a traceback, naming C{needles}."""
        self.assertNotIn("Traceback", output)
        lines = [line for line in output.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, f"expected one line, got:\n{output}")
        for needle in needles:
            self.assertIn(needle, lines[0])
        return lines[0]

    async def test_negative_block_time_is_refused(self) -> None:
        code, output = await startup_failure(self, "--block-time", "-1")
        self.assertNotEqual(code, 0)
        self.assertOneLine(output, "--block-time", "-1")

    async def test_negative_idle_timeout_is_refused(self) -> None:
        code, output = await startup_failure(self, "--idle-timeout", "-5")
        self.assertNotEqual(code, 0)
        self.assertOneLine(output, "--idle-timeout", "-5")

    async def test_number_option_that_is_not_a_number_is_refused(self) -> None:
        code, output = await startup_failure(self, "--max-message", "lots")
        self.assertNotEqual(code, 0)
        self.assertOneLine(output, "--max-message", "lots")

    async def test_missing_users_file_is_refused(self) -> None:
        missing = os.path.abspath(self.mktemp())
        code, output = await startup_failure(self, "--users", missing)
        self.assertNotEqual(code, 0)
        self.assertOneLine(output, missing, "does not exist")

    async def test_malformed_users_line_is_refused_with_its_line_number(self) -> None:
        code, output = await startup_failure(self, users_text="columbia 116bway\nseas\n")
        self.assertNotEqual(code, 0)
        self.assertOneLine(output, "users.txt", "line 2")

    async def test_database_in_missing_directory_is_refused(self) -> None:
        path = os.path.join(os.path.abspath(self.mktemp()), "no", "such", "chat.sqlite")
        code, output = await startup_failure(self, "--database", path)
        self.assertNotEqual(code, 0)
        self.assertOneLine(output, "database", path)

    async def test_database_that_is_not_sqlite_is_refused(self) -> None:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("these are not the pages of an SQLite database\n" * 100)
        code, output = await startup_failure(self, "--database", path)
        self.assertNotEqual(code, 0)
        self.assertOneLine(output, "database", path)
        with open(path) as f:
            self.assertTrue(f.read().startswith("these are not"), "the file was overwritten")

    async def test_unknown_endpoint_type_is_refused(self) -> None:
        code, output = await startup_failure(self, "--port", "carrier-pigeon:4119")
        self.assertNotEqual(code, 0)
        self.assertOneLine(output, "--port", "carrier-pigeon")

    async def test_port_already_in_use_exits_promptly(self) -> None:
        """
        A second server on the port of a running one exits promptly and
        non-zero (within 5 seconds of saying the port is in use), and the
        first server keeps serving.
        """
        lab = Lab(self)
        _, port = await lab.start()
        code, output = await startup_failure(
            self, "--port", f"tcp:{port}:interface=127.0.0.1", reported=b"in use", exit_within=5
        )
        self.assertNotEqual(code, 0)
        self.assertIn("in use", output)
        first = await lab.login(port, "columbia")
        first.send("whoelse")
        await first.expect("Nobody else is online")

    async def test_port_already_in_use_is_one_line_without_traceback(self) -> None:
        """
        The refusal names the port on one line, without a traceback.  (No
        database here, so this shows the message whether or not the exit hangs.)
        """
        lab = Lab(self)
        _, port = await lab.start()
        code, output = await startup_failure(
            self, "--port", f"tcp:{port}:interface=127.0.0.1", "--database", ":memory:", reported=b"in use"
        )
        self.assertNotEqual(code, 0)
        self.assertNotIn("Traceback", output)
        problems = [line for line in output.splitlines() if str(port) in line]
        self.assertEqual(len(problems), 1, f"expected the port named on one line:\n{output}")
        self.assertIn("in use", problems[0])
