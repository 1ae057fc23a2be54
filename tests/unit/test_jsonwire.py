"""
The WebSocket protocol's messages, alone: events as JSON objects, whole
server frames, and requests parsed from whatever a browser (or anyone else)
sends.

The JSON is parsed and compared as values, so the tests say what a client
can rely on (types, fields, the sentence a terminal would show) and not how
the server happens to space it.
"""

from __future__ import annotations

import json
import struct
import typing
from typing import Any

import wsproto
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest
from wsproto.events import TextMessage

from chat import __version__
from chat.server import commands, events
from chat.server.commands import Limits
from chat.server.edges import jsonwire, text
from chat.server.edges.jsonwire import (
    JSON,
    MAX_DEPTH,
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    Ack,
    Active,
    BadRequest,
    IsTyping,
    Line,
    Login,
    Resume,
    as_json,
    frame,
    parse_request,
    too_deep,
)
from chat.server.events import (
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

T0 = 1_700_000_000.0
LIMITS = Limits()
MESSAGE_USAGE = commands.usage("message", LIMITS)
BROADCAST_USAGE = commands.usage("broadcast", LIMITS)


def decode_frames(data: bytes) -> list[str]:
    """The text messages in C{data}, read as a browser reads a server's frames."""
    client = wsproto.Connection(wsproto.ConnectionType.CLIENT)
    client.receive_data(data)
    messages: list[str] = []
    partial = ""
    for event in client.events():
        assert isinstance(event, TextMessage), event
        partial += event.data
        if event.message_finished:
            messages.append(partial)
            partial = ""
    assert partial == "", "an unfinished message"
    return messages


def json_of(event: Any) -> dict[str, Any]:
    """C{event} as a client reads it: rendered, then parsed."""
    value = json.loads(jsonwire.render(event))
    assert isinstance(value, dict)
    return value


def delivery(
    sender: str = "columbia",
    words: str = "hi",
    kind: Kind = Kind.PRIVATE,
    at: float = T0,
    id: str = "abc-1",
    to: tuple[str, ...] = (),
) -> Delivery:
    return Delivery(sender, words, kind, at, id, to)


class EventJsonTests(unittest.TestCase):
    def test_welcome(self) -> None:
        event = Welcome("columbia")
        self.assertEqual(json_of(event), {"type": "welcome", "name": "columbia", "text": text.render(event)})

    def test_a_refused_login_has_its_reason_code(self) -> None:
        for reason in Refusal:
            if reason is Refusal.BLOCKED:
                continue
            event = LoginRefused(reason, "columbia")
            self.assertEqual(
                json_of(event),
                {"type": "login_refused", "reason": reason.value, "text": text.render(event)},
                reason,
            )

    def test_a_blocked_login_says_for_how_long(self) -> None:
        event = LoginRefused(Refusal.BLOCKED, "columbia", 60)
        self.assertEqual(
            json_of(event),
            {"type": "login_refused", "reason": "blocked", "seconds": 60, "text": text.render(event)},
        )

    def test_a_message_has_its_id_sender_kind_text_and_time(self) -> None:
        """Recipients are not shown to recipients, as the text protocol does not show them."""
        event = delivery(to=("seas",))
        self.assertEqual(
            json_of(event),
            {
                "type": "message",
                "id": "abc-1",
                "from": "columbia",
                "kind": "private",
                "text": "hi",
                "time": T0,
            },
        )

    def test_a_broadcast_message(self) -> None:
        self.assertEqual(json_of(delivery(kind=Kind.BROADCAST))["kind"], "broadcast")

    def test_offline_messages_are_a_list_of_messages(self) -> None:
        first = delivery(words="one")
        second = delivery("google", "two", Kind.BROADCAST, at=T0 + 60, id="abc-2", to=("seas",))
        event = Offline((StoredMessage(1, "seas", first), StoredMessage(2, "seas", second)))
        self.assertEqual(
            json_of(event),
            {
                "type": "offline",
                "messages": [
                    {"id": "abc-1", "from": "columbia", "kind": "private", "text": "one", "time": T0},
                    {
                        "id": "abc-2",
                        "from": "google",
                        "kind": "broadcast",
                        "text": "two",
                        "time": T0 + 60,
                        # A broadcast to named users names them to each of them.
                        "to": ["seas"],
                    },
                ],
            },
        )

    def test_history_shows_recipients_of_the_owners_own_messages_only(self) -> None:
        sent = delivery(to=("seas",))
        received = delivery("seas", "back", id="abc-2", to=("columbia",))
        to_all = delivery(kind=Kind.BROADCAST, id="abc-3")
        self.assertEqual(
            json_of(History("columbia", (sent, received, to_all))),
            {
                "type": "history",
                "messages": [
                    {
                        "id": "abc-1",
                        "from": "columbia",
                        "kind": "private",
                        "text": "hi",
                        "time": T0,
                        "to": ["seas"],
                    },
                    {"id": "abc-2", "from": "seas", "kind": "private", "text": "back", "time": T0},
                    {
                        "id": "abc-3",
                        "from": "columbia",
                        "kind": "broadcast",
                        "text": "hi",
                        "time": T0,
                        "to": [],
                    },
                ],
            },
        )

    def test_an_empty_history(self) -> None:
        self.assertEqual(json_of(History("columbia", ())), {"type": "history", "messages": []})

    def test_whoelse_is_the_online_view_of_the_roster(self) -> None:
        event = Roster((RosterEntry("google", None, True), RosterEntry("seas", "summer", True)))
        self.assertEqual(
            json_of(event),
            {
                "type": "roster",
                "view": "online",
                "users": [
                    {"name": "google", "intro": None, "online": True, "last_seen": None},
                    {"name": "seas", "intro": "summer", "online": True, "last_seen": None},
                ],
            },
        )

    def test_wholast_is_the_recent_view_with_its_minutes_and_last_seen(self) -> None:
        event = Roster((RosterEntry("seas", None, False, T0 - 120),), 10)
        self.assertEqual(
            json_of(event),
            {
                "type": "roster",
                "view": "recent",
                "minutes": 10,
                "users": [{"name": "seas", "intro": None, "online": False, "last_seen": T0 - 120}],
            },
        )

    def test_an_empty_wholast_of_zero_minutes_still_says_its_minutes(self) -> None:
        self.assertEqual(
            json_of(Roster((), 0)), {"type": "roster", "view": "recent", "minutes": 0, "users": []}
        )

    def test_a_receipt_lists_who_has_it_and_who_will(self) -> None:
        event = Receipt(("google",), ("seas",), "ab12-7", 1700000000.5)
        self.assertEqual(
            json_of(event),
            {
                "type": "receipt",
                "delivered": ["google"],
                "stored": ["seas"],
                "id": "ab12-7",
                "time": 1700000000.5,
                "text": text.render(event),
            },
        )

    def test_a_broadcast_receipt_counts_its_recipients(self) -> None:
        for count in (0, 1, 2):
            event = Broadcasted(count, "ab12-8", 1700000001.0)
            self.assertEqual(
                json_of(event),
                {
                    "type": "receipt",
                    "broadcast": count,
                    "id": "ab12-8",
                    "time": 1700000001.0,
                    "text": text.render(event),
                },
                count,
            )

    def test_help_lists_name_usage_and_summary(self) -> None:
        event = Help(
            tuple(
                HelpTopic(n, commands.usage(n, LIMITS), commands.COMMANDS[n].summary)
                for n in commands.COMMAND_NAMES
            )
        )
        value = json_of(event)
        self.assertEqual(value["type"], "help")
        self.assertEqual([c["name"] for c in value["commands"]], list(commands.COMMAND_NAMES))
        self.assertEqual(
            value["commands"][1],
            {
                "name": "wholast",
                "usage": "wholast N   (N = minutes, 0 to 60)",
                "summary": "who was online in the last N minutes",
            },
        )

    def test_help_for_one_command(self) -> None:
        event = Help((HelpTopic("logout", "logout", "leave the chat"),), single=True)
        self.assertEqual(
            json_of(event),
            {
                "type": "help",
                "commands": [{"name": "logout", "usage": "logout", "summary": "leave the chat"}],
                "command": "logout",
            },
        )

    def test_every_notice_has_its_code_and_sentence(self) -> None:
        for note in Note:
            event = Notice(note)
            self.assertEqual(
                json_of(event), {"type": "notice", "code": note.value, "text": text.render(event)}
            )

    def test_presence(self) -> None:
        self.assertEqual(
            json_of(Presence("seas", True, T0, "summer")),
            {"type": "presence", "name": "seas", "online": True, "time": T0, "intro": "summer"},
        )
        self.assertEqual(
            json_of(Presence("seas", False, T0)),
            {"type": "presence", "name": "seas", "online": False, "time": T0, "intro": None},
        )

    def test_every_goodbye_has_its_reason_code_and_sentence(self) -> None:
        for reason in Reason:
            event = Goodbye(reason, "columbia", 1800)
            self.assertEqual(
                json_of(event),
                {"type": "goodbye", "reason": reason.value, "text": text.render(event)},
                reason,
            )

    def test_an_unknown_command_with_and_without_a_suggestion(self) -> None:
        event = UnknownCommand("whoeles", "whoelse")
        self.assertEqual(
            json_of(event),
            {
                "type": "error",
                "code": "unknown_command",
                "word": "whoeles",
                "suggestion": "whoelse",
                "text": text.render(event),
            },
        )
        bare = UnknownCommand("xyzzy", None)
        self.assertEqual(
            json_of(bare),
            {"type": "error", "code": "unknown_command", "word": "xyzzy", "text": text.render(bare)},
        )

    def test_bad_usage_carries_what_its_sentence_needs(self) -> None:
        event = commands.parse("wholast 61")
        self.assertEqual(
            json_of(event),
            {
                "type": "error",
                "code": "bad_usage",
                "command": "wholast",
                "problem": "too_many_minutes",
                "usage": "wholast N   (N = minutes, 0 to 60)",
                "number": 61,
                "limit": 60,
                "text": "61 is more than 60 minutes. Usage: wholast N   (N = minutes, 0 to 60)",
            },
        )

    def test_errors_with_numbers(self) -> None:
        cases: list[tuple[Any, dict[str, Any]]] = [
            (TooLong(501, 500), {"code": "too_long", "length": 501, "limit": 500}),
            (IntroTooLong(501, 500), {"code": "intro_too_long", "length": 501, "limit": 500}),
            (RateLimited(10.0), {"code": "rate_limited", "rate": 10.0}),
            (LineTooLong(4096), {"code": "line_too_long", "limit": 4096}),
            (TooManyConnections(3), {"code": "too_many_connections", "limit": 3}),
        ]
        for event, fields in cases:
            self.assertEqual(json_of(event), {"type": "error", "text": text.render(event), **fields}, event)

    def test_unknown_users_lists_each_name_with_its_suggestion_or_null(self) -> None:
        event = UnknownUsers(("saes", "zzzzzz"), ("seas", None))
        self.assertEqual(
            json_of(event),
            {
                "type": "error",
                "code": "unknown_user",
                "names": ["saes", "zzzzzz"],
                "suggestions": ["seas", None],
                "text": text.render(event),
            },
        )

    def test_every_fault_is_an_error_with_its_code_and_nothing_else(self) -> None:
        for fault in Fault:
            event = Failed(fault)
            self.assertEqual(
                json_of(event), {"type": "error", "code": fault.value, "text": text.render(event)}
            )

    def test_every_event_type_has_a_json_type(self) -> None:
        """An event type added without a JSON form fails here rather than at a browser."""
        for kind in typing.get_args(events.Event):
            self.assertIn(kind, as_json.registry, kind)

    def test_json_is_compact_and_text_is_not_escaped(self) -> None:
        """
        Every byte counts in a frame sent to every browser: no spaces
        between items, and text as UTF-8 rather than C{\\u} escapes.
        """
        self.assertEqual(
            jsonwire.render(delivery(words="café 日本語")),
            '{"type":"message","id":"abc-1","from":"columbia","kind":"private",'
            '"text":"café 日本語","time":1700000000.0}',
        )


class HelloAndPromptTests(unittest.TestCase):
    def test_hello_names_the_protocol_version_and_the_server(self) -> None:
        self.assertEqual(PROTOCOL_VERSION, 1)
        self.assertEqual(
            json.loads(jsonwire.hello(f"chat {__version__}")),
            {"type": "hello", "protocol": 1, "server": f"chat {__version__}"},
        )

    def test_hello_says_after_how_long_an_idle_user_is_logged_out(self) -> None:
        self.assertEqual(json.loads(jsonwire.hello("chat", 1800.0))["idle_timeout"], 1800.0)

    def test_the_username_prompt_asks_for_a_login(self) -> None:
        self.assertEqual(
            json.loads(jsonwire.prompt(Ask.USERNAME) or "null"), {"type": "prompt", "for": "login"}
        )

    def test_the_intro_prompt_asks_for_an_intro(self) -> None:
        self.assertEqual(json.loads(jsonwire.prompt(Ask.INTRO) or "null"), {"type": "prompt", "for": "intro"})

    def test_password_and_command_prompts_are_not_sent(self) -> None:
        """The password comes with the username, and commands may be sent at any time."""
        self.assertIsNone(jsonwire.prompt(Ask.PASSWORD))
        self.assertIsNone(jsonwire.prompt(Ask.COMMAND))


class FrameTests(unittest.TestCase):
    def assertFrame(self, payload: str, header: bytes) -> None:
        data = frame(payload)
        self.assertEqual(data[: len(header)], header)
        self.assertEqual(data[len(header) :], payload.encode())
        self.assertEqual(decode_frames(data), [payload])

    def test_a_short_payload_has_a_two_byte_header(self) -> None:
        self.assertFrame("", b"\x81\x00")
        self.assertFrame("x" * 125, b"\x81\x7d")

    def test_a_payload_of_126_to_65535_bytes_has_a_16_bit_length(self) -> None:
        self.assertFrame("x" * 126, b"\x81\x7e\x00\x7e")
        self.assertFrame("x" * 65535, b"\x81\x7e\xff\xff")

    def test_a_payload_over_65535_bytes_has_a_64_bit_length(self) -> None:
        self.assertFrame("x" * 65536, b"\x81\x7f" + struct.pack("!Q", 65536))
        self.assertFrame("y" * 200_000, b"\x81\x7f" + struct.pack("!Q", 200_000))

    def test_the_length_counts_utf8_bytes_not_characters(self) -> None:
        """124 characters of which one takes two bytes: 125 bytes, still the short form; one more is not."""
        self.assertFrame("é" + "x" * 123, b"\x81\x7d")
        self.assertFrame("é" + "x" * 124, b"\x81\x7e\x00\x7e")

    def test_frames_in_a_row_are_separate_messages(self) -> None:
        self.assertEqual(
            decode_frames(frame("one") + frame("x" * 300) + frame("three")), ["one", "x" * 300, "three"]
        )


class JsonFormatTests(unittest.TestCase):
    def test_a_delivery_is_a_whole_frame_of_its_message(self) -> None:
        d = delivery(to=("seas",))
        [message] = decode_frames(JSON.delivery(d))
        self.assertEqual(json.loads(message), json_of(d))

    def test_a_delivery_frame_is_the_same_as_the_events(self) -> None:
        """Fan-out and a single send must not read differently."""
        d = delivery(words="héllo", kind=Kind.BROADCAST)
        self.assertEqual(JSON.delivery(d), JSON.event(d))

    def test_join_keeps_every_frame_in_order(self) -> None:
        one, two = delivery(words="one"), delivery(words="two", id="abc-2")
        messages = decode_frames(JSON.join([JSON.delivery(one), JSON.delivery(two)]))
        self.assertEqual([json.loads(m)["text"] for m in messages], ["one", "two"])
        self.assertEqual(JSON.join([]), b"")

    def test_presence_is_a_frame_and_browsers_are_told_of_it(self) -> None:
        self.assertTrue(JSON.presence)
        [message] = decode_frames(JSON.event(Presence("seas", True, T0)))
        self.assertEqual(json.loads(message), json_of(Presence("seas", True, T0)))


def request(**fields: Any) -> Any:
    return parse_request(json.dumps(fields))


class RequestTests(unittest.TestCase):
    def test_login(self) -> None:
        self.assertEqual(
            request(type="login", username="columbia", password="116bway"), Login("columbia", "116bway")
        )

    def test_resume(self) -> None:
        self.assertEqual(request(type="resume", token="t0k3n"), Resume("t0k3n"))
        self.assertEqual(request(type="resume"), BadRequest("missing_field", "token"))
        self.assertNotIn("t0k3n", repr(Resume("t0k3n")))

    def test_a_login_does_not_show_its_password(self) -> None:
        self.assertNotIn("116bway", repr(Login("columbia", "116bway")))

    def test_line(self) -> None:
        self.assertEqual(request(type="line", text="whoelse"), Line("whoelse"))

    def test_a_message_to_one_user_is_a_private_message(self) -> None:
        self.assertEqual(
            request(type="message", to="seas", text="mo mo da!"), commands.Message("seas", "mo mo da!")
        )
        self.assertEqual(request(type="message", to=["seas"], text="hi"), commands.Message("seas", "hi"))

    def test_a_message_to_several_users_is_a_broadcast_to_them_each_once(self) -> None:
        self.assertEqual(
            request(type="message", to=["seas", "google", "seas"], text="hi both"),
            commands.BroadcastTo(("seas", "google"), "hi both"),
        )

    def test_a_broadcast_to_everyone(self) -> None:
        self.assertEqual(request(type="broadcast", text="cao cao da!!"), commands.Broadcast("cao cao da!!"))
        self.assertEqual(request(type="broadcast", text="hi", to=None), commands.Broadcast("hi"))

    def test_a_broadcast_to_some(self) -> None:
        self.assertEqual(
            request(type="broadcast", to=["seas", "google"], text="hi"),
            commands.BroadcastTo(("seas", "google"), "hi"),
        )
        self.assertEqual(
            request(type="broadcast", to="seas", text="hi"), commands.BroadcastTo(("seas",), "hi")
        )

    def test_text_is_trimmed(self) -> None:
        self.assertEqual(request(type="broadcast", text="  hi  "), commands.Broadcast("hi"))

    def test_whoelse(self) -> None:
        self.assertEqual(request(type="whoelse"), commands.WhoElse())

    def test_wholast(self) -> None:
        self.assertEqual(request(type="wholast", minutes=10), commands.WhoLast(10))
        self.assertEqual(request(type="wholast", minutes=0), commands.WhoLast(0))
        self.assertEqual(request(type="wholast", minutes=60), commands.WhoLast(60))

    def test_intro(self) -> None:
        self.assertEqual(
            request(type="intro", text="The best course ever"), commands.PersonalIntro("The best course ever")
        )

    def test_history_with_and_without_a_count(self) -> None:
        self.assertEqual(request(type="history"), commands.ShowHistory())
        self.assertEqual(request(type="history", count=None), commands.ShowHistory())
        self.assertEqual(request(type="history", count=5), commands.ShowHistory(5))

    def test_help_with_and_without_a_command(self) -> None:
        self.assertEqual(request(type="help"), commands.Help())
        self.assertEqual(request(type="help", command="wholast"), commands.Help("wholast"))
        self.assertEqual(request(type="help", command="WHOLAST"), commands.Help("wholast"))

    def test_logout(self) -> None:
        self.assertEqual(request(type="logout"), commands.Logout())

    def test_active_says_the_user_is_there(self) -> None:
        self.assertEqual(request(type="active"), Active())

    def test_ack_names_the_messages_received(self) -> None:
        self.assertEqual(request(type="ack", ids=["abc-1", "abc-2"]), Ack(("abc-1", "abc-2")))
        self.assertEqual(request(type="ack", ids=[]), Ack(()))
        self.assertEqual(request(type="ack"), BadRequest("missing_field", "ids"))
        self.assertEqual(
            request(type="ack", ids="abc-1"), BadRequest("wrong_type", "ids", "a list of message ids")
        )
        self.assertEqual(
            request(type="ack", ids=["abc-1", 2]), BadRequest("wrong_type", "ids", "a list of message ids")
        )

    def test_fields_a_request_does_not_use_are_ignored(self) -> None:
        """A newer client may send more; an older server goes on."""
        self.assertEqual(request(type="whoelse", extra=[1, 2]), commands.WhoElse())

    def test_every_request_type_is_covered_above(self) -> None:
        self.assertEqual(
            set(REQUEST_TYPES),
            {
                "login",
                "resume",
                "line",
                "message",
                "broadcast",
                "whoelse",
                "wholast",
                "intro",
                "history",
                "help",
                "logout",
                "active",
                "ack",
                "sessions",
                "kick",
                "announce",
                "join",
                "leave",
                "rooms",
                "members",
                "read",
                "conversations",
                "search",
                "typing",
            },
        )

    def test_a_typing_notice(self) -> None:
        self.assertEqual(request(type="typing", conversation="#dev"), IsTyping("#dev"))
        self.assertEqual(request(type="typing"), BadRequest("missing_field", "conversation"))

    def test_search_requests(self) -> None:
        self.assertEqual(
            request(type="search", text="Déploy  prod"), commands.Search("Déploy  prod", ("deploy", "prod"))
        )
        self.assertEqual(
            request(type="search", text="deploy", count=5, before="m1"),
            commands.Search("deploy", ("deploy",), 5, "m1"),
        )
        self.assertEqual(request(type="search", text="x", count=1000).count, commands.MAX_SEARCH_PAGE)
        self.assertEqual(request(type="search", text="  ").problem, "missing_text")
        self.assertEqual(request(type="search", text="?!").problem, "no_words")
        self.assertEqual(request(type="search", text="a b c d e f g h i").problem, "too_many_words")
        self.assertEqual(request(type="search", text="x", count=0).problem, "not_a_count")
        self.assertEqual(request(type="search"), BadRequest("missing_field", "text"))

    def test_rooms_requests(self) -> None:
        self.assertEqual(request(type="join", room="#Dev"), commands.Join("#Dev"))
        self.assertEqual(request(type="leave", room="#dev"), commands.Leave("#dev"))
        self.assertEqual(request(type="rooms"), commands.ListRooms())
        self.assertEqual(request(type="members", room="#dev"), commands.Members("#dev"))
        self.assertEqual(request(type="join", room="dev"), events.BadRoomName("dev"))
        self.assertEqual(request(type="join"), BadRequest("missing_field", "room"))
        self.assertEqual(request(type="message", room="#dev", text="hi"), commands.RoomMessage("#dev", "hi"))
        self.assertEqual(request(type="message", to=["#dev"], text="hi"), commands.RoomMessage("#dev", "hi"))

    def test_history_of_one_conversation_pages_by_message_id(self) -> None:
        self.assertEqual(
            request(type="history", conversation="#dev", count=50, before="abc-1"),
            commands.ShowHistory(50, "#dev", "abc-1"),
        )
        self.assertEqual(request(type="history", conversation="@seas"), commands.ShowHistory(20, "@seas"))
        self.assertEqual(request(type="history", before="abc-1"), BadRequest("missing_field", "conversation"))

    def test_read_names_conversations_and_maybe_a_time(self) -> None:
        self.assertEqual(request(type="read", conversation="#dev"), jsonwire.Read(("#dev",)))
        self.assertEqual(
            request(type="read", conversations=["#dev", "@seas"], until=12),
            jsonwire.Read(("#dev", "@seas"), 12.0),
        )
        self.assertEqual(request(type="read"), BadRequest("missing_field", "conversation"))
        self.assertEqual(
            request(type="read", conversation="#dev", until="soon"),
            BadRequest("wrong_type", "until", "a time"),
        )
        self.assertEqual(request(type="conversations"), jsonwire.ListConversations())

    def test_the_admins_requests_are_parsed_for_admins(self) -> None:
        def admin(**obj: Any) -> Any:
            return parse_request(json.dumps(obj), admin=True)

        self.assertEqual(admin(type="sessions"), commands.ListSessions())
        self.assertEqual(admin(type="kick", user="seas"), commands.Kick("seas", ""))
        self.assertEqual(admin(type="kick", user="seas", reason=" spam "), commands.Kick("seas", "spam"))
        self.assertEqual(admin(type="kick"), BadRequest("missing_field", "user"))
        self.assertEqual(admin(type="announce", text="restart at noon"), commands.Announce("restart at noon"))
        self.assertIsInstance(admin(type="announce", text=""), events.BadUsage)

    def test_the_admins_requests_are_unknown_types_to_everyone_else(self) -> None:
        """The same answer as a type that does not exist, so they do not advertise themselves."""
        for kind in ("sessions", "kick", "announce"):
            self.assertEqual(
                request(type=kind, user="seas", text="hi"), BadRequest("unknown_type", "type", kind)
            )
        self.assertEqual(request(type="help", command="kick"), events.UnknownCommand("kick", None))


class BadRequestTests(unittest.TestCase):
    def test_not_json(self) -> None:
        for data in ("", "{", "whoelse", "{'type': 'whoelse'}", '{"type": "whoelse",}'):
            self.assertEqual(parse_request(data), BadRequest("bad_json"), data)

    def test_json_nested_too_deep_for_the_parser_is_not_json(self) -> None:
        self.assertEqual(parse_request("[" * 100_000), BadRequest("bad_json"))

    def test_json_nested_deeper_than_any_request_is_refused_before_it_is_parsed(self) -> None:
        """
        Before: JSON 969 deep parsed, then raised RecursionError when the
        request was encoded again to look for lone surrogates, at the
        stack depth of a logged-in session's request.  Here at every depth
        from 850 to 1,050, called from as deep a stack as a session's.
        """
        for depth in range(850, 1051):
            payload = '{"type":"nosuch","x":' + "[" * depth + "]" * depth + "}"
            for stack in (0, 40, 80):
                self.assertEqual(at_stack_depth(stack, parse_request, payload), BadRequest("bad_json"))

    def test_the_depth_allowed_is_far_more_than_a_request_needs(self) -> None:
        deep = '{"type":"whoelse","x":' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "}"
        self.assertEqual(parse_request(deep), commands.WhoElse())
        deeper = '{"type":"whoelse","x":' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}"
        self.assertEqual(parse_request(deeper), BadRequest("bad_json"))

    def test_brackets_in_strings_do_not_count(self) -> None:
        text = "[{" * 100 + '\\" [[[ \\\\'
        self.assertEqual(
            parse_request(json.dumps({"type": "message", "to": "seas", "text": text})),
            commands.Message("seas", text.strip()),
        )

    def test_a_lone_surrogate_anywhere_is_refused_as_not_utf8(self) -> None:
        for data in (
            '{"type": "whoelse", "\\udc00": 1}',
            '{"type": "ack", "ids": ["a", ["\\ud800"]]}',
            '{"type": "whoelse", "x": {"y": [[["\\udfff"]]]}}',
        ):
            self.assertEqual(parse_request(data), Failed(Fault.NOT_UTF8), data)
        self.assertEqual(parse_request('{"type": "line", "text": "\\ud83d\\ude00"}'), Line("\U0001f600"))

    def test_not_an_object(self) -> None:
        for data in ("[]", '"whoelse"', "3", "null", "true", "NaN", '[{"type": "whoelse"}]'):
            self.assertEqual(parse_request(data), BadRequest("not_an_object"), data)

    def test_no_type(self) -> None:
        self.assertEqual(request(text="hi"), BadRequest("missing_field", "type"))
        self.assertEqual(request(type=None), BadRequest("missing_field", "type"))

    def test_a_type_that_is_not_a_string(self) -> None:
        for kind in (1, True, ["whoelse"], {"name": "whoelse"}):
            self.assertEqual(request(type=kind), BadRequest("wrong_type", "type", "a string"), kind)

    def test_an_unknown_type_is_named_up_to_64_characters(self) -> None:
        self.assertEqual(request(type="frobnicate"), BadRequest("unknown_type", "type", "frobnicate"))
        self.assertEqual(request(type="Whoelse"), BadRequest("unknown_type", "type", "Whoelse"))
        self.assertEqual(request(type="x" * 1000), BadRequest("unknown_type", "type", "x" * 64))

    def test_missing_fields(self) -> None:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"type": "login", "password": "p"}, "username"),
            ({"type": "login", "username": "columbia"}, "password"),
            ({"type": "line"}, "text"),
            ({"type": "message", "text": "hi"}, "to"),
            ({"type": "message", "to": None, "text": "hi"}, "to"),
            ({"type": "message", "to": "seas"}, "text"),
            ({"type": "broadcast"}, "text"),
            ({"type": "wholast"}, "minutes"),
            ({"type": "intro"}, "text"),
        ]
        for fields, name in cases:
            self.assertEqual(request(**fields), BadRequest("missing_field", name), fields)

    def test_fields_of_the_wrong_type(self) -> None:
        names = "a username or a list of usernames"
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"type": "login", "username": 1, "password": "p"}, "username", "a string"),
            ({"type": "login", "username": "columbia", "password": ["p"]}, "password", "a string"),
            ({"type": "line", "text": 5}, "text", "a string"),
            ({"type": "message", "to": 5, "text": "hi"}, "to", names),
            ({"type": "message", "to": [], "text": "hi"}, "to", names),
            ({"type": "message", "to": "", "text": "hi"}, "to", names),
            ({"type": "message", "to": ["seas", 5], "text": "hi"}, "to", names),
            ({"type": "message", "to": ["seas", ""], "text": "hi"}, "to", names),
            ({"type": "message", "to": "seas", "text": ["hi"]}, "text", "a string"),
            ({"type": "broadcast", "text": 1}, "text", "a string"),
            ({"type": "broadcast", "text": "hi", "to": {"seas": 1}}, "to", names),
            ({"type": "wholast", "minutes": "10"}, "minutes", "a whole number"),
            ({"type": "wholast", "minutes": 10.0}, "minutes", "a whole number"),
            ({"type": "wholast", "minutes": True}, "minutes", "a whole number"),
            ({"type": "intro", "text": False}, "text", "a string"),
            ({"type": "history", "count": "5"}, "count", "a whole number"),
            ({"type": "history", "count": False}, "count", "a whole number"),
            ({"type": "help", "command": 3}, "command", "a command name"),
        ]
        for fields, name, what in cases:
            self.assertEqual(request(**fields), BadRequest("wrong_type", name, what), fields)

    def test_empty_text_is_the_commands_usage_error(self) -> None:
        """The same event a typed C{message seas} gets, so both edges say the same."""
        self.assertEqual(
            request(type="message", to="seas", text="   "),
            BadUsage("message", "missing_text", MESSAGE_USAGE),
        )
        self.assertEqual(request(type="message", to="seas", text=""), commands.parse("message seas"))
        self.assertEqual(request(type="broadcast", text=""), commands.parse("broadcast message"))
        self.assertEqual(
            request(type="broadcast", to="seas", text=" "),
            BadUsage("broadcast", "missing_text", BROADCAST_USAGE),
        )
        self.assertEqual(
            request(type="intro", text=""),
            BadUsage("personalintro", "missing_text", commands.usage("personalintro", LIMITS)),
        )

    def test_text_over_the_limit_is_too_long(self) -> None:
        self.assertEqual(request(type="message", to="seas", text="x" * 501), TooLong(501, 500))
        self.assertEqual(request(type="broadcast", text="x" * 501), TooLong(501, 500))
        self.assertEqual(
            request(type="message", to="seas", text="x" * 500), commands.Message("seas", "x" * 500)
        )

    def test_the_limit_is_the_servers(self) -> None:
        data = json.dumps({"type": "broadcast", "text": "12345678901"})
        self.assertEqual(parse_request(data, Limits(max_message=10)), TooLong(11, 10))

    def test_an_intro_over_the_limit(self) -> None:
        self.assertEqual(request(type="intro", text="x" * 501), IntroTooLong(501, 500))

    def test_wholast_out_of_range_is_the_commands_usage_error(self) -> None:
        self.assertEqual(request(type="wholast", minutes=61), commands.parse("wholast 61"))
        self.assertEqual(
            request(type="wholast", minutes=61),
            BadUsage("wholast", "too_many_minutes", commands.usage("wholast", LIMITS), number=61, limit=60),
        )
        self.assertEqual(
            request(type="wholast", minutes=-1),
            BadUsage("wholast", "not_a_number", commands.usage("wholast", LIMITS), word="-1"),
        )

    def test_history_of_no_messages_is_a_usage_error(self) -> None:
        self.assertEqual(
            request(type="history", count=0),
            BadUsage("history", "not_a_count", commands.usage("history", LIMITS), word="0"),
        )

    def test_help_for_an_unknown_command(self) -> None:
        self.assertEqual(request(type="help", command="mesage"), UnknownCommand("mesage", "message"))

    def test_every_bad_request_has_a_sentence_and_its_field(self) -> None:
        errors = [
            (BadRequest("bad_json"), "That message is not JSON; it was ignored."),
            (BadRequest("not_an_object"), 'A message must be a JSON object with a "type"; it was ignored.'),
            (
                BadRequest("unknown_type", "type", "frobnicate"),
                "Unknown message type 'frobnicate'; it was ignored.",
            ),
            (BadRequest("missing_field", "text"), "The message has no 'text'; it was ignored."),
            (
                BadRequest("wrong_type", "minutes", "a whole number"),
                "'minutes' must be a whole number; the message was ignored.",
            ),
            (BadRequest("binary"), "Binary messages are not accepted; send JSON text."),
            (BadRequest("not_now", "type"), "You are logged in already; that login was ignored."),
            (BadRequest("login_first", "type"), 'Log in first: send a "login" message.'),
            (
                BadRequest("message_too_big", detail="4096"),
                "That message is longer than 4096 bytes; the connection is closed.",
            ),
        ]
        for error, sentence in errors:
            expected: dict[str, Any] = {"type": "error", "code": error.code, "text": sentence}
            if error.field is not None:
                expected["field"] = error.field
            self.assertEqual(json.loads(jsonwire.render_bad(error)), expected, error)


