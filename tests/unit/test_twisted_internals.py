"""
The canary of L{chat.server.twisted_internals}: every name Twisted does not
publish that the server relies on, imported and checked for the behaviour
relied on, in a second.  A Twisted that changed one fails here, by name.
"""

from __future__ import annotations

import socket
from typing import Any

import wsproto
from twisted.internet import abstract, defer, error, reactor, tcp
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web import http
from wsproto.events import Ping, TextMessage

from chat.server import twisted_internals
from tests.certificates import make_certificate
from tests.expect import until


class WebSocketWireTests(unittest.TestCase):
    def wire(self) -> tuple[Any, list[str]]:
        received: list[str] = []

        class Edge:
            def negotiationStarted(self, transport: object) -> None:
                pass

            def negotiationFinished(self) -> None:
                pass

            def textMessageReceived(self, message: str) -> None:
                received.append(message)

        connection = wsproto.Connection(wsproto.ConnectionType.SERVER)
        edge: Any = Edge()
        wire = twisted_internals.WebSocketWire(connection, twisted_internals.server_bootstrap, edge)
        wire.makeConnection(StringTransport())
        return wire, received

    def test_the_wire_keeps_its_connection_and_protocol(self) -> None:
        wire, _ = self.wire()
        self.assertIsInstance(twisted_internals.wire_connection(wire), wsproto.Connection)
        self.assertTrue(hasattr(twisted_internals.wire_protocol(wire), "textMessageReceived"))

    def test_handle_event_hands_a_text_message_to_the_protocol(self) -> None:
        wire, received = self.wire()
        twisted_internals.handle_event(TextMessage("hello", message_finished=True), wire)
        self.assertEqual(received, ["hello"])

    def test_handle_event_answers_a_ping(self) -> None:
        wire, _ = self.wire()
        twisted_internals.handle_event(Ping(b"x"), wire)
        self.assertNotEqual(wire.transport.value(), b"")

    def test_the_http_channel_has_its_upgrade_hook(self) -> None:
        self.assertTrue(callable(getattr(http.HTTPChannel, "_protocolUpgradeForWebsockets", None)))


class TcpTests(unittest.TestCase):
    def test_a_fresh_server_transport_has_the_flags_write_through_reads(self) -> None:
        sock = socket.socket()
        self.addCleanup(sock.close)
        server = tcp.Server(sock, Protocol(), ("127.0.0.1", 1), None, 1, reactor)  # type: ignore[arg-type]
        server.stopReading()  # it registered itself with the reactor
        for name in ("dataBuffer", "_tempDataLen", "_writeDisconnected", "_aborting", "TLS", "producer"):
            self.assertTrue(hasattr(server, name), name)
        server.connected = True
        self.assertFalse(twisted_internals.tcp_write_must_queue(server))
        server._tempDataLen = 1
        self.assertTrue(twisted_internals.tcp_write_must_queue(server))
        self.assertEqual(twisted_internals.tcp_unjoined_bytes(server), 1)

    def test_a_parsed_tcp_endpoint_gives_its_port_backlog_and_interface(self) -> None:
        endpoint: Any = serverFromString(reactor, "tcp:4119:interface=127.0.0.1:backlog=7")
        self.assertIs(twisted_internals.endpoint_reactor(endpoint), reactor)
        port = twisted_internals.tcp_endpoint_port(endpoint, tcp.Port, Factory.forProtocol(Protocol))
        self.assertEqual((port.port, port.backlog, port.interface), (4119, 7, "127.0.0.1"))

    def test_an_inherited_socket_becomes_a_port_of_our_class(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        sock.setblocking(False)
        self.addCleanup(sock.close)
        endpoint = AdoptedStreamServerEndpoint(reactor, sock.fileno(), socket.AF_INET)

        class Mine(tcp.Port):
            pass

        port = twisted_internals.adopt_port(endpoint, Mine, Factory.forProtocol(Protocol))
        self.assertIsInstance(port, Mine)

    async def assert_abort_now_gives_back_the_descriptor(
        self, description: str, reported: type[Exception] = error.ConnectionAborted
    ) -> None:
        """
        A connection accepted on C{description}, aborted by L{abort_now}:
        what follows.  The protocol hears C{reported}, as after Twisted's
        own abort (over TLS, the TLS layer's C{ConnectionLost}).
        """
        made: defer.Deferred[Protocol] = defer.Deferred()
        lost: list[Failure] = []

        class Held(Protocol):
            def connectionMade(self) -> None:
                made.callback(self)

            def connectionLost(self, reason: Failure = connectionDone) -> None:
                lost.append(reason)

        port: Any = await serverFromString(reactor, description).listen(Factory.forProtocol(Held))
        self.addCleanup(port.stopListening)
        client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        self.addCleanup(client.close)
        transport: Any = (await made).transport
        # Over TLS the socket is the TCP transport's, under the TLS one.
        under = transport if isinstance(transport, tcp.Connection) else transport.transport
        handle = under.getHandle()
        self.assertNotEqual(handle.fileno(), -1)

        twisted_internals.abort_now(transport)
        self.assertEqual(handle.fileno(), -1)
        # Written or closed meanwhile: dropped, as after any abort, and no error.
        transport.write(b"after the abort")
        transport.loseConnection()
        self.assertEqual(lost, [])
        await until(lambda: lost, "the loss reported to the protocol")
        [reason] = lost
        self.assertTrue(reason.check(reported), reason)
        with self.assertRaises(ConnectionResetError):
            client.recv(100)

    async def test_abort_now_gives_back_the_descriptor_before_the_reactor_turns(self) -> None:
        await self.assert_abort_now_gives_back_the_descriptor("tcp:0:interface=127.0.0.1")

    async def test_over_tls_abort_now_closes_the_tcp_socket_under_it(self) -> None:
        key, cert = make_certificate(self.mktemp())
        await self.assert_abort_now_gives_back_the_descriptor(
            f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}", error.ConnectionLost
        )

    def test_the_send_limit_can_be_raised(self) -> None:
        self.assertEqual(abstract.FileDescriptor.SEND_LIMIT, 128 * 1024)
        transport = abstract.FileDescriptor(reactor)
        self.assertTrue(twisted_internals.raise_send_limit(transport, 4 * 1024 * 1024))
        self.assertEqual(transport.SEND_LIMIT, 4 * 1024 * 1024)
        self.assertFalse(twisted_internals.raise_send_limit(object(), 1))
