"""
The registry contract (L{tests.unit.test_registry.RegistryContract})
against one node of a cluster on a real Redis.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.trial import unittest

from chat.server.backends.redis import keys as rediskeys
from chat.server.interfaces import IRegistry
from tests.e2e.redis_server import redis_server
from tests.e2e.test_cluster import start_node
from tests.unit.test_registry import RegistryContract, someone


class RedisClusterRegistryTests(RegistryContract, unittest.TestCase):
    """
    The contract against one node of a cluster, on a Redis of its own
    (never skipped: without redis-server these fail).  The times a
    registry has seen users come from Redis, where the nodes keep them.
    """

    timeout = 30

    async def make_registry(self, last_seen: Mapping[str, float] = {}) -> IRegistry:
        server = redis_server(self)
        for name, at in last_seen.items():
            server.command("HSET", rediskeys.LAST_SEEN, name, repr(at))
        return (await start_node(self, server, "a")).cluster

    async def test_add_waits_for_redis(self) -> None:
        """Unlike L{LocalRegistry}, a node asks Redis before a name is online."""
        registry = await self.make_registry()
        d = registry.add("columbia", someone(), 10)
        self.assertNoResult(d)
        self.assertNotIn("columbia", registry.online)
        await d
        self.assertIn("columbia", registry.online)
