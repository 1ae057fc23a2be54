"""
The node's connections to a real redis-server
(L{chat.server.backends.redis.link}): stopped, paused (C{SIGSTOP}) and given
a wrong password.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import deferLater
from twisted.trial import unittest
from zope.interface import implementer

from chat.server.backends.redis.link import (
    SEND_LIMIT,
    LinkGroup,
    RedisLink,
    Subscriber,
    Unavailable,
)
from tests.e2e.redis_server import RedisServer, redis_server
from tests.expect import until
from tests.unit.test_redislink import HEALTH, LINK, Lines

# The global reactor, typed loosely: it provides every interface used here.
reactor: Any = _reactor


@implementer(IStreamClientEndpoint)
class Counting:
    """An endpoint that counts the connection attempts made through it."""

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self.endpoint = endpoint
        self.attempts = 0

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        self.attempts += 1
        return self.endpoint.connect(factory)


async def run_for(seconds: float) -> None:
    """Let the reactor run (a real Redis is being waited out, not a clock)."""
    await deferLater(reactor, seconds, lambda: None)


class RealRedisTests(unittest.TestCase):
    timeout = 60
    server: RedisServer

    def setUp(self) -> None:
        self.server = redis_server(self)

    def resume(self) -> None:
        if self.server.process is not None and self.server.process.poll() is None:
            os.kill(self.server.process.pid, signal.SIGCONT)

    async def test_a_group_of_three_goes_and_comes_back_together_with_one_line_each_way(self) -> None:
        lines = Lines(self, HEALTH, LINK)
        endpoint = Counting(clientFromString(reactor, self.server.endpoint))
        group = LinkGroup(f"Redis at {self.server.endpoint}", reactor)
        back: dict[str, float] = {}
        links = [
            RedisLink(endpoint, reactor, description="store", group=group),
            RedisLink(endpoint, reactor, description="cluster", group=group),
            Subscriber(endpoint, reactor, ["c"], description="pub/sub", group=group),
        ]

        def stamp(link: RedisLink) -> Callable[[], None]:
            def connected() -> None:
                back[link.description] = time.monotonic()

            return connected

        for link in links:
            link.on_connect(stamp(link))
            self.addCleanup(link.stop)
            await link.start()
        self.assertEqual(endpoint.attempts, 3)
        self.assertEqual(lines.lines(), [])

        self.server.stop()
        await until(lambda: not any(link.connected for link in links), "every link notices")
        self.assertFalse(group.health.available)
        await run_for(4.0)
        # Backoff: 0.25, 0.5, 1, 2 s (each +-20%): at most 5 rounds of 3 in 4 s.
        tried = endpoint.attempts - 3
        self.assertGreaterEqual(tried, 6, "it keeps trying")
        self.assertLessEqual(tried, 15, "with backoff")
        back.clear()
        self.server.start()
        await until(lambda: group.health.available, "the group is back", timeout=15)
        self.assertTrue(all(link.connected for link in links))
        self.assertEqual(sorted(back), ["cluster", "pub/sub", "store"])
        self.assertLess(max(back.values()) - min(back.values()), 1.0, back)
        said = lines.lines()
        self.assertEqual(len(said), 2, said)
        self.assertIn(f"Redis at {self.server.endpoint} is unavailable: ", said[0])
        self.assertRegex(said[1], rf"^Redis at {self.server.endpoint} is back after \d+\.\d s; ")
        self.assertEqual(await links[0].execute("PING"), "PONG")

    async def test_a_paused_redis_fails_what_waits_after_the_reply_timeout(self) -> None:
        link = RedisLink(
            clientFromString(reactor, self.server.endpoint), reactor, description="paused", reply_timeout=1.0
        )
        self.addCleanup(link.stop)
        await link.start()
        assert self.server.process is not None
        os.kill(self.server.process.pid, signal.SIGSTOP)
        self.addCleanup(self.resume)
        started = time.monotonic()
        failure = await self.assertFailure(link.execute("SET", "k", "v"), Unavailable)
        waited = time.monotonic() - started
        self.assertIn("no reply in 1 s", str(failure))
        self.assertGreaterEqual(waited, 0.9)
        self.assertLess(waited, 3.0)
        self.assertFalse(link.connected)
        self.assertFalse(link.group.health.available)
        self.resume()
        await until(lambda: link.group.health.available, "the link is back once Redis runs again")
        self.assertEqual(await link.execute("PING"), "PONG")

    async def test_a_wrong_password_fails_start_without_saying_it(self) -> None:
        lines = Lines(self, HEALTH, LINK)
        self.server.command("CONFIG", "SET", "requirepass", "right horse")
        endpoint = clientFromString(reactor, self.server.endpoint)
        wrong = RedisLink(endpoint, reactor, password="wrong staple", description="Redis here")
        self.addCleanup(wrong.stop)
        started: Deferred[Any] = wrong.start()
        failure = await self.assertFailure(started, Unavailable)
        self.assertIn("Redis here refused the connection: WRONGPASS", str(failure))
        self.assertNotIn("staple", str(failure))
        self.assertFalse(any("staple" in line for line in lines.lines()))
        right = RedisLink(endpoint, reactor, password="right horse", db=3, description="Redis here")
        self.addCleanup(right.stop)
        await right.start()
        await right.execute("SET", "k", "in db 3")
        self.assertEqual(await right.execute("GET", "k"), "in db 3")

    async def test_a_connection_may_send_megabytes_at_once(self) -> None:
        link = RedisLink(clientFromString(reactor, self.server.endpoint), reactor, description="big")
        self.addCleanup(link.stop)
        await link.start()
        conn: Any = link._conn
        self.assertEqual(conn.transport.SEND_LIMIT, SEND_LIMIT)
        value = "x" * (8 * 1024 * 1024)
        await link.execute("SET", "big", value)
        self.assertEqual(await link.execute("GET", "big"), value)
        self.assertEqual(await link.execute("STRLEN", "big"), len(value))
