"""
End-to-end tests of ``python -m chat.peer``: ``serve`` and ``connect`` as
subprocesses with piped stdin and stdout, talking over real loopback TCP.
"""

from __future__ import annotations

import socket

from tests.e2e.programs import TIMEOUT, PipedProgram, ProgramTestCase, free_port

HANDLE_PROMPT = r"Your handle \(one word, at most 10 characters\): "


class PeerTestCase(ProgramTestCase):
    program = "chat.peer"
    timeout = 4 * TIMEOUT

    async def serve(self, *args: str) -> tuple[PipedProgram, int]:
        """A server on a free loopback port, and that port once it listens."""
        server = self.spawn("serve", "0", "--interface", "127.0.0.1", *args)
        m = await server.expect(r"Waiting for a client on port (\d+), as \w+\.")
        return server, int(m.group(1))

    def connect(self, port: int, *args: str, stdin: bytes | None = None) -> PipedProgram:
        return self.spawn("connect", "127.0.0.1", str(port), *args, stdin=stdin)

    def assertClean(self, *processes: PipedProgram) -> None:
        """No traceback, nothing on stderr."""
        for process in processes:
            self.assertEqual(process.stderr, b"")
            self.assertNotIn("Traceback", process.text)


class ConversationTests(PeerTestCase):
    async def test_a_whole_conversation_then_the_next_client(self) -> None:
        server, port = await self.serve()
        client = self.connect(port)
        await client.expect(f"Connected to 127.0.0.1:{port}.  \\\\quit leaves.\n{HANDLE_PROMPT}")
        client.send("Steve O")
        await client.expect(f"A handle is one word: no spaces.\n{HANDLE_PROMPT}")
        client.send("SteveO")
        await server.expect(r"Established connection with 127\.0\.0\.1:\d+\.\n")
        client.send("Hi!!")
        await server.expect("(?m)^SteveO> Hi!!\n")
        server.send("hello")
        await client.expect("(?m)^HostA> hello\n")
        client.send("\\quit")
        self.assertEqual(await client.exit(), 0)
        self.assertTrue(client.text.endswith("SteveO> \\quit\nYou left the conversation with HostA.\n"))
        await server.expect(f"SteveO left the conversation.\nWaiting for the next client on port {port}.\n")

        second = self.connect(port, "--handle", "Ann")
        await server.expect(r"Established connection with 127\.0\.0\.1:\d+\.\n")
        second.send("hi, me again")
        await server.expect("(?m)^Ann> hi, me again\n")
        second.transport.closeStdin()
        self.assertEqual(await second.exit(), 0)
        await server.expect("Ann left the conversation.\n")
        self.assertClean(server, client, second)

    async def test_either_side_speaks_first_and_no_one_takes_turns(self) -> None:
        server, port = await self.serve("--handle", "Host_B")
        client = self.connect(port, "--handle", "SteveO")
        await server.expect("Established connection")
        server.send("welcome!", "anyone there?")
        await client.expect("(?m)^Host_B> welcome!\n")
        await client.expect("(?m)^Host_B> anyone there\\?\n")
        client.send("yes", "sorry, I was away", "back now")
        await server.expect("(?m)^SteveO> yes\n")
        await server.expect("(?m)^SteveO> sorry, I was away\n")
        await server.expect("(?m)^SteveO> back now\n")
        client.transport.closeStdin()
        self.assertEqual(await client.exit(), 0)
        self.assertClean(server, client)

    async def test_quick_messages_joined_in_one_read_are_split_again(self) -> None:
        """
        Lines piped in together are sent in one reactor turn, so the server
        reads them as one run of bytes; its decoder splits them at the
        client's handle.
        """
        server, port = await self.serve()
        client = self.connect(port, stdin=b"SteveO\none\ntwo\nthree\n\\quit\n")
        self.assertEqual(await client.exit(), 0)
        await server.expect("(?m)^SteveO> one\n(HostA> \n)?SteveO> two\n(HostA> \n)?SteveO> three\n")
        await server.expect("SteveO left the conversation.\n")

    async def test_the_servers_quit_ends_the_client_with_zero(self) -> None:
        server, port = await self.serve()
        client = self.connect(port, "--handle", "SteveO")
        await server.expect("Established connection")
        server.send("bye for now", "\\quit")
        self.assertEqual(await client.exit(), 0)
        self.assertTrue(
            client.text.endswith("\nHostA> bye for now\nHostA left the conversation.\n"), client.text
        )
        await server.expect(
            r"You left the conversation with the client at 127\.0\.0\.1:\d+\.\n"
            f"Waiting for the next client on port {port}.\n"
        )
        self.assertClean(server, client)

    async def test_a_long_line_is_refused_and_nothing_sent(self) -> None:
        server, port = await self.serve()
        client = self.connect(port, "--handle", "SteveO")
        await server.expect("Established connection")
        client.send("x" * 501, "short")
        await client.expect("Not sent: that message has 501 characters; the most is 500.\n")
        await server.expect("(?m)^SteveO> short\n")
        self.assertNotIn("xxx", server.text)
        client.send("y" * 500)
        await server.expect("(?m)^SteveO> " + "y" * 500 + "\n")

    async def test_a_second_client_is_told_the_server_is_busy(self) -> None:
        server, port = await self.serve()
        first = self.connect(port, "--handle", "SteveO")
        first.send("Hi!!")
        await server.expect("SteveO> Hi!!\n")
        second = self.connect(port, "--handle", "Ann")
        self.assertEqual(await second.exit(), 1)
        self.assertIn(
            "\nHostA> busy: already chatting with SteveO; try again later\nHostA closed the connection.\n",
            second.text,
        )
        await server.expect(r"Turned away a client at 127\.0\.0\.1:\d+: busy with SteveO\.\n")
        server.send("still here")
        await first.expect("(?m)^HostA> still here\n")
        self.assertClean(server, first, second)


