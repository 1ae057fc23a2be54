"""
The wording of the text protocol: every event of L{chat.server.events} as
the TCP edge renders it.

These sentences are what telnet users, scripts and the terminal client have
always read; the expected strings are those of the older tests, the end-to-end
tests and the README's example session, copied verbatim where they exist, so
that moving the wording into one module cannot change a byte of it.
"""

from __future__ import annotations

import calendar
import typing

from twisted.trial import unittest

from chat.server import commands, events
from chat.server.commands import Limits
from chat.server.edges import text
from chat.server.edges.text import TEXT, encode, render
from chat.server.events import (
    Arrived,
    Ask,
    BadUsage,
    Broadcasted,
    Delivery,
    Failed,
    Fault,
    Goodbye,
    Help,
    HelpTopic,
    History,
    IntroTooLong,
    Kind,
    LineTooLong,
    LoginRefused,
    Note,
    Notice,
    Offline,
    Presence,
    RateLimited,
    Reason,
    Receipt,
    Refusal,
    Roster,
    RosterEntry,
    StoredMessage,
    TooLong,
    TooManyConnections,
    UnknownCommand,
    UnknownUsers,
    Welcome,
)

#: The harness's clock starts here; test_session shows it as this stamp.
T0 = 1_700_000_000.0
T0_STAMP = "[2023-11-14 22:13:20 UTC]"
#: The time of the README's example offline message.
README_TIME = float(calendar.timegm((2026, 11, 21, 2, 25, 53, 0, 0, 0)))

BROADCAST_USAGE = "broadcast message TEXT | broadcast user USER [USER ...] message TEXT"
WHOLAST_USAGE = "wholast N   (N = minutes, 0 to 60)"
HISTORY_USAGE = "history [#ROOM | USER] [N]   (the last N messages, 20 if not given)"
MESSAGE_USAGE = "message USER TEXT | message #ROOM TEXT"

BIDI_REFUSED = (
    "Characters that change the direction of text (such as U+202E) are not allowed; that line was ignored."
)


def private(sender: str, text: str, at: float = T0, to: tuple[str, ...] = ()) -> Delivery:
    return Delivery(sender, text, Kind.PRIVATE, at, "m-1", to)


def broadcast(sender: str, text: str, at: float = T0, to: tuple[str, ...] = ()) -> Delivery:
    return Delivery(sender, text, Kind.BROADCAST, at, "m-2", to)


def stored(delivery: Delivery, recipient: str = "seas") -> StoredMessage:
    return StoredMessage(1, recipient, delivery)


def all_help() -> Help:
    """The help event a session sends for C{help}: every command, in the grammar's order."""
    limits = Limits()
    return Help(
        tuple(
            HelpTopic(name, commands.usage(name, limits), commands.COMMANDS[name].summary)
            for name in commands.PUBLIC_NAMES
        )
    )


class LoginTextTests(unittest.TestCase):
    def test_welcome_names_the_user(self) -> None:
        self.assertEqual(render(Welcome("columbia")), "Login successful. Welcome to chat, columbia!")

    def test_welcome_is_followed_by_the_command_prompt_in_one_write(self) -> None:
        self.assertEqual(
            encode(Welcome("columbia"), Ask.COMMAND),
            b"Login successful. Welcome to chat, columbia!\r\nCommand: ",
        )

    def test_every_refusal_has_its_sentence(self) -> None:
        """
        Each reason a login fails has the wording the server sent before
        refusals were values; a new reason without a sentence fails here.
        """
        expected = {
            Refusal.INVALID: "Invalid username or password.",
            Refusal.BLOCKED: (
                "columbia is blocked from your address for 45 more seconds "
                "after too many failed logins. Disconnecting."
            ),
            Refusal.ALREADY_ONLINE: "columbia is already logged in; a second session is not allowed.",
            Refusal.BUSY: "The server is busy checking other logins; please try again in a moment.",
            Refusal.CHECKING: (
                "Too many logins for columbia from your address are being checked; "
                "please try again in a moment."
            ),
            Refusal.SERVER_ERROR: "Login failed because of a server error; please try again.",
            Refusal.EXPIRED: "Your session has expired; please log in again.",
            Refusal.REUSED: (
                "That session was resumed already, perhaps in another tab; please log in again."
            ),
            Refusal.UNAVAILABLE: (
                "The server cannot reach its database right now; please try again in a moment."
            ),
        }
        self.assertEqual(set(expected), set(Refusal))
        for reason, sentence in expected.items():
            self.assertEqual(render(LoginRefused(reason, "columbia", 45)), sentence, reason)

    def test_a_failed_login_asks_for_the_username_again(self) -> None:
        self.assertEqual(
            encode(LoginRefused(Refusal.INVALID, "columbia"), Ask.USERNAME),
            b"Invalid username or password.\r\nUsername: ",
        )

    def test_a_blocked_login_has_no_prompt_after_it(self) -> None:
        """The connection closes after a block, so nothing is asked."""
        self.assertEqual(
            encode(LoginRefused(Refusal.BLOCKED, "columbia", 60)),
            b"columbia is blocked from your address for 60 more seconds "
            b"after too many failed logins. Disconnecting.\r\n",
        )


