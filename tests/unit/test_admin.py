"""
The admins' commands on one server, in process: who may use them, what
they do, what they say on each edge, and the one log line each leaves.
(Across nodes: tests/e2e/test_cluster.py, and end to end tests/e2e/test_e2e_admin.py.)
"""

from __future__ import annotations

from typing import Any

from twisted.logger import formatEvent
from twisted.trial import unittest

from chat.server import commands
from chat.server.events import Goodbye, Reason, UnknownCommand
from tests.unit.harness import Harness, capture_log
from tests.unit.test_web_edge import Browser, logged_in

ADMINS = frozenset({"columbia"})


def admin_browser(server: Harness, name: str = "columbia") -> Browser:
    browser = Browser(server)
    browser.login(name)
    [welcome] = [m for m in browser.read() if m["type"] == "welcome"]
    assert welcome.get("admin") is True, welcome
    return browser


class WhoMayTests(unittest.TestCase):
    """Everyone but an admin is answered as if the commands did not exist."""

    def setUp(self) -> None:
        self.server = Harness(admins=ADMINS)

    def test_a_user_who_is_not_an_admin_gets_the_answer_for_an_unknown_command(self) -> None:
        seas = self.server.login("seas")
        for line, word in (("kick columbia", "kick"), ("sessions", "sessions"), ("announce hi", "announce")):
            seas.send(line)
            made_up = self.server.login("google") if word == "kick" else None
            self.assertEqual(
                seas.read(), f"Unknown command '{word}'; type 'help' for the list of commands.\r\nCommand: "
            )
            if made_up is not None:
                self.assertFalse(made_up.closing, "a kick by a user who is no admin did something")

    def test_a_misspelled_admin_command_is_suggested_to_admins_alone(self) -> None:
        self.assertEqual(commands.parse("kik seas"), UnknownCommand("kik", None))
        self.assertEqual(commands.parse("kik seas", admin=True), UnknownCommand("kik", "kick"))

    def test_help_lists_the_admins_commands_to_admins_alone(self) -> None:
        seas = self.server.login("seas")
        columbia = self.server.login("columbia")
        seas.send("help")
        columbia.send("help")
        self.assertNotIn("kick USER", seas.read())
        listing = columbia.read()
        for usage in ("sessions", "kick USER [REASON]", "announce TEXT"):
            self.assertIn(f"  {usage}\r\n", listing)
        seas.send("help kick")
        self.assertTrue(seas.read().startswith("Unknown command 'kick'"))

    def test_a_page_is_told_its_user_is_an_admin_and_no_one_else_is(self) -> None:
        admin_browser(self.server)
        logged_in(self.server, "seas")  # its welcome has no "admin"

    def test_a_page_of_a_user_who_is_not_an_admin_gets_unknown_type(self) -> None:
        seas = logged_in(self.server, "seas")
        seas.send(type="kick", user="columbia")
        [answer] = seas.read()
        self.assertEqual((answer["type"], answer["code"]), ("error", "unknown_type"))


class SessionsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness(admins=ADMINS)

    def test_sessions_lists_every_logged_in_session_with_its_edge_address_and_idle_time(self) -> None:
        columbia = self.server.login("columbia", host="10.0.0.1")
        self.server.clock.advance(60)
        self.server.login("seas", host="10.0.0.2")
        Browser(self.server)  # connected, not logged in: not a session yet
        google = logged_in(self.server, "google")
        self.server.clock.advance(125)
        google.send(type="whoelse")
        columbia.send("sessions")
        lines = columbia.read().split("\r\n")
        self.assertEqual(lines[0], "3 sessions:")
        self.assertEqual(lines[1].split(), ["USER", "EDGE", "ADDRESS", "NODE", "SINCE", "(UTC)", "IDLE"])
        rows = {line.split()[0]: line.split() for line in lines[2:5]}
        self.assertEqual(rows["columbia"][1:4], ["tcp", "10.0.0.1", "-"])
        self.assertEqual(rows["seas"][1:4], ["tcp", "10.0.0.2", "-"])
        self.assertEqual(rows["google"][1:4], ["web", "10.0.0.9", "-"])
        # Idle: since each one's last command (columbia's is this one).
        self.assertEqual((rows["columbia"][-1], rows["seas"][-1], rows["google"][-1]), ("0s", "2m", "0s"))
        self.assertEqual(lines[5], "Command: ")

    def test_sessions_as_json_gives_numbers_a_page_can_sort(self) -> None:
        self.server.login("seas", host="10.0.0.2")
        columbia = admin_browser(self.server)
        self.server.clock.advance(30)
        columbia.send(type="sessions")
        [answer] = columbia.read()
        self.assertEqual(answer["type"], "sessions")
        self.assertEqual(answer["unanswered"], 0)
        by_user = {s["user"]: s for s in answer["sessions"]}
        self.assertEqual(set(by_user), {"columbia", "seas"})
        self.assertEqual(by_user["seas"]["edge"], "tcp")
        self.assertEqual(by_user["seas"]["address"], "10.0.0.2")
        self.assertIsNone(by_user["seas"]["node"])
        self.assertEqual(by_user["seas"]["idle"], 30)
        self.assertEqual(by_user["columbia"]["idle"], 0)

    def test_listing_the_sessions_is_one_line_of_the_log(self) -> None:
        log = capture_log(self, "chat.server.admin")
        columbia = self.server.login("columbia")
        columbia.send("sessions")
        self.assertEqual([formatEvent(e) for e in log], ["admin columbia listed the sessions"])


class KickTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness(admins=ADMINS, tokens=True)

    def test_a_kicked_user_is_told_who_did_it_and_why_and_disconnected(self) -> None:
        columbia = self.server.login("columbia")
        seas = self.server.login("seas")
        columbia.send("kick seas  flooding the channel ")
        self.assertEqual(
            columbia.read(),
            "Disconnected seas; they cannot resume the session without their password.\r\nCommand: ",
        )
        self.assertEqual(
            seas.read(), "\r\nYou were disconnected by the admin columbia: flooding the channel\r\n"
        )
        self.assertTrue(seas.closing)
        self.assertNotIn("seas", self.server.service.registry.online)

    def test_a_kicked_page_is_told_the_reason_as_values_and_its_token_no_longer_resumes(self) -> None:
        columbia = self.server.login("columbia")
        seas = Browser(self.server)
        seas.login("seas")
        [token] = [m["token"] for m in seas.read() if m["type"] == "session"]
        columbia.send("kick seas spam")
        goodbye = seas.read()[-1]
        self.assertEqual(
            goodbye,
            {
                "type": "goodbye",
                "reason": "kicked",
                "by": "columbia",
                "why": "spam",
                "text": "You were disconnected by the admin columbia: spam",
            },
        )
        again = Browser(self.server)
        again.send(type="resume", token=token)
        answers = again.read()
        self.assertNotIn("welcome", [m["type"] for m in answers])
        self.assertIn("login_refused", [m["type"] for m in answers])

    def test_every_resume_token_of_a_kicked_user_is_revoked(self) -> None:
        revoked: list[str] = []
        store: Any = self.server.store
        original = store.revoke_tokens

        def revoke(name: str) -> Any:
            revoked.append(name)
            return original(name)

        store.revoke_tokens = revoke
        columbia = self.server.login("columbia")
        columbia.send("kick seas")  # offline: revoked all the same
        self.assertEqual(revoked, ["seas"])
        self.assertEqual(
            columbia.read(), "seas is not online; any saved sessions of theirs were revoked.\r\nCommand: "
        )

    def test_kicking_someone_who_is_not_a_user_does_nothing_and_says_so(self) -> None:
        columbia = self.server.login("columbia")
        columbia.send("kick saes")
        self.assertEqual(
            columbia.read(),
            "No user named 'saes'; did you mean 'seas'? Nobody was disconnected.\r\nCommand: ",
        )

    def test_a_kick_is_one_line_of_the_log_with_who_whom_and_why(self) -> None:
        columbia = self.server.login("columbia")
        self.server.login("seas")
        log = capture_log(self, "chat.server.admin")
        columbia.send("kick seas flooding")
        [line] = log
        self.assertEqual(formatEvent(line), "admin columbia kicked seas (here): flooding")
        self.assertEqual((line["admin"], line["user"], line["reason"]), ("columbia", "seas", "flooding"))

    def test_the_goodbye_event_carries_the_admin_and_the_reason(self) -> None:
        columbia = self.server.login("columbia")
        seas = self.server.login("seas")
        ended: list[Goodbye] = []
        session = seas.session
        original = session.goodbye

        def goodbye(reason: Goodbye) -> Any:
            ended.append(reason)
            return original(reason)

        session.goodbye = goodbye
        columbia.send("kick seas")
        self.assertEqual(ended, [Goodbye(Reason.KICKED, "seas", by="columbia", why="")])


class AnnounceTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness(admins=ADMINS)

    def test_an_announcement_reaches_everyone_on_every_edge_as_from_the_server(self) -> None:
        columbia = self.server.login("columbia")
        seas = self.server.login("seas")
        google = logged_in(self.server, "google")
        seas.send("whoelse")
        seas.read()
        columbia.send("announce restart at noon")
        self.assertEqual(
            columbia.read(),
            "*** Announcement from the server: restart at noon\r\nAnnounced to 3 users here.\r\nCommand: ",
        )
        self.assertEqual(seas.read(), "\r\n*** Announcement from the server: restart at noon\r\n")
        [shown] = google.read()
        self.assertEqual(shown["type"], "announcement")
        self.assertEqual(shown["text"], "restart at noon")
        self.assertNotIn("from", shown)  # not from a user

    def test_an_announcement_comes_after_what_was_sent_before_it(self) -> None:
        columbia = self.server.login("columbia")
        seas = self.server.login("seas")
        columbia.send("broadcast message first", "announce second")
        text = seas.read()
        self.assertLess(text.index("first"), text.index("second"))

    def test_an_announcement_is_one_line_of_the_log(self) -> None:
        columbia = self.server.login("columbia")
        log = capture_log(self, "chat.server.admin")
        columbia.send("announce restart at noon")
        self.assertEqual([formatEvent(e) for e in log], ["admin columbia announced: restart at noon"])

    def test_an_announcement_with_characters_nobody_may_send_is_refused_like_a_message(self) -> None:
        columbia = self.server.login("columbia")
        seas = self.server.login("seas")
        columbia.send("announce hi\u202eereht")
        self.assertIn("change the direction of text", columbia.read())
        self.assertEqual(seas.read(), "")

    def test_an_announcement_counts_as_one_message_and_a_delivery_per_user(self) -> None:
        columbia = self.server.login("columbia")
        self.server.login("seas")
        columbia.send("announce hello")
        counters = self.server.service.counters
        self.assertEqual(counters.messages["announcement"], 1)
        self.assertEqual(counters.deliveries, 2)
