"""
A stored message leaves the store only once its recipient has shown they
got it: on a terminal, the next line they type (or a clean logout); on the
JSON protocol, an C{ack}.  A connection that drops before that gets the
messages again at the next login.  In the in-memory harness, both edges.
"""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from chat.server.events import Delivery, Kind
from chat.server.session import MAX_UNACKED
from tests.unit.harness import Connection, Harness
from tests.unit.test_web_edge import Browser


def kept_for(server: Harness, name: str) -> list[str]:
    """The texts still in the store for C{name}."""
    return [m.delivery.text for m in server.successResultOf(server.store.offline_for(name))]  # type: ignore[attr-defined]


class Kept(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness(tokens=True)
        self.server.successResultOf = self.successResultOf  # type: ignore[attr-defined]
        columbia = self.server.login("columbia")
        columbia.send("message seas one", "message seas two")
        columbia.read()

    def store(self, name: str, text: str, message_id: str) -> None:
        delivery = Delivery("columbia", text, Kind.PRIVATE, self.server.clock.seconds(), message_id, (name,))
        self.successResultOf(self.server.store.save_offline([name], delivery))


class TerminalTests(Kept):
    def test_shown_messages_stay_until_the_next_line(self) -> None:
        seas = self.server.login("seas")
        self.assertEqual(kept_for(self.server, "seas"), ["one", "two"])
        seas.send("whoelse")
        self.assertEqual(kept_for(self.server, "seas"), [])

    def test_a_connection_dropped_before_any_line_gets_them_again(self) -> None:
        seas = self.server.login("seas")
        seas.lose()
        seas = self.server.connect()
        seas.send("seas", "summerisover")
        text = seas.read()
        self.assertIn("You have 2 offline messages:", text)
        self.assertIn("columbia (private): one", text)

    def test_a_clean_logout_counts(self) -> None:
        seas = self.server.connect()
        seas.send("seas", "summerisover", "logout")
        self.assertIn("Goodbye, seas!", seas.read())
        self.assertEqual(kept_for(self.server, "seas"), [])

    def test_messages_from_another_node_are_shown_at_once_and_kept_until_a_line(self) -> None:
        seas = self.server.login("seas")
        seas.send("whoelse")
        seas.read()
        self.store("seas", "from node b", "b-1")
        self.server.service.inbox_ready("seas")
        self.assertEqual(seas.read(), "\r\ncolumbia (private): from node b\r\n")
        self.assertEqual(kept_for(self.server, "seas"), ["from node b"])
        seas.send("")
        self.assertEqual(kept_for(self.server, "seas"), [])

    def test_a_client_that_never_answers_keeps_at_most_a_bound(self) -> None:
        seas = self.server.login("seas")
        seas.send("whoelse")
        for i in range(MAX_UNACKED + 5):
            self.store("seas", f"n{i}", f"b-{i}")
        self.server.service.inbox_ready("seas")
        kept = kept_for(self.server, "seas")
        self.assertEqual(len(kept), MAX_UNACKED)
        self.assertEqual(kept[0], "n5")


class JsonTests(Kept):
    def login(self, name: str) -> tuple[Browser, list[dict[str, Any]]]:
        browser = Browser(self.server)
        browser.read()
        browser.login(name)
        return browser, browser.read()

    def test_offline_messages_stay_until_acknowledged_by_id(self) -> None:
        browser, messages = self.login("seas")
        [offline] = [m for m in messages if m["type"] == "offline"]
        ids = [m["id"] for m in offline["messages"]]
        browser.send(type="whoelse")
        browser.send(type="active")
        self.assertEqual(kept_for(self.server, "seas"), ["one", "two"])
        browser.send(type="ack", ids=ids[:1])
        self.assertEqual(kept_for(self.server, "seas"), ["two"])
        browser.send(type="ack", ids=ids)
        self.assertEqual(kept_for(self.server, "seas"), [])
        self.assertEqual([m["type"] for m in browser.read()], ["roster"])

    def test_an_unacknowledged_replay_comes_again_at_the_next_login(self) -> None:
        browser, _ = self.login("seas")
        browser.lose()
        _, messages = self.login("seas")
        [offline] = [m for m in messages if m["type"] == "offline"]
        self.assertEqual([m["text"] for m in offline["messages"]], ["one", "two"])

    def test_messages_from_another_node_are_marked_stored(self) -> None:
        browser, messages = self.login("seas")
        [offline] = [m for m in messages if m["type"] == "offline"]
        browser.send(type="ack", ids=[m["id"] for m in offline["messages"]])
        self.store("seas", "from node b", "b-1")
        self.server.service.inbox_ready("seas")
        [message] = browser.read()
        self.assertEqual((message["type"], message["id"], message["stored"]), ("message", "b-1", True))
        browser.send(type="ack", ids=["b-1", "not-a-message"])
        self.assertEqual(kept_for(self.server, "seas"), [])

    def test_acks_and_activity_before_login_are_refused(self) -> None:
        browser = Browser(self.server)
        browser.read()
        browser.send(type="ack", ids=["x"])
        browser.send(type="active")
        self.assertEqual([m["code"] for m in browser.read()], ["login_first", "login_first"])


class ActivityTests(unittest.TestCase):
    """A page whose reader is there says so; a page left alone is logged out and can come back."""

    def setUp(self) -> None:
        self.server = Harness(tokens=True)

    def wait(self, browser: Browser, seconds: float) -> None:
        """Let time pass for a browser that answers the server's pings (which are no activity)."""
        for _ in range(int(seconds // 10)):
            self.server.clock.advance(10)
            browser.edge.pongReceived(b"chat")

    def test_active_restarts_the_idle_timer_and_has_no_answer(self) -> None:
        browser = Browser(self.server)
        browser.login("columbia")
        browser.read()
        for _ in range(5):
            self.wait(browser, 1000)
            browser.send(type="active")
        self.assertIn("columbia", self.server.service.registry.online)
        self.assertEqual([m["type"] for m in browser.read() if m["type"] != "session"], [])
        self.wait(browser, 1800)
        self.assertNotIn("columbia", self.server.service.registry.online)

    def test_active_beyond_the_flood_limit_is_refused_without_an_answer(self) -> None:
        """
        The page matches answers to its requests in order: an answer to an
        C{active} would be taken for another request's.
        """
        browser = Browser(self.server)
        browser.login("columbia")
        browser.read()
        for _ in range(30):
            browser.send(type="active")
        self.assertEqual(browser.read(), [])
        browser.send(type="whoelse")
        self.assertEqual([m["code"] for m in browser.read()], ["rate_limited"])

    def test_an_idle_page_gets_a_token_before_its_goodbye_and_comes_back_with_it(self) -> None:
        browser = Browser(self.server)
        browser.login("columbia")
        browser.read()
        self.wait(browser, 1800)
        session, goodbye = browser.read()[-2:]
        self.assertEqual(session["type"], "session")
        self.assertEqual(session["expires"], self.server.clock.seconds() + 86400)
        self.assertEqual(goodbye["reason"], "idle")
        self.assertEqual(browser.wire.closed, [1000])
        browser.lose()
        # Hours later, one click: no password.
        seas = self.server.login("seas")
        seas.send("message columbia while you were out")
        self.server.clock.advance(5 * 3600)
        again = Browser(self.server)
        again.read()
        again.send(type="resume", token=session["token"])
        messages = again.read()
        self.assertEqual(messages[0]["type"], "welcome")
        [offline] = [m for m in messages if m["type"] == "offline"]
        self.assertEqual([m["text"] for m in offline["messages"]], ["while you were out"])

    def test_a_terminal_user_idle_gets_no_token(self) -> None:
        conn: Connection = self.server.login("columbia")
        self.server.clock.advance(1800)
        self.assertEqual(conn.read(), "\r\nLogged out after 30 minutes without a command.\r\n")

    def test_a_logout_revokes_every_token(self) -> None:
        browser = Browser(self.server)
        browser.login("columbia")
        [session] = [m for m in browser.read() if m["type"] == "session"]
        browser.send(type="logout")
        browser.lose()
        again = Browser(self.server)
        again.read()
        again.send(type="resume", token=session["token"])
        self.assertEqual(again.read()[0]["reason"], "expired")
