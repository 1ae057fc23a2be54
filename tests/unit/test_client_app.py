"""
Tests for chat.client.app: the session between a console and the server,
with a recording console, the real protocol over a StringTransport, and a
Clock.
"""

from __future__ import annotations

import time

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from chat.client.app import ChatClient, Phase
from chat.client.protocol import ChatClientProtocol
from tests.unit.console import FakeConsole


class ChatClientTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.connection = ChatClientProtocol(self.clock)
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)
        self.client = ChatClient(self.connection, FakeConsole, self.clock)
        self.console: FakeConsole = self.client.console  # type: ignore[assignment]
        self.client.start()

    def server(self, data: str) -> None:
        self.connection.dataReceived(data.encode("utf-8"))

    def sent(self) -> str:
        sent = self.transport.value().decode("utf-8")
        self.transport.clear()
        return sent

    def log_in(self) -> None:
        self.server("Username: ")
        self.console.app.line_entered("columbia")
        self.server("Password: ")
        self.console.app.line_entered("116bway")
        self.server("Login successful. Welcome to chat, columbia!\r\nCommand: ")
        self.sent()

    def close(self, reason: type[Exception] = ConnectionDone) -> None:
        self.connection.connectionLost(Failure(reason()))

    def status(self) -> int:
        return self.successResultOf(self.client.finished)

    def test_prompts_reach_the_console_and_the_password_is_secret(self) -> None:
        self.log_in()
        self.assertEqual(
            self.console.prompts, [("Username: ", False), ("Password: ", True), ("Command: ", False)]
        )
        self.assertEqual(self.client.phase, Phase.CHATTING)

    def test_lines_typed_go_to_the_server(self) -> None:
        self.server("Username: ")
        self.console.app.line_entered("columbia")
        self.assertEqual(self.sent(), "columbia\n")

    def test_replies_and_messages_are_shown(self) -> None:
        self.log_in()
        self.server("\r\nseas (private): hello\r\n")
        self.assertEqual(
            self.console.shown, ["Login successful. Welcome to chat, columbia!", "seas (private): hello"]
        )

    def test_timestamps_prefix_lines_from_the_server(self) -> None:
        self.client.timestamps = True
        self.clock.advance(1_700_000_000)
        self.server("seas (private): hello\r\nCommand: ")
        stamp = time.strftime("%H:%M", time.localtime(1_700_000_000))
        self.assertEqual(self.console.shown, [f"[{stamp}] seas (private): hello"])
        self.assertEqual(self.console.prompts, [("Command: ", False)])

    def test_typed_logout_logs_out_and_exits_zero(self) -> None:
        self.log_in()
        self.console.app.line_entered("logout")
        self.assertEqual(self.sent(), "logout\n")
        self.server("Goodbye, columbia!\r\n")
        self.assertNoResult(self.client.finished)
        self.close()
        self.assertEqual(self.console.shown[-2:], ["Goodbye, columbia!", "Disconnected."])
        self.assertTrue(self.console.closed)
        self.assertEqual(self.status(), 0)

    def test_logout_in_any_case(self) -> None:
        self.log_in()
        self.console.app.line_entered("  LogOut ")
        self.assertEqual(self.sent(), "logout\n")
        self.assertEqual(self.client.phase, Phase.LEAVING)

    def test_quit_is_a_synonym_for_logout(self) -> None:
        self.log_in()
        self.console.app.line_entered("\\quit")
        self.assertEqual(self.sent(), "logout\n")
        self.close()
        self.assertEqual(self.status(), 0)

    def test_logout_at_the_username_prompt_is_a_username(self) -> None:
        self.server("Username: ")
        self.console.app.line_entered("logout")
        self.assertEqual(self.sent(), "logout\n")
        self.assertEqual(self.client.phase, Phase.LOGGING_IN)

    def test_quit_before_logging_in_closes(self) -> None:
        self.server("Username: ")
        self.console.app.line_entered("\\quit")
        self.assertEqual(self.sent(), "")
        self.assertTrue(self.transport.disconnecting)
        self.close()
        self.assertEqual(self.console.shown, ["Disconnected."])
        self.assertEqual(self.status(), 0)

    def test_quit_at_the_password_prompt_is_a_password(self) -> None:
        self.server("Username: ")
        self.console.app.line_entered("columbia")
        self.server("Password: ")
        self.sent()
        self.console.app.line_entered("\\quit")
        self.assertEqual(self.sent(), "\\quit\n")

    def test_ctrl_c_logs_out(self) -> None:
        self.log_in()
        self.console.app.interrupted()
        self.assertEqual(self.sent(), "logout\n")
        self.server("Goodbye, columbia!\r\n")
        self.close()
        self.assertEqual(self.status(), 0)

    def test_ctrl_d_logs_out(self) -> None:
        self.log_in()
        self.console.app.input_ended()
        self.assertEqual(self.sent(), "logout\n")
        self.close()
        self.assertEqual(self.status(), 0)

    def test_leaving_while_a_command_is_answered_logs_out_at_the_next_prompt(self) -> None:
        self.log_in()
        self.console.app.line_entered("whoelse")
        self.console.app.input_ended()
        self.assertEqual(self.sent(), "whoelse\n")
        self.server("Nobody else is online.\r\nCommand: ")
        self.assertEqual(self.sent(), "logout\n")
        self.assertEqual(self.console.shown[-1], "Nobody else is online.")
        self.assertEqual(self.console.prompts[-1], ("Command: ", False))
        self.assertEqual(len(self.console.prompts), 3)

    def test_leaving_at_the_intro_prompt_keeps_the_intro(self) -> None:
        self.log_in()
        self.console.app.line_entered("personalintro")
        self.server("Please enter your personal introduction:\r\nIntro: ")
        self.sent()
        self.console.app.interrupted()
        self.assertEqual(self.sent(), "\n")
        self.server("Personal introduction unchanged.\r\nCommand: ")
        self.assertEqual(self.sent(), "logout\n")

    def test_leaving_during_the_password_check_closes_if_it_fails(self) -> None:
        self.server("Username: ")
        self.console.app.line_entered("columbia")
        self.server("Password: ")
        self.console.app.line_entered("wrong")
        self.sent()
        self.console.app.interrupted()
        self.server("Invalid username or password.\r\nUsername: ")
        self.assertEqual(self.sent(), "")
        self.assertTrue(self.transport.disconnecting)

    def test_no_goodbye_in_time_closes_anyway(self) -> None:
        self.log_in()
        self.console.app.interrupted()
        self.clock.advance(self.client.goodbye_timeout - 0.5)
        self.assertFalse(self.transport.disconnected)
        self.clock.advance(1)
        self.assertTrue(self.transport.disconnected)
        self.close(ConnectionLost)
        self.assertEqual(self.status(), 0)

    def test_a_second_ctrl_c_stops_waiting(self) -> None:
        self.log_in()
        self.console.app.interrupted()
        self.console.app.interrupted()
        self.assertTrue(self.transport.disconnected)

    def test_lines_after_leaving_are_not_sent(self) -> None:
        self.log_in()
        self.console.app.line_entered("logout")
        self.sent()
        self.console.app.line_entered("whoelse")
        self.assertEqual(self.sent(), "")

    def test_idle_timeout_shows_why_and_exits_one(self) -> None:
        self.log_in()
        self.server("\r\nLogged out after 30 minutes without a command.\r\n")
        self.close()
        self.assertEqual(
            self.console.shown[-2:],
            ["Logged out after 30 minutes without a command.", "Disconnected by the server."],
        )
        self.assertEqual(self.status(), 1)

    def test_server_shutdown_shows_why_and_exits_one(self) -> None:
        self.log_in()
        self.server("\r\nThe server is shutting down. Goodbye.\r\n")
        self.close()
        self.assertEqual(self.console.shown[-2], "The server is shutting down. Goodbye.")
        self.assertEqual(self.status(), 1)

    def test_a_block_shows_why_and_exits_one(self) -> None:
        self.server("Username: ")
        self.console.app.line_entered("columbia")
        self.server("Password: ")
        self.console.app.line_entered("wrong")
        message = (
            "columbia is blocked from your address for 1 minute after too many failed logins. Disconnecting."
        )
        self.server(f"Invalid username or password.\r\n{message}\r\n")
        self.close()
        self.assertEqual(self.console.shown[-2:], [message, "Disconnected by the server."])
        self.assertEqual(self.status(), 1)

    def refused_script(self, reply: str) -> None:
        """A script logs in as columbia, and the server answers C{reply} and asks again."""
        self.console.interactive = False
        self.server("Username: ")
        self.console.app.line_entered("columbia")
        self.server("Password: ")
        self.console.app.line_entered("116bway")
        self.sent()
        self.server(f"{reply}\r\nUsername: ")

    def test_a_refused_login_ends_a_script_and_exits_one(self) -> None:
        """
        The script's next lines were written for a session; sent now they
        would be taken for a username and a password.
        """
        self.refused_script("Invalid username or password.")
        self.assertEqual(self.console.prompts, [("Username: ", False), ("Password: ", True)])
        self.assertEqual(
            self.console.shown,
            ["Invalid username or password.", "Login refused; the rest of the script is not sent."],
        )
        self.console.app.line_entered("whoelse")
        self.assertEqual(self.sent(), "")
        self.assertTrue(self.transport.disconnecting)
        self.close()
        self.assertEqual(self.console.shown[-1], "Disconnected.")
        self.assertEqual(self.status(), 1)

    def test_any_refusal_that_asks_for_the_username_again_ends_a_script(self) -> None:
        self.refused_script("columbia is already logged in; a second session is not allowed.")
        self.assertEqual(self.client.phase, Phase.LEAVING)
        self.assertTrue(self.transport.disconnecting)

    def test_a_script_that_ends_before_logging_in_exits_one(self) -> None:
        self.console.interactive = False
        self.server("Username: ")
        self.console.app.line_entered("columbia")
        self.server("Password: ")
        self.console.app.input_ended()
        self.assertEqual(self.console.shown, ["The input ended before logging in."])
        self.assertTrue(self.transport.disconnecting)
        self.close()
        self.assertEqual(self.status(), 1)

    def test_a_person_who_leaves_before_logging_in_exits_zero(self) -> None:
        self.server("Username: ")
        self.console.app.input_ended()
        self.close()
        self.assertEqual(self.status(), 0)

    def test_a_refused_username_ends_a_script(self) -> None:
        self.console.interactive = False
        self.server("Username: ")
        self.console.app.line_entered("two words")
        self.server("A username is a single word; please try again.\r\nUsername: ")
        self.assertEqual(self.console.prompts, [("Username: ", False)])
        self.assertTrue(self.transport.disconnecting)

    def test_a_person_may_try_again_after_a_refused_login(self) -> None:
        self.server("Username: ")
        self.console.app.line_entered("columbia")
        self.server("Password: ")
        self.console.app.line_entered("wrong")
        self.sent()
        self.server("Invalid username or password.\r\nUsername: ")
        self.assertEqual(self.console.prompts[-1], ("Username: ", False))
        self.console.app.line_entered("columbia")
        self.assertEqual(self.sent(), "columbia\n")
        self.assertFalse(self.transport.disconnecting)

    def test_what_is_typed_to_log_in_is_kept_out_of_the_history(self) -> None:
        """Up at the command prompt must not bring back the username (nor the password)."""
        self.log_in()
        self.assertEqual(self.console.unremembered, ["Username: ", "Password: "])

    def test_a_lost_connection_says_so_and_exits_one(self) -> None:
        self.log_in()
        self.close(ConnectionLost)
        self.assertEqual(self.console.shown[-1], "Disconnected: the connection was lost.")
        self.assertEqual(self.status(), 1)

    def test_the_exit_waits_for_the_console(self) -> None:
        self.console.closing = Deferred()
        self.log_in()
        self.close()
        self.assertNoResult(self.client.finished)
        self.console.closing.callback(None)
        self.assertEqual(self.status(), 1)

    def test_nothing_happens_after_the_close(self) -> None:
        self.log_in()
        self.close()
        shown = list(self.console.shown)
        self.console.app.interrupted()
        self.console.app.input_ended()
        self.console.app.line_entered("whoelse")
        self.assertEqual((self.console.shown, self.sent()), (shown, ""))
