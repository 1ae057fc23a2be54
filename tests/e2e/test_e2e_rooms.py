"""
Rooms and conversations against real servers (issue 21): rooms made and
joined from the terminal and the WebSocket, on one server and on two nodes
sharing one real Redis; room messages reaching members only; the unread
line a member who was offline reads at login, and C{history #ROOM}; unread
counts kept by the server through a resume and a restart; paging a
conversation back to its first kept message.

The texts are the server's own, whole where it matters: the terminal's
answers up to the next prompt, the JSON messages by their fields.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.trial import unittest

from tests.e2e.support import (
    STAMP,
    USERNAME,
    WEB,
    Lab,
    LineClient,
    WebSocketClient,
    closing,
    delivered,
    drain,
    ws_drain,
)
from tests.e2e.test_e2e_cluster import PROPAGATION, Cluster, answer, eventually, login_now, settles, whoelse

# --- the terminal's texts ----------------------------------------------------------


def unread_line(room: str, count: int) -> str:
    """The line a terminal reads after the welcome, for one room with unread messages."""
    them = "it" if count == 1 else "them"
    messages = "message" if count == 1 else "messages"
    return f"{count} unread {messages} in {room}: 'history {room} {count}' shows {them}.\r\n"


async def say(client: LineClient, line: str) -> str:
    """Type C{line}; give the answer up to the next prompt (live messages included)."""
    return await answer(client, line)


async def room_history(client: LineClient, room: str, count: int | None = None) -> list[str]:
    """C{history ROOM [N]}: the lines shown, without their times; [] if none."""
    reply = await say(client, f"history {room}" + ("" if count is None else f" {count}"))
    if reply.startswith("No messages in "):
        return []
    heading, *lines = reply.splitlines()
    m = re.fullmatch(r"The last (?:(\d+) messages|message) in (\S+):", heading)
    if m is None:
        raise AssertionError(f"not a room's history: {reply!r}")
    if int(m.group(1) or 1) != len(lines):
        raise AssertionError(f"the heading does not count the lines: {reply!r}")
    for line in lines:
        if not re.match(STAMP + " ", line):
            raise AssertionError(f"a line without its time: {reply!r}")
    return [re.sub("^" + STAMP + " ", "", line) for line in lines]


async def login_shows(lab: Lab, port: int, name: str) -> tuple[LineClient, str]:
    """Log in as C{name}; give the client and what the server said from the welcome to the prompt."""
    client = await lab.connect(port)
    await client.expect(USERNAME)
    return client, await login_now(client, name)


def welcome(name: str) -> str:
    return f"Login successful. Welcome to chat, {name}!\r\n"


async def logout(client: LineClient) -> None:
    client.send("logout")
    await client.expect("Goodbye")
    await closing(client)


# --- the WebSocket's -------------------------------------------------------------


async def request(client: WebSocketClient, message: dict[str, Any], **answer: Any) -> dict[str, Any]:
    """Send C{message}; give the next message with the fields C{answer}."""
    client.send(message)
    return await client.expect(answer)


async def conversations(client: WebSocketClient) -> dict[str, int]:
    """The user's conversations as C{{id: unread}}."""
    listed = await request(client, {"type": "conversations"}, type="conversations")
    return {c["id"]: c["unread"] for c in listed["conversations"]}


async def resume(lab: Lab, web_port: int, token: str) -> WebSocketClient:
    """Open C{/ws} and resume with C{token}; the read position is then after the C{welcome}."""
    client = await lab.websocket(web_port)
    await client.expect({"type": "prompt", "for": "login"})
    client.send({"type": "resume", "token": token})
    await client.expect(type="welcome")
    return client


def latest_token(client: WebSocketClient) -> str:
    """The newest resume token C{client} was given."""
    tokens = [e["token"] for e in client.events if e.get("type") == "session"]
    assert tokens, "no session token yet"
    return str(tokens[-1])


