"""
The users file, the password checker and the login guard.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from chat.server.auth import (
    LoginBusy,
    LoginGuard,
    PlainSecret,
    ScryptSecret,
    Secret,
    UsersChecker,
    UsersFileError,
    format_user_line,
    load_users,
    parse_users,
)
from tests import ROOT

SEED_FILE = """columbia 116bway
seas summerisover
csee4119 lotsofassignments
"""

# The global reactor, typed loosely: it provides every interface used here.
reactor: Any = _reactor


def cheap_scrypt(password: bytes) -> ScryptSecret:
    """A hash with small parameters, so tests stay fast."""
    return ScryptSecret.create(password, log_n=4, r=1, p=1)


class UsersFileTests(unittest.TestCase):
    def test_seed_format(self) -> None:
        users = parse_users(SEED_FILE)
        self.assertEqual(set(users), {"columbia", "seas", "csee4119"})
        self.assertEqual(users["columbia"], PlainSecret(b"116bway"))

    def test_the_shipped_users_file_has_the_nine_seed_users(self) -> None:
        root = ROOT
        users = load_users(os.path.join(root, "user_pass.txt"))
        self.assertEqual(len(users), 9)
        self.assertTrue(users["network"].verify(b"seemsez"))

    def test_blank_lines_comments_and_crlf_are_fine(self) -> None:
        users = parse_users("# chat users\r\n\r\ncolumbia 116bway\r\n   \n")
        self.assertTrue(users["columbia"].verify(b"116bway"))

    def test_password_is_the_rest_of_the_line(self) -> None:
        users = parse_users("alice correct horse battery\n")
        self.assertTrue(users["alice"].verify(b"correct horse battery"))

    def test_hashed_entries_are_recognised(self) -> None:
        secret = cheap_scrypt(b"s3cret")
        users = parse_users(format_user_line("alice", secret) + "\nbob plain\n")
        self.assertIsInstance(users["alice"], ScryptSecret)
        self.assertTrue(users["alice"].verify(b"s3cret"))
        self.assertFalse(users["alice"].verify(b"wrong"))

    def test_scrypt_encoding_round_trips(self) -> None:
        secret = cheap_scrypt(b"x")
        self.assertEqual(ScryptSecret.decode(secret.encode()), secret)

    def test_errors_name_the_line(self) -> None:
        cases = [
            ("columbia\n", "line 1: expected '<username> <password>'"),
            ("a b\na c\n", "line 2: user 'a' appears twice"),
            ("a $scrypt$ln=14,r=8,p=1$!!$??\n", "line 1: malformed scrypt entry"),
            ("a $scrypt$ln=99,r=8,p=1$AAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", "out of range"),
            ("# nothing\n", "no users defined"),
        ]
        for text, message in cases:
            with self.assertRaises(UsersFileError) as caught:
                parse_users(text, "users.txt")
            self.assertIn(message, str(caught.exception))

    def test_a_username_with_a_direction_control_is_refused(self) -> None:
        for char in ("\u202e", "\u2066", "\u200f", "\x9b"):
            with self.assertRaises(UsersFileError) as caught:
                parse_users(f"adm{char}in secret\n", "users.txt")
            self.assertIn("line 1: username must be", str(caught.exception))

    def test_missing_file(self) -> None:
        with self.assertRaises(UsersFileError) as caught:
            load_users("/nonexistent/users.txt")
        self.assertEqual(str(caught.exception), "users file '/nonexistent/users.txt' does not exist")

    def test_file_that_is_not_utf8(self) -> None:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"columbia \xff\xfe\n")
        with self.assertRaises(UsersFileError) as caught:
            load_users(path)
        self.assertIn("not UTF-8", str(caught.exception))

    def test_secrets_do_not_show_in_repr(self) -> None:
        self.assertNotIn("116bway", repr(PlainSecret(b"116bway")))
        secret = cheap_scrypt(b"x")
        self.assertNotIn(secret.encode().split("$")[-1], repr(secret))


class CheckerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.users: dict[str, Secret] = {
            "columbia": PlainSecret(b"116bway"),
            "alice": cheap_scrypt(b"s3cret"),
        }
        self.checker = UsersChecker(self.users, reactor)

    def check(self, name: str, password: str) -> Deferred[bytes | tuple[()]]:
        return self.checker.requestAvatarId(UsernamePassword(name.encode(), password.encode()))

    def test_plain_password_is_checked_at_once(self) -> None:
        self.assertEqual(self.successResultOf(self.check("columbia", "116bway")), b"columbia")
        self.failureResultOf(self.check("columbia", "116bwa"), UnauthorizedLogin)
        self.failureResultOf(self.check("columbia", ""), UnauthorizedLogin)

    def test_unknown_user_is_refused_at_once_when_all_entries_are_plain(self) -> None:
        checker = UsersChecker({"columbia": PlainSecret(b"116bway")}, reactor)
        d = checker.requestAvatarId(UsernamePassword(b"nobody", b"116bway"))
        self.failureResultOf(d, UnauthorizedLogin)

    async def test_hashed_password_is_checked_in_a_thread(self) -> None:
        d = self.check("alice", "s3cret")
        self.assertNoResult(d)  # not answered on the reactor thread
        self.assertEqual(await d, b"alice")

    async def test_wrong_hashed_password_is_refused(self) -> None:
        await self.assertFailure(self.check("alice", "wrong"), UnauthorizedLogin)

    async def test_unknown_user_costs_a_hash_when_the_file_has_hashes(self) -> None:
        d = self.check("nobody", "s3cret")
        self.assertNoResult(d)
        await self.assertFailure(d, UnauthorizedLogin)

    async def test_too_many_waiting_checks_are_refused_as_busy(self) -> None:
        checker = UsersChecker(self.users, reactor, concurrency=1, max_waiting=2)
        checks = [checker.requestAvatarId(UsernamePassword(b"alice", b"s3cret")) for _ in range(4)]
        # One runs, two wait, the fourth is turned away at once.
        self.failureResultOf(checks[3], LoginBusy)
        for d in checks[:3]:
            self.assertEqual(await d, b"alice")


class GuardTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.guard = LoginGuard(self.clock, max_attempts=3, block_time=60)

    def test_blocks_after_max_attempts(self) -> None:
        self.assertEqual(self.successResultOf(self.guard.failed("columbia", "1.2.3.4")), 0)
        self.assertEqual(self.successResultOf(self.guard.failed("columbia", "1.2.3.4")), 0)
        self.assertEqual(self.successResultOf(self.guard.failed("columbia", "1.2.3.4")), 60)
        self.clock.advance(20)
        self.assertEqual(self.guard.blocked_for("columbia", "1.2.3.4"), 40)
        self.assertEqual(self.guard.blocked_for("columbia", "5.6.7.8"), 0)
        self.assertEqual(self.guard.blocked_for("seas", "1.2.3.4"), 0)
        self.clock.advance(40)
        self.assertEqual(self.guard.blocked_for("columbia", "1.2.3.4"), 0)

    def test_after_a_block_the_count_starts_again(self) -> None:
        for _ in range(3):
            self.successResultOf(self.guard.failed("columbia", "h"))
        self.clock.advance(60)
        self.assertEqual(self.successResultOf(self.guard.failed("columbia", "h")), 0)
        self.assertEqual(self.successResultOf(self.guard.failed("columbia", "h")), 0)
        self.assertEqual(self.successResultOf(self.guard.failed("columbia", "h")), 60)

    def test_old_failures_are_forgotten(self) -> None:
        self.successResultOf(self.guard.failed("columbia", "h"))
        self.successResultOf(self.guard.failed("columbia", "h"))
        self.clock.advance(61)
        self.assertEqual(self.successResultOf(self.guard.failed("columbia", "h")), 0)

    def test_success_clears_the_count(self) -> None:
        self.successResultOf(self.guard.failed("columbia", "h"))
        self.successResultOf(self.guard.failed("columbia", "h"))
        self.guard.succeeded("columbia", "h")
        self.assertEqual(self.successResultOf(self.guard.failed("columbia", "h")), 0)
        self.assertEqual(len(self.guard), 1)

    def test_records_of_an_attack_that_ended_are_forgotten(self) -> None:
        guard = LoginGuard(self.clock, max_attempts=3, block_time=60)
        for i in range(5000):
            self.successResultOf(guard.failed(f"fresh{i}", "h"))
        self.assertEqual(len(guard), 5000)
        self.clock.advance(61)
        for i in range(2500):
            self.successResultOf(guard.failed(f"later{i}", "h"))
        # Each use dropped two stale ones: the old attack is gone.
        self.assertEqual(len(guard), 2500)

    def test_table_is_bounded(self) -> None:
        guard = LoginGuard(self.clock, max_attempts=3, block_time=60, max_entries=100)
        for i in range(1000):
            self.successResultOf(guard.failed(f"user{i}", "h"))
        self.assertEqual(len(guard), 100)
        # The newest entries are the ones kept.
        self.successResultOf(guard.failed("user999", "h"))
        self.assertEqual(self.successResultOf(guard.failed("user999", "h")), 60)

    def test_checks_in_progress_count_against_the_limit(self) -> None:
        self.assertTrue(self.successResultOf(self.guard.begin("columbia", "h")))
        self.assertTrue(self.successResultOf(self.guard.begin("columbia", "h")))
        self.assertTrue(self.successResultOf(self.guard.begin("columbia", "h")))
        self.assertFalse(self.successResultOf(self.guard.begin("columbia", "h")))
        self.assertTrue(self.successResultOf(self.guard.begin("columbia", "other-host")))
        self.guard.abandoned("columbia", "h")
        self.assertTrue(self.successResultOf(self.guard.begin("columbia", "h")))

    def test_failures_and_checks_together_stay_within_the_limit(self) -> None:
        self.assertTrue(self.successResultOf(self.guard.begin("columbia", "h")))
        self.assertEqual(self.successResultOf(self.guard.failed("columbia", "h")), 0)
        self.assertTrue(self.successResultOf(self.guard.begin("columbia", "h")))
        self.assertTrue(self.successResultOf(self.guard.begin("columbia", "h")))
        self.assertFalse(self.successResultOf(self.guard.begin("columbia", "h")))
        self.assertEqual(self.successResultOf(self.guard.failed("columbia", "h")), 0)
        self.assertEqual(self.successResultOf(self.guard.failed("columbia", "h")), 60)

    def test_max_attempts_of_one_blocks_at_the_first_failure(self) -> None:
        guard = LoginGuard(self.clock, max_attempts=1, block_time=5)
        self.assertEqual(self.successResultOf(guard.failed("a", "h")), 5)
