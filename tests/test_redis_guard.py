"""
The login guard of a cluster (L{RedisLoginGuard}) against a real
redis-server: failed logins counted across nodes, blocks passed to every
node, and nothing in Redis that a user typed.

Each node is wired as C{tap._cluster} wires one: its guard on the node's
link, the blocks published by any node reaching it through the node's
subscriber (C{RedisCluster(on_guard=guard.remote)}).  The nodes share one
L{Clock}, so they agree on when a block ends.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.trial import unittest

from chat.server.backends import rediskeys as keys
from chat.server.backends.redisguard import RedisLoginGuard
from chat.server.backends.redislink import RedisLink
from tests.redis_support import RedisServer, redis_server
from tests.test_cluster import START, Node, start_node, until

MAX_ATTEMPTS = 3
BLOCK_TIME = 60.0

#: Someone typed their password at the username prompt, from this address.
USER = "correct-horse-battery"
HOST = "203.0.113.9"


class RedisLoginGuardTests(unittest.TestCase):
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
        self.assertEqual(len([n for n in names if n.startswith(keys.FAILURES)]), 1)
        blocked = self.server.command("ZRANGE", keys.BLOCKS, "0", "-1").split()
        self.assertEqual(len(blocked), 1)
        for text in [*names, *blocked]:
            for secret in (USER, HOST, other, "correct", "203.0", "198.51"):
                self.assertNotIn(secret, text)

    async def test_the_nodes_agree_on_the_digest_key(self) -> None:
        """Made by the first node, read by the others: the same user and address are one key everywhere."""
        await self.a.failed(USER, HOST)
        await self.b.failed(USER, HOST)
        self.assertEqual(len(self.server.command("KEYS", keys.FAILURES + "*").split()), 1)
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
