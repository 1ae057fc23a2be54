"""
A cluster end to end: two real ``twistd -n chat`` nodes (``--node a`` and
``--node b``) sharing one real redis-server (AOF on, C{appendfsync
always}), with clients on real sockets.

The users of a test are split over the two nodes, so every message,
listing, refusal and block has to cross Redis.  What one node learns from
the other (presence, intros) travels by pub/sub and is eventually
consistent: a test that looks at it right after a change polls it, for
a bounded time (L{PROPAGATION}), instead of sleeping.

Single-node mode is covered by the rest of the end-to-end suite.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial import unittest

from tests.e2e.redis_server import RedisServer, redis_server
from tests.e2e.support import (
    COMMAND,
    INVALID,
    PASSWORD,
    USERNAME,
    USERS,
    WEB,
    Lab,
    LineClient,
    ServerProcess,
    closing,
    delivered,
    drain,
    entries,
    offline_line,
    seconds_in,
    startup_failure,
    ws_drain,
)
from tests.e2e.test_e2e_seeds import LISTING, STORED, seed_000_sample, type_line
from tests.expect import until

#: How long what one node tells the others (presence, intros) may take to arrive.
PROPAGATION = 3.0

#: The one line of a login refused while Redis is away.
DOWN_LOGIN = "The server cannot reach its database right now; please try again in a moment."
#: The one line of a command that needed Redis while it is away.
DOWN_COMMAND = "The server cannot reach its database right now, so that was not done; please try again."

#: A block long enough that it cannot run out while a test looks at it.
LONG_BLOCK = "45"

#: The --node-timeout of the kill test, and how late after it the dead node's users may still show.
NODE_TIMEOUT = 3.0
NODE_TIMEOUT_MARGIN = 1.0

#: How soon the nodes must be back to normal once Redis is (one backoff for all of a node's
#: connections: 0.25 s first, at most 5 s).
RECOVERY = 15.0

#: The patterns of the two listings, whatever their length.
WHOELSE = r"Nobody else is online\.\r\n|Online now \(\d+\):\r\n" + LISTING
WHOLAST = (
    r"Nobody else was online in the last 10 minutes\.\r\n|Online in the last 10 minutes \(\d+\):\r\n"
    + LISTING
)


class Cluster:
    """
    One Redis and two nodes, C{a} and C{b}, for one test; all of it stopped
    after the test (the nodes first, then Redis), and a traceback in a
    node's log fails the test (see L{Lab}).
    """

    def __init__(self, case: unittest.TestCase) -> None:
        # Redis first: cleanups run last-added first, so it outlives the nodes.
        self.redis: RedisServer = redis_server(case)
        self.lab = Lab(case)
        self.a: ServerProcess
        self.b: ServerProcess

    def node(self, name: str, *args: str) -> ServerProcess:
        """A node of this cluster, not yet started."""
        return self.lab.server("--redis", self.redis.endpoint, "--node", name, *args)

    @classmethod
    async def start(
        cls, case: unittest.TestCase, *args: str, a_args: tuple[str, ...] = (), b_args: tuple[str, ...] = ()
    ) -> Cluster:
        """Start both nodes together, each with C{args} and its own extras; fire once both have joined."""
        cluster = cls(case)
        cluster.a = cluster.node("a", *args, *a_args)
        cluster.b = cluster.node("b", *args, *b_args)
        await defer.gatherResults([cluster.a.start(), cluster.b.start()], consumeErrors=True)
        return cluster

    @property
    def port_a(self) -> int:
        assert self.a.port is not None
        return self.a.port

    @property
    def port_b(self) -> int:
        assert self.b.port is not None
        return self.b.port

    @property
    def web_a(self) -> int:
        assert self.a.web_port is not None
        return self.a.web_port


async def eventually(
    what: str, check: Callable[[], Awaitable[Any]], within: float, every: float = 0.1
) -> float:
    """
    Run C{check} until it gives something true, for at most C{within}
    seconds; give how long it took.  Fails with the last value it gave.
    """
    start = reactor.seconds()
    await until(check, what, within, every)
    return reactor.seconds() - start


async def whoelse(client: LineClient) -> list[str]:
    """The entries of C{client}'s whoelse (without the header): [] when nobody is."""
    reply = await type_line(client, "whoelse", WHOELSE)
    return entries(reply)[1:] if reply.startswith("Online") else []


