"""
Tests for chat.peer.protocol: a conversation over a StringTransport with a
Clock for the quiet period, the server factory's one-at-a-time rule, and the
busy line.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from chat.peer.framing import Handle, Message
from chat.peer.protocol import (
    BusyProtocol,
    Ending,
    IServerOperator,
    PairServerFactory,
    PeerProtocol,
    describe_address,
)

STEVE = Handle("SteveO")
HOST = Handle("HostA")
CLIENT_ADDRESS = IPv4Address("TCP", "127.0.0.1", 51100)


@implementer(IServerOperator)
class Recorder:
    """A listener (or operator) that writes down what it is told."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def conversation_started(self, conversation: PeerProtocol) -> None:
        self.events.append(("started", conversation.address))

    def message_received(self, message: Message) -> None:
        self.events.append(message)

    def conversation_ended(self, ending: Ending) -> None:
        self.events.append(ending)

    def turned_away(self, address: str) -> None:
        self.events.append(("turned away", address))


class ConversationTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.listener = Recorder()
        self.transport = StringTransport(peerAddress=CLIENT_ADDRESS)
        self.conversation = PeerProtocol(self.clock, self.listener)
        self.conversation.makeConnection(self.transport)

    def receive(self, *reads: bytes) -> None:
        for data in reads:
            self.conversation.dataReceived(data)

    def lose(self, reason: type[Exception] = ConnectionDone) -> None:
        self.conversation.connectionLost(Failure(reason()))

    def events(self) -> list[object]:
        """What the listener was told since the connection was made."""
        return self.listener.events[1:]


class PeerProtocolTests(ConversationTestCase):
    def test_the_listener_hears_first_that_the_conversation_started(self) -> None:
        self.assertEqual(self.listener.events, [("started", "127.0.0.1:51100")])

    def test_a_message_is_one_write_without_terminator(self) -> None:
        self.conversation.send_message(STEVE, "Hi!!")
        self.assertEqual(self.transport.value(), b"SteveO> Hi!!")

    def test_an_unframed_message_is_given_after_the_quiet_period(self) -> None:
        self.receive(b"HostA> hello")
        self.assertEqual(self.events(), [])
        self.clock.advance(PeerProtocol.quiet)
        self.assertEqual(self.events(), [Message("HostA", "hello")])

    def test_more_of_the_message_within_the_quiet_period_joins_it(self) -> None:
        self.receive(b"HostA> hel")
        self.clock.advance(PeerProtocol.quiet * 0.9)
        self.receive(b"lo there")
        self.clock.advance(PeerProtocol.quiet * 0.9)
        self.assertEqual(self.events(), [])
        self.clock.advance(PeerProtocol.quiet * 0.1)
        self.assertEqual(self.events(), [Message("HostA", "hello there")])

    def test_a_terminated_message_is_given_at_once(self) -> None:
        self.receive(b"HostA>hello\n")
        self.assertEqual(self.events(), [Message("HostA", "hello")])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_the_next_message_ends_the_one_before_at_once(self) -> None:
        self.receive(b"HostA> one", b"HostA> two")
        self.assertEqual(self.events(), [Message("HostA", "one")])
        self.clock.advance(PeerProtocol.quiet)
        self.assertEqual(self.events(), [Message("HostA", "one"), Message("HostA", "two")])

    def test_the_peers_quit_closes_the_connection_and_says_so(self) -> None:
        self.receive(b"HostA> bye!HostA> \\quit")
        self.assertEqual(self.events(), [Message("HostA", "bye!")])
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(PeerProtocol.quiet)
        self.assertTrue(self.transport.disconnecting)
        self.lose()
        self.assertEqual(self.events(), [Message("HostA", "bye!"), Ending.PEER_QUIT])

    def test_nothing_after_the_peers_quit_is_read(self) -> None:
        self.receive(b"\\quit\n")
        self.receive(b"HostA> too late\n")
        self.lose()
        self.assertEqual(self.events(), [Ending.PEER_QUIT])

    def test_our_quit_is_written_and_the_connection_closed(self) -> None:
        self.conversation.send_message(HOST, "bye")
        self.conversation.quit(HOST)
        self.assertEqual(self.transport.value(), b"HostA> byeHostA> \\quit")
        self.assertTrue(self.transport.disconnecting)
        self.lose()
        self.assertEqual(self.events(), [Ending.WE_QUIT])

    def test_nothing_is_sent_after_our_quit(self) -> None:
        self.conversation.quit(HOST)
        self.conversation.send_message(HOST, "more")
        self.conversation.quit(HOST)
        self.assertEqual(self.transport.value(), b"HostA> \\quit")

    def test_messages_that_cross_our_quit_are_still_shown(self) -> None:
        self.conversation.quit(STEVE)
        self.receive(b"HostA> wait!")
        self.lose()
        self.assertEqual(self.events(), [Message("HostA", "wait!"), Ending.WE_QUIT])

    def test_a_peer_that_does_not_read_our_quit_is_cut_off(self) -> None:
        self.conversation.quit(STEVE)
        self.assertFalse(self.transport.disconnected)
        self.clock.advance(PeerProtocol.goodbye_timeout)
        self.assertTrue(self.transport.disconnected)

    def test_the_pending_message_is_given_when_the_connection_closes(self) -> None:
        self.receive(b"HostA> last words")
        self.lose()
        self.assertEqual(self.events(), [Message("HostA", "last words"), Ending.PEER_CLOSED])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_pending_quit_when_the_connection_closes_is_a_quit(self) -> None:
        self.receive(b"HostA> \\quit")
        self.lose()
        self.assertEqual(self.events(), [Ending.PEER_QUIT])

    def test_closing_without_a_quit_is_the_peer_closing(self) -> None:
        self.lose()
        self.assertEqual(self.events(), [Ending.PEER_CLOSED])

    def test_a_failed_connection_is_lost(self) -> None:
        self.lose(ConnectionLost)
        self.assertEqual(self.events(), [Ending.LOST])

    def test_the_peers_handle_is_learned_from_its_first_message(self) -> None:
        self.assertIsNone(self.conversation.peer_handle)
        self.receive(b"SteveO>hi\n")
        self.assertEqual(self.conversation.peer_handle, "SteveO")