class MessageTextTests(unittest.TestCase):
    def test_a_private_message_as_it_arrives(self) -> None:
        self.assertEqual(
            render(private("columbia", "mo mo da!", to=("seas",))), "columbia (private): mo mo da!"
        )

    def test_a_broadcast_as_it_arrives(self) -> None:
        self.assertEqual(render(broadcast("columbia", "cao cao da!!")), "columbia (broadcast): cao cao da!!")

    def test_one_offline_message_is_said_in_the_singular_with_its_time(self) -> None:
        self.assertEqual(
            render(Offline((stored(private("columbia", "hello")),))),
            f"You have 1 offline message:\n{T0_STAMP} columbia (private): hello",
        )

    def test_the_readme_example_of_an_offline_message(self) -> None:
        self.assertEqual(
            encode(Offline((stored(private("columbia", "mo mo da!", README_TIME)),)), Ask.COMMAND),
            b"You have 1 offline message:\r\n"
            b"[2026-11-21 02:25:53 UTC] columbia (private): mo mo da!\r\n"
            b"Command: ",
        )

    def test_several_offline_messages_are_listed_oldest_first_in_the_plural(self) -> None:
        messages = (
            stored(private("columbia", "one")),
            stored(broadcast("google", "two", T0 + 61, ("seas",))),
        )
        self.assertEqual(
            render(Offline(messages)),
            "You have 2 offline messages:\n"
            f"{T0_STAMP} columbia (private): one\n"
            "[2023-11-14 22:14:21 UTC] google (broadcast): two",
        )

    def test_no_history_yet(self) -> None:
        self.assertEqual(render(History("columbia", ())), "No messages yet.")

    def test_history_names_the_recipients_of_what_the_owner_sent(self) -> None:
        """
        A message the owner sent is shown with whom it went to, since the
        owner's name alone would not say; messages received, and broadcasts
        to everyone, read as they did when they arrived.
        """
        history = History(
            "columbia",
            (
                private("columbia", "mo mo da!", to=("seas",)),
                private("seas", "hi back", T0 + 60, ("columbia",)),
                broadcast("columbia", "hi both", T0 + 120, ("seas", "google")),
                broadcast("columbia", "hi all", T0 + 180),
                broadcast("google", "hey", T0 + 240),
            ),
        )
        self.assertEqual(
            render(history),
            "Your last 5 messages:\n"
            f"{T0_STAMP} columbia to seas (private): mo mo da!\n"
            "[2023-11-14 22:14:20 UTC] seas (private): hi back\n"
            "[2023-11-14 22:15:20 UTC] columbia to seas, google (broadcast): hi both\n"
            "[2023-11-14 22:16:20 UTC] columbia (broadcast): hi all\n"
            "[2023-11-14 22:17:20 UTC] google (broadcast): hey",
        )

    def test_a_history_of_one_message_is_said_in_the_singular(self) -> None:
        self.assertEqual(
            render(History("seas", (private("columbia", "mo mo da!", to=("seas",)),))),
            f"Your last 1 message:\n{T0_STAMP} columbia (private): mo mo da!",
        )