async def wholast(client: LineClient) -> list[str]:
    """The entries of C{client}'s wholast 10 (without the header): [] when nobody was."""
    reply = await type_line(client, "wholast 10", WHOLAST)
    return entries(reply)[1:] if reply.startswith("Online") else []


async def settles(
    client: LineClient, listing: Callable[[LineClient], Awaitable[list[str]]], want: list[str]
) -> None:
    """C{client}'s listing becomes C{want} within L{PROPAGATION} seconds."""
    seen: list[list[str]] = []

    async def check() -> bool:
        seen.append(await listing(client))
        return seen[-1] == want

    try:
        await eventually(f"{listing.__name__} to show {want!r}", check, PROPAGATION)
    except AssertionError as e:
        raise AssertionError(f"{e}; shown in turn: {seen!r}") from None


async def answer(client: LineClient, line: str) -> str:
    """Type C{line}; give everything received up to the next prompt."""
    start = client.position
    client.send(line)
    m = await client.expect(COMMAND, timeout=15)
    return client.text[start : m.start()]


async def login_now(client: LineClient, name: str) -> str:
    """
    At the username prompt, log in as C{name} with the right password; give
    the welcome and what follows it up to the prompt.
    """
    client.send(name)
    await client.expect(PASSWORD)
    client.send(USERS[name])
    m = await client.expect(
        r"(?s)(Login successful\. Welcome to chat, " + re.escape(name) + r"!\r\n.*?)" + COMMAND
    )
    return m.group(1)


def freeze(case: unittest.TestCase, server: ServerProcess) -> None:
    """
    Stop C{server} dead (SIGSTOP): it no longer answers anything, Redis
    included.  If the test ends with it still frozen, it is killed (a
    frozen process cannot stop on SIGTERM).
    """
    os.kill(server.pid, signal.SIGSTOP)

    def thaw() -> defer.Deferred[None] | None:
        return server.kill() if server.running else None

    case.addCleanup(thaw)


class SeedsAcrossNodesTests(unittest.TestCase):
    """The seeds' transcripts (see L{tests.e2e.test_e2e_seeds}) with the terminals on different nodes."""

    async def test_seed_000_samples_with_columbia_on_a_and_seas_on_b(self) -> None:
        cluster = await Cluster.start(self)

        async def heard_columbia_left(t2: LineClient) -> None:
            await settles(t2, whoelse, [])

        await seed_000_sample(self, cluster.lab, cluster.port_a, cluster.port_b, heard_columbia_left)

    async def test_seed_001_ex1_ex2_ex3_with_each_user_on_the_other_node_than_the_last(self) -> None:
        """
        Ex1 (csee4119) and Ex2 (columbia) on node a, facebook and Ex3 (seas)
        on node b: the intro, the offline message and wholast cross nodes.
        """
        cluster = await Cluster.start(self)
        lab = cluster.lab

        # Ex1 on a: csee4119 finds nobody, sets an intro on the next line, logs out.
        csee = await lab.connect(cluster.port_a)
        await csee.expect(USERNAME)
        csee.send("csee4119")
        await csee.expect(PASSWORD)
        csee.send("lotsofassignments")
        await csee.expect(r"Login successful\. Welcome to chat, csee4119!\r\n" + COMMAND)
        await type_line(csee, "whoelse", r"Nobody else is online\.\r\n")
        csee.send("personalintro")
        await csee.expect(r"Please enter your personal introduction[^\r\n]*\r\nIntro: ")
        csee.send("The best course ever")
        await csee.expect(r"Personal introduction saved\.\r\n" + COMMAND)
        csee.send("logout")
        await csee.expect(r"Goodbye, csee4119!\r\n")
        await csee.closed

        # facebook on b, with its intro.
        facebook = await lab.login(cluster.port_b, "facebook")
        await type_line(facebook, "personalintro An website", r"Personal introduction saved\.\r\n")

        # Ex2 on a: columbia leaves seas a message, and sees who was on lately
        # on either node, with intros set on either.
        columbia = await lab.connect(cluster.port_a)
        await columbia.expect(USERNAME)
        columbia.send("columbia")
        await columbia.expect(PASSWORD)
        columbia.send("116bway")
        await columbia.expect(r"Login successful\. Welcome to chat, columbia!\r\n" + COMMAND)
        await type_line(columbia, "message seas hello", r"seas " + STORED)
        await settles(
            columbia, wholast, ["csee4119 <The best course ever> (offline)", "facebook <An website>"]
        )

        # Ex3 on b: seas is shown columbia's message, marked private.
        seas = await lab.connect(cluster.port_b)
        await seas.expect(USERNAME)
        seas.send("seas")
        await seas.expect(PASSWORD)
        seas.send("summerisover")
        await seas.expect(
            r"Login successful\. Welcome to chat, seas!\r\n"
            r"You have 1 offline message:\r\n" + offline_line("columbia", "private", "hello") + COMMAND
        )
        self.assertEqual(await whoelse(seas), ["columbia", "facebook <An website>"])
        self.assertNotIn("hello", await drain(facebook))
        self.assertNotIn("hello", await drain(columbia))
        # The message is shown once: not again at seas's next login, on either node.
        seas.send("logout")
        await seas.closed
        for port in (cluster.port_a, cluster.port_b):
            again = await lab.connect(port)
            await again.expect(USERNAME)
            self.assertNotIn("offline message", await login_now(again, "seas"))
            again.send("logout")
            await again.closed

    async def test_seed_001_intro_set_on_one_node_is_shown_by_whoelse_on_the_other(self) -> None:
        cluster = await Cluster.start(self)
        csee = await cluster.lab.login(cluster.port_a, "csee4119")
        other = await cluster.lab.login(cluster.port_b, "columbia")
        csee.send("personalintro")
        await csee.expect(r"Please enter your personal introduction[^\r\n]*\r\nIntro: ")
        csee.send("The best course ever")
        await csee.expect(r"Personal introduction saved\.\r\n")
        await settles(other, whoelse, ["csee4119 <The best course ever>"])


