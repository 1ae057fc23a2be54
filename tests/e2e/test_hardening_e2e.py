"""
The server against hostile and broken clients, over real TCP, with a real
``twistd -n chat``: garbage bytes, huge lines, floods, password guessing,
clients that stop reading, and ``kill -9``.
"""

from __future__ import annotations

import re
import time

from twisted.internet import defer, reactor
from twisted.internet.protocol import Protocol
from twisted.trial import unittest

from chat.server.auth import ScryptSecret, format_user_line
from tests.e2e.support import USERS, Lab, LineClient, ServerProcess


class BadInputTests(unittest.TestCase):
    """After each kind of bad input, a fresh client is served normally."""

    timeout = 120

    async def setUp(self) -> None:  # type: ignore[override]
        # Hostile clients come from afar: loopback gets no exemption here.
        self.server = ServerProcess(self.mktemp(), args=("--database", ":memory:", "--exempt", ""))
        self.port = await self.server.start()
        self.addCleanup(self.server.stop)

    async def assert_server_healthy(self) -> None:
        client = await Lab(self).login(self.port, "google")
        client.send("whoelse")
        await client.expect("Command: ")
        client.send("logout")
        await client.expect("Goodbye")
        await client.closed
        self.assertEqual(self.server.tracebacks(), [])

    async def test_invalid_utf8_before_and_after_login(self) -> None:
        client = await Lab(self).connect(self.port)
        await client.expect("Username: ")
        client.send_bytes(b"\xc3\x28\xff\r\n")
        await client.expect("not valid UTF-8 text; it was ignored.\r\nUsername: ")
        client.send("columbia", "116bway")
        await client.expect("Command: ")
        client.send_bytes(b"message seas \xed\xa0\x80\r\n")  # an encoded surrogate
        await client.expect("not valid UTF-8 text")
        client.send("whoelse")
        await client.expect("Nobody else is online")
        await self.assert_server_healthy()

    async def test_nul_and_control_bytes(self) -> None:
        client = await Lab(self).login(self.port, "columbia")
        client.send_bytes(b"whoelse\x00\r\nbroadcast message \x07\x1b[31mred\r\n")
        await client.expect("Control characters are not allowed")
        await client.expect("Control characters are not allowed")
        await self.assert_server_healthy()

    async def test_telnet_negotiation_bytes(self) -> None:
        client = await Lab(self).connect(self.port)
        client.send_bytes(b"\xff\xfd\x18\xff\xfd\x20\xff\xfb\x01\r\n")
        await client.expect("not valid UTF-8 text")
        client.send("columbia", "116bway")
        await client.expect("Welcome")
        await self.assert_server_healthy()

    async def test_ten_megabyte_line_without_newline(self) -> None:
        client = await Lab(self).login(self.port, "columbia")
        chunk = b"A" * 65536
        for _ in range(160):
            client.send_bytes(chunk)
        await client.expect("longer than 4096 bytes; it was ignored")
        client.send_bytes(b"still the same line\r\nwhoelse\r\n")
        await client.expect("Nobody else is online")
        self.assertNotIn("still the same line", client.text)
        await self.assert_server_healthy()

    async def test_line_of_spaces_and_username_with_spaces(self) -> None:
        client = await Lab(self).connect(self.port)
        await client.expect("Username: ")
        client.send(" " * 3000)
        await client.expect("Username: ")
        client.send("colum bia")
        await client.expect("A username is a single word")
        client.send("columbia", "116bway", " " * 4000)
        await client.expect("Welcome.*\r\nCommand: Command: ")
        await self.assert_server_healthy()

    async def test_a_thousand_commands_in_one_write(self) -> None:
        client = await Lab(self).login(self.port, "columbia")
        client.send_bytes(b"whoelse\n" * 1000)
        # The rate limit answers the first burst and then disconnects the flood.
        await client.closed
        self.assertEqual(client.text.count("Nobody else is online."), 20)
        self.assertIn("Disconnected for sending too many commands too fast.", client.text)
        await self.assert_server_healthy()

    async def test_connections_closing_mid_line_mid_login_and_mid_password(self) -> None:
        for data in (b"colum", b"columbia\n", b"columbia\n116b", b"columbia\n116bway\nwhoel"):
            client = await Lab(self).connect(self.port)
            client.send_bytes(data)
            await client.close()
        await self.assert_server_healthy()


