"""
Tests for chat.peer.app: both ends of the pair chat between a recording
console and real conversations over StringTransports, with a Clock.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from chat.peer.app import HANDLE_PROMPT, ClientState, PairClient, PairServer, ServerState
from chat.peer.framing import Handle
from chat.peer.protocol import PairServerFactory, PeerProtocol
from tests.unit.console import FakeConsole

HOST = Handle("HostA")
STEVE = Handle("SteveO")


class FakePort:
    """A listening port that remembers being stopped."""

    def __init__(self, port: int) -> None:
        self.address = IPv4Address("TCP", "0.0.0.0", port)
        self.listening = True

    def getHost(self) -> IPv4Address:
        return self.address

    def stopListening(self) -> None:
        self.listening = False

    def startListening(self) -> None:
        self.listening = True


class PairServerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = PairServerFactory(HOST, self.clock)
        self.port = FakePort(30020)
        self.server = PairServer(self.factory, self.port, FakeConsole)  # type: ignore[arg-type]
        self.console: FakeConsole = self.server.console  # type: ignore[assignment]
        self.server.start()

    def connect(self, port: int = 51100) -> tuple[PeerProtocol, StringTransport]:
        """A client connects; it must be given a conversation."""
        protocol, transport = self.arrive(port)
        assert isinstance(protocol, PeerProtocol)
        return protocol, transport

    def arrive(self, port: int) -> tuple[Protocol, StringTransport]:
        address = IPv4Address("TCP", "127.0.0.1", port)
        protocol = self.factory.buildProtocol(address)
        assert protocol is not None
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport

    def receive(self, conversation: PeerProtocol, data: bytes) -> None:
        conversation.dataReceived(data)
        self.clock.advance(PeerProtocol.quiet)

    def enter(self, line: str) -> None:
        self.console.app.line_entered(line)

    def shown_since(self, mark: int) -> list[str]:
        return self.console.shown[mark:]

    def test_it_says_where_it_waits_and_prompts_with_its_handle(self) -> None:
        self.assertEqual(
            self.console.shown,
            [
                "Waiting for a client on port 30020, as HostA.\n"
                "\\quit ends a conversation; Ctrl+C stops the server."
            ],
        )
        self.assertEqual(self.console.prompts, [("HostA> ", False)])

    def test_a_client_connecting_is_shown_with_its_address(self) -> None:
        self.connect()
        self.assertEqual(self.console.shown[-1], "Established connection with 127.0.0.1:51100.")
        self.assertIs(self.server.state, ServerState.CHATTING)

    def test_messages_go_both_ways_as_handle_and_text(self) -> None:
        conversation, transport = self.connect()
        self.receive(conversation, b"SteveO> Hi!!")
        self.assertEqual(self.console.shown[-1], "SteveO> Hi!!")
        self.enter("hello")
        self.enter("  and again ")
        self.assertEqual(transport.value(), b"HostA> helloHostA> and again")

    def test_the_server_may_speak_first(self) -> None:
        _, transport = self.connect()
        self.enter("hello, who is there?")
        self.assertEqual(transport.value(), b"HostA> hello, who is there?")

    def test_every_line_gets_the_prompt_again(self) -> None:
        self.connect()
        for line in ("hello", "", "x" * 501):
            self.enter(line)
        self.assertEqual(self.console.prompts, [("HostA> ", False)] * 4)

    def test_an_empty_line_sends_nothing(self) -> None:
        _, transport = self.connect()
        self.enter("   ")
        self.assertEqual(transport.value(), b"")

    def test_a_line_over_500_characters_is_refused_and_nothing_sent(self) -> None:
        _, transport = self.connect()
        mark = len(self.console.shown)
        self.enter("x" * 501)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(
            self.shown_since(mark), ["Not sent: that message has 501 characters; the most is 500."]
        )
        self.enter("x" * 500)
        self.assertEqual(transport.value(), b"HostA> " + b"x" * 500)

    def test_a_line_with_no_one_connected_is_not_sent(self) -> None:
        self.enter("anyone?")
        self.assertEqual(self.console.shown[-1], "Not sent: no one is connected yet.")

    def test_quit_ends_the_conversation_and_waits_for_the_next_client(self) -> None:
        conversation, transport = self.connect()
        self.receive(conversation, b"SteveO> Hi!!")
        self.enter("\\quit")
        self.assertEqual(transport.value(), b"HostA> \\quit")
        self.assertTrue(transport.disconnecting)
        mark = len(self.console.shown)
        conversation.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(
            self.shown_since(mark),
            ["You left the conversation with SteveO.", "Waiting for the next client on port 30020."],
        )
        self.assertIs(self.server.state, ServerState.WAITING)
        self.connect(51102)
        self.assertEqual(self.console.shown[-1], "Established connection with 127.0.0.1:51102.")

    def test_quit_with_no_one_connected_says_so(self) -> None:
        self.enter("\\quit")
        self.assertIn("No one to leave", self.console.shown[-1])
        self.assertIs(self.server.state, ServerState.WAITING)

    def test_the_clients_quit_says_who_left(self) -> None:
        conversation, transport = self.connect()
        mark = len(self.console.shown)
        self.receive(conversation, b"SteveO> Hi!!SteveO> \\quit")
        self.assertTrue(transport.disconnecting)
        conversation.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(
            self.shown_since(mark),
            ["SteveO> Hi!!", "SteveO left the conversation.", "Waiting for the next client on port 30020."],
        )

    def test_a_client_that_never_said_its_handle_is_named_by_address(self) -> None:
        conversation, _ = self.connect()
        conversation.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.console.shown[-2], "The client at 127.0.0.1:51100 closed the connection.")

    def test_a_lost_connection(self) -> None:
        conversation, _ = self.connect()
        self.receive(conversation, b"SteveO> Hi!!")
        conversation.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.console.shown[-2], "The connection with SteveO was lost.")

    def test_a_second_client_is_turned_away_and_the_operator_told(self) -> None:
        conversation, _ = self.connect()
        self.receive(conversation, b"SteveO> Hi!!")
        _, transport = self.arrive(51102)
        self.assertIn(b"busy", transport.value())
        self.assertEqual(self.console.shown[-1], "Turned away a client at 127.0.0.1:51102: busy with SteveO.")
        self.assertIs(self.server.conversation, conversation)

    def test_ctrl_c_with_a_client_says_quit_and_stops_once_it_is_closed(self) -> None:
        conversation, transport = self.connect()
        self.receive(conversation, b"SteveO> Hi!!")
        self.console.app.interrupted()
        self.assertEqual(transport.value(), b"HostA> \\quit")
        self.assertFalse(self.port.listening)
        self.assertNoResult(self.server.finished)
        conversation.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.successResultOf(self.server.finished), 0)
        self.assertEqual(
            self.console.shown[-2:], ["You left the conversation with SteveO.", "Server stopped."]
        )
        self.assertTrue(self.console.closed)
        self.assertIs(self.server.state, ServerState.STOPPED)

    def test_ctrl_c_while_waiting_stops_at_once(self) -> None:
        self.console.app.interrupted()
        self.assertEqual(self.successResultOf(self.server.finished), 0)
        self.assertEqual(self.console.shown[-1], "Server stopped.")
        self.assertFalse(self.port.listening)

    def test_the_end_of_input_stops_like_ctrl_c(self) -> None:
        _, transport = self.connect()
        self.console.app.input_ended()
        self.assertEqual(transport.value(), b"HostA> \\quit")
        self.assertIs(self.server.state, ServerState.STOPPING)

    def test_ctrl_c_twice_stops_waiting_for_the_client(self) -> None:
        _, transport = self.connect()
        self.console.app.interrupted()
        self.console.app.interrupted()
        self.assertTrue(transport.disconnected)

    def test_a_client_that_does_not_take_the_quit_is_cut_off(self) -> None:
        conversation, transport = self.connect()
        self.console.app.interrupted()
        self.clock.advance(PeerProtocol.goodbye_timeout)
        self.assertTrue(transport.disconnected)
        conversation.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.successResultOf(self.server.finished), 0)

    def test_stop_fires_once_stopped_however_often_asked(self) -> None:
        conversation, _ = self.connect()
        first = self.server.stop()
        second = self.server.stop()
        self.assertNoResult(first)
        conversation.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(first)
        self.successResultOf(second)
        self.successResultOf(self.server.stop())

    def test_a_client_arriving_while_stopping_is_told_quit_at_once(self) -> None:
        conversation, _ = self.connect()
        self.console.app.interrupted()
        conversation.connectionLost(Failure(ConnectionDone()))
        late, transport = self.connect(51102)
        self.assertEqual(transport.value(), b"HostA> \\quit")
        self.assertTrue(transport.disconnecting)
        late.connectionLost(Failure(ConnectionDone()))
        self.assertNotIn("51102", "".join(self.console.shown))
        self.assertEqual(self.successResultOf(self.server.finished), 0)

    def test_lines_typed_while_stopping_are_ignored(self) -> None:
        _, transport = self.connect()
        self.console.app.interrupted()
        self.enter("too late")
        self.assertEqual(transport.value(), b"HostA> \\quit")

    def test_the_console_closes_before_finishing(self) -> None:
        self.console.closing = Deferred()
        self.console.app.interrupted()
        self.assertNoResult(self.server.finished)
        self.console.closing.callback(None)
        self.assertEqual(self.successResultOf(self.server.finished), 0)


class PairClientTestCase(unittest.TestCase):
    handle: Handle | None = None

    def setUp(self) -> None:
        self.clock = Clock()
        self.connection = PeerProtocol(self.clock)
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)
        self.client = PairClient(self.connection, "localhost:30020", FakeConsole, self.handle)
        self.console: FakeConsole = self.client.console  # type: ignore[assignment]
        self.client.start()

    def enter(self, *lines: str) -> None:
        for line in lines:
            self.console.app.line_entered(line)

    def server(self, data: bytes) -> None:
        self.connection.dataReceived(data)
        self.clock.advance(PeerProtocol.quiet)

    def close(self, reason: type[Exception] = ConnectionDone) -> None:
        self.connection.connectionLost(Failure(reason()))

    def status(self) -> int:
        return self.successResultOf(self.client.finished)


class PairClientNamingTests(PairClientTestCase):
    def test_it_says_where_it_is_connected_and_asks_for_a_handle(self) -> None:
        self.assertEqual(self.console.shown, ["Connected to localhost:30020.  \\quit leaves."])
        self.assertEqual(self.console.prompts, [(HANDLE_PROMPT, False)])

    def test_it_asks_until_the_handle_is_valid(self) -> None:
        self.enter("Steve O", "Stevenson_III", "SteveO")
        self.assertEqual(
            self.console.shown[1:],
            ["A handle is one word: no spaces.", "A handle has at most 10 characters; that one has 13."],
        )
        self.assertEqual(self.console.prompts, [(HANDLE_PROMPT, False)] * 3 + [("SteveO> ", False)])
        self.assertIs(self.client.state, ClientState.CHATTING)
        self.assertEqual(self.transport.value(), b"")

    def test_messages_arriving_while_naming_are_shown(self) -> None:
        self.server(b"HostA> hello? anyone?")
        self.assertEqual(self.console.shown[-1], "HostA> hello? anyone?")

    def test_quit_instead_of_a_handle_leaves_with_a_bare_quit(self) -> None:
        self.enter("\\quit")
        self.assertEqual(self.transport.value(), b"\\quit")
        self.close()
        self.assertEqual(self.console.shown[-1], "You left the conversation with the server.")
        self.assertEqual(self.status(), 0)

    def test_ctrl_d_at_the_handle_prompt_leaves(self) -> None:
        self.console.app.input_ended()
        self.assertEqual(self.transport.value(), b"\\quit")
        self.assertIs(self.client.state, ClientState.LEAVING)


class PairClientChatTests(PairClientTestCase):
    handle = STEVE

    def test_a_given_handle_is_not_asked_for(self) -> None:
        self.assertEqual(self.console.prompts, [("SteveO> ", False)])

    def test_lines_are_sent_as_handle_and_text_whenever_typed(self) -> None:
        self.enter("Hi!!", "you there?", "")
        self.assertEqual(self.transport.value(), b"SteveO> Hi!!SteveO> you there?")
        self.assertEqual(self.console.prompts, [("SteveO> ", False)] * 4)

    def test_messages_from_the_server_are_shown(self) -> None:
        self.server(b"HostA> hello\0\0\0\0")
        self.assertEqual(self.console.shown[-1], "HostA> hello")

    def test_a_line_over_500_characters_is_refused(self) -> None:
        self.enter("é" * 501)
        self.assertEqual(self.transport.value(), b"")
        refusal = "Not sent: that message has 501 characters; the most is 500."
        self.assertEqual(self.console.shown[-1], refusal)
        self.assertEqual(self.console.prompts[-1], ("SteveO> ", False))

    def test_quit_says_so_and_exits_zero(self) -> None:
        self.server(b"HostA> hello")
        self.enter("\\quit")
        self.assertEqual(self.transport.value(), b"SteveO> \\quit")
        self.assertTrue(self.transport.disconnecting)
        self.assertNoResult(self.client.finished)
        self.close()
        self.assertEqual(self.console.shown[-1], "You left the conversation with HostA.")
        self.assertTrue(self.console.closed)
        self.assertEqual(self.status(), 0)

    def test_ctrl_c_says_quit_and_exits_zero(self) -> None:
        self.console.app.interrupted()
        self.assertEqual(self.transport.value(), b"SteveO> \\quit")
        self.close()
        self.assertEqual(self.status(), 0)

    def test_ctrl_d_says_quit(self) -> None:
        self.console.app.input_ended()
        self.assertEqual(self.transport.value(), b"SteveO> \\quit")

    def test_ctrl_c_twice_stops_waiting(self) -> None:
        self.console.app.interrupted()
        self.console.app.interrupted()
        self.assertTrue(self.transport.disconnected)

    def test_lines_after_quit_are_not_sent(self) -> None:
        self.enter("\\quit", "more")
        self.assertEqual(self.transport.value(), b"SteveO> \\quit")

    def test_the_servers_quit_ends_it_and_exits_zero(self) -> None:
        self.server(b"HostA> bye nowHostA> \\quit")
        self.assertTrue(self.transport.disconnecting)
        self.close()
        self.assertEqual(self.console.shown[-2:], ["HostA> bye now", "HostA left the conversation."])
        self.assertEqual(self.status(), 0)

    def test_a_busy_server_is_shown_and_exits_one(self) -> None:
        self.connection.dataReceived(b"HostA> busy: already chatting with Bob; try again later")
        self.close()
        self.assertEqual(
            self.console.shown[-2:],
            ["HostA> busy: already chatting with Bob; try again later", "HostA closed the connection."],
        )
        self.assertEqual(self.status(), 1)

    def test_a_lost_connection_exits_one(self) -> None:
        self.close(ConnectionLost)
        self.assertEqual(self.console.shown[-1], "The connection with the server was lost.")
        self.assertEqual(self.status(), 1)

    def test_ctrl_c_after_the_end_does_nothing(self) -> None:
        self.close()
        self.console.app.interrupted()
        self.assertEqual(self.transport.value(), b"")