class BrowserAcrossNodesTests(unittest.TestCase):
    async def test_websocket_user_on_a_and_tcp_user_on_b_talk_and_see_each_other_come_and_go(self) -> None:
        cluster = await Cluster.start(self, a_args=WEB)
        lab = cluster.lab
        seas = await lab.ws_login(cluster.web_a, "seas")
        columbia = await lab.login(cluster.port_b, "columbia")

        # The browser on a is told that columbia came, on b.
        online = await seas.expect(type="presence", name="columbia")
        self.assertIs(online["online"], True)
        seas.send({"type": "whoelse"})
        roster = await seas.expect(type="roster")
        self.assertEqual([(u["name"], u["online"]) for u in roster["users"]], [("columbia", True)])
        self.assertEqual(await whoelse(columbia), ["seas"])

        # A private message each way.
        seas.send({"type": "message", "to": ["columbia"], "text": "hi from a browser"})
        receipt = await seas.expect(type="receipt")
        self.assertEqual((receipt["delivered"], receipt["stored"]), (["columbia"], []))
        await columbia.expect(delivered("seas", "private", "hi from a browser"))

        columbia.send("message seas hello from a terminal")
        await columbia.expect(r"Sent to seas\.\r\n" + COMMAND)
        private = await seas.expect(type="message")
        self.assertEqual(
            (private["from"], private["kind"], private["text"]),
            ("columbia", "private", "hello from a terminal"),
        )

        # A broadcast each way, counted across nodes.
        seas.send({"type": "broadcast", "text": "to everyone"})
        receipt = await seas.expect(type="receipt")
        self.assertEqual(receipt["broadcast"], 1)
        await columbia.expect(delivered("seas", "broadcast", "to everyone"))

        columbia.send("broadcast message and back to you")
        await columbia.expect(r"Broadcast to 1 user\.\r\n" + COMMAND)
        broadcast = await seas.expect(type="message")
        self.assertEqual(
            (broadcast["from"], broadcast["kind"], broadcast["text"]),
            ("columbia", "broadcast", "and back to you"),
        )
        self.assertNotEqual(private["id"], broadcast["id"])

        # Each exactly once, and nobody gets their own broadcast back.
        self.assertNotIn("message", [e.get("type") for e in await ws_drain(seas)])
        rest = await drain(columbia)
        self.assertNotIn("and back to you", rest)
        self.assertEqual(columbia.text.count("seas (private): hi from a browser"), 1)
        self.assertEqual(columbia.text.count("seas (broadcast): to everyone"), 1)

        # columbia leaves b: the browser on a is told, and its roster is empty.
        columbia.send("logout")
        await closing(columbia)
        offline = await seas.expect(type="presence", name="columbia")
        self.assertIs(offline["online"], False)
        self.assertGreaterEqual(offline["time"], online["time"])
        seas.send({"type": "whoelse"})
        roster = await seas.expect(type="roster")
        self.assertEqual(roster["users"], [])
        # And comes back.
        await lab.login(cluster.port_b, "columbia")
        again = await seas.expect(type="presence", name="columbia")
        self.assertIs(again["online"], True)


