"""
The store: the same behaviour from every backend (L{StoreContract}), here
in memory and in SQLite, with SQLite's durability and migrations.  The
contract against a real Redis: L{tests.e2e.test_store}.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock, deferLater
from twisted.logger import formatEvent
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from chat.server import search
from chat.server.backends import sqlite as sqlite_backend
from chat.server.backends.memory import MemoryStore
from chat.server.backends.redis.link import Unavailable
from chat.server.backends.sqlite import INDEX_AFTER, SCHEMA_VERSION, SQLiteStore, has_fts5
from chat.server.conversations import EVERYONE, entries, pair
from chat.server.events import Delivery, Kind, StoredMessage
from chat.server.interfaces import ConversationState, IStore, Room, StoreError
from tests.unit.harness import capture_log

# The global reactor, typed loosely: it provides every interface used here.
reactor: Any = _reactor


def hello(sender: str = "columbia", text: str = "hello", at: float = 1000.0) -> Delivery:
    return Delivery(sender, text, Kind.PRIVATE, at)


def private(sender: str, recipient: str, text: str, at: float) -> tuple[Delivery, str]:
    """A private message as the service keeps it: in its sender's and its recipient's conversation."""
    return Delivery(sender, text, Kind.PRIVATE, at, f"id-{text}", (recipient,)), pair(sender, recipient)


def everyone(sender: str, text: str, at: float) -> tuple[Delivery, str]:
    """A broadcast to everyone as the service keeps it: once, in everyone's conversation."""
    return Delivery(sender, text, Kind.BROADCAST, at, f"id-{text}"), EVERYONE


