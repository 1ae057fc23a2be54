"""python -m chat.passwd: hashed entries written atomically."""

from __future__ import annotations

import io
import os
import stat
from contextlib import redirect_stderr, redirect_stdout

from twisted.trial import unittest

from chat.passwd import MAX_TRIES, MIN_LENGTH, main
from chat.server.auth import PlainSecret, ScryptSecret, load_users

NEW = "New password for {}: "
AGAIN = "Again: "
TOO_SHORT = f"chat.passwd: use at least {MIN_LENGTH} characters"
BAD_CHARACTERS = "chat.passwd: no control characters or leading/trailing spaces"
DIFFERENT = "chat.passwd: the passwords differ"
GAVE_UP = f"chat.passwd: no usable password in {MAX_TRIES} tries; nothing changed"


class PasswdTests(unittest.TestCase):
    def setUp(self) -> None:
        self.path = self.mktemp()
        self.prompts: list[str] = []
        self.stdout = ""
        self.stderr = ""

    def run_main(self, user: str, *replies: str) -> int:
        """
        Run the command with C{replies} typed at its prompts, keeping what it printed.

        Running out of replies is the end of input, as with a pipe, so a
        command that asks more often than a test expects fails as a real one
        would, instead of with StopIteration.
        """
        replies_left = iter(replies)

        def ask(prompt: str) -> str:
            self.prompts.append(prompt)
            try:
                return next(replies_left)
            except StopIteration:
                raise EOFError from None

        out, err = io.StringIO(), io.StringIO()
        try:
            with redirect_stdout(out), redirect_stderr(err):
                return main([self.path, user], ask=ask)
        finally:
            self.stdout, self.stderr = out.getvalue(), err.getvalue()

    def assert_not_printed(self, *passwords: str) -> None:
        for password in passwords:
            self.assertNotIn(password, self.stdout + self.stderr)

    def write_users(self, text: str) -> None:
        with open(self.path, "w") as f:
            f.write(text)

    def read_users(self) -> str:
        with open(self.path) as f:
            return f.read()

    def test_new_file_gets_a_hashed_entry_readable_by_the_owner_only(self) -> None:
        self.assertEqual(self.run_main("alice", "correct horse", "correct horse"), 0)
        users = load_users(self.path)
        self.assertIsInstance(users["alice"], ScryptSecret)
        self.assertTrue(users["alice"].verify(b"correct horse"))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        with open(self.path) as f:
            self.assertNotIn("correct horse", f.read())
        self.assertEqual(self.prompts, [NEW.format("alice"), AGAIN])
        self.assertEqual(self.stderr, "")
        self.assert_not_printed("correct horse")

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

    def test_a_short_password_is_refused_before_the_second_entry_and_asked_again(self) -> None:
        self.assertEqual(self.run_main("alice", "tiny", "long enough", "long enough"), 0)
        self.assertEqual(self.prompts, [NEW.format("alice"), NEW.format("alice"), AGAIN])
        self.assertEqual(self.stderr.splitlines(), [f"{TOO_SHORT}; try again"])
        self.assertTrue(load_users(self.path)["alice"].verify(b"long enough"))
        self.assert_not_printed("tiny", "long enough")

    def test_control_characters_and_edge_spaces_are_refused_on_the_first_entry(self) -> None:
        for bad in (" blank first", "blank last ", "a\ttab inside", "a\x7fdelete inside"):
            self.path = self.mktemp()
            self.prompts = []
            self.assertEqual(self.run_main("alice", bad, "long enough", "long enough"), 0, repr(bad))
            self.assertEqual(self.prompts, [NEW.format("alice"), NEW.format("alice"), AGAIN], repr(bad))
            self.assertEqual(self.stderr.splitlines(), [f"{BAD_CHARACTERS}; try again"], repr(bad))
            self.assert_not_printed(bad.strip(), "long enough")

    def test_mismatched_entries_are_reported_and_asked_again(self) -> None:
        self.write_users("columbia 116bway\n")
        replies = ("password one", "password two", "password three", "password three")
        self.assertEqual(self.run_main("columbia", *replies), 0)
        self.assertEqual(self.prompts, [NEW.format("columbia"), AGAIN] * 2)
        self.assertEqual(self.stderr.splitlines(), [f"{DIFFERENT}; try again"])
        users = load_users(self.path)
        self.assertTrue(users["columbia"].verify(b"password three"))
        self.assertFalse(users["columbia"].verify(b"password one"))
        self.assert_not_printed(*replies)

    def test_three_bad_tries_of_any_kind_give_up_and_change_nothing(self) -> None:
        self.write_users("columbia 116bway\n")
        # A good password follows the three bad tries: it must never be asked for.
        replies = ("tiny", "password one", "password two", " spaced out", "long enough", "long enough")
        self.assertEqual(self.run_main("columbia", *replies), 1)
        self.assertEqual(self.prompts, [NEW.format("columbia")] * 2 + [AGAIN, NEW.format("columbia")])
        self.assertEqual(
            self.stderr.splitlines(),
            [f"{TOO_SHORT}; try again", f"{DIFFERENT}; try again", BAD_CHARACTERS, GAVE_UP],
        )
        self.assertEqual(self.read_users(), "columbia 116bway\n")
        self.assert_not_printed(*replies)

    def test_three_mismatches_give_up_and_change_nothing(self) -> None:
        replies = ("password one", "password two") * MAX_TRIES + ("long enough", "long enough")
        self.assertEqual(self.run_main("alice", *replies), 1)
        self.assertEqual(self.prompts, [NEW.format("alice"), AGAIN] * MAX_TRIES)
        self.assertEqual(self.stderr.splitlines(), [f"{DIFFERENT}; try again"] * 2 + [DIFFERENT, GAVE_UP])
        self.assertFalse(os.path.exists(self.path))
        self.assert_not_printed("password one", "password two")

    def test_input_ending_while_asking_again_changes_nothing(self) -> None:
        self.assertEqual(self.run_main("alice", "tiny"), 1)
        self.assertEqual(self.stderr.splitlines()[-1], "chat.passwd: nothing changed")
        self.assertFalse(os.path.exists(self.path))
        self.assert_not_printed("tiny")

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
