"""Health (up or down, said once each way), Backoff, and the QuietLog that bounds repeated lines."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.trial import unittest

from chat.server.health import Backoff, Health
from chat.server.quietlog import QuietLog
from tests.unit.harness import capture_log


def lines(events: list[dict[str, Any]]) -> list[str]:
    return [formatEvent(e) for e in events]


class HealthTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(100)
        self.health = Health("Redis at tcp:db:6379", self.clock)
        self.log = capture_log(self, "chat.server.health")

    def test_it_starts_up(self) -> None:
        self.assertTrue(self.health.available)
        self.assertTrue(self.health.when_available().called)

    def test_going_down_is_said_once_however_often_it_is_noticed(self) -> None:
        for _ in range(1000):
            self.health.lost("connection refused")
        self.assertFalse(self.health.available)
        self.assertEqual(self.health.reason, "connection refused")
        self.assertEqual(lines(self.log), ["Redis at tcp:db:6379 is unavailable: connection refused"])
        self.assertEqual(self.log[0]["log_level"], LogLevel.warn)

    def test_coming_back_is_said_once_with_how_long_and_how_much_was_refused(self) -> None:
        self.health.lost("connection refused")
        self.clock.advance(12.5)
        for _ in range(7):
            self.health.refused()
        self.health.restored()
        self.health.restored()
        self.assertTrue(self.health.available)
        self.assertEqual(
            lines(self.log)[1:],
            ["Redis at tcp:db:6379 is back after 12.5 s; 7 operations were refused meanwhile"],
        )

    def test_waiters_are_told_when_it_is_back_and_a_cancelled_one_is_forgotten(self) -> None:
        self.health.lost("gone")
        first, second = self.health.when_available(), self.health.when_available()
        second.cancel()
        self.failureResultOf(second)
        self.assertNoResult(first)
        self.health.restored()
        self.assertIsNone(self.successResultOf(first))

    def test_watchers_see_every_change_and_one_that_fails_does_not_stop_the_others(self) -> None:
        seen: list[bool] = []

        def broken(up: bool) -> None:
            raise RuntimeError("watcher bug")

        self.health.watch(broken)
        self.health.watch(seen.append)
        self.health.lost("gone")
        self.health.restored()
        self.assertEqual(seen, [False, True])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)


class BackoffTests(unittest.TestCase):
    def test_delays_double_up_to_the_most_then_stay(self) -> None:
        backoff = Backoff(first=0.25, most=5.0, jitter=0)
        self.assertEqual([backoff.next() for _ in range(7)], [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0])
        backoff.reset()
        self.assertEqual(backoff.next(), 0.25)

    def test_jitter_spreads_each_delay_either_way(self) -> None:
        backoff = Backoff(first=1.0, most=1.0, jitter=0.2)
        self.assertAlmostEqual(backoff.next(lambda: 0.0), 0.8)
        self.assertAlmostEqual(backoff.next(lambda: 1.0), 1.2)

    def test_a_very_long_outage_does_not_overflow(self) -> None:
        backoff = Backoff(first=0.25, most=5.0, jitter=0)
        for _ in range(10_000):
            delay = backoff.next()
        self.assertEqual(delay, 5.0)


class QuietLogTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.logger = Logger(namespace="chat.test.quiet")
        self.log = capture_log(self, "chat.test.quiet")
        self.quiet = QuietLog(self.logger, self.clock)

    def test_the_first_of_a_kind_is_written_and_the_rest_counted_with_their_addresses(self) -> None:
        for i in range(1000):
            self.quiet.warn("failed logins", "failed login for {user}", f"10.0.0.{i % 3}", user=f"u{i}")
        self.assertEqual(lines(self.log), ["failed login for u0"])
        self.clock.advance(60)
        [first, summary] = self.log
        self.assertEqual(first["host"], "10.0.0.0")
        self.assertEqual(
            formatEvent(summary),
            "failed logins: 999 more in the last 60 s, "
            "most from 10.0.0.1 (333), 10.0.0.2 (333), 10.0.0.0 (333)",
        )
        self.assertEqual(summary["count"], 999)
        self.assertEqual(summary["log_level"], LogLevel.warn)

    def test_a_steady_flood_is_one_line_a_minute(self) -> None:
        for _ in range(10 * 60):
            self.quiet.warn("refused", "refused a command")
            self.clock.advance(1)
        # The first line, then one summary per minute (each counts the repeats).
        self.assertEqual(len(self.log), 1 + 10)

    def test_kinds_are_counted_apart(self) -> None:
        self.quiet.warn("a", "one a")
        self.quiet.warn("b", "one b")
        self.quiet.warn("a", "another a")
        self.assertEqual(lines(self.log), ["one a", "one b"])
        self.clock.advance(60)
        self.assertEqual(lines(self.log)[2:], ["a: 1 more in the last 60 s"])

    def test_quiet_again_means_no_timer_and_the_next_line_is_written(self) -> None:
        self.quiet.warn("a", "first")
        self.clock.advance(60)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.quiet.warn("a", "second, much later")
        self.assertEqual(lines(self.log), ["first", "second, much later"])

    def test_addresses_are_bounded(self) -> None:
        for i in range(5000):
            self.quiet.warn("a", "line", f"host{i}")
        tally = self.quiet._tallies["a"]
        self.assertLessEqual(len(tally.hosts), 1000)
        self.assertEqual(tally.count, 4999)

    def test_a_failure_is_written_with_its_traceback_once_then_counted(self) -> None:
        for _ in range(5):
            self.quiet.failure("writes", "a write failed", Failure(ValueError("bad")))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.clock.advance(60)
        self.assertEqual(lines(self.log)[-1], "writes: 4 more in the last 60 s")
