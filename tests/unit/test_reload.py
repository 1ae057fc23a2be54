"""
The users file read again while the server runs (SIGHUP): the in-memory
harness server, with the file read from disk in the reactor's thread pool.
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.logger import formatEvent
from twisted.trial import unittest

from chat.server.reload import UsersFile
from tests.unit.harness import PASSWORDS, Harness, capture_log
from tests.unit.test_web_edge import Browser


class ReloadTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness(tokens=True)
        self.path = os.path.abspath(self.mktemp())
        self.write(PASSWORDS)
        self.users_file = UsersFile(
            self.path,
            self.server.checker,
            self.server.service,
            self.server.tokens,
            reactor,  # type: ignore[arg-type]
        )
        self.log = capture_log(self, "chat.server.reload")

    def write(self, users: dict[str, str], extra: str = "") -> None:
        with open(self.path, "w") as f:
            f.write("".join(f"{name} {password}\n" for name, password in users.items()) + extra)

    def login_reply(self, name: str, password: str) -> str:
        conn = self.server.connect()
        conn.send(name, password)
        return conn.read()

    async def test_a_user_added_to_the_file_logs_in_and_nobody_is_dropped(self) -> None:
        seas = self.server.login("seas")
        self.assertIn("Invalid", self.login_reply("windows", "withglass"))
        self.write({**PASSWORDS, "windows": "withglass"})
        await self.users_file.reload()
        self.assertIn("Welcome to chat, windows!", self.login_reply("windows", "withglass"))
        self.assertFalse(seas.closing)
        seas.send("message windows welcome aboard")
        self.assertEqual(seas.read(), "Sent to windows.\r\nCommand: ")
        [line] = self.log
        self.assertEqual(
            formatEvent(line),
            f"reloaded {self.path}: 7 users; added windows, removed none, new password for none",
        )

    async def test_a_changed_password_applies_to_the_next_login_and_the_session_goes_on(self) -> None:
        seas = self.server.login("seas")
        self.write({**PASSWORDS, "seas": "autumnnow"})
        await self.users_file.reload()
        self.assertFalse(seas.closing)
        seas.send("whoelse")
        self.assertEqual(seas.read(), "Nobody else is online.\r\nCommand: ")
        self.assertIn("Invalid", self.login_reply("google", "wrong"))
        seas.send("logout")
        self.assertIn("Invalid", self.login_reply("seas", "summerisover"))
        self.assertIn("Welcome", self.login_reply("seas", "autumnnow"))

    async def test_a_removed_user_is_told_why_on_every_edge_and_cannot_come_back(self) -> None:
        seas = self.server.login("seas")
        browser = Browser(self.server)
        browser.login("google")
        [session] = [m for m in browser.read() if m["type"] == "session"]
        browser.lose()
        browser = Browser(self.server)
        browser.send(type="resume", token=session["token"])
        browser.read()
        remaining = {n: p for n, p in PASSWORDS.items() if n not in ("seas", "google")}
        self.write(remaining)
        await self.users_file.reload()
        self.assertEqual(
            seas.read(), "\r\nThe user seas no longer exists on this server; this session is closed.\r\n"
        )
        self.assertTrue(seas.closing)
        [goodbye] = [m for m in browser.read() if m["type"] == "goodbye"]
        self.assertEqual(goodbye["reason"], "removed")
        self.assertIn("Invalid", self.login_reply("seas", "summerisover"))
        # The token the page holds brings nothing back either.
        browser.lose()
        again = Browser(self.server)
        again.read()
        again.send(type="resume", token=session["token"])
        self.assertEqual(again.read()[0]["type"], "login_refused")
        # Nor a message to them: they are no user now.
        columbia = self.server.login("columbia")
        columbia.send("message seas hello?")
        self.assertIn("No user named 'seas'", columbia.read())

    async def test_a_file_with_a_mistake_keeps_the_old_users_and_says_where(self) -> None:
        seas = self.server.login("seas")
        self.write({"seas": "summerisover"}, extra="windows\n")
        await self.users_file.reload()
        [line] = self.log
        self.assertEqual(
            formatEvent(line),
            f"{self.path} was not reloaded: {self.path}, line 2: expected '<username> <password>'; "
            "the 6 users loaded before stay",
        )
        self.assertNotIn("summerisover", formatEvent(line))
        self.assertFalse(seas.closing)
        self.assertIn("Welcome", self.login_reply("google", "partofalphabet"))

    async def test_a_missing_file_keeps_the_old_users(self) -> None:
        os.remove(self.path)
        await self.users_file.reload()
        self.assertIn("does not exist", formatEvent(self.log[0]))
        self.assertIn("Welcome", self.login_reply("google", "partofalphabet"))

    async def test_reloads_asked_for_together_read_the_file_again_after_the_first(self) -> None:
        first = self.users_file.reload()
        self.write({**PASSWORDS, "windows": "withglass"})
        second = self.users_file.reload()
        await first
        await second
        self.assertIn("Welcome", self.login_reply("windows", "withglass"))