class ReceiptTextTests(unittest.TestCase):
    def test_sent_to_one_online_user(self) -> None:
        self.assertEqual(render(Receipt(("seas",), ())), "Sent to seas.")

    def test_sent_to_several_online_users(self) -> None:
        self.assertEqual(render(Receipt(("seas", "google"), ())), "Sent to seas, google.")

    def test_one_offline_recipient_is_said_in_the_singular(self) -> None:
        self.assertEqual(
            render(Receipt((), ("seas",))),
            "seas is offline; the message will be delivered when they next log in.",
        )

    def test_several_offline_recipients_are_said_in_the_plural(self) -> None:
        self.assertEqual(
            render(Receipt((), ("seas", "google"))),
            "seas, google are offline; the message will be delivered when they next log in.",
        )

    def test_some_online_and_some_offline(self) -> None:
        self.assertEqual(
            render(Receipt(("google",), ("seas",))),
            "Sent to google. seas is offline; the message will be delivered when they next log in.",
        )

    def test_nobody_to_send_to(self) -> None:
        """C{broadcast user columbia message x}, from columbia, reaches nobody."""
        self.assertEqual(render(Receipt((), ())), "Nobody to send to.")

    def test_a_broadcast_counts_its_recipients_in_the_plural(self) -> None:
        self.assertEqual(render(Broadcasted(2)), "Broadcast to 2 users.")

    def test_a_broadcast_to_one_user_is_said_in_the_singular(self) -> None:
        self.assertEqual(render(Broadcasted(1)), "Broadcast to 1 user.")

    def test_a_broadcast_that_reached_no_one_says_so(self) -> None:
        self.assertEqual(render(Broadcasted(0)), "Nobody else is online; the broadcast reached no one.")


class RosterTextTests(unittest.TestCase):
    def test_whoelse_with_nobody_else(self) -> None:
        self.assertEqual(encode(Roster(()), Ask.COMMAND), b"Nobody else is online.\r\nCommand: ")

    def test_whoelse_aligns_the_intros_after_the_longest_name(self) -> None:
        roster = Roster((RosterEntry("google", None, True), RosterEntry("seas", "summer is over", True)))
        self.assertEqual(encode(roster), b"Online now (2):\r\n  google\r\n  seas    <summer is over>\r\n")

    def test_whoelse_with_one_user(self) -> None:
        self.assertEqual(render(Roster((RosterEntry("seas", None, True),))), "Online now (1):\n  seas")

    def test_wholast_with_nobody_says_the_span(self) -> None:
        self.assertEqual(render(Roster((), 5)), "Nobody else was online in the last 5 minutes.")

    def test_wholast_of_one_minute_is_said_in_the_singular(self) -> None:
        self.assertEqual(render(Roster((), 1)), "Nobody else was online in the last 1 minute.")
        self.assertEqual(
            render(Roster((RosterEntry("seas", None, True),), 1)), "Online in the last 1 minute (1):\n  seas"
        )

    def test_the_readme_example_of_wholast(self) -> None:
        roster = Roster((RosterEntry("columbia", None, False, T0),), 10)
        self.assertEqual(render(roster), "Online in the last 10 minutes (1):\n  columbia  (offline)")

    def test_wholast_marks_offline_users_after_their_intro(self) -> None:
        roster = Roster(
            (
                RosterEntry("google", None, True),
                RosterEntry("seas", "summer is over", False, T0),
                RosterEntry("csee4119", "Teaching networks", True),
            ),
            10,
        )
        self.assertEqual(
            render(roster),
            "Online in the last 10 minutes (3):\n"
            "  google\n"
            "  seas      <summer is over>  (offline)\n"
            "  csee4119  <Teaching networks>",
        )


class MultiLineTextTests(unittest.TestCase):
    """A message of several lines (sent over JSON), as a terminal shows it."""

    def test_each_further_line_is_marked_as_continuing_the_message(self) -> None:
        d = private("seas", "def f():\n    return 1\n\nseas (private): not a message")
        self.assertEqual(
            TEXT.delivery(d),
            b"seas (private): def f():\r\n  |     return 1\r\n  | \r\n  | seas (private): not a message\r\n",
        )
        self.assertEqual(TEXT.delivery(d).decode(), encode(d).decode())

    def test_history_and_offline_messages_show_them_the_same_way(self) -> None:
        d = private("seas", "one\ntwo")
        self.assertEqual(
            render(History("columbia", (d,))),
            f"Your last 1 message:\n{T0_STAMP} seas (private): one\n  | two",
        )
        self.assertIn("seas (private): one\n  | two", render(Offline((stored(d),))))