def texts(events: list[dict[str, Any]]) -> list[str]:
    """The texts of the messages among C{events}."""
    return [e["text"] for e in events if e.get("type") == "message"]


class RoomsOnOneServerTests(unittest.TestCase):
    async def test_room_made_on_tcp_and_joined_on_websocket_reaches_its_members_only(self) -> None:
        lab = Lab(self)
        _, port, web = await lab.start_web()
        columbia = await lab.login(port, "columbia")
        seas = await lab.ws_login(web, "seas")
        google = await lab.login(port, "google")
        facebook = await lab.ws_login(web, "facebook")

        self.assertEqual(await say(columbia, "join #Dev"), "You made the room #Dev and joined it.\r\n")
        joined = await request(seas, {"type": "join", "room": "#dev"}, type="joined")
        self.assertEqual(
            (joined["room"], joined["created"], joined["members"], joined["text"]),
            ("#Dev", False, 2, "You joined #Dev (2 members)."),
        )

        # Terminal to room: the WebSocket member gets it, marked with the room.
        self.assertEqual(
            await say(columbia, "message #dev standup in 5"),
            "Sent to #Dev (1 of 1 other member online).\r\n",
        )
        message = await seas.expect(type="message", kind="room")
        self.assertEqual(
            (message["from"], message["room"], message["text"]), ("columbia", "#Dev", "standup in 5")
        )

        # WebSocket to room: the terminal member gets it.
        receipt = await request(
            seas, {"type": "message", "room": "#DEV", "text": "on my way"}, type="receipt"
        )
        self.assertEqual(
            (receipt["room"], receipt["online"], receipt["members"], receipt["text"]),
            ("#Dev", 1, 2, "Sent to #Dev (1 of 1 other member online)."),
        )
        await columbia.expect(delivered("seas", "#Dev", "on my way"))

        # Nobody else got either, and no sender got their own back.
        for client in (google, columbia):
            shown = await drain(client)
            self.assertNotIn("standup in 5", shown)
        self.assertNotIn("on my way", google.text)
        self.assertEqual(columbia.text.count("on my way"), 1)
        self.assertEqual(texts(await ws_drain(facebook)), [])
        self.assertEqual(texts(await ws_drain(seas)), [])
        self.assertEqual(texts(seas.events), ["standup in 5"])

    async def test_rooms_and_members_list_every_room_and_mark_who_is_online(self) -> None:
        lab = Lab(self)
        _, port, web = await lab.start_web()
        google = await lab.login(port, "google")
        self.assertEqual(await say(google, "rooms"), "There are no rooms yet; 'join #NAME' makes one.\r\n")
        columbia = await lab.login(port, "columbia")
        seas = await lab.ws_login(web, "seas")
        await say(columbia, "join #Dev")
        await request(seas, {"type": "join", "room": "#dev"}, type="joined")
        self.assertEqual(await say(google, "join #ops"), "You made the room #ops and joined it.\r\n")

        self.assertEqual(
            await say(google, "rooms"),
            "Rooms (2):\r\n  #Dev  2 members\r\n  #ops  1 member  (you are in it)\r\n",
        )
        rooms = await request(seas, {"type": "rooms"}, type="rooms")
        self.assertEqual(
            rooms["rooms"],
            [
                {"room": "#Dev", "members": 2, "joined": True},
                {"room": "#ops", "members": 1, "joined": False},
            ],
        )
        self.assertEqual(
            await say(google, "members #DEV"), "Members of #Dev (2):\r\n  columbia\r\n  seas\r\n"
        )

        # seas goes: still a member, marked offline; columbia leaves.
        seas.send({"type": "logout"})
        await closing(seas)
        self.assertEqual(
            await say(google, "members #dev"), "Members of #Dev (2):\r\n  columbia\r\n  seas  (offline)\r\n"
        )
        self.assertEqual(await say(columbia, "leave #dev"), "You left #Dev.\r\n")
        facebook = await lab.ws_login(web, "facebook")
        members = await request(facebook, {"type": "members", "room": "#dev"}, type="members")
        self.assertEqual((members["room"], members["members"]), ("#Dev", [{"name": "seas", "online": False}]))
        self.assertEqual(
            await say(columbia, "rooms"), "Rooms (2):\r\n  #Dev  1 member\r\n  #ops  1 member\r\n"
        )

    async def test_mistakes_about_rooms_get_hints_and_send_nothing(self) -> None:
        lab = Lab(self)
        _, port, web = await lab.start_web()
        columbia = await lab.login(port, "columbia")
        seas = await lab.ws_login(web, "seas")
        await say(columbia, "join #Dev")
        await request(seas, {"type": "join", "room": "#dev"}, type="joined")
        rule = "a room is # and 1 to 32 letters, digits, '-' or '_'."

        self.assertEqual(
            await say(columbia, "mesage #dev hi"), "Unknown command 'mesage'; did you mean 'message'?\r\n"
        )
        self.assertEqual(
            await say(columbia, "message #dve hi"), "No room named '#dve'; did you mean '#Dev'?\r\n"
        )
        self.assertEqual(
            await say(columbia, "members #deb"), "No room named '#deb'; did you mean '#Dev'?\r\n"
        )
        self.assertEqual(
            await say(columbia, "message #quarterly-planning hi"),
            "No room named '#quarterly-planning'; 'rooms' lists them,"
            " 'join #quarterly-planning' makes it.\r\n",
        )
        self.assertEqual(await say(columbia, "join dev"), f"'dev' is not a room's name: {rule}\r\n")
        long_name = "#" + "x" * 33
        self.assertEqual(
            await say(columbia, f"join {long_name}"), f"'{long_name}' is not a room's name: {rule}\r\n"
        )
        self.assertEqual(await say(columbia, "join #dev.ops"), f"'#dev.ops' is not a room's name: {rule}\r\n")

        # The same on the WebSocket, with the fields a program switches on.
        error = await request(seas, {"type": "message", "room": "#dve", "text": "hi"}, type="error")
        self.assertEqual(
            (error["code"], error["room"], error["suggestion"]), ("unknown_room", "#dve", "#Dev")
        )
        error = await request(seas, {"type": "join", "room": "dev"}, type="error")
        self.assertEqual((error["code"], error["room"]), ("bad_room_name", "dev"))
        line = await request(seas, {"type": "line", "text": "mesage #dev hi"}, type="error")
        self.assertEqual((line["code"], line["suggestion"]), ("unknown_command", "message"))

        # None of it was a message to anyone, nor made a room.
        self.assertEqual(texts(await ws_drain(seas)), [])
        self.assertNotIn("(#Dev)", await drain(columbia))
        self.assertEqual(await say(columbia, "rooms"), "Rooms (1):\r\n  #Dev  2 members  (you are in it)\r\n")

    async def test_sending_to_a_room_you_are_not_in_is_refused_and_reaches_nobody(self) -> None:
        lab = Lab(self)
        _, port, web = await lab.start_web()
        columbia = await lab.login(port, "columbia")
        seas = await lab.ws_login(web, "seas")
        google = await lab.login(port, "google")
        await say(columbia, "join #Dev")

        self.assertEqual(
            await say(google, "message #dev let me in"), "You are not in #Dev; 'join #Dev' first.\r\n"
        )
        error = await request(seas, {"type": "message", "room": "#dev", "text": "me too"}, type="error")
        self.assertEqual((error["code"], error["room"]), ("not_in_room", "#Dev"))
        # One who left is refused too.
        await request(seas, {"type": "join", "room": "#dev"}, type="joined")
        await request(seas, {"type": "leave", "room": "#dev"}, type="left")
        error = await request(
            seas, {"type": "message", "room": "#dev", "text": "after leaving"}, type="error"
        )
        self.assertEqual(error["code"], "not_in_room")

        shown = await drain(columbia)
        for text in ("let me in", "me too", "after leaving"):
            self.assertNotIn(text, shown)
        self.assertEqual(await room_history(columbia, "#dev"), [])


