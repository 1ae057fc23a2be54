"""
The session state machine, driven through the real TCP edge over
StringTransports, with a task.Clock for every timer.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from twisted.logger import formatEvent
from twisted.trial import unittest

from chat.server.auth import loggable_name
from chat.server.commands import Limits
from chat.server.context import Settings
from chat.server.edges.tcp import HELD_INPUT
from chat.server.edges.text import describe_duration
from chat.server.events import Delivery, Kind, StoredMessage
from chat.server.limits import Exemptions
from chat.server.session import MAX_IN_FLIGHT
from tests.unit.harness import Connection, Harness, HeldStore, capture_log

BIDI_REFUSED = (
    "Characters that change the direction of text (such as U+202E) are not allowed; that line was ignored."
)


class LoginTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness()

    def test_connection_is_greeted_with_the_username_prompt(self) -> None:
        conn = self.server.connect()
        self.assertEqual(conn.read(), "Username: ")

    def test_right_password_logs_in_with_welcome_and_command_prompt(self) -> None:
        conn = self.server.connect()
        conn.read()
        conn.send("columbia")
        self.assertEqual(conn.read(), "Password: ")
        conn.send("116bway")
        self.assertEqual(conn.read(), "Login successful. Welcome to chat, columbia!\r\nCommand: ")
        self.assertIn("columbia", self.server.service.registry.online)

    def test_wrong_password_and_unknown_user_get_the_same_reply(self) -> None:
        wrong = self.server.connect()
        wrong.send("columbia", "109bway")
        unknown = self.server.connect()
        unknown.send("nobody", "109bway")
        self.assertEqual(wrong.read(), unknown.read())

    def test_failed_login_asks_for_the_username_again(self) -> None:
        conn = self.server.connect()
        conn.read()
        conn.send("columbia", "109bway")
        self.assertEqual(conn.read(), "Password: Invalid username or password.\r\nUsername: ")
        conn.send("columbia", "116bway")
        self.assertIn("Welcome", conn.read())

    def test_a_password_typed_as_a_username_is_not_logged(self) -> None:
        events = capture_log(self)
        conn = self.server.connect()
        conn.send("116bway", "anything")
        conn.send("116bway", "anything")
        conn.send("columbia", "wrong")
        logged = "\n".join(formatEvent(e) for e in events)
        self.assertNotIn("116bway", logged)
        self.assertNotIn("anything", logged)
        # The first failure of the minute is written; the others are counted.
        [unknown] = re.findall(r"failed login for (unknown#[0-9a-f]{10}) from 10.0.0.1", logged)
        self.assertEqual(
            unknown, loggable_name("116bway", self.server.service.users), "the same name, the same hash"
        )
        self.server.clock.advance(60)
        logged = "\n".join(formatEvent(e) for e in events)
        self.assertIn("failed logins: 2 more in the last 60 s, most from 10.0.0.1 (2)", logged)
        self.assertNotIn("116bway", logged)

    def test_a_blocked_unknown_name_is_not_logged_either(self) -> None:
        events = capture_log(self)
        conn = self.server.connect()
        for _ in range(3):
            conn.send("s3cret!", "x")
        conn = self.server.connect()
        conn.send("s3cret!")
        self.assertIn("blocked", conn.read())
        logged = "\n".join(formatEvent(e) for e in events)
        self.assertIn("refused unknown#", logged)
        self.assertNotIn("s3cret", logged)

    def test_blank_username_just_asks_again(self) -> None:
        conn = self.server.connect()
        conn.read()
        conn.send("   ")
        self.assertEqual(conn.read(), "Username: ")

    def test_username_with_spaces_is_refused_without_a_password_prompt(self) -> None:
        conn = self.server.connect()
        conn.read()
        conn.send("colum bia")
        self.assertEqual(conn.read(), "A username is a single word; please try again.\r\nUsername: ")

    def test_max_attempts_failures_block_the_user_and_close(self) -> None:
        conn = self.server.connect()
        conn.send("columbia", "a", "columbia", "b")
        self.assertFalse(conn.closing)
        conn.read()
        conn.send("columbia", "c")
        text = conn.read()
        self.assertIn("blocked", text)
        self.assertIn("for 60 more seconds", text)
        self.assertTrue(conn.closing)

    def test_blocked_user_is_refused_even_with_the_right_password(self) -> None:
        conn = self.server.connect()
        conn.send("columbia", "a", "columbia", "b", "columbia", "c")
        conn.lose()
        self.server.clock.advance(15)
        again = self.server.connect()
        again.read()
        again.send("columbia", "116bway")
        text = again.read()
        self.assertIn("columbia is blocked from your address for 45 more seconds", text)
        self.assertNotIn("Welcome", text)
        self.assertTrue(again.closing)
        self.assertNotIn("columbia", self.server.service.registry.online)

    def test_block_applies_per_address(self) -> None:
        conn = self.server.connect("10.0.0.1")
        conn.send("columbia", "a", "columbia", "b", "columbia", "c")
        other = self.server.connect("10.0.0.2")
        other.send("columbia", "116bway")
        self.assertIn("Welcome", other.read())

    def test_block_applies_per_username(self) -> None:
        conn = self.server.connect()
        conn.send("columbia", "a", "columbia", "b", "columbia", "c")
        other = self.server.connect()
        other.send("seas", "summerisover")
        self.assertIn("Welcome", other.read())

    def test_unknown_usernames_are_blocked_like_known_ones(self) -> None:
        conn = self.server.connect()
        conn.send("ghost", "a", "ghost", "b", "ghost", "c")
        self.assertIn("ghost is blocked", conn.read())

    def test_block_ends_after_block_time(self) -> None:
        conn = self.server.connect()
        conn.send("columbia", "a", "columbia", "b", "columbia", "c")
        self.server.clock.advance(60)
        again = self.server.connect()
        again.send("columbia", "116bway")
        self.assertIn("Welcome", again.read())

    def test_success_resets_the_failure_count(self) -> None:
        conn = self.server.connect()
        conn.send("columbia", "a", "columbia", "b", "columbia", "116bway", "logout")
        again = self.server.connect()
        again.send("columbia", "c", "columbia", "d")
        again.read()
        again.send("columbia", "116bway")
        self.assertIn("Welcome", again.read())

    def test_failures_are_counted_across_connections(self) -> None:
        for password in ("a", "b"):
            conn = self.server.connect()
            conn.send("columbia", password)
            conn.lose()
        conn = self.server.connect()
        conn.send("columbia", "c")
        self.assertIn("blocked", conn.read())

    def test_second_login_of_an_online_user_is_refused_without_counting(self) -> None:
        first = self.server.login("columbia")
        second = self.server.connect()
        second.read()
        for _ in range(5):
            second.send("columbia", "116bway")
        text = second.read()
        self.assertIn("columbia is already logged in; a second session is not allowed.", text)
        self.assertNotIn("blocked", text)
        self.assertFalse(second.closing)
        first.send("whoelse")
        self.assertEqual(first.read(), "Nobody else is online.\r\nCommand: ")

    def test_login_timeout_closes_a_connection_that_never_logs_in(self) -> None:
        server = Harness(settings=Settings(login_timeout=30))
        conn = server.connect()
        conn.read()
        server.clock.advance(29)
        self.assertFalse(conn.closing)
        server.clock.advance(1)
        # The user sits at the prompt, so the reason starts on a fresh line.
        self.assertEqual(conn.read(), "\r\nLogin timed out after 30 seconds. Disconnecting.\r\n")
        self.assertTrue(conn.closing)

    def test_login_timeout_does_not_apply_after_login(self) -> None:
        server = Harness(settings=Settings(login_timeout=30, idle_timeout=600))
        conn = server.login("columbia")
        server.clock.advance(100)
        self.assertFalse(conn.closing)

    def test_pipelined_login_and_commands_are_answered_in_order(self) -> None:
        server = Harness(hold_logins=True)
        conn = server.connect()
        conn.read()
        conn.send("columbia", "116bway", "whoelse", "help logout", "logout")
        # The password check has not finished: nothing after it is answered yet.
        self.assertEqual(conn.read(), "Password: ")
        server.checker.release()
        self.assertEqual(
            conn.read(),
            "Login successful. Welcome to chat, columbia!\r\n"
            "Command: Nobody else is online.\r\n"
            "Command: Usage: logout\r\n  leave the chat\r\n"
            "Command: Goodbye, columbia!\r\n",
        )

    def test_parallel_guesses_are_limited_while_checks_are_running(self) -> None:
        server = Harness(hold_logins=True)
        conns = [server.connect() for _ in range(5)]
        for conn in conns:
            conn.read()
            conn.send("columbia", "guess")
        self.assertEqual(len(server.checker.waiting), 3)
        for conn in conns[3:]:
            self.assertIn("are being checked; please try again in a moment.", conn.read())
        server.checker.release()
        self.assertIn("blocked", conns[2].read())
        self.assertGreater(server.guard.blocked_for("columbia", "10.0.0.1"), 0)

    def test_hanging_up_after_a_guess_still_counts_the_failure(self) -> None:
        server = Harness(hold_logins=True)
        for _ in range(3):
            conn = server.connect()
            conn.send("columbia", "guess")
            conn.lose()
            server.checker.release()
        self.assertGreater(server.guard.blocked_for("columbia", "10.0.0.1"), 0)

    def test_a_block_that_starts_while_typing_the_password_applies(self) -> None:
        slow = self.server.connect()
        slow.send("columbia")
        attacker = self.server.connect()
        attacker.send("columbia", "a", "columbia", "b", "columbia", "c")
        slow.read()
        slow.send("116bway")
        self.assertIn("blocked", slow.read())
        self.assertNotIn("columbia", self.server.service.registry.online)

    def test_connection_lost_during_password_check_does_not_leave_user_online(self) -> None:
        server = Harness(hold_logins=True)
        conn = server.connect()
        conn.send("columbia", "116bway")
        conn.lose()
        server.checker.release()
        self.assertNotIn("columbia", server.service.registry.online)
        again = server.connect()
        again.send("columbia", "116bway")
        server.checker.release()
        self.assertIn("Welcome", again.read())


class CommandTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness()
        self.columbia = self.server.login("columbia")

    def command(self, conn: Connection, line: str) -> str:
        conn.send(line)
        text = conn.read()
        self.assertTrue(text.endswith("Command: "), text)
        return text[: -len("Command: ")]

    def test_whoelse_with_nobody_else(self) -> None:
        self.assertEqual(self.command(self.columbia, "whoelse"), "Nobody else is online.\r\n")

    def test_whoelse_lists_others_with_intros_but_not_me(self) -> None:
        seas = self.server.login("seas")
        self.server.login("google")
        self.command(seas, "personalintro summer is over")
        self.assertEqual(
            self.command(self.columbia, "whoelse"),
            "Online now (2):\r\n  google\r\n  seas    <summer is over>\r\n",
        )

    def test_command_word_is_case_insensitive_and_spaces_are_tolerated(self) -> None:
        self.server.login("seas")
        self.assertIn("seas", self.command(self.columbia, "  WhoElse   "))

    def test_wholast_includes_online_and_recently_departed_users(self) -> None:
        seas = self.server.login("seas")
        google = self.server.login("google")
        self.server.clock.advance(120)
        seas.send("logout")
        seas.lose()
        self.server.clock.advance(9 * 60)
        text = self.command(self.columbia, "wholast 10")
        self.assertIn("Online in the last 10 minutes (2):", text)
        self.assertRegex(text, r"\n  seas +\(offline\)\r\n")
        self.assertIn("google", text)
        self.assertNotIn("columbia", text)
        del google

    def test_wholast_leaves_out_users_gone_longer_than_n_minutes(self) -> None:
        seas = self.server.login("seas")
        seas.send("logout")
        seas.lose()
        self.server.clock.advance(5 * 60 + 1)
        self.assertEqual(
            self.command(self.columbia, "wholast 5"),
            "Nobody else was online in the last 5 minutes.\r\n",
        )
        self.assertIn("seas", self.command(self.columbia, "wholast 6"))

    def test_wholast_zero_lists_only_online_users(self) -> None:
        self.server.login("google")
        seas = self.server.login("seas")
        seas.send("logout")
        seas.lose()
        self.server.clock.advance(1)
        text = self.command(self.columbia, "wholast 0")
        self.assertIn("google", text)
        self.assertNotIn("seas", text)

    def test_wholast_beyond_last_hour_gets_usage(self) -> None:
        text = self.command(self.columbia, "wholast 61")
        self.assertEqual(text, "61 is more than 60 minutes. Usage: wholast N   (N = minutes, 0 to 60)\r\n")

    def test_wholast_limit_follows_the_option(self) -> None:
        server = Harness(settings=Settings(limits=Limits(last_hour=5)))
        conn = server.login("columbia")
        conn.send("wholast 6")
        self.assertIn("0 to 5", conn.read())

    def test_broadcast_reaches_every_other_online_user_but_not_the_sender(self) -> None:
        seas = self.server.login("seas")
        google = self.server.login("google")
        self.assertEqual(
            self.command(self.columbia, "broadcast message cao cao da!!"), "Broadcast to 2 users.\r\n"
        )
        self.assertEqual(seas.read(), "\r\ncolumbia (broadcast): cao cao da!!\r\n")
        self.assertEqual(google.read(), "\r\ncolumbia (broadcast): cao cao da!!\r\n")

    def test_broadcast_with_nobody_online_says_so(self) -> None:
        self.assertEqual(
            self.command(self.columbia, "broadcast message hello?"),
            "Nobody else is online; the broadcast reached no one.\r\n",
        )

    def test_message_to_an_online_user(self) -> None:
        seas = self.server.login("seas")
        self.assertEqual(self.command(self.columbia, "message seas mo mo da!"), "Sent to seas.\r\n")
        self.assertEqual(seas.read(), "\r\ncolumbia (private): mo mo da!\r\n")

    def test_message_to_an_offline_user_is_stored_and_shown_at_login(self) -> None:
        text = self.command(self.columbia, "message seas hello")
        self.assertEqual(text, "seas is offline; the message will be delivered when they next log in.\r\n")
        seas = self.server.connect()
        seas.send("seas", "summerisover")
        self.assertEqual(
            seas.read(),
            "Username: Password: Login successful. Welcome to chat, seas!\r\n"
            "You have 1 offline message:\r\n"
            "[2023-11-14 22:13:20 UTC] columbia (private): hello\r\n"
            "Command: ",
        )

    def test_broadcast_user_delivers_to_online_and_stores_for_offline(self) -> None:
        google = self.server.login("google")
        text = self.command(self.columbia, "broadcast user google seas message hi both")
        self.assertEqual(
            text,
            "Sent to google. seas is offline; the message will be delivered when they next log in.\r\n",
        )
        self.assertEqual(google.read(), "\r\ncolumbia (broadcast): hi both\r\n")
        seas = self.server.connect()
        seas.send("seas", "summerisover")
        self.assertIn("columbia (broadcast): hi both", seas.read())

    def test_broadcast_user_skips_the_sender(self) -> None:
        google = self.server.login("google")
        self.assertEqual(
            self.command(self.columbia, "broadcast user columbia google message hey"),
            "Sent to google.\r\n",
        )
        self.assertEqual(self.columbia.read(), "")
        self.assertIn("hey", google.read())

    def test_unknown_recipient_is_named_with_the_closest_user_and_nothing_is_sent(self) -> None:
        google = self.server.login("google")
        self.assertEqual(
            self.command(self.columbia, "broadcast user google saes message hi"),
            "No user named 'saes'; did you mean 'seas'? Nothing was sent.\r\n",
        )
        self.assertEqual(google.read(), "")
        self.assertEqual(
            self.command(self.columbia, "message zzzzzz hi"), "No user named 'zzzzzz'. Nothing was sent.\r\n"
        )

    def test_message_to_yourself_is_refused(self) -> None:
        self.assertEqual(
            self.command(self.columbia, "message columbia hi me"),
            "That is you; send a message to someone else.\r\n",
        )

    def test_message_longer_than_the_limit_is_refused_with_the_limit(self) -> None:
        seas = self.server.login("seas")
        text = self.command(self.columbia, "message seas " + "x" * 501)
        self.assertEqual(text, "Message too long: 501 characters; the limit is 500. Nothing was sent.\r\n")
        self.assertEqual(seas.read(), "")

    def test_message_limit_follows_the_option(self) -> None:
        server = Harness(settings=Settings(limits=Limits(max_message=10)))
        conn = server.login("columbia")
        conn.send("broadcast message 12345678901")
        self.assertIn("the limit is 10", conn.read())

    def test_personalintro_with_text(self) -> None:
        self.assertEqual(
            self.command(self.columbia, "personalintro The best course ever"),
            "Personal introduction saved.\r\n",
        )
        seas = self.server.login("seas")
        self.assertIn("columbia  <The best course ever>", self.command(seas, "whoelse"))

    def test_personalintro_without_text_asks_on_the_next_line(self) -> None:
        self.columbia.send("personalintro")
        self.assertEqual(
            self.columbia.read(),
            "Please enter your personal introduction (an empty line keeps the current one):\r\nIntro: ",
        )
        self.assertEqual(self.command(self.columbia, "An website"), "Personal introduction saved.\r\n")
        self.assertEqual(self.server.service.intros["columbia"], "An website")

    def test_personalintro_empty_answer_keeps_the_intro(self) -> None:
        self.command(self.columbia, "personalintro first")
        self.columbia.send("personalintro")
        self.columbia.read()
        self.assertEqual(self.command(self.columbia, ""), "Personal introduction unchanged.\r\n")
        self.assertEqual(self.server.service.intros["columbia"], "first")

    def test_help_lists_every_command(self) -> None:
        text = self.command(self.columbia, "help")
        for name in ("whoelse", "wholast", "broadcast", "message", "personalintro", "help", "logout"):
            self.assertIn(name, text)

    def test_unknown_command_gets_did_you_mean(self) -> None:
        self.assertEqual(
            self.command(self.columbia, "whoeles"), "Unknown command 'whoeles'; did you mean 'whoelse'?\r\n"
        )

    def test_known_command_with_wrong_arguments_gets_usage(self) -> None:
        self.assertEqual(
            self.command(self.columbia, "broadcast columbia message diao diao da!!!"),
            "'columbia' is not 'message' or 'user'. Usage: broadcast message TEXT"
            " | broadcast user USER [USER ...] message TEXT\r\n",
        )

    def test_blank_line_just_prompts_again(self) -> None:
        self.assertEqual(self.command(self.columbia, ""), "")

    def test_logout_says_goodbye_closes_and_goes_offline(self) -> None:
        seas = self.server.login("seas")
        self.columbia.send("logout")
        self.assertEqual(self.columbia.read(), "Goodbye, columbia!\r\n")
        self.assertTrue(self.columbia.closing)
        self.assertEqual(self.command(seas, "whoelse"), "Nobody else is online.\r\n")

    def test_logged_out_user_can_log_in_again(self) -> None:
        self.columbia.send("logout")
        self.columbia.lose()
        self.server.login("columbia")

    def test_dropped_connection_takes_the_user_offline(self) -> None:
        self.columbia.lose()
        self.assertNotIn("columbia", self.server.service.registry.online)

    def test_a_failing_recipient_does_not_stop_a_broadcast(self) -> None:
        seas = self.server.login("seas")
        google = self.server.login("google")

        def explode(delivery: object) -> None:
            raise RuntimeError("broken recipient")

        seas.protocol.deliver = explode
        self.assertEqual(
            self.command(self.columbia, "broadcast message still here"), "Broadcast to 2 users.\r\n"
        )
        self.assertIn("still here", google.read())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class OfflineOrderTests(unittest.TestCase):
    def test_offline_messages_are_shown_oldest_first_then_forgotten(self) -> None:
        server = Harness()
        columbia = server.login("columbia")
        columbia.send("message seas one")
        server.clock.advance(60)
        columbia.send("broadcast user seas message two")
        seas = server.connect()
        seas.send("seas", "summerisover")
        text = seas.read()
        self.assertIn("You have 2 offline messages:", text)
        self.assertLess(text.index("(private): one"), text.index("(broadcast): two"))
        seas.send("logout")
        seas.lose()
        again = server.connect()
        again.send("seas", "summerisover")
        self.assertNotIn("offline message", again.read())


class SlowStoreTests(unittest.TestCase):
    """What a session does while the store has not answered yet."""

    def setUp(self) -> None:
        self.store = HeldStore()
        self.server = Harness(store=self.store)
        self.columbia = self.server.login("columbia")

    def test_sender_is_told_stored_only_after_the_store_confirms(self) -> None:
        self.columbia.send("message seas hello", "whoelse")
        self.assertEqual(self.columbia.read(), "")
        self.store.release()
        self.assertEqual(
            self.columbia.read(),
            "seas is offline; the message will be delivered when they next log in.\r\n"
            "Command: Nobody else is online.\r\nCommand: ",
        )

    def test_store_failure_is_reported_and_the_session_goes_on(self) -> None:
        self.store.broken = True
        self.columbia.send("message seas hello")
        self.store.release()
        text = self.columbia.read()
        self.assertIn("could not be stored", text)
        self.assertTrue(text.endswith("Command: "))
        self.flushLoggedErrors(OSError)
        self.columbia.send("whoelse")
        self.assertIn("Nobody else", self.columbia.read())

    def test_a_user_gone_while_their_offline_messages_are_read_gets_them_at_the_next_login(self) -> None:
        self.columbia.send("message seas waiting")
        self.store.release()
        seas = self.server.connect()
        seas.send("seas", "summerisover")
        # The connection drops (a reset) while the store reads what waited.
        seas.lose()
        self.store.release()
        again = self.server.connect()
        again.send("seas", "summerisover")
        self.store.release()
        text = again.read()
        self.assertIn("You have 1 offline message:", text)
        self.assertIn("columbia (private): waiting", text)

    def test_live_messages_during_login_come_after_offline_ones(self) -> None:
        self.columbia.send("message seas first")
        self.store.release()
        seas = self.server.connect()
        seas.send("seas", "summerisover")
        # seas is online but its offline messages are still being read.
        self.columbia.send("message seas second")
        self.store.release()
        text = seas.read()
        self.assertLess(text.index("first"), text.index("second"), text)
        self.assertTrue(text.endswith("Command: "))

    def test_input_while_a_command_waits_is_held_and_the_socket_read_on_up_to_a_bound(self) -> None:
        transport = self.columbia.transport
        self.columbia.send("message seas one", "whoelse")
        # A few lines sent ahead: held in order, the socket still read.
        self.assertEqual(transport.producerState, "producing")
        padded = "whoelse" + " " * 4000
        self.columbia.send(*[padded] * (HELD_INPUT // 4000 + 1))
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(self.columbia.read(), "")
        self.store.release()
        self.assertEqual(transport.producerState, "producing")
        offline = "seas is offline; the message will be delivered when they next log in.\r\nCommand: "
        nobody = "Nobody else is online.\r\nCommand: "
        self.assertEqual(self.columbia.read(), offline + nobody * (HELD_INPUT // 4000 + 2))

    def test_intro_is_confirmed_after_it_is_stored(self) -> None:
        self.columbia.send("personalintro slow disk")
        self.assertEqual(self.columbia.read(), "")
        self.store.release()
        self.assertEqual(self.columbia.read(), "Personal introduction saved.\r\nCommand: ")


OFFLINE = "seas is offline; the message will be delivered when they next log in.\r\nCommand: "


class MessagesInFlightTests(unittest.TestCase):
    """
    Private messages a client sends before the first is answered, while
    each waits for the store (someone offline, or on another node): sent
    together, answered in the order typed, with the same bytes as one
    after another.
    """

    def setUp(self) -> None:
        self.store = HeldStore()
        self.server = Harness(store=self.store, settings=Settings(rate=1000, burst=1000))
        self.columbia = self.server.login("columbia")
        self.log = capture_log(self)

    def test_messages_sent_ahead_wait_for_the_store_together_and_are_answered_in_order(self) -> None:
        self.columbia.send("message seas one", "message seas two", "message seas three")
        self.assertEqual(len(self.store.waiting), 3, "all three went to the store at once")
        self.assertEqual(self.columbia.read(), "")
        self.store.release()
        self.assertEqual(self.columbia.read(), OFFLINE * 3)
        kept = self.successResultOf(self.store.inner.offline_for("seas"))
        self.assertEqual([m.delivery.text for m in kept], ["one", "two", "three"])

    def test_another_command_waits_for_the_messages_in_flight_and_is_answered_after_them(self) -> None:
        self.columbia.send("message seas one", "whoelse", "message seas two")
        self.assertEqual(len(self.store.waiting), 1, "whoelse, and what follows it, wait")
        self.store.release()
        self.assertEqual(self.columbia.read(), OFFLINE + "Nobody else is online.\r\nCommand: " + OFFLINE)

    def test_a_command_that_asks_for_more_after_messages_in_flight_reads_its_answer(self) -> None:
        self.columbia.send("message seas one", "personalintro", "piped intro", "whoelse")
        self.store.release()
        self.assertEqual(
            self.columbia.read(),
            OFFLINE
            + "Please enter your personal introduction (an empty line keeps the current one):\r\n"
            + "Intro: Personal introduction saved.\r\nCommand: Nobody else is online.\r\nCommand: ",
        )

    def test_an_answer_known_at_once_comes_after_those_still_in_flight(self) -> None:
        self.columbia.send("message seas one", "message nobody two", "message columbia three")
        self.assertEqual(self.columbia.read(), "")
        self.store.release()
        text = self.columbia.read()
        self.assertTrue(text.startswith(OFFLINE), text)
        self.assertLess(text.index("nobody"), text.index("That is you"), text)
        self.assertEqual(text.count("Command: "), 3, text)

    def test_at_most_a_bound_wait_at_once_and_the_rest_of_the_input_waits(self) -> None:
        count = MAX_IN_FLIGHT + 3
        self.columbia.send(*[f"message seas number{i}" for i in range(count)])
        self.assertEqual(len(self.store.waiting), MAX_IN_FLIGHT)
        self.store.release()
        self.assertEqual(self.columbia.read(), OFFLINE * count)
        self.assertEqual(self.store.waiting, [])

    def test_messages_that_could_not_be_stored_are_answered_in_their_place(self) -> None:
        self.columbia.send("message seas one", "message seas two")
        self.store.release(OSError("disk on fire"))
        text = self.columbia.read()
        self.assertEqual(text.count("could not be stored"), 2, text)
        self.assertEqual(text.count("Command: "), 2, text)
        self.flushLoggedErrors(OSError)
        self.columbia.send("whoelse")
        self.assertEqual(self.columbia.read(), "Nobody else is online.\r\nCommand: ")

    def test_a_connection_lost_with_messages_in_flight_is_answered_nothing(self) -> None:
        self.columbia.send("message seas one", "message seas two", "whoelse")
        self.columbia.lose()
        self.store.release()
        self.assertEqual(self.columbia.transport.value(), b"")
        self.assertEqual([e for e in self.log if e.get("log_failure") is not None], [])


class EndOfInputTests(unittest.TestCase):
    """A client that sends everything and ends its input (C{printf ... | nc -N})."""

    def test_what_it_sent_is_answered_in_order_before_the_connection_closes(self) -> None:
        store = HeldStore()
        server = Harness(store=store)
        columbia = server.login("columbia")
        columbia.send("message seas one", "message seas two", "whoelse", "logout")
        columbia.protocol.readConnectionLost()
        self.assertFalse(columbia.closing, "closed before the messages were stored")
        store.release()
        self.assertEqual(
            columbia.read(), OFFLINE * 2 + "Nobody else is online.\r\nCommand: Goodbye, columbia!\r\n"
        )
        self.assertTrue(columbia.closing)

    def test_a_client_with_nothing_waiting_is_closed_at_the_end_of_its_input(self) -> None:
        server = Harness()
        columbia = server.login("columbia")
        columbia.send("whoelse")
        columbia.protocol.readConnectionLost()
        self.assertEqual(columbia.read(), "Nobody else is online.\r\nCommand: ")
        self.assertTrue(columbia.closing)

    def test_a_login_waiting_for_its_password_check_is_answered_first(self) -> None:
        server = Harness(hold_logins=True)
        conn = server.connect()
        conn.send("columbia", "116bway", "whoelse")
        conn.protocol.readConnectionLost()
        self.assertFalse(conn.closing)
        server.checker.release()
        self.assertIn("Welcome to chat, columbia!", conn.read())
        self.assertTrue(conn.closing)


class BadInputTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness()
        self.conn = self.server.login("columbia")

    def test_invalid_utf8_gets_an_error_and_the_session_goes_on(self) -> None:
        self.conn.send_bytes(b"message seas \xff\xfe\r\n")
        self.assertEqual(self.conn.read(), "That line is not valid UTF-8 text; it was ignored.\r\nCommand: ")
        self.conn.send("whoelse")
        self.assertIn("Nobody else", self.conn.read())

    def test_control_characters_get_an_error(self) -> None:
        self.conn.send_bytes(b"broadcast message \x1b[2Jgotcha\r\n")
        self.assertEqual(
            self.conn.read(), "Control characters are not allowed; that line was ignored.\r\nCommand: "
        )

    def test_a_direction_override_in_a_message_is_refused_and_nothing_is_sent(self) -> None:
        seas = self.server.login("seas")
        self.conn.send("broadcast message hello \u202egnp.exe")
        self.assertEqual(self.conn.read(), BIDI_REFUSED + "\r\nCommand: ")
        self.assertEqual(seas.read(), "")

    def test_every_direction_control_is_refused(self) -> None:
        for char in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
            self.conn.send(f"message seas x{char}y")
            self.assertEqual(self.conn.read(), BIDI_REFUSED + "\r\nCommand: ", hex(ord(char)))

    def test_a_direction_isolate_in_an_intro_is_refused_and_the_old_one_kept(self) -> None:
        self.conn.send("personalintro plain")
        self.conn.read()
        self.conn.send("personalintro \u2067evil\u2069")
        self.assertEqual(self.conn.read(), BIDI_REFUSED + "\r\nCommand: ")
        self.conn.send("personalintro")
        self.conn.read()
        self.conn.send("\u202eevil")
        self.assertEqual(self.conn.read(), BIDI_REFUSED + "\r\nIntro: ")
        self.assertEqual(self.server.service.intros["columbia"], "plain")

    def test_a_direction_mark_in_a_username_is_refused_at_the_prompt(self) -> None:
        conn = self.server.connect()
        conn.read()
        conn.send("colu\u200fmbia")
        self.assertEqual(conn.read(), BIDI_REFUSED + "\r\nUsername: ")

    def test_emoji_joiners_are_not_direction_controls(self) -> None:
        seas = self.server.login("seas")
        self.conn.send("message seas \U0001f468\u200d\U0001f469\u200d\U0001f467")
        self.assertIn("Sent to seas.", self.conn.read())
        self.assertIn("\U0001f468\u200d\U0001f469", seas.read())

    def test_tab_is_not_a_control_character_here(self) -> None:
        self.conn.send_bytes(b"whoelse\t\r\n")
        self.assertIn("Nobody else", self.conn.read())

    def test_line_over_4_kib_is_refused_and_the_next_line_works(self) -> None:
        self.conn.send_bytes(b"broadcast message " + b"x" * 5000 + b"\r\nwhoelse\r\n")
        self.assertEqual(
            self.conn.read(),
            "That line is longer than 4096 bytes; it was ignored.\r\nCommand: "
            "Nobody else is online.\r\nCommand: ",
        )

    def test_long_line_arriving_in_pieces_is_discarded_up_to_its_end(self) -> None:
        for _ in range(10):
            self.conn.send_bytes(b"y" * 1000)
        self.assertEqual(
            self.conn.read(), "That line is longer than 4096 bytes; it was ignored.\r\nCommand: "
        )
        self.conn.send_bytes(b"y" * 3000 + b"\r\nwhoelse\r\n")
        self.assertEqual(self.conn.read(), "Nobody else is online.\r\nCommand: ")

    def test_bare_lf_line_endings_work(self) -> None:
        self.conn.send_bytes(b"whoelse\n")
        self.assertIn("Nobody else", self.conn.read())

    def test_many_commands_in_one_write_are_all_answered(self) -> None:
        self.conn.send_bytes(b"whoelse\n" * 15)
        self.assertEqual(self.conn.read().count("Nobody else is online."), 15)

    def test_bad_input_before_login_keeps_the_login_prompt(self) -> None:
        conn = self.server.connect()
        conn.read()
        conn.send_bytes(b"\xff\r\n")
        self.assertEqual(conn.read(), "That line is not valid UTF-8 text; it was ignored.\r\nUsername: ")

    def test_an_exception_in_a_handler_is_reported_in_one_line(self) -> None:
        def broken(me: str) -> None:
            raise ZeroDivisionError("bug")

        self.server.service.whoelse = broken  # type: ignore[method-assign, assignment]
        self.conn.send("whoelse")
        self.assertEqual(
            self.conn.read(), "Sorry, that failed because of a server error; please try again.\r\nCommand: "
        )
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.conn.send("help logout")
        self.assertIn("Usage: logout", self.conn.read())


class TimeoutTests(unittest.TestCase):
    def test_idle_user_is_logged_out_with_a_reason(self) -> None:
        server = Harness(settings=Settings(idle_timeout=1800))
        conn = server.login("columbia")
        server.clock.advance(1799)
        self.assertEqual(conn.read(), "")
        server.clock.advance(1)
        self.assertEqual(conn.read(), "\r\nLogged out after 30 minutes without a command.\r\n")
        self.assertTrue(conn.closing)
        self.assertNotIn("columbia", server.service.registry.online)

    def test_a_command_resets_the_idle_timer(self) -> None:
        # One command, or several: the timer is not moved per command; it
        # fires, finds a command came since, and waits out the rest, as
        # often as that happens.
        for gaps in ([90], [30, 60]):
            server = Harness(settings=Settings(idle_timeout=100))
            conn = server.login("columbia")
            for gap in gaps:
                server.clock.advance(gap)
                conn.send("whoelse")
            server.clock.advance(90)
            self.assertFalse(conn.closing, gaps)
            server.clock.advance(9.5)
            self.assertFalse(conn.closing, gaps)
            server.clock.advance(0.5)
            self.assertTrue(conn.closing, gaps)
            self.assertIn("Logged out after", conn.read())

    def test_incoming_messages_do_not_reset_the_idle_timer(self) -> None:
        server = Harness(settings=Settings(idle_timeout=100))
        conn = server.login("columbia")
        other = server.login("seas")
        server.clock.advance(50)
        other.send("message columbia ping")
        server.clock.advance(50)
        self.assertTrue(conn.closing)

    def test_describe_duration(self) -> None:
        self.assertEqual(describe_duration(1), "1 second")
        self.assertEqual(describe_duration(45.2), "45 seconds")
        self.assertEqual(describe_duration(60), "1 minute")
        self.assertEqual(describe_duration(1800), "30 minutes")
        self.assertEqual(describe_duration(7200), "2 hours")
        self.assertEqual(describe_duration(90), "90 seconds")


class FloodTests(unittest.TestCase):
    def test_commands_past_the_burst_are_refused_and_the_session_goes_on(self) -> None:
        server = Harness(settings=Settings(rate=10, burst=20))
        conn = server.login("columbia")
        conn.send_bytes(b"whoelse\n" * 25)
        text = conn.read()
        self.assertEqual(text.count("Nobody else is online."), 20)
        self.assertEqual(text.count("Slow down: at most 10 commands per second."), 5)
        self.assertFalse(conn.closing)
        server.clock.advance(1)
        conn.send("whoelse")
        self.assertIn("Nobody else is online.", conn.read())

    def test_a_rate_of_one_is_said_in_the_singular(self) -> None:
        server = Harness(settings=Settings(rate=1, burst=1))
        conn = server.login("columbia")
        conn.send_bytes(b"whoelse\nwhoelse\n")
        self.assertIn("Slow down: at most 1 command per second. That one was ignored.", conn.read())

    def test_a_user_who_keeps_flooding_is_disconnected(self) -> None:
        server = Harness(settings=Settings(rate=10, burst=20, flood_disconnect=50))
        seas = server.login("seas")
        conn = server.login("columbia")
        conn.send_bytes(b"broadcast message spam\n" * 1000)
        text = conn.read()
        self.assertTrue(
            text.endswith("Disconnected for sending too many commands too fast.\r\n"), text[-200:]
        )
        self.assertTrue(conn.closing)
        self.assertEqual(seas.read().count("spam"), 20)
        self.assertNotIn("columbia", server.service.registry.online)


class SessionLogTests(unittest.TestCase):
    """One line per login and per logout, for the operator: who, from where, over what, how long, why."""

    def test_a_login_and_its_logout_are_a_line_each(self) -> None:
        server = Harness()
        events = capture_log(self, "chat.server.session")
        conn = server.login("columbia")
        server.clock.advance(125)
        conn.send("logout")
        conn.lose()
        self.assertEqual(
            [formatEvent(e) for e in events],
            [
                "columbia logged in from 10.0.0.1 over tcp",
                "columbia logged out from 10.0.0.1 over tcp after 125 s: logout",
            ],
        )
        self.assertEqual(
            (events[1]["user"], events[1]["edge"], events[1]["reason"]), ("columbia", "tcp", "logout")
        )

    def test_a_dropped_connection_and_a_timeout_say_so(self) -> None:
        server = Harness()
        events = capture_log(self, "chat.server.session")
        server.login("columbia").lose()
        server.login("seas")
        server.clock.advance(1800)
        reasons = [e["reason"] for e in events if "reason" in e]
        self.assertEqual(reasons, ["connection lost", "idle"])

    def test_a_failed_login_is_not_a_session(self) -> None:
        server = Harness()
        events = capture_log(self, "chat.server.session")
        conn = server.connect()
        conn.send("columbia", "wrong")
        conn.lose()
        self.assertEqual([e for e in events if "logged" in e["log_format"]], [])


class PreLoginTests(unittest.TestCase):
    """Before login a connection is the cheapest thing to serve: a few lines, then it is closed."""

    def test_a_burst_of_lines_at_the_username_prompt_gets_a_few_answers_then_the_door(self) -> None:
        server = Harness()
        conn = server.connect()
        conn.read()
        conn.send_bytes(b"a b\n" * 32768)
        text = conn.read()
        self.assertEqual(text.count("A username is a single word"), 10)
        self.assertTrue(
            text.endswith("Disconnected for sending too many commands too fast.\r\n"), text[-100:]
        )
        self.assertLess(len(text), 1024)
        self.assertTrue(conn.closing)

    def test_the_budget_refills_for_someone_who_types(self) -> None:
        server = Harness()
        conn = server.connect()
        for _ in range(30):
            conn.send("a b")
            server.clock.advance(0.5)
        self.assertFalse(conn.closing)
        conn.send("columbia", "116bway")
        self.assertIn("Welcome", conn.read())

    def test_a_pasted_login_and_commands_are_not_counted_as_pre_login(self) -> None:
        server = Harness()
        conn = server.connect()
        conn.send("columbia", "116bway", *(["whoelse"] * 15))
        self.assertEqual(conn.read().count("Nobody else is online."), 15)

    def test_the_answers_to_one_read_are_bounded_before_they_are_queued(self) -> None:
        """A logged-in client free of the rate limit sends 64 KiB of 'help': cut off at the bound."""
        server = Harness(max_backlog=8192, settings=Settings(exempt=Exemptions.parse("10.0.0.0/8")))
        conn = server.login("columbia")
        seas = server.login("seas")
        conn.send_bytes(b"help\n" * 13000)
        self.assertTrue(conn.transport.disconnected)
        self.assertLessEqual(len(conn.transport.value()), 8192)
        # Nobody else noticed.
        conn.lose()
        seas.send("whoelse")
        self.assertEqual(seas.read(), "Nobody else is online.\r\nCommand: ")


class ShutdownTests(unittest.TestCase):
    def test_stopping_the_service_says_goodbye_to_every_connection(self) -> None:
        server = Harness()
        server.service.startService()
        user = server.login("columbia")
        stranger = server.connect()
        stranger.read()
        done = server.service.stopService()
        self.assertEqual(user.read(), "\r\nThe server is shutting down. Goodbye.\r\n")
        self.assertEqual(stranger.read(), "\r\nThe server is shutting down. Goodbye.\r\n")
        self.assertTrue(user.closing and stranger.closing)
        self.assertNoResult(done)
        user.lose()
        stranger.lose()
        self.successResultOf(done)

    def test_shutdown_records_who_was_online(self) -> None:
        server = Harness()
        server.service.startService()
        user = server.login("columbia")
        server.clock.advance(30)
        done = server.service.stopService()
        user.lose()
        self.successResultOf(done)
        self.assertEqual(server.store.snapshot().last_seen["columbia"], server.clock.seconds())


class ConnectionLimitTests(unittest.TestCase):
    def test_connections_past_the_per_address_limit_are_refused_with_a_reason(self) -> None:
        server = Harness(max_per_host=3)
        conns = [server.connect("10.0.0.9") for _ in range(3)]
        refused = server.connect("10.0.0.9")
        self.assertEqual(refused.read(), "Too many connections from your address (limit 3).\r\n")
        self.assertTrue(refused.closing)
        self.assertEqual(server.connect("10.0.0.10").read(), "Username: ")
        conns[0].lose()
        self.assertEqual(server.connect("10.0.0.9").read(), "Username: ")


class SlowReaderTests(unittest.TestCase):
    def test_a_client_that_stops_reading_is_cut_off_past_the_bound(self) -> None:
        server = Harness(max_backlog=10_000, settings=Settings(rate=1000, burst=1000))
        reader = server.login("seas")
        sender = server.login("columbia")
        # The kernel buffer is full: the transport asks its producer to pause.
        reader.protocol.pauseProducing()
        for i in range(200):
            sender.send(f"message seas {'z' * 100} {i}")
            self.assertFalse(sender.closing)
            if reader.transport.disconnected:
                break
        self.assertTrue(reader.transport.disconnected, "the slow reader was not cut off")
        self.assertLess(i, 120)
        self.assertFalse(sender.closing)

    def test_a_client_that_catches_up_is_not_cut_off(self) -> None:
        server = Harness(max_backlog=10_000, settings=Settings(rate=1000, burst=1000))
        reader = server.login("seas")
        sender = server.login("columbia")
        for _ in range(20):
            reader.protocol.pauseProducing()
            for i in range(50):
                sender.send(f"message seas {'z' * 100} {i}")
            reader.protocol.resumeProducing()
            reader.read()
        self.assertFalse(reader.transport.disconnected)


class ClosingTests(unittest.TestCase):
    def test_input_after_the_goodbye_is_dropped_not_kept(self) -> None:
        server = Harness()
        conn = server.login("columbia")
        conn.send("logout")
        self.assertTrue(conn.closing)
        for _ in range(100):
            conn.send_bytes(b"whoelse\n" * 100 + b"half a line")
        self.assertEqual(conn.protocol._buffer, b"")
        self.assertEqual(conn.read(), "Goodbye, columbia!\r\n")

    def test_a_flooder_cut_off_leaves_nothing_buffered(self) -> None:
        server = Harness()
        conn = server.login("columbia")
        conn.send_bytes(b"whoelse\n" * 5000)
        self.assertTrue(conn.closing)
        self.assertEqual(conn.protocol._buffer, b"")


def record_sends(conn: Connection) -> list[bytes]:
    """Each write to C{conn}'s transport from now on (one per send the server makes), in order."""
    sends: list[bytes] = []
    write = conn.transport.write

    def send(data: bytes) -> None:
        sends.append(data)
        write(data)

    conn.transport.write = send  # type: ignore[method-assign]
    return sends