class SearchTextTests(unittest.TestCase):
    def test_hits_are_listed_newest_first_with_their_conversation(self) -> None:
        room = Delivery("seas", "deploy at 5", Kind.ROOM, T0 + 60, "r1", (), "#Dev")
        mine = Delivery("columbia", "Deploy done?", Kind.BROADCAST, T0, "g1", ("seas", "google"))
        found = events.SearchResults(
            "deploy",
            ("deploy",),
            (events.SearchHit("#dev", "#Dev", room), events.SearchHit("@seas", "seas", mine)),
            True,
            "columbia",
        )
        self.assertEqual(
            render(found),
            "Found 2 messages with 'deploy', newest first:\n"
            "  in #Dev: [2023-11-14 22:14:20 UTC] seas (#Dev): deploy at 5\n"
            f"  in seas: {T0_STAMP} columbia to seas, google (broadcast): Deploy done?\n"
            "(only the newest 2 are shown: add a word to narrow the search)",
        )

    def test_nothing_found_says_what_was_looked_for(self) -> None:
        nothing = events.SearchResults("Deploy  prod", ("deploy", "prod"), (), False, "columbia")
        self.assertEqual(render(nothing), "No messages with 'deploy prod'.")


class HelpTextTests(unittest.TestCase):
    def test_help_lists_every_command_a_user_may_run_with_its_usage_and_summary(self) -> None:
        self.assertEqual(
            encode(all_help(), Ask.COMMAND).decode(),
            "Commands:\r\n"
            "  whoelse\r\n"
            "      who else is online now, with their personal intros\r\n"
            f"  {WHOLAST_USAGE}\r\n"
            "      who was online in the last N minutes\r\n"
            f"  {BROADCAST_USAGE}\r\n"
            "      send TEXT to everyone online, or to the listed users\r\n"
            f"  {MESSAGE_USAGE}\r\n"
            "      send TEXT to USER alone (kept for them if they are offline), or to a room you are in\r\n"
            "  personalintro [TEXT]\r\n"
            "      set the intro others see in whoelse and wholast\r\n"
            f"  {HISTORY_USAGE}\r\n"
            "      the messages you sent and received lately (or in one conversation), oldest first\r\n"
            "  search WORDS\r\n"
            "      the messages you can see that have all of WORDS, newest first\r\n"
            "  join #ROOM\r\n"
            "      join a room, making it if there is none\r\n"
            "  leave #ROOM\r\n"
            "      leave a room\r\n"
            "  rooms\r\n"
            "      every room, how many are in it, and whether you are\r\n"
            "  members #ROOM\r\n"
            "      who is in a room, and who of them is online\r\n"
            "  help [COMMAND]\r\n"
            "      this list, or the usage of one command\r\n"
            "  logout\r\n"
            "      leave the chat\r\n"
            "Command: ",
        )

    def test_help_for_one_command_is_its_usage_and_summary(self) -> None:
        """As in test_session's pipelined login: C{help logout}."""
        topic = Help((HelpTopic("logout", "logout", "leave the chat"),), single=True)
        self.assertEqual(encode(topic, Ask.COMMAND), b"Usage: logout\r\n  leave the chat\r\nCommand: ")

    def test_help_for_a_command_with_arguments(self) -> None:
        topic = Help(
            (HelpTopic("message", MESSAGE_USAGE, commands.COMMANDS["message"].summary),), single=True
        )
        self.assertEqual(
            render(topic),
            f"Usage: {MESSAGE_USAGE}\n"
            "  send TEXT to USER alone (kept for them if they are offline), or to a room you are in",
        )


class NoticeTextTests(unittest.TestCase):
    def test_every_note_has_its_sentence(self) -> None:
        expected = {
            Note.ASK_INTRO: "Please enter your personal introduction (an empty line keeps the current one):",
            Note.INTRO_SAVED: "Personal introduction saved.",
            Note.INTRO_UNCHANGED: "Personal introduction unchanged.",
            Note.OFFLINE_NOT_LOADED: (
                "Your offline messages could not be loaded now; they are kept for next time."
            ),
        }
        self.assertEqual(set(expected), set(Note))
        for note, sentence in expected.items():
            self.assertEqual(render(Notice(note)), sentence, note)

    def test_asking_for_the_intro_prompts_for_it(self) -> None:
        self.assertEqual(
            encode(Notice(Note.ASK_INTRO), Ask.INTRO),
            b"Please enter your personal introduction (an empty line keeps the current one):\r\nIntro: ",
        )

    def test_presence_as_a_sentence(self) -> None:
        """Not sent over TCP, but worded for logs and for edges that want a sentence."""
        self.assertEqual(render(Presence("seas", True, T0)), "seas is online.")
        self.assertEqual(render(Presence("seas", False, T0, "summer")), "seas is offline.")