class LoginAcrossNodesTests(unittest.TestCase):
    async def test_user_online_on_a_cannot_log_in_on_b_and_the_first_session_goes_on(self) -> None:
        cluster = await Cluster.start(self, "--max-attempts", "2", "--block-time", LONG_BLOCK)
        lab = cluster.lab
        first = await lab.login(cluster.port_a, "columbia")
        seas = await lab.login(cluster.port_b, "seas")
        second = await lab.connect(cluster.port_b)
        await second.expect(USERNAME)
        # Refused more often than --max-attempts: a right password is no failure.
        for _ in range(3):
            second.send("columbia")
            await second.expect(PASSWORD)
            second.send("116bway")
            await second.expect(
                r"columbia is already logged in; a second session is not allowed\.\r\n" + USERNAME
            )
        self.assertNotIn("blocked", second.text)
        self.assertNotIn("Welcome", second.text)
        # And on a too.
        third = await lab.connect(cluster.port_a)
        await third.expect(USERNAME)
        third.send("columbia", "116bway")
        await third.expect(r"columbia is already logged in[^\r\n]*\r\n" + USERNAME)

        # The first session was not disturbed: nothing arrived, and it still talks across nodes.
        self.assertEqual(await drain(first), "")
        first.send("message seas still here")
        await first.expect(r"Sent to seas\.\r\n" + COMMAND)
        await seas.expect(delivered("columbia", "private", "still here"))
        seas.send("message columbia and so am I")
        await seas.expect(r"Sent to columbia\.\r\n" + COMMAND)
        await first.expect(delivered("seas", "private", "and so am I"))
        self.assertEqual(await whoelse(seas), ["columbia"])

        # Once the first session logs out, the refused connection on b may log in.
        first.send("logout")
        await first.closed
        welcome = await login_now(second, "columbia")
        self.assertNotIn("offline message", welcome)
        self.assertEqual(await whoelse(second), ["seas"])

    async def test_failures_split_over_both_nodes_block_the_user_from_that_address_on_both(self) -> None:
        """
        With --max-attempts 3: two wrong passwords on a and one on b block
        columbia from this address on b at once, and on a too; other users
        from the same address are not blocked on either node.
        """
        cluster = await Cluster.start(self, "--max-attempts", "3", "--block-time", LONG_BLOCK)
        lab = cluster.lab
        on_a = await lab.connect(cluster.port_a)
        await on_a.expect(USERNAME)
        for _ in range(2):
            on_a.send("columbia", "nope")
            await on_a.expect(INVALID + r"\r\n" + USERNAME)
        self.assertNotIn("blocked", on_a.text)

        # The third failure, on b: blocked, told for how long, disconnected.
        on_b = await lab.connect(cluster.port_b)
        await on_b.expect(USERNAME)
        on_b.send("columbia", "still-nope")
        await closing(on_b)
        m = re.search(r"columbia is blocked from your address for \d+ more seconds[^\r\n]*\r\n", on_b.text)
        assert m is not None, on_b.text
        self.assertTrue(0 < seconds_in(m.group(0)) <= int(LONG_BLOCK), m.group(0))

        # The right password is refused as blocked on both nodes, and the connection closed.
        for port in (cluster.port_a, cluster.port_b):
            client = await lab.connect(port)
            await client.expect(USERNAME)
            client.send("columbia", "116bway")
            await closing(client)
            self.assertRegex(client.text, r"columbia is blocked from your address for \d+ more seconds")
            self.assertNotIn("Welcome", client.text)
        # So is the connection on a that made the first two guesses.
        on_a.send("columbia", "116bway")
        await closing(on_a)
        self.assertIn("columbia is blocked", on_a.text)
        self.assertNotIn("Welcome", on_a.text)

        # Other users from this address are not blocked, on either node.
        seas = await lab.login(cluster.port_a, "seas")
        google = await lab.login(cluster.port_b, "google")
        self.assertNotIn("blocked", seas.text + google.text)
        self.assertEqual(await whoelse(google), ["seas"])