class ExemptionTests(unittest.TestCase):
    timeout = 120

    async def test_loopback_is_exempt_from_connection_and_flood_limits_by_default(self) -> None:
        args = ("--database", ":memory:", "--max-connections-per-ip", "2")
        server = ServerProcess(self.mktemp(), args=args)
        port = await server.start()
        self.addCleanup(server.stop)
        clients = [await Lab(self).login(port, name) for name in ("columbia", "seas", "google")]
        clients[0].send_bytes(b"whoelse\n" * 200)
        for _ in range(200):
            await clients[0].expect("Online now")
        self.assertNotIn("Slow down", clients[0].text)
        for client in clients:
            await client.close()

    async def test_exempt_networks_can_be_chosen(self) -> None:
        server = ServerProcess(
            self.mktemp(),
            args=("--database", ":memory:", "--max-connections-per-ip", "1", "--exempt", "10.0.0.0/8"),
        )
        port = await server.start()
        self.addCleanup(server.stop)
        first = await Lab(self).connect(port)
        await first.expect("Username: ")
        second = await Lab(self).connect(port)
        await second.closed
        self.assertIn("Too many connections from your address (limit 1).", second.text)
        await first.close()


class GuessingTests(unittest.TestCase):
    timeout = 180

    async def guess(self, port: int, name: str, password: str) -> str:
        """One connection, one guess; returns everything the server said."""
        client = await Lab(self).connect(port)
        await client.expect("Username: ")
        client.send(name)
        await client.expect("Password: |blocked")
        if "blocked" not in client.text:
            client.send(password)
            await client.expect("Username: |blocked|being checked")
        if not client.text.rstrip().endswith("Username:"):
            await client.closed
        else:
            await client.close()
        return client.text

    async def brute_force(self, port: int, attempts: int, parallel: int) -> tuple[int, int, int]:
        """
        Guess C{attempts} times; return how many guesses were checked, how many
        were refused as blocked without a check, and how many were told to wait.
        """
        checked = blocked = waiting = 0
        remaining = iter(range(attempts))

        async def worker() -> None:
            nonlocal checked, blocked, waiting
            for i in remaining:
                text = await self.guess(port, "columbia", f"guess{i}")
                if "Invalid username or password." in text:
                    checked += 1
                elif "blocked" in text:
                    blocked += 1
                else:
                    self.assertIn("being checked", text)
                    waiting += 1

        await defer.gatherResults([defer.Deferred.fromCoroutine(worker()) for _ in range(parallel)])
        return checked, blocked, waiting

    async def test_a_thousand_guesses_get_at_most_max_attempts_checks(self) -> None:
        server = ServerProcess(self.mktemp(), args=("--database", ":memory:"))
        port = await server.start()
        self.addCleanup(server.stop)
        started = time.monotonic()
        checked, blocked, waiting = await self.brute_force(port, 1000, parallel=10)
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, 60, "the block period must cover the whole run for this count")
        self.assertEqual((checked, blocked, waiting), (3, 997, 0))
        # The real user, from another address, is not locked out.
        self.assertIn("Welcome", await self.guess_from_elsewhere(port))

    async def guess_from_elsewhere(self, port: int) -> str:
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=("127.0.0.2", 0))
        client = await connectProtocol(endpoint, LineClient())
        client.send("columbia", USERS["columbia"])
        await client.expect("Welcome")
        await client.close()
        return client.text

    async def test_parallel_guesses_against_hashed_passwords_are_bounded_too(self) -> None:
        directory = self.mktemp()
        server = ServerProcess(directory, args=("--database", ":memory:"))
        with open(server.users_path, "w") as f:
            secret = ScryptSecret.create(b"116bway", log_n=10, r=8, p=1)
            f.write(format_user_line("columbia", secret) + "\nseas summerisover\n")
        port = await server.start()
        self.addCleanup(server.stop)
        checked, blocked, waiting = await self.brute_force(port, 200, parallel=20)
        # Checks take a while here, so parallel guesses beyond the limit are
        # told to wait rather than checked.
        self.assertEqual(checked, 3)
        self.assertEqual(blocked + waiting, 197)
        self.assertGreater(blocked, 0)


