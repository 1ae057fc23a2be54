"""
End-to-end tests of ``python -m chat.client`` as a subprocess with piped
stdin and stdout, against a real ``twistd -n chat`` over loopback TCP (and
TLS, with a certificate made here).
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any

from twisted.internet import defer, protocol, reactor, task

from tests.certificates import make_certificate
from tests.e2e.programs import TIMEOUT, PipedProgram, ProgramTestCase, free_port
from tests.e2e.support import ServerProcess
from tests.expect import timeout_deferred


class ClientTestCase(ProgramTestCase):
    program = "chat.client"
    server_args: tuple[str, ...] = ()

    async def start_server(self, *args: str) -> int:
        self.server = ServerProcess(self.mktemp(), args=args or self.server_args)
        self.addCleanup(self.server.stop)
        return await self.server.start(timeout=TIMEOUT)


SESSION = (
    "Username: columbia\n"
    "Password: \n"
    "Login successful. Welcome to chat, columbia!\n"
    "Command: whoelse\n"
    "Nobody else is online.\n"
    "Command: logout\n"
    "Goodbye, columbia!\n"
    "Disconnected.\n"
)


class ScriptTests(ClientTestCase):
    """Not a terminal: the client runs what is piped into it."""

    async def test_a_script_prints_the_session_and_exits_zero(self) -> None:
        port = await self.start_server()
        client = self.spawn("localhost", str(port), stdin=b"columbia\n116bway\nwhoelse\nlogout\n")
        self.assertEqual(await client.exit(), 0)
        self.assertEqual(client.text, SESSION)
        self.assertEqual(client.stderr, b"")

    async def test_the_last_line_is_answered_before_logging_out(self) -> None:
        port = await self.start_server()
        client = self.spawn("127.0.0.1", str(port), stdin=b"columbia\n116bway\nwhoelse")
        self.assertEqual(await client.exit(), 0)
        self.assertTrue(
            client.text.endswith(
                "Command: whoelse\nNobody else is online.\nCommand: \nGoodbye, columbia!\nDisconnected.\n"
            ),
            client.text,
        )

    async def test_lines_are_sent_in_order_one_per_prompt(self) -> None:
        port = await self.start_server()
        script = "columbia\n116bway\npersonalintro\nI like tea\nwhoelse\nhelp logout\n\\quit\n"
        client = self.spawn("localhost", str(port), stdin=script.encode())
        self.assertEqual(await client.exit(), 0)
        self.assertIn(
            "Command: personalintro\n"
            "Please enter your personal introduction (an empty line keeps the current one):\n"
            "Intro: I like tea\n"
            "Personal introduction saved.\n"
            "Command: whoelse\n"
            "Nobody else is online.\n"
            "Command: help logout\n"
            "Usage: logout\n",
            client.text,
        )
        self.assertTrue(client.text.endswith("Command: \\quit\nGoodbye, columbia!\nDisconnected.\n"))

    async def test_two_clients_talk_to_each_other(self) -> None:
        port = await self.start_server()
        columbia = self.spawn("localhost", str(port))
        seas = self.spawn("localhost", str(port))
        columbia.send("columbia", "116bway")
        seas.send("seas", "summerisover")
        await columbia.expect("Welcome to chat, columbia!\nCommand: ")
        await seas.expect("Welcome to chat, seas!\nCommand: ")
        columbia.send("message seas hi seas, héllo")
        await columbia.expect("Sent to seas.\nCommand: ")
        await seas.expect("columbia \\(private\\): hi seas, héllo\n")
        self.assertIn("Command: \ncolumbia (private): hi seas, héllo\n", seas.text)
        seas.send("broadcast message hello all")
        await columbia.expect("\nseas \\(broadcast\\): hello all\n")
        columbia.send("whoelse")
        await columbia.expect("Online now \\(1\\):\n  seas\n")
        columbia.transport.closeStdin()
        seas.transport.closeStdin()
        self.assertEqual(await columbia.exit(), 0)
        self.assertEqual(await seas.exit(), 0)
        self.assertTrue(seas.text.endswith("Goodbye, seas!\nDisconnected.\n"))

    async def test_sigint_logs_out_and_exits_zero(self) -> None:
        """Ctrl+C in a terminal that is not the client's stdin."""
        port = await self.start_server()
        client = self.spawn("localhost", str(port))
        client.send("columbia", "116bway")
        await client.expect("Command: ")
        client.interrupt()
        self.assertEqual(await client.exit(), 0)
        self.assertTrue(client.text.endswith("Command: \nGoodbye, columbia!\nDisconnected.\n"), client.text)

    async def test_sigint_before_logging_in_closes_and_exits_zero(self) -> None:
        port = await self.start_server()
        client = self.spawn("localhost", str(port))
        await client.expect("Username: ")
        client.interrupt()
        self.assertEqual(await client.exit(), 0)
        self.assertEqual(client.text, "Username: \nDisconnected.\n")

    async def test_a_refused_login_ends_the_script_with_status_one(self) -> None:
        """The lines after a wrong password are not sent as the next username and password."""
        port = await self.start_server()
        client = self.spawn("localhost", str(port), stdin=b"columbia\nwrongpw\nwhoelse\nlogout\n")
        self.assertEqual(await client.exit(), 1)
        self.assertEqual(
            client.text,
            "Username: columbia\n"
            "Password: \n"
            "Invalid username or password.\n"
            "Login refused; the rest of the script is not sent.\n"
            "Disconnected.\n",
        )
        self.assertEqual(client.stderr, b"")

    async def test_diagnostics_go_to_the_log_file_not_the_screen(self) -> None:
        port = await self.start_server()
        path = os.path.abspath(self.mktemp())
        script = b"columbia\n116bway\nlogout\n"
        client = self.spawn("--log", path, "localhost", str(port), stdin=script)
        self.assertEqual(await client.exit(), 0)
        with open(path) as f:
            self.assertIn("Main loop terminated", f.read())
        self.assertNotIn("Main loop terminated", client.text)
        self.assertEqual(client.stderr, b"")

    async def test_timestamps_mark_lines_from_the_server(self) -> None:
        port = await self.start_server()
        script = b"columbia\n116bway\nlogout\n"
        client = self.spawn("--timestamps", "localhost", str(port), stdin=script)
        self.assertEqual(await client.exit(), 0)
        stamp = r"\[\d\d:\d\d\] "
        self.assertRegex(
            client.text,
            f"^Username: columbia\nPassword: \n{stamp}Login successful.*\nCommand: logout\n"
            f"{stamp}Goodbye, columbia!\nDisconnected.\n$",
        )


