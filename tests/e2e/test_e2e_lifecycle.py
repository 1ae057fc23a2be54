"""
What survives the server: restarts after SIGKILL and SIGTERM keep offline
messages, last-seen times and intros; SIGTERM and SIGINT say goodbye to every
connection and exit cleanly; SIGHUP reloads the users file, and no signal an
operator sends by habit ends the server without a goodbye.
"""

from __future__ import annotations

import signal

from twisted.trial import unittest

from tests.e2e.support import (
    COMMAND,
    PASSWORD,
    USERNAME,
    Lab,
    LineClient,
    ServerProcess,
    entries,
    offline_line,
)

STORED = r"is offline; the message will be delivered when they next log in\.\r\n"
GOODBYE = r"The server is shutting down\. Goodbye\.\r\n"


async def restart(server: ServerProcess, how: signal.Signals) -> int:
    """End C{server} with C{how} and start it again on the same directory; give the new port."""
    await server.signal(how)
    return await server.start()


class RestartTests(unittest.TestCase):
    async def _offline_message_survives(self, how: signal.Signals) -> ServerProcess:
        lab = Lab(self)
        server, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        await lab.login(port, "google")
        columbia.send("broadcast user google seas message to both")
        await columbia.expect(r"Sent to google\. seas " + STORED)
        columbia.send("message seas mo mo da!")
        await columbia.expect(r"seas " + STORED)
        # At once, with no chance to tidy up.
        port = await restart(server, how)
        seas = await lab.connect(port)
        await seas.expect(USERNAME)
        seas.send("seas", "summerisover")
        await seas.expect(
            r"Welcome[^\r\n]*\r\nYou have 2 offline messages:\r\n"
            + offline_line("columbia", "broadcast", "to both")
            + offline_line("columbia", "private", "mo mo da!")
            + COMMAND
        )
        return server

    async def test_offline_message_survives_sigkill(self) -> None:
        server = await self._offline_message_survives(signal.SIGKILL)
        self.assertTrue(server.running)

    async def test_offline_message_survives_sigterm_restart(self) -> None:
        await self._offline_message_survives(signal.SIGTERM)

    async def test_memory_database_keeps_nothing_over_a_restart(self) -> None:
        lab = Lab(self)
        server, port = await lab.start("--database", ":memory:")
        columbia = await lab.login(port, "columbia")
        columbia.send("personalintro forgotten")
        await columbia.expect("saved")
        columbia.send("message seas lost")
        await columbia.expect("seas " + STORED)
        port = await restart(server, signal.SIGTERM)
        seas = await lab.login(port, "seas")
        seas.send("wholast 10")
        await seas.expect(r"Nobody else was online in the last 10 minutes\.\r\n")
        self.assertNotIn("lost", seas.text)

    async def test_intros_and_wholast_survive_sigkill(self) -> None:
        lab = Lab(self)
        server, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        columbia.send("personalintro The lion")
        await columbia.expect(r"Personal introduction saved\.\r\n")
        columbia.send("logout")
        await columbia.closed
        seas = await lab.login(port, "seas")
        # The store writes in order: once this is saved, so is columbia's logout.
        seas.send("personalintro Engineer")
        await seas.expect(r"Personal introduction saved\.\r\n")
        port = await restart(server, signal.SIGKILL)
        google = await lab.login(port, "google")
        google.send("whoelse")
        await google.expect(r"Nobody else is online\.\r\n")
        google.send("wholast 10")
        m = await google.expect(r"Online in the last 10 minutes \(2\):\r\n((?:  [^\r\n]*\r\n)*)" + COMMAND)
        self.assertEqual(entries(m.group(1)), ["columbia <The lion> (offline)", "seas <Engineer> (offline)"])
        await lab.login(port, "columbia")
        google.send("whoelse")
        await google.expect(r"Online now \(1\):\r\n  columbia\s+<The lion>\r\n")

    async def test_intros_and_wholast_survive_sigterm_restart(self) -> None:
        lab = Lab(self)
        server, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        columbia.send("personalintro The lion")
        await columbia.expect(r"Personal introduction saved\.\r\n")
        # columbia is still online when the server stops.
        port = await restart(server, signal.SIGTERM)
        await columbia.closed
        google = await lab.login(port, "google")
        google.send("wholast 10")
        m = await google.expect(r"Online in the last 10 minutes \(1\):\r\n((?:  [^\r\n]*\r\n)*)" + COMMAND)
        self.assertEqual(entries(m.group(1)), ["columbia <The lion> (offline)"])