class GoodbyeTextTests(unittest.TestCase):
    def test_every_reason_has_its_sentence(self) -> None:
        expected = {
            Reason.LOGOUT: (Goodbye(Reason.LOGOUT, "columbia"), "Goodbye, columbia!"),
            Reason.SHUTDOWN: (Goodbye(Reason.SHUTDOWN), "The server is shutting down. Goodbye."),
            Reason.IDLE: (
                Goodbye(Reason.IDLE, "columbia", 1800),
                "Logged out after 30 minutes without a command.",
            ),
            Reason.LOGIN_TIMEOUT: (
                Goodbye(Reason.LOGIN_TIMEOUT, seconds=30),
                "Login timed out after 30 seconds. Disconnecting.",
            ),
            Reason.FLOOD: (
                Goodbye(Reason.FLOOD, "columbia"),
                "Disconnected for sending too many commands too fast.",
            ),
            Reason.SERVER_ERROR: (
                Goodbye(Reason.SERVER_ERROR),
                "Login failed because of a server error. Disconnecting.",
            ),
            Reason.REPLACED: (
                Goodbye(Reason.REPLACED, "columbia"),
                "You were logged in again from somewhere else; this session is closed.",
            ),
            Reason.REMOVED: (
                Goodbye(Reason.REMOVED, "columbia"),
                "The user columbia no longer exists on this server; this session is closed.",
            ),
            Reason.KICKED: (
                Goodbye(Reason.KICKED, "seas", by="columbia", why="spamming"),
                "You were disconnected by the admin columbia: spamming",
            ),
        }
        self.assertEqual(set(expected), set(Reason))
        for reason, (event, sentence) in expected.items():
            self.assertEqual(render(event), sentence, reason)

    def test_timeouts_are_said_in_the_largest_whole_unit(self) -> None:
        self.assertEqual(
            render(Goodbye(Reason.LOGIN_TIMEOUT, seconds=60)),
            "Login timed out after 1 minute. Disconnecting.",
        )
        self.assertEqual(
            render(Goodbye(Reason.IDLE, "seas", 7200)), "Logged out after 2 hours without a command."
        )
        self.assertEqual(
            render(Goodbye(Reason.IDLE, "seas", 1)), "Logged out after 1 second without a command."
        )

    def test_a_goodbye_ends_the_line_and_prompts_for_nothing(self) -> None:
        self.assertEqual(encode(Goodbye(Reason.LOGOUT, "columbia")), b"Goodbye, columbia!\r\n")