class CrashTests(unittest.TestCase):
    timeout = 180

    async def test_every_acknowledged_offline_message_survives_kill_9_exactly_once(self) -> None:
        # The flood limit is raised so one client can send 1,000 messages at once.
        server = ServerProcess(self.mktemp(), args=("--rate", "5000", "--burst", "5000"))
        port = await server.start()
        self.addCleanup(server.stop)
        sender = await Lab(self).login(port, "columbia")
        sender.send(*(f"message seas note-{i:04d}" for i in range(1000)))
        for _ in range(1000):
            await sender.expect("seas is offline; the message will be delivered", timeout=60)
        await server.kill()
        self.assertEqual(server.killed_by(), 9)

        await server.start()
        receiver = await Lab(self).connect(server.port)  # type: ignore[arg-type]
        receiver.send("seas", USERS["seas"])
        await receiver.expect("You have 1000 offline messages:")
        await receiver.expect("note-0999.*\r\nCommand: ", timeout=30)
        notes = re.findall(r"columbia \(private\): (note-\d{4})", receiver.text)
        self.assertEqual(notes, [f"note-{i:04d}" for i in range(1000)])


class _Sink(Protocol):
    """A client that logs in and then stops reading from its socket."""

    def __init__(self) -> None:
        self.logged_in: defer.Deferred[None] = defer.Deferred()
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.text = b""

    def dataReceived(self, data: bytes) -> None:
        self.text += data
        if b"Command: " in self.text and not self.logged_in.called:
            self.transport.pauseProducing()  # type: ignore[union-attr]
            self.logged_in.callback(None)

    def connectionLost(self, reason: object = None) -> None:
        self.closed.callback(None)


class SlowReaderTests(unittest.TestCase):
    timeout = 300

    async def test_a_client_that_never_reads_cannot_grow_the_server(self) -> None:
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        server = ServerProcess(
            self.mktemp(),
            args=("--database", ":memory:", "--rate", "100000", "--burst", "100000", "--max-message", "4000"),
        )
        port = await server.start()
        self.addCleanup(server.stop)
        sink = _Sink()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), sink)
        sink.transport.write(b"seas\nsummerisover\n")  # type: ignore[union-attr]
        await sink.logged_in
        sender = await Lab(self).login(port, "columbia")
        rss_before = server.status_kib("VmRSS")

        text = "x" * 3990
        sent = 0
        total = 50 * 1024 * 1024
        while sent < total:
            sender.send(*(f"broadcast message {text}" for _ in range(100)))
            sent += 100 * len(text)
            for _ in range(100):
                await sender.expect(r"Broadcast to 1 user\.|the broadcast reached no one\.", timeout=60)

        growth = server.status_kib("VmHWM") - rss_before
        # Bound: --max-output-buffer (256 KiB) queued for the reader, plus
        # allocator slack; 50 MB went past it.
        self.assertLess(growth, 16 * 1024, f"peak RSS grew by {growth} KiB")
        self.assertIn("the broadcast reached no one.", sender.text)
        self.assertIn(b"seas at 127.0.0.1 is not reading; disconnected", server.log)
        sender.send("whoelse")
        await sender.expect("Nobody else is online.")
        sink.transport.resumeProducing()  # type: ignore[union-attr]
        await sink.closed
