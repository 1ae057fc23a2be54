"""
The write-through TCP transport (L{chat.server.edges.writethrough}) keeps
the contract of Twisted's own.

Most cases need a socket that does what the test says (takes 5 bytes,
raises C{EAGAIN}, is reset), so they run on L{FakeSocket} and a memory
reactor, and the test plays the reactor: L{Harness.turn} is one turn of the
reactor's loop for a transport it watches for writability.

L{ContractTests} pins what Twisted's transport does; it runs on
C{tcp.Server} itself (so each case is known to be the contract, not a
guess) and on L{WriteThroughServer}.  L{WriteThroughTests} pins what is
new: a write with nothing queued goes to the socket at once.  The loopback
cases run on the real reactor with real sockets.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import socket
from typing import TYPE_CHECKING, Any, cast

from twisted.internet import defer, error, reactor, ssl, tcp
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    SSL4ServerEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ClientEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
    connectProtocol,
    serverFromString,
)
from twisted.internet.interfaces import IListeningPort, IPullProducer, IPushProducer
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from chat.server.edges.writethrough import (
    WriteThroughAdoptedEndpoint,
    WriteThroughEndpoint,
    WriteThroughPort,
    WriteThroughServer,
    write_through,
)
from chat.server.twisted_internals import tcp_unjoined_bytes
from tests.certificates import make_certificate

if TYPE_CHECKING:
    _TestCase = unittest.TestCase
else:
    _TestCase = object

#: What Twisted's transport queues before it pauses a streaming producer.
BUFFER_SIZE = tcp.Server.bufferSize

PEER = ("127.0.0.1", 50000)


# --- a socket that does what the test says ----------------------------------------


class FakeSocket:
    """
    A connected, non-blocking socket as the transport sees it.

    C{room} is what the kernel's send buffer takes now (C{None}: all of it;
    0: C{EAGAIN}); C{errors} are raised by the next calls of C{send}, one
    each; C{broken}, once set, is raised by every C{send} (a reset
    connection).  What C{send} took is on C{wire}, in order.
    """

    def __init__(self) -> None:
        self.room: int | None = None
        self.errors: list[OSError] = []
        self.broken: OSError | None = None
        self.offered: list[bytes] = []
        self.wire = bytearray()
        self.options: list[tuple[int, int, Any]] = []
        self.shut_down: list[int] = []
        self.closed = False
        #: What was on the wire when the socket was closed.
        self.wire_at_close: bytes | None = None

    def send(self, data: Any) -> int:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"a bytes-like object is required, not {type(data).__name__!r}")
        data = bytes(data)
        if self.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        self.offered.append(data)
        if self.errors:
            raise self.errors.pop(0)
        if self.broken is not None:
            raise self.broken
        taken = len(data) if self.room is None else min(self.room, len(data))
        if data and taken == 0:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        if self.room is not None:
            self.room -= taken
        self.wire += data[:taken]
        return taken

    def recv(self, size: int) -> bytes:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    def fileno(self) -> int:
        return 1000

    def setblocking(self, flag: bool) -> None:
        pass

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 4119)

    def getpeername(self) -> tuple[str, int]:
        return PEER

    def setsockopt(self, level: int, option: int, value: Any) -> None:
        self.options.append((level, option, value))

    def getsockopt(self, level: int, option: int, size: int = 0) -> int:
        return 0

    def shutdown(self, how: int) -> None:
        self.shut_down.append(how)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.wire_at_close = bytes(self.wire)


class _PortStub:
    """What C{tcp.Server} asks of its listening port."""

    _realPortNumber = 4119


class RecordingReactor(MemoryReactorClock):
    """A memory reactor that counts the requests to watch for writability."""

    def __init__(self) -> None:
        super().__init__()
        self.writer_requests = 0

    def addWriter(self, writer: Any) -> None:
        self.writer_requests += 1
        super().addWriter(writer)


class RecordingProtocol(Protocol):
    def __init__(self) -> None:
        self.lost: list[Failure] = []

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.append(reason)


@implementer(IPushProducer)
class RecordingProducer:
    def __init__(self) -> None:
        self.events: list[str] = []

    def pauseProducing(self) -> None:
        self.events.append("pause")

    def resumeProducing(self) -> None:
        self.events.append("resume")

    def stopProducing(self) -> None:
        self.events.append("stop")


@implementer(IPullProducer)
class ChunkProducer:
    """A pull producer: one chunk each time it is asked, then it unregisters."""

    def __init__(self, transport: Any, chunks: list[bytes]) -> None:
        self.transport = transport
        self.chunks = list(chunks)
        self.asked = 0

    def resumeProducing(self) -> None:
        self.asked += 1
        if self.chunks:
            self.transport.write(self.chunks.pop(0))
        else:
            self.transport.unregisterProducer()

    def stopProducing(self) -> None:
        pass


class Harness:
    """One server-side transport of C{transport_class} on a L{FakeSocket}."""

    def __init__(self, transport_class: type[tcp.Server]) -> None:
        self.reactor = RecordingReactor()
        self.sock = FakeSocket()
        self.protocol = RecordingProtocol()
        self.transport = transport_class(
            cast(Any, self.sock), self.protocol, PEER, cast(Any, _PortStub()), 1, self.reactor
        )
        self.protocol.makeConnection(self.transport)

    @property
    def queued(self) -> bytes:
        """What the transport holds, in the order it will send it."""
        t = self.transport
        return bytes(t.dataBuffer[t.offset :]) + b"".join(t._tempDataBuffer)

    @property
    def watched(self) -> bool:
        """Whether the reactor watches the transport for writability."""
        return self.transport in self.reactor.getWriters()

    def turn(self) -> None:
        """What the reactor does when the socket is writable."""
        if not self.watched:
            return
        why = self.transport.doWrite()
        if why is not None:
            self.reactor.removeReader(self.transport)
            self.reactor.removeWriter(self.transport)
            self.transport.connectionLost(Failure(why))

    def drain(self, turns: int = 50) -> None:
        """The kernel takes everything from now on; turn until nothing is left to write."""
        self.sock.room = None
        for _ in range(turns):
            if not self.watched:
                return
            self.turn()
        raise AssertionError(f"still writing after {turns} turns")


# --- the contract: Twisted's own transport and the write-through one ------------


class ContractTests(_TestCase):
    """What holds for Twisted's transport; run on it and on the write-through one."""

    transport_class: type[tcp.Server]

    def setUp(self) -> None:
        self.h = Harness(self.transport_class)

    def test_writes_reach_the_wire_in_order_through_a_full_kernel_buffer(self) -> None:
        h = self.h
        h.sock.room = 5
        h.transport.write(b"hello world")
        h.turn()
        h.transport.write(b", second")
        h.turn()
        h.transport.writeSequence([b", third", b", fourth"])
        h.sock.room = 3
        h.turn()
        h.drain()
        self.assertEqual(bytes(h.sock.wire), b"hello world, second, third, fourth")
        self.assertEqual(h.queued, b"")
        self.assertFalse(h.watched)

    def test_a_reset_is_reported_to_the_protocol_and_write_does_not_raise(self) -> None:
        h = self.h
        h.sock.broken = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        h.transport.write(b"into the void")
        h.transport.write(b" and more")
        h.drain()
        self.assertEqual(len(h.protocol.lost), 1)
        self.assertTrue(h.protocol.lost[0].check(error.ConnectionLost), h.protocol.lost[0])
        self.assertTrue(h.sock.closed)

    def test_a_broken_pipe_is_reported_to_the_protocol_and_write_does_not_raise(self) -> None:
        h = self.h
        h.sock.broken = BrokenPipeError(errno.EPIPE, "Broken pipe")
        h.transport.writeSequence([b"into ", b"the void"])
        h.drain()
        self.assertEqual(len(h.protocol.lost), 1)
        self.assertTrue(h.protocol.lost[0].check(error.ConnectionLost), h.protocol.lost[0])

    def test_a_streaming_producer_is_paused_past_buffer_size_and_resumed_when_drained(self) -> None:
        h = self.h
        producer = RecordingProducer()
        h.transport.registerProducer(producer, True)
        h.sock.room = 0
        h.transport.write(b"x" * BUFFER_SIZE)
        h.turn()
        self.assertEqual(producer.events, [])
        h.transport.write(b"y")
        self.assertEqual(producer.events, ["pause"])
        h.drain()
        self.assertEqual(producer.events, ["pause", "resume"])
        self.assertEqual(bytes(h.sock.wire), b"x" * BUFFER_SIZE + b"y")

    def test_lose_connection_sends_what_is_queued_then_closes(self) -> None:
        h = self.h
        h.sock.room = 5
        h.transport.write(b"hello world")
        h.turn()
        h.transport.loseConnection()
        self.assertEqual(h.protocol.lost, [])
        self.assertFalse(h.sock.closed)
        h.drain()
        self.assertEqual(h.sock.wire_at_close, b"hello world")
        self.assertEqual(h.sock.shut_down, [socket.SHUT_RDWR])
        self.assertEqual(len(h.protocol.lost), 1)
        self.assertTrue(h.protocol.lost[0].check(error.ConnectionDone), h.protocol.lost[0])

    def test_a_write_after_lose_connection_is_still_sent_before_the_close(self) -> None:
        """Twisted queues it: C{write} does not look at C{disconnecting}."""
        h = self.h
        h.sock.room = 5
        h.transport.write(b"hello world")
        h.turn()
        h.transport.loseConnection()
        h.transport.write(b", goodbye")
        h.drain()
        self.assertEqual(h.sock.wire_at_close, b"hello world, goodbye")
        self.assertTrue(h.protocol.lost[0].check(error.ConnectionDone), h.protocol.lost[0])

    def test_a_write_after_lose_connection_with_nothing_queued_is_sent_before_the_close(self) -> None:
        h = self.h
        h.transport.loseConnection()
        h.transport.write(b"goodbye")
        h.drain()
        self.assertEqual(h.sock.wire_at_close, b"goodbye")
        self.assertTrue(h.protocol.lost[0].check(error.ConnectionDone), h.protocol.lost[0])

    def test_a_write_after_the_connection_is_lost_is_ignored(self) -> None:
        h = self.h
        h.transport.loseConnection()
        h.drain()
        self.assertEqual(len(h.protocol.lost), 1)
        offered = len(h.sock.offered)
        h.transport.write(b"too late")
        h.transport.writeSequence([b"too ", b"late"])
        self.assertEqual(len(h.sock.offered), offered)
        self.assertEqual(bytes(h.sock.wire), b"")
        self.assertFalse(h.watched)

    def test_a_write_after_the_write_side_is_closed_is_ignored(self) -> None:
        h = self.h
        h.transport.loseWriteConnection()
        h.drain()
        self.assertEqual(h.sock.shut_down, [socket.SHUT_WR])
        h.transport.write(b"after the FIN")
        h.drain()
        self.assertEqual(bytes(h.sock.wire), b"")

    def test_abort_drops_what_is_queued_and_tells_the_protocol(self) -> None:
        h = self.h
        h.sock.room = 5
        h.transport.write(b"hello world")
        h.turn()
        h.transport.abortConnection()
        self.assertFalse(h.watched)
        h.reactor.advance(0)
        self.assertEqual(len(h.protocol.lost), 1)
        self.assertTrue(h.protocol.lost[0].check(error.ConnectionAborted), h.protocol.lost[0])
        self.assertEqual(h.sock.wire_at_close, b"hello")
        self.assertIn((socket.SOL_SOCKET, socket.SO_LINGER), [o[:2] for o in h.sock.options])
        self.assertEqual(h.sock.shut_down, [])

    def test_a_write_after_abort_is_dropped(self) -> None:
        """
        Between C{abortConnection} and the C{connectionLost} it schedules,
        the connection is still "connected"; Twisted queues what is written
        then, and drops it with the rest.
        """
        h = self.h
        h.transport.write(b"before")
        h.transport.abortConnection()
        h.transport.write(b"after the abort")
        h.transport.writeSequence([b"and ", b"this"])
        h.reactor.advance(0)
        self.assertTrue(h.protocol.lost[0].check(error.ConnectionAborted), h.protocol.lost[0])
        self.assertNotIn(b"after", bytes(h.sock.wire))
        self.assertNotIn(b"this", bytes(h.sock.wire))

    def test_a_pull_producer_is_asked_again_each_time_its_data_is_written(self) -> None:
        """
        L{IPullProducer}: the transport calls C{resumeProducing} whenever it
        has written everything, until the producer unregisters.
        """
        h = self.h
        chunks = [b"one,", b"two,", b"three"]
        producer = ChunkProducer(h.transport, chunks)
        h.transport.registerProducer(producer, False)
        h.drain()
        self.assertEqual(bytes(h.sock.wire), b"one,two,three")
        self.assertEqual(producer.asked, 4)
        self.assertIsNone(h.transport.producer)

    def test_after_start_tls_nothing_is_written_in_the_clear(self) -> None:
        key, cert = make_certificate(self.mktemp())
        with open(key, "rb") as k, open(cert, "rb") as c:
            options = ssl.PrivateCertificate.loadPEM(k.read() + c.read()).options()
        h = self.h
        h.transport.startTLS(options)
        h.transport.write(b"a secret")
        h.transport.writeSequence([b"another ", b"secret"])
        h.drain()
        self.assertNotIn(b"secret", bytes(h.sock.wire))

    def test_writing_text_is_a_type_error(self) -> None:
        h = self.h
        self.assertRaises(TypeError, h.transport.write, "text")
        self.assertEqual(bytes(h.sock.wire), b"")


