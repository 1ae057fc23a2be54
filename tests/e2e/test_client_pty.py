"""
The client in a real pseudo-terminal (from Python's C{pty} module), typed
into as a person would, against a real ``twistd -n chat``.

What the client writes is replayed on a L{Screen}, so the assertions are
about what the user sees.
"""

from __future__ import annotations

from twisted.trial import unittest

from tests.e2e.programs import CTRL_C, CTRL_D, TIMEOUT, PtyProgram, raw
from tests.e2e.support import Lab, LineClient, ServerProcess

UP, LEFT = b"\x1b[A", b"\x1b[D"
CTRL_Z, BACKSPACE = b"\x1a", b"\x7f"


class PtyTests(unittest.TestCase):
    async def start(self) -> tuple[int, PtyProgram]:
        self.server = ServerProcess(self.mktemp())
        self.addCleanup(self.server.stop)
        port = await self.server.start(timeout=TIMEOUT)
        client = PtyProgram.spawn("chat.client", "localhost", str(port))
        self.addCleanup(client.reap)
        return port, client

    async def log_in(self, client: PtyProgram) -> None:
        await client.at_prompt("Username: ")
        client.type(b"columbia\r")
        await client.at_prompt("Password: ")
        client.type(b"116bway\r")
        await client.at_prompt("Command: ")

    async def seas(self, port: int) -> LineClient:
        seas = await Lab(self).login(port, "seas")
        self.addCleanup(seas.close)
        return seas

    async def test_the_password_is_not_echoed(self) -> None:
        _, client = await self.start()
        await client.at_prompt("Username: ")
        self.assertTrue(raw(client.settings()))
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

    async def test_a_person_may_try_again_after_a_wrong_password(self) -> None:
        _, client = await self.start()
        await client.at_prompt("Username: ")
        client.type(b"columbia\r")
        await client.at_prompt("Password: ")
        client.type(b"wrong\r")
        screen = await client.at_prompt("Username: ")
        self.assertIn("Invalid username or password.", screen.lines())
        await self.log_in(client)

    async def test_up_does_not_bring_back_the_username(self) -> None:
        _, client = await self.start()
        await self.log_in(client)
        client.type(UP + b"x")
        await client.at_prompt("Command: x")

    async def test_ctrl_d_logs_out_and_gives_the_terminal_back(self) -> None:
        _, client = await self.start()
        await self.log_in(client)
        self.assertTrue(raw(client.settings()))
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
        self.assertTrue(raw(client.settings()))
        client.type(b" here\r")
        await seas.expect(r"columbia \(private\): still here\r\n", timeout=TIMEOUT)
