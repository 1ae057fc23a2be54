"""python -m chat.passwd: hashed entries written atomically."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator

from twisted.trial import unittest

from chat.auth import PlainSecret, ScryptSecret, load_users
from chat.passwd import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def answers(*replies: str) -> Iterator[str]:
    return iter(replies)


class PasswdTests(unittest.TestCase):
    def setUp(self) -> None:
        self.path = self.mktemp()
        self.prompts: list[str] = []

    def run_main(self, user: str, *replies: str) -> int:
        replies_left = answers(*replies)

        def ask(prompt: str) -> str:
            self.prompts.append(prompt)
            return next(replies_left)

        return main([self.path, user], ask=ask)

    def test_new_file_gets_a_hashed_entry_readable_by_the_owner_only(self) -> None:
        self.assertEqual(self.run_main("alice", "correct horse", "correct horse"), 0)
        users = load_users(self.path)
        self.assertIsInstance(users["alice"], ScryptSecret)
        self.assertTrue(users["alice"].verify(b"correct horse"))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        with open(self.path) as f:
            self.assertNotIn("correct horse", f.read())
        self.assertEqual(self.prompts, ["New password for alice: ", "Again: "])

    def test_changing_a_password_keeps_other_lines_and_the_mode(self) -> None:
        with open(self.path, "w") as f:
            f.write("# the seed users\ncolumbia 116bway\nseas summerisover\n")
        os.chmod(self.path, 0o640)
        self.assertEqual(self.run_main("columbia", "new password", "new password"), 0)
        with open(self.path) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[0], "# the seed users")
        self.assertTrue(lines[1].startswith("columbia $scrypt$"))
        self.assertEqual(lines[2], "seas summerisover")
        users = load_users(self.path)
        self.assertTrue(users["columbia"].verify(b"new password"))
        self.assertFalse(users["columbia"].verify(b"116bway"))
        self.assertEqual(users["seas"], PlainSecret(b"summerisover"))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)

    def test_mismatched_passwords_change_nothing(self) -> None:
        with open(self.path, "w") as f:
            f.write("columbia 116bway\n")
        self.assertEqual(self.run_main("columbia", "password one", "password two"), 1)
        self.assertEqual(load_users(self.path)["columbia"], PlainSecret(b"116bway"))

    def test_short_password_is_refused(self) -> None:
        self.assertEqual(self.run_main("alice", "short", "short"), 1)
        self.assertFalse(os.path.exists(self.path))

    def test_bad_username_is_refused(self) -> None:
        self.assertEqual(self.run_main("two words", "long enough", "long enough"), 2)

    def test_a_malformed_file_is_not_rewritten(self) -> None:
        with open(self.path, "w") as f:
            f.write("columbia\n")
        self.assertEqual(self.run_main("alice", "long enough", "long enough"), 1)
        with open(self.path) as f:
            self.assertEqual(f.read(), "columbia\n")

    def test_no_temporary_files_are_left_behind(self) -> None:
        self.run_main("alice", "long enough", "long enough")
        directory = os.path.dirname(os.path.abspath(self.path))
        self.assertEqual([n for n in os.listdir(directory) if n.startswith(".users-")], [])

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