#: Any JSON value.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)

#: Values a field of some request takes, and some it should not.
field_values = (
    st.text()
    | st.lists(st.text(), max_size=4)
    | st.integers(min_value=-100, max_value=10**30)
    | st.sampled_from(list(commands.COMMAND_NAMES))
    | json_values
)

#: Objects shaped like requests, often with a real type and its fields.
request_objects = st.fixed_dictionaries(
    {"type": st.sampled_from(REQUEST_TYPES)},
    optional={
        name: field_values
        for name in ("username", "password", "text", "to", "minutes", "count", "command", "ids")
    },
) | st.dictionaries(st.text(), json_values, max_size=6)

OUTCOMES = (
    Login,
    Line,
    Active,
    Ack,
    jsonwire.Read,
    jsonwire.ListConversations,
    *commands.COMMAND_TYPES,
    BadRequest,
    BadUsage,
    TooLong,
    IntroTooLong,
    UnknownCommand,
    events.BadRoomName,
)


def at_stack_depth(frames: int, call: Any, *args: Any) -> Any:
    """C{call(*args)} from C{frames} frames deeper than here."""
    if frames == 0:
        return call(*args)
    return at_stack_depth(frames - 1, call, *args)


def depth_of(value: Any) -> int:
    """How deep arrays and objects nest in C{value}."""
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


