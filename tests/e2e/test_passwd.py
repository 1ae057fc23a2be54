"""
python -m chat.passwd run as a program: from a pipe, and given the password
once with --password-stdin, as provisioning scripts do.
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.trial import unittest

from chat.server.auth import load_users
from tests import ROOT
from tests.unit.test_passwd import TOO_SHORT


class PipedTests(unittest.TestCase):
    """The module reads both entries from a pipe, asking again as at a terminal."""

    def setUp(self) -> None:
        self.path = self.mktemp()

    def test_runs_as_a_module_reading_the_password_from_a_pipe(self) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT)
        result = subprocess.run(
            [sys.executable, "-m", "chat.passwd", self.path, "bob"],
            input=b"piped secret\npiped secret\n",
            capture_output=True,
            env=env,
            start_new_session=True,  # no controlling terminal: getpass reads stdin
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(b"Added bob", result.stdout)
        self.assertTrue(load_users(self.path)["bob"].verify(b"piped secret"))

    def test_runs_as_a_module_asking_again_after_a_short_password(self) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT)
        result = subprocess.run(
            [sys.executable, "-m", "chat.passwd", self.path, "bob"],
            input=b"tiny\npiped secret\npiped secret\n",
            capture_output=True,
            env=env,
            start_new_session=True,  # no controlling terminal: getpass reads stdin
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(f"{TOO_SHORT}; try again\n".encode(), result.stderr)
        self.assertNotIn(b"tiny", result.stdout + result.stderr)
        self.assertNotIn(b"piped secret", result.stdout + result.stderr)
        self.assertTrue(load_users(self.path)["bob"].verify(b"piped secret"))


class NonInteractiveTests(unittest.TestCase):
    """Provisioning scripts: a pipe, or the password given once with --password-stdin."""

    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp())

    def run_module(self, *args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "chat.passwd", self.path, *args],
            input=stdin,
            capture_output=True,
            env=dict(os.environ, PYTHONPATH=ROOT),
            start_new_session=True,  # no controlling terminal
            timeout=60,
        )

    def test_a_pipe_gives_both_entries_quietly(self) -> None:
        result = self.run_module("bob", stdin=b"piped secret\npiped secret\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, b"")
        self.assertNotIn(b"Warning", result.stdout)

    def test_password_stdin_takes_the_first_line_once(self) -> None:
        result = self.run_module("carol", "--password-stdin", stdin=b"provisioned pw\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, b"")
        self.assertTrue(load_users(self.path)["carol"].verify(b"provisioned pw"))

    def test_password_stdin_refuses_a_short_one_in_one_line(self) -> None:
        result = self.run_module("carol", "--password-stdin", stdin=b"short\n")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr, f"{TOO_SHORT}; nothing changed\n".encode())
        self.assertFalse(os.path.exists(self.path))

    def test_empty_input_changes_nothing_without_a_traceback(self) -> None:
        result = self.run_module("carol", "--password-stdin", stdin=b"")
        self.assertEqual(result.returncode, 1)
        self.assertNotIn(b"Traceback", result.stderr)

    def test_an_unwritable_place_is_one_line(self) -> None:
        self.path = "/proc/chat-users"
        result = self.run_module("carol", "--password-stdin", stdin=b"provisioned pw\n")
        self.assertEqual(result.returncode, 1)
        self.assertNotIn(b"Traceback", result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
