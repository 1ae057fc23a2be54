"""
Presence: who is online, and who was online lately.

L{RegistryContract} is what every L{IRegistry} does, run here against the
single-process L{LocalRegistry}, and against a node of a cluster on a real
Redis (L{RedisCluster}) in L{tests.e2e.test_registry}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from chat.server.interfaces import AlreadyOnline, IParticipant, IRegistry
from chat.server.registry import LocalRegistry

if TYPE_CHECKING:
    _Case = unittest.TestCase
else:
    _Case = object


class Someone:
    """Stands in for a session; the registry only stores it."""


def someone() -> IParticipant:
    return cast(IParticipant, Someone())


class RegistryContract(_Case):
    """Tests every IRegistry must pass; mixed into a TestCase per backend."""

    async def make_registry(self, last_seen: Mapping[str, float] = {}) -> IRegistry:
        """A registry with nobody online, that has seen each user of C{last_seen} at that time."""
        raise NotImplementedError

    async def test_provides_the_interface(self) -> None:
        self.assertTrue(verifyObject(IRegistry, await self.make_registry()))

    async def test_a_name_can_be_online_once(self) -> None:
        registry = await self.make_registry()
        first = someone()
        await registry.add("columbia", first, 10)
        await self.assertFailure(registry.add("columbia", someone(), 11), AlreadyOnline)
        self.assertIs(registry.online["columbia"], first)
        self.assertIn("columbia", registry.present)

    async def test_remove_only_removes_the_session_that_is_online(self) -> None:
        registry = await self.make_registry()
        first = someone()
        await registry.add("columbia", first, 10)
        registry.remove("columbia", someone(), 11)
        self.assertIn("columbia", registry.online)
        registry.remove("columbia", first, 12)
        self.assertNotIn("columbia", registry.online)
        self.assertEqual(registry.last_seen("columbia"), 12)

    async def test_seen_since_lists_offline_users_seen_after_the_cutoff(self) -> None:
        registry = await self.make_registry({"old": 100.0, "recent": 500.0})
        columbia = someone()
        await registry.add("columbia", columbia, 600)
        await registry.add("seas", someone(), 700)
        registry.remove("columbia", columbia, 800)
        self.assertEqual(list(registry.seen_since(400)), ["columbia", "recent"])
        self.assertEqual(list(registry.seen_since(0)), ["columbia", "recent", "old"])
        self.assertEqual(list(registry.seen_since(900)), [])

    async def test_loaded_times_need_not_be_in_order(self) -> None:
        registry = await self.make_registry({"b": 300.0, "a": 100.0, "c": 200.0})
        self.assertEqual(list(registry.seen_since(150)), ["b", "c"])

    async def test_unknown_user_was_never_seen(self) -> None:
        self.assertIsNone((await self.make_registry()).last_seen("nobody"))


class LocalRegistryTests(RegistryContract, unittest.TestCase):
    async def make_registry(self, last_seen: Mapping[str, float] = {}) -> IRegistry:
        return LocalRegistry(last_seen)

    def test_add_is_settled_at_once(self) -> None:
        """One process has nobody to ask: C{add} has fired when it returns."""
        registry = LocalRegistry()
        self.successResultOf(registry.add("columbia", someone(), 10))
        self.failureResultOf(registry.add("columbia", someone(), 11), AlreadyOnline)
