"""
The WebSocket edge over in-memory transports: a L{ChatWebSocket} driven as
Twisted's wire protocol drives it, in the same harness server as TCP users,
with a task.Clock for pings and timeouts.

What the edge writes is read back as a browser reads it, with wsproto's
client side; what a browser sends is handed to the edge as whole messages,
except in the tests of L{_ChatWire}, which feed it real masked frames.
"""

from __future__ import annotations

import json
from typing import Any

import wsproto
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest
from wsproto.events import CloseConnection, Ping, Pong, TextMessage
from wsproto.utilities import RemoteProtocolError

from chat import __version__
from chat.server.commands import Limits
from chat.server.context import Settings
from chat.server.edges import jsonwire
from chat.server.edges.web import MAX_MESSAGE, PING_INTERVAL, ChatWebSocket, ChatWebSocketResource, _ChatWire
from chat.server.twisted_internals import server_bootstrap, wire_connection
from tests.unit.harness import PASSWORDS, Harness, HeldStore

T0 = 1_700_000_000.0
BIDI_REFUSED = (
    "Characters that change the direction of text (such as U+202E) are not allowed; that line was ignored."
)


class FakeWire:
    """
    What the edge uses of Twisted's wire protocol: its transport, C{ping}
    and C{loseConnection}, which are recorded here instead of framed.
    """

    def __init__(self) -> None:
        self.transport = StringTransport()
        self.pings: list[bytes] = []
        self.closed: list[int] = []

    def ping(self, payload: bytes = b"") -> None:
        self.pings.append(payload)

    def loseConnection(self, code: int = 1000) -> None:
        self.closed.append(code)


class Browser:
    """One WebSocket client of the harness server, speaking JSON to a real edge."""

    def __init__(self, server: Harness, host: str = "10.0.0.9", max_backlog: int = 256 * 1024) -> None:
        self.server = server
        self.wire = FakeWire()
        self.transport = self.wire.transport
        self.released = 0
        self.edge = ChatWebSocket(server.context, host, max_backlog, self._release)
        self._reader = wsproto.Connection(wsproto.ConnectionType.CLIENT)
        self.edge.negotiationStarted(self.wire)
        self.edge.negotiationFinished()

    def _release(self) -> None:
        self.released += 1

    def send_text(self, data: str) -> None:
        """One text message, then the rest of the reactor's turn."""
        self.edge.textMessageReceived(data)
        self.server.clock.advance(0)

    def send(self, **fields: Any) -> None:
        self.send_text(json.dumps(fields))

    def raw(self) -> bytes:
        """Every byte written since the last read."""
        data = self.transport.value()
        self.transport.clear()
        return data

    def read(self) -> list[dict[str, Any]]:
        """Every message written since the last read, parsed."""
        self._reader.receive_data(self.raw())
        messages: list[dict[str, Any]] = []
        partial = ""
        for event in self._reader.events():
            assert isinstance(event, TextMessage), event
            partial += event.data
            if event.message_finished:
                messages.append(json.loads(partial))
                partial = ""
        assert partial == "", "a frame was cut short"
        return messages

    def login(self, name: str) -> None:
        self.send(type="login", username=name, password=PASSWORDS[name])

    @property
    def aborted(self) -> bool:
        return bool(self.transport.disconnected)

    def lose(self) -> None:
        self.edge.connectionLost(Failure(ConnectionDone()))


def logged_in(server: Harness, name: str, **kwargs: Any) -> Browser:
    """A browser whose user is logged in, with everything before read."""
    browser = Browser(server, **kwargs)
    browser.login(name)
    messages = browser.read()
    assert messages[-1] == {
        "type": "welcome",
        "name": name,
        "text": f"Login successful. Welcome to chat, {name}!",
    }, messages
    return browser


def error(code: str, text: str, **fields: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "text": text, **fields}


LOGIN_PROMPT = {"type": "prompt", "for": "login"}
INVALID = {"type": "login_refused", "reason": "invalid", "text": "Invalid username or password."}


class LoginTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness()

    def test_hello_comes_first_then_the_login_prompt(self) -> None:
        browser = Browser(self.server)
        self.assertEqual(
            browser.read(),
            [
                {
                    "type": "hello",
                    "protocol": 1,
                    "server": f"chat {__version__}",
                    "idle_timeout": 1800.0,
                    "limits": {"max_message": 500, "max_frame": 4096, "last_hour": 60, "history": 200},
                },
                LOGIN_PROMPT,
            ],
        )

    def test_hello_gives_the_limits_of_this_server(self) -> None:
        server = Harness(settings=Settings(limits=Limits(last_hour=30, max_message=120), history=50))
        [hello, _] = Browser(server).read()
        self.assertEqual(
            hello["limits"], {"max_message": 120, "max_frame": 4096, "last_hour": 30, "history": 50}
        )

    def test_the_edge_is_the_producer_of_its_transport(self) -> None:
        """So the transport tells it when the browser stops reading."""
        browser = Browser(self.server)
        self.assertIs(browser.transport.producer, browser.edge)
        self.assertTrue(browser.transport.streaming)

    def test_the_right_password_is_welcomed(self) -> None:
        browser = Browser(self.server)
        browser.read()
        browser.login("columbia")
        self.assertEqual(
            browser.read(),
            [{"type": "welcome", "name": "columbia", "text": "Login successful. Welcome to chat, columbia!"}],
        )
        self.assertIn("columbia", self.server.service.registry.online)

    def test_a_wrong_password_is_refused_and_a_login_asked_for_again(self) -> None:
        browser = Browser(self.server)
        browser.read()
        browser.send(type="login", username="columbia", password="109bway")
        self.assertEqual(browser.read(), [INVALID, LOGIN_PROMPT])
        self.assertEqual(browser.wire.closed, [])
        browser.login("columbia")
        self.assertEqual(browser.read()[0]["type"], "welcome")

    def test_three_failures_block_the_login_and_close_the_connection(self) -> None:
        browser = Browser(self.server)
        browser.read()
        for password in ("a", "b"):
            browser.send(type="login", username="columbia", password=password)
            self.assertEqual(browser.read(), [INVALID, LOGIN_PROMPT])
        browser.send(type="login", username="columbia", password="c")
        self.assertEqual(
            browser.read(),
            [
                INVALID,
                {
                    "type": "login_refused",
                    "reason": "blocked",
                    "seconds": 60,
                    "text": "columbia is blocked from your address for 60 more seconds "
                    "after too many failed logins. Disconnecting.",
                },
            ],
        )
        self.assertEqual(browser.wire.closed, [1000])

    def test_nothing_is_answered_once_the_connection_is_closing(self) -> None:
        browser = Browser(self.server)
        for password in ("a", "b", "c"):
            browser.send(type="login", username="columbia", password=password)
        browser.read()
        browser.login("columbia")
        browser.send(type="whoelse")
        self.assertEqual(browser.read(), [])
        self.assertNotIn("columbia", self.server.service.registry.online)

    def test_a_connection_still_open_after_the_close_timeout_is_aborted(self) -> None:
        browser = Browser(self.server)
        for password in ("a", "b", "c"):
            browser.send(type="login", username="columbia", password=password)
        self.server.clock.advance(browser.edge.close_timeout - 1)
        self.assertFalse(browser.aborted)
        self.server.clock.advance(1)
        self.assertTrue(browser.aborted)

    def test_offline_messages_follow_the_welcome(self) -> None:
        columbia = self.server.login("columbia")
        columbia.send("message seas hello")
        browser = Browser(self.server)
        browser.read()
        browser.login("seas")
        welcome, offline = browser.read()
        self.assertEqual(welcome["type"], "welcome")
        [message] = offline["messages"]
        self.assertEqual(offline["type"], "offline")
        self.assertEqual(
            (message["from"], message["kind"], message["text"], message["time"]),
            ("columbia", "private", "hello", T0),
        )

    def test_requests_are_held_in_order_while_the_password_is_checked(self) -> None:
        """A browser that sends ahead is answered in order, and the socket is not read meanwhile."""
        server = Harness(hold_logins=True)
        browser = Browser(server)
        browser.read()
        browser.login("columbia")
        browser.send(type="whoelse")
        browser.send(type="help", command="logout")
        browser.send(type="logout")
        self.assertEqual(browser.read(), [])
        self.assertEqual(browser.transport.producerState, "paused")
        server.checker.release()
        self.assertEqual(
            browser.read(),
            [
                {
                    "type": "welcome",
                    "name": "columbia",
                    "text": "Login successful. Welcome to chat, columbia!",
                },
                {"type": "roster", "view": "online", "users": []},
                {
                    "type": "help",
                    "commands": [{"name": "logout", "usage": "logout", "summary": "leave the chat"}],
                    "command": "logout",
                },
                {"type": "goodbye", "reason": "logout", "text": "Goodbye, columbia!"},
            ],
        )
        self.assertEqual(browser.wire.closed, [1000])

    def test_messages_waiting_for_the_store_and_a_request_after_them_are_answered_in_order(self) -> None:
        store = HeldStore()
        server = Harness(store=store)
        browser = Browser(server)
        browser.login("columbia")
        store.release()
        browser.read()
        browser.send(type="message", to="seas", text="one")
        browser.send(type="message", to="seas", text="two")
        browser.send(type="whoelse")
        self.assertEqual(len(store.waiting), 2, "both messages went to the store at once")
        self.assertEqual(browser.read(), [])
        store.release()
        answers = browser.read()
        self.assertEqual([a["type"] for a in answers], ["receipt", "receipt", "roster"], answers)
        self.assertEqual([a["stored"] for a in answers[:2]], [["seas"], ["seas"]], answers)

    def test_held_requests_after_a_failed_login_are_answered_in_order(self) -> None:
        server = Harness(hold_logins=True)
        browser = Browser(server)
        browser.read()
        browser.send(type="login", username="columbia", password="109bway")
        browser.send(type="whoelse")
        browser.login("columbia")
        server.checker.release()
        self.assertEqual(
            browser.read(),
            [
                INVALID,
                LOGIN_PROMPT,
                error("login_first", 'Log in first: send a "login" message.', field="type"),
            ],
        )
        self.assertEqual(browser.transport.producerState, "paused")
        server.checker.release()
        self.assertEqual(browser.read()[0]["type"], "welcome")
        self.assertEqual(browser.transport.producerState, "producing")

    def test_a_command_before_login_is_refused_with_login_first(self) -> None:
        browser = Browser(self.server)
        browser.read()
        browser.send(type="whoelse")
        self.assertEqual(
            browser.read(), [error("login_first", 'Log in first: send a "login" message.', field="type")]
        )

    def test_lines_before_login_are_the_answers_to_the_prompts(self) -> None:
        """C{line} is typing at the current prompt, as over TCP."""
        browser = Browser(self.server)
        browser.read()
        browser.send(type="line", text="columbia")
        self.assertEqual(browser.read(), [])
        browser.send(type="line", text="116bway")
        self.assertEqual(browser.read()[0]["type"], "welcome")

    def test_a_second_login_after_the_welcome_is_refused_as_not_now(self) -> None:
        browser = logged_in(self.server, "columbia")
        browser.login("seas")
        self.assertEqual(
            browser.read(),
            [error("not_now", "You are logged in already; that login was ignored.", field="type")],
        )
        self.assertNotIn("seas", self.server.service.registry.online)

    def test_a_login_refused_for_the_characters_of_its_username_can_be_retried(self) -> None:
        browser = Browser(self.server)
        browser.read()
        browser.send(type="login", username="colu\u202embia", password="116bway")
        self.assertEqual(browser.read(), [error("direction_controls", BIDI_REFUSED), LOGIN_PROMPT])
        browser.login("columbia")
        self.assertEqual(browser.read()[0]["type"], "welcome")

    def test_a_login_refused_for_the_characters_of_its_password_can_be_retried(self) -> None:
        """
        A browser sends the username and password together: a refused
        password must not leave the session waiting for a password alone,
        where every later login would be refused as if logged in already.
        """
        browser = Browser(self.server)
        browser.read()
        browser.send(type="login", username="columbia", password="116\x07bway")
        self.assertEqual(
            browser.read()[0],
            error("control_characters", "Control characters are not allowed; that line was ignored."),
        )
        browser.login("columbia")
        self.assertEqual(
            browser.read()[0],
            {"type": "welcome", "name": "columbia", "text": "Login successful. Welcome to chat, columbia!"},
        )

    def test_the_login_timeout_says_goodbye_and_closes(self) -> None:
        server = Harness(settings=Settings(login_timeout=30))
        browser = Browser(server)
        browser.read()
        server.clock.advance(30)
        self.assertEqual(
            browser.read(),
            [
                {
                    "type": "goodbye",
                    "reason": "login_timeout",
                    "text": "Login timed out after 30 seconds. Disconnecting.",
                }
            ],
        )
        self.assertEqual(browser.wire.closed, [1000])


class BadMessageTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness()
        self.browser = logged_in(self.server, "columbia")

    def test_a_message_that_is_not_json_is_refused_and_the_session_goes_on(self) -> None:
        self.browser.send_text("whoelse")
        self.assertEqual(
            self.browser.read(), [error("bad_json", "That message is not JSON; it was ignored.")]
        )
        self.browser.send(type="whoelse")
        self.assertEqual(self.browser.read(), [{"type": "roster", "view": "online", "users": []}])

    def test_a_binary_message_is_refused(self) -> None:
        self.browser.edge.bytesMessageReceived(b'{"type": "whoelse"}')
        self.assertEqual(
            self.browser.read(), [error("binary", "Binary messages are not accepted; send JSON text.")]
        )

    def test_a_command_error_is_the_one_a_typed_line_gets(self) -> None:
        self.browser.send(type="wholast", minutes=61)
        self.assertEqual(
            self.browser.read(),
            [
                error(
                    "bad_usage",
                    "61 is more than 60 minutes. Usage: wholast N   (N = minutes, 0 to 60)",
                    command="wholast",
                    problem="too_many_minutes",
                    usage="wholast N   (N = minutes, 0 to 60)",
                    number=61,
                    limit=60,
                )
            ],
        )


class ConversationTests(unittest.TestCase):
    """A terminal user and a browser user in one chat."""

    def setUp(self) -> None:
        self.server = Harness()
        self.seas = self.server.login("seas")
        self.browser = logged_in(self.server, "columbia")

    def assertMessage(self, message: dict[str, Any], sender: str, kind: str, text: str) -> None:
        self.assertEqual(
            message,
            {
                "type": "message",
                "id": message.get("id"),
                "from": sender,
                "kind": kind,
                "text": text,
                "time": T0,
            },
        )
        self.assertTrue(message["id"])

    def test_a_browser_sends_a_private_message_to_a_terminal(self) -> None:
        self.browser.send(type="message", to="seas", text="hi")
        self.assertEqual(self.seas.read(), "\r\ncolumbia (private): hi\r\n")
        [receipt] = self.browser.read()
        self.assertTrue(receipt.pop("id"))
        self.assertEqual(
            receipt,
            {"type": "receipt", "delivered": ["seas"], "stored": [], "time": T0, "text": "Sent to seas."},
        )

    def test_a_terminal_sends_a_private_message_to_a_browser(self) -> None:
        self.seas.send("message columbia mo mo da!")
        self.assertEqual(self.seas.read(), "Sent to columbia.\r\nCommand: ")
        [message] = self.browser.read()
        self.assertMessage(message, "seas", "private", "mo mo da!")

    def test_a_browser_broadcasts_to_a_terminal(self) -> None:
        self.browser.send(type="broadcast", text="cao cao da!!")
        self.assertEqual(self.seas.read(), "\r\ncolumbia (broadcast): cao cao da!!\r\n")
        [receipt] = self.browser.read()
        self.assertTrue(receipt.pop("id"))
        self.assertEqual(
            receipt, {"type": "receipt", "broadcast": 1, "time": T0, "text": "Broadcast to 1 user."}
        )

    def test_a_terminal_broadcasts_to_a_browser(self) -> None:
        self.seas.send("broadcast message cao cao da!!")
        self.assertEqual(self.seas.read(), "Broadcast to 1 user.\r\nCommand: ")
        [message] = self.browser.read()
        self.assertMessage(message, "seas", "broadcast", "cao cao da!!")

    def test_a_browser_messages_several_users_at_once(self) -> None:
        google = self.server.login("google")
        self.browser.read()
        self.browser.send(type="message", to=["seas", "google", "facebook"], text="hi all")
        self.assertEqual(self.seas.read(), "\r\ncolumbia (broadcast): hi all\r\n")
        self.assertEqual(google.read(), "\r\ncolumbia (broadcast): hi all\r\n")
        [receipt] = self.browser.read()
        self.assertEqual(receipt["delivered"], ["seas", "google"])
        self.assertEqual(receipt["stored"], ["facebook"])

    def test_whoelse_lists_the_users_of_every_edge(self) -> None:
        other = logged_in(self.server, "google")
        self.browser.read()
        self.browser.send(type="whoelse")
        self.assertEqual(
            self.browser.read(),
            [
                {
                    "type": "roster",
                    "view": "online",
                    "users": [
                        {"name": "google", "intro": None, "online": True, "last_seen": None},
                        {"name": "seas", "intro": None, "online": True, "last_seen": None},
                    ],
                }
            ],
        )
        self.seas.send("whoelse")
        self.assertEqual(self.seas.read(), "Online now (2):\r\n  columbia\r\n  google\r\nCommand: ")
        del other


class PresenceTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness()

    def test_a_browser_is_told_when_a_terminal_user_comes_and_goes(self) -> None:
        browser = logged_in(self.server, "columbia")
        seas = self.server.login("seas")
        self.assertEqual(
            browser.read(), [{"type": "presence", "name": "seas", "online": True, "time": T0, "intro": None}]
        )
        self.server.clock.advance(60)
        seas.send("logout")
        self.assertEqual(
            browser.read(),
            [{"type": "presence", "name": "seas", "online": False, "time": T0 + 60, "intro": None}],
        )

    def test_a_terminal_is_not_told_when_a_browser_user_comes_or_goes(self) -> None:
        seas = self.server.login("seas")
        browser = logged_in(self.server, "columbia")
        browser.send(type="logout")
        browser.lose()
        self.assertEqual(seas.read(), "")

    def test_a_user_is_not_told_of_their_own_login(self) -> None:
        browser = Browser(self.server)
        browser.read()
        browser.login("columbia")
        self.assertEqual([m["type"] for m in browser.read()], ["welcome"])

    def test_presence_carries_the_intro(self) -> None:
        browser = logged_in(self.server, "columbia")
        seas = self.server.login("seas")
        seas.send("personalintro summer is over")
        seas.send("logout")
        browser.read()
        other = self.server.login("seas")
        [presence] = browser.read()
        self.assertEqual(presence["intro"], "summer is over")
        del other

    def test_a_new_intro_is_shown_to_the_browsers_at_once(self) -> None:
        browser = logged_in(self.server, "columbia")
        seas = self.server.login("seas")
        browser.read()
        seas.send("personalintro autumn now")
        [presence] = browser.read()
        self.assertEqual(
            presence, {"type": "presence", "name": "seas", "online": True, "time": T0, "intro": "autumn now"}
        )

    def test_a_browser_that_drops_is_announced_to_the_other_browsers(self) -> None:
        watcher = logged_in(self.server, "columbia")
        leaver = logged_in(self.server, "google")
        watcher.read()
        leaver.lose()
        self.assertEqual(
            watcher.read(),
            [{"type": "presence", "name": "google", "online": False, "time": T0, "intro": None}],
        )


class FanOutTests(unittest.TestCase):
    """A message to many browsers is one frame, built once, written to each."""

    def setUp(self) -> None:
        self.server = Harness()
        self.rendered: list[object] = []
        original = jsonwire.JsonFormat.delivery

        def counting(fmt: jsonwire.JsonFormat, d: Any) -> bytes:
            self.rendered.append(d)
            return original(fmt, d)

        self.patch(jsonwire.JsonFormat, "delivery", counting)
        self.browsers = [logged_in(self.server, name) for name in ("google", "facebook", "csee4119")]
        for browser in self.browsers:
            browser.read()

    def test_a_broadcast_to_several_browsers_is_rendered_once(self) -> None:
        seas = self.server.login("seas")
        for browser in self.browsers:
            browser.read()
        seas.send("broadcast message hi all")
        self.assertEqual(len(self.rendered), 1)
        frames = [browser.raw() for browser in self.browsers]
        self.assertEqual(frames, [frames[0]] * 3)
        [message] = jsonwire_messages(frames[0])
        self.assertEqual((message["from"], message["kind"], message["text"]), ("seas", "broadcast", "hi all"))

    def test_a_browsers_broadcast_is_rendered_once_and_not_sent_back(self) -> None:
        sender, *others = self.browsers
        sender.send(type="broadcast", text="hi all")
        self.assertEqual(len(self.rendered), 1)
        self.assertEqual([m["type"] for m in sender.read()], ["receipt"])
        for browser in others:
            self.assertEqual([m["text"] for m in browser.read()], ["hi all"])

    def test_a_message_to_several_browsers_is_rendered_once(self) -> None:
        seas = self.server.login("seas")
        seas.send("broadcast user google facebook csee4119 message hi you three")
        self.assertEqual(len(self.rendered), 1)


def jsonwire_messages(data: bytes) -> list[dict[str, Any]]:
    reader = wsproto.Connection(wsproto.ConnectionType.CLIENT)
    reader.receive_data(data)
    return [json.loads(e.data) for e in reader.events() if isinstance(e, TextMessage)]


class RefusedTextTests(unittest.TestCase):
    """Structured requests are held to the same rules as typed lines."""

    def setUp(self) -> None:
        self.server = Harness()
        self.seas = self.server.login("seas")
        self.browser = logged_in(self.server, "columbia")

    def test_control_characters_in_a_message_are_refused_and_nothing_is_sent(self) -> None:
        self.browser.send(type="message", to="seas", text="\x1b[2Jgotcha")
        self.assertEqual(
            self.browser.read(),
            [error("control_characters", "Control characters are not allowed; that line was ignored.")],
        )
        self.assertEqual(self.seas.read(), "")

    def test_a_direction_override_in_a_broadcast_is_refused_and_nothing_is_sent(self) -> None:
        self.browser.send(type="broadcast", text="hello \u202egnp.exe")
        self.assertEqual(self.browser.read(), [error("direction_controls", BIDI_REFUSED)])
        self.assertEqual(self.seas.read(), "")

    def test_a_direction_control_in_a_recipients_name_is_refused(self) -> None:
        self.browser.send(type="message", to=["seas", "goo\u2067gle"], text="hi")
        self.assertEqual(self.browser.read(), [error("direction_controls", BIDI_REFUSED)])
        self.assertEqual(self.seas.read(), "")

    def test_a_direction_isolate_in_an_intro_is_refused(self) -> None:
        self.browser.send(type="intro", text="\u2067evil\u2069")
        self.assertEqual(self.browser.read(), [error("direction_controls", BIDI_REFUSED)])
        self.assertNotIn("columbia", self.server.service.intros)

    def test_a_lone_surrogate_in_a_message_is_refused_as_text_that_is_not_utf8(self) -> None:
        """
        JSON can escape half of a UTF-16 pair (C{\\ud800}); such a string
        has no UTF-8 form, so no edge can show it.  It is refused as the TCP
        edge refuses bytes that are not UTF-8, not failed on as a server error.
        """
        self.browser.send_text('{"type": "message", "to": "seas", "text": "a\\ud800b"}')
        self.assertEqual(
            self.browser.read(), [error("not_utf8", "That line is not valid UTF-8 text; it was ignored.")]
        )
        self.assertEqual(self.seas.read(), "")

    def test_a_lone_surrogate_in_a_broadcast_is_refused_without_raising(self) -> None:
        """
        A broadcast is rendered when the read is done, for everyone at once:
        one that cannot be rendered must be refused before, not raise out of
        the edge into the wire protocol (which drops the connection).
        """
        self.browser.send_text('{"type": "broadcast", "text": "a\\ud800b"}')
        self.assertEqual(
            self.browser.read(), [error("not_utf8", "That line is not valid UTF-8 text; it was ignored.")]
        )
        self.assertEqual(self.seas.read(), "")

    def test_a_lone_surrogate_to_an_offline_user_is_not_kept(self) -> None:
        """
        Kept, it could never be shown: the recipient's offline messages and
        both users' histories would fail to render from then on.
        """
        self.browser.send_text('{"type": "message", "to": "google", "text": "a\\ud800b"}')
        [answer] = self.browser.read()
        self.assertEqual(answer["type"], "error")
        self.assertEqual(self.successResultOf(self.server.store.offline_for("google")), [])
        self.browser.send(type="history")
        self.assertEqual(self.browser.read(), [{"type": "history", "messages": []}])


class PingTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness()
        self.browser = logged_in(self.server, "columbia")

    def test_a_ping_is_sent_after_one_interval(self) -> None:
        self.server.clock.advance(PING_INTERVAL - 1)
        self.assertEqual(self.browser.wire.pings, [])
        self.server.clock.advance(1)
        self.assertEqual(self.browser.wire.pings, [b"chat"])

    def test_a_pong_keeps_the_connection_open(self) -> None:
        for n in range(1, 4):
            self.server.clock.advance(PING_INTERVAL)
            self.assertEqual(len(self.browser.wire.pings), n)
            self.browser.edge.pongReceived(b"chat")
        self.assertFalse(self.browser.aborted)

    def test_a_pong_missed_by_the_next_interval_aborts_the_connection(self) -> None:
        self.server.clock.advance(PING_INTERVAL)
        self.server.clock.advance(PING_INTERVAL - 1)
        self.assertFalse(self.browser.aborted)
        self.server.clock.advance(1)
        self.assertTrue(self.browser.aborted)
        self.assertEqual(self.browser.wire.pings, [b"chat"])

    def test_no_pings_once_the_connection_is_lost(self) -> None:
        self.browser.lose()
        self.server.clock.advance(PING_INTERVAL * 3)
        self.assertEqual(self.browser.wire.pings, [])
        self.assertFalse(self.browser.aborted)


class SlowReaderTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness(settings=Settings(rate=1000, burst=1000))
        self.sender = self.server.login("seas")

    def test_a_browser_that_stops_reading_is_cut_off_past_the_bound(self) -> None:
        browser = logged_in(self.server, "columbia", max_backlog=2000)
        # The kernel buffer is full: the transport asks its producer to pause.
        browser.edge.pauseProducing()
        for i in range(100):
            self.sender.send(f"message columbia {'z' * 100} {i}")
            if browser.aborted:
                break
        self.assertTrue(browser.aborted, "the slow reader was not cut off")
        self.assertGreater(i, 5)
        self.assertLess(i, 20)
        self.assertFalse(self.sender.closing)

    def test_nothing_more_is_written_once_cut_off(self) -> None:
        browser = logged_in(self.server, "columbia", max_backlog=500)
        browser.edge.pauseProducing()
        for _ in range(100):
            self.sender.send("broadcast message " + "z" * 100)
            if browser.aborted:
                break
        self.assertTrue(browser.aborted, "the slow reader was not cut off")
        written = len(browser.transport.value())
        self.sender.send("message columbia more")
        self.sender.send("broadcast message more")
        self.server.login("google")
        self.assertEqual(len(browser.transport.value()), written)

    def test_a_browser_that_catches_up_is_not_cut_off(self) -> None:
        browser = logged_in(self.server, "columbia", max_backlog=2000)
        for _ in range(20):
            browser.edge.pauseProducing()
            for i in range(5):
                self.sender.send(f"message columbia {'z' * 100} {i}")
            browser.edge.resumeProducing()
            browser.read()
        self.assertFalse(browser.aborted)

    def test_a_browser_that_reads_is_never_cut_off(self) -> None:
        browser = logged_in(self.server, "columbia", max_backlog=500)
        for i in range(50):
            self.sender.send(f"message columbia {'z' * 100} {i}")
        self.assertFalse(browser.aborted)
        self.assertEqual(len(browser.read()), 50)


class ConnectionLostTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness()

    def test_losing_the_connection_releases_it_once_and_logs_the_user_out(self) -> None:
        browser = logged_in(self.server, "columbia")
        self.assertEqual(browser.released, 0)
        browser.lose()
        self.assertEqual(browser.released, 1)
        self.assertNotIn("columbia", self.server.service.registry.online)
        self.assertNotIn(browser.edge.session, self.server.service.sessions)

    def test_a_connection_lost_before_login_is_released(self) -> None:
        browser = Browser(self.server)
        browser.lose()
        self.assertEqual(browser.released, 1)
        self.assertEqual(self.server.service.sessions, set())

    def test_a_connection_that_closes_in_time_is_not_aborted(self) -> None:
        browser = logged_in(self.server, "columbia")
        browser.send(type="logout")
        self.assertEqual(browser.wire.closed, [1000])
        browser.lose()
        self.server.clock.advance(browser.edge.close_timeout)
        self.assertFalse(browser.aborted)
        self.assertEqual(browser.released, 1)

    def test_the_user_can_log_in_again_after_a_lost_connection(self) -> None:
        logged_in(self.server, "columbia").lose()
        logged_in(self.server, "columbia")