class BroadcastTimingTests(unittest.TestCase):
    def test_a_broadcast_is_delivered_by_the_end_of_the_turn_that_carried_it(self) -> None:
        server = Harness()
        seas = server.login("seas")
        columbia = server.login("columbia")
        # No timer runs: only the read, and the end of its turn.
        columbia.protocol.dataReceived(b"broadcast message now\r\n")
        server.factory.turn.flush()
        self.assertEqual(seas.transport.value(), b"\r\ncolumbia (broadcast): now\r\n")

    def test_writes_of_one_turn_to_a_client_go_out_in_one_send(self) -> None:
        server = Harness()
        seas = server.login("seas")
        columbia = server.login("columbia")
        sends = record_sends(seas)
        # In one turn: seas's own command, then a message to seas from a
        # line of columbia's read after it.
        seas.protocol.dataReceived(b"whoelse\r\n")
        columbia.protocol.dataReceived(b"message seas hi\r\n")
        self.assertEqual(sends, [])
        server.factory.turn.flush()
        self.assertEqual(len(sends), 1)
        self.assertEqual(
            sends[0],
            b"Online now (1):\r\n  columbia\r\nCommand: \r\ncolumbia (private): hi\r\n",
        )

    def test_messages_from_another_node_join_the_turns_other_writes_to_the_client(self) -> None:
        store = HeldStore()
        server = Harness(store=store)
        seas = server.login("seas")
        store.release()
        # seas's message waits for the store: no prompt, messages go straight to its transport.
        seas.protocol.dataReceived(b"message google later\r\n")
        server.factory.turn.flush()
        seas.read()
        sends = record_sends(seas)
        # Turns of Redis replies: a message from another node; then another,
        # and the store's answer to seas.
        for i, answered in enumerate((False, True)):
            server.factory.turn.begin()
            sent = Delivery("csee4119", f"from b {i}", Kind.PRIVATE, 1.0, f"b-{i}", ("seas",))
            server.service.inbox_arrived("seas", [StoredMessage(f"{i}-0", "seas", sent)])
            if answered:
                store.release()
            server.factory.turn.flush()
        self.assertEqual(len(sends), 2, sends)
        self.assertIn(b"csee4119 (private): from b 1\r\n", sends[1])
        self.assertTrue(sends[1].endswith(b"Command: "), sends[1])

    def test_a_write_outside_any_read_goes_at_once(self) -> None:
        server = Harness()
        seas = server.login("seas")
        columbia = server.login("columbia")
        seas.read()
        server.service.broadcast("columbia", "from a timer")
        server.service.flush()
        self.assertEqual(seas.transport.value(), b"\r\ncolumbia (broadcast): from a timer\r\n")
        self.assertEqual(columbia.transport.value(), b"")

    def test_broadcasts_of_the_reads_of_one_turn_reach_a_recipient_in_one_write(self) -> None:
        """Several senders read in one turn: each other user gets their broadcasts in one write."""
        server = Harness()
        seas = server.login("seas")
        columbia = server.login("columbia")
        google = server.login("google")
        writes: list[bytes] = []
        seas.protocol.deliver = writes.append
        columbia.protocol.dataReceived(b"broadcast message one\r\nbroadcast message two\r\n")
        google.protocol.dataReceived(b"broadcast message three\r\n")
        self.assertEqual(writes, [])
        server.factory.turn.flush()
        self.assertEqual(
            writes,
            [b"columbia (broadcast): one\r\ncolumbia (broadcast): two\r\ngoogle (broadcast): three\r\n"],
        )
        # Each sender has its answers first, then what the others sent, in one send.
        self.assertEqual(
            google.read(),
            "Broadcast to 2 users.\r\nCommand: "
            "\r\ncolumbia (broadcast): one\r\ncolumbia (broadcast): two\r\n",
        )