class DisconnectTests(ClientTestCase):
    """The server ends the session: the client says why, and exits 1."""

    async def logged_in(self, *server_args: str) -> PipedProgram:
        port = await self.start_server(*server_args)
        client = self.spawn("localhost", str(port))
        client.send("columbia", "116bway")
        await client.expect("Welcome to chat, columbia!\nCommand: ")
        return client

    async def test_server_shutdown(self) -> None:
        client = await self.logged_in()
        await self.server.stop()
        self.assertEqual(await client.exit(), 1)
        self.assertTrue(
            client.text.endswith(
                "Command: \nThe server is shutting down. Goodbye.\nDisconnected by the server.\n"
            ),
            client.text,
        )
        self.assertNoTraceback(client)

    async def test_idle_timeout(self) -> None:
        client = await self.logged_in("--idle-timeout", "1")
        self.assertEqual(await client.exit(), 1)
        self.assertTrue(
            client.text.endswith(
                "Command: \nLogged out after 1 second without a command.\nDisconnected by the server.\n"
            ),
            client.text,
        )

    async def test_login_timeout(self) -> None:
        port = await self.start_server("--login-timeout", "1")
        client = self.spawn("localhost", str(port))
        self.assertEqual(await client.exit(), 1)
        self.assertEqual(
            client.text,
            "Username: \nLogin timed out after 1 second. Disconnecting.\nDisconnected by the server.\n",
        )

    async def test_blocked_after_failed_logins(self) -> None:
        port = await self.start_server("--max-attempts", "1")
        client = self.spawn("localhost", str(port), stdin=b"columbia\nx\nwhoelse\n")
        self.assertEqual(await client.exit(), 1)
        self.assertRegex(
            client.text,
            "Invalid username or password.\n"
            "columbia is blocked from your address for 60 more seconds .*\n"
            "Disconnected by the server.\n$",
        )

    async def test_server_killed(self) -> None:
        client = await self.logged_in()
        await self.server.kill()
        self.assertEqual(await client.exit(), 1)
        self.assertRegex(client.text, "\nDisconnected(:| by).*\n$")
        self.assertNoTraceback(client)

    async def test_a_refused_second_login_ends_its_script_and_leaves_the_first_alone(self) -> None:
        client = await self.logged_in()
        other = self.spawn("localhost", str(self.server.port), stdin=b"columbia\n116bway\nwhoelse\n")
        self.assertEqual(await other.exit(), 1)
        self.assertTrue(
            other.text.endswith(
                "columbia is already logged in; a second session is not allowed.\n"
                "Login refused; the rest of the script is not sent.\n"
                "Disconnected.\n"
            ),
            other.text,
        )
        client.transport.closeStdin()
        self.assertEqual(await client.exit(), 0)


