"""
``serve`` and ``connect`` in a real pseudo-terminal, typed into as a person
would, with a scripted classic program at the other end.  What they write
is replayed on a L{Screen}, so the assertions are about what the user sees.
"""

from __future__ import annotations

import re

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from tests.e2e.programs import CTRL_C, CTRL_D, TIMEOUT, PtyProgram, raw
from tests.e2e.test_peer_classic import UNFRAMED, ClassicPeer, ClassicServer, abort_peer
from tests.expect import timeout_deferred
from tests.screen import Screen


def _port(screen: Screen) -> int | None:
    m = re.search(r"Waiting for a client on port (\d+)", "\n".join(screen.lines()))
    return int(m.group(1)) if m else None


class PeerPtyTests(unittest.TestCase):
    timeout = 4 * TIMEOUT

    def spawn(self, *args: str) -> PtyProgram:
        peer = PtyProgram.spawn("chat.peer", *args)
        self.addCleanup(peer.reap)
        return peer

    async def serving(self) -> tuple[PtyProgram, ClassicPeer]:
        """``serve`` in the terminal, and a classic client that has said hello."""
        server = self.spawn("serve", "0", "--interface", "127.0.0.1")
        screen = await server.until(lambda s: _port(s) is not None, "the port")
        port = _port(screen)
        assert port is not None
        await server.at_prompt("HostA> ")
        client = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port), ClassicPeer(UNFRAMED, b"SteveO")
        )
        self.addCleanup(abort_peer, client)
        client.say(b"Hi!!")
        await server.until(lambda s: "SteveO> Hi!!" in s.lines(), "the client's message")
        return server, client

    async def test_a_message_arriving_while_the_operator_types_keeps_the_line(self) -> None:
        server, client = await self.serving()
        server.type(b"hello the")
        await server.at_prompt("HostA> hello the")
        client.say(b"are you there? \x1b[2J")
        screen = await server.until(
            lambda s: "SteveO> are you there? ^[[2J" in s.lines(), "the second message"
        )
        self.assertEqual(screen.lines()[-2:], ["SteveO> are you there? ^[[2J", "HostA> hello the"])
        self.assertEqual(screen.before_cursor, "HostA> hello the")
        server.type("re, héllo 日本\r".encode())
        await client.expect("HostA> hello there, héllo 日本".encode())
        screen = await server.at_prompt("HostA> ")
        self.assertIn("HostA> hello there, héllo 日本", screen.lines())

    async def test_ctrl_c_tells_the_client_and_gives_the_terminal_back(self) -> None:
        server, client = await self.serving()
        self.assertTrue(raw(server.settings()))
        server.type(b"half a thought")
        await server.at_prompt("HostA> half a thought")
        server.type(CTRL_C)
        await timeout_deferred(client.closed, TIMEOUT, "the client to be let go")
        self.assertEqual(client.received, b"HostA> \\quit")
        self.assertEqual(await server.exit(), 0)
        self.assertEqual(server.settings_at_exit, server.initial_settings)
        self.assertEqual(
            server.screen().lines()[-3:],
            ["HostA> half a thought^C", "You left the conversation with SteveO.", "Server stopped."],
        )
        self.assertNotIn(b"Traceback", server.output)

    async def test_the_client_asks_for_a_handle_then_chats_and_ctrl_d_leaves(self) -> None:
        factory = ClassicServer(UNFRAMED)
        listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        client = self.spawn("connect", "127.0.0.1", str(listening.getHost().port))  # type: ignore[attr-defined]
        server: ClassicPeer = await timeout_deferred(factory.peer, TIMEOUT, "the client to connect")
        self.addCleanup(abort_peer, server)
        await client.at_prompt("Your handle (one word, at most 10 characters): ")
        self.assertTrue(raw(client.settings()))
        client.type(b"Steve O\r")
        await client.until(lambda s: "A handle is one word: no spaces." in s.lines(), "the reason")
        client.type(b"SteveO\r")
        await client.at_prompt("SteveO> ")
        client.type(b"Hi the")
        await client.at_prompt("SteveO> Hi the")
        server.say(b"hello")
        screen = await client.until(lambda s: "HostA> hello" in s.lines(), "the server's message")
        self.assertEqual(screen.lines()[-2:], ["HostA> hello", "SteveO> Hi the"])
        self.assertEqual(screen.before_cursor, "SteveO> Hi the")
        client.type(b"re!!\r")
        await server.expect(b"SteveO> Hi there!!")
        await client.at_prompt("SteveO> ")
        client.type(CTRL_D)
        self.assertEqual(await client.exit(), 0)
        await server.expect(b"SteveO> \\quit")
        self.assertEqual(client.settings_at_exit, client.initial_settings)
        self.assertEqual(client.screen().lines()[-1], "You left the conversation with HostA.")