class ErrorTextTests(unittest.TestCase):
    def parsed(self, line: str) -> str:
        """The sentence for what C{line}, typed at C{Command:}, is refused with."""
        result = commands.parse(line)
        self.assertIsInstance(result, (BadUsage, UnknownCommand, TooLong), line)
        return render(result)

    def test_unknown_command_with_a_close_command_suggests_it(self) -> None:
        self.assertEqual(self.parsed("whoeles"), "Unknown command 'whoeles'; did you mean 'whoelse'?")

    def test_unknown_command_with_nothing_close_points_to_help(self) -> None:
        self.assertEqual(
            self.parsed("xyzzy"), "Unknown command 'xyzzy'; type 'help' for the list of commands."
        )

    def test_help_for_an_unknown_command_is_an_unknown_command(self) -> None:
        self.assertEqual(self.parsed("help mesage"), "Unknown command 'mesage'; did you mean 'message'?")

    #: A line for every problem the parser reports, and its sentence.
    BAD_USAGE = (
        ("message seas", "missing_text", f"Missing message text. Usage: {MESSAGE_USAGE}"),
        ("broadcast message", "missing_text", f"Missing message text. Usage: {BROADCAST_USAGE}"),
        ("broadcast user seas message", "missing_text", f"Missing message text. Usage: {BROADCAST_USAGE}"),
        ("wholast", "one_number", f"wholast takes one number. Usage: {WHOLAST_USAGE}"),
        ("wholast 1 2", "one_number", f"wholast takes one number. Usage: {WHOLAST_USAGE}"),
        ("history 1 2", "one_number", f"history takes one number. Usage: {HISTORY_USAGE}"),
        ("wholast ten", "not_a_number", f"'ten' is not a whole number of minutes. Usage: {WHOLAST_USAGE}"),
        ("wholast -5", "not_a_number", f"'-5' is not a whole number of minutes. Usage: {WHOLAST_USAGE}"),
        ("history 0", "not_a_count", f"'0' is not a number of messages (1 or more). Usage: {HISTORY_USAGE}"),
        (
            "history seas all",
            "not_a_count",
            f"'all' is not a number of messages (1 or more). Usage: {HISTORY_USAGE}",
        ),
        ("wholast 61", "too_many_minutes", f"61 is more than 60 minutes. Usage: {WHOLAST_USAGE}"),
        (
            "broadcast user seas",
            "missing_message_word",
            f"Missing 'message' after the user names. Usage: {BROADCAST_USAGE}",
        ),
        (
            "broadcast user message hi",
            "no_recipients",
            f"No user names before 'message'. Usage: {BROADCAST_USAGE}",
        ),
        ("broadcast", "missing_mode", f"broadcast needs 'message' or 'user'. Usage: {BROADCAST_USAGE}"),
        (
            "broadcast columbia message diao diao da!!!",
            "bad_mode",
            f"'columbia' is not 'message' or 'user'. Usage: {BROADCAST_USAGE}",
        ),
        (
            "broadcast mesage hi",
            "bad_mode",
            f"'mesage' is not 'message' or 'user' (did you mean 'message'?). Usage: {BROADCAST_USAGE}",
        ),
        ("message", "missing_recipient", f"Missing recipient and text. Usage: {MESSAGE_USAGE}"),
        ("join #a #b", "one_room", "join takes one room name. Usage: join #ROOM"),
        ("whoelse now", "no_arguments", "whoelse takes no arguments. Usage: whoelse"),
        ("logout now", "no_arguments", "logout takes no arguments. Usage: logout"),
        ("help wholast logout", "one_topic", "help takes at most one command name. Usage: help [COMMAND]"),
        ("kick", "missing_user", "Missing user name. Usage: kick USER [REASON]"),
    )

    def test_every_usage_problem_of_the_parser_has_its_sentence(self) -> None:
        """
        Real lines through the real parser, so the sentence is checked for
        the problem the parser actually reports, with the fields it fills.
        """
        for line, problem, sentence in self.BAD_USAGE:
            result = commands.parse(line, admin=True)
            assert isinstance(result, BadUsage), (line, result)
            self.assertEqual(result.problem, problem, line)
            self.assertEqual(render(result), sentence, line)

    def test_every_problem_code_with_a_sentence_is_checked_above(self) -> None:
        """A problem code added to the wording without an example here fails."""
        self.assertEqual({problem for _, problem, _ in self.BAD_USAGE}, set(text._PROBLEMS))

    def test_wholast_over_the_limit_names_the_configured_limit(self) -> None:
        result = commands.parse("wholast 6", Limits(last_hour=5))
        self.assertEqual(render(result), "6 is more than 5 minutes. Usage: wholast N   (N = minutes, 0 to 5)")

    def test_a_message_over_the_limit(self) -> None:
        self.assertEqual(
            self.parsed("message seas " + "x" * 501),
            "Message too long: 501 characters; the limit is 500. Nothing was sent.",
        )

    def test_an_intro_over_the_limit(self) -> None:
        self.assertEqual(
            render(IntroTooLong(501, 500)),
            "Introduction too long: 501 characters; the limit is 500. Unchanged.",
        )

    def test_unknown_recipients_are_each_named_with_the_closest_user(self) -> None:
        self.assertEqual(
            render(UnknownUsers(("saes",), ("seas",))),
            "No user named 'saes'; did you mean 'seas'? Nothing was sent.",
        )
        self.assertEqual(
            render(UnknownUsers(("zzzzzz",), (None,))), "No user named 'zzzzzz'. Nothing was sent."
        )
        self.assertEqual(
            render(UnknownUsers(("saes", "zzzzzz"), ("seas", None))),
            "No user named 'saes'; did you mean 'seas'? No user named 'zzzzzz'. Nothing was sent.",
        )

    def test_rate_limit_in_the_plural_and_the_singular(self) -> None:
        self.assertEqual(
            render(RateLimited(10.0)), "Slow down: at most 10 commands per second. That one was ignored."
        )
        self.assertEqual(
            render(RateLimited(1.0)), "Slow down: at most 1 command per second. That one was ignored."
        )
        self.assertEqual(
            render(RateLimited(2.5)), "Slow down: at most 2.5 commands per second. That one was ignored."
        )

    def test_a_line_over_the_limit(self) -> None:
        self.assertEqual(
            encode(LineTooLong(4096), Ask.COMMAND),
            b"That line is longer than 4096 bytes; it was ignored.\r\nCommand: ",
        )

    def test_too_many_connections(self) -> None:
        self.assertEqual(
            encode(TooManyConnections(3)), b"Too many connections from your address (limit 3).\r\n"
        )

    def test_every_fault_has_its_sentence(self) -> None:
        expected = {
            Fault.CONTROL_CHARACTERS: "Control characters are not allowed; that line was ignored.",
            Fault.DIRECTION_CONTROLS: BIDI_REFUSED,
            Fault.NOT_UTF8: "That line is not valid UTF-8 text; it was ignored.",
            Fault.LINE_SEPARATORS: (
                "Line and paragraph separators (U+2028, U+2029) are not allowed; that line was ignored."
            ),
            Fault.INVISIBLE_CHARACTERS: (
                "Invisible characters (such as zero-width spaces) are not allowed; that line was ignored."
            ),
            Fault.STACKED_MARKS: "More than 4 accents on one letter are not allowed; that line was ignored.",
            Fault.SPACE_RUN: "More than 16 spaces in a row are not allowed; that line was ignored.",
            Fault.TOO_MANY_LINES: "A message may have at most 50 lines; nothing was sent.",
            Fault.BAD_USERNAME: "A username is a single word; please try again.",
            Fault.SELF_MESSAGE: "That is you; send a message to someone else.",
            Fault.NOT_STORED: (
                "The message could not be stored for offline users, so it was not kept; please try again."
            ),
            Fault.INTRO_NOT_SAVED: "Your introduction could not be saved; please try again.",
            Fault.HISTORY_UNAVAILABLE: "Your history could not be loaded now; please try again.",
            Fault.SERVER_ERROR: "Sorry, that failed because of a server error; please try again.",
            Fault.BUSY: "Still working on your previous command; that line was ignored.",
            Fault.UNAVAILABLE: (
                "The server cannot reach its database right now, so that was not done; please try again."
            ),
        }
        self.assertEqual(set(expected), set(Fault))
        for fault, sentence in expected.items():
            self.assertEqual(render(Failed(fault)), sentence, fault)

    def test_a_bad_username_asks_for_the_username_again(self) -> None:
        self.assertEqual(
            encode(Failed(Fault.BAD_USERNAME), Ask.USERNAME),
            b"A username is a single word; please try again.\r\nUsername: ",
        )


