"""
Tests for chat.cli, what the console programs share as commands, in-process
with a MemoryReactorClock.
"""

from __future__ import annotations

import io
import sys
from typing import Any, NoReturn

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectingCancelledError, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial import unittest

from chat import cli
from chat.cli import Parser, fail, run_program, run_session
from chat.client.connect import SetupError, Target

TARGET = Target("127.0.0.1", 4119)


class OneLineTests(unittest.TestCase):
    def setUp(self) -> None:
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)

    def exits(self, call: Any, *args: Any) -> int:
        with self.assertRaises(SystemExit) as caught:
            call(*args)
        code = caught.exception.code
        assert isinstance(code, int)
        return code

    def test_a_mistake_in_the_arguments_is_one_line_naming_the_program(self) -> None:
        parser = Parser("chat.test", prog="python -m chat.test")
        parser.add_argument("port")
        self.assertEqual(self.exits(parser.parse_args, []), 2)
        self.assertEqual(
            self.stderr.getvalue(), "chat.test: the following arguments are required: port (see --help)\n"
        )

    def test_so_is_a_mistake_in_a_subcommands_arguments(self) -> None:
        parser = Parser("chat.test", prog="python -m chat.test")
        commands = parser.add_subparsers(dest="command", required=True)
        commands.add_parser("serve").add_argument("port")
        self.assertEqual(self.exits(parser.parse_args, ["serve"]), 2)
        self.assertEqual(
            self.stderr.getvalue(), "chat.test: the following arguments are required: port (see --help)\n"
        )

    def test_failing_to_start_is_one_line_and_status_2(self) -> None:
        self.assertEqual(self.exits(fail, "chat.test", "cannot listen on port 1: permission denied"), 2)
        self.assertEqual(self.stderr.getvalue(), "chat.test: cannot listen on port 1: permission denied\n")

    def run_program(self, main: Any) -> Deferred[None]:
        """Run C{main} as L{run_program} would, with a reactor that is not run."""
        ran: list[Deferred[None]] = []
        self.patch(cli, "react", lambda guarded: ran.append(Deferred.fromCoroutine(guarded(None))))
        run_program("chat.test", main)
        return ran[0]

    def test_an_unexpected_error_is_logged_and_one_line_with_status_1(self) -> None:
        async def broken(reactor: Any) -> None:
            raise ValueError("no such thing")

        self.assertEqual(self.failureResultOf(self.run_program(broken), SystemExit).value.code, 1)
        self.assertEqual(
            self.stderr.getvalue(), "\r\nchat.test: internal error: ValueError('no such thing')\r\n"
        )
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_an_exit_status_is_not_an_error(self) -> None:
        async def refuses(reactor: Any) -> NoReturn:
            raise SystemExit(2)

        self.assertEqual(self.failureResultOf(self.run_program(refuses), SystemExit).value.code, 2)
        self.assertEqual(self.stderr.getvalue(), "")


class FakeSession:
    def __init__(self, connection: str) -> None:
        self.connection = connection
        self.finished: Deferred[int] = Deferred()
        self.started = False
        self.interruptions = 0

    def start(self) -> None:
        self.started = True

    def interrupted(self) -> None:
        self.interruptions += 1


class RunSessionTests(unittest.TestCase):
    def setUp(self) -> None:
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)
        self.reactor = MemoryReactorClock()
        self.sessions: list[FakeSession] = []

    def run_session(self, connecting: Deferred[str]) -> Deferred[None]:
        def session_for(connection: str) -> FakeSession:
            self.sessions.append(FakeSession(connection))
            return self.sessions[-1]

        return Deferred.fromCoroutine(run_session(self.reactor, "chat.test", TARGET, connecting, session_for))

    def shut_down(self) -> list[object]:
        """What the reactor's triggers before shutdown gave it to wait for."""
        return [
            trigger(*args, **kwargs) for trigger, args, kwargs in self.reactor.triggers["before"]["shutdown"]
        ]

    def refused(self, running: Deferred[None]) -> str:
        self.assertEqual(self.failureResultOf(running, SystemExit).value.code, 2)
        self.assertEqual(self.sessions, [])
        return self.stderr.getvalue()

    def test_stopping_before_the_name_is_resolved_gives_up(self) -> None:
        running = self.run_session(Deferred())
        self.assertEqual(self.shut_down(), [None])
        self.assertEqual(self.refused(running), "chat.test: gave up connecting to 127.0.0.1:4119\n")

    def test_stopping_while_the_tcp_connection_is_made_gives_up(self) -> None:
        def cancel(d: Deferred[str]) -> None:
            d.errback(ConnectingCancelledError(None))

        running = self.run_session(Deferred(cancel))
        self.shut_down()
        self.assertEqual(self.refused(running), "chat.test: gave up connecting to 127.0.0.1:4119\n")

    def test_a_failed_connection_says_why(self) -> None:
        connecting: Deferred[str] = Deferred()
        running = self.run_session(connecting)
        connecting.errback(Failure(ConnectionRefusedError()))
        self.assertEqual(
            self.refused(running),
            "chat.test: cannot connect to 127.0.0.1:4119: "
            "connection refused (is the server running, and on that port?)\n",
        )

    def test_options_that_cannot_be_used_are_their_own_message(self) -> None:
        connecting: Deferred[str] = Deferred()
        running = self.run_session(connecting)
        connecting.errback(Failure(SetupError("--cafile ca.pem holds no PEM certificate")))
        self.assertEqual(self.refused(running), "chat.test: --cafile ca.pem holds no PEM certificate\n")

    def test_the_session_starts_and_its_status_is_the_exit_status(self) -> None:
        connecting: Deferred[str] = Deferred()
        running = self.run_session(connecting)
        connecting.callback("the connection")
        [session] = self.sessions
        self.assertEqual((session.connection, session.started), ("the connection", True))
        self.assertNoResult(running)
        session.finished.callback(1)
        self.assertEqual(self.failureResultOf(running, SystemExit).value.code, 1)

    def test_status_0_is_a_plain_return(self) -> None:
        connecting: Deferred[str] = Deferred()
        running = self.run_session(connecting)
        connecting.callback("the connection")
        self.sessions[0].finished.callback(0)
        self.assertIsNone(self.successResultOf(running))

    def test_stopping_during_the_session_leaves_as_for_ctrl_c_and_waits(self) -> None:
        connecting: Deferred[str] = Deferred()
        running = self.run_session(connecting)
        connecting.callback("the connection")
        [session] = self.sessions
        self.assertEqual(self.shut_down(), [session.finished])
        self.assertEqual(session.interruptions, 1)
        session.finished.callback(0)
        self.assertIsNone(self.successResultOf(running))

    def test_stopping_after_the_session_finished_has_nothing_to_wait_for(self) -> None:
        connecting: Deferred[str] = Deferred()
        running = self.run_session(connecting)
        connecting.callback("the connection")
        [session] = self.sessions
        session.finished.callback(0)
        self.successResultOf(running)
        self.assertEqual(self.shut_down(), [None])
        self.assertEqual(session.interruptions, 0)
