"""
The store: the same behaviour from every backend, and durability from SQLite.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from chat.server.backends.memory import MemoryStore
from chat.server.backends.sqlite import SQLiteStore
from chat.server.events import Delivery, Kind
from chat.server.interfaces import IStore, StoreError

# The global reactor, typed loosely: it provides every interface used here.
reactor: Any = _reactor


def hello(sender: str = "columbia", text: str = "hello", at: float = 1000.0) -> Delivery:
    return Delivery(sender, text, Kind.PRIVATE, at)


class StoreContract:
    """Tests every IStore must pass; mixed into a TestCase per backend."""

    store: Any

    def make_store(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()

    def test_provides_the_interface(self) -> None:
        self.assertTrue(verifyObject(IStore, self.store))  # type: ignore[attr-defined]

    async def test_nothing_waiting_for_a_new_user(self) -> None:
        self.assertEqual(await self.store.offline_for("seas"), [])  # type: ignore[attr-defined]

    async def test_saved_messages_come_back_in_order(self) -> None:
        await self.store.save_offline(["seas"], hello(text="one", at=1))
        await self.store.save_offline(["seas", "google"], Delivery("google", "two", Kind.BROADCAST, 2))
        seas = await self.store.offline_for("seas")
        self.assertEqual([m.delivery.text for m in seas], ["one", "two"])  # type: ignore[attr-defined]
        self.assertEqual(seas[1].delivery.kind, Kind.BROADCAST)  # type: ignore[attr-defined]
        self.assertEqual(seas[0].delivery.sent_at, 1)  # type: ignore[attr-defined]
        google = await self.store.offline_for("google")
        self.assertEqual([m.delivery.text for m in google], ["two"])  # type: ignore[attr-defined]

    async def test_acknowledged_messages_are_gone(self) -> None:
        await self.store.save_offline(["seas"], hello(text="one"))
        first = await self.store.offline_for("seas")
        await self.store.save_offline(["seas"], hello(text="two"))
        await self.store.ack(first)
        left = await self.store.offline_for("seas")
        self.assertEqual([m.delivery.text for m in left], ["two"])  # type: ignore[attr-defined]

    async def test_a_message_saved_just_before_the_read_is_in_the_answer(self) -> None:
        saved = self.store.save_offline(["seas"], hello())
        read = self.store.offline_for("seas")
        await saved
        self.assertEqual(len(await read), 1)  # type: ignore[attr-defined]

    async def test_intros_and_last_seen_are_kept(self) -> None:
        await self.store.set_intro("columbia", "The best course ever")
        await self.store.mark_seen({"columbia": 1234.5, "seas": 1234.5})
        await self.store.mark_seen({"seas": 2000.0})
        await self.store.set_intro("columbia", "changed")
        await self.check_snapshot({"columbia": 1234.5, "seas": 2000.0}, {"columbia": "changed"})

    async def check_snapshot(self, seen: dict[str, float], intros: dict[str, str]) -> None:
        """
        Check the backend's idea of the profiles: each backend says how.

        No default: a backend that forgot to say would otherwise pass every
        test that checks through here without checking anything.
        """
        raise NotImplementedError

    async def test_unicode_text_survives(self) -> None:
        await self.store.save_offline(["seas"], hello(text="héllo ☃ 你好"))
        [m] = await self.store.offline_for("seas")
        self.assertEqual(m.delivery.text, "héllo ☃ 你好")  # type: ignore[attr-defined]


class MemoryStoreTests(StoreContract, unittest.TestCase):
    def make_store(self) -> Any:
        return MemoryStore()

    async def check_snapshot(self, seen: dict[str, float], intros: dict[str, str]) -> None:
        snapshot = self.store.snapshot()
        self.assertEqual(snapshot.last_seen, seen)
        self.assertEqual(snapshot.intros, intros)


class SQLiteStoreTests(StoreContract, unittest.TestCase):
    def make_store(self) -> Any:
        self.path = os.path.abspath(self.mktemp())
        store = SQLiteStore(self.path, reactor)
        self.addCleanup(lambda: store.close() if store._closed is None else None)
        return store

    def reopen(self) -> Deferred[SQLiteStore]:
        def opened(_: object) -> SQLiteStore:
            self.store = SQLiteStore(self.path, reactor)
            self.addCleanup(self.store.close)
            return self.store

        return self.store.close().addCallback(opened)

    async def check_snapshot(self, seen: dict[str, float], intros: dict[str, str]) -> None:
        """
        Reopen the file and check what a restarted server would load.

        SQLite's snapshot is what was read when the store was opened, so the
        writes under test (the upserts that overwrite an intro or a last-seen
        time) are only visible in the database itself.
        """
        snapshot = (await self.reopen()).snapshot()
        self.assertEqual(snapshot.last_seen, seen)
        self.assertEqual(snapshot.intros, intros)

    async def test_profile_survives_reopening(self) -> None:
        await self.store.set_intro("columbia", "The best course ever")
        await self.store.mark_seen({"columbia": 1234.5, "seas": 1234.5})
        store = await self.reopen()
        snapshot = store.snapshot()
        self.assertEqual(snapshot.last_seen, {"columbia": 1234.5, "seas": 1234.5})
        self.assertEqual(snapshot.intros, {"columbia": "The best course ever"})

    async def test_offline_messages_survive_reopening(self) -> None:
        await self.store.save_offline(["seas"], hello(text="kept"))
        store = await self.reopen()
        [m] = await store.offline_for("seas")
        self.assertEqual(m.delivery, hello(text="kept"))

    async def test_confirmed_save_is_on_disk_before_it_is_confirmed(self) -> None:
        await self.store.save_offline(["seas"], hello(text="durable"))
        # Another connection, as a restarted server would open, sees it now.
        with sqlite3.connect(self.path) as other:
            rows = other.execute("SELECT recipient, text FROM offline").fetchall()
        self.assertEqual(rows, [("seas", "durable")])

    async def test_many_operations_at_once_all_complete_in_order(self) -> None:
        saves = [self.store.save_offline(["seas"], hello(text=str(i))) for i in range(200)]
        await gatherResults(saves)
        texts = [m.delivery.text for m in await self.store.offline_for("seas")]
        self.assertEqual(texts, [str(i) for i in range(200)])

    async def test_a_failing_operation_does_not_fail_the_others_in_its_batch(self) -> None:
        def broken(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO no_such_table VALUES (1)")

        before = self.store.save_offline(["seas"], hello(text="before"))
        bad = self.store._submit(broken)
        after = self.store.save_offline(["seas"], hello(text="after"))
        await before
        await self.assertFailure(bad, sqlite3.OperationalError)
        await after
        texts = [m.delivery.text for m in await self.store.offline_for("seas")]
        self.assertEqual(texts, ["before", "after"])

    async def test_close_finishes_queued_work(self) -> None:
        saved = self.store.save_offline(["seas"], hello(text="last words"))
        store = await self.reopen()
        await saved
        [m] = await store.offline_for("seas")
        self.assertEqual(m.delivery.text, "last words")

    async def test_use_after_close_fails_cleanly(self) -> None:
        await self.store.close()
        await self.assertFailure(self.store.save_offline(["seas"], hello()), StoreError)

    def test_unusable_path_is_a_store_error(self) -> None:
        with self.assertRaises(StoreError) as caught:
            SQLiteStore(os.path.join(self.mktemp(), "missing-dir", "chat.sqlite"), reactor)
        self.assertIn("cannot use database", str(caught.exception))

    def test_a_file_that_is_not_a_database_is_a_store_error(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("this is not sqlite" * 100)
        with self.assertRaises(StoreError):
            SQLiteStore(path, reactor)
