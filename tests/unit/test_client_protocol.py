"""
Tests for chat.client.protocol: server output into lines and prompts, over
a StringTransport, with a Clock for the unknown-prompt grace period.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from chat.client.protocol import ChatClientProtocol, IServerListener, NoGreeting, Prompt, PromptKind


@implementer(IServerListener)
class Events:
    """Everything a listener is told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def line_received(self, text: str) -> None:
        self.events.append(("line", text))

    def prompt_received(self, prompt: Prompt) -> None:
        self.events.append(("prompt", prompt.text))

    def connection_lost(self, reason: Failure) -> None:
        self.events.append(("lost", reason.type))


class ChatClientProtocolTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.protocol = ChatClientProtocol(self.clock)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.listener = Events()
        self.protocol.start(self.listener)

    def receive(self, *chunks: bytes) -> list[tuple[str, object]]:
        for chunk in chunks:
            self.protocol.dataReceived(chunk)
        return self.listener.events

    def test_a_prompt_without_a_newline_is_a_prompt(self) -> None:
        self.assertEqual(self.receive(b"Username: "), [("prompt", "Username: ")])

    def test_a_prompt_split_across_reads_is_one_prompt(self) -> None:
        self.assertEqual(self.receive(b"Comm", b"and", b": "), [("prompt", "Command: ")])

    def test_a_line_split_across_reads_is_one_line(self) -> None:
        events = self.receive(b"Login successful. Welc", b"ome to chat, columbia!\r", b"\nCommand: ")
        self.assertEqual(
            events, [("line", "Login successful. Welcome to chat, columbia!"), ("prompt", "Command: ")]
        )

    def test_replies_then_the_next_prompt(self) -> None:
        events = self.receive(b"Online now (1):\r\n  seas\r\nCommand: ")
        self.assertEqual(events, [("line", "Online now (1):"), ("line", "  seas"), ("prompt", "Command: ")])

    def test_the_newline_that_ends_a_prompt_before_a_message_is_not_a_line(self) -> None:
        events = self.receive(b"Command: ", b"\r\nseas (private): hello\r\n")
        self.assertEqual(events, [("prompt", "Command: "), ("line", "seas (private): hello")])

    def test_a_prompt_and_the_message_after_it_in_one_read(self) -> None:
        events = self.receive(b"Command: \r\ngoogle (broadcast): hi all\r\n")
        self.assertEqual(events, [("prompt", "Command: "), ("line", "google (broadcast): hi all")])

    def test_only_the_first_empty_line_after_a_prompt_is_dropped(self) -> None:
        events = self.receive(b"Command: ", b"\r\n\r\nx\r\n")
        self.assertEqual(events, [("prompt", "Command: "), ("line", ""), ("line", "x")])

    def test_an_empty_line_elsewhere_is_kept(self) -> None:
        self.assertEqual(self.receive(b"a\r\n\r\nb\r\n"), [("line", "a"), ("line", ""), ("line", "b")])

    def test_plain_newlines_end_lines_too(self) -> None:
        self.assertEqual(self.receive(b"a\nb\n"), [("line", "a"), ("line", "b")])

    def test_utf8_split_across_reads(self) -> None:
        data = "seas (private): héllo 日本\r\n".encode()
        self.assertEqual(
            self.receive(data[:19], data[19:24], data[24:]), [("line", "seas (private): héllo 日本")]
        )

    def test_bytes_that_are_not_utf8_are_replaced(self) -> None:
        self.assertEqual(self.receive(b"bad \xff\r\n"), [("line", "bad \N{REPLACEMENT CHARACTER}")])

    def test_an_unknown_prompt_is_shown_after_a_grace_period(self) -> None:
        self.receive(b"Favourite colour? ")
        self.assertEqual(self.listener.events, [])
        self.clock.advance(ChatClientProtocol.prompt_grace)
        self.assertEqual(self.listener.events, [("prompt", "Favourite colour? ")])

    def test_a_partial_line_finished_in_time_is_a_line(self) -> None:
        self.receive(b"a long line, cut")
        self.clock.advance(ChatClientProtocol.prompt_grace / 2)
        self.receive(b" in two\r\n")
        self.clock.advance(ChatClientProtocol.prompt_grace * 2)
        self.assertEqual(self.listener.events, [("line", "a long line, cut in two")])

    def test_what_arrives_before_start_is_kept(self) -> None:
        protocol = ChatClientProtocol(self.clock)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"Username: ")
        protocol.connectionLost(Failure(ConnectionDone()))
        listener = Events()
        protocol.start(listener)
        self.assertEqual(listener.events, [("prompt", "Username: "), ("lost", ConnectionDone)])

    def test_closing_passes_on_the_last_unfinished_line_then_the_reason(self) -> None:
        self.receive(b"Goodbye, columbia!\r\nunfinished")
        self.protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(
            self.listener.events,
            [("line", "Goodbye, columbia!"), ("line", "unfinished"), ("lost", ConnectionLost)],
        )

    def test_closing_cancels_the_grace_period(self) -> None:
        self.receive(b"half")
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_send_line(self) -> None:
        self.protocol.send_line("message seas héllo")
        self.assertEqual(self.transport.value(), "message seas héllo\n".encode())

    def test_nothing_is_sent_after_the_connection_is_lost(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.protocol.send_line("logout")
        self.assertEqual(self.transport.value(), b"")

    def test_close_and_abort(self) -> None:
        self.protocol.close()
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.transport.disconnected)
        self.protocol.abort()
        self.assertTrue(self.transport.disconnected)


