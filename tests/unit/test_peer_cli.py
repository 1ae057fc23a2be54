"""Tests for the pair chat's command line, in-process."""

from __future__ import annotations

import io
import sys

from twisted.trial import unittest

from chat.client.connect import Target
from chat.peer.cli import ConnectOptions, ServeOptions, connect, parse_arguments
from chat.peer.framing import Handle
from tests.unit.console import stop_while_connecting


class ParseArgumentsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)

    def refused(self, *argv: str) -> str:
        """The one line printed for C{argv}, which exits with status 2."""
        self.stderr.seek(0)
        self.stderr.truncate()
        with self.assertRaises(SystemExit) as caught:
            parse_arguments(list(argv))
        self.assertEqual(caught.exception.code, 2)
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("chat.peer: "), lines)
        return lines[0]

    def test_serve_is_hosta_on_all_addresses_by_default(self) -> None:
        self.assertEqual(parse_arguments(["serve", "30020"]), ServeOptions(30020, Handle("HostA")))

    def test_serve_with_a_handle_and_an_interface(self) -> None:
        options = parse_arguments(["serve", "0", "--handle", "Ann", "--interface", "127.0.0.1"])
        self.assertEqual(options, ServeOptions(0, Handle("Ann"), "127.0.0.1"))

    def test_connect_asks_for_the_handle_unless_given(self) -> None:
        self.assertEqual(
            parse_arguments(["connect", "localhost", "30020"]), ConnectOptions(Target("localhost", 30020))
        )
        self.assertEqual(
            parse_arguments(["connect", "h", "1", "--handle", "SteveO"]),
            ConnectOptions(Target("h", 1), Handle("SteveO")),
        )

    def test_a_bad_handle_is_one_line_saying_why(self) -> None:
        self.assertIn(
            "--handle 'Steve O': a handle is one word",
            self.refused("connect", "h", "1", "--handle", "Steve O"),
        )
        self.assertIn("at most 10 characters", self.refused("serve", "1", "--handle", "HostAndMore"))

    def test_a_port_must_be_a_port_number_and_serve_may_take_zero(self) -> None:
        for port in ("http", "-1", "65536"):
            self.assertIn(f"PORT must be a number from 0 to 65535, not '{port}'", self.refused("serve", port))
        self.assertIn("PORT must be a number from 1 to 65535, not '0'", self.refused("connect", "h", "0"))

    def test_a_command_is_needed(self) -> None:
        self.assertIn("COMMAND", self.refused())
        self.assertIn("invalid choice: 'chat'", self.refused("chat"))

    def test_a_missing_port_is_named(self) -> None:
        self.assertIn("PORT", self.refused("connect", "localhost"))


class ConnectingTests(unittest.TestCase):
    def test_stopping_while_the_connection_is_pending_is_one_line(self) -> None:
        """
        Ctrl+C before the console takes it, or SIGTERM, while the TCP
        connection is still being made: one line and status 2.
        """
        options = ConnectOptions(Target("127.0.0.1", 30020))
        stderr = stop_while_connecting(self, lambda reactor: connect(reactor, options), ("127.0.0.1", 30020))
        self.assertEqual(stderr, "chat.peer: gave up connecting to 127.0.0.1:30020\n")