class StoppingTests(PeerTestCase):
    async def chatting(self) -> tuple[PipedProgram, PipedProgram]:
        server, port = await self.serve()
        client = self.connect(port, "--handle", "SteveO")
        client.send("Hi!!")
        await server.expect("SteveO> Hi!!\n")
        return server, client

    async def test_ctrl_c_stops_the_server_and_the_client_is_told(self) -> None:
        server, client = await self.chatting()
        server.interrupt()
        self.assertEqual(await server.exit(), 0)
        self.assertTrue(
            server.text.endswith("You left the conversation with SteveO.\nServer stopped.\n"), server.text
        )
        self.assertEqual(await client.exit(), 0)
        self.assertTrue(client.text.endswith("HostA left the conversation.\n"), client.text)
        self.assertClean(server, client)

    async def test_sigterm_stops_the_server_like_ctrl_c(self) -> None:
        server, client = await self.chatting()
        server.terminate()
        self.assertEqual(await server.exit(), 0)
        self.assertTrue(server.text.endswith("Server stopped.\n"), server.text)
        self.assertEqual(await client.exit(), 0)

    async def test_ctrl_c_stops_a_server_with_no_client(self) -> None:
        server, _ = await self.serve()
        server.interrupt()
        self.assertEqual(await server.exit(), 0)
        self.assertTrue(server.text.endswith("Server stopped.\n"), server.text)
        self.assertClean(server)

    async def test_the_end_of_the_servers_input_stops_it(self) -> None:
        server, client = await self.chatting()
        server.transport.closeStdin()
        self.assertEqual(await server.exit(), 0)
        self.assertEqual(await client.exit(), 0)

    async def test_ctrl_c_on_the_client_says_quit_and_exits_zero(self) -> None:
        server, client = await self.chatting()
        client.interrupt()
        self.assertEqual(await client.exit(), 0)
        self.assertTrue(client.text.endswith("You left the conversation with the server.\n"), client.text)
        await server.expect("SteveO left the conversation.\n")

    async def test_sigterm_on_the_client_says_quit(self) -> None:
        server, client = await self.chatting()
        client.terminate()
        self.assertEqual(await client.exit(), 0)
        await server.expect("SteveO left the conversation.\n")

    async def test_the_end_of_the_clients_input_says_quit(self) -> None:
        server, client = await self.chatting()
        client.transport.closeStdin()
        self.assertEqual(await client.exit(), 0)
        await server.expect("SteveO left the conversation.\n")

    async def test_a_server_that_goes_away_ends_the_client_with_one(self) -> None:
        server, client = await self.chatting()
        server.transport.signalProcess("KILL")
        await server.exit()
        self.assertEqual(await client.exit(), 1)
        self.assertRegex(
            client.text, "\n(The server closed the connection|The connection with the server was lost)\\.\n$"
        )
        self.assertClean(client)


class CannotStartTests(PeerTestCase):
    """One line on stderr, exit status 2, no traceback."""

    async def test_connection_refused(self) -> None:
        client = self.spawn("connect", "127.0.0.1", str(free_port()), stdin=b"")
        await client.exit()
        self.assertOneLineError(client, "cannot connect to 127.0.0.1:", "connection refused")

    async def test_unknown_host(self) -> None:
        client = self.spawn("connect", "no-such-host.invalid", "30020", stdin=b"")
        await client.exit()
        self.assertOneLineError(client, "unknown host 'no-such-host.invalid'")

    async def test_port_in_use(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            server = self.spawn("serve", str(port), "--interface", "127.0.0.1", stdin=b"")
            await server.exit()
        self.assertOneLineError(server, f"cannot listen on 127.0.0.1:{port}: address already in use")

    async def test_a_bad_handle_is_refused_before_listening(self) -> None:
        server = self.spawn("serve", "30020", "--handle", "Host A", stdin=b"")
        await server.exit()
        self.assertOneLineError(server, "--handle 'Host A': a handle is one word")

    async def test_help_names_the_commands_quit_and_exit_statuses(self) -> None:
        helped = self.spawn("--help", stdin=b"")
        self.assertEqual(await helped.exit(), 0)
        self.assertIn("usage: python -m chat.peer", helped.text)
        for word in ("serve", "connect", "\\quit", "exit status"):
            self.assertIn(word, helped.text)