class ReadyTests(unittest.TestCase):
    def test_tcp_is_ready_once_the_server_says_something(self) -> None:
        protocol = ChatClientProtocol(Clock())
        protocol.makeConnection(StringTransport())
        self.assertNoResult(protocol.ready)
        protocol.dataReceived(b"Username: ")
        self.assertIs(self.successResultOf(protocol.ready), protocol)
        listener = Events()
        protocol.start(listener)
        self.assertEqual(listener.events, [("prompt", "Username: ")])

    def test_a_silent_tcp_server_is_dropped_and_fails_ready(self) -> None:
        """The chat server greets at once; one that says nothing is waiting for TLS."""
        clock = Clock()
        protocol = ChatClientProtocol(clock, greeting_timeout=5)
        transport = StringTransport()
        protocol.makeConnection(transport)
        clock.advance(4.9)
        self.assertNoResult(protocol.ready)
        clock.advance(0.1)
        self.assertEqual(self.failureResultOf(protocol.ready, NoGreeting).value.seconds, 5)
        self.assertTrue(transport.disconnected)
        protocol.connectionLost(Failure(ConnectionLost()))

    def test_a_greeting_in_time_stops_the_wait(self) -> None:
        clock = Clock()
        protocol = ChatClientProtocol(clock, greeting_timeout=5)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"User")
        self.successResultOf(protocol.ready)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_close_before_the_greeting_fails_ready(self) -> None:
        clock = Clock()
        protocol = ChatClientProtocol(clock, greeting_timeout=5)
        protocol.makeConnection(StringTransport())
        protocol.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(protocol.ready, ConnectionDone)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_tls_waits_for_the_handshake_not_for_words(self) -> None:
        clock = Clock()
        protocol = ChatClientProtocol(clock, tls=True, greeting_timeout=5)
        protocol.makeConnection(StringTransport())
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_tls_is_ready_after_the_handshake(self) -> None:
        protocol = ChatClientProtocol(Clock(), tls=True)
        protocol.makeConnection(StringTransport())
        self.assertNoResult(protocol.ready)
        protocol.handshakeCompleted()
        self.assertIs(self.successResultOf(protocol.ready), protocol)
        protocol.handshakeCompleted()  # a renegotiation changes nothing

    def test_a_failed_handshake_fails_ready(self) -> None:
        protocol = ChatClientProtocol(Clock(), tls=True)
        protocol.makeConnection(StringTransport())
        protocol.connectionLost(Failure(ConnectionLost("certificate verify failed")))
        self.failureResultOf(protocol.ready, ConnectionLost)


class PromptTests(unittest.TestCase):
    def test_known_prompts(self) -> None:
        self.assertEqual(Prompt.parse("Username: "), Prompt("Username: ", PromptKind.USERNAME, False))
        self.assertEqual(Prompt.parse("Password: "), Prompt("Password: ", PromptKind.PASSWORD, True))
        self.assertEqual(Prompt.parse("Command: ").kind, PromptKind.COMMAND)
        self.assertEqual(Prompt.parse("Intro: ").kind, PromptKind.INTRO)

    def test_an_unknown_prompt_asking_for_a_password_is_secret(self) -> None:
        self.assertEqual(Prompt.parse("New password: "), Prompt("New password: ", PromptKind.OTHER, True))
        self.assertFalse(Prompt.parse("Colour: ").secret)