class LaterListenerTests(unittest.TestCase):
    """A client's conversation is connected before anyone listens to it."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.conversation = PeerProtocol(self.clock)
        self.conversation.makeConnection(StringTransport())

    def test_what_happened_before_is_told_on_start(self) -> None:
        self.conversation.dataReceived(b"HostA> early\n")
        self.conversation.connectionLost(Failure(ConnectionDone()))
        listener = Recorder()
        self.conversation.start(listener)
        self.assertEqual(
            listener.events, [("started", "192.168.1.1:54321"), Message("HostA", "early"), Ending.PEER_CLOSED]
        )

    def test_after_start_events_go_straight_to_the_listener(self) -> None:
        listener = Recorder()
        self.conversation.start(listener)
        self.conversation.dataReceived(b"HostA> now\n")
        self.assertEqual(listener.events[1:], [Message("HostA", "now")])


@implementer(ITCPTransport)
class HalfClosingTransport(StringTransport):
    """A StringTransport that can close only its writing side, as TCP can."""

    write_closed = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def getTcpNoDelay(self) -> bool:
        return False

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def getTcpKeepAlive(self) -> bool:
        return False

    def setTcpKeepAlive(self, enabled: bool) -> None:
        pass


class PairServerFactoryTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.operator = Recorder()
        self.factory = PairServerFactory(HOST, self.clock)
        self.factory.operator = self.operator

    def connect(self, port: int = 51100) -> tuple[object, HalfClosingTransport]:
        address = IPv4Address("TCP", "127.0.0.1", port)
        protocol = self.factory.buildProtocol(address)
        assert protocol is not None
        transport = HalfClosingTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport

    def test_the_first_client_gets_a_conversation_the_operator_hears_of(self) -> None:
        protocol, _ = self.connect()
        self.assertIsInstance(protocol, PeerProtocol)
        self.assertIs(self.factory.conversation, protocol)
        self.assertEqual(self.operator.events, [("started", "127.0.0.1:51100")])

    def test_a_second_client_gets_one_busy_line_naming_the_first_by_handle(self) -> None:
        first, _ = self.connect()
        assert isinstance(first, PeerProtocol)
        first.dataReceived(b"SteveO> Hi!!\n")
        second, transport = self.connect(51102)
        self.assertIsInstance(second, BusyProtocol)
        self.assertEqual(transport.value(), b"HostA> busy: already chatting with SteveO; try again later")
        self.assertTrue(transport.write_closed)
        self.assertEqual(self.operator.events[-1], ("turned away", "127.0.0.1:51102"))
        self.assertIs(self.factory.conversation, first)

    def test_a_client_without_a_handle_yet_is_not_named_to_strangers(self) -> None:
        self.connect()
        _, transport = self.connect(51102)
        line = b"HostA> busy: already chatting with someone else; try again later"
        self.assertEqual(transport.value(), line)

    def test_once_the_conversation_ends_the_next_client_gets_one(self) -> None:
        first, _ = self.connect()
        first.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
        self.assertIsNone(self.factory.conversation)
        self.assertEqual(self.operator.events[-1], Ending.PEER_CLOSED)
        second, _ = self.connect(51102)
        self.assertIsInstance(second, PeerProtocol)

    def test_without_an_operator_no_one_is_served(self) -> None:
        self.factory.operator = None
        self.assertIsNone(self.factory.buildProtocol(CLIENT_ADDRESS))


class BusyProtocolTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.busy = BusyProtocol(b"HostA> busy", self.clock, 30)

    def test_the_line_then_the_end_of_the_stream_and_reading_goes_on(self) -> None:
        transport = HalfClosingTransport()
        self.busy.makeConnection(transport)
        self.assertEqual(transport.value(), b"HostA> busy")
        self.assertTrue(transport.write_closed)
        self.assertFalse(transport.disconnecting)
        self.busy.dataReceived(b"SteveO> Hi!!")
        self.assertEqual(transport.value(), b"HostA> busy")

    def test_a_client_that_never_closes_is_cut_off(self) -> None:
        transport = HalfClosingTransport()
        self.busy.makeConnection(transport)
        self.clock.advance(30)
        self.assertTrue(transport.disconnected)

    def test_closing_in_time_cancels_the_cut_off(self) -> None:
        self.busy.makeConnection(HalfClosingTransport())
        self.busy.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_transport_that_cannot_half_close_is_closed(self) -> None:
        transport = StringTransport()
        self.busy.makeConnection(transport)
        self.assertEqual(transport.value(), b"HostA> busy")
        self.assertTrue(transport.disconnecting)


class DescribeAddressTests(unittest.TestCase):
    def test_an_address_is_host_and_port_with_ipv6_in_brackets(self) -> None:
        self.assertEqual(describe_address(IPv4Address("TCP", "10.0.0.1", 30020)), "10.0.0.1:30020")
        self.assertEqual(describe_address(IPv6Address("TCP", "::1", 30020)), "[::1]:30020")
        self.assertEqual(describe_address(None), "an unknown address")