class TwistedServerContractTests(ContractTests, unittest.TestCase):
    """The reference: Twisted's own server-side TCP transport."""

    transport_class = tcp.Server


class WriteThroughContractTests(ContractTests, unittest.TestCase):
    transport_class = WriteThroughServer


# --- what is new: writing at once ------------------------------------------------


class WriteThroughTests(unittest.TestCase):
    def setUp(self) -> None:
        self.h = Harness(WriteThroughServer)
        # The transport started reading when it was made: the requests to
        # watch for writability are counted from here.
        self.assertEqual(self.h.reactor.writer_requests, 0)

    def test_a_write_with_nothing_queued_goes_to_the_socket_at_once(self) -> None:
        h = self.h
        h.transport.write(b"hello")
        self.assertEqual(h.sock.offered, [b"hello"])
        self.assertEqual(bytes(h.sock.wire), b"hello")
        self.assertEqual(h.transport.dataBuffer, b"")
        self.assertEqual(h.transport._tempDataBuffer, [])
        self.assertEqual(tcp_unjoined_bytes(h.transport), 0)
        self.assertEqual(h.reactor.writer_requests, 0)
        self.assertFalse(h.watched)

    def test_writes_the_kernel_takes_whole_each_go_at_once(self) -> None:
        h = self.h
        for line in [b"one\r\n", b"two\r\n", b"three\r\n"]:
            h.transport.write(line)
        self.assertEqual(h.sock.offered, [b"one\r\n", b"two\r\n", b"three\r\n"])
        self.assertEqual(h.reactor.writer_requests, 0)

    def test_an_empty_write_sends_nothing_and_queues_nothing(self) -> None:
        h = self.h
        h.transport.write(b"")
        h.transport.writeSequence([])
        self.assertEqual(h.sock.offered, [])
        self.assertEqual(h.queued, b"")
        self.assertEqual(h.reactor.writer_requests, 0)

    def test_a_short_write_queues_exactly_the_rest_and_asks_for_writability(self) -> None:
        h = self.h
        h.sock.room = 5
        h.transport.write(b"hello world")
        self.assertEqual(h.sock.offered, [b"hello world"])
        self.assertEqual(bytes(h.sock.wire), b"hello")
        self.assertEqual(h.queued, b" world")
        self.assertEqual(tcp_unjoined_bytes(h.transport) + len(h.transport.dataBuffer), len(b" world"))
        self.assertEqual(h.reactor.writer_requests, 1)
        self.assertTrue(h.watched)

    def test_a_write_behind_a_queue_is_queued_not_sent(self) -> None:
        h = self.h
        h.sock.room = 5
        h.transport.write(b"hello world")
        h.sock.room = None  # the kernel would take it now: it must still wait its turn
        h.transport.write(b", second")
        h.transport.writeSequence([b", third", b", fourth"])
        self.assertEqual(h.sock.offered, [b"hello world"])
        self.assertEqual(h.queued, b" world, second, third, fourth")

    def test_a_write_behind_a_partly_sent_queue_is_queued_not_sent(self) -> None:
        """Queued data half-sent by C{doWrite} sits in C{dataBuffer} past C{offset}."""
        h = self.h
        h.sock.room = 5
        h.transport.write(b"hello world")
        h.sock.room = 3
        h.turn()
        self.assertEqual(h.queued, b"rld")
        self.assertEqual(tcp_unjoined_bytes(h.transport), 0)
        offered = len(h.sock.offered)
        h.transport.write(b"!")
        self.assertEqual(len(h.sock.offered), offered)
        h.drain()
        self.assertEqual(bytes(h.sock.wire), b"hello world!")

    def test_draining_a_short_write_puts_everything_on_the_wire_in_order_then_stops_watching(
        self,
    ) -> None:
        h = self.h
        h.sock.room = 5
        h.transport.write(b"hello world")
        h.transport.write(b", second")
        h.drain()
        self.assertEqual(bytes(h.sock.wire), b"hello world, second")
        self.assertFalse(h.watched)
        # Once drained, a write goes at once again.
        h.transport.write(b", third")
        self.assertEqual(h.sock.offered[-1], b", third")
        self.assertEqual(bytes(h.sock.wire), b"hello world, second, third")
        self.assertFalse(h.watched)

    def _queued_whole_by(self, failure: OSError) -> None:
        h = self.h
        h.sock.errors.append(failure)
        h.transport.write(b"hello")
        self.assertEqual(h.sock.offered, [b"hello"])
        self.assertEqual(bytes(h.sock.wire), b"")
        self.assertEqual(h.queued, b"hello")
        self.assertEqual(h.reactor.writer_requests, 1)
        self.assertEqual(h.protocol.lost, [])
        h.drain()
        self.assertEqual(bytes(h.sock.wire), b"hello")
        self.assertEqual(h.protocol.lost, [])
        self.assertTrue(h.transport.connected)

    def test_eagain_queues_the_whole_write(self) -> None:
        self._queued_whole_by(BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"))

    def test_enobufs_queues_the_whole_write(self) -> None:
        self._queued_whole_by(OSError(errno.ENOBUFS, "No buffer space available"))

    def test_eintr_is_treated_like_eagain_the_whole_write_is_queued(self) -> None:
        """Not retried at once: queued, and sent when the socket is writable."""
        self._queued_whole_by(InterruptedError(errno.EINTR, "Interrupted system call"))

    def _reset_during_a_direct_write(self, failure: OSError) -> None:
        h = self.h
        h.sock.broken = failure
        h.transport.write(b"into the void")  # must not raise
        self.assertEqual(h.queued, b"into the void")
        self.assertTrue(h.watched)
        self.assertEqual(h.protocol.lost, [])  # found by the next doWrite, not by write
        h.turn()
        self.assertEqual(len(h.protocol.lost), 1)
        self.assertTrue(h.protocol.lost[0].check(error.ConnectionLost), h.protocol.lost[0])
        self.assertTrue(h.sock.closed)
        self.assertFalse(h.watched)

    def test_a_reset_during_a_direct_write_is_queued_and_the_next_do_write_reports_it(self) -> None:
        self._reset_during_a_direct_write(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))

    def test_a_broken_pipe_during_a_direct_write_is_queued_and_the_next_do_write_reports_it(self) -> None:
        self._reset_during_a_direct_write(BrokenPipeError(errno.EPIPE, "Broken pipe"))

    def test_a_write_the_kernel_takes_whole_does_not_pause_the_producer(self) -> None:
        """Even one larger than C{bufferSize}: nothing is queued."""
        h = self.h
        producer = RecordingProducer()
        h.transport.registerProducer(producer, True)
        h.transport.write(b"x" * (2 * BUFFER_SIZE))
        self.assertEqual(producer.events, [])
        self.assertEqual(h.reactor.writer_requests, 0)

    def test_a_short_write_leaving_more_than_buffer_size_queued_pauses_the_producer(self) -> None:
        h = self.h
        producer = RecordingProducer()
        h.transport.registerProducer(producer, True)
        h.sock.room = 10
        h.transport.write(b"x" * (BUFFER_SIZE + 11))
        self.assertEqual(len(h.queued), BUFFER_SIZE + 1)
        self.assertEqual(producer.events, ["pause"])
        self.assertTrue(h.transport.producerPaused)
        h.drain()
        self.assertEqual(producer.events, ["pause", "resume"])
        self.assertFalse(h.transport.producerPaused)
        self.assertEqual(bytes(h.sock.wire), b"x" * (BUFFER_SIZE + 11))

    def test_a_short_write_leaving_buffer_size_or_less_queued_does_not_pause_the_producer(self) -> None:
        h = self.h
        producer = RecordingProducer()
        h.transport.registerProducer(producer, True)
        h.sock.room = 10
        h.transport.write(b"x" * (BUFFER_SIZE + 10))
        self.assertEqual(len(h.queued), BUFFER_SIZE)
        self.assertEqual(producer.events, [])
        h.drain()
        self.assertEqual(producer.events, [])

    def test_writes_behind_a_queue_pause_the_producer_once_it_passes_buffer_size(self) -> None:
        h = self.h
        producer = RecordingProducer()
        h.transport.registerProducer(producer, True)
        h.sock.room = 0
        h.transport.write(b"x" * BUFFER_SIZE)
        self.assertEqual(producer.events, [])
        h.transport.writeSequence([b"y"])
        self.assertEqual(producer.events, ["pause"])

    def test_write_sequence_goes_to_the_socket_at_once_as_one_send(self) -> None:
        h = self.h
        h.transport.writeSequence([b"one", b"two", b"three"])
        self.assertEqual(h.sock.offered, [b"onetwothree"])
        self.assertEqual(h.reactor.writer_requests, 0)

    def test_a_short_write_sequence_queues_exactly_the_rest(self) -> None:
        h = self.h
        h.sock.room = 4
        h.transport.writeSequence([b"one", b"two", b"three"])
        self.assertEqual(bytes(h.sock.wire), b"onet")
        self.assertEqual(h.queued, b"wothree")
        self.assertTrue(h.watched)
        h.drain()
        self.assertEqual(bytes(h.sock.wire), b"onetwothree")

    def test_abort_while_queued_sends_nothing_more(self) -> None:
        h = self.h
        h.sock.room = 5
        h.transport.write(b"hello world")
        h.transport.abortConnection()
        self.assertFalse(h.watched)
        offered = len(h.sock.offered)
        h.sock.room = None
        h.transport.doWrite()  # what a stale writability event would do
        h.reactor.advance(0)
        self.assertEqual(len(h.sock.offered), offered)
        self.assertEqual(h.sock.wire_at_close, b"hello")
        self.assertTrue(h.protocol.lost[0].check(error.ConnectionAborted), h.protocol.lost[0])