def _full_listener(sockets: contextlib.ExitStack) -> int:
    """
    A loopback port whose queue of connections is full: the kernel drops
    what else tries to connect, so connecting hangs.  The port's sockets
    close with C{sockets}.
    """
    listener = sockets.enter_context(socket.socket())
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    for _ in range(3):
        filler = sockets.enter_context(socket.socket())
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
    return port


async def _logged(path: str, text: str, client: PipedProgram) -> None:
    """Wait until the log file at C{path} holds C{text}."""
    for _ in range(TIMEOUT * 20):
        if client.status is not None:
            raise AssertionError(f"client exited before logging {text!r}: {client.stderr!r}")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                if text in f.read():
                    return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"timed out waiting for {text!r} in {path}")


class CannotConnectTests(ClientTestCase):
    """One line on stderr, exit status 2, no traceback."""

    async def test_connection_refused(self) -> None:
        client = self.spawn("127.0.0.1", str(free_port()), stdin=b"")
        await client.exit()
        self.assertOneLineError(client, "cannot connect to 127.0.0.1:", "refused")

    async def test_unknown_host(self) -> None:
        client = self.spawn("no-such-host.invalid", "4119", stdin=b"")
        await client.exit()
        self.assertOneLineError(client, "unknown host 'no-such-host.invalid'")

    async def test_bad_port(self) -> None:
        for port in ("http", "0", "65536", "-1"):
            client = self.spawn("localhost", port, stdin=b"")
            await client.exit()
            self.assertOneLineError(client, "PORT must be a number from 1 to 65535")

    async def test_missing_arguments(self) -> None:
        client = self.spawn("localhost", stdin=b"")
        await client.exit()
        self.assertOneLineError(client, "PORT")

    async def test_interrupted_while_the_connection_is_pending_is_one_line(self) -> None:
        """
        Ctrl+C while the TCP connection is still being made, to a server
        whose queue of connections is full so that it never answers.  The
        client's log says when it has started connecting.
        """
        with contextlib.ExitStack() as sockets:
            port = _full_listener(sockets)
            path = os.path.abspath(self.mktemp())
            client = self.spawn("--log", path, "127.0.0.1", str(port))
            await _logged(path, "Starting factory", client)
            client.interrupt()
            await client.exit()
        self.assertOneLineError(client, f"gave up connecting to 127.0.0.1:{port}")

    async def test_help(self) -> None:
        client = self.spawn("--help", stdin=b"")
        self.assertEqual(await client.exit(), 0)
        self.assertIn("usage: python -m chat.client", client.text)
        for option in ("--tls", "--cafile", "--insecure", "--timestamps"):
            self.assertIn(option, client.text)


