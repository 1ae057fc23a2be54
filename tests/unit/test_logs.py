"""
The log observers for twistd's --logger: JSON lines, bounded rotation.
A real server using them: L{tests.e2e.test_logs}.
"""

from __future__ import annotations

import json
import os

from twisted.logger import Logger
from twisted.trial import unittest

from chat.server import logs


class OutputTests(unittest.TestCase):
    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "chat.log")
        self.addCleanup(setattr, logs, "current", None)

    def test_standard_output_by_default(self) -> None:
        import sys

        self.assertIs(logs._output({}), sys.stdout)
        self.assertIs(logs._output({"CHAT_LOG_FILE": "-"}), sys.stdout)

    def test_a_file_is_rotated_at_its_size_and_only_so_many_are_kept(self) -> None:
        out = logs._output({"CHAT_LOG_FILE": self.path, "CHAT_LOG_SIZE": "1000", "CHAT_LOG_KEEP": "3"})
        self.addCleanup(out.close)
        for i in range(100):
            out.write(f"line {i:04d} " + "x" * 90 + "\n")
            out.flush()
        names = sorted(os.listdir(self.directory))
        self.assertEqual(names, ["chat.log", "chat.log.1", "chat.log.2", "chat.log.3"])
        for name in names:
            self.assertLessEqual(os.path.getsize(os.path.join(self.directory, name)), 1000 + 100)
        self.assertTrue(logs.rotate())
        self.assertEqual(os.path.getsize(self.path), 0)

    def test_json_lines_carry_every_field(self) -> None:
        os.environ["CHAT_LOG_FILE"] = self.path
        self.addCleanup(os.environ.pop, "CHAT_LOG_FILE")
        observer = logs.json()
        logger = Logger(namespace="chat.test", observer=observer)
        logger.info("{user} logged in from {host}", user="columbia", host="10.0.0.1")
        logger.warn("second line")
        assert logs.current is not None
        logs.current.close()
        with open(self.path) as f:
            [first, second] = [json.loads(line) for line in f]
        self.assertEqual(
            (first["user"], first["host"], first["log_namespace"]), ("columbia", "10.0.0.1", "chat.test")
        )
        self.assertEqual(second["log_level"]["name"], "warn")

    def test_a_bad_setting_stops_the_server_in_one_line(self) -> None:
        with self.assertRaises(SystemExit) as caught:
            logs._output({"CHAT_LOG_FILE": self.path, "CHAT_LOG_KEEP": "lots"})
        self.assertEqual(
            str(caught.exception),
            "twistd chat: CHAT_LOG_KEEP must be a whole number of at least 1, not 'lots'",
        )
        with self.assertRaises(SystemExit) as caught:
            logs._output({"CHAT_LOG_FILE": "/nonexistent/dir/chat.log"})
        self.assertIn("cannot open the log file /nonexistent/dir/chat.log", str(caught.exception))
