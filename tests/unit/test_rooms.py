"""
Rooms and conversations on one server, in process: the commands over TCP
and JSON, who gets a room's messages, unread counts and read markers,
history per conversation with paging.  (The stores' side: test_store.py;
across nodes and with real clients: tests/e2e/test_e2e_rooms.py.)
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from chat.server import commands, conversations
from chat.server.events import BadRoomName, Delivery, Kind
from tests.unit.harness import Connection, Harness, OutageStore
from tests.unit.test_web_edge import Browser, logged_in


def said(conn: Connection, line: str) -> str:
    """What C{line} got as its answer, up to and without the prompt; a second passes first."""
    conn.server.clock.advance(1)
    conn.read()
    conn.send(line)
    text = conn.read()
    assert text.endswith("Command: "), text
    return text[: -len("Command: ")]


def answers(browser: Browser, **request: Any) -> list[dict[str, Any]]:
    """What a request got as its answers; a second passes first."""
    browser.server.clock.advance(1)
    browser.read()
    browser.send(**request)
    return browser.read()


class RoomNameTests(unittest.TestCase):
    @given(st.from_regex(r"#[A-Za-z0-9_-]{1,32}", fullmatch=True))
    def test_every_name_of_the_rule_is_a_room(self, name: str) -> None:
        self.assertEqual(commands.parse(f"join {name}"), commands.Join(name))
        self.assertEqual(commands.parse(f"message {name} hi"), commands.RoomMessage(name, "hi"))

    # One word: whitespace anywhere (a trailing tab, say) ends the name the parser reads.
    @given(st.text(min_size=1, max_size=40).filter(lambda t: not any(c.isspace() for c in t)))
    def test_a_name_outside_the_rule_is_refused_with_the_rule(self, rest: str) -> None:
        name = "#" + rest
        if commands.ROOM_NAME.fullmatch(name):
            return
        parsed = commands.parse(f"join {name}")
        self.assertIsInstance(parsed, BadRoomName | commands.BadUsage)

    def test_a_name_too_long_or_with_other_characters_is_no_room(self) -> None:
        for bad in ("#" + "a" * 33, "#", "#dev!", "#dév"):
            self.assertEqual(commands.parse(f"join {bad}"), BadRoomName(bad))

    def test_history_names_a_room_a_user_or_nothing(self) -> None:
        self.assertEqual(commands.parse("history"), commands.ShowHistory())
        self.assertEqual(commands.parse("history 5"), commands.ShowHistory(5))
        self.assertEqual(commands.parse("history #dev"), commands.ShowHistory(conversation="#dev"))
        self.assertEqual(commands.parse("history #dev 3"), commands.ShowHistory(3, "#dev"))
        self.assertEqual(commands.parse("history seas 3"), commands.ShowHistory(3, "@seas"))
        self.assertEqual(commands.parse("history everyone"), commands.ShowHistory(conversation="everyone"))

    def test_conversations_are_named_from_each_side(self) -> None:
        key = conversations.pair("seas", "columbia")
        self.assertEqual(key, conversations.pair("columbia", "seas"))
        self.assertEqual(conversations.for_client(key, "columbia"), "@seas")
        self.assertEqual(conversations.for_client(key, "seas"), "@columbia")
        self.assertEqual(conversations.from_client("@seas", "columbia"), key)
        self.assertEqual(conversations.from_client("#Dev", "columbia"), "#dev")
        self.assertEqual(conversations.from_client("everyone", "columbia"), conversations.EVERYONE)
        self.assertIsNone(conversations.from_client("@columbia", "columbia"))

    def test_a_message_to_several_belongs_to_each_recipients_conversation_with_its_sender(self) -> None:
        sent = Delivery("columbia", "hi", Kind.BROADCAST, 1.0, "m", ("seas", "google"))
        self.assertEqual(
            conversations.of(sent),
            (conversations.pair("columbia", "seas"), conversations.pair("columbia", "google")),
        )


class RoomTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Harness()
        self.columbia = self.server.login("columbia")
        self.seas = self.server.login("seas")

    def test_the_first_join_makes_the_room_as_named_the_next_ones_join_it(self) -> None:
        self.assertEqual(said(self.columbia, "join #Dev"), "You made the room #Dev and joined it.\r\n")
        self.assertEqual(said(self.seas, "join #dev"), "You joined #Dev (2 members).\r\n")

    def test_a_room_made_on_another_node_not_yet_heard_of_here_is_joined_under_its_own_name(self) -> None:
        """
        In a cluster a join may come before the word that another node made
        the room: the room keeps the name it was made with, not the one typed.
        """
        store = self.server.store
        store.save_room("#dev", "#Dev")  # by a user of another node
        self.assertEqual(said(self.seas, "join #DEV"), "You joined #Dev (1 member).\r\n")
        self.assertEqual(said(self.columbia, "rooms"), "Rooms (1):\r\n  #Dev  1 member\r\n")

    def test_a_rooms_message_reaches_its_members_online_and_nobody_else(self) -> None:
        google = self.server.login("google")
        said(self.columbia, "join #dev")
        said(self.seas, "join #dev")
        google.read()
        answer = said(self.columbia, "message #dev standup in 5")
        self.assertEqual(answer, "Sent to #dev (1 of 1 other member online).\r\n")
        self.assertEqual(self.seas.read(), "\r\ncolumbia (#dev): standup in 5\r\n")
        self.assertEqual(google.read(), "")

    def test_only_members_send_to_a_room(self) -> None:
        said(self.columbia, "join #dev")
        self.assertEqual(said(self.seas, "message #dev hi"), "You are not in #dev; 'join #dev' first.\r\n")

    def test_an_unknown_room_is_answered_with_the_closest_one(self) -> None:
        said(self.columbia, "join #devops")
        self.assertEqual(
            said(self.columbia, "message #devop hi"), "No room named '#devop'; did you mean '#devops'?\r\n"
        )
        self.assertEqual(
            said(self.columbia, "members #zzz"),
            "No room named '#zzz'; 'rooms' lists them, 'join #zzz' makes it.\r\n",
        )

    def test_a_misspelled_message_command_still_gets_its_hint(self) -> None:
        said(self.columbia, "join #dev")
        self.assertEqual(
            said(self.columbia, "mesage #dev hi"), "Unknown command 'mesage'; did you mean 'message'?\r\n"
        )

    def test_a_bad_room_name_says_the_rule(self) -> None:
        self.assertEqual(
            said(self.columbia, "join #no!"),
            "'#no!' is not a room's name: a room is # and 1 to 32 letters, digits, '-' or '_'.\r\n",
        )

    def test_rooms_lists_every_room_with_its_size_and_members_marks_who_is_offline(self) -> None:
        said(self.columbia, "join #dev")
        said(self.seas, "join #dev")
        said(self.seas, "join #ops")
        self.seas.send("logout")
        self.seas.lose()
        self.assertEqual(
            said(self.columbia, "rooms"),
            "Rooms (2):\r\n  #dev  2 members  (you are in it)\r\n  #ops  1 member\r\n",
        )
        self.assertEqual(
            said(self.columbia, "members #dev"), "Members of #dev (2):\r\n  columbia\r\n  seas  (offline)\r\n"
        )

    def test_a_member_who_left_gets_nothing_more(self) -> None:
        said(self.columbia, "join #dev")
        said(self.seas, "join #dev")
        self.assertEqual(said(self.seas, "leave #dev"), "You left #dev.\r\n")
        said(self.columbia, "message #dev anyone?")
        self.assertEqual(self.seas.read(), "")
        self.assertEqual(said(self.seas, "leave #dev"), "You are not in #dev; 'join #dev' first.\r\n")

    def test_a_member_offline_is_told_at_login_how_much_is_unread_not_each_message(self) -> None:
        said(self.columbia, "join #dev")
        said(self.seas, "join #dev")
        self.seas.send("logout")
        self.seas.lose()
        for i in range(5):
            said(self.columbia, f"message #dev note {i}")
        seas = self.server.connect()
        seas.send("seas", "summerisover")
        self.assertEqual(
            seas.read(),
            "Username: Password: Login successful. Welcome to chat, seas!\r\n"
            "5 unread messages in #dev: 'history #dev 5' shows them.\r\n"
            "Command: ",
        )
        shown = said(seas, "history #dev 5")
        self.assertEqual(shown.count("columbia (#dev): note"), 5)
        seas.send("logout")
        seas.lose()
        # Read: nothing unread at the next login.
        again = self.server.connect()
        again.send("seas", "summerisover")
        self.assertNotIn("unread", again.read())

    def test_what_a_terminal_saw_live_is_not_unread_at_its_next_login(self) -> None:
        said(self.columbia, "join #dev")
        said(self.seas, "join #dev")
        said(self.columbia, "message #dev seen live")
        self.seas.send("logout")
        self.seas.lose()
        seas = self.server.connect()
        seas.send("seas", "summerisover")
        self.assertNotIn("unread", seas.read())

    def test_a_rooms_history_pages_back_by_message_id_to_the_first_kept(self) -> None:
        said(self.columbia, "join #dev")
        browser = logged_in(self.server, "google")
        answers(browser, type="join", room="#dev")
        for i in range(7):
            said(self.columbia, f"message #dev m{i}")
        [page] = answers(browser, type="history", conversation="#dev", count=3)
        self.assertEqual([m["text"] for m in page["messages"]], ["m4", "m5", "m6"])
        self.assertIs(page["more"], True)
        [older] = answers(
            browser, type="history", conversation="#dev", count=3, before=page["messages"][0]["id"]
        )
        self.assertEqual([m["text"] for m in older["messages"]], ["m1", "m2", "m3"])
        [first] = answers(
            browser, type="history", conversation="#dev", count=3, before=older["messages"][0]["id"]
        )
        self.assertEqual([m["text"] for m in first["messages"]], ["m0"])
        self.assertIs(first["more"], False)
        self.assertEqual(first["messages"][0]["room"], "#dev")

    def test_a_direct_conversation_shows_only_the_two_of_them(self) -> None:
        google = self.server.login("google")
        said(self.columbia, "message seas to seas")
        said(self.columbia, "message google to google")
        said(google, "broadcast message to all")
        shown = said(self.columbia, "history seas")
        self.assertIn("columbia (private): to seas", shown)
        self.assertNotIn("google", shown)
        self.assertTrue(shown.startswith("The last message in your conversation with seas:"))

    def test_history_of_someone_who_is_no_user_gets_the_closest_name_and_no_word_of_sending(self) -> None:
        self.assertEqual(
            said(self.columbia, "history seaz"), "No user named 'seaz'; did you mean 'seas'?\r\n"
        )

    def test_a_message_to_several_is_in_each_recipients_conversation_and_once_in_the_senders_history(
        self,
    ) -> None:
        google = self.server.login("google")
        said(self.columbia, "broadcast user seas google message to you two")
        self.assertIn("to you two", said(self.seas, "history columbia"))
        self.assertIn("to you two", said(google, "history columbia"))
        self.assertEqual(said(self.columbia, "history").count("to you two"), 1)
        self.assertIn("columbia to seas, google (broadcast): to you two", said(self.columbia, "history seas"))

    def test_joining_is_refused_while_the_store_is_down(self) -> None:
        store = OutageStore()
        server = Harness(store=store)
        columbia = server.login("columbia")
        store.down()
        self.assertIn("cannot reach its database", said(columbia, "join #dev"))


class PageConversationTests(unittest.TestCase):
    """What a page gets: conversations with unread counts, read markers, room messages as values."""

    def setUp(self) -> None:
        self.server = Harness()
        self.columbia = self.server.login("columbia")
        said(self.columbia, "join #dev")

    def test_a_room_message_names_its_room(self) -> None:
        seas = logged_in(self.server, "seas")
        answers(seas, type="join", room="#dev")
        said(self.columbia, "message #dev hello")
        [message] = seas.read()
        self.assertEqual(
            (message["type"], message["kind"], message["room"], message["text"]),
            ("message", "room", "#dev", "hello"),
        )

    def test_a_page_sends_to_a_room_and_gets_a_receipt(self) -> None:
        seas = logged_in(self.server, "seas")
        answers(seas, type="join", room="#dev")
        [receipt] = answers(seas, type="message", room="#dev", text="from the page")
        self.assertEqual((receipt["type"], receipt["room"], receipt["online"]), ("receipt", "#dev", 1))
        self.assertIn("seas (#dev): from the page", self.columbia.read())

    def test_conversations_come_with_their_unread_counts_which_a_read_clears_and_a_new_page_keeps(
        self,
    ) -> None:
        seas = logged_in(self.server, "seas")
        answers(seas, type="join", room="#dev")
        said(self.columbia, "message #dev one")
        said(self.columbia, "message #dev two")
        said(self.columbia, "message seas direct")
        [listed] = answers(seas, type="conversations")
        by_id = {c["id"]: c for c in listed["conversations"]}
        self.assertEqual((by_id["#dev"]["unread"], by_id["#dev"]["kind"]), (2, "room"))
        self.assertEqual((by_id["@columbia"]["unread"], by_id["@columbia"]["name"]), (1, "columbia"))
        # A reload: another page, told at once of the room's, and the same counts.
        seas.lose()
        again = Browser(self.server)
        again.login("seas")
        unread = again.read()[-1]
        self.assertEqual((unread["type"], unread["rooms"]), ("unread", {"#dev": 2}))
        [listed] = answers(again, type="conversations")
        self.assertEqual({c["id"]: c["unread"] for c in listed["conversations"]}["#dev"], 2)
        self.assertEqual(answers(again, type="read", conversation="#dev"), [])
        [listed] = answers(again, type="conversations")
        self.assertEqual({c["id"]: c["unread"] for c in listed["conversations"]}["#dev"], 0)

    def test_a_direct_conversation_never_read_keeps_its_count_through_reloads_and_later_logins(self) -> None:
        """
        Where the user has no read marker, counting starts when they were
        last away; their next login starts from a later time, so the
        session's end keeps the count with a marker.
        """
        seas = logged_in(self.server, "seas")
        said(self.columbia, "message seas while the page is open")
        [listed] = answers(seas, type="conversations")
        self.assertEqual(
            {c["id"]: c["unread"] for c in listed["conversations"]}, {"everyone": 0, "@columbia": 1}
        )
        for _ in range(2):
            seas.lose()
            self.server.clock.advance(60)
            seas = logged_in(self.server, "seas")
            [listed] = answers(seas, type="conversations")
            self.assertEqual({c["id"]: c["unread"] for c in listed["conversations"]}["@columbia"], 1)
        answers(seas, type="read", conversation="@columbia")
        seas.lose()
        seas = logged_in(self.server, "seas")
        [listed] = answers(seas, type="conversations")
        self.assertEqual({c["id"]: c["unread"] for c in listed["conversations"]}["@columbia"], 0)

    def test_what_a_terminal_showed_in_direct_conversations_is_read_at_its_logout(self) -> None:
        seas = self.server.login("seas")
        said(self.columbia, "message seas shown live")
        self.assertIn("columbia (private): shown live", seas.read())
        seas.send("logout")
        seas.lose()
        said(self.columbia, "message seas shown at login")
        seas = self.server.login("seas")
        seas.send("logout")
        seas.lose()
        page = logged_in(self.server, "seas")
        [listed] = answers(page, type="conversations")
        self.assertEqual({c["id"]: c["unread"] for c in listed["conversations"]}["@columbia"], 0)

    def test_a_read_up_to_a_time_leaves_what_came_after_unread(self) -> None:
        seas = logged_in(self.server, "seas")
        answers(seas, type="join", room="#dev")
        said(self.columbia, "message #dev early")
        seen_until = self.server.clock.seconds()
        self.server.clock.advance(5)
        said(self.columbia, "message #dev late")
        answers(seas, type="read", conversation="#dev", until=seen_until)
        [listed] = answers(seas, type="conversations")
        self.assertEqual({c["id"]: c["unread"] for c in listed["conversations"]}["#dev"], 1)

    def test_a_page_that_names_a_bad_conversation_is_told(self) -> None:
        seas = logged_in(self.server, "seas")
        [error] = answers(seas, type="history", conversation="#nope")
        self.assertEqual((error["type"], error["code"]), ("error", "unknown_room"))
        [error] = answers(seas, type="history", conversation="@nobody")
        self.assertEqual((error["type"], error["code"]), ("error", "unknown_user"))
