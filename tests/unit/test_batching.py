"""Calls of one turn sent as one (L{chat.server.batching.TurnCalls}), on a task.Clock."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial import unittest

from chat.server.batching import TurnCalls
from chat.server.interfaces import Unavailable


class TurnCallsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.sent: list[list[str]] = []
        self.answers: list[Deferred[Any]] = []
        self.calls: TurnCalls[str] = TurnCalls(self.clock, self.send, most=3)

    def send(self, items: list[str]) -> Deferred[Any]:
        self.sent.append(items)
        self.answers.append(Deferred())
        return self.answers[-1]

    def test_the_calls_of_a_turn_go_as_one_at_its_end_and_each_caller_waits_for_its_answer(self) -> None:
        first, second = self.calls.add("a"), self.calls.add("b")
        self.assertEqual(self.sent, [])
        self.clock.advance(0)
        self.assertEqual(self.sent, [["a", "b"]])
        self.assertNoResult(first)
        self.answers[0].callback(["whatever the reply"])
        self.assertIsNone(self.successResultOf(first))
        self.assertIsNone(self.successResultOf(second))
        # The next turn's go on their own.
        self.calls.add("c")
        self.clock.advance(0)
        self.assertEqual(self.sent, [["a", "b"], ["c"]])

    def test_a_failure_fails_every_caller_of_that_call_only(self) -> None:
        first = self.calls.add("a")
        self.clock.advance(0)
        later = self.calls.add("b")
        self.clock.advance(0)
        self.answers[0].errback(Unavailable("Redis is unavailable"))
        self.failureResultOf(first, Unavailable)
        self.assertNoResult(later)
        self.answers[1].callback(None)
        self.successResultOf(later)

    def test_a_busy_turn_goes_in_several_calls_of_at_most_the_bound(self) -> None:
        waiting = [self.calls.add(str(i)) for i in range(7)]
        self.assertEqual(self.sent, [["0", "1", "2"], ["3", "4", "5"]])
        self.clock.advance(0)
        self.assertEqual(self.sent[2:], [["6"]])
        for answer in self.answers:
            answer.callback(None)
        for d in waiting:
            self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_sending_early_leaves_nothing_for_the_turns_end(self) -> None:
        self.calls.add("a")
        self.calls.send()
        self.clock.advance(0)
        self.assertEqual(self.sent, [["a"]])

    def test_a_send_that_raises_fails_its_callers(self) -> None:
        calls: TurnCalls[str] = TurnCalls(self.clock, lambda items: fail(ValueError("bad")))
        waiting = calls.add("a")
        self.clock.advance(0)
        self.failureResultOf(waiting, ValueError)

        def raises(items: list[str]) -> Deferred[None]:
            raise ValueError("raised")

        calls = TurnCalls(self.clock, raises)
        waiting = calls.add("a")
        self.clock.advance(0)
        self.failureResultOf(waiting, ValueError)
