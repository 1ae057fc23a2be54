"""
The store contract (L{tests.unit.test_store.StoreContract}) against a real
Redis, and what only a shared, remote store must do.
"""

from __future__ import annotations

import atexit
import re
import signal
from typing import Any

import attrs
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from chat.server.backends.redis import keys as rediskeys
from chat.server.backends.redis.link import RedisError, RedisLink, Unavailable
from chat.server.backends.redis.store import TOKEN_MARGIN, RedisStore
from chat.server.conversations import pair
from chat.server.events import Delivery, Kind
from chat.server.interfaces import Snapshot
from tests.e2e.redis_server import RedisServer, connect, redis_server
from tests.expect import until
from tests.unit.test_store import StoreContract, hello, private

# The global reactor, typed loosely: it provides every interface used here.
reactor: Any = _reactor

_shared_redis: RedisServer | None = None


def shared_redis() -> RedisServer:
    """
    One redis-server for all of L{RedisStoreTests}, emptied before each
    test: starting one takes a tenth of a second, and there are many tests.
    Started on first use and stopped when the process exits, because trial
    does not call C{setUpClass} or C{tearDownClass}.  Started again if a
    test stopped it.
    """
    global _shared_redis
    server = _shared_redis
    if server is None or server.process is None or server.process.poll() is not None:
        server = _shared_redis = RedisServer()
        server.start()
        atexit.register(server.remove)
    return server


async def until_connected(link: RedisLink, connected: bool, timeout: float = 20) -> None:
    """Wait until C{link} has noticed its connection is lost, or has made it again."""
    what = f"{link.description} connected is {connected}"
    await until(lambda: link.connected == connected, what, timeout, every=0.05)