class TLSTests(ClientTestCase):
    script = b"columbia\n116bway\nlogout\n"

    async def start_tls_server(self) -> int:
        directory = os.path.abspath(self.mktemp())
        key, self.cert = make_certificate(os.path.join(directory, "tls"))
        endpoint = f"ssl:0:privateKey={key}:certKey={self.cert}:interface=127.0.0.1"
        self.server = ServerProcess(directory, args=("--port", endpoint))
        self.addCleanup(self.server.stop)
        return await self.server.start(timeout=TIMEOUT)

    async def test_the_certificate_in_cafile_is_trusted(self) -> None:
        port = await self.start_tls_server()
        client = self.spawn("--tls", "--cafile", self.cert, "localhost", str(port), stdin=self.script)
        self.assertEqual(await client.exit(), 0)
        self.assertIn("Welcome to chat, columbia!", client.text)
        self.assertTrue(client.text.endswith("Goodbye, columbia!\nDisconnected.\n"))

    async def test_an_untrusted_certificate_is_refused(self) -> None:
        port = await self.start_tls_server()
        client = self.spawn("--tls", "localhost", str(port), stdin=self.script)
        await client.exit()
        self.assertOneLineError(client, f"cannot connect to localhost:{port}", "not trusted")

    async def test_a_certificate_for_another_name_is_refused(self) -> None:
        port = await self.start_tls_server()
        client = self.spawn("--tls", "--cafile", self.cert, "127.0.0.1", str(port), stdin=self.script)
        await client.exit()
        self.assertOneLineError(client, "not for '127.0.0.1'")

    async def test_insecure_skips_the_check_when_asked_by_name(self) -> None:
        port = await self.start_tls_server()
        client = self.spawn("--tls", "--insecure", "127.0.0.1", str(port), stdin=self.script)
        self.assertEqual(await client.exit(), 0)
        self.assertIn("Welcome to chat, columbia!", client.text)

    async def test_plain_tcp_to_a_tls_server_suggests_tls(self) -> None:
        """The TLS server waits for a handshake, the client for its greeting: not for long."""
        port = await self.start_tls_server()
        client = self.spawn("localhost", str(port), stdin=self.script)
        await client.exit()
        self.assertOneLineError(client, f"cannot connect to localhost:{port}: no answer", "try --tls")

    async def test_tls_to_a_plain_server_fails_cleanly(self) -> None:
        port = await self.start_server()
        client = self.spawn("--tls", "--insecure", "localhost", str(port), stdin=self.script)
        await client.exit()
        self.assertOneLineError(client, "TLS")

    async def test_interrupted_during_the_handshake_is_one_line(self) -> None:
        """Ctrl+C while the client is still connecting: nothing to log out of."""
        connected: defer.Deferred[None] = defer.Deferred()

        class Silent(protocol.Protocol):
            def connectionMade(self) -> None:
                connected.callback(None)

        factory = protocol.ServerFactory()
        factory.protocol = Silent
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        address: Any = port.getHost()
        client = self.spawn("--tls", "--insecure", "127.0.0.1", str(address.port))
        await timeout_deferred(connected, TIMEOUT, "the client to connect")
        client.interrupt()
        await client.exit()
        self.assertOneLineError(client, "gave up connecting to 127.0.0.1:")

    async def test_a_missing_cafile_is_one_line(self) -> None:
        client = self.spawn("--tls", "--cafile", "/nonexistent/ca.pem", "localhost", "4443", stdin=b"")
        await client.exit()
        self.assertOneLineError(client, "--cafile /nonexistent/ca.pem")
