"""
The C{history} command against a real server: what it shows survives a
clean restart and a kill -9 (once the history answer has been seen), each
message exactly once, and C{--history 0} keeps nothing.
"""

from __future__ import annotations

import re
import signal

from twisted.trial import unittest

from tests.e2e.support import COMMAND, STAMP, Lab, LineClient, ServerProcess

#: A whole history answer: how many it says it shows, then the lines (each with its time).
HISTORY = r"Your last (\d+) messages?:\r\n((?:" + STAMP + r" [^\r\n]*\r\n)*)" + COMMAND
EMPTY = r"No messages yet\.\r\n" + COMMAND


async def history(client: LineClient, command: str = "history") -> list[str]:
    """
    Send C{command}; give the lines of the answer without their times, or
    [] for "No messages yet.".  The count in the heading must match.
    """
    client.send(command)
    m = await client.expect(r"(?:" + HISTORY + r"|" + EMPTY + r")")
    if m.group(1) is None:
        return []
    lines = m.group(2).splitlines()
    if int(m.group(1)) != len(lines):
        raise AssertionError(f"the heading does not count the lines: {m.group(0)!r}")
    return [re.sub("^" + STAMP + " ", "", line) for line in lines]


async def restart(server: ServerProcess, how: signal.Signals) -> int:
    """End C{server} with C{how}, start it again on the same directory and database; give the new port."""
    await server.signal(how)
    return await server.start()


COLUMBIA_SAW = [
    "columbia to seas (private): one",
    "seas (private): two",
    "columbia (broadcast): three",
    "columbia to seas, google (broadcast): four",
]
SEAS_SAW = [
    "columbia (private): one",
    "seas to columbia (private): two",
    "columbia (broadcast): three",
    "columbia (broadcast): four",
]


async def talk(lab: Lab, port: int) -> tuple[LineClient, LineClient]:
    """columbia and seas exchange private messages, a broadcast to all, and one to named users."""
    columbia = await lab.login(port, "columbia")
    seas = await lab.login(port, "seas")
    columbia.send("message seas one")
    await columbia.expect(r"Sent to seas\.\r\n" + COMMAND)
    await seas.expect(r"columbia \(private\): one\r\n")
    seas.send("message columbia two")
    await seas.expect(r"Sent to columbia\.\r\n" + COMMAND)
    await columbia.expect(r"seas \(private\): two\r\n")
    columbia.send("broadcast message three")
    await columbia.expect(r"Broadcast to 1 user\.\r\n" + COMMAND)
    await seas.expect(r"columbia \(broadcast\): three\r\n")
    columbia.send("broadcast user seas google message four")
    await columbia.expect(r"Sent to seas\. google is offline[^\r\n]*\r\n" + COMMAND)
    await seas.expect(r"columbia \(broadcast\): four\r\n")
    return columbia, seas


class HistoryRestartTests(unittest.TestCase):
    async def test_history_survives_a_sigterm_restart(self) -> None:
        lab = Lab(self)
        server, port = await lab.start()
        await talk(lab, port)
        port = await restart(server, signal.SIGTERM)
        columbia = await lab.login(port, "columbia")
        self.assertEqual(await history(columbia), COLUMBIA_SAW)
        seas = await lab.login(port, "seas")
        self.assertEqual(await history(seas), SEAS_SAW)
        google = await lab.login(port, "google")
        self.assertEqual(
            await history(google),
            ["columbia (broadcast): three", "columbia (broadcast): four"],
        )

    async def test_history_once_answered_survives_sigkill_each_message_once(self) -> None:
        """
        The history answer is queued after the writes it shows, so once it
        has come they are on disk: a kill -9 then loses none of them, and
        the restart repeats none.
        """
        lab = Lab(self)
        server, port = await lab.start()
        columbia, _ = await talk(lab, port)
        self.assertEqual(await history(columbia), COLUMBIA_SAW)
        port = await restart(server, signal.SIGKILL)
        columbia = await lab.login(port, "columbia")
        self.assertEqual(await history(columbia), COLUMBIA_SAW)
        seas = await lab.login(port, "seas")
        self.assertEqual(await history(seas), SEAS_SAW)
        # And what is said after the restart follows, in order.
        columbia.send("message seas five")
        await columbia.expect(r"Sent to seas\.\r\n" + COMMAND)
        self.assertEqual(await history(seas, "history 2"), [*SEAS_SAW[-1:], "columbia (private): five"])


class HistoryOptionTests(unittest.TestCase):
    async def test_history_0_keeps_nothing(self) -> None:
        lab = Lab(self)
        server, port = await lab.start("--history", "0")
        columbia, seas = await talk(lab, port)
        self.assertEqual(await history(columbia), [])
        self.assertEqual(await history(seas, "history 5"), [])
        port = await restart(server, signal.SIGTERM)
        columbia = await lab.login(port, "columbia")
        self.assertEqual(await history(columbia), [])

    async def test_history_works_with_a_memory_database(self) -> None:
        lab = Lab(self)
        _, port = await lab.start("--database", ":memory:")
        columbia, seas = await talk(lab, port)
        self.assertEqual(await history(columbia), COLUMBIA_SAW)
        self.assertEqual(await history(seas, "history 1"), SEAS_SAW[-1:])