class EncodeTests(unittest.TestCase):
    def test_every_prompt(self) -> None:
        sentence = b"Control characters are not allowed; that line was ignored.\r\n"
        event = Failed(Fault.CONTROL_CHARACTERS)
        self.assertEqual(encode(event, Ask.USERNAME), sentence + b"Username: ")
        self.assertEqual(encode(event, Ask.PASSWORD), sentence + b"Password: ")
        self.assertEqual(encode(event, Ask.COMMAND), sentence + b"Command: ")
        self.assertEqual(encode(event, Ask.INTRO), sentence + b"Intro: ")
        self.assertEqual(encode(event), sentence)

    def test_the_answer_to_a_private_message_is_the_same_bytes_for_every_message(self) -> None:
        # Made once per name and prompt, whatever the message's id and time.
        first = encode(Receipt(("seas",), (), "a-1", 1.0), Ask.COMMAND)
        self.assertEqual(first, b"Sent to seas.\r\nCommand: ")
        self.assertIs(encode(Receipt(("seas",), (), "a-2", 2.0), Ask.COMMAND), first)
        self.assertEqual(encode(Receipt(("seas",), ())), b"Sent to seas.\r\n")
        self.assertEqual(
            encode(Receipt(("seas",), (), failed=("google",)), Ask.COMMAND),
            b"Sent to seas. Not sent to google: the server cannot reach its database right now; "
            b"please send it to them again.\r\nCommand: ",
        )

    def test_the_answers_kept_are_bounded(self) -> None:
        for n in range(text._SENT_KEPT + 10):
            self.assertEqual(
                encode(Receipt((f"user{n}",), ()), Ask.COMMAND), f"Sent to user{n}.\r\nCommand: ".encode()
            )
        self.assertLessEqual(len(text._SENT), text._SENT_KEPT)

    def test_text_is_sent_as_utf8(self) -> None:
        self.assertEqual(
            encode(private("columbia", "the café on 116th, 日本語")),
            "columbia (private): the café on 116th, 日本語\r\n".encode(),
        )

    def test_every_event_type_has_a_sentence(self) -> None:
        """
        Each kind of event a session can emit renders to some text; an event
        type added without a sentence fails here rather than at a user.
        """
        samples: dict[type, object] = {
            Welcome: Welcome("columbia"),
            LoginRefused: LoginRefused(Refusal.INVALID, "columbia"),
            Offline: Offline((stored(private("columbia", "hi")),)),
            Arrived: Arrived((stored(private("columbia", "hi")),)),
            History: History("columbia", ()),
            Roster: Roster(()),
            Receipt: Receipt(("seas",), ()),
            Broadcasted: Broadcasted(1),
            Help: all_help(),
            Notice: Notice(Note.INTRO_SAVED),
            Presence: Presence("seas", True, T0),
            Goodbye: Goodbye(Reason.SHUTDOWN),
            Delivery: private("columbia", "hi"),
            events.Sessions: events.Sessions((), T0),
            events.Kicked: events.Kicked("seas", 1, False),
            events.Announcement: events.Announcement("restart at noon", T0, "columbia"),
            events.Announced: events.Announced(3, False),
            events.RoomJoined: events.RoomJoined("#dev", True, 1),
            events.RoomLeft: events.RoomLeft("#dev"),
            events.RoomList: events.RoomList(()),
            events.RoomMembers: events.RoomMembers("#dev", ()),
            events.RoomReceipt: events.RoomReceipt("#dev", 0, 1),
            events.Unread: events.Unread((("#dev", 2),)),
            events.Conversations: events.Conversations(()),
            events.ConversationHistory: events.ConversationHistory("#dev", "#dev", (), False, "columbia"),
            events.SearchResults: events.SearchResults("deploy", ("deploy",), (), False, "columbia"),
            events.Typing: events.Typing("seas", "@seas"),
            events.UnknownRoom: events.UnknownRoom("#dve", "#dev"),
            events.BadRoomName: events.BadRoomName("#no!"),
            events.NotInRoom: events.NotInRoom("#dev"),
            UnknownCommand: UnknownCommand("x", None),
            BadUsage: commands.parse("wholast"),
            TooLong: TooLong(501, 500),
            IntroTooLong: IntroTooLong(501, 500),
            UnknownUsers: UnknownUsers(("x",), (None,)),
            RateLimited: RateLimited(10.0),
            LineTooLong: LineTooLong(4096),
            TooManyConnections: TooManyConnections(3),
            Failed: Failed(Fault.BUSY),
        }
        self.assertEqual(set(samples), set(typing.get_args(events.Event)))
        for kind, event in samples.items():
            self.assertIsInstance(event, kind)
            sentence = render(event)
            self.assertTrue(sentence and not sentence.endswith("\n"), (kind, sentence))

    def test_anything_else_has_no_sentence(self) -> None:
        self.assertRaises(TypeError, render, object())


