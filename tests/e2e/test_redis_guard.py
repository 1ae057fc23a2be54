"""
The login guard of a cluster (L{RedisLoginGuard}) against a real
redis-server: password checks counted across nodes before they start,
blocks passed to every node and cleared out once they end, this node's own
count while Redis is away, and nothing in Redis that a user typed.

Each node is wired as C{tap._cluster} wires one: its guard on the node's
link, the blocks published by any node reaching it through the node's
subscriber (C{RedisCluster(on_guard=guard.remote)}).  The nodes share one
L{Clock}, so they agree on when a block ends.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial import unittest
from zope.interface import implementer

from chat.server.backends.redis import keys
from chat.server.backends.redis.guard import BEGIN_TIMEOUT, RedisLoginGuard
from chat.server.backends.redis.link import RedisLink
from tests.e2e.redis_server import RedisServer, redis_server
from tests.e2e.test_cluster import START, Node, start_node
from tests.expect import until

MAX_ATTEMPTS = 3
BLOCK_TIME = 60.0

#: Someone typed their password at the username prompt, from this address.
USER = "correct-horse-battery"
HOST = "203.0.113.9"


class TwoNodes(unittest.TestCase):
    """Nodes a and b, each with its guard, on one Redis and one Clock."""

    timeout = 60
    server: RedisServer
    clock: Clock
    nodes: dict[str, Node]
    a: RedisLoginGuard
    b: RedisLoginGuard

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self.start_nodes())

    async def start_nodes(self) -> None:
        self.server = redis_server(self)
        self.clock = Clock()
        self.clock.advance(START)
        self.nodes = {}
        self.a = await self.start_guard("a")
        self.b = await self.start_guard("b")

    async def start_guard(self, name: str) -> RedisLoginGuard:
        """The login guard of a new node C{name}."""

        def make_guard(link: RedisLink, clock: IReactorTime) -> RedisLoginGuard:
            return RedisLoginGuard(link, clock, MAX_ATTEMPTS, BLOCK_TIME)

        node = self.nodes[name] = await start_node(self, self.server, name, self.clock, make_guard)
        assert node.guard is not None
        return node.guard

    async def block(self) -> None:
        """Fail as USER from HOST on nodes a, b, a: the third failure blocks, on node a."""
        self.assertEqual(await self.a.failed(USER, HOST), 0)
        self.assertEqual(await self.b.failed(USER, HOST), 0)
        self.assertEqual(self.a.blocked_for(USER, HOST), 0)
        self.assertEqual(self.b.blocked_for(USER, HOST), 0)
        self.assertEqual(await self.a.failed(USER, HOST), BLOCK_TIME)


class RedisLoginGuardTests(TwoNodes):
    async def test_failures_on_two_nodes_add_up_to_a_block_on_both(self) -> None:
        await self.block()
        self.assertEqual(self.a.blocked_for(USER, HOST), BLOCK_TIME)
        await until(lambda: self.b.blocked_for(USER, HOST) > 0, "node b learns of the block")
        self.assertEqual(self.b.blocked_for(USER, HOST), BLOCK_TIME)

    async def test_a_block_holds_only_for_that_user_and_address(self) -> None:
        await self.block()
        await until(lambda: self.b.blocked_for(USER, HOST) > 0, "node b learns of the block")
        for guard in (self.a, self.b):
            self.assertEqual(guard.blocked_for(USER, "198.51.100.1"), 0)
            self.assertEqual(guard.blocked_for("seas", HOST), 0)
        self.assertEqual(await self.b.failed("seas", HOST), 0)
        self.assertEqual(await self.b.failed(USER, "198.51.100.1"), 0)

    async def test_a_block_ends_after_the_block_time(self) -> None:
        await self.block()
        await until(lambda: self.b.blocked_for(USER, HOST) > 0, "node b learns of the block")
        self.clock.advance(BLOCK_TIME - 1)
        self.assertEqual(self.a.blocked_for(USER, HOST), 1)
        self.assertEqual(self.b.blocked_for(USER, HOST), 1)
        self.clock.advance(1)
        self.assertEqual(self.a.blocked_for(USER, HOST), 0)
        self.assertEqual(self.b.blocked_for(USER, HOST), 0)

    async def test_a_node_starting_later_knows_the_blocks_in_force(self) -> None:
        await self.block()
        c = await self.start_guard("c")
        self.assertEqual(c.blocked_for(USER, HOST), BLOCK_TIME)
        self.assertEqual(c.blocked_for("seas", HOST), 0)

    async def test_a_success_clears_the_count_on_every_node(self) -> None:
        self.assertEqual(await self.a.failed(USER, HOST), 0)
        self.assertEqual(await self.b.failed(USER, HOST), 0)
        self.a.succeeded(USER, HOST)
        await self.nodes["a"].barrier()  # Redis has run node a's commands before it
        # Two more failures after the success: three in all, but not in a row.
        self.assertEqual(await self.b.failed(USER, HOST), 0)
        self.assertEqual(await self.a.failed(USER, HOST), 0)
        self.assertEqual(self.a.blocked_for(USER, HOST), 0)
        self.assertEqual(self.b.blocked_for(USER, HOST), 0)
        # The next one is the third in a row.
        self.assertEqual(await self.a.failed(USER, HOST), BLOCK_TIME)

    async def test_redis_holds_no_user_name_or_address(self) -> None:
        other = "198.51.100.7"
        self.assertEqual(await self.a.failed(USER, other), 0)  # counted, not blocked
        await self.block()
        names = self.server.command("KEYS", keys.PREFIX + "*").split()
        self.assertEqual(len([n for n in names if n.startswith(keys.ATTEMPTS)]), 1)
        blocked = self.server.command("ZRANGE", keys.BLOCKS, "0", "-1").split()
        self.assertEqual(len(blocked), 1)
        for text in [*names, *blocked]:
            for secret in (USER, HOST, other, "correct", "203.0", "198.51"):
                self.assertNotIn(secret, text)

    async def test_the_nodes_agree_on_the_digest_key(self) -> None:
        """Made by the first node, read by the others: the same user and address are one key everywhere."""
        await self.a.failed(USER, HOST)
        await self.b.failed(USER, HOST)
        self.assertEqual(len(self.server.command("KEYS", keys.ATTEMPTS + "*").split()), 1)
        self.assertEqual(len(self.server.command("GET", keys.GUARD_KEY)), 32)

    async def test_with_redis_stopped_failures_still_count_on_the_node(self) -> None:
        self.server.stop()
        # Sent before the node noticed: answered when the connection fails.
        self.assertEqual(await self.a.failed(USER, HOST), 0)
        await until(lambda: not self.nodes["a"].link.connected, "node a notices Redis is gone")
        second = self.a.failed(USER, HOST)
        self.assertEqual(self.successResultOf(second), 0)
        third = self.a.failed(USER, HOST)
        self.assertEqual(self.successResultOf(third), BLOCK_TIME)
        self.assertEqual(self.a.blocked_for(USER, HOST), BLOCK_TIME)
        self.assertEqual(self.b.blocked_for(USER, HOST), 0)


class ReservationTests(TwoNodes):
    """
    A check is counted in Redis before it starts: parallel guesses on
    several nodes get no more checks than serial ones on one.
    """

    async def begin_on_both(self, each: int) -> list[bool]:
        """C{each} parallel C{begin}s on each node, sent before any is answered, a and b in turn."""
        pending = []
        for _ in range(each):
            pending.append(self.a.begin(USER, HOST))
            pending.append(self.b.begin(USER, HOST))
        return list(await gatherResults(pending))

    async def test_parallel_checks_on_two_nodes_get_max_attempts_in_all(self) -> None:
        allowed = await self.begin_on_both(10)
        self.assertEqual(allowed.count(True), MAX_ATTEMPTS, allowed)
        # And no more while those are running, on either node.
        self.assertFalse(await self.a.begin(USER, HOST))
        self.assertFalse(await self.b.begin(USER, HOST))
        # Other users and addresses are not held up.
        self.assertTrue(await self.b.begin("seas", HOST))
        self.assertTrue(await self.a.begin(USER, "198.51.100.1"))

    async def test_the_checks_allowed_in_parallel_failing_block_on_both_nodes(self) -> None:
        allowed = await self.begin_on_both(10)
        guards = [self.a, self.b] * 10
        checking = [guard for guard, yes in zip(guards, allowed, strict=True) if yes]
        blocks = [await guard.failed(USER, HOST) for guard in checking]
        self.assertEqual(blocks, [0] * (MAX_ATTEMPTS - 1) + [BLOCK_TIME])
        await until(lambda: self.a.blocked_for(USER, HOST) > 0, "node a knows of the block")
        await until(lambda: self.b.blocked_for(USER, HOST) > 0, "node b knows of the block")
        self.assertFalse(await self.a.begin(USER, HOST))
        self.assertFalse(await self.b.begin(USER, HOST))

    async def test_a_failure_keeps_its_place_in_the_count(self) -> None:
        self.assertTrue(await self.a.begin(USER, HOST))
        self.assertTrue(await self.a.begin(USER, HOST))
        self.assertEqual(await self.a.failed(USER, HOST), 0)
        self.assertTrue(await self.b.begin(USER, HOST))
        # One failure and two checks running: the limit.
        self.assertFalse(await self.b.begin(USER, HOST))
        self.assertFalse(await self.a.begin(USER, HOST))

    async def test_a_success_gives_a_fresh_count_across_nodes(self) -> None:
        self.assertTrue(await self.a.begin(USER, HOST))
        self.assertTrue(await self.b.begin(USER, HOST))
        self.assertTrue(await self.a.begin(USER, HOST))
        self.assertFalse(await self.a.begin(USER, HOST))
        self.assertEqual(await self.b.failed(USER, HOST), 0)
        self.assertEqual(await self.a.failed(USER, HOST), 0)
        # The third check, on a, was the right password.
        self.a.succeeded(USER, HOST)
        await self.nodes["a"].barrier()
        # Three new checks, on either node (b's own count still has its failure).
        allowed = [await guard.begin(USER, HOST) for guard in (self.b, self.a, self.b, self.a)]
        self.assertEqual(allowed, [True, True, True, False])

    async def test_an_abandoned_check_gives_its_place_back(self) -> None:
        self.assertTrue(await self.a.begin(USER, HOST))
        self.assertTrue(await self.a.begin(USER, HOST))
        self.assertTrue(await self.b.begin(USER, HOST))
        self.assertFalse(await self.b.begin(USER, HOST))
        self.a.abandoned(USER, HOST)
        await self.nodes["a"].barrier()
        self.assertTrue(await self.b.begin(USER, HOST))
        self.assertFalse(await self.a.begin(USER, HOST))

    async def test_reservations_expire_with_the_block_time(self) -> None:
        """A node that died while checking does not hold its places for ever."""
        for _ in range(MAX_ATTEMPTS):
            self.assertTrue(await self.a.begin(USER, HOST))
        (attempts,) = self.server.command("KEYS", keys.ATTEMPTS + "*").split()
        ttl = int(self.server.command("PTTL", attempts))
        self.assertTrue(BLOCK_TIME * 1000 - 5000 < ttl <= BLOCK_TIME * 1000, ttl)

    async def test_a_block_in_redis_refuses_a_check_on_a_node_that_missed_it(self) -> None:
        """Pub/sub may lose the block: Redis itself refuses the check, and the node learns of it."""
        c = await self.start_guard("c")
        self.nodes["c"].subscriber.receiver = None  # hears nothing from now on
        await self.block()
        self.assertEqual(c.blocked_for(USER, HOST), 0)
        self.assertFalse(await c.begin(USER, HOST))
        self.assertEqual(c.blocked_for(USER, HOST), BLOCK_TIME)


class OutageTests(TwoNodes):
    said: list[dict[str, Any]]

    async def start_nodes(self) -> None:
        await super().start_nodes()
        self.said = []

        @implementer(ILogObserver)
        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "chat.server.backends.redis.guard":
                self.said.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    async def test_with_redis_stopped_begin_answers_from_the_nodes_own_count_in_one_line(self) -> None:
        self.server.stop()
        # Sent before the node noticed: answered when the connection fails.
        self.assertTrue(await self.a.begin(USER, HOST))
        await until(lambda: not self.nodes["a"].link.connected, "node a notices Redis is gone")
        # Answered at once now, from this node's count: three checks, then no more.
        answers = [self.successResultOf(self.a.begin(USER, HOST)) for _ in range(3)]
        self.assertEqual(answers, [True, True, False])
        self.assertEqual(self.successResultOf(self.a.failed(USER, HOST)), 0)
        self.assertEqual(self.successResultOf(self.a.failed(USER, HOST)), 0)
        self.assertEqual(self.successResultOf(self.a.failed(USER, HOST)), BLOCK_TIME)
        lines = [formatEvent(e) for e in self.said]
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(self.said[0]["host"], HOST)
        self.assertNotIn(USER, lines[0])
        # A minute on, one line counts the rest.
        self.clock.advance(60)
        lines = [formatEvent(e) for e in self.said]
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("5 more in the last 60 s", lines[1])

    async def test_with_redis_stalled_begin_waits_no_longer_than_its_timeout(self) -> None:
        """And the place Redis reserves once it runs again is given back: the check went ahead without it."""
        process = self.server.process
        assert process is not None
        os.kill(process.pid, signal.SIGSTOP)
        try:
            allowed = self.a.begin(USER, HOST)
            self.assertNoResult(allowed)
            self.clock.advance(BEGIN_TIMEOUT)
            self.assertTrue(self.successResultOf(allowed))
        finally:
            os.kill(process.pid, signal.SIGCONT)
        # Redis answers late; the place is given back after that answer.
        await self.nodes["a"].barrier()
        await self.nodes["a"].barrier()
        self.assertEqual(self.server.command("KEYS", keys.ATTEMPTS + "*"), "")
        self.assertEqual(len(self.said), 1, [formatEvent(e) for e in self.said])
        self.assertIn(f"did not answer in {BEGIN_TIMEOUT:g} s", formatEvent(self.said[0]))
        # The check fails: counted in Redis as one that held no place.
        self.assertEqual(await self.a.failed(USER, HOST), 0)
        (attempts,) = self.server.command("KEYS", keys.ATTEMPTS + "*").split()
        self.assertEqual(self.server.command("HMGET", attempts, "n", "f").split(), ["1", "1"])

    async def test_while_the_nodes_connections_recover_begin_does_not_wait(self) -> None:
        """Health down (another of the node's connections is away): this node's count alone."""
        self.nodes["a"].link.group.health.lost("the pub/sub connection was lost")
        self.assertEqual(
            [self.successResultOf(self.a.begin(USER, HOST)) for _ in range(4)], [True] * 3 + [False]
        )
        self.assertEqual(len(self.said), 1)
        # Nothing was counted in Redis: node b still has every place.
        self.assertEqual([await self.b.begin(USER, HOST) for _ in range(4)], [True] * 3 + [False])


class PruneTests(TwoNodes):
    """An attack that ended leaves nothing behind, in Redis or in a node's memory."""

    def blocks_in_redis(self) -> list[str]:
        return self.server.command("ZRANGE", keys.BLOCKS, "0", "-1").split()

    async def test_ended_blocks_leave_redis_and_memory(self) -> None:
        await self.block()
        # And an attack on many users from many addresses, a second later.
        self.clock.advance(1)
        for i in range(20):
            for _ in range(MAX_ATTEMPTS):
                await self.b.failed(f"user{i}", f"198.51.100.{i}")
        await until(lambda: self.a.remembered_blocks == 21, "node a learns of every block")
        self.assertEqual(len(self.blocks_in_redis()), 21)
        # The first block has ended; the others have a second to go.  Node
        # a, which has looked every block time since it set the first, has
        # cleared it out.
        self.clock.advance(BLOCK_TIME - 1)
        await self.nodes["a"].barrier()
        self.assertEqual(len(self.blocks_in_redis()), 20)
        self.assertEqual(self.a.remembered_blocks, 20)
        # One block time on, every node has cleared them all out.
        self.clock.advance(BLOCK_TIME)
        await self.nodes["a"].barrier()
        await self.nodes["b"].barrier()
        self.assertEqual(self.blocks_in_redis(), [])
        self.assertEqual((self.a.remembered_blocks, self.b.remembered_blocks), (0, 0))

    async def test_a_new_block_clears_the_ended_ones(self) -> None:
        """Ended blocks that no running node remembers (their nodes died) go with the next block."""
        self.server.command("ZADD", keys.BLOCKS, str(START - 1), "f" * 32)
        self.server.command("ZADD", keys.BLOCKS, str(START + BLOCK_TIME + 1), "e" * 32)
        await self.block()
        blocked = self.blocks_in_redis()
        self.assertEqual(len(blocked), 2, blocked)
        self.assertNotIn("f" * 32, blocked)
        self.assertIn("e" * 32, blocked)