class NodeDeathTests(unittest.TestCase):
    async def test_users_of_a_killed_node_go_offline_in_time_and_their_messages_wait_for_them(self) -> None:
        """
        columbia and seas are on node a, google on b; --node-timeout 3.

        google sends columbia "one" while a works (shown live); "two" while
        a is frozen, just before it is killed (acknowledged, never shown);
        "three" to seas and "four" to columbia after the kill.  b shows
        columbia and seas offline within the node timeout of a going
        silent; each acknowledged message is shown at the next login
        (columbia's on b, seas's on a restarted), exactly once.
        """
        cluster = await Cluster.start(self, "--node-timeout", str(int(NODE_TIMEOUT)))
        lab = cluster.lab
        columbia = await lab.login(cluster.port_a, "columbia")
        seas = await lab.login(cluster.port_a, "seas")
        google = await lab.login(cluster.port_b, "google")
        await settles(google, whoelse, ["columbia", "seas"])

        await type_line(google, "message columbia one", r"Sent to columbia\.\r\n")
        await columbia.expect(delivered("google", "private", "one"))
        # It stays in columbia's inbox until columbia has shown they got it:
        # a terminal shows it with its next line.
        self.assertEqual(cluster.redis.command("XLEN", "chat:inbox:columbia"), "1")
        await drain(columbia)

        # Shown, and taken out of columbia's inbox, before a dies (so that
        # a repeat of it later would be a repeat, not a retry).
        async def inbox_empty() -> bool:
            return cluster.redis.command("XLEN", "chat:inbox:columbia") == "0"

        await eventually("'one' to be removed from columbia's inbox", inbox_empty, 5)

        freeze(self, cluster.a)
        silent_since = reactor.seconds()
        acknowledged = r"(Sent to columbia\.\r\n|columbia " + STORED + r")"
        await type_line(google, "message columbia two", acknowledged)
        await cluster.a.kill()
        self.assertEqual(cluster.a.killed_by(), signal.SIGKILL)
        await closing(columbia)
        await closing(seas)
        await type_line(google, "message seas three", r"(Sent to seas\.\r\n|seas " + STORED + r")")

        # b shows them offline within the bound, counted from when a went silent.
        async def gone() -> bool:
            return await whoelse(google) == []

        bound = NODE_TIMEOUT + NODE_TIMEOUT_MARGIN
        await eventually(
            "columbia and seas to be shown offline on b",
            gone,
            bound - (reactor.seconds() - silent_since),
            every=0.05,
        )
        took = reactor.seconds() - silent_since
        self.assertLessEqual(took, bound, f"shown offline {took:.2f} s after node a went silent")
        listing = await wholast(google)
        self.assertIn("columbia (offline)", listing)
        self.assertIn("seas (offline)", listing)
        await type_line(google, "message columbia four", r"columbia " + STORED)

        # columbia logs in on b: "two" and "four", once each; "one" not again.
        again = await lab.connect(cluster.port_b)
        await again.expect(USERNAME)
        shown = await login_now(again, "columbia")
        self.assertRegex(
            shown,
            r"You have 2 offline messages:\r\n"
            + offline_line("google", "private", "two")
            + offline_line("google", "private", "four")
            + "$",
        )
        await drain(again)
        self.assertEqual(columbia.text.count("google (private): one"), 1)
        for text in ("one", "two", "four"):
            self.assertEqual(
                again.text.count(f"google (private): {text}\r\n"), 0 if text == "one" else 1, text
            )

        # seas logs in on a, restarted: "three", once.
        await cluster.a.start()
        seas_again = await lab.connect(cluster.port_a)
        await seas_again.expect(USERNAME)
        shown = await login_now(seas_again, "seas")
        self.assertRegex(
            shown, r"You have 1 offline message:\r\n" + offline_line("google", "private", "three") + "$"
        )
        await drain(seas_again)
        self.assertEqual(seas_again.text.count("google (private): three"), 1)
        self.assertEqual(await whoelse(seas_again), ["columbia", "google"])
        # Nothing waits any more: a second login shows no offline messages.
        again.send("logout")
        await again.closed
        last = await lab.connect(cluster.port_a)
        await last.expect(USERNAME)
        self.assertNotIn("offline message", await login_now(last, "columbia"))