def spare_rows(limit: int) -> int:
    """How many rows past its limit SQLite lets a conversation reach before pruning it."""
    return max(16, limit // 4)


def rows_per_conversation(path: str) -> dict[str, int]:
    """The history rows of each conversation, as another connection to the file sees them."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(
            "SELECT c.key, count(*) FROM message AS m"
            " JOIN conversation AS c ON c.id = m.conversation GROUP BY c.key"
        )
        return dict(rows.fetchall())


def user_version(path: str) -> int:
    with closing(sqlite3.connect(path)) as conn:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        return version


class StoreContract:
    """Tests every IStore must pass; mixed into a TestCase per backend."""

    store: Any

    def make_store(self, history: int = 200) -> Any:
        """A new, empty store keeping at most C{history} messages per conversation."""
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

    # --- history ---------------------------------------------------------------

    async def test_a_private_message_is_in_the_history_of_its_sender_and_its_recipient(self) -> None:
        """Every field comes back as it was: the renderer needs C{to} and the time, clients the id."""
        sent = Delivery("columbia", "héllo ☃", Kind.PRIVATE, 1234.25, "m-1", ("seas",))
        await self.store.save_history([(sent, pair("columbia", "seas"))])
        self.assertEqual(await self.store.history_for("columbia", 20), [sent])  # type: ignore[attr-defined]
        self.assertEqual(await self.store.history_for("seas", 20), [sent])  # type: ignore[attr-defined]

    async def test_a_broadcast_to_named_users_keeps_every_recipient(self) -> None:
        sent = Delivery("columbia", "to both", Kind.BROADCAST, 10.5, "m-2", ("seas", "google"))
        await self.store.save_history(entries(sent))
        for name in ("columbia", "seas", "google"):
            self.assertEqual(await self.store.history_for(name, 20), [sent])  # type: ignore[attr-defined]

    async def test_a_broadcast_to_everyone_is_in_every_history_in_time_order(self) -> None:
        """
        A broadcast is kept once, publicly, yet each user reads it among their
        own messages where it happened, and a user with no messages of their
        own (or who was not even online) reads it too.
        """
        first = private("columbia", "seas", "one", 1.0)
        shout = everyone("google", "two", 2.0)
        last = private("seas", "columbia", "three", 3.0)
        for entry in (first, shout, last):
            await self.store.save_history([entry])
        expected = [first[0], shout[0], last[0]]
        self.assertEqual(await self.store.history_for("columbia", 20), expected)  # type: ignore[attr-defined]
        self.assertEqual(await self.store.history_for("seas", 20), expected)  # type: ignore[attr-defined]
        self.assertEqual(await self.store.history_for("google", 20), [shout[0]])  # type: ignore[attr-defined]
        self.assertEqual(await self.store.history_for("facebook", 20), [shout[0]])  # type: ignore[attr-defined]

    async def test_entries_saved_together_keep_their_order(self) -> None:
        """The service keeps a whole flush of broadcasts in one call."""
        entries = [
            everyone("google", "a", 1.0),
            private("columbia", "seas", "b", 2.0),
            everyone("seas", "c", 3.0),
        ]
        await self.store.save_history(entries)
        texts = [d.text for d in await self.store.history_for("seas", 20)]
        self.assertEqual(texts, ["a", "b", "c"])  # type: ignore[attr-defined]

    async def test_messages_of_the_same_instant_keep_the_order_they_were_sent_in(self) -> None:
        """
        The clock does not always move between two messages (a coarse
        clock, a fast sender): the broadcast seas saw first must still be
        first in seas's history.
        """
        shout = everyone("google", "first", 5.0)
        then = private("columbia", "seas", "second", 5.0)
        await self.store.save_history([shout])
        await self.store.save_history([then])
        texts = [d.text for d in await self.store.history_for("seas", 20)]
        self.assertEqual(texts, ["first", "second"])  # type: ignore[attr-defined]

    async def test_history_for_gives_the_newest_count_messages_oldest_first(self) -> None:
        for i in range(10):
            entry = everyone("google", str(i), i) if i % 3 == 0 else private("columbia", "seas", str(i), i)
            await self.store.save_history([entry])
        texts = [d.text for d in await self.store.history_for("seas", 4)]
        self.assertEqual(texts, ["6", "7", "8", "9"])  # type: ignore[attr-defined]
        one = await self.store.history_for("seas", 1)
        self.assertEqual([d.text for d in one], ["9"])  # type: ignore[attr-defined]

    async def test_nobody_sees_the_private_messages_of_others(self) -> None:
        await self.store.save_history([private("columbia", "seas", "secret", 1.0)])
        named = Delivery("columbia", "for two", Kind.BROADCAST, 2.0, "m-3", ("seas", "google"))
        await self.store.save_history(entries(named))
        self.assertEqual(await self.store.history_for("facebook", 20), [])  # type: ignore[attr-defined]
        google = await self.store.history_for("google", 20)
        self.assertEqual([d.text for d in google], ["for two"])  # type: ignore[attr-defined]

    async def test_a_new_user_has_no_history(self) -> None:
        self.assertEqual(await self.store.history_for("seas", 20), [])  # type: ignore[attr-defined]

    async def test_only_the_last_limit_messages_of_each_conversation_are_kept(self) -> None:
        """
        However many messages pass, each conversation (everyone's included)
        keeps at most the limit, and those are the newest.
        """
        store = self.make_store(history=5)
        for i in range(40):
            await store.save_history([private("columbia", "seas", f"p{i}", 2 * i)])
            await store.save_history([everyone("google", f"b{i}", 2 * i + 1)])
        for name in ("columbia", "seas"):
            texts = [d.text for d in await store.history_for(name, 20)]
            self.assertEqual(texts, ["b37", "p38", "b38", "p39", "b39"], name)  # type: ignore[attr-defined]
        public = [d.text for d in await store.history_for("facebook", 20)]
        self.assertEqual(public, [f"b{i}" for i in range(35, 40)])  # type: ignore[attr-defined]

    async def test_a_conversations_messages_are_kept_even_when_the_others_are_many(self) -> None:
        """One talkative conversation does not push another's messages out."""
        store = self.make_store(history=5)
        await store.save_history([private("columbia", "seas", "kept", 0)])
        for i in range(40):
            await store.save_history([private("google", "facebook", f"x{i}", i + 1)])
        texts = [d.text for d in await store.history_for("seas", 20)]
        self.assertEqual(texts, ["kept"])  # type: ignore[attr-defined]

    async def test_a_limit_of_zero_keeps_nothing(self) -> None:
        store = self.make_store(history=0)
        await store.save_history([private("columbia", "seas", "gone", 1.0), everyone("google", "also", 2.0)])
        for name in ("columbia", "seas", "google"):
            self.assertEqual(await store.history_for(name, 20), [])  # type: ignore[attr-defined]

    # --- conversations, rooms and read markers ------------------------------------

    async def test_a_message_to_several_is_once_in_its_senders_history(self) -> None:
        sent = Delivery("columbia", "to both", Kind.BROADCAST, 10.5, "m-2", ("seas", "google"))
        await self.store.save_history(entries(sent))
        await self.store.save_history([private("columbia", "seas", "after", 11.0)])
        texts = [d.text for d in await self.store.history_for("columbia", 2)]
        self.assertEqual(texts, ["to both", "after"])  # type: ignore[attr-defined]

    async def test_a_conversation_pages_back_by_message_id_to_its_first_kept_message(self) -> None:
        key = pair("columbia", "seas")
        for i in range(7):
            await self.store.save_history([private("columbia", "seas", f"m{i}", i)])
        await self.store.save_history([private("columbia", "google", "elsewhere", 9)])
        page, more = await self.store.conversation_history(key, 3)
        self.assertEqual(([d.text for d in page], more), (["m4", "m5", "m6"], True))  # type: ignore[attr-defined]
        page, more = await self.store.conversation_history(key, 3, page[0].id)
        self.assertEqual(([d.text for d in page], more), (["m1", "m2", "m3"], True))  # type: ignore[attr-defined]
        page, more = await self.store.conversation_history(key, 3, page[0].id)
        self.assertEqual(([d.text for d in page], more), (["m0"], False))  # type: ignore[attr-defined]
        gone = await self.store.conversation_history(key, 3, "no-such-id")
        self.assertEqual(gone, ([], False))  # type: ignore[attr-defined]
        nothing = await self.store.conversation_history(pair("seas", "google"), 3)
        self.assertEqual(nothing, ([], False))  # type: ignore[attr-defined]

    async def found(self, name: str, text: str, count: int = 20, before: str | None = None) -> Any:
        """The texts and conversations a search by C{name} finds, newest first, and whether there are more."""
        result = await self.store.search(name, search.words(text), count, before)
        if result is None:
            return None
        hits, more = result
        return [(d.text, key) for d, key in hits], more

    async def test_search_finds_every_word_in_any_order_whatever_the_case_and_accents(self) -> None:
        await self.store.save_history([private("columbia", "seas", "Deploy the café tonight", 1.0)])
        await self.store.save_history([everyone("google", "the deploy is done", 2.0)])
        await self.store.save_history([private("seas", "columbia", "cafe deploy again", 3.0)])
        await self.store.save_history([private("columbia", "seas", "deployment", 4.0)])
        self.assertEqual(  # type: ignore[attr-defined]
            await self.found("seas", "CAFÉ deploy"),
            (
                [
                    ("cafe deploy again", pair("columbia", "seas")),
                    ("Deploy the café tonight", pair("columbia", "seas")),
                ],
                False,
            ),
        )
        self.assertEqual(  # type: ignore[attr-defined]
            [text for text, _ in (await self.found("seas", "deploy"))[0]],
            ["cafe deploy again", "the deploy is done", "Deploy the café tonight"],
        )
        self.assertEqual(await self.found("seas", "nothing here"), ([], False))  # type: ignore[attr-defined]

    async def test_search_never_finds_others_private_messages_or_rooms_one_is_not_in(self) -> None:
        await self.store.save_room("#ops", "#ops")
        await self.store.join_room("#ops", "google")
        await self.store.save_history([private("columbia", "seas", "secret deploy", 1.0)])
        said = Delivery("google", "ops deploy", Kind.ROOM, 2.0, "r-1", (), "#ops")
        await self.store.save_history([(said, "#ops")])
        await self.store.save_history([everyone("seas", "public deploy", 3.0)])
        self.assertEqual(  # type: ignore[attr-defined]
            await self.found("google", "deploy"),
            ([("public deploy", EVERYONE), ("ops deploy", "#ops")], False),
        )
        self.assertEqual(  # type: ignore[attr-defined]
            await self.found("facebook", "deploy"), ([("public deploy", EVERYONE)], False)
        )
        await self.store.leave_room("#ops", "google")
        self.assertEqual(  # type: ignore[attr-defined]
            await self.found("google", "deploy"), ([("public deploy", EVERYONE)], False)
        )

    async def test_search_pages_back_by_message_id_and_shows_a_message_to_several_once(self) -> None:
        for i in range(5):
            await self.store.save_history([private("columbia", "seas", f"deploy {i}", float(i))])
        both = Delivery("columbia", "deploy to both", Kind.BROADCAST, 10.0, "m-both", ("seas", "google"))
        await self.store.save_history(entries(both))
        first = await self.found("columbia", "deploy", 3)
        self.assertEqual(  # type: ignore[attr-defined]
            first,
            (
                [
                    ("deploy to both", pair("columbia", "google")),
                    ("deploy 4", pair("columbia", "seas")),
                    ("deploy 3", pair("columbia", "seas")),
                ],
                True,
            ),
        )
        hits, _ = await self.store.search("columbia", ("deploy",), 3)
        older = await self.found("columbia", "deploy", 3, hits[-1][0].id)
        self.assertEqual(  # type: ignore[attr-defined]
            older,
            (
                [
                    ("deploy 2", pair("columbia", "seas")),
                    ("deploy 1", pair("columbia", "seas")),
                    ("deploy 0", pair("columbia", "seas")),
                ],
                False,
            ),
        )
        self.assertIsNone(await self.found("columbia", "deploy", 3, "no-such-id"))  # type: ignore[attr-defined]

    async def test_a_room_keeps_its_first_name_and_its_members(self) -> None:
        self.assertIs(await self.store.save_room("#dev", "#Dev"), True)  # type: ignore[attr-defined]
        self.assertIs(await self.store.save_room("#dev", "#DEV"), False)  # type: ignore[attr-defined]
        await self.store.join_room("#dev", "columbia")
        await self.store.join_room("#dev", "seas")
        await self.store.leave_room("#dev", "seas")
        await self.check_rooms({"#dev": Room("#Dev", frozenset({"columbia"}))})

    async def check_rooms(self, rooms: dict[str, Room]) -> None:
        """What the store says the rooms are (after a restart, for those that survive one)."""
        reopened = await self.reloaded()
        self.assertEqual(reopened.snapshot().rooms, rooms)  # type: ignore[attr-defined]

    async def reloaded(self) -> Any:
        return self.store

    async def test_a_rooms_messages_are_in_its_members_history(self) -> None:
        await self.store.save_room("#dev", "#Dev")
        await self.store.join_room("#dev", "seas")
        said = Delivery("columbia", "standup", Kind.ROOM, 5.0, "r-1", (), "#Dev")
        await self.store.save_history([(said, "#dev")])
        self.assertEqual(await self.store.history_for("seas", 20), [said])  # type: ignore[attr-defined]
        self.assertEqual(await self.store.history_for("google", 20), [])  # type: ignore[attr-defined]
        await self.store.leave_room("#dev", "seas")
        self.assertEqual(await self.store.history_for("seas", 20), [])  # type: ignore[attr-defined]

    async def test_unread_counts_are_of_others_messages_after_the_read_marker_or_the_time_given(self) -> None:
        await self.store.save_room("#dev", "#dev")
        await self.store.join_room("#dev", "seas")
        for i, sender in enumerate(["columbia", "seas", "columbia", "google"]):
            said = Delivery(sender, f"r{i}", Kind.ROOM, 10.0 + i, f"r-{i}", (), "#dev")
            await self.store.save_history([(said, "#dev")])
        await self.store.save_history([private("columbia", "seas", "direct", 20.0)])
        await self.store.save_history([everyone("google", "all", 21.0)])
        states = {s.key: s for s in await self.store.conversations_of("seas", 0.0)}
        self.assertEqual(set(states), {EVERYONE, "#dev", pair("columbia", "seas")})  # type: ignore[attr-defined]
        self.assertEqual(states["#dev"].unread, 3)  # type: ignore[attr-defined]
        self.assertEqual(states["#dev"].last, 13.0)  # type: ignore[attr-defined]
        self.assertEqual(states[pair("columbia", "seas")].unread, 1)  # type: ignore[attr-defined]
        # Where there is no marker, the time given counts.
        since = {s.key: s.unread for s in await self.store.conversations_of("seas", 12.5)}
        self.assertEqual(since["#dev"], 1)  # type: ignore[attr-defined]
        await self.store.mark_read("seas", {"#dev": 11.5, EVERYONE: 30.0})
        await self.store.mark_read("seas", {"#dev": 10.5})  # never moves back
        marked = {s.key: s.unread for s in await self.store.conversations_of("seas", 0.0)}
        self.assertEqual((marked["#dev"], marked[EVERYONE]), (2, 0))  # type: ignore[attr-defined]

    async def test_a_room_nobody_has_written_in_is_among_its_members_conversations(self) -> None:
        await self.store.save_room("#quiet", "#quiet")
        await self.store.join_room("#quiet", "seas")
        states = await self.store.conversations_of("seas", 0.0)
        self.assertEqual(states, [ConversationState("#quiet", 0.0, 0)])  # type: ignore[attr-defined]

    async def uses(self, *attempts: tuple[str, float]) -> list[tuple[str | None, str]]:
        """What using each token digest at each time answers, in order."""
        return [await self.store.use_token(digest, now) for digest, now in attempts]

    async def test_a_token_is_used_once(self) -> None:
        await self.store.save_token("columbia", "d1", 2000.0, 1000.0)
        used = await self.uses(("d1", 1500.0), ("d1", 1600.0))
        self.assertEqual(used, [("columbia", "ok"), ("columbia", "reused")])  # type: ignore[attr-defined]

    async def test_a_token_past_its_time_or_never_saved_is_expired(self) -> None:
        await self.store.save_token("columbia", "d1", 2000.0, 1000.0)
        used = await self.uses(("d1", 2000.0), ("nope", 1000.0))
        self.assertEqual(used, [(None, "expired"), (None, "expired")])  # type: ignore[attr-defined]

    async def test_a_new_token_revokes_the_unused_ones_but_remembers_the_used(self) -> None:
        await self.store.save_token("columbia", "d1", 2000.0, 1000.0)
        await self.store.save_token("columbia", "d2", 2100.0, 1100.0)
        await self.store.use_token("d2", 1200.0)
        await self.store.save_token("columbia", "d3", 2200.0, 1200.0)
        await self.store.save_token("seas", "s1", 2200.0, 1200.0)
        used = await self.uses(("d1", 1300.0), ("d2", 1300.0), ("d3", 1300.0), ("s1", 1300.0))
        expected = [(None, "expired"), ("columbia", "reused"), ("columbia", "ok"), ("seas", "ok")]
        self.assertEqual(used, expected)  # type: ignore[attr-defined]

    async def test_revoking_a_users_tokens_forgets_them_all_used_or_not(self) -> None:
        await self.store.save_token("columbia", "d1", 2000.0, 1000.0)
        await self.store.use_token("d1", 1100.0)
        await self.store.save_token("columbia", "d2", 2100.0, 1100.0)
        await self.store.save_token("seas", "s1", 2200.0, 1200.0)
        await self.store.revoke_tokens("columbia")
        used = await self.uses(("d1", 1300.0), ("d2", 1300.0), ("s1", 1300.0))
        self.assertEqual(used, [(None, "expired"), (None, "expired"), ("seas", "ok")])  # type: ignore[attr-defined]


class MemoryStoreTests(StoreContract, unittest.TestCase):
    def make_store(self, history: int = 200) -> Any:
        return MemoryStore(history)

    async def check_snapshot(self, seen: dict[str, float], intros: dict[str, str]) -> None:
        snapshot = self.store.snapshot()
        self.assertEqual(snapshot.last_seen, seen)
        self.assertEqual(snapshot.intros, intros)


async def until_idle(store: SQLiteStore) -> None:
    """Wait until the writer thread has nothing queued or running (a probe included)."""
    for _ in range(500):
        if store._running is None and not store._queue:
            return
        await deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("the store's writer did not go idle")


class SQLiteStoreTests(StoreContract, unittest.TestCase):
    def make_store(self, history: int = 200) -> Any:
        self.path = os.path.abspath(self.mktemp())
        store = SQLiteStore(self.path, reactor, history)
        self.addCleanup(lambda: store.close() if store._closed is None else None)
        return store

    async def reloaded(self) -> Any:
        """Rooms survive a restart."""
        return await self.reopen()

    def reopen(self) -> Deferred[SQLiteStore]:
        def opened(_: object) -> SQLiteStore:
            self.store = SQLiteStore(self.path, reactor)
            self.addCleanup(self.store.close)
            return self.store

        return self.store.close().addCallback(opened)

    def timed_store(self, history: int = 200) -> Clock:
        """Make C{self.store} a store on a clock of the test's; give the clock."""
        clock = Clock()
        self.path = os.path.abspath(self.mktemp())
        store = SQLiteStore(self.path, reactor, history, clock=clock)
        self.addCleanup(lambda: store.close() if store._closed is None else None)
        self.store = store
        return clock

    def in_index(self, word: str) -> int:
        """How many rows the full-text index has for C{word} (read from the file, as another reader would)."""
        with closing(sqlite3.connect(self.path)) as conn:
            query = "SELECT count(*) FROM message_text WHERE message_text MATCH ?"
            [count] = conn.execute(query, (word,)).fetchone()
        return int(count)

    async def test_search_uses_the_full_text_index_and_a_scan_finds_the_same(self) -> None:
        clock = self.timed_store()
        self.assertTrue(self.store.indexed)
        self.assertTrue(has_fts5(sqlite3.connect(":memory:")))
        for i, text in enumerate(["Déploy prod", "prod is down", "deploy staging", "PROD deploy"]):
            await self.store.save_history([private("columbia", "seas", text, float(i))])
        clock.advance(INDEX_AFTER)
        # Indexed with a later write (the earlier ones have been kept long
        # enough); this one and the next are read through.
        await self.store.save_history([private("columbia", "seas", "deploy prod again", 10.0)])
        await self.store.save_history([private("columbia", "seas", "prod deploy, later", 11.0)])
        self.assertEqual(self.in_index("deploy"), 3)
        indexed = await self.found("seas", "deploy prod")
        self.store.indexed = False
        self.assertEqual(await self.found("seas", "deploy prod"), indexed)
        conversation = pair("columbia", "seas")
        self.assertEqual(
            indexed,
            (
                [
                    ("prod deploy, later", conversation),
                    ("deploy prod again", conversation),
                    ("PROD deploy", conversation),
                    ("Déploy prod", conversation),
                ],
                False,
            ),
        )

    async def test_messages_enter_the_index_once_kept_a_while_a_chunk_per_write(self) -> None:
        clock = self.timed_store()
        self.patch(sqlite_backend, "INDEX_CHUNK", 3)
        for i in range(5):
            await self.store.save_history([private("columbia", "seas", f"deploy {i}", float(i))])
            clock.advance(1)
        self.assertEqual(self.in_index("deploy"), 0)
        clock.advance(INDEX_AFTER)
        await self.store.save_history([private("columbia", "seas", "deploy 5", 5.0)])
        self.assertEqual(self.in_index("deploy"), 3)
        await self.store.save_history([private("columbia", "seas", "deploy 6", 6.0)])
        self.assertEqual(self.in_index("deploy"), 5)
        # Whatever is indexed, search finds each message once.
        hits, _ = await self.found("seas", "deploy")
        self.assertEqual([text for text, _ in hits], [f"deploy {i}" for i in reversed(range(7))])

    async def test_a_write_rolled_back_after_indexing_leaves_search_whole(self) -> None:
        clock = self.timed_store()
        for i in range(3):
            await self.store.save_history([private("columbia", "seas", f"deploy {i}", float(i))])
        clock.advance(INDEX_AFTER)
        index_kept = self.store._index_kept

        def then_fail(conn: Any, now: float, last: int) -> None:
            index_kept(conn, now, last)
            raise sqlite3.OperationalError("the write fails after indexing")

        self.store._index_kept = then_fail
        with self.assertRaises(sqlite3.OperationalError):
            await self.store.save_history([private("columbia", "seas", "deploy 3", 3.0)])
        self.flushLoggedErrors(sqlite3.OperationalError)
        self.assertEqual(self.in_index("deploy"), 0)
        hits, _ = await self.found("seas", "deploy")
        self.assertEqual([text for text, _ in hits], ["deploy 2", "deploy 1", "deploy 0"])
        # The next write indexes them after all.
        del self.store._index_kept
        await self.store.save_history([private("columbia", "seas", "deploy 4", 4.0)])
        self.assertEqual(self.in_index("deploy"), 3)

    async def test_the_index_lasts_over_a_restart(self) -> None:
        clock = self.timed_store()
        await self.store.save_history([private("columbia", "seas", "deploy 1", 1.0)])
        clock.advance(INDEX_AFTER)
        await self.store.save_history([private("columbia", "seas", "deploy 2", 2.0)])
        await self.store.close()
        store = SQLiteStore(self.path, reactor, clock=clock)
        self.addCleanup(store.close)
        self.store = store
        self.assertEqual(self.in_index("deploy"), 1)
        hits, _ = await self.found("seas", "deploy")
        self.assertEqual([text for text, _ in hits], ["deploy 2", "deploy 1"])

    async def test_pruned_messages_leave_the_index(self) -> None:
        clock = self.timed_store(history=2)
        for i in range(10):
            await self.store.save_history([private("columbia", "seas", f"deploy {i}", float(i))])
        clock.advance(INDEX_AFTER)
        await self.store.save_history([private("columbia", "seas", "deploy 10", 10.0)])
        self.assertEqual(self.in_index("deploy"), 10)
        for i in range(11, 60):
            await self.store.save_history([private("columbia", "seas", f"deploy {i}", float(i))])
        hits, _ = await self.found("seas", "deploy", 100)
        with closing(sqlite3.connect(self.path)) as conn:
            [kept] = conn.execute("SELECT count(*) FROM message").fetchone()
        self.assertLess(kept, 60)
        self.assertEqual(len(hits), kept)
        # The ten indexed rows were pruned, and left the index with them.
        self.assertEqual(self.in_index("deploy"), 0)

    async def test_messages_pruned_before_they_are_indexed_never_reach_the_index(self) -> None:
        clock = self.timed_store(history=2)
        for i in range(60):
            await self.store.save_history([private("columbia", "seas", f"deploy {i}", float(i))])
        clock.advance(INDEX_AFTER)
        await self.store.save_history([private("columbia", "seas", "deploy 60", 60.0)])
        hits, _ = await self.found("seas", "deploy", 100)
        with closing(sqlite3.connect(self.path)) as conn:
            [kept] = conn.execute("SELECT count(*) FROM message").fetchone()
        # Only the rows still kept were indexed (the newest, written at the
        # later time, is not due yet): one index entry each.
        self.assertEqual(self.in_index("deploy"), kept - 1)
        self.assertEqual(len(hits), kept)

    async def test_a_version_6_database_keeps_its_index_and_indexes_lazily_from_then_on(self) -> None:
        self.path = os.path.abspath(self.mktemp())
        with closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
            sqlite_backend._migrate(conn, until=6)
            conn.execute("INSERT INTO conversation (id, key) VALUES (1, ?)", (pair("columbia", "seas"),))
            conn.executemany(
                "INSERT INTO member (name, conversation) VALUES (?, 1)", [("columbia",), ("seas",)]
            )
            conn.execute(
                "INSERT INTO message (conversation, message_id, sender, kind, text, sent_at, recipients,"
                " room) VALUES (1, 'old', 'columbia', 'private', 'deploy from version 6', 1.0, 'seas', '')"
            )
        store = SQLiteStore(self.path, reactor, clock=Clock())
        self.addCleanup(store.close)
        self.store = store
        self.assertEqual(self.in_index("deploy"), 1)
        await store.save_history([private("columbia", "seas", "deploy from version 7", 2.0)])
        self.assertEqual(self.in_index("deploy"), 1)
        hits, _ = await self.found("seas", "deploy")
        self.assertEqual([text for text, _ in hits], ["deploy from version 7", "deploy from version 6"])

    async def test_without_fts5_the_store_says_so_once_and_search_scans(self) -> None:
        self.patch(sqlite_backend, "has_fts5", lambda conn: False)
        logged = capture_log(self)
        path = os.path.abspath(self.mktemp())
        store = SQLiteStore(path, reactor)
        self.addCleanup(store.close)
        self.assertFalse(store.indexed)
        [warning] = [e for e in logged if "FTS5" in e.get("log_format", "")]
        self.assertIn("search reads through the kept history", warning["log_format"])
        await store.save_history([private("columbia", "seas", "deploy now", 1.0)])
        result = await store.search("seas", ("deploy",), 10)
        assert result is not None
        self.assertEqual([d.text for d, _ in result[0]], ["deploy now"])

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

    async def test_a_full_disk_takes_the_store_down_and_it_comes_back_by_itself(self) -> None:
        """
        SQLite's own "disk is full" (a page limit stands in for the disk):
        the write fails with Unavailable, said once; while the disk stays
        full a probe tries again with a backoff; freed, the store is back
        with nobody else asking.
        """
        clock = Clock()
        store = SQLiteStore(self.path + "-full", reactor, clock=clock)
        self.addCleanup(store.close)
        log = capture_log(self, "chat.server.health")
        await store.save_offline(["seas"], hello(text="fits"))
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages}")
        big = hello(text="x" * 100_000)
        refused: Deferred[Any] = store.save_offline(["seas"], big)
        failure: Any = await self.assertFailure(refused, Unavailable)
        self.assertIn("full", str(failure))
        self.assertFalse(store.health.available)
        await self.assertFailure(store.save_history([(big, pair("columbia", "seas"))]), Unavailable)
        self.assertEqual(len(log), 1)
        # The probe (a write the size of a few messages) finds it still full...
        clock.advance(1.2)
        await until_idle(store)
        self.assertFalse(store.health.available)
        # ...and, once there is room, working.
        store._conn.execute("PRAGMA max_page_count = 1073741823")
        clock.advance(2.4)
        await until_idle(store)
        self.assertTrue(store.health.available)
        self.assertIn("is back after", formatEvent(log[-1]))
        await store.save_offline(["seas"], big)
        self.assertEqual(len(await store.offline_for("seas")), 2)
        # The conversation whose first message could not be kept has its
        # members written with the next one.
        await store.save_history([private("columbia", "seas", "kept", 9.0)])
        self.assertEqual([d.text for d in await store.history_for("seas", 20)], ["kept"])

    async def test_a_new_database_and_its_journal_are_the_owners_alone(self) -> None:
        await self.store.save_offline(["seas"], hello(text="private"))
        for suffix in ("", "-wal", "-shm"):
            mode = os.stat(self.path + suffix).st_mode & 0o777
            self.assertEqual(mode, 0o600, f"{suffix or 'the database'}: {oct(mode)}")

    def test_a_database_that_cannot_be_created_says_why_in_one_line(self) -> None:
        with self.assertRaises(StoreError) as caught:
            SQLiteStore(os.path.join(self.mktemp(), "missing-directory", "chat.sqlite"), reactor)
        self.assertIn("No such file or directory", str(caught.exception))

    async def test_a_mistake_in_a_statement_is_no_outage(self) -> None:
        def broken(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO no_such_table VALUES (1)")

        await self.assertFailure(self.store._submit(broken), sqlite3.OperationalError)
        self.assertTrue(self.store.health.available)

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

    # --- history on disk ---------------------------------------------------------

    async def test_an_unused_token_survives_reopening(self) -> None:
        await self.store.save_token("columbia", "d1", 2000.0, 1000.0)
        store = await self.reopen()
        self.assertEqual(await store.use_token("d1", 1500.0), ("columbia", "ok"))

    async def test_history_survives_reopening(self) -> None:
        entries = [private("columbia", "seas", "one", 1.0), everyone("google", "two", 2.0)]
        await self.store.save_history(entries)
        store = await self.reopen()
        expected = [d for d, _ in entries]
        self.assertEqual(await store.history_for("seas", 20), expected)
        self.assertEqual(await store.history_for("columbia", 20), expected)

    async def test_a_conversations_rows_stay_under_limit_plus_spare_however_many_are_saved(self) -> None:
        """
        Pruning is lazy (a conversation is pruned once it has rows to spare,
        not on every insert), but the table must not grow without bound.
        """
        limit = 5
        store = self.make_store(history=limit)
        most: dict[str, int] = {}
        for i in range(200):
            await store.save_history([private("columbia", "seas", str(i), i), everyone("google", str(i), i)])
            for conversation, count in rows_per_conversation(self.path).items():
                most[conversation] = max(most.get(conversation, 0), count)
        self.assertEqual(set(most), {pair("columbia", "seas"), EVERYONE})
        for conversation, count in most.items():
            self.assertLessEqual(count, limit + spare_rows(limit), repr(conversation))
        texts = [d.text for d in await store.history_for("seas", 20)]
        self.assertEqual(len(texts), limit)

    async def test_a_big_batch_for_one_conversation_is_pruned_too(self) -> None:
        limit = 5
        store = self.make_store(history=limit)
        # More rows than one statement writes, and some over.
        await store.save_history([private("columbia", "seas", str(i), i) for i in range(300)])
        counts = rows_per_conversation(self.path)
        self.assertLessEqual(counts[pair("columbia", "seas")], limit + spare_rows(limit))
        texts = [d.text for d in await store.history_for("seas", 20)]
        self.assertEqual(texts, [str(i) for i in range(295, 300)])

    async def test_conversations_pruned_in_one_batch_each_keep_their_newest(self) -> None:
        limit = 5
        store = self.make_store(history=limit)
        over = limit + spare_rows(limit)
        entries = [private("columbia", "seas", f"cs {i}", i) for i in range(over)]
        entries += [private("google", "seas", f"gs {i}", i) for i in range(over + 3)]
        entries += [private("columbia", "google", f"cg {i}", i) for i in range(limit + 2)]
        await store.save_history(entries)
        counts = rows_per_conversation(self.path)
        self.assertEqual(counts[pair("columbia", "seas")], limit)
        self.assertEqual(counts[pair("google", "seas")], limit)
        # Not due yet: pruning waits for rows to spare.
        self.assertEqual(counts[pair("columbia", "google")], limit + 2)
        with closing(sqlite3.connect(self.path)) as conn:
            kept = [text for (text,) in conn.execute("SELECT text FROM message ORDER BY seq")]
        self.assertEqual(
            kept,
            [f"cs {i}" for i in range(over - limit, over)]
            + [f"gs {i}" for i in range(over - 2, over + 3)]
            + [f"cg {i}" for i in range(limit + 2)],
        )

    async def test_a_big_batch_keeps_every_message_in_order(self) -> None:
        entries = [private("columbia", f"user{i % 7}", str(i), i) for i in range(300)]
        await self.store.save_history(entries)
        texts = [d.text for d in await self.store.history_for("columbia", 200)]
        self.assertEqual(texts, [str(i) for i in range(100, 300)])

    async def test_rows_stay_bounded_after_a_restart_with_a_smaller_limit(self) -> None:
        """
        An operator who lowers --history expects the table to shrink to the
        new bound, not to grow for ever from the rows the old limit kept.
        """
        for i in range(60):
            await self.store.save_history([private("columbia", "seas", str(i), i)])
        await self.store.close()
        limit = 5
        store = SQLiteStore(self.path, reactor, limit)
        self.addCleanup(store.close)
        for i in range(60, 160):
            await store.save_history([private("columbia", "seas", str(i), i)])
        texts = [d.text for d in await store.history_for("seas", 20)]
        self.assertEqual(texts, [str(i) for i in range(155, 160)])
        for conversation, count in rows_per_conversation(self.path).items():
            self.assertLessEqual(count, limit + spare_rows(limit), repr(conversation))

    async def test_a_limit_of_zero_writes_no_rows(self) -> None:
        store = self.make_store(history=0)
        await store.save_history([private("columbia", "seas", "gone", 1.0), everyone("google", "also", 2.0)])
        # A write queued after: once it is done, any history write would be too.
        await store.set_intro("columbia", "flushed")
        self.assertEqual(rows_per_conversation(self.path), {})

    # --- schema ----------------------------------------------------------------

    def first_release_database(self, version: int) -> str:
        """
        A file as the first release left it: its two tables, written out
        here rather than taken from the code, an offline message and a
        profile, and C{user_version} C{version} (the release said 0).
        """
        path = os.path.abspath(self.mktemp())
        with closing(sqlite3.connect(path)) as conn:
            conn.executescript(
                """
                CREATE TABLE offline (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    recipient TEXT NOT NULL,
                    sender TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    text TEXT NOT NULL,
                    sent_at REAL NOT NULL
                );
                CREATE INDEX offline_by_recipient ON offline (recipient, id);
                CREATE TABLE profile (
                    name TEXT PRIMARY KEY,
                    last_seen REAL,
                    intro TEXT
                );
                INSERT INTO offline (recipient, sender, kind, text, sent_at)
                    VALUES ('seas', 'columbia', 'private', 'from the old days', 1234.5);
                INSERT INTO profile (name, last_seen, intro) VALUES ('columbia', 1000.0, 'The lion');
                """
            )
            conn.execute(f"PRAGMA user_version = {version}")
            conn.commit()
        return path

    async def _first_release_database_is_migrated(self, version: int) -> None:
        path = self.first_release_database(version)
        store = SQLiteStore(path, reactor)
        self.addCleanup(store.close)
        self.assertEqual(user_version(path), SCHEMA_VERSION)
        self.assertEqual(store.snapshot().last_seen, {"columbia": 1000.0})
        self.assertEqual(store.snapshot().intros, {"columbia": "The lion"})
        [m] = await store.offline_for("seas")
        self.assertEqual(
            m, StoredMessage(1, "seas", Delivery("columbia", "from the old days", Kind.PRIVATE, 1234.5, ""))
        )
        # And the new table is there to use.
        entry = private("columbia", "seas", "new", 2000.0)
        await store.save_history([entry])
        self.assertEqual(await store.history_for("seas", 20), [entry[0]])

    async def test_a_first_release_database_saying_version_0_is_migrated_and_keeps_its_data(self) -> None:
        await self._first_release_database_is_migrated(0)

    async def test_a_database_at_version_1_is_migrated_and_keeps_its_data(self) -> None:
        await self._first_release_database_is_migrated(1)

    async def test_history_kept_per_user_is_migrated_to_one_row_per_message(self) -> None:
        """
        Version 3 kept a copy of each message per user who sent or received
        it (and the first releases' copies had no id): after the migration
        each user reads the same history as before, and each message is
        one row per conversation (a message to two, one in each).
        """
        path = self.first_release_database(3)
        rows = [
            ("columbia", "p1", "columbia", "private", "hi seas", 1.0, '["seas"]'),
            ("seas", "p1", "columbia", "private", "hi seas", 1.0, '["seas"]'),
            ("", "b1", "google", "broadcast", "hi all", 2.0, "[]"),
            ("columbia", "g1", "columbia", "broadcast", "hi you two", 3.0, '["seas","google"]'),
            ("seas", "g1", "columbia", "broadcast", "hi you two", 3.0, '["seas","google"]'),
            ("google", "g1", "columbia", "broadcast", "hi you two", 3.0, '["seas","google"]'),
            ("seas", "", "seas", "private", "no id", 4.0, '["columbia"]'),
            ("columbia", "", "seas", "private", "no id", 4.0, '["columbia"]'),
        ]
        with closing(sqlite3.connect(path)) as conn:
            conn.executescript(
                """
                ALTER TABLE offline ADD COLUMN message_id TEXT NOT NULL DEFAULT '';
                CREATE TABLE history (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    owner TEXT NOT NULL,
                    message_id TEXT NOT NULL,
                    sender TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    text TEXT NOT NULL,
                    sent_at REAL NOT NULL,
                    recipients TEXT NOT NULL
                );
                CREATE INDEX history_by_owner ON history (owner, seq);
                CREATE TABLE resume_token (
                    digest TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    expires REAL NOT NULL,
                    used INTEGER NOT NULL DEFAULT 0
                );
                """
            )
            conn.executemany(
                "INSERT INTO history (owner, message_id, sender, kind, text, sent_at, recipients)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.commit()
        store = SQLiteStore(path, reactor)
        self.addCleanup(store.close)
        self.assertEqual(user_version(path), SCHEMA_VERSION)
        texts = {
            name: [d.text for d in await store.history_for(name, 20)]
            for name in ("columbia", "seas", "google")
        }
        self.assertEqual(
            texts,
            {
                "columbia": ["hi seas", "hi all", "hi you two", "no id"],
                "seas": ["hi seas", "hi all", "hi you two", "no id"],
                "google": ["hi all", "hi you two"],
            },
        )
        [named] = [d for d in await store.history_for("google", 20) if d.id == "g1"]
        self.assertEqual(
            named, Delivery("columbia", "hi you two", Kind.BROADCAST, 3.0, "g1", ("seas", "google"))
        )
        self.assertEqual(
            rows_per_conversation(path),
            {EVERYONE: 1, pair("columbia", "seas"): 3, pair("columbia", "google"): 1},
        )

    async def test_a_version_4_groups_messages_move_to_each_recipients_pair_in_order(self) -> None:
        """
        Version 4 kept a message to several users in the group's
        conversation; version 5 keeps it in each recipient's conversation
        with its sender, in the order the messages were sent, and drops the
        group's conversation.
        """
        path = self.first_release_database(4)
        with closing(sqlite3.connect(path)) as conn:
            conn.executescript(
                """
                ALTER TABLE offline ADD COLUMN message_id TEXT NOT NULL DEFAULT '';
                CREATE TABLE resume_token (
                    digest TEXT PRIMARY KEY, name TEXT NOT NULL, expires REAL NOT NULL,
                    used INTEGER NOT NULL DEFAULT 0
                );
                CREATE TABLE conversation (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);
                CREATE TABLE message (
                    seq INTEGER PRIMARY KEY, conversation INTEGER NOT NULL, message_id TEXT NOT NULL,
                    sender TEXT NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL, sent_at REAL NOT NULL,
                    recipients TEXT NOT NULL
                );
                CREATE INDEX message_by_conversation ON message (conversation, seq);
                CREATE TABLE member (name TEXT NOT NULL, conversation INTEGER NOT NULL,
                    PRIMARY KEY (name, conversation)) WITHOUT ROWID;
                """
            )
            group = "@columbia\tgoogle\tseas"
            conn.executemany(
                "INSERT INTO conversation (id, key) VALUES (?, ?)",
                [(1, pair("columbia", "seas")), (2, group), (3, EVERYONE)],
            )
            conn.executemany(
                "INSERT INTO member (name, conversation) VALUES (?, ?)",
                [("columbia", 1), ("seas", 1), ("columbia", 2), ("google", 2), ("seas", 2)],
            )
            conn.executemany(
                "INSERT INTO message (seq, conversation, message_id, sender, kind, text, sent_at, recipients)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (1, 1, "p1", "columbia", "private", "first", 1.0, "seas"),
                    (2, 2, "g1", "columbia", "broadcast", "to you two", 2.0, "seas\tgoogle"),
                    (3, 3, "b1", "google", "broadcast", "to all", 3.0, ""),
                    (4, 1, "p2", "seas", "private", "last", 4.0, "columbia"),
                ],
            )
            conn.commit()
        store = SQLiteStore(path, reactor)
        self.addCleanup(store.close)
        self.assertEqual(user_version(path), SCHEMA_VERSION)
        self.assertEqual(
            rows_per_conversation(path),
            {pair("columbia", "seas"): 3, pair("columbia", "google"): 1, EVERYONE: 1},
        )
        page, _ = await store.conversation_history(pair("columbia", "seas"), 10)
        self.assertEqual([d.text for d in page], ["first", "to you two", "last"])
        self.assertEqual(page[1].to, ("seas", "google"))
        self.assertEqual([d.text for d in await store.history_for("google", 20)], ["to you two", "to all"])
        listed = await store.conversations_of("google", 0.0)
        self.assertEqual({c.key for c in listed}, {pair("columbia", "google"), EVERYONE})
        # What was kept before is found by a search.
        result = await store.search("google", ("you", "two"), 10)
        assert result is not None
        self.assertEqual([d.id for d, _ in result[0]], ["g1"])
        # Rooms work in the migrated file.
        self.assertTrue(await store.save_room("#dev", "#Dev"))
        await store.join_room("#dev", "google")
        listed = await store.conversations_of("google", 0.0)
        self.assertIn("#dev", {c.key for c in listed})

    def test_a_database_from_a_newer_server_is_refused_and_left_alone(self) -> None:
        path = self.first_release_database(SCHEMA_VERSION + 1)
        with self.assertRaises(StoreError) as caught:
            SQLiteStore(path, reactor)
        self.assertIn(f"schema version {SCHEMA_VERSION + 1}", str(caught.exception))
        self.assertEqual(user_version(path), SCHEMA_VERSION + 1)
        with closing(sqlite3.connect(path)) as conn:
            tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.assertNotIn("history", tables)


# --- Redis ----------------------------------------------------------------------
