"""
``serve`` and ``connect`` against scripted stand-ins for the classic
``chatclient`` and ``chatserve.py``: raw bytes over real loopback TCP, one
write per message, in each form the public implementations send.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.python.failure import Failure

from tests.e2e.programs import TIMEOUT, PipedProgram
from tests.e2e.test_peer_e2e import PeerTestCase
from tests.expect import Expectations, timeout_deferred

#: What a C buffer held before: the tail of an earlier, longer message, and
#: bytes that were never initialised.
STALE = b"lo there, how are you today?\n\0\x8f\x13\xff\x7f\x01\xfe\x00\x00\x1b[2J"


def _stale_buffer(data: bytes) -> bytes:
    """C{data} sent as a whole 511-byte buffer that was not cleared first."""
    return (data + b"\0" + STALE).ljust(511, b"\0")


@attrs.frozen
class Variant:
    """How one classic program writes a message, and its quit."""

    name: str
    message: Callable[[bytes, bytes], bytes]
    quit: Callable[[bytes], bytes]


UNFRAMED = Variant("unframed", lambda h, text: h + b"> " + text, lambda h: h + b"> \\quit")
PADDED_500 = Variant(
    "padded to 500 bytes",
    lambda h, text: (h + b"> " + text).ljust(500, b"\0"),
    lambda h: (h + b"> \\quit").ljust(500, b"\0"),
)
PADDED_511_BARE_QUIT = Variant(
    "padded to 511 bytes, bare quit",
    lambda h, text: (h + b"> " + text).ljust(511, b"\0"),
    lambda h: b"\\quit".ljust(511, b"\0"),
)
NEWLINE = Variant(
    "newline-ended, no space, quit with junk",
    lambda h, text: h + b">" + text + b"\n",
    lambda h: b"\\quit\n" + STALE,
)
STALE_BUFFER = Variant(
    "whole uncleared buffers",
    lambda h, text: _stale_buffer(h + b"> " + text + b"\n"),
    lambda h: _stale_buffer(b"\\quit\n"),
)


class ClassicPeer(protocol.Protocol):
    """
    A classic program's end of the connection, as a test drives it: it
    writes each message in one C{send()}, keeps every read as it came, and
    closes after its quit.
    """

    def __init__(self, variant: Variant, handle: bytes) -> None:
        self.variant = variant
        self.handle = handle
        self.reads: list[bytes] = []
        self.received = b""
        self.position = 0
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.expectations: Expectations[bool] = Expectations()
        self.connected_: defer.Deferred[ClassicPeer] = defer.Deferred()

    def connectionMade(self) -> None:
        self.connected_.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.reads.append(data)
        self.received += data
        self.expectations.check()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed.callback(None)
        self.expectations.end("the connection closed")

    def _found(self, expected: bytes) -> bool | None:
        at = self.received.find(expected, self.position)
        if at == -1:
            return None
        self.position = at + len(expected)
        return True

    def expect(self, expected: bytes) -> defer.Deferred[bool]:
        """Wait for the bytes C{expected} after what was expected before."""
        return self.expectations.wait(
            lambda: self._found(expected), lambda: f"{expected!r} in {self.received!r}", TIMEOUT
        )

    def say(self, text: bytes) -> None:
        self.transport.write(self.variant.message(self.handle, text))  # type: ignore[union-attr]

    def say_raw(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def quit(self) -> None:
        self.transport.write(self.variant.quit(self.handle))  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def wait_closed(self) -> defer.Deferred[None]:
        return timeout_deferred(self.closed, TIMEOUT, "the connection to close")


class ClassicServer(protocol.ServerFactory):
    """A classic C{chatserve.py} in the test: takes one client, as a L{ClassicPeer}."""

    def __init__(self, variant: Variant, handle: bytes = b"HostA") -> None:
        self.variant = variant
        self.handle = handle
        self.peer: defer.Deferred[ClassicPeer] = defer.Deferred()

    def buildProtocol(self, addr: object) -> ClassicPeer:
        peer = ClassicPeer(self.variant, self.handle)
        peer.connected_.chainDeferred(self.peer)
        return peer


def _shown(*lines: str) -> str:
    """The pattern for C{lines} shown one after the other, from the start of a line."""
    return "(?m)^" + "".join(re.escape(line) + "\n" for line in lines)


def abort_peer(peer: ClassicPeer) -> None:
    """Cut a classic peer's connection, if it is still open: a test's cleanup."""
    if peer.transport is not None and not peer.closed.called:
        peer.transport.abortConnection()  # type: ignore[attr-defined]


class ServeWithClassicClientsTests(PeerTestCase):
    """Our ``serve``, and classic clients connecting to it."""

    async def classic_client(self, port: int, variant: Variant) -> ClassicPeer:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        peer = await connectProtocol(endpoint, ClassicPeer(variant, b"SteveO"))
        self.addCleanup(abort_peer, peer)
        return peer

    async def converse(self, variant: Variant) -> PipedProgram:
        """A classic client says hello, gets the reply, and quits."""
        server, port = await self.serve()
        client = await self.classic_client(port, variant)
        await server.expect("Established connection with")
        client.say(b"Hi!!")
        await server.expect(_shown("SteveO> Hi!!"))
        server.send("hello")
        await client.expect(b"HostA> hello")
        self.assertEqual(client.received, b"HostA> hello")
        client.quit()
        await server.expect(_shown("SteveO left the conversation."))
        await server.expect(_shown(f"Waiting for the next client on port {port}."))
        await client.wait_closed()
        self.assertNotIn("lo there", server.text)
        self.assertNotIn("\N{REPLACEMENT CHARACTER}", server.text)
        self.assertNotIn("^", server.text)
        return server

    async def test_unframed_messages(self) -> None:
        await self.converse(UNFRAMED)

    async def test_padded_to_500_bytes(self) -> None:
        await self.converse(PADDED_500)

    async def test_padded_to_511_bytes_with_a_bare_quit(self) -> None:
        await self.converse(PADDED_511_BARE_QUIT)

    async def test_newline_ended_and_quit_followed_by_junk(self) -> None:
        await self.converse(NEWLINE)

    async def test_whole_uncleared_buffers(self) -> None:
        await self.converse(STALE_BUFFER)

    async def test_a_message_and_the_quit_joined_in_one_write(self) -> None:
        server, port = await self.serve()
        client = await self.classic_client(port, UNFRAMED)
        await server.expect("Established connection with")
        client.say_raw(b"SteveO> Hi!!SteveO> \\quit")
        await server.expect(_shown("SteveO> Hi!!", "SteveO left the conversation."))
        await client.wait_closed()

    async def test_a_strict_client_gets_the_quit_as_exactly_one_read(self) -> None:
        """
        A client that waits for the reply to each message, and knows the
        server's quit only by its exact bytes.
        """
        server, port = await self.serve()
        client = await self.classic_client(port, UNFRAMED)
        await server.expect("Established connection with")
        client.say(b"Hi!!")
        await server.expect(_shown("SteveO> Hi!!"))
        server.send("hello")
        await client.expect(b"HostA> hello")
        client.say(b"bye then")
        await server.expect(_shown("SteveO> bye then"))
        server.send("\\quit")
        await client.wait_closed()
        self.assertEqual(client.reads, [b"HostA> hello", b"HostA> \\quit"])
        await server.expect(_shown("You left the conversation with SteveO."))

    async def test_a_second_classic_client_gets_one_busy_line_then_the_end(self) -> None:
        server, port = await self.serve()
        first = await self.classic_client(port, UNFRAMED)
        first.say(b"Hi!!")
        await server.expect(_shown("SteveO> Hi!!"))
        second = await self.classic_client(port, PADDED_500)
        second.say(b"anyone?")
        await second.wait_closed()
        self.assertEqual(second.received, b"HostA> busy: already chatting with SteveO; try again later")
        self.assertNotIn("anyone?", server.text)
        server.send("still here")
        await first.expect(b"HostA> still here")

    async def test_ctrl_c_tells_a_classic_client_in_its_own_words(self) -> None:
        server, port = await self.serve()
        client = await self.classic_client(port, UNFRAMED)
        client.say(b"Hi!!")
        await server.expect(_shown("SteveO> Hi!!"))
        server.interrupt()
        await client.wait_closed()
        self.assertEqual(client.received, b"HostA> \\quit")
        self.assertEqual(await server.exit(), 0)


class ConnectToClassicServersTests(PeerTestCase):
    """Our ``connect``, against classic servers."""

    async def classic_server(self, variant: Variant) -> tuple[ClassicServer, int]:
        factory = ClassicServer(variant)
        listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        return factory, listening.getHost().port  # type: ignore[attr-defined]

    async def classic_peer(self, factory: ClassicServer) -> ClassicPeer:
        peer: ClassicPeer = await timeout_deferred(factory.peer, TIMEOUT, "the client to connect")
        self.addCleanup(abort_peer, peer)
        return peer

    async def converse(self, variant: Variant) -> PipedProgram:
        """Our client says hello, the classic server replies, and quits."""
        factory, port = await self.classic_server(variant)
        client = self.connect(port)
        server = await self.classic_peer(factory)
        await client.expect("Your handle")
        client.send("SteveO", "Hi!!")
        await server.expect(b"SteveO> Hi!!")
        self.assertEqual(server.received, b"SteveO> Hi!!")
        server.say(b"hello")
        await client.expect(_shown("HostA> hello"))
        server.quit()
        self.assertEqual(await client.exit(), 0)
        self.assertTrue(client.text.endswith("\nHostA left the conversation.\n"), client.text)
        self.assertNotIn("lo there", client.text)
        self.assertNotIn("\N{REPLACEMENT CHARACTER}", client.text)
        self.assertNotIn("^", client.text)
        self.assertEqual(client.stderr, b"")
        return client

    async def test_unframed_messages(self) -> None:
        await self.converse(UNFRAMED)

    async def test_padded_to_500_bytes(self) -> None:
        await self.converse(PADDED_500)

    async def test_padded_to_511_bytes_with_a_bare_quit(self) -> None:
        await self.converse(PADDED_511_BARE_QUIT)

    async def test_newline_ended_and_quit_followed_by_junk(self) -> None:
        await self.converse(NEWLINE)

    async def test_whole_uncleared_buffers(self) -> None:
        await self.converse(STALE_BUFFER)

    async def test_the_classic_server_may_speak_first_and_twice(self) -> None:
        factory, port = await self.classic_server(UNFRAMED)
        client = self.connect(port, "--handle", "SteveO")
        server = await self.classic_peer(factory)
        server.say_raw(b"HostA> welcome!HostA> who is this?")
        await client.expect(_shown("HostA> welcome!", "HostA> who is this?"))

    async def test_our_quit_is_exactly_what_a_strict_server_compares_with(self) -> None:
        factory, port = await self.classic_server(UNFRAMED)
        client = self.connect(port, "--handle", "SteveO")
        server = await self.classic_peer(factory)
        client.send("Hi!!")
        await server.expect(b"SteveO> Hi!!")
        client.send("\\quit")
        await server.wait_closed()
        self.assertEqual(server.reads, [b"SteveO> Hi!!", b"SteveO> \\quit"])
        self.assertEqual(await client.exit(), 0)

    async def test_a_server_that_closes_without_a_quit_exits_one(self) -> None:
        factory, port = await self.classic_server(UNFRAMED)
        client = self.connect(port, "--handle", "SteveO")
        server = await self.classic_peer(factory)
        server.say(b"sorry, closing")
        server.transport.loseConnection()  # type: ignore[union-attr]
        self.assertEqual(await client.exit(), 1)
        self.assertTrue(
            client.text.endswith("\nHostA> sorry, closing\nHostA closed the connection.\n"), client.text
        )