class RedisOutageTests(unittest.TestCase):
    async def _works(self, client: LineClient) -> bool:
        """Whether C{client}'s node can use Redis: its history loads; any other answer fails the test."""
        reply = await answer(client, "history 1")
        if reply.startswith(("Your last", "No messages yet.")):
            return True
        if reply == DOWN_COMMAND + "\r\n":
            return False
        raise AssertionError(f"unexpected answer to history: {reply!r}")

    async def _logs_in(self, lab: Lab, port: int, name: str) -> bool:
        """
        Whether a login on the node at C{port} goes through: a node's
        connections to Redis come back together, but not before its next
        attempt.  Any answer but the welcome or the one line of Redis away
        fails the test.
        """
        client = await lab.connect(port)
        await client.expect(USERNAME)
        client.send(name, USERS[name])
        m = await client.expect(f"Welcome to chat, {name}!|" + re.escape(DOWN_LOGIN))
        if m.group(0) == DOWN_LOGIN:
            await client.close()
            return False
        client.send("logout")
        await client.expect(f"Goodbye, {name}!")
        await closing(client)
        return True

    async def test_offline_message_survives_a_redis_restart_and_the_nodes_reconnect_by_themselves(
        self,
    ) -> None:
        cluster = await Cluster.start(self)
        lab = cluster.lab
        columbia = await lab.login(cluster.port_a, "columbia")
        google = await lab.login(cluster.port_b, "google")
        await type_line(columbia, "message seas kept through a restart", r"seas " + STORED)

        cluster.redis.restart()

        for client, node in ((columbia, "a"), (google, "b")):

            def works(client: LineClient = client) -> Awaitable[bool]:
                return self._works(client)

            await eventually(f"node {node} to use Redis again", works, RECOVERY, every=0.2)
        # A user of its own per node: a logout's release may still be on its way.
        for port, node, name in ((cluster.port_a, "a", "facebook"), (cluster.port_b, "b", "wikipedia")):

            def logs_in(port: int = port, name: str = name) -> Awaitable[bool]:
                return self._logs_in(lab, port, name)

            await eventually(f"logins on node {node} to go through again", logs_in, RECOVERY, every=0.2)
        # The sessions stayed connected all along.
        self.assertFalse(columbia.closed.called or google.closed.called)

        seas = await lab.connect(cluster.port_b)
        await seas.expect(USERNAME)
        shown = await login_now(seas, "seas")
        self.assertRegex(
            shown,
            r"You have 1 offline message:\r\n"
            + offline_line("columbia", "private", "kept through a restart")
            + "$",
        )
        await drain(seas)
        self.assertEqual(seas.text.count("kept through a restart"), 1)
        # And the cluster works as before.
        await settles(google, whoelse, ["columbia", "seas"])
        await type_line(columbia, "message google after the restart", r"Sent to google\.\r\n")
        await google.expect(delivered("columbia", "private", "after the restart"))

    async def test_sessions_survive_redis_going_away_and_the_nodes_recover_when_it_is_back(self) -> None:
        cluster = await Cluster.start(self)
        lab = cluster.lab
        columbia = await lab.login(cluster.port_a, "columbia")
        seas = await lab.login(cluster.port_a, "seas")
        google = await lab.login(cluster.port_b, "google")
        await settles(google, whoelse, ["columbia", "seas"])

        cluster.redis.stop()

        # A message to the other node: one line, not done.
        reply = await answer(columbia, "message google are you there")
        self.assertEqual(reply, DOWN_COMMAND + "\r\n")
        reply = await answer(google, "message columbia anyone")
        self.assertEqual(reply, DOWN_COMMAND + "\r\n")
        # A message on the same node still goes.
        await type_line(columbia, "message seas same node", r"Sent to seas\.\r\n")
        await seas.expect(delivered("columbia", "private", "same node"))
        # A login needs Redis: refused in one line, and asked again.
        newcomer = await lab.connect(cluster.port_a)
        await newcomer.expect(USERNAME)
        newcomer.send("facebook", USERS["facebook"])
        await newcomer.expect(PASSWORD + re.escape(DOWN_LOGIN) + r"\r\n" + USERNAME)
        # Everyone is still connected.
        for client in (columbia, seas, google):
            await drain(client)
            self.assertFalse(client.closed.called)

        cluster.redis.start()

        # Each node recovers by itself: messages cross nodes again.
        async def crosses(client: LineClient, line: str, to: str) -> bool:
            # A message delivered meanwhile may come before the answer, on a line of its own.
            lines = (await answer(client, line)).split("\r\n")[:-1]
            *before, last = lines or [""]
            # (A live message starts with an empty line, as a terminal shows it.)
            if any(not re.fullmatch(r"(\w+ \(private\): .*)?", other) for other in before):
                raise AssertionError(f"unexpected answer to {line!r}: {lines!r}")
            if last == DOWN_COMMAND:
                return False
            if last == f"Sent to {to}.":
                return True
            raise AssertionError(f"unexpected answer to {line!r}: {lines!r}")

        await eventually(
            "a message from a to b to go through",
            lambda: crosses(columbia, "message google back again", "google"),
            RECOVERY,
            every=0.2,
        )
        await eventually(
            "a message from b to a to go through",
            lambda: crosses(google, "message columbia back from b", "columbia"),
            RECOVERY,
            every=0.2,
        )

        # Both are delivered live (whether before or after the sender's receipt).
        async def arrived(client: LineClient, line: str) -> bool:
            return line in client.text

        await eventually(
            "google to be shown 'back again'",
            lambda: arrived(google, "columbia (private): back again\r\n"),
            RECOVERY,
        )
        await eventually(
            "columbia to be shown 'back from b'",
            lambda: arrived(columbia, "google (private): back from b\r\n"),
            RECOVERY,
        )

        # whoelse is right again on both nodes.
        await settles(google, whoelse, ["columbia", "seas"])
        await settles(columbia, whoelse, ["google", "seas"])
        await settles(seas, whoelse, ["columbia", "google"])
        # What was refused during the outage was never delivered; what went through, once.
        await drain(google)
        await drain(columbia)
        self.assertNotIn("are you there", google.text)
        self.assertNotIn("anyone", columbia.text)
        self.assertEqual(google.text.count("columbia (private): back again"), 1)
        self.assertEqual(columbia.text.count("google (private): back from b"), 1)
        # And logins work again.
        newcomer.send("facebook", USERS["facebook"])
        await newcomer.expect(r"Welcome to chat, facebook!")


