"""
Tests for the client's command line and for how it explains a failure to
connect, in-process.
"""

from __future__ import annotations

import io
import sys

from OpenSSL import SSL
from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from chat.client.cli import Options, parse_arguments, run
from chat.client.connect import (
    GREETING_TIMEOUT,
    SetupError,
    Target,
    describe_failure,
    endpoint_for,
    load_trust,
)
from chat.client.protocol import NoGreeting
from tests.unit.console import stop_while_connecting

TARGET = Target("chat.example.org", 4119)
TLS = Target("chat.example.org", 4443, tls=True)


class ParseArgumentsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)

    def refused(self, *argv: str) -> str:
        """The one line printed for C{argv}, which exits with status 2."""
        with self.assertRaises(SystemExit) as caught:
            parse_arguments(list(argv))
        self.assertEqual(caught.exception.code, 2)
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(len(lines), 1, lines)
        return lines[0]

    def test_host_and_port(self) -> None:
        self.assertEqual(parse_arguments(["localhost", "4119"]), Options(Target("localhost", 4119)))

    def test_tls_options(self) -> None:
        options = parse_arguments(["--tls", "--cafile", "ca.pem", "--timestamps", "h", "1"])
        self.assertEqual(options, Options(Target("h", 1, tls=True, cafile="ca.pem"), timestamps=True))
        insecure = parse_arguments(["--tls", "--insecure", "h", "1"])
        self.assertTrue(insecure.target.insecure)

    def test_a_port_must_be_a_port_number(self) -> None:
        for port in ("http", "0", "65536", "4119.5"):
            self.stderr.truncate(0)
            self.stderr.seek(0)
            self.assertIn(f"PORT must be a number from 1 to 65535, not '{port}'", self.refused("h", port))

    def test_cafile_and_insecure_need_tls(self) -> None:
        self.assertIn("only apply with --tls", self.refused("--cafile", "ca.pem", "h", "1"))

    def test_cafile_and_insecure_contradict(self) -> None:
        self.assertIn("one or the other", self.refused("--tls", "--insecure", "--cafile", "x", "h", "1"))

    def test_missing_arguments(self) -> None:
        self.assertIn("PORT", self.refused("localhost"))

    def test_unknown_option(self) -> None:
        self.assertIn("--colour", self.refused("--colour", "h", "1"))


class ConnectingTests(unittest.TestCase):
    def test_stopping_while_the_connection_is_pending_is_one_line(self) -> None:
        """
        Ctrl+C before the console takes it, or SIGTERM, once the name is
        resolved and the TCP connection is being made: Twisted says so with
        its own error, not a CancelledError, and it is still giving up.
        """
        options = Options(Target("127.0.0.1", 4119))
        stderr = stop_while_connecting(self, lambda reactor: run(reactor, options), ("127.0.0.1", 4119))
        self.assertEqual(stderr, "chat.client: gave up connecting to 127.0.0.1:4119\n")

    def test_a_server_that_says_nothing_is_probably_speaking_tls(self) -> None:
        """
        Without --tls, a TLS server waits for a handshake and says nothing,
        where the chat server says "Username: " at once: rather than a blank
        screen until the connection times out, one line that suggests --tls.
        """
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        reactor = MemoryReactorClock()
        running = Deferred.fromCoroutine(run(reactor, Options(Target("127.0.0.1", 4443))))
        reactor.advance(0)
        [(_, _, factory, _, _)] = reactor.tcpClients
        connection = factory.buildProtocol(None)
        assert connection is not None
        transport = StringTransport()
        connection.makeConnection(transport)
        reactor.advance(GREETING_TIMEOUT - 0.1)
        self.assertNoResult(running)
        reactor.advance(0.1)
        self.assertEqual(self.failureResultOf(running, SystemExit).value.code, 2)
        self.assertEqual(
            stderr.getvalue(),
            "chat.client: cannot connect to 127.0.0.1:4443: no answer in 5 seconds; "
            "is the server using TLS on that port? try --tls\n",
        )
        self.assertTrue(transport.disconnected)


class DescribeFailureTests(unittest.TestCase):
    def test_refused(self) -> None:
        self.assertIn("connection refused", describe_failure(error.ConnectionRefusedError(), TARGET))

    def test_unknown_host(self) -> None:
        self.assertEqual(
            describe_failure(Failure(error.DNSLookupError("nope")), TARGET), "unknown host 'chat.example.org'"
        )

    def test_timeout(self) -> None:
        self.assertIn("timed out", describe_failure(error.TimeoutError(), TARGET))

    def test_other_connect_errors_give_the_system_reason(self) -> None:
        reason = describe_failure(error.ConnectError(osError="Network is unreachable"), TARGET)
        self.assertEqual(reason, "Network is unreachable")

    def test_untrusted_certificate(self) -> None:
        e = SSL.Error([("SSL routines", "", "certificate verify failed")])
        reason = describe_failure(e, TLS)
        self.assertIn("not trusted", reason)
        self.assertIn("--cafile", reason)

    def test_other_tls_errors_say_what_openssl_said(self) -> None:
        e = SSL.Error([("SSL routines", "", "wrong version number")])
        self.assertIn("TLS handshake failed (wrong version number)", describe_failure(e, TLS))

    def test_silence_suggests_tls(self) -> None:
        reason = describe_failure(NoGreeting(5), TARGET)
        self.assertEqual(reason, "no answer in 5 seconds; is the server using TLS on that port? try --tls")

    def test_closed_during_the_handshake(self) -> None:
        self.assertIn("during the TLS handshake", describe_failure(error.ConnectionDone(), TLS))


class TargetTests(unittest.TestCase):
    def test_an_ipv6_address_is_bracketed(self) -> None:
        self.assertEqual(Target("::1", 4119).describe(), "[::1]:4119")
        self.assertEqual(Target("localhost", 4119).describe(), "localhost:4119")

    def test_cafile_problems_are_setup_errors(self) -> None:
        with self.assertRaises(SetupError) as missing:
            load_trust(self.mktemp())
        self.assertIn("cannot read --cafile", str(missing.exception))
        empty = self.mktemp()
        with open(empty, "w") as f:
            f.write("not a certificate\n")
        with self.assertRaises(SetupError) as no_pem:
            endpoint_for(None, Target("h", 1, tls=True, cafile=empty))
        self.assertIn("holds no PEM certificate", str(no_pem.exception))
