"""
The original assignments' transcripts, replayed over real TCP against
``twistd -n chat``, with what every terminal involved must see.

Seed 000 is the SAMPLES section of the first assignment (two terminals,
columbia and seas); seed 001 is Ex1 to Ex3 of the second (csee4119's intro,
columbia's offline message to seas, seas collecting it).
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable

from twisted.trial import unittest

from tests.e2e.support import (
    COMMAND,
    INVALID,
    PASSWORD,
    USERNAME,
    Lab,
    LineClient,
    delivered,
    drain,
    entries,
    offline_line,
)

STORED = r"is offline; the message will be delivered when they next log in\.\r\n"
LISTING = r"((?:  [^\r\n]*\r\n)*)"


async def type_line(client: LineClient, line: str, reply: str) -> str:
    """
    Type C{line}; wait for C{reply} (a pattern) and the next prompt; give the
    reply (for a listing, its header line and then one line per user).
    """
    start = client.position
    client.send(line)
    m = await client.expect(f"(?s)({reply})" + COMMAND)
    assert m.start() >= start
    return m.group(1)


async def seed_000_sample(
    case: unittest.TestCase,
    lab: Lab,
    port_1: int,
    port_2: int,
    settled: Callable[[LineClient], Awaitable[None]],
) -> None:
    """
    The SAMPLES section: terminal 1 (on C{port_1}) logs in as columbia after
    a wrong password, finds nobody online and leaves seas a message;
    terminal 2 (on C{port_2}) first types "columbia" by mistake, then logs
    in as seas, and the two exchange broadcasts until columbia logs out.
    seas then logs in again on C{port_1}.  The two ports are one server's,
    or two nodes' of a cluster, where C{settled} waits until terminal 2's
    node has heard that columbia left.
    """
    # Terminal 1: columbia, 109bway (wrong), 116bway.
    t1 = await lab.connect(port_1)
    await t1.expect(USERNAME)
    t1.send("columbia")
    await t1.expect(PASSWORD)
    t1.send("109bway")
    await t1.expect(INVALID + r"\r\n" + USERNAME)
    t1.send("columbia")
    await t1.expect(PASSWORD)
    t1.send("116bway")
    await t1.expect(r"Login successful\. Welcome to chat, columbia!\r\n" + COMMAND)

    # whoelse: nobody else yet.
    await type_line(t1, "whoelse", r"Nobody else is online\.\r\n")
    # message seas mo mo da!: seas is offline, so it is kept.
    await type_line(t1, "message seas mo mo da!", r"seas " + STORED)

    # Terminal 2 types "columbia" first.  The server asks for a password
    # (it never says who is online before one is given); the next line
    # of the sample, "seas", is taken as that password and refused like
    # any wrong one.  The typist then logs in as seas.
    t2 = await lab.connect(port_2)
    await t2.expect(USERNAME)
    t2.send("columbia")
    await t2.expect(PASSWORD)
    start = t2.position
    t2.send("seas")
    await t2.expect(INVALID + r"\r\n" + USERNAME)
    case.assertNotIn("logged in", t2.text[start:])
    t2.send("seas")
    await t2.expect(PASSWORD)
    t2.send("summerisover")
    # seas gets columbia's message from before, as an offline message.
    await t2.expect(
        r"Login successful\. Welcome to chat, seas!\r\n"
        r"You have 1 offline message:\r\n" + offline_line("columbia", "private", "mo mo da!") + COMMAND
    )
    # Terminal 1 was not disturbed by the failed attempt on its name.
    case.assertEqual(await drain(t1), "")

    # broadcast message cao cao da!!: columbia gets it, seas does not.
    await type_line(t2, "broadcast message cao cao da!!", r"Broadcast to 1 user\.\r\n")
    await t1.expect(delivered("seas", "broadcast", "cao cao da!!"))

    # broadcast columbia message diao diao da!!!: not our syntax; a usage
    # hint, and nothing reaches columbia.
    reply = await type_line(t2, "broadcast columbia message diao diao da!!!", r"[^\r\n]*\r\n")
    case.assertIn("Usage: broadcast message TEXT | broadcast user USER", reply)
    case.assertIn("'columbia'", reply)

    # wholast 10: columbia, online.
    listing = await type_line(t2, "wholast 10", r"Online in the last 10 minutes \(1\):\r\n" + LISTING)
    case.assertEqual(entries(listing)[1:], ["columbia"])

    received = await drain(t1)
    case.assertNotIn("diao", received)
    case.assertNotIn("cao cao", await drain(t2))

    # logout at the first terminal.
    t1.send("logout")
    await t1.expect(r"Goodbye, columbia!\r\n")
    await t1.closed

    # whoelse at the second: nobody now; wholast still remembers columbia.
    await settled(t2)
    await type_line(t2, "whoelse", r"Nobody else is online\.\r\n")
    listing = await type_line(t2, "wholast 10", r"Online in the last 10 minutes \(1\):\r\n" + LISTING)
    case.assertEqual(entries(listing)[1:], ["columbia (offline)"])

    # <keyboard interrupt> at the second terminal: the client just drops
    # the connection.  The server lets seas go: seas can log in again.
    await t2.close()
    again = await lab.login(port_1, "seas")
    case.assertNotIn("already logged in", again.text)
    await type_line(again, "whoelse", r"Nobody else is online\.\r\n")


async def _at_once(client: LineClient) -> None:
    """One server: what one session does, the others see at once."""


class Seed000SampleTests(unittest.TestCase):
    async def test_seed_000_samples_two_terminals(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        await seed_000_sample(self, lab, port, port, _at_once)


class Seed001ExampleTests(unittest.TestCase):
    async def _ex1(self, lab: Lab, port: int) -> None:
        """Ex1: csee4119 logs in, finds nobody, sets an intro on the next line, logs out."""
        csee = await lab.connect(port)
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

    async def _facebook(self, lab: Lab, port: int) -> LineClient:
        """facebook, the other entry of Ex2's wholast, with its intro."""
        facebook = await lab.login(port, "facebook")
        await type_line(facebook, "personalintro An website", r"Personal introduction saved\.\r\n")
        return facebook

    async def _ex2(self, lab: Lab, port: int) -> LineClient:
        """Ex2: columbia leaves seas a message and sees who was on lately, with intros."""
        columbia = await lab.connect(port)
        await columbia.expect(USERNAME)
        columbia.send("columbia")
        await columbia.expect(PASSWORD)
        columbia.send("116bway")
        await columbia.expect(r"Login successful\. Welcome to chat, columbia!\r\n" + COMMAND)
        await type_line(columbia, "message seas hello", r"seas " + STORED)
        listing = await type_line(
            columbia, "wholast 10", r"Online in the last 10 minutes \(2\):\r\n" + LISTING
        )
        self.assertEqual(
            entries(listing)[1:],
            ["csee4119 <The best course ever> (offline)", "facebook <An website>"],
        )
        return columbia

    async def _ex3(self, port: int, lab: Lab) -> LineClient:
        """Ex3: seas logs in and is shown columbia's message, marked private."""
        seas = await lab.connect(port)
        await seas.expect(USERNAME)
        seas.send("seas")
        await seas.expect(PASSWORD)
        seas.send("summerisover")
        await seas.expect(
            r"Login successful\. Welcome to chat, seas!\r\n"
            r"You have 1 offline message:\r\n" + offline_line("columbia", "private", "hello") + COMMAND
        )
        return seas

    async def test_seed_001_ex1_ex2_ex3(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        await self._ex1(lab, port)
        facebook = await self._facebook(lab, port)
        columbia = await self._ex2(lab, port)
        seas = await self._ex3(port, lab)
        # whoelse shows the intros of those online.
        listing = await type_line(seas, "whoelse", r"Online now \(2\):\r\n" + LISTING)
        self.assertEqual(entries(listing)[1:], ["columbia", "facebook <An website>"])
        # The message went to seas alone.
        self.assertNotIn("hello", await drain(facebook))
        self.assertNotIn("hello", await drain(columbia))

    async def test_seed_001_intro_shown_by_whoelse_to_another_user(self) -> None:
        """The e. part: one user sets an intro, the other sees it in whoelse."""
        lab = Lab(self)
        _, port = await lab.start()
        csee = await lab.login(port, "csee4119")
        other = await lab.login(port, "columbia")
        csee.send("personalintro")
        await csee.expect(r"Please enter your personal introduction[^\r\n]*\r\nIntro: ")
        csee.send("The best course ever")
        await csee.expect(r"Personal introduction saved\.\r\n")
        listing = await type_line(other, "whoelse", r"Online now \(1\):\r\n" + LISTING)
        self.assertEqual(entries(listing)[1:], ["csee4119 <The best course ever>"])

    async def test_seed_001_offline_message_survives_a_crash_before_seas_logs_in(self) -> None:
        """Ex2, then the server is killed (SIGKILL) and restarted, then Ex3."""
        lab = Lab(self)
        server, port = await lab.start()
        await self._ex1(lab, port)
        await self._facebook(lab, port)
        await self._ex2(lab, port)
        await server.kill()
        self.assertEqual(server.killed_by(), signal.SIGKILL)
        port = await server.start()
        seas = await self._ex3(port, lab)
        # The intro survived too.
        listing = await type_line(seas, "wholast 10", r"Online in the last 10 minutes \(3\):\r\n" + LISTING)
        self.assertIn("csee4119 <The best course ever> (offline)", entries(listing))


class Seed002Tests(unittest.TestCase):
    """The third assignment's readme: its rules for blocks, duplicates and shutdown."""

    async def test_seed_002_invalid_username_is_blocked_too(self) -> None:
        lab = Lab(self)
        _, port = await lab.start("--max-attempts", "3", "--block-time", "45")
        client = await lab.connect(port)
        await client.expect(USERNAME)
        for _ in range(2):
            client.send("nobody", "x")
            await client.expect(INVALID + r"\r\n" + USERNAME)
        client.send("nobody", "x")
        await client.closed
        self.assertIn("nobody is blocked", client.text)

    async def test_seed_002_server_interrupt_says_goodbye_to_all_clients(self) -> None:
        lab = Lab(self)
        server, port = await lab.start()
        a = await lab.login(port, "columbia")
        b = await lab.login(port, "seas")
        await server.signal(signal.SIGINT)
        for client in (a, b):
            await client.expect(r"shutting down[^\r\n]*Goodbye[^\r\n]*\r\n")
            await client.closed