class RedisStoreTests(StoreContract, unittest.TestCase):
    """
    Every contract test against a real Redis (never skipped: without
    redis-server these fail), and what only a shared, remote store must do.
    """

    timeout = 30
    server: RedisServer
    link: RedisLink

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        self.server = shared_redis()

        def connected(link: RedisLink) -> Deferred[None]:
            self.link = link
            return link.execute("FLUSHALL").addCallback(made)

        def made(_: object) -> None:
            self.store = self.make_store()

        return connect(self, self.server).addCallback(connected)

    def make_store(self, history: int = 200) -> Any:
        return RedisStore(self.link, history)

    async def reloaded(self) -> Any:
        """Rooms are what another node (or this one restarted) loads."""
        return await self.other_store()

    async def other_store(self, server: RedisServer | None = None) -> RedisStore:
        """A store on a link of its own, loaded: another node, or this one restarted."""
        store = RedisStore(await connect(self, server or self.server))
        await store.load()
        return store

    async def check_snapshot(self, seen: dict[str, float], intros: dict[str, str]) -> None:
        """What another node, or this one restarted, loads."""
        snapshot = (await self.other_store()).snapshot()
        self.assertEqual(snapshot.last_seen, seen)
        self.assertEqual(snapshot.intros, intros)

    def test_the_snapshot_is_empty_until_loaded(self) -> None:
        self.assertEqual(self.store.snapshot(), Snapshot({}, {}))

    async def test_load_returns_the_snapshot(self) -> None:
        await self.store.set_intro("columbia", "hi")
        await self.store.mark_seen({"columbia": 12.5})
        loaded = await self.store.load()
        self.assertEqual(loaded, Snapshot({"columbia": 12.5}, {"columbia": "hi"}))
        self.assertEqual(self.store.snapshot(), loaded)

    async def test_history_kept_per_user_is_moved_to_one_entry_per_message(self) -> None:
        """
        What the first clusters kept (a list per user, a private message in
        both users' lists) is moved by the first node to load, and each
        user reads the same history as before.
        """
        old = rediskeys.PREFIX + "history:"

        def value(seq: int, d: Delivery) -> str:
            return f'{{"seq":{seq},"d":{rediskeys.encode_delivery(d)}}}'

        hi = Delivery("columbia", "hi seas", Kind.PRIVATE, 1.0, "p1", ("seas",))
        shout = Delivery("google", "hi all", Kind.BROADCAST, 2.0, "b1")
        two = Delivery("columbia", "hi you two", Kind.BROADCAST, 3.0, "g1", ("seas", "google"))
        # Lists are newest first.
        await self.link.execute("LPUSH", old + "columbia", value(1, hi), value(3, two))
        await self.link.execute("LPUSH", old + "seas", value(1, hi), value(3, two))
        await self.link.execute("LPUSH", old + "google", value(3, two))
        await self.link.execute("LPUSH", rediskeys.HISTORY_PUBLIC, value(2, shout))
        await self.link.execute("SET", rediskeys.HISTORY_SEQ, 3)
        store = await self.other_store()
        self.assertEqual(await store.history_for("columbia", 20), [hi, shout, two])
        self.assertEqual(await store.history_for("seas", 20), [hi, shout, two])
        self.assertEqual(await store.history_for("google", 20), [shout, two])
        self.assertEqual(await self.link.execute("KEYS", old + "*"), [])
        self.assertEqual(await self.link.execute("LLEN", rediskeys.history(pair("columbia", "seas"))), 2)
        # New messages go after the old ones; another load moves nothing twice.
        after = private("seas", "columbia", "after", 4.0)
        await store.save_history([after])
        await (await self.other_store()).load()
        self.assertEqual(await store.history_for("seas", 20), [hi, shout, two, after[0]])

    async def test_a_groups_messages_move_to_each_recipients_conversation_in_order(self) -> None:
        """
        Version 2 kept a message to several users in the group's list;
        version 3 merges it into each recipient's conversation with its
        sender, by sequence number, and the group's list is gone.
        """

        def value(seq: int, d: Delivery) -> str:
            return f'{{"seq":{seq},"d":{rediskeys.encode_delivery(d)}}}'

        first = Delivery("columbia", "first", Kind.PRIVATE, 1.0, "p1", ("seas",))
        two = Delivery("columbia", "to you two", Kind.BROADCAST, 2.0, "g1", ("seas", "google"))
        last = Delivery("seas", "last", Kind.PRIVATE, 3.0, "p2", ("columbia",))
        group = "@columbia\tgoogle\tseas"
        await self.link.execute("SET", rediskeys.SCHEMA, 2)
        await self.link.execute(
            "LPUSH", rediskeys.history(pair("columbia", "seas")), value(1, first), value(3, last)
        )
        await self.link.execute("LPUSH", rediskeys.history(group), value(2, two))
        for name in ("columbia", "seas", "google"):
            await self.link.execute("SADD", rediskeys.conversations_of(name), group)
        for name in ("columbia", "seas"):
            await self.link.execute("SADD", rediskeys.conversations_of(name), pair("columbia", "seas"))
        await self.link.execute("SET", rediskeys.HISTORY_SEQ, 3)
        store = await self.other_store()
        page, _ = await store.conversation_history(pair("columbia", "seas"), 10)
        self.assertEqual(page, [first, two, last])
        self.assertEqual(await store.history_for("google", 20), [two])
        self.assertEqual(await store.history_for("columbia", 20), [first, two, last])
        self.assertEqual(await self.link.execute("EXISTS", rediskeys.history(group)), 0)
        self.assertEqual(
            set(await self.link.execute("SMEMBERS", rediskeys.conversations_of("google"))),
            {pair("columbia", "google")},
        )
        self.assertEqual(await self.link.execute("GET", rediskeys.SCHEMA), "3")

    async def test_two_stores_on_one_redis_see_what_the_other_saved(self) -> None:
        """Two nodes of a cluster: what one keeps, the other reads, and an ack by either counts."""
        other = await self.other_store()
        await self.store.save_offline(["seas"], hello(text="for seas"))
        [m] = await other.offline_for("seas")
        self.assertEqual(m.delivery, hello(text="for seas"))
        self.assertIsInstance(m.id, str)

        entry = private("columbia", "seas", "kept", 5.0)
        await self.store.save_history([entry])
        self.assertEqual(await other.history_for("seas", 20), [entry[0]])

        await self.store.set_intro("columbia", "The lion")
        await self.store.mark_seen({"columbia": 99.25})
        self.assertEqual(await other.load(), Snapshot({"columbia": 99.25}, {"columbia": "The lion"}))

        await self.store.save_token("columbia", "d1", 2000.0, 1000.0)
        self.assertEqual(await other.use_token("d1", 1500.0), ("columbia", "ok"))
        self.assertEqual(await self.store.use_token("d1", 1501.0), ("columbia", "reused"))

        await other.ack([m])
        self.assertEqual(await self.store.offline_for("seas"), [])

    async def test_a_room_made_by_another_node_has_its_name_and_members_in_redis(self) -> None:
        """What a node that has not heard of the room yet reads when a user of its joins it."""
        other = await self.other_store()
        self.assertIs(await self.store.save_room("#dev", "#Dev"), True)
        await self.store.join_room("#dev", "seas")
        self.assertEqual(await other.room_name("#dev"), "#Dev")
        self.assertEqual(await other.room_members("#dev"), frozenset({"seas"}))
        self.assertEqual(await other.room_members("#nowhere"), frozenset())

    async def test_a_message_to_several_recipients_is_in_each_inbox_once(self) -> None:
        await self.store.save_offline(["seas", "google", "facebook"], hello(text="all"))
        for name in ("seas", "google", "facebook"):
            [m] = await self.store.offline_for(name)
            self.assertEqual((m.recipient, m.delivery.text), (name, "all"))
        # Acknowledging one recipient's copy leaves the others'.
        [m] = await self.store.offline_for("google")
        await self.store.ack([m])
        self.assertEqual(await self.store.offline_for("google"), [])
        self.assertEqual(len(await self.store.offline_for("seas")), 1)

    async def test_history_of_a_message_handed_over_is_the_message_as_it_was_kept(self) -> None:
        # The JSON made for the hand-over is reused for the history entry of
        # the same message; one made from it (fewer recipients, the same id)
        # is encoded afresh.
        other = await self.other_store()
        sent = Delivery("columbia", "to both", Kind.PRIVATE, 1.0, "m-1", ("seas", "google"))
        await self.store.hand_over([("seas", ""), ("google", "")], sent)
        reached = attrs.evolve(sent, to=("seas",))
        await self.store.save_history([(reached, pair("columbia", "seas"))])
        self.assertEqual(await other.history_for("seas", 20), [reached])
        alone = Delivery("columbia", "hi", Kind.PRIVATE, 2.0, "m-2", ("seas",))
        await self.store.hand_over([("seas", "")], alone)
        await self.store.save_history([(alone, pair("columbia", "seas"))])
        self.assertEqual(await other.history_for("seas", 20), [reached, alone])

    async def test_acking_messages_of_several_recipients_at_once(self) -> None:
        await self.store.save_offline(["seas", "google"], hello(text="one"))
        await self.store.save_offline(["seas"], hello(text="two"))
        messages = await self.store.offline_for("seas") + await self.store.offline_for("google")
        await self.store.ack(messages)
        self.assertEqual(await self.store.offline_for("seas"), [])
        self.assertEqual(await self.store.offline_for("google"), [])

    async def test_text_that_looks_like_a_number_comes_back_as_the_same_text(self) -> None:
        """A bulk string is text: "123" is not the number 123, nor "1e5" 100000.0."""
        other = await self.other_store()
        await self.store.save_offline(["007"], Delivery("123", "1e5", Kind.PRIVATE, 1.0, "42", ("007",)))
        [m] = await other.offline_for("007")
        self.assertEqual(m.delivery, Delivery("123", "1e5", Kind.PRIVATE, 1.0, "42", ("007",)))
        entry = (Delivery("123", "0x10", Kind.PRIVATE, 2.0, "7", ("007",)), pair("123", "007"))
        await self.store.save_history([entry])
        self.assertEqual(await other.history_for("007", 20), [entry[0]])
        await self.store.set_intro("123", "1e5")
        await self.store.save_token("123", "456", 2000.0, 1000.0)
        self.assertEqual(await other.use_token("456", 1500.0), ("123", "ok"))
        self.assertEqual((await other.load()).intros, {"123": "1e5"})

    async def test_times_come_back_exactly(self) -> None:
        """Floats are written so they read back the same, not with six decimals."""
        when = 1700000000.1234567
        await self.store.mark_seen({"seas": when, "google": 1e-7})
        await self.store.save_offline(["seas"], hello(at=when))
        await self.store.save_history([private("columbia", "seas", "t", when)])
        other = await self.other_store()
        self.assertEqual(other.snapshot().last_seen, {"seas": when, "google": 1e-7})
        [m] = await other.offline_for("seas")
        self.assertEqual(m.delivery.sent_at, when)
        [d] = await other.history_for("seas", 20)
        self.assertEqual(d.sent_at, when)

    async def test_a_token_expires_at_its_exact_time(self) -> None:
        await self.store.save_token("columbia", "d1", 1000.5, 1000.0)
        self.assertEqual(await self.store.use_token("d1", 1000.5), (None, "expired"))
        await self.store.save_token("columbia", "d2", 1000.5, 1000.0)
        self.assertEqual(await self.store.use_token("d2", 1000.4999), ("columbia", "ok"))

    async def test_redis_forgets_tokens_some_time_after_they_expire(self) -> None:
        await self.store.save_token("columbia", "d1", 1600.0, 1000.0)
        for key in (rediskeys.TOKEN + "d1", rediskeys.TOKENS_OF + "columbia"):
            ttl = int(await self.link.execute("TTL", key))
            self.assertTrue(0 < ttl <= 600 + TOKEN_MARGIN, (key, ttl))
            self.assertGreater(ttl, 600 + TOKEN_MARGIN - 60, key)

    async def test_history_saved_just_before_the_read_is_in_the_answer(self) -> None:
        """
        A script sent first on a connection must not be overtaken by a
        command sent after it while Redis is still learning the script.
        """
        entry = private("columbia", "seas", "now", 1.0)
        saved = self.store.save_history([entry])
        read = self.store.history_for("seas", 20)
        token = self.store.save_token("seas", "d1", 2000.0, 1000.0)
        used = self.store.use_token("d1", 1000.0)
        await saved
        await token
        self.assertEqual(await read, [entry[0]])
        self.assertEqual(await used, ("seas", "ok"))

    async def test_a_script_flushed_from_redis_is_sent_again(self) -> None:
        await self.store.save_history([private("columbia", "seas", "one", 1.0)])
        await self.link.execute("SCRIPT", "FLUSH")
        await self.store.save_history([private("columbia", "seas", "two", 2.0)])
        texts = [d.text for d in await self.store.history_for("seas", 20)]
        self.assertEqual(texts, ["one", "two"])

    async def test_a_durable_write_waits_for_waitaof_when_asked(self) -> None:
        """
        Redis before 7.2 has no WAITAOF: that the save fails there shows it
        was asked, and fails the save rather than being skipped; from 7.2
        on it succeeds.  A write not said to be durable does not ask.
        """
        info = await self.link.execute("INFO", "server")
        match = re.search(r"redis_version:(\d+)\.(\d+)", info)
        assert match is not None
        version = (int(match[1]), int(match[2]))
        self.store.waitaof = True
        await self.store.mark_seen({"seas": 1.0})
        saves = [
            self.store.save_offline(["seas"], hello()),
            self.store.set_intro("seas", "hi"),
            self.store.save_token("seas", "d1", 2000.0, 1000.0),
        ]
        for saved in saves:
            if version >= (7, 2):
                await saved
            else:
                failure = await self.assertFailure(saved, RedisError)
                self.assertIn("waitaof", str(failure).lower())

    async def test_a_stopped_redis_fails_each_call_with_unavailable(self) -> None:
        """Nothing waits for Redis to come back: every call fails at once."""
        server = redis_server(self)
        link = await connect(self, server)
        store = RedisStore(link)
        await store.save_history([private("columbia", "seas", "one", 1.0)])
        server.stop()
        # Before the link has noticed: the command fails when the connection does.
        await self.assertFailure(store.save_offline(["seas"], hello()), Unavailable)
        # After: at once, without sending anything.
        self.assertFalse(link.connected)
        calls: list[Deferred[Any]] = [
            store.save_offline(["seas"], hello()),
            store.offline_for("seas"),
            store.save_history([private("columbia", "seas", "two", 2.0)]),
            store.history_for("seas", 20),
            store.mark_seen({"seas": 1.0}),
            store.set_intro("seas", "hi"),
            store.save_token("seas", "d1", 2000.0, 1000.0),
            store.use_token("d1", 1000.0),
            store.load(),
        ]
        for call in calls:
            self.assertTrue(call.called)
            await self.assertFailure(call, Unavailable)

    async def test_saved_data_survives_redis_being_killed(self) -> None:
        """
        With appendfsync always, a save acknowledged is on disk: Redis killed
        (not even a clean shutdown) and started again still has it.
        """
        server = redis_server(self)
        store = RedisStore(await connect(self, server))
        await store.save_offline(["seas"], hello(text="kept"))
        entry = private("columbia", "seas", "history", 2.0)
        await store.save_history([entry])
        await store.set_intro("columbia", "The lion")
        await store.save_token("columbia", "d1", 2000.0, 1000.0)
        server.stop(signal.SIGKILL)
        server.start()
        again = await self.other_store(server)
        [m] = await again.offline_for("seas")
        self.assertEqual(m.delivery, hello(text="kept"))
        self.assertEqual(await again.history_for("seas", 20), [entry[0]])
        self.assertEqual(again.snapshot().intros, {"columbia": "The lion"})
        self.assertEqual(await again.use_token("d1", 1500.0), ("columbia", "ok"))

    async def test_after_a_restart_the_same_link_keeps_commands_in_order(self) -> None:
        """
        A restarted Redis has forgotten the scripts: the first save on the
        new connection teaches it again without being overtaken by a read.
        """
        server = redis_server(self)
        link = await connect(self, server)
        store = RedisStore(link)
        await store.save_offline(["seas"], hello(text="before"))
        await store.save_history([private("columbia", "seas", "one", 1.0)])
        server.stop()
        await until_connected(link, False)
        server.start()
        await until_connected(link, True)
        saved = store.save_offline(["seas"], hello(text="after"))
        read = store.offline_for("seas")
        history = store.save_history([private("columbia", "seas", "two", 2.0)])
        kept = store.history_for("seas", 20)
        await saved
        await history
        self.assertEqual([m.delivery.text for m in await read], ["before", "after"])
        self.assertEqual([d.text for d in await kept], ["one", "two"])