#: Strings with what the depth scan must see past: brackets, quotes, backslashes.
tricky_text = st.text(alphabet='[]{}"\\:, ab\u00e9', max_size=12)

#: JSON values nested up to 30 deep, their strings full of brackets.
deep_values = st.recursive(
    st.none() | st.integers() | tricky_text,
    lambda children: st.lists(children, max_size=2) | st.dictionaries(tricky_text, children, max_size=2),
    max_leaves=40,
)


class ParseRequestPropertyTests(unittest.TestCase):
    def assertOutcome(self, result: object) -> None:
        """A request, a bad request or an error event, that can be answered."""
        self.assertIsInstance(result, OUTCOMES)
        if isinstance(result, BadRequest):
            jsonwire.render_bad(result)
        elif not isinstance(
            result,
            (Login, Line, Active, Ack, jsonwire.Read, jsonwire.ListConversations, *commands.COMMAND_TYPES),
        ):
            jsonwire.render(result)  # type: ignore[arg-type]

    @given(st.text())
    def test_any_text_is_answered_without_raising(self, data: str) -> None:
        self.assertOutcome(parse_request(data))

    @given(json_values)
    def test_any_json_value_is_answered_without_raising(self, value: Any) -> None:
        self.assertOutcome(parse_request(json.dumps(value)))

    @given(request_objects)
    def test_any_json_object_is_answered_without_raising(self, value: dict[str, Any]) -> None:
        self.assertOutcome(parse_request(json.dumps(value)))

    @given(deep_values, st.booleans())
    def test_the_depth_scan_measures_what_the_parser_would_build(self, value: Any, ascii: bool) -> None:
        data = json.dumps(value, ensure_ascii=ascii)
        self.assertEqual(too_deep(data), depth_of(value) > MAX_DEPTH, data)

    @given(
        st.lists(st.sampled_from(["[", "]", "{", "}", '"', "\\", ":", ",", "1", '"a":', " "]), max_size=400),
        st.integers(min_value=0, max_value=3000),
    )
    def test_any_brackets_at_any_depth_are_answered_without_raising(
        self, parts: list[str], depth: int
    ) -> None:
        data = "[" * depth + "".join(parts) + "]" * depth
        result = at_stack_depth(60, parse_request, data)
        self.assertOutcome(result)
        if depth > MAX_DEPTH:
            self.assertEqual(result, BadRequest("bad_json"))