class UnreadAtLoginTests(unittest.TestCase):
    async def test_room_messages_to_an_offline_member_are_one_unread_line_at_login_until_read(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        google = await lab.login(port, "google")
        columbia = await lab.login(port, "columbia")
        await say(columbia, "join #Dev")
        self.assertEqual(await say(google, "join #dev"), "You joined #Dev (2 members).\r\n")
        await logout(google)

        sent = ["standup in 5", "the build is green", "who reviews #42?"]
        for text in sent:
            self.assertEqual(
                await say(columbia, f"message #dev {text}"), "Sent to #Dev (0 of 1 other member online).\r\n"
            )

        # One line for the room, not an offline message per room message.
        google, shown = await login_shows(lab, port, "google")
        self.assertEqual(shown, welcome("google") + unread_line("#Dev", 3))
        # Not read yet: told again at the next login.
        await logout(google)
        google, shown = await login_shows(lab, port, "google")
        self.assertEqual(shown, welcome("google") + unread_line("#Dev", 3))

        self.assertEqual(await room_history(google, "#dev"), [f"columbia (#Dev): {text}" for text in sent])
        await logout(google)
        google, shown = await login_shows(lab, port, "google")
        self.assertEqual(shown, welcome("google"))

        # A member online when the messages come reads them as they come.
        await say(columbia, "message #dev one more")
        await google.expect(delivered("columbia", "#Dev", "one more"))
        await logout(google)
        _, shown = await login_shows(lab, port, "google")
        self.assertEqual(shown, welcome("google"))

    async def test_unread_counts_on_the_websocket_survive_a_resume_and_a_restart(self) -> None:
        lab = Lab(self)
        server, port, web = await lab.start_web()
        columbia = await lab.login(port, "columbia")
        await say(columbia, "join #dev")
        google = await lab.ws_login(web, "google")
        await request(google, {"type": "join", "room": "#dev"}, type="joined")
        # Shown on the page, not read there yet.
        await say(columbia, "message google while the page is open")
        await google.expect(type="message", text="while the page is open")
        # Everyone's conversation is listed though nobody broadcast anything.
        self.assertEqual(await conversations(google), {"everyone": 0, "#dev": 0, "@columbia": 1})
        token = latest_token(google)
        # The connection is lost, not logged out (a reload).
        google.transport.abortConnection()
        await closing(google)

        await say(columbia, "message #dev one")
        await say(columbia, "message #dev two")
        await say(columbia, "message google psst")
        want = {"everyone": 0, "#dev": 2, "@columbia": 2}

        async def comes_back(google: WebSocketClient) -> str:
            """The unread line after the welcome, the counts, and the next token."""
            unread = await google.expect(type="unread")
            self.assertEqual(unread["rooms"], {"#dev": 2})
            self.assertEqual(unread["text"], "2 unread messages in #dev: 'history #dev 2' shows them.")
            self.assertEqual(await conversations(google), want)
            return latest_token(google)

        google = await resume(lab, web, token)
        offline = await google.expect(type="offline")
        self.assertEqual([m["text"] for m in offline["messages"]], ["psst"])
        token = await comes_back(google)
        google.send({"type": "ack", "ids": [m["id"] for m in offline["messages"]]})

        # A restart: the counts are the server's, on disk.
        await server.stop()
        await closing(google)
        port = await server.start()
        assert server.web_port is not None
        web = server.web_port
        google = await resume(lab, web, token)
        await comes_back(google)

        # Read on the page: zero from then on, after another restart too.
        google.send({"type": "read", "conversation": "#dev"})
        want["#dev"] = 0
        self.assertEqual(await conversations(google), want)
        await server.stop()
        port = await server.start()
        assert server.web_port is not None
        google = await lab.ws_login(server.web_port, "google")
        self.assertNotIn("unread", [e.get("type") for e in await ws_drain(google)])
        self.assertEqual(await conversations(google), want)
        google.send({"type": "logout"})
        await closing(google)
        _, shown = await login_shows(lab, port, "google")
        self.assertEqual(shown, welcome("google"))


async def pages(
    client: WebSocketClient, conversation: str, count: int, most: int = 50
) -> list[dict[str, Any]]:
    """
    Page back through C{conversation}, C{count} at a time, until the server
    says nothing older is kept (in at most C{most} pages); give every
    message, oldest first.  Each page must be older than the one before,
    and a page asked for before the oldest is empty.
    """
    shown: list[dict[str, Any]] = []
    before: str | None = None
    for _ in range(most):
        ask: dict[str, Any] = {"type": "history", "conversation": conversation, "count": count}
        if before is not None:
            ask["before"] = before
        page = await request(client, ask, type="history", conversation=conversation)
        messages = page["messages"]
        if page["more"]:
            assert len(messages) == count, page
        assert messages or not shown, f"an empty page that was said to be there: {page!r}"
        if shown and messages:
            assert messages[-1]["time"] <= shown[0]["time"], (messages, shown[0])
        shown[:0] = messages
        if not page["more"]:
            break
        before = messages[0]["id"]
    else:
        raise AssertionError(f"{conversation}: still more after {most} pages of {count}")
    if shown:
        last = await request(
            client,
            {"type": "history", "conversation": conversation, "count": count, "before": shown[0]["id"]},
            type="history",
            conversation=conversation,
        )
        assert (last["messages"], last["more"]) == ([], False), last
    return shown


class PagingTests(unittest.TestCase):
    async def test_each_conversation_pages_back_to_its_first_kept_message_and_keeps_at_least_history(
        self,
    ) -> None:
        """
        With C{--history 3}, each conversation keeps at least its newest 3
        (the room's traffic does not push out the direct conversation's),
        and paging by id gives them, newest kept first, each once, then
        ends.
        """
        kept = 3
        lab = Lab(self)
        _, _, web = await lab.start_web("--history", str(kept))
        columbia = await lab.ws_login(web, "columbia")
        seas = await lab.ws_login(web, "seas")
        await request(columbia, {"type": "join", "room": "#dev"}, type="joined")
        await request(seas, {"type": "join", "room": "#dev"}, type="joined")

        private = [f"private {i}" for i in range(5)]
        for text in private:
            await request(columbia, {"type": "message", "to": ["seas"], "text": text}, type="receipt")
        everyone = [f"to everyone {i}" for i in range(5)]
        for text in everyone:
            await request(seas, {"type": "broadcast", "text": text}, type="receipt")
        room = [f"room {i:02}" for i in range(30)]
        for i, text in enumerate(room):
            await request(
                (columbia, seas)[i % 2], {"type": "message", "room": "#dev", "text": text}, type="receipt"
            )

        for client, conversation, sent in (
            (columbia, "#dev", room),
            (seas, "#dev", room),
            (columbia, "@seas", private),
            (seas, "@columbia", private),
            (columbia, "everyone", everyone),
        ):
            for count in (1, 2, 50):
                shown = [m["text"] for m in await pages(client, conversation, count)]
                self.assertGreaterEqual(len(shown), kept, (conversation, shown))
                self.assertEqual(shown, sent[-len(shown) :], conversation)
                if sent is room:
                    # The oldest are gone: paging ended at the first kept, not the first sent.
                    self.assertLess(len(shown), len(room), shown)


async def settles_to(client: LineClient, line: str, want: str) -> None:
    """C{client}'s answer to C{line} becomes C{want} within L{PROPAGATION} seconds."""
    seen: list[str] = []

    async def check() -> bool:
        seen.append(await say(client, line))
        return seen[-1] == want

    try:
        await eventually(f"{line!r} to answer {want!r}", check, PROPAGATION)
    except AssertionError as e:
        raise AssertionError(f"{e}; answered in turn: {seen!r}") from None


class RoomsAcrossNodesTests(unittest.TestCase):
    async def test_room_made_on_a_is_joined_from_b_and_talks_both_ways_with_membership_seen_from_both(
        self,
    ) -> None:
        cluster = await Cluster.start(self, a_args=WEB)
        lab = cluster.lab
        seas = await lab.ws_login(cluster.web_a, "seas")
        columbia = await lab.login(cluster.port_b, "columbia")
        facebook = await lab.login(cluster.port_b, "facebook")
        google = await lab.login(cluster.port_a, "google")

        made = await request(seas, {"type": "join", "room": "#Dev"}, type="joined")
        self.assertEqual((made["room"], made["created"], made["members"]), ("#Dev", True, 1))
        self.assertEqual(await say(columbia, "join #dev"), "You joined #Dev (2 members).\r\n")
        self.assertEqual(await say(google, "join #DEV"), "You joined #Dev (3 members).\r\n")
        await logout(google)
        await settles(columbia, whoelse, ["facebook", "seas"])

        # Live both ways across the nodes.
        self.assertEqual(
            await say(columbia, "message #dev from b"), "Sent to #Dev (1 of 2 other members online).\r\n"
        )
        message = await seas.expect(type="message", kind="room")
        self.assertEqual((message["from"], message["room"], message["text"]), ("columbia", "#Dev", "from b"))
        receipt = await request(seas, {"type": "message", "room": "#dev", "text": "from a"}, type="receipt")
        self.assertEqual((receipt["online"], receipt["members"]), (1, 3))
        await columbia.expect(delivered("seas", "#Dev", "from a"))

        # Membership as each node sees it.
        members = "Members of #Dev (3):\r\n  columbia\r\n  google  (offline)\r\n  seas\r\n"
        await settles_to(facebook, "members #dev", members)
        listed = await request(seas, {"type": "members", "room": "#dev"}, type="members")
        self.assertEqual(
            listed["members"],
            [
                {"name": "columbia", "online": True},
                {"name": "google", "online": False},
                {"name": "seas", "online": True},
            ],
        )
        await settles_to(facebook, "rooms", "Rooms (1):\r\n  #Dev  3 members\r\n")

        # The member who was offline logs in on the other node than the one they joined on.
        google, shown = await login_shows(lab, cluster.port_b, "google")
        self.assertEqual(shown, welcome("google") + unread_line("#Dev", 2))
        self.assertEqual(
            await room_history(google, "#dev"), ["columbia (#Dev): from b", "seas (#Dev): from a"]
        )

        # A leave on b is seen on a.
        self.assertEqual(await say(columbia, "leave #dev"), "You left #Dev.\r\n")

        async def left() -> bool:
            listed = await request(seas, {"type": "members", "room": "#dev"}, type="members")
            return [m["name"] for m in listed["members"]] == ["google", "seas"]

        await eventually("columbia to have left #Dev on node a", left, PROPAGATION)

        # Nobody outside the room got anything.
        self.assertNotIn("(#Dev)", await drain(facebook))
        self.assertEqual(texts(await ws_drain(seas)), [])

    async def test_paging_on_redis_keeps_exactly_history_per_conversation(self) -> None:
        kept = 3
        cluster = await Cluster.start(self, "--history", str(kept), a_args=WEB)
        lab = cluster.lab
        seas = await lab.ws_login(cluster.web_a, "seas")
        columbia = await lab.login(cluster.port_b, "columbia")
        await request(seas, {"type": "join", "room": "#dev"}, type="joined")
        await say(columbia, "join #dev")
        sent = [f"room {i}" for i in range(7)]
        for text in sent:
            await say(columbia, f"message #dev {text}")
        await say(columbia, "message seas one to one")
        shown = [m["text"] for m in await pages(seas, "#dev", 2)]
        self.assertEqual(shown, sent[-kept:])
        self.assertEqual([m["text"] for m in await pages(seas, "@columbia", 2)], ["one to one"])
        self.assertEqual(
            await room_history(columbia, "#dev"), [f"columbia (#dev): {t}" for t in sent[-kept:]]
        )


class TeamTests(unittest.TestCase):
    async def test_done_when_three_talk_in_dev_on_two_nodes_and_a_fourth_reads_5_unread(
        self,
    ) -> None:
        """
        The issue's "done when": columbia at a terminal on node a, seas in a
        browser on a and google in a browser on b make #dev and talk in it;
        wikipedia, a member who was offline, logs in on b, is told "5 unread
        messages in #dev" and reads them with C{history #dev}.
        """
        cluster = await Cluster.start(self, *WEB)
        lab = cluster.lab
        assert cluster.b.web_port is not None
        columbia = await lab.login(cluster.port_a, "columbia")
        seas = await lab.ws_login(cluster.web_a, "seas")
        google = await lab.ws_login(cluster.b.web_port, "google")
        self.assertEqual(await say(columbia, "join #dev"), "You made the room #dev and joined it.\r\n")
        await request(seas, {"type": "join", "room": "#dev"}, type="joined")
        await request(google, {"type": "join", "room": "#dev"}, type="joined")
        wikipedia = await lab.login(cluster.port_b, "wikipedia")
        self.assertEqual(await say(wikipedia, "join #dev"), "You joined #dev (4 members).\r\n")
        await logout(wikipedia)
        await settles(columbia, whoelse, ["google", "seas"])

        said = [
            ("columbia", "standup in 5"),
            ("seas", "the build is green"),
            ("google", "who reviews #42?"),
            ("seas", "me"),
            ("columbia", "thanks, merging after lunch"),
        ]
        browsers = {"seas": seas, "google": google}
        for sender, text in said:
            if sender == "columbia":
                self.assertEqual(
                    await say(columbia, f"message #dev {text}"),
                    "Sent to #dev (2 of 3 other members online).\r\n",
                )
            else:
                receipt = await request(
                    browsers[sender], {"type": "message", "room": "#dev", "text": text}, type="receipt"
                )
                self.assertEqual(receipt["text"], "Sent to #dev (2 of 3 other members online).")
                await columbia.expect(delivered(sender, "#dev", text))
            for name, browser in browsers.items():
                if name != sender:
                    message = await browser.expect(type="message", kind="room")
                    self.assertEqual((message["from"], message["text"]), (sender, text))
        # Each exactly once, in order, and nobody got their own back.
        self.assertEqual(texts(await ws_drain(seas)), [])
        self.assertEqual(texts(seas.events), [text for sender, text in said if sender != "seas"])
        self.assertEqual(texts(google.events), [text for sender, text in said if sender != "google"])
        await drain(columbia)
        self.assertEqual(
            re.findall(r"\w+ \(#dev\): [^\r]*", columbia.text),
            [f"{sender} (#dev): {text}" for sender, text in said if sender != "columbia"],
        )

        wikipedia, shown = await login_shows(lab, cluster.port_b, "wikipedia")
        self.assertEqual(
            shown, welcome("wikipedia") + "5 unread messages in #dev: 'history #dev 5' shows them.\r\n"
        )
        self.assertEqual(
            await room_history(wikipedia, "#dev"), [f"{sender} (#dev): {text}" for sender, text in said]
        )
        await logout(wikipedia)
        # Read: not told again, on either node.
        for port in (cluster.port_a, cluster.port_b):
            again, shown = await login_shows(lab, port, "wikipedia")
            self.assertEqual(shown, welcome("wikipedia"))
            await logout(again)
