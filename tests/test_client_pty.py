"""
The client in a real pseudo-terminal (from Python's C{pty} module), typed
into as a person would, against a real ``twistd -n chat``.

What the client writes is replayed on a L{Screen}, so the assertions are
about what the user sees.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import sys
import termios
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.python.failure import Failure
from twisted.trial import unittest

from tests.support import ROOT, LineClient, ServerProcess, login, timeout_deferred
from tests.test_client_e2e import TIMEOUT, client_env, exit_status
from tests.test_terminal import Screen

UP, LEFT = b"\x1b[A", b"\x1b[D"
CTRL_C, CTRL_D, CTRL_Z, BACKSPACE = b"\x03", b"\x04", b"\x1a", b"\x7f"


class PtyClient(protocol.ProcessProtocol):
    """
    ``python -m chat.client`` whose stdin, stdout and stderr are the slave
    side of a pseudo-terminal 80 columns wide; the test holds the master.

    A copy of the slave is kept open until the client exits, so that the
    terminal's settings can be read after it is gone.
    """

    width = 80

    def __init__(self) -> None:
        self.output = b""
        self.status: int | None = None
        self.ended = False
        self.initial_settings: list[Any] = []
        self.settings_at_exit: list[Any] | None = None
        self._slave: int | None = None
        self._watchers: list[tuple[Callable[[Screen], bool], defer.Deferred[Screen]]] = []
        self._exit_waiters: list[defer.Deferred[None]] = []
        self.transport: Any = None

    @classmethod
    def spawn(cls, *args: str) -> PtyClient:
        client = cls()
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cls.width, 0, 0))
        client.initial_settings = termios.tcgetattr(slave)
        client._slave = os.dup(slave)
        argv = [sys.executable, "-m", "chat.client", *args]
        # Twisted's own pty handling, with this pty (its type says bool).
        use_pty: Any = (master, slave, os.ttyname(slave))
        reactor.spawnProcess(client, sys.executable, argv, env=client_env(), path=ROOT, usePTY=use_pty)
        return client

    def settings(self) -> list[Any]:
        assert self._slave is not None
        return termios.tcgetattr(self._slave)

    def screen(self) -> Screen:
        return Screen(self.output, self.width)

    def type(self, keys: bytes) -> None:
        self.transport.write(keys)

    def outReceived(self, data: bytes) -> None:
        self.output += data
        screen = self.screen()
        still = []
        for done, d in self._watchers:
            if d.called:
                continue
            if done(screen):
                d.callback(screen)
            else:
                still.append((done, d))
        self._watchers = still

    def processExited(self, reason: Failure) -> None:
        self.status = exit_status(reason)
        if self._slave is not None:
            self.settings_at_exit = termios.tcgetattr(self._slave)
            os.close(self._slave)
            self._slave = None

    def processEnded(self, reason: Failure) -> None:
        if self.status is None:
            self.processExited(reason)
        self.ended = True
        watchers, self._watchers = self._watchers, []
        for _, watcher in watchers:
            if not watcher.called:
                watcher.errback(AssertionError(f"client exited; the screen was:\n{self._dump()}"))
        waiters, self._exit_waiters = self._exit_waiters, []
        for d in waiters:
            d.callback(None)

    def _dump(self) -> str:
        try:
            return "\n".join(self.screen().lines())
        except AssertionError as e:
            return f"{e}; raw output {self.output!r}"

    def until(self, done: Callable[[Screen], bool], what: str) -> defer.Deferred[Screen]:
        """Wait until the screen shows C{what}, which C{done} checks."""
        d: defer.Deferred[Screen] = defer.Deferred()
        if self.output and done(self.screen()):
            d.callback(self.screen())
            return d
        self._watchers.append((done, d))

        def explain(f: Failure) -> Failure:
            if f.check(defer.TimeoutError):
                raise AssertionError(f"timed out waiting for {what}; the screen was:\n{self._dump()}")
            return f

        return timeout_deferred(d, TIMEOUT, what).addErrback(explain)

    def at_prompt(self, row: str) -> defer.Deferred[Screen]:
        """Wait until the input row reads C{row} with the cursor at its end."""
        return self.until(lambda s: s.cursor_row == row.rstrip() and s.before_cursor == row, repr(row))

    async def exit(self) -> int:
        if not self.ended:
            d: defer.Deferred[None] = defer.Deferred()
            self._exit_waiters.append(d)
            await timeout_deferred(d, TIMEOUT, f"the client to exit; the screen was:\n{self._dump()}")
        assert self.status is not None
        return self.status


def _raw(settings: list[Any]) -> bool:
    return not settings[3] & (termios.ECHO | termios.ICANON)


class PtyTests(unittest.TestCase):
    async def start(self) -> tuple[int, PtyClient]:
        self.server = ServerProcess(self.mktemp())
        self.addCleanup(self.server.stop)
        port = await self.server.start(timeout=TIMEOUT)
        client = PtyClient.spawn("localhost", str(port))
        self.addCleanup(self._reap, client)
        return port, client

    async def _reap(self, client: PtyClient) -> None:
        if client.status is None:
            client.transport.signalProcess("KILL")
        await client.exit()

    async def log_in(self, client: PtyClient) -> None:
        await client.at_prompt("Username: ")
        client.type(b"columbia\r")
        await client.at_prompt("Password: ")
        client.type(b"116bway\r")
        await client.at_prompt("Command: ")

    async def seas(self, port: int) -> LineClient:
        seas = await login(port, "seas")
        self.addCleanup(seas.close)
        return seas

    async def test_the_password_is_not_echoed(self) -> None:
        _, client = await self.start()
        await client.at_prompt("Username: ")
        self.assertTrue(_raw(client.settings()))
        client.type(b"columbia\r")
        await client.at_prompt("Password: ")
        client.type(b"116bway")
        client.type(b"\r")
        screen = await client.at_prompt("Command: ")
        self.assertNotIn(b"116bway", client.output)
        self.assertEqual(
            screen.lines(),
            ["Username: columbia", "Password:", "Login successful. Welcome to chat, columbia!", "Command:"],
        )

    async def test_a_message_arriving_while_typing_keeps_the_line(self) -> None:
        port, client = await self.start()
        await self.log_in(client)
        seas = await self.seas(port)
        client.type(b"message seas hi th")
        await client.at_prompt("Command: message seas hi th")
        seas.send("message columbia are you there?")
        screen = await client.until(
            lambda s: "seas (private): are you there?" in s.lines(), "the message from seas"
        )
        self.assertEqual(
            screen.lines()[-2:], ["seas (private): are you there?", "Command: message seas hi th"]
        )
        self.assertEqual(screen.before_cursor, "Command: message seas hi th")
        client.type("ere, héllo 日本\r".encode())
        await seas.expect(r"columbia \(private\): hi there, héllo 日本\r\n", timeout=TIMEOUT)
        screen = await client.at_prompt("Command: ")
        self.assertIn("Command: message seas hi there, héllo 日本", screen.lines())

    async def test_arrow_keys_edit_the_line_and_walk_the_history(self) -> None:
        port, client = await self.start()
        await self.log_in(client)
        seas = await self.seas(port)
        client.type(b"mesage seas one" + LEFT * 12 + b"s\r")
        await seas.expect(r"columbia \(private\): one\r\n", timeout=TIMEOUT)
        await client.at_prompt("Command: ")
        client.type(UP)
        await client.at_prompt("Command: message seas one")
        client.type(BACKSPACE * 3 + b"two\r")
        await seas.expect(r"columbia \(private\): two\r\n", timeout=TIMEOUT)

    async def test_ctrl_d_logs_out_and_gives_the_terminal_back(self) -> None:
        _, client = await self.start()
        await self.log_in(client)
        self.assertTrue(_raw(client.settings()))
        client.type(CTRL_D)
        self.assertEqual(await client.exit(), 0)
        self.assertEqual(client.settings_at_exit, client.initial_settings)
        self.assertEqual(client.screen().lines()[-2:], ["Goodbye, columbia!", "Disconnected."])
        self.assertEqual(client.screen().cursor_row, "")

    async def test_ctrl_c_logs_out_and_gives_the_terminal_back(self) -> None:
        _, client = await self.start()
        await self.log_in(client)
        client.type(b"half a thought")
        await client.at_prompt("Command: half a thought")
        client.type(CTRL_C)
        self.assertEqual(await client.exit(), 0)
        self.assertEqual(client.settings_at_exit, client.initial_settings)
        self.assertEqual(
            client.screen().lines()[-3:], ["Command: half a thought^C", "Goodbye, columbia!", "Disconnected."]
        )

    async def test_typed_logout_exits_zero(self) -> None:
        _, client = await self.start()
        await self.log_in(client)
        client.type(b"logout\r")
        self.assertEqual(await client.exit(), 0)
        self.assertEqual(
            client.screen().lines()[-3:], ["Command: logout", "Goodbye, columbia!", "Disconnected."]
        )

    async def test_server_shutdown_gives_the_terminal_back_and_exits_one(self) -> None:
        _, client = await self.start()
        await self.log_in(client)
        client.type(b"half typed")
        await client.at_prompt("Command: half typed")
        await self.server.stop()
        self.assertEqual(await client.exit(), 1)
        self.assertEqual(client.settings_at_exit, client.initial_settings)
        self.assertEqual(
            client.screen().lines()[-2:],
            ["The server is shutting down. Goodbye.", "Disconnected by the server."],
        )
        self.assertNotIn(b"Traceback", client.output)

    async def test_sigterm_logs_out_and_gives_the_terminal_back(self) -> None:
        _, client = await self.start()
        await self.log_in(client)
        client.transport.signalProcess("TERM")
        self.assertEqual(await client.exit(), 0)
        self.assertEqual(client.settings_at_exit, client.initial_settings)
        self.assertEqual(client.screen().lines()[-2:], ["Goodbye, columbia!", "Disconnected."])

    async def test_ctrl_z_without_job_control_carries_on_with_the_line(self) -> None:
        """
        Without a job-control shell the kernel does not stop the client
        (its process group is orphaned), so it carries on at once: raw mode
        and the half-typed line come back.
        """
        port, client = await self.start()
        await self.log_in(client)
        seas = await self.seas(port)
        client.type(b"message seas still")
        await client.at_prompt("Command: message seas still")
        before = len(client.output)
        client.type(CTRL_Z)
        await client.until(
            lambda s: b"Command: message seas still" in client.output[before:], "the row drawn again"
        )
        await client.at_prompt("Command: message seas still")
        self.assertTrue(_raw(client.settings()))
        client.type(b" here\r")
        await seas.expect(r"columbia \(private\): still here\r\n", timeout=TIMEOUT)
