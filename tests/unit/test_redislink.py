"""
The node's connections to Redis (L{chat.server.backends.redis.link}).

First the protocol over a L{StringTransport}, on a L{Clock}: replies
matched to commands in order, errors, the reply timeout, pings, pub/sub,
scripts, hooks.  Then a L{LinkGroup} against endpoints that fail at will:
one warning when Redis goes, one line when it is back, one timer between
attempts, the connections back together.  The same against a real
redis-server: L{tests.e2e.test_redislink}.
"""

from __future__ import annotations

import gc
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from chat.server.backends.redis.link import (
    PING_INTERVAL,
    REPLY_TIMEOUT,
    LinkGroup,
    RedisError,
    RedisLink,
    Subscriber,
    Unavailable,
)
from chat.server.backends.redis.resp import encode

# The global reactor, typed loosely: it provides every interface used here.
reactor: Any = _reactor


class FakeTransport(StringTransport):
    """
    What the link writes, kept; closing it tells the protocol on the next
    turn of the clock, as a reactor would.
    """

    def __init__(self, clock: Clock, protocol: IProtocol) -> None:
        super().__init__()
        self.clock = clock
        self.protocol = protocol
        self.closed = False

    def loseConnection(self) -> None:
        super().loseConnection()
        self._close(ConnectionDone())

    def abortConnection(self) -> None:
        super().abortConnection()
        self._close(ConnectionLost())

    def _close(self, reason: Exception) -> None:
        if not self.closed:
            self.closed = True
            self.clock.callLater(0, self.protocol.connectionLost, Failure(reason))

    def cut(self) -> None:
        """Redis went away: the connection is lost now."""
        if not self.closed:
            self.closed = True
            self.protocol.connectionLost(Failure(ConnectionLost()))


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """
    Redis as the link sees it: each connection attempt is counted, and
    refused unless C{allow} says how many more go through.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.attempts = 0
        #: How many more attempts connect (None: all of them).
        self.allow: int | None = None
        self.connections: list[Any] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        self.attempts += 1
        if self.allow is not None:
            if self.allow <= 0:
                return fail(ConnectionRefusedError("Redis is not there"))
            self.allow -= 1
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 6379))
        assert protocol is not None
        protocol.makeConnection(FakeTransport(self.clock, protocol))
        self.connections.append(protocol)
        return succeed(protocol)


def transport(conn: Any) -> FakeTransport:
    t: FakeTransport = conn.transport
    return t


def sent(conn: Any) -> bytes:
    """What the link wrote on C{conn} since last asked."""
    t = transport(conn)
    data = t.value()
    t.clear()
    return bytes(data)


@implementer(ILogObserver)
class Lines:
    """Every line logged while a test runs, in the namespaces given."""

    def __init__(self, case: unittest.TestCase, *namespaces: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.namespaces = namespaces
        globalLogPublisher.addObserver(self)
        case.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_namespace") in self.namespaces:
            self.events.append(event)

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]


HEALTH = "chat.server.health"
#: Redis's answer to a handshake with a wrong password: to AUTH, and to the PING after it.
REFUSED = b"-WRONGPASS invalid username-password pair\r\n-NOAUTH Authentication required.\r\n"
LINK = "chat.server.backends.redis.link"


class LinkTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.endpoint = FakeEndpoint(self.clock)

    def make_link(self, **kwargs: Any) -> RedisLink:
        kwargs.setdefault("description", "test redis")
        return RedisLink(self.endpoint, self.clock, **kwargs)

    def connect(self, link: RedisLink) -> Any:
        """Start C{link} and answer its handshake (a PING): its connection."""
        started = link.start()
        conn = self.endpoint.connections[-1]
        self.assertEqual(sent(conn), encode("PING"))
        conn.dataReceived(b"+PONG\r\n")
        self.successResultOf(started)
        return conn


class ProtocolTests(LinkTestCase):
    def test_the_handshake_goes_at_once_and_the_link_is_connected_once_it_is_answered(self) -> None:
        link = self.make_link(password="s3cret", db=2)
        script = link.script("return 1")
        started = link.start()
        [conn] = self.endpoint.connections
        self.assertEqual(
            sent(conn),
            encode("AUTH", "s3cret")
            + encode("SELECT", 2)
            + encode("SCRIPT", "LOAD", "return 1")
            + encode("PING"),
        )
        self.assertFalse(link.connected)
        self.failureResultOf(link.execute("GET", "k"), Unavailable)
        conn.dataReceived(b"+OK\r\n+OK\r\n$40\r\n" + script.sha.encode() + b"\r")
        self.assertNoResult(started)
        conn.dataReceived(b"\n+PONG\r\n")
        self.assertIsNone(self.successResultOf(started))
        self.assertTrue(link.connected)

    def test_replies_are_matched_to_commands_in_the_order_sent(self) -> None:
        link = self.make_link()
        conn = self.connect(link)
        first, second, third = link.execute("GET", "a"), link.execute("GET", "b"), link.execute("INCR", "n")
        self.assertEqual(sent(conn), encode("GET", "a") + encode("GET", "b") + encode("INCR", "n"))
        conn.dataReceived(b"$1\r\nA\r\n$-1\r\n:")
        self.assertEqual(self.successResultOf(first), "A")
        self.assertIsNone(self.successResultOf(second))
        self.assertNoResult(third)
        conn.dataReceived(b"7\r\n")
        self.assertEqual(self.successResultOf(third), 7)

    def test_an_error_reply_fails_its_command_only(self) -> None:
        link = self.make_link()
        conn = self.connect(link)
        before, wrong, after = (
            link.execute("GET", "a"),
            link.execute("LPUSH", "a", "x"),
            link.execute("GET", "a"),
        )
        conn.dataReceived(b"$1\r\nA\r\n-WRONGTYPE Operation against a key\r\n$1\r\nA\r\n")
        self.assertEqual(self.successResultOf(before), "A")
        failure = self.failureResultOf(wrong, RedisError)
        self.assertEqual(str(failure.value), "WRONGTYPE Operation against a key")
        self.assertEqual(self.successResultOf(after), "A")
        self.assertTrue(link.connected)

    def test_without_a_connection_a_command_fails_at_once(self) -> None:
        link = self.make_link()
        self.failureResultOf(link.execute("PING"), Unavailable)
        conn = self.connect(link)
        transport(conn).cut()
        self.failureResultOf(link.execute("PING"), Unavailable)
        self.assertEqual(sent(conn), b"")

    def test_a_lost_connection_fails_what_waited_and_the_link_is_disconnected_by_then(self) -> None:
        link = self.make_link()
        conn = self.connect(link)
        seen: list[bool] = []

        def look(f: Failure) -> Failure:
            seen.append(link.connected)
            return f

        waiting = [link.execute("GET", str(i)) for i in range(3)]
        for d in waiting:
            d.addErrback(look)
        transport(conn).cut()
        for d in waiting:
            self.assertIn("the connection was lost", str(self.failureResultOf(d, Unavailable).value))
        self.assertEqual(seen, [False, False, False])

    def test_a_reply_that_does_not_come_in_time_aborts_the_connection(self) -> None:
        link = self.make_link()
        conn = self.connect(link)
        d = link.execute("GET", "a")
        self.clock.advance(REPLY_TIMEOUT - 0.5)
        self.assertFalse(transport(conn).disconnected)
        self.clock.advance(0.5)
        self.assertTrue(transport(conn).disconnected)
        self.clock.advance(0)
        failure = self.failureResultOf(d, Unavailable)
        self.assertIn(f"no reply in {REPLY_TIMEOUT:g} s", str(failure.value))
        self.assertFalse(link.connected)

    def test_the_timeout_counts_from_the_oldest_command_still_unanswered(self) -> None:
        link = self.make_link()
        conn = self.connect(link)
        first = link.execute("GET", "a")
        self.clock.advance(6)
        second = link.execute("GET", "b")
        self.clock.advance(2)
        conn.dataReceived(b"$1\r\nA\r\n")
        self.successResultOf(first)
        self.clock.advance(2)  # 10 s after the first, 4 s after the second: in time
        self.assertFalse(transport(conn).disconnected)
        self.clock.advance(5.9)
        self.assertFalse(transport(conn).disconnected)
        self.clock.advance(0.1)
        self.assertTrue(transport(conn).disconnected)
        self.clock.advance(0)
        self.failureResultOf(second, Unavailable)

    def test_a_connection_answering_in_time_is_never_dropped(self) -> None:
        link = self.make_link()
        conn = self.connect(link)
        for _ in range(100):
            d = link.execute("PING")
            self.clock.advance(REPLY_TIMEOUT * 0.9)
            conn.dataReceived(b"+PONG\r\n")
            self.successResultOf(d)
        self.assertTrue(link.connected)

    def test_an_idle_connection_is_pinged_and_a_silent_one_dropped(self) -> None:
        link = self.make_link()
        conn = self.connect(link)
        self.clock.advance(PING_INTERVAL)
        self.assertEqual(sent(conn), encode("PING"))
        conn.dataReceived(b"+PONG\r\n")
        # Busy: the commands waiting serve as the probe.
        link.execute("GET", "a")
        sent(conn)
        self.clock.advance(PING_INTERVAL)
        self.assertEqual(sent(conn), b"")
        conn.dataReceived(b"$-1\r\n")
        self.clock.advance(PING_INTERVAL)
        self.assertEqual(sent(conn), encode("PING"))
        # No answer: dropped within the reply timeout.
        self.clock.advance(REPLY_TIMEOUT)
        self.assertTrue(transport(conn).disconnected)

    def test_a_reply_to_no_command_or_garbage_drops_the_connection(self) -> None:
        for garbage in (b"+OK\r\n", b"HTTP/1.1 400 Bad Request\r\n"):
            link = self.make_link()
            conn = self.connect(link)
            conn.dataReceived(garbage)
            self.assertTrue(transport(conn).disconnected, garbage)
            self.clock.advance(0)
            self.assertFalse(link.connected)
            link.stop()

    def test_a_handshake_not_answered_fails_the_start(self) -> None:
        link = self.make_link()
        started = link.start()
        self.clock.advance(REPLY_TIMEOUT)
        self.clock.advance(0)
        self.failureResultOf(started, Unavailable)
        self.assertFalse(link.connected)
        self.assertEqual(self.clock.getDelayedCalls(), [], "not tried again: it never worked")

    def test_a_first_attempt_that_cannot_connect_fails_the_start_and_is_not_retried(self) -> None:
        self.endpoint.allow = 0
        link = self.make_link()
        self.failureResultOf(link.start(), ConnectionRefusedError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.endpoint.attempts, 1)

    def test_scripts_are_loaded_on_every_connection_and_run_by_sha(self) -> None:
        link = self.make_link()
        script = link.script("return ARGV[1]")
        started = link.start()
        conn = self.endpoint.connections[-1]
        self.assertEqual(sent(conn), encode("SCRIPT", "LOAD", "return ARGV[1]") + encode("PING"))
        conn.dataReceived(b"$40\r\n" + script.sha.encode() + b"\r\n+PONG\r\n")
        self.successResultOf(started)
        d = script(["k"], ["v", 1.5])
        self.assertEqual(sent(conn), encode("EVALSHA", script.sha, 1, "k", "v", 1.5))
        # Someone flushed the scripts: sent whole instead.
        conn.dataReceived(b"-NOSCRIPT No matching script.\r\n")
        self.assertEqual(sent(conn), encode("EVAL", "return ARGV[1]", 1, "k", "v", 1.5))
        conn.dataReceived(b"$1\r\nv\r\n")
        self.assertEqual(self.successResultOf(d), "v")
        # Another error is the script's own.
        d = script(["k"], ["v"])
        conn.dataReceived(b"-ERR user_script:1: oops\r\n")
        self.failureResultOf(d, RedisError)
        # A script made while connected is loaded at once.
        sent(conn)
        link.script("return 2")
        self.assertEqual(sent(conn), encode("SCRIPT", "LOAD", "return 2"))

    def test_hooks_run_in_order_each_after_the_last_is_done(self) -> None:
        link = self.make_link()
        ran: list[str] = []
        gate: Deferred[None] = Deferred()

        def first() -> Deferred[None]:
            ran.append("first")
            return gate

        def second() -> None:
            ran.append("second")

        link.on_connect(first)
        link.on_connect(second)
        started = link.start()
        conn = self.endpoint.connections[-1]
        conn.dataReceived(b"+PONG\r\n")
        self.assertEqual(ran, ["first"])
        self.assertTrue(link.connected, "the hooks need the connection")
        self.assertNoResult(started)
        gate.callback(None)
        self.assertEqual(ran, ["first", "second"])
        self.successResultOf(started)

    def test_stop_closes_the_connection_and_fires_once_it_is_closed(self) -> None:
        link = self.make_link()
        conn = self.connect(link)
        lost: list[bool] = []
        link.on_lost(lambda: lost.append(True))
        stopped = link.stop()
        again = link.stop()
        self.assertNoResult(stopped)
        self.clock.advance(0)
        self.successResultOf(stopped)
        self.successResultOf(again)
        self.assertFalse(link.connected)
        self.assertTrue(transport(conn).disconnecting)
        self.assertEqual(lost, [True])
        self.assertEqual(self.clock.getDelayedCalls(), [], "nothing left running, nothing tried again")


class SubscriberTests(LinkTestCase):
    def test_it_subscribes_after_connecting_and_hands_on_each_message(self) -> None:
        got: list[tuple[str, str]] = []
        subscriber = Subscriber(self.endpoint, self.clock, ["a", "b"], lambda c, m: got.append((c, m)))
        started = subscriber.start()
        conn = self.endpoint.connections[-1]
        self.assertEqual(sent(conn), encode("PING"))
        conn.dataReceived(b"+PONG\r\n")
        self.assertEqual(sent(conn), encode("SUBSCRIBE", "a", "b"))
        # Both confirmations and a message in one read.
        conn.dataReceived(
            b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
            b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
            b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$3\r\n123\r\n"
        )
        self.successResultOf(started)
        self.assertEqual(got, [("a", "123")])
        # A ping in pub/sub mode is answered with an array: still its reply.
        pong = subscriber.execute("PING")
        conn.dataReceived(b"*3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$2\r\nhi\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n")
        self.assertEqual(self.successResultOf(pong), ["pong", ""])
        self.assertEqual(got, [("a", "123"), ("b", "hi")])

    def test_a_read_is_announced_before_its_replies_and_messages_are_handled(self) -> None:
        """What they make the server write to its clients then gathers until the turn ends."""
        seen: list[str] = []
        subscriber = Subscriber(self.endpoint, self.clock, ["a"], lambda c, m: seen.append("message " + m))
        link = self.make_link()
        for each in (subscriber, link):
            each.on_read = lambda: seen.append("read")
        subscriber.start()
        self.endpoint.connections[-1].dataReceived(b"+PONG\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
        conn = self.endpoint.connections[-1]
        seen.clear()
        conn.dataReceived(b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n")
        self.assertEqual(seen, ["read", "message hi"])
        conn = self.connect(link)
        seen.clear()
        link.execute("GET", "a").addCallback(lambda value: seen.append(f"reply {value}"))
        conn.dataReceived(b"$1\r\nA\r\n")
        self.assertEqual(seen, ["read", "reply A"])

    def test_a_receiver_that_fails_does_not_stop_the_messages(self) -> None:
        got: list[str] = []

        def receiver(channel: str, message: str) -> None:
            got.append(message)
            if message == "bad":
                raise ValueError(message)

        subscriber = Subscriber(self.endpoint, self.clock, ["a"], receiver)
        subscriber.start()
        conn = self.endpoint.connections[-1]
        conn.dataReceived(b"+PONG\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
        conn.dataReceived(
            b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$3\r\nbad\r\n*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nok\r\n"
        )
        self.assertEqual(got, ["bad", "ok"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertTrue(subscriber.connected)


class GroupTests(LinkTestCase):
    """Three links in one group, as a node has: the store's, the cluster's, pub/sub."""

    def setUp(self) -> None:
        super().setUp()
        # No jitter: the delays are exact.
        self.group = LinkGroup("Redis at test", self.clock, random=lambda: 0.5)
        self.store = self.make_link(description="Redis at test", group=self.group)
        self.control = self.make_link(description="Redis at test (cluster)", group=self.group)
        self.subscriber = Subscriber(
            self.endpoint, self.clock, ["c"], description="Redis at test (pub/sub)", group=self.group
        )
        self.links = [self.store, self.control, self.subscriber]
        self.lines = Lines(self, HEALTH, LINK)
        for link in self.links:
            started = link.start()
            self.answer(self.endpoint.connections[-1])
            self.successResultOf(started)

    def answer(self, conn: Any) -> None:
        """Answer the handshake on C{conn} (and the subscription, on pub/sub)."""
        sent(conn)
        conn.dataReceived(b"+PONG\r\n")
        if sent(conn) == encode("SUBSCRIBE", "c"):
            conn.dataReceived(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n")

    def redis_goes(self) -> None:
        self.endpoint.allow = 0
        for link in self.links:
            transport(link._conn).cut()

    def retry_after(self, delay: float) -> None:
        """Nothing happens until C{delay} has passed; then every link is tried."""
        before = self.endpoint.attempts
        self.clock.advance(delay - 0.001)
        self.assertEqual(self.endpoint.attempts, before)
        self.clock.advance(0.001)
        self.assertEqual(self.endpoint.attempts, before + 3)

    def test_an_outage_is_said_once_and_its_end_once(self) -> None:
        self.redis_goes()
        self.assertFalse(self.group.health.available)
        for delay in (0.25, 0.5, 1, 2, 4, 5, 5):
            self.retry_after(delay)
        self.endpoint.allow = None
        self.clock.advance(5)
        for conn in self.endpoint.connections[-3:]:
            self.answer(conn)
        self.assertTrue(self.group.health.available)
        self.assertTrue(all(link.connected for link in self.links))
        self.assertEqual(
            self.lines.lines(),
            [
                "Redis at test is unavailable: the connection was lost "
                "(Connection to the other side was lost in a non-clean fashion.)",
                "Redis at test is back after 22.8 s; 0 operations were refused meanwhile",
            ],
        )

    def test_while_down_only_the_next_attempt_is_scheduled_and_memory_stays_flat(self) -> None:
        self.redis_goes()

        def count() -> int:
            gc.collect()
            return sum(1 for o in gc.get_objects() if isinstance(o, (Deferred, Failure)))

        for _ in range(20):
            self.clock.advance(5)
        before, attempts = count(), self.endpoint.attempts
        for _ in range(1000):
            self.assertEqual(len(self.clock.getDelayedCalls()), 1)
            self.clock.advance(5)
        self.assertEqual(self.endpoint.attempts - attempts, 3 * 1000, "every link, every 5 s")
        self.assertLessEqual(count(), before + 10)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(len(self.lines.lines()), 1, self.lines.lines())

    def test_when_one_link_gets_through_the_others_try_again_at_once(self) -> None:
        self.redis_goes()
        self.retry_after(0.25)
        # Redis comes back during the next attempt: only the first link connects.
        self.endpoint.allow = 1
        self.retry_after(0.5)
        self.assertEqual(sum(link._attempt is not None for link in self.links), 1)
        self.endpoint.allow = None
        attempts = self.endpoint.attempts
        self.answer(self.endpoint.connections[-1])
        self.assertEqual(self.endpoint.attempts, attempts + 2, "the other two, without waiting")
        self.assertFalse(self.group.health.available, "not until all are back")
        for conn in self.endpoint.connections[-2:]:
            self.answer(conn)
        self.assertTrue(self.group.health.available)
        # The backoff starts again from the first delay.
        self.redis_goes()
        self.retry_after(0.25)

    def test_back_only_once_every_link_has_recovered(self) -> None:
        gate: Deferred[None] = Deferred()
        self.control.on_connect(lambda: gate)
        self.redis_goes()
        self.endpoint.allow = None
        self.clock.advance(0.25)
        for conn in self.endpoint.connections[-3:]:
            self.answer(conn)
        self.assertTrue(all(link.connected for link in self.links))
        self.assertFalse(self.group.health.available)
        gate.callback(None)
        self.assertTrue(self.group.health.available)

    def test_one_link_lost_alone_takes_the_group_down_until_it_is_back(self) -> None:
        transport(self.endpoint.connections[-1]).cut()  # the subscriber's
        self.assertFalse(self.group.health.available)
        self.assertTrue(self.store.connected, "the others stay connected")
        self.clock.advance(0.25)
        self.answer(self.endpoint.connections[-1])
        self.assertTrue(self.subscriber.connected)
        self.assertTrue(self.group.health.available)

    def test_a_refused_password_is_said_once_without_the_password_and_tried_again(self) -> None:
        link = self.make_link(password="hunter2-secret", description="Redis at test", group=self.group)
        started = link.start()
        conn = self.endpoint.connections[-1]
        conn.dataReceived(b"+OK\r\n+PONG\r\n")
        self.successResultOf(started)
        transport(conn).cut()
        for delay in (0.25, 0.5, 1.0):
            self.clock.advance(delay)
            conn = self.endpoint.connections[-1]
            self.assertEqual(sent(conn), encode("AUTH", "hunter2-secret") + encode("PING"))
            conn.dataReceived(REFUSED)
            self.clock.advance(0)
            self.assertTrue(transport(conn).disconnecting)
        refused = [line for line in self.lines.lines() if "refused" in line]
        self.assertEqual(
            refused, ["Redis at test refused the connection: WRONGPASS invalid username-password pair"]
        )
        self.assertFalse(any("hunter2" in line for line in self.lines.lines()))
        self.assertIsNotNone(self.group._retry, "and it is tried again")

    def test_a_refused_password_at_start_fails_the_start(self) -> None:
        link = self.make_link(password="hunter2-secret", group=self.group)
        started = link.start()
        conn = self.endpoint.connections[-1]
        conn.dataReceived(REFUSED)
        failure = self.failureResultOf(started, Unavailable)
        self.assertIn("refused the connection: WRONGPASS", str(failure.value))
        self.assertNotIn("hunter2", str(failure.value))
        self.clock.advance(0)
        self.assertTrue(transport(conn).disconnecting)
        self.assertIsNone(self.group._retry, "not tried again: a mistake in the configuration")

    def test_stopping_during_an_outage_leaves_nothing_scheduled(self) -> None:
        self.redis_goes()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        for link in self.links:
            self.successResultOf(link.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_link_without_a_group_has_one_of_its_own(self) -> None:
        alone = self.make_link(description="Redis elsewhere")
        self.assertIsNot(alone.group, self.group)
        self.assertEqual(alone.group.health.what, "Redis elsewhere")
        self.assertEqual(self.store.group.health.what, "Redis at test")


# --- against a real Redis -----------------------------------------------------------------