class StartupTests(unittest.TestCase):
    def assertRefusedInOneLine(self, code: int, output: str, redis: str) -> None:
        """The node exited with 1, after one line naming C{redis}, and no traceback."""
        self.assertEqual(code, 1, output)
        self.assertNotIn("Traceback", output)
        said = [line for line in output.splitlines() if "cannot use Redis" in line]
        self.assertEqual(len(said), 1, output)
        self.assertIn(f"twistd chat: cannot use Redis at {redis}: ", said[0])
        self.assertNotIn("joined the cluster", output)

    async def test_node_exits_with_status_1_and_one_line_when_the_redis_socket_does_not_exist(self) -> None:
        # A short path: a unix socket's path is limited to about 100 bytes.
        directory = tempfile.mkdtemp(prefix="chat-noredis-")
        self.addCleanup(shutil.rmtree, directory, True)
        redis = f"unix:{os.path.join(directory, 'missing', 'redis.sock')}"
        code, output = await startup_failure(
            self, "--redis", redis, "--node", "a", reported=b"cannot use Redis", exit_within=5
        )
        self.assertRefusedInOneLine(code, output, redis)

    async def test_node_exits_with_status_1_and_one_line_when_redis_refuses_the_connection(self) -> None:
        # A port bound but not listening: connections to it are refused while it is held.
        held = socket.socket()
        self.addCleanup(held.close)
        held.bind(("127.0.0.1", 0))
        redis = f"tcp:127.0.0.1:{held.getsockname()[1]}"
        code, output = await startup_failure(
            self, "--redis", redis, "--node", "a", reported=b"cannot use Redis", exit_within=5
        )
        self.assertRefusedInOneLine(code, output, redis)