class ShutdownTests(unittest.TestCase):
    async def _goodbye_to_everyone(self, how: signal.Signals) -> None:
        lab = Lab(self)
        server, port = await lab.start()
        at_username = await lab.connect(port)
        await at_username.expect(USERNAME)
        at_password = await lab.connect(port)
        await at_password.expect(USERNAME)
        at_password.send("seas")
        await at_password.expect(PASSWORD)
        columbia = await lab.login(port, "columbia")
        writing_intro = await lab.login(port, "csee4119")
        writing_intro.send("personalintro")
        await writing_intro.expect("Intro: ")
        columbia.send("message google kept")
        await columbia.expect("google " + STORED)
        clients: list[LineClient] = [at_username, at_password, columbia, writing_intro]
        await server.signal(how)
        for client in clients:
            await client.expect(GOODBYE)
            await client.closed
        # twistd finishes its shutdown, then ends itself with the signal it got
        # (so a supervisor sees why it stopped): both are a clean exit.
        self.assertTrue(
            server.clean_exit() or server.killed_by() == how, f"exit: {server.exit}\n{server.log.decode()}"
        )
        self.assertIn(b"Server Shut Down.", server.log)
        self.assertEqual(server.tracebacks(), [])
        # Nothing stored was lost.
        port = await server.start()
        google = await lab.connect(port)
        await google.expect(USERNAME)
        google.send("google", "partofalphabet")
        await google.expect(r"You have 1 offline message:\r\n" + offline_line("columbia", "private", "kept"))

    async def test_sigterm_says_goodbye_to_every_connection_and_exits_cleanly(self) -> None:
        await self._goodbye_to_everyone(signal.SIGTERM)

    async def test_sigint_says_goodbye_to_every_connection_and_exits_cleanly(self) -> None:
        await self._goodbye_to_everyone(signal.SIGINT)


class HabitualSignalTests(unittest.TestCase):
    """kill -HUP, -USR1, -USR2: the server goes on, and says what it did."""

    async def test_sighup_reloads_the_users_file_with_everyone_still_connected(self) -> None:
        lab = Lab(self)
        server, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        seas = await lab.login(port, "seas")
        with open(server.users_path, "a") as f:
            f.write("newcomer firstday1\n")
        with open(server.users_path) as f:
            kept = [line for line in f if not line.startswith("seas ")]
        with open(server.users_path, "w") as f:
            f.writelines(kept)
        mark = len(server.log)
        server.send_signal(signal.SIGHUP)
        await server.expect_log(r"reloaded .*added newcomer, removed seas", since=mark)
        await seas.expect(r"The user seas no longer exists on this server; this session is closed\.\r\n")
        await seas.closed
        newcomer = await lab.login(port, "newcomer", "firstday1")
        newcomer.send("whoelse")
        await newcomer.expect(r"Online now \(1\):\r\n  columbia\r\n" + COMMAND)
        columbia.send("message newcomer welcome")
        await columbia.expect(r"Sent to newcomer\.\r\n")
        self.assertTrue(server.running)

    async def test_a_users_file_with_a_mistake_keeps_the_old_users(self) -> None:
        lab = Lab(self)
        server, port = await lab.start()
        with open(server.users_path, "a") as f:
            f.write("broken-line-without-a-password\n")
        mark = len(server.log)
        server.send_signal(signal.SIGHUP)
        await server.expect_log(r"was not reloaded: .*line \d+: expected '<username> <password>'", since=mark)
        await lab.login(port, "seas")

    async def test_sigusr1_and_sigusr2_do_not_end_the_server(self) -> None:
        lab = Lab(self)
        server, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        for sig, said in (
            (signal.SIGUSR1, r"no log file to rotate"),
            (signal.SIGUSR2, r"1 logged in here"),
            (signal.SIGHUP, r"reloaded"),
        ):
            mark = len(server.log)
            server.send_signal(sig)
            await server.expect_log(said, since=mark)
        columbia.send("whoelse")
        await columbia.expect("Nobody else is online")
        self.assertTrue(server.running)