# --- real loopback sockets on the real reactor -------------------------------------


@implementer(IPushProducer)
class Flood(Protocol):
    """
    Writes C{payload} in chunks while its transport lets it (it is the
    transport's streaming producer), then closes.
    """

    chunk = 16 * 1024

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.pos = 0
        self.paused = False
        self.pauses = 0
        self.resumes = 0
        self.first_pause: defer.Deferred[None] = defer.Deferred()
        self.queued_at_first_pause = -1
        self.watched_at_first_pause = False
        #: Fires with the reason (a Failure delivered as a result, not an error).
        self.lost: defer.Deferred[list[Failure]] = defer.Deferred()

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        transport.registerProducer(self, True)
        self._produce()

    def _produce(self) -> None:
        transport: Any = self.transport
        while not self.paused and self.pos < len(self.payload):
            data = self.payload[self.pos : self.pos + self.chunk]
            self.pos += len(data)
            transport.write(data)
        if not self.paused and self.pos >= len(self.payload) and transport.producer is self:
            transport.unregisterProducer()
            transport.loseConnection()

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1
        if not self.first_pause.called:
            transport: Any = self.transport
            self.queued_at_first_pause = (
                len(transport.dataBuffer) - transport.offset + tcp_unjoined_bytes(transport)
            )
            self.watched_at_first_pause = transport in reactor.getWriters()
            self.first_pause.callback(None)

    def resumeProducing(self) -> None:
        self.paused = False
        self.resumes += 1
        self._produce()

    def stopProducing(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback([reason])


class Sink(Protocol):
    """Counts and hashes what arrives; starts out not reading."""

    def __init__(self) -> None:
        self.received = 0
        self.digest = hashlib.sha256()
        #: Fires with the reason (a Failure delivered as a result, not an error).
        self.done: defer.Deferred[list[Failure]] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.digest.update(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback([reason])


class _OneProtocolFactory(Factory):
    def __init__(self, protocol: Protocol) -> None:
        self.protocol_instance = protocol

    def buildProtocol(self, addr: Any) -> Protocol:
        return self.protocol_instance


class LoopbackTests(unittest.TestCase):
    timeout = 60

    def _abort_if_open(self, transport: Any, lost: defer.Deferred[Any]) -> defer.Deferred[Any]:
        if transport is not None and not transport.disconnected:
            transport.abortConnection()
            return lost
        return defer.succeed(None)

    @defer.inlineCallbacks
    def test_a_client_that_stops_reading_pauses_the_server_and_reading_again_drains_it_in_order(
        self,
    ) -> Any:
        payload = random.Random(4119).randbytes(2 * 2**20)
        flood = Flood(payload)
        endpoint = write_through(serverFromString(reactor, "tcp:0:interface=127.0.0.1"))
        self.assertIsInstance(endpoint, WriteThroughEndpoint)
        port = yield endpoint.listen(_OneProtocolFactory(flood))
        self.addCleanup(port.stopListening)
        self.assertIsInstance(port, WriteThroughPort)

        # A client with a tiny receive window that does not read.
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", port.getHost().port))
        client.setblocking(False)
        sink = Sink()
        try:
            client_transport = reactor.adoptStreamConnection(  # type: ignore[attr-defined]
                client.fileno(), socket.AF_INET, _OneProtocolFactory(sink)
            )
        finally:
            client.close()  # the reactor has its own copy of the descriptor
        self.addCleanup(self._abort_if_open, client_transport, sink.done)
        self.addCleanup(lambda: self._abort_if_open(flood.transport, flood.lost))

        yield flood.first_pause
        self.assertIsInstance(flood.transport, WriteThroughServer)
        self.assertGreater(flood.queued_at_first_pause, BUFFER_SIZE)
        self.assertTrue(flood.watched_at_first_pause)
        self.assertTrue(flood.paused)
        self.assertLess(flood.pos, len(payload))
        self.assertEqual(sink.received, 0)
        self.assertEqual(flood.resumes, 0)

        client_transport.resumeProducing()
        [reason] = yield sink.done
        [server_reason] = yield flood.lost
        self.assertTrue(server_reason.check(error.ConnectionDone), server_reason)
        self.assertTrue(reason.check(error.ConnectionDone), reason)
        self.assertEqual(sink.received, len(payload))
        self.assertEqual(sink.digest.hexdigest(), hashlib.sha256(payload).hexdigest())
        self.assertGreaterEqual(flood.resumes, 1)
        self.assertEqual(flood.resumes, flood.pauses)

    @defer.inlineCallbacks
    def test_tcp6_connections_write_through(self) -> Any:
        try:
            probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            probe.bind(("::1", 0))
            probe.close()
        except OSError as e:
            raise unittest.SkipTest(f"no IPv6 loopback: {e}") from None

        class Hello(Protocol):
            def connectionMade(self) -> None:
                transport: Any = self.transport
                served.append(transport)
                transport.write(b"hello over IPv6\r\n")
                # The kernel took it at once: nothing queued, nothing watched.
                at_once.append(tcp_unjoined_bytes(transport) == 0 and transport not in reactor.getWriters())
                transport.loseConnection()

        served: list[Any] = []
        at_once: list[bool] = []
        endpoint = write_through(serverFromString(reactor, r"tcp6:0:interface=\:\:1"))
        self.assertIsInstance(endpoint, WriteThroughEndpoint)
        port = yield endpoint.listen(Factory.forProtocol(Hello))
        self.addCleanup(port.stopListening)
        self.assertIsInstance(port, WriteThroughPort)

        sink = Sink()
        sink.connectionMade = lambda: None  # type: ignore[method-assign]
        yield connectProtocol(TCP6ClientEndpoint(reactor, "::1", port.getHost().port), sink)
        [reason] = yield sink.done
        self.assertTrue(reason.check(error.ConnectionDone), reason)
        self.assertEqual(sink.digest.digest(), hashlib.sha256(b"hello over IPv6\r\n").digest())
        self.assertEqual(len(served), 1)
        self.assertIsInstance(served[0], WriteThroughServer)
        self.assertEqual(at_once, [True])


# --- which endpoints are wrapped -------------------------------------------------


class WriteThroughEndpointTests(unittest.TestCase):
    def test_tcp4_endpoints_are_wrapped(self) -> None:
        inner = serverFromString(reactor, "tcp:4119:interface=127.0.0.1")
        self.assertIsInstance(inner, TCP4ServerEndpoint)
        wrapped = write_through(inner)
        self.assertIsInstance(wrapped, WriteThroughEndpoint)
        self.assertIs(cast(WriteThroughEndpoint, wrapped).inner, inner)

    def test_tcp6_endpoints_are_wrapped(self) -> None:
        inner = serverFromString(reactor, r"tcp6:4119:interface=\:\:1")
        self.assertIsInstance(inner, TCP6ServerEndpoint)
        wrapped = write_through(inner)
        self.assertIsInstance(wrapped, WriteThroughEndpoint)
        self.assertIs(cast(WriteThroughEndpoint, wrapped).inner, inner)

    def test_ssl_endpoints_are_left_alone(self) -> None:
        key, cert = make_certificate(self.mktemp())
        inner = serverFromString(reactor, f"ssl:4443:privateKey={key}:certKey={cert}")
        self.assertIsInstance(inner, SSL4ServerEndpoint)
        self.assertIs(write_through(inner), inner)

    def test_unix_endpoints_are_left_alone(self) -> None:
        inner = serverFromString(reactor, f"unix:{self.mktemp()}")
        self.assertIsInstance(inner, UNIXServerEndpoint)
        self.assertIs(write_through(inner), inner)

    def _listen_on_memory_reactor(self, description: str) -> tuple[MemoryReactorClock, IListeningPort]:
        memory = MemoryReactorClock()
        factory = Factory.forProtocol(Protocol)
        listening = write_through(serverFromString(memory, description)).listen(factory)
        port = self.successResultOf(listening)
        self.assertEqual(len(memory.tcpServers), 1)
        self.assertIs(memory.tcpServers[0][1], factory)
        self.assertNotIsInstance(port, WriteThroughPort)
        return memory, port

    def test_on_a_memory_reactor_tcp4_delegates_to_the_plain_endpoint(self) -> None:
        memory, _ = self._listen_on_memory_reactor("tcp:4119:interface=127.0.0.1:backlog=1024")
        port, _factory, backlog, interface = memory.tcpServers[0]
        self.assertEqual((port, backlog, interface), (4119, 1024, "127.0.0.1"))

    def test_on_a_memory_reactor_tcp6_delegates_to_the_plain_endpoint(self) -> None:
        memory, _ = self._listen_on_memory_reactor(r"tcp6:4119:interface=\:\:1")
        port, _factory, _backlog, interface = memory.tcpServers[0]
        self.assertEqual((port, interface), (4119, "::1"))

    @defer.inlineCallbacks
    def test_on_the_real_reactor_the_port_makes_write_through_transports(self) -> Any:
        endpoint = write_through(serverFromString(reactor, "tcp:0:interface=127.0.0.1:backlog=7"))
        port = yield endpoint.listen(Factory.forProtocol(Protocol))
        self.addCleanup(port.stopListening)
        self.assertIsInstance(port, WriteThroughPort)
        self.assertIs(port.transport, WriteThroughServer)
        self.assertEqual(port.backlog, 7)
        self.assertEqual(port.getHost().host, "127.0.0.1")
        self.assertNotEqual(port.getHost().port, 0)

    def test_a_port_that_cannot_listen_fails_the_deferred(self) -> None:
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        number = taken.getsockname()[1]
        endpoint = write_through(serverFromString(reactor, f"tcp:{number}:interface=127.0.0.1"))
        self.failureResultOf(endpoint.listen(Factory.forProtocol(Protocol)), error.CannotListenError)

    @defer.inlineCallbacks
    def test_a_socket_handed_over_by_systemd_makes_write_through_transports(self) -> Any:
        """Socket activation (C{systemd:domain=INET:index=0}) keeps the write-through transport."""
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        number = listening.getsockname()[1]
        inner = AdoptedStreamServerEndpoint(reactor, os.dup(listening.fileno()), socket.AF_INET)
        listening.close()
        endpoint = write_through(inner)
        self.assertIsInstance(endpoint, WriteThroughAdoptedEndpoint)
        served: list[Any] = []

        class Hello(Protocol):
            def connectionMade(self) -> None:
                served.append(self.transport)
                self.transport.write(b"hello\r\n")  # type: ignore[union-attr]
                self.transport.loseConnection()  # type: ignore[union-attr]

        port = yield endpoint.listen(Factory.forProtocol(Hello))
        self.addCleanup(port.stopListening)
        self.assertIsInstance(port, WriteThroughPort)
        self.assertEqual(port.getHost().port, number)
        sink = Sink()
        sink.connectionMade = lambda: None  # type: ignore[method-assign]
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", number), sink)
        yield sink.done
        self.assertEqual(sink.digest.digest(), hashlib.sha256(b"hello\r\n").digest())
        self.assertIsInstance(served[0], WriteThroughServer)

    def test_a_unix_socket_handed_over_is_left_alone(self) -> None:
        inner = AdoptedStreamServerEndpoint(reactor, 99, socket.AF_UNIX)
        self.assertIs(write_through(inner), inner)