def stamped(when: float, line: str) -> str:
    """A history line as the text edge shows it: the UTC time of the message, then the message."""
    return datetime.fromtimestamp(when, timezone.utc).strftime("[%Y-%m-%d %H:%M:%S UTC] ") + line


HISTORY_USAGE = "Usage: history [#ROOM | USER] [N]   (the last N messages, 20 if not given)"


class HistoryTests(unittest.TestCase):
    """The C{history} command, as a user of the text edge reads it."""

    def setUp(self) -> None:
        self.server = Harness()
        self.clock = self.server.clock

    def command(self, conn: Connection, line: str) -> str:
        """Send C{line}; give the answer without its prompt, and check the prompt came."""
        conn.read()
        conn.send(line)
        text = conn.read()
        self.assertTrue(text.endswith("Command: "), text)
        return text[: -len("Command: ")]

    def exchange(self) -> tuple[Connection, Connection, float, float]:
        """columbia and seas exchange a private message each, a minute apart."""
        columbia = self.server.login("columbia")
        seas = self.server.login("seas")
        first = self.clock.seconds()
        self.command(columbia, "message seas hi seas")
        self.clock.advance(61)
        second = self.clock.seconds()
        self.command(seas, "message columbia hi columbia")
        return columbia, seas, first, second

    def test_the_time_is_shown_in_utc_to_the_second(self) -> None:
        """Pins the format itself, which the other tests compute."""
        columbia = self.server.login("columbia")
        self.server.login("seas")
        self.command(columbia, "message seas then")
        self.assertEqual(
            self.command(columbia, "history"),
            "Your last 1 message:\r\n[2023-11-14 22:13:20 UTC] columbia to seas (private): then\r\n",
        )

    def test_history_shows_sent_and_received_private_messages_oldest_first(self) -> None:
        columbia, seas, first, second = self.exchange()
        self.assertEqual(
            self.command(columbia, "history"),
            "Your last 2 messages:\r\n"
            + stamped(first, "columbia to seas (private): hi seas\r\n")
            + stamped(second, "seas (private): hi columbia\r\n"),
        )
        self.assertEqual(
            self.command(seas, "history"),
            "Your last 2 messages:\r\n"
            + stamped(first, "columbia (private): hi seas\r\n")
            + stamped(second, "seas to columbia (private): hi columbia\r\n"),
        )

    def test_history_1_shows_only_the_last_message(self) -> None:
        columbia, _, _, second = self.exchange()
        self.assertEqual(
            self.command(columbia, "history 1"),
            "Your last 1 message:\r\n" + stamped(second, "seas (private): hi columbia\r\n"),
        )

    def test_history_without_a_number_shows_the_last_20(self) -> None:
        columbia = self.server.login("columbia")
        self.server.login("seas")
        times = []
        for i in range(25):
            self.clock.advance(1)
            times.append(self.clock.seconds())
            self.command(columbia, f"message seas number {i}")
        expected = "".join(
            stamped(times[i], f"columbia to seas (private): number {i}\r\n") for i in range(5, 25)
        )
        self.assertEqual(self.command(columbia, "history"), "Your last 20 messages:\r\n" + expected)

    def test_a_message_to_someone_offline_is_in_both_histories(self) -> None:
        columbia = self.server.login("columbia")
        sent = self.clock.seconds()
        self.command(columbia, "broadcast user seas google message kept")
        seas = self.server.login("seas")
        self.assertEqual(
            self.command(columbia, "history"),
            "Your last 1 message:\r\n" + stamped(sent, "columbia to seas, google (broadcast): kept\r\n"),
        )
        self.assertEqual(
            self.command(seas, "history"),
            "Your last 1 message:\r\n" + stamped(sent, "columbia (broadcast): kept\r\n"),
        )

    def test_a_bad_count_gets_the_usage_and_nothing_else(self) -> None:
        columbia, _, _, _ = self.exchange()
        for line, problem in [
            ("history 0", "'0' is not a number of messages (1 or more)"),
            ("history -1", "'-1' is not a number of messages (1 or more)"),
            ("history seas x", "'x' is not a number of messages (1 or more)"),
            ("history 1 2", "history takes one number"),
        ]:
            self.assertEqual(self.command(columbia, line), f"{problem}. {HISTORY_USAGE}\r\n", line)

    def test_a_user_with_no_messages_is_told_so(self) -> None:
        columbia = self.server.login("columbia")
        self.assertEqual(self.command(columbia, "history"), "No messages yet.\r\n")

    def test_others_private_messages_are_not_in_a_third_users_history(self) -> None:
        self.exchange()
        google = self.server.login("google")
        self.assertEqual(self.command(google, "history"), "No messages yet.\r\n")

    def test_a_broadcast_to_everyone_is_in_a_third_users_history(self) -> None:
        """
        Broadcasts are the room's scrollback: even a user who logs in after
        one, and took no part in the talk around it, reads it, in its place.
        """
        columbia, _, first, second = self.exchange()
        self.clock.advance(5)
        shouted = self.clock.seconds()
        self.command(columbia, "broadcast message hello all")
        google = self.server.login("google")
        self.assertEqual(
            self.command(google, "history"),
            "Your last 1 message:\r\n" + stamped(shouted, "columbia (broadcast): hello all\r\n"),
        )
        self.assertEqual(
            self.command(columbia, "history"),
            "Your last 3 messages:\r\n"
            + stamped(first, "columbia to seas (private): hi seas\r\n")
            + stamped(second, "seas (private): hi columbia\r\n")
            + stamped(shouted, "columbia (broadcast): hello all\r\n"),
        )

    def test_a_history_asked_in_the_same_read_as_a_broadcast_includes_it(self) -> None:
        """The broadcast is still waiting for the end of the read when history is asked."""
        self.server.login("seas")
        columbia = self.server.login("columbia")
        columbia.read()
        columbia.send("broadcast message early", "history")
        text = columbia.read()
        self.assertIn(
            "Your last 1 message:\r\n" + stamped(self.clock.seconds(), "columbia (broadcast): early\r\n"),
            text,
        )

    def test_the_answer_waits_for_a_slow_store_and_input_is_held_meanwhile(self) -> None:
        store = HeldStore()
        server = Harness(store=store)
        columbia = server.login("columbia")
        seas = server.login("seas")
        sent = server.clock.seconds()
        columbia.send("message seas hello")
        self.assertEqual(columbia.read(), "Sent to seas.\r\nCommand: ")
        columbia.send("history", "whoelse")
        self.assertEqual(columbia.read(), "")
        self.assertEqual(len(store.waiting), 1, "only the history is asked of the store")
        store.release()
        self.assertEqual(
            columbia.read(),
            "Your last 1 message:\r\n"
            + stamped(sent, "columbia to seas (private): hello\r\n")
            + "Command: Online now (1):\r\n  seas\r\nCommand: ",
        )
        self.assertEqual(seas.read(), "\r\ncolumbia (private): hello\r\n")

    def test_a_store_that_cannot_load_the_history_says_so_and_the_session_goes_on(self) -> None:
        store = HeldStore()
        server = Harness(store=store)
        columbia = server.login("columbia")
        columbia.read()
        store.broken = True
        columbia.send("history", "whoelse")
        store.release()
        self.assertEqual(
            columbia.read(),
            "Your history could not be loaded now; please try again.\r\n"
            "Command: Nobody else is online.\r\nCommand: ",
        )
        self.flushLoggedErrors(OSError)
