"""Presence: who is online, and who was online lately."""

from __future__ import annotations

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from chat.server.backends.memory import LocalRegistry
from chat.server.interfaces import AlreadyOnline, IRegistry


class Someone:
    """Stands in for a session; the registry only stores it."""


class LocalRegistryTests(unittest.TestCase):
    def test_provides_the_interface(self) -> None:
        self.assertTrue(verifyObject(IRegistry, LocalRegistry()))

    def test_a_name_can_be_online_once(self) -> None:
        registry = LocalRegistry()
        first = Someone()
        self.successResultOf(registry.add("columbia", first, 10))  # type: ignore[arg-type]
        self.failureResultOf(registry.add("columbia", Someone(), 11), AlreadyOnline)  # type: ignore[arg-type]
        self.assertIs(registry.online["columbia"], first)
        self.assertIn("columbia", registry.present)

    def test_remove_only_removes_the_session_that_is_online(self) -> None:
        registry = LocalRegistry()
        first = Someone()
        registry.add("columbia", first, 10)  # type: ignore[arg-type]
        registry.remove("columbia", Someone(), 11)  # type: ignore[arg-type]
        self.assertIn("columbia", registry.online)
        registry.remove("columbia", first, 12)  # type: ignore[arg-type]
        self.assertNotIn("columbia", registry.online)
        self.assertEqual(registry.last_seen("columbia"), 12)

    def test_seen_since_lists_offline_users_seen_after_the_cutoff(self) -> None:
        registry = LocalRegistry({"old": 100.0, "recent": 500.0})
        someone = Someone()
        registry.add("columbia", someone, 600)  # type: ignore[arg-type]
        registry.add("seas", Someone(), 700)  # type: ignore[arg-type]
        registry.remove("columbia", someone, 800)  # type: ignore[arg-type]
        self.assertEqual(list(registry.seen_since(400)), ["columbia", "recent"])
        self.assertEqual(list(registry.seen_since(0)), ["columbia", "recent", "old"])
        self.assertEqual(list(registry.seen_since(900)), [])

    def test_loaded_times_need_not_be_in_order(self) -> None:
        registry = LocalRegistry({"b": 300.0, "a": 100.0, "c": 200.0})
        self.assertEqual(list(registry.seen_since(150)), ["b", "c"])

    def test_unknown_user_was_never_seen(self) -> None:
        self.assertIsNone(LocalRegistry().last_seen("nobody"))