class RecordingEdge:
    """What L{_ChatWire} hands to its edge, recorded."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.too_big = 0

    def negotiationStarted(self, transport: Any) -> None:
        pass

    def textMessageReceived(self, message: str) -> None:
        self.messages.append(message)

    def bytesMessageReceived(self, data: bytes) -> None:
        raise AssertionError("no binary messages here")

    def message_too_big(self) -> None:
        self.too_big += 1


def client_frame(message: str) -> bytes:
    """The bytes of one masked text frame, as a browser sends it."""
    return wsproto.Connection(wsproto.ConnectionType.CLIENT).send(TextMessage(data=message))


def pieces(data: bytes, n: int) -> list[bytes]:
    size = -(-len(data) // n)
    return [data[i : i + size] for i in range(0, len(data), size)]


class WireTests(unittest.TestCase):
    """The bound on one message's size, counted as its parts arrive."""

    def setUp(self) -> None:
        self.edge = RecordingEdge()
        self.wire = _ChatWire(wsproto.Connection(wsproto.ConnectionType.SERVER), server_bootstrap, self.edge)
        self.wire.makeConnection(StringTransport())

    def test_a_message_over_the_limit_in_two_parts_is_refused_not_delivered(self) -> None:
        first, second = pieces(client_frame("x" * 5000), 2)
        self.wire.dataReceived(first)
        self.assertEqual((self.edge.too_big, self.edge.messages), (0, []))
        self.wire.dataReceived(second)
        self.assertEqual((self.edge.too_big, self.edge.messages), (1, []))

    def test_a_message_under_the_limit_in_three_parts_is_delivered_whole_once(self) -> None:
        message = "".join(chr(ord("a") + i % 26) for i in range(4000))
        for part in pieces(client_frame(message), 3):
            self.wire.dataReceived(part)
        self.assertEqual(self.edge.messages, [message])
        self.assertEqual(self.edge.too_big, 0)

    def test_a_message_of_exactly_the_limit_is_delivered(self) -> None:
        self.wire.dataReceived(client_frame("x" * MAX_MESSAGE))
        self.assertEqual(self.edge.messages, ["x" * MAX_MESSAGE])

    def test_the_limit_is_per_message_not_per_connection(self) -> None:
        for part in pieces(client_frame("a" * 4000) + client_frame("b" * 4000), 5):
            self.wire.dataReceived(part)
        self.assertEqual(self.edge.messages, ["a" * 4000, "b" * 4000])
        self.assertEqual(self.edge.too_big, 0)

    def test_the_limit_counts_utf8_bytes_not_characters(self) -> None:
        """2100 characters of two bytes each: 4200 bytes, over the limit."""
        for part in pieces(client_frame("é" * 2100), 2):
            self.wire.dataReceived(part)
        self.assertEqual((self.edge.too_big, self.edge.messages), (1, []))

    def test_a_message_in_fragments_is_counted_whole(self) -> None:
        client = wsproto.Connection(wsproto.ConnectionType.CLIENT)
        data = b"".join(
            client.send(TextMessage(data="x" * 3000, message_finished=finished)) for finished in (False, True)
        )
        self.wire.dataReceived(data)
        self.assertEqual((self.edge.too_big, self.edge.messages), (1, []))


class WireToEdgeTests(unittest.TestCase):
    def test_a_message_over_the_limit_gets_one_error_and_a_close(self) -> None:
        server = Harness()
        transport = StringTransport()
        edge = ChatWebSocket(server.context, "10.0.0.9", 256 * 1024, lambda: None)
        wire = _ChatWire(wsproto.Connection(wsproto.ConnectionType.SERVER), server_bootstrap, edge)
        wire.makeConnection(transport)
        edge.negotiationFinished()
        transport.clear()
        for part in pieces(client_frame("x" * 10_000), 4):
            wire.dataReceived(part)
        reader = wsproto.Connection(wsproto.ConnectionType.CLIENT)
        reader.receive_data(transport.value())
        received = list(reader.events())
        self.assertEqual(len(received), 2, received)
        message, close = received
        assert isinstance(message, TextMessage) and isinstance(close, CloseConnection)
        self.assertEqual(
            json.loads(message.data),
            error("message_too_big", "That message is longer than 4096 bytes; the connection is closed."),
        )
        self.assertEqual(close.code, 1009)  # RFC 6455: message too big
        self.assertTrue(transport.disconnecting)


