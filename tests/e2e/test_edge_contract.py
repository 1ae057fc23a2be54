"""
The edge contract: what a user can do, and what they are told, is the same
whichever edge they are on.  Each test is written once against
L{EdgeContract}'s few verbs and runs twice, for a person at a terminal
(TCP) and for a browser (the JSON of C{/ws}), against a real server, with
the other people in it on TCP.  The store and registry contracts do the
same for the backends.

An answer is compared by its sentence: a terminal shows it as a line, and
the JSON protocol carries the same sentence in C{text} beside the fields a
program reads (docs/protocol.rst), so a test that passes on both edges
shows that the two tell a person the same thing.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.trial import unittest

from tests.e2e.support import (
    COMMAND,
    STAMP,
    USERS,
    Lab,
    LineClient,
    WebSocketClient,
    closing,
    delivered,
    drain,
    entries,
    ws_drain,
)


class EdgeContract:
    """
    The behaviours; a subclass says how its edge logs in, asks and hears.
    The others (C{self.lab.login(self.port, ...)}) are on TCP.
    """

    lab: Lab
    port: int
    web_port: int

    # --- what a subclass provides ---------------------------------------------

    async def user(self, name: str) -> Any:
        """C{name}, logged in on this edge, with nothing unread."""
        raise NotImplementedError

    async def ask(self, user: Any, request: dict[str, Any], line: str, answer: str) -> str:
        """
        Send what C{line} says on a terminal (C{request} on JSON); give the
        sentence of the answer (the JSON answer is of type C{answer}).
        """
        raise NotImplementedError

    async def hear(self, user: Any, sender: str, kind: str, text: str) -> None:
        """Wait until C{user} has a live message of C{kind} from C{sender}."""
        raise NotImplementedError

    async def names_online(self, user: Any) -> list[str]:
        """Who C{user} sees online (whoelse)."""
        raise NotImplementedError

    async def nothing_heard(self, user: Any) -> None:
        """Fail if a message reached C{user} since they last heard one."""
        raise NotImplementedError

    async def offline_texts(self, name: str) -> list[str]:
        """Log C{name} in on this edge; the texts of the messages kept for them."""
        raise NotImplementedError

    # --- the contract ---------------------------------------------------------

    async def test_a_private_message_to_someone_online_reaches_them_and_says_so(self) -> None:
        me = await self.user("columbia")
        seas = await self.lab.login(self.port, "seas")
        said = await self.ask(
            me, {"type": "message", "to": ["seas"], "text": "hi"}, "message seas hi", "receipt"
        )
        self.assertEqual(said, "Sent to seas.")  # type: ignore[attr-defined]
        await seas.expect(delivered("columbia", "private", "hi"))

    async def test_a_private_message_from_someone_else_arrives(self) -> None:
        me = await self.user("columbia")
        seas = await self.lab.login(self.port, "seas")
        seas.send("message columbia hello there")
        await self.hear(me, "seas", "private", "hello there")

    async def test_a_broadcast_goes_both_ways(self) -> None:
        me = await self.user("columbia")
        seas = await self.lab.login(self.port, "seas")
        said = await self.ask(
            me, {"type": "broadcast", "text": "to all"}, "broadcast message to all", "receipt"
        )
        self.assertEqual(said, "Broadcast to 1 user.")  # type: ignore[attr-defined]
        await seas.expect(delivered("columbia", "broadcast", "to all"))
        seas.send("broadcast message back")
        await self.hear(me, "seas", "broadcast", "back")

    async def test_a_message_to_someone_offline_is_kept_and_given_at_their_login(self) -> None:
        me = await self.user("columbia")
        said = await self.ask(
            me, {"type": "message", "to": ["google"], "text": "later"}, "message google later", "receipt"
        )
        self.assertEqual(  # type: ignore[attr-defined]
            said, "google is offline; the message will be delivered when they next log in."
        )
        self.assertEqual(await self.offline_texts("google"), ["later"])  # type: ignore[attr-defined]

    async def test_messages_kept_for_this_user_come_at_login(self) -> None:
        seas = await self.lab.login(self.port, "seas")
        seas.send("message columbia one")
        await seas.expect(COMMAND)
        seas.send("message columbia two")
        await seas.expect(COMMAND)
        self.assertEqual(await self.offline_texts("columbia"), ["one", "two"])  # type: ignore[attr-defined]

    async def test_an_unknown_user_gets_the_closest_name_and_nothing_is_sent(self) -> None:
        me = await self.user("columbia")
        seas = await self.lab.login(self.port, "seas")
        said = await self.ask(me, {"type": "message", "to": ["sea"], "text": "hi"}, "message sea hi", "error")
        self.assertIn("'sea'", said)  # type: ignore[attr-defined]
        self.assertIn("did you mean 'seas'?", said)  # type: ignore[attr-defined]
        self.assertEqual(await drain(seas), "")  # type: ignore[attr-defined]

    async def test_a_message_over_the_limit_is_refused_and_reaches_nobody(self) -> None:
        me = await self.user("columbia")
        seas = await self.lab.login(self.port, "seas")
        text = "x" * 501
        said = await self.ask(
            me, {"type": "message", "to": ["seas"], "text": text}, f"message seas {text}", "error"
        )
        self.assertIn("501", said)  # type: ignore[attr-defined]
        self.assertIn("500", said)  # type: ignore[attr-defined]
        self.assertEqual(await drain(seas), "")  # type: ignore[attr-defined]

    async def test_whoelse_shows_the_others_online(self) -> None:
        me = await self.user("columbia")
        await self.lab.login(self.port, "seas")
        await self.lab.login(self.port, "google")
        self.assertEqual(sorted(await self.names_online(me)), ["google", "seas"])  # type: ignore[attr-defined]

    async def test_a_room_reaches_its_members_only(self) -> None:
        me = await self.user("columbia")
        seas = await self.lab.login(self.port, "seas")
        google = await self.lab.login(self.port, "google")
        said = await self.ask(me, {"type": "join", "room": "#Dev"}, "join #Dev", "joined")
        self.assertIn("#Dev", said)  # type: ignore[attr-defined]
        seas.send("join #dev")
        await seas.expect(COMMAND)
        seas.send("message #dev standup")
        await self.hear(me, "seas", "room", "standup")
        said = await self.ask(
            me, {"type": "message", "room": "#dev", "text": "coming"}, "message #dev coming", "receipt"
        )
        await seas.expect(r"coming\r\n")
        self.assertEqual(await drain(google), "")  # type: ignore[attr-defined]
        # Only members send to it, and the refusal is the same sentence everywhere.
        google.send("message #dev let me in")
        m = await google.expect(r"([^\r\n]*)\r\n" + COMMAND)
        await self.nothing_heard(me)
        said = await self.ask(me, {"type": "leave", "room": "#dev"}, "leave #dev", "left")
        refused = await self.ask(
            me, {"type": "message", "room": "#dev", "text": "again"}, "message #dev again", "error"
        )
        self.assertEqual(refused, m.group(1))  # type: ignore[attr-defined]

    async def test_logout_says_goodbye_and_the_others_see_them_gone(self) -> None:
        me = await self.user("columbia")
        seas = await self.lab.login(self.port, "seas")
        said = await self.ask(me, {"type": "logout"}, "logout", "goodbye")
        self.assertEqual(said, "Goodbye, columbia!")  # type: ignore[attr-defined]
        await closing(me)
        seas.send("whoelse")
        await seas.expect(r"Nobody else is online\.\r\n" + COMMAND)


class TerminalEdgeTests(EdgeContract, unittest.TestCase):
    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = Lab(self)
        _, self.port, self.web_port = await self.lab.start_web()

    async def user(self, name: str) -> LineClient:
        return await self.lab.login(self.port, name)

    async def ask(self, user: LineClient, request: dict[str, Any], line: str, answer: str) -> str:
        user.send(line)
        # The answer ends with the next prompt; only a goodbye ends the text
        # instead.  (Taking the end of what has arrived for the end of any
        # answer read an answer whose prompt came in a later segment, after
        # a command the store had to confirm, as ended: the prompt was then
        # read as the start of the next answer.)
        end = "$" if answer == "goodbye" else COMMAND
        m = await user.expect(r"(?s)(.*?)\r\n" + end)
        return m.group(1).strip()

    async def hear(self, user: LineClient, sender: str, kind: str, text: str) -> None:
        if kind == "room":
            await user.expect(rf"{re.escape(sender)} \(#[^)]*\): {re.escape(text)}\r\n")
        else:
            await user.expect(delivered(sender, kind, text))

    async def names_online(self, user: LineClient) -> list[str]:
        user.send("whoelse")
        m = await user.expect(r"(?s)Online now \(\d+\):\r\n(.*?)" + COMMAND)
        return [line.split()[0] for line in entries(m.group(1))]

    async def nothing_heard(self, user: LineClient) -> None:
        self.assertEqual(await drain(user), "")

    async def offline_texts(self, name: str) -> list[str]:
        client = await self.lab.connect(self.port)
        await client.expect("Username: ")
        client.send(name)
        await client.expect("Password: ")
        client.send(USERS[name])
        m = await client.expect(r"(?s)Welcome[^\r\n]*\r\n(.*?)" + COMMAND)
        kept = re.compile(STAMP + r" \S+ \([^)]*\): (.*)")
        return [found.group(1) for found in map(kept.match, m.group(1).splitlines()) if found]


class BrowserEdgeTests(EdgeContract, unittest.TestCase):
    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = Lab(self)
        _, self.port, self.web_port = await self.lab.start_web()

    async def user(self, name: str) -> WebSocketClient:
        client = await self.lab.ws_login(self.web_port, name)
        await ws_drain(client)
        return client

    async def ask(self, user: WebSocketClient, request: dict[str, Any], line: str, answer: str) -> str:
        user.send(request)
        event = await user.expect(type=answer)
        return str(event["text"])

    async def hear(self, user: WebSocketClient, sender: str, kind: str, text: str) -> None:
        await user.expect({"type": "message", "from": sender, "kind": kind, "text": text})

    async def names_online(self, user: WebSocketClient) -> list[str]:
        user.send({"type": "whoelse"})
        roster = await user.expect(type="roster")
        return [u["name"] for u in roster["users"]]

    async def nothing_heard(self, user: WebSocketClient) -> None:
        self.assertEqual([e for e in await ws_drain(user) if e["type"] == "message"], [])

    async def offline_texts(self, name: str) -> list[str]:
        client = await self.lab.ws_login(self.web_port, name)
        offline = await client.expect(type="offline")
        return [m["text"] for m in offline["messages"]]