class TextFormatTests(unittest.TestCase):
    def test_a_delivery_is_its_line_and_crlf(self) -> None:
        self.assertEqual(
            TEXT.delivery(private("columbia", "hi", to=("seas",))), b"columbia (private): hi\r\n"
        )
        self.assertEqual(
            TEXT.delivery(broadcast("columbia", "cao cao da!!")), b"columbia (broadcast): cao cao da!!\r\n"
        )

    def test_a_delivery_is_the_same_bytes_as_its_event(self) -> None:
        """Fan-out and a single send must not read differently."""
        d = broadcast("columbia", "héllo")
        self.assertEqual(TEXT.delivery(d), encode(d))
        self.assertEqual(TEXT.event(d), encode(d))

    def test_join_keeps_the_order_in_one_write(self) -> None:
        """As test_session's broadcasts in one read reach a recipient in one write."""
        one = TEXT.delivery(broadcast("columbia", "one"))
        two = TEXT.delivery(broadcast("columbia", "two"))
        self.assertEqual(TEXT.join([one, two]), b"columbia (broadcast): one\r\ncolumbia (broadcast): two\r\n")
        self.assertEqual(TEXT.join([]), b"")

    def test_a_terminal_is_not_told_who_comes_and_goes(self) -> None:
        self.assertFalse(TEXT.presence)