def raw_frame(opcode: int, payload: bytes, key: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    """One masked client frame built by hand, as wsproto would not build an invalid one."""
    assert len(payload) < 126
    return (
        bytes([0x80 | opcode, 0x80 | len(payload)])
        + key
        + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    )


#: A text frame whose payload is not UTF-8.
NOT_UTF8 = raw_frame(0x1, b"\xff\xfe not utf-8")


class WireCloseTests(unittest.TestCase):
    """
    The edge over the real wire protocol, once either side has closed:
    what the peer sends after the server's close frame is not answered,
    and nothing wsproto refuses escapes as an exception.
    """

    def setUp(self) -> None:
        self.server = Harness()
        self.transport = StringTransport()
        self.edge = ChatWebSocket(self.server.context, "10.0.0.9", 256 * 1024, lambda: None)
        self.wire = _ChatWire(wsproto.Connection(wsproto.ConnectionType.SERVER), server_bootstrap, self.edge)
        self.wire.makeConnection(self.transport)
        self.edge.negotiationFinished()
        self.client = wsproto.Connection(wsproto.ConnectionType.CLIENT)

    def text(self, message: dict[str, Any]) -> bytes:
        return self.client.send(TextMessage(json.dumps(message)))

    def login(self, password: str, name: str = "columbia") -> bytes:
        return self.text({"type": "login", "username": name, "password": password})

    def received(self) -> list[Any]:
        reader = wsproto.Connection(wsproto.ConnectionType.CLIENT)
        reader.receive_data(self.transport.value())
        return list(reader.events())

    def assertClosedWithoutAnAnswerAfterTheClose(self) -> None:
        events = self.received()
        closes = [i for i, e in enumerate(events) if isinstance(e, CloseConnection)]
        self.assertEqual(len(closes), 1, events)
        self.assertEqual(events[closes[0] + 1 :], [])
        self.assertNotIn(Pong, [type(e) for e in events])
        self.assertTrue(self.transport.disconnecting)

    def test_a_ping_and_a_bad_frame_in_the_read_of_the_third_wrong_login(self) -> None:
        """Before: wsproto raised LocalProtocolError, answering the ping after the close."""
        self.wire.dataReceived(
            b"".join(self.login(p) for p in ("a", "b", "c")) + self.client.send(Ping(b"race")) + NOT_UTF8
        )
        self.assertClosedWithoutAnAnswerAfterTheClose()

    def test_a_bad_frame_alone_after_the_third_wrong_login(self) -> None:
        """Before: LocalProtocolError, answering wsproto's close for the bad frame after the server's."""
        self.wire.dataReceived(b"".join(self.login(p) for p in ("a", "b", "c")) + NOT_UTF8)
        self.assertClosedWithoutAnAnswerAfterTheClose()

    def test_a_ping_after_a_logout(self) -> None:
        self.wire.dataReceived(self.login(PASSWORDS["columbia"]) + self.text({"type": "logout"}))
        self.wire.dataReceived(self.client.send(Ping(b"late")) + NOT_UTF8)
        self.assertClosedWithoutAnAnswerAfterTheClose()

    def test_bytes_after_the_closing_handshake_are_ignored(self) -> None:
        """Before: wsproto raised LocalProtocolError, asked to read on a closed connection."""
        self.wire.dataReceived(self.text({"type": "logout"}))
        self.wire.dataReceived(self.client.send(CloseConnection(1000)))
        self.wire.dataReceived(raw_frame(0x9, b"after") + b"garbage")
        self.assertClosedWithoutAnAnswerAfterTheClose()

    def test_no_ping_is_sent_once_the_peer_has_closed(self) -> None:
        """Before: the edge's ping raised in its LoopingCall, and the error was logged."""
        self.wire.dataReceived(self.client.send(CloseConnection(1000)))
        self.server.clock.advance(PING_INTERVAL)
        events = self.received()
        self.assertEqual([type(e) for e in events[2:]], [CloseConnection])
        self.assertTrue(self.transport.disconnecting)

    def test_while_open_a_ping_is_answered_and_a_bad_frame_closes_with_1007(self) -> None:
        self.wire.dataReceived(self.client.send(Ping(b"hello")))
        self.assertEqual([type(e) for e in self.received()[2:]], [Pong])
        self.transport.clear()
        self.wire.dataReceived(NOT_UTF8)
        [close] = self.received()
        assert isinstance(close, CloseConnection)
        self.assertEqual(close.code, 1007)  # RFC 6455: invalid frame payload data
        self.assertTrue(self.transport.disconnecting)

    def test_a_frame_wsproto_refuses_aborts_without_raising(self) -> None:
        def refuse(data: bytes) -> None:
            raise RemoteProtocolError("no")

        self.patch(wire_connection(self.wire), "receive_data", refuse)
        self.wire.dataReceived(b"anything")
        self.assertTrue(self.transport.disconnected)


class Request(DummyRequest):
    """A request for C{/ws} from a page, over HTTP or HTTPS."""

    def __init__(self, host: str, origin: str | None = None, secure: bool = False) -> None:
        super().__init__([b"ws"])
        self.secure = secure
        self.requestHeaders.addRawHeader(b"host", host.encode())
        if origin is not None:
            self.requestHeaders.addRawHeader(b"origin", origin.encode())

    def isSecure(self) -> bool:
        return self.secure


class OriginTests(unittest.TestCase):
    def setUp(self) -> None:
        # The site is chat.local, as --web-host says.
        self.resource = ChatWebSocketResource(
            Harness().context, ["https://Chat.Example.org"], 256 * 1024, hosts=["chat.local"]
        )

    def allowed(self, host: str, origin: str | None = None, secure: bool = False) -> bool:
        request: Any = Request(host, origin, secure)
        return self.resource.allowed(request)

    def test_a_program_without_an_origin_is_allowed(self) -> None:
        self.assertTrue(self.allowed("chat.local:8080"))

    def test_a_page_of_this_site_is_allowed(self) -> None:
        self.assertTrue(self.allowed("chat.local:8080", "http://chat.local:8080"))
        self.assertTrue(self.allowed("chat.local", "https://chat.local", secure=True))

    def test_the_origin_is_compared_without_case_or_a_trailing_slash(self) -> None:
        self.assertTrue(self.allowed("chat.local:8080", "HTTP://Chat.Local:8080/"))

    def test_a_page_of_another_site_is_refused(self) -> None:
        self.assertFalse(self.allowed("chat.local:8080", "http://evil.example"))
        self.assertFalse(self.allowed("chat.local:8080", "http://chat.local:8081"))
        self.assertFalse(self.allowed("chat.local:8080", "null"))

    def test_an_origin_given_with_web_origin_is_allowed(self) -> None:
        self.assertTrue(self.allowed("chat.local:8080", "https://chat.example.org"))

    def test_an_http_page_may_not_use_the_https_sites_socket(self) -> None:
        self.assertFalse(self.allowed("chat.local", "http://chat.local", secure=True))

    def test_an_https_page_may_not_use_the_http_sites_socket(self) -> None:
        self.assertFalse(self.allowed("chat.local", "https://chat.local"))


class HostTests(unittest.TestCase):
    """
    DNS rebinding: a page whose name was rebound to this server's address
    has the site's own origin for the name it uses, so the C{Host} is
    checked too, against what this server is known by.
    """

    def setUp(self) -> None:
        self.resource = ChatWebSocketResource(
            Harness().context, ["https://chat.example.org"], 256 * 1024, hosts=["chat.local"]
        )

    def refusal(self, host: str, origin: str | None = None) -> str | None:
        request: Any = Request(host, origin if origin is not None else f"http://{host}")
        return self.resource.refusal(request)

    def test_a_page_under_a_name_nobody_listed_is_refused(self) -> None:
        """Before: let in, as its origin and its host agree."""
        self.assertEqual(self.refusal("evil.example"), "host")
        self.assertEqual(self.refusal("evil.example:8080"), "host")
        self.assertEqual(self.refusal("chat.local.evil.example"), "host")

    def test_addresses_and_localhost_cannot_be_rebound_and_are_allowed(self) -> None:
        for host in (
            "127.0.0.1:8080",
            "10.1.2.3",
            "[::1]:8080",
            "[2001:db8::1]",
            "localhost",
            "LocalHost:8080",
        ):
            self.assertIsNone(self.refusal(host), host)

    def test_what_is_not_an_address_is_a_name(self) -> None:
        for host in ("127.1", "0x7f.1", "[::1", "[not:an:address]", "a b"):
            self.assertEqual(self.refusal(host), "host", host)

    def test_listed_names_and_the_hosts_of_allowed_origins_are_allowed(self) -> None:
        self.assertIsNone(self.refusal("chat.local:8080"))
        self.assertIsNone(self.refusal("Chat.Example.org"))

    def test_an_allowed_origin_needs_no_host_check(self) -> None:
        self.assertIsNone(self.refusal("backend.internal:8080", "https://chat.example.org"))

    def test_another_origin_is_refused_for_its_origin(self) -> None:
        self.assertEqual(self.refusal("127.0.0.1:8080", "http://evil.example"), "origin")

    def test_a_program_without_an_origin_may_name_any_host(self) -> None:
        request: Any = Request("evil.example")
        self.assertIsNone(self.resource.refusal(request))


class PreLoginWebSocketTests(unittest.TestCase):
    def test_messages_before_login_are_budgeted_like_lines(self) -> None:
        server = Harness()
        browser = Browser(server)
        browser.read()
        for _ in range(30):
            browser.send_text("{}")
        messages = browser.read()
        self.assertEqual([m.get("code") for m in messages[:-1]], ["missing_field"] * 10)
        self.assertEqual(messages[-1]["type"], "goodbye")
        self.assertEqual(browser.wire.closed, [1000])


class ResumeTests(unittest.TestCase):
    """
    A browser that lost its connection comes back with the token it was
    given, without the password; a token works once, and not for ever.
    """

    def setUp(self) -> None:
        self.server = Harness(tokens=True)

    def token_of(self, browser: Browser) -> str:
        [session] = [m for m in browser.read() if m["type"] == "session"]
        self.assertEqual(session["expires"], self.server.clock.seconds() + 900)
        return str(session["token"])

    def first_login(self) -> tuple[Browser, str]:
        browser = Browser(self.server)
        browser.read()
        browser.login("columbia")
        return browser, self.token_of(browser)

    def resume(self, token: str) -> tuple[Browser, list[dict[str, Any]]]:
        browser = Browser(self.server)
        browser.read()
        browser.send(type="resume", token=token)
        return browser, browser.read()

    def test_a_login_is_followed_by_a_token(self) -> None:
        _, token = self.first_login()
        self.assertGreaterEqual(len(token), 40)

    def test_a_token_logs_in_again_without_the_password(self) -> None:
        old, token = self.first_login()
        old.lose()
        _, messages = self.resume(token)
        self.assertEqual(messages[0]["type"], "welcome")
        self.assertEqual(messages[0]["name"], "columbia")
        self.assertEqual([m["type"] for m in messages[1:]], ["session"])
        self.assertNotEqual(messages[1]["token"], token)
        self.assertIn("columbia", self.server.service.registry.online)

    def test_messages_that_arrived_while_away_are_shown_after_the_resume(self) -> None:
        old, token = self.first_login()
        old.lose()
        seas = self.server.login("seas")
        seas.send("message columbia while you were away")
        _, messages = self.resume(token)
        [offline] = [m for m in messages if m["type"] == "offline"]
        self.assertEqual([m["text"] for m in offline["messages"]], ["while you were away"])

    def test_a_token_works_once(self) -> None:
        old, token = self.first_login()
        old.lose()
        self.resume(token)[0].lose()
        browser, messages = self.resume(token)
        self.assertEqual(
            messages,
            [
                {
                    "type": "login_refused",
                    "reason": "reused",
                    "text": "That session was resumed already, perhaps in another tab; please log in again.",
                },
                LOGIN_PROMPT,
            ],
        )
        browser.login("columbia")
        self.assertEqual(browser.read()[0]["type"], "welcome")

    def test_an_expired_token_sends_the_user_to_the_login_form(self) -> None:
        old, token = self.first_login()
        old.lose()
        self.server.clock.advance(901)
        _, messages = self.resume(token)
        self.assertEqual(
            messages,
            [
                {
                    "type": "login_refused",
                    "reason": "expired",
                    "text": "Your session has expired; please log in again.",
                },
                LOGIN_PROMPT,
            ],
        )

    def test_a_token_never_issued_is_refused_as_expired(self) -> None:
        _, messages = self.resume("made-up")
        self.assertEqual(messages[0]["reason"], "expired")

    def test_a_refused_token_counts_no_failed_password(self) -> None:
        for _ in range(5):
            self.resume("made-up")
        browser = Browser(self.server)
        browser.read()
        browser.login("columbia")
        self.assertEqual(browser.read()[0]["type"], "welcome")

    def test_a_fresh_token_comes_before_the_old_one_would_expire_and_replaces_it(self) -> None:
        browser, first = self.first_login()
        self.server.clock.advance(300)
        [fresh] = [m for m in browser.read() if m["type"] == "session"]
        self.assertNotEqual(fresh["token"], first)
        browser.lose()
        _, messages = self.resume(first)
        self.assertEqual(messages[0]["reason"], "expired")

    def test_a_resume_ends_the_older_session_of_the_same_user(self) -> None:
        old, token = self.first_login()
        browser, messages = self.resume(token)
        self.assertEqual(messages[0]["type"], "welcome")
        self.assertEqual(
            old.read(),
            [
                {
                    "type": "goodbye",
                    "reason": "replaced",
                    "text": "You were logged in again from somewhere else; this session is closed.",
                }
            ],
        )
        self.assertIs(self.server.service.registry.online["columbia"], browser.edge)

    def test_a_resumed_session_says_goodbye_by_name(self) -> None:
        old, token = self.first_login()
        old.lose()
        browser, _ = self.resume(token)
        browser.send(type="logout")
        self.assertEqual(browser.read()[-1]["text"], "Goodbye, columbia!")

    def test_a_tcp_user_cannot_resume(self) -> None:
        conn = self.server.connect()
        conn.read()
        conn.send('{"type":"resume","token":"x"}')
        self.assertEqual(conn.read(), "Password: ")

    def test_no_tokens_are_issued_by_a_server_without_them(self) -> None:
        browser = logged_in(Harness(), "columbia")
        self.server.clock.advance(600)
        self.assertEqual([m for m in browser.read() if m["type"] == "session"], [])
