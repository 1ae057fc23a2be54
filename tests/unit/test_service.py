"""The service on its own: state that outlives a restart, and the realm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.trial import unittest
from zope.interface import implementer

from chat.server.backends.memory import MemoryStore
from chat.server.batching import newest_per_conversation
from chat.server.edges.text import TEXT
from chat.server.events import Delivery, Goodbye, Kind, SessionInfo, StoredMessage
from chat.server.interfaces import IChatUser, IParticipant, Joining
from chat.server.realm import ChatRealm, ChatUser
from chat.server.service import HISTORY_EVERY, ChatService
from tests.unit.harness import capture_log


@implementer(IParticipant)
class Recipient:
    """A participant that keeps what it is sent, rendered as text."""

    format = TEXT

    def __init__(self) -> None:
        self.received: list[object] = []
        self.kept: list[StoredMessage] = []
        self.goodbyes: list[Goodbye] = []

    def deliver(self, payload: object) -> None:
        self.received.append(payload)

    def handed(self, messages: Sequence[StoredMessage]) -> None:
        """Stored messages shown: kept for the test to acknowledge."""
        self.kept.extend(messages)

    def goodbye(self, reason: Goodbye) -> Deferred[None]:
        self.goodbyes.append(reason)
        return succeed(None)

    def about(self) -> SessionInfo | None:
        return None


class ServiceTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(10_000)
        self.store = MemoryStore()

    def service(self) -> ChatService:
        return ChatService(frozenset({"columbia", "seas", "google"}), self.store, self.clock)

    def test_intros_and_wholast_come_back_from_the_store(self) -> None:
        first = self.service()
        seas = Recipient()
        self.successResultOf(first.join("seas", seas))
        user = ChatUser("seas", first, seas)
        self.successResultOf(user.set_intro("summer"))
        self.clock.advance(60)
        user.logout()
        self.clock.advance(0)  # the presence write goes out on the next turn
        restarted = self.service()
        self.assertEqual(restarted.intros, {"seas": "summer"})
        self.clock.advance(61)
        [entry] = restarted.wholast("columbia", 2)
        self.assertEqual((entry.name, entry.intro, entry.online), ("seas", "summer", False))
        self.assertEqual(restarted.wholast("columbia", 1), [])

    def test_logins_in_one_turn_are_recorded_in_one_write(self) -> None:
        writes: list[dict[str, float]] = []
        original = self.store.mark_seen

        def counting(seen: Mapping[str, float]) -> Deferred[None]:
            writes.append(dict(seen))
            return original(seen)

        self.store.mark_seen = counting  # type: ignore[method-assign]
        service = self.service()
        for name in ("columbia", "seas", "google"):
            service.join(name, Recipient())
        self.assertEqual(writes, [])
        self.clock.advance(0)
        now = self.clock.seconds()
        self.assertEqual(writes, [{"columbia": now, "seas": now, "google": now}])

    def test_checkpoint_logs_a_summary_instead_of_a_line_per_login(self) -> None:
        service = self.service()
        events = capture_log(self)
        service.startService()
        self.addCleanup(service.stopService)
        columbia = Recipient()
        self.successResultOf(service.join("columbia", columbia))
        service.leave("columbia", columbia)
        service.join("seas", Recipient())
        self.assertEqual([e for e in events if e.get("log_namespace") == "chat.server.presence"], [])
        self.clock.advance(60)
        [summary] = [e for e in events if e.get("log_namespace") == "chat.server.presence"]
        self.assertEqual((summary["online"], summary["logins"], summary["logouts"]), (1, 2, 1))
        self.assertEqual(formatEvent(summary), "1 online; 2 logins and 1 logout in the last 60 s")

    def test_checkpoint_records_online_users_periodically(self) -> None:
        service = self.service()
        service.startService()
        service.join("columbia", Recipient())
        self.clock.advance(60)
        self.assertEqual(self.store.snapshot().last_seen["columbia"], self.clock.seconds())
        service.stopService()

    def test_realm_joins_the_user_with_the_participant_the_mind_names(self) -> None:
        service = self.service()
        participant = Recipient()
        joined = ChatRealm(service).requestAvatar(b"columbia", Joining(participant), IChatUser)
        interface, avatar, logout = self.successResultOf(joined)
        self.assertIs(interface, IChatUser)
        self.assertEqual(avatar.name, "columbia")
        self.assertIs(service.registry.online["columbia"], participant)
        logout()
        self.assertNotIn("columbia", service.registry.online)

    def test_the_realm_wants_a_joining_mind(self) -> None:
        realm = ChatRealm(self.service())
        self.assertRaises(NotImplementedError, realm.requestAvatar, b"columbia", Recipient(), IChatUser)


class BroadcastBatchTests(unittest.TestCase):
    """Broadcasts of one reactor turn reach each recipient in one write, in order."""

    def setUp(self) -> None:
        self.clock = Clock()
        users = frozenset({"columbia", "seas", "google", "facebook"})
        self.service = ChatService(users, MemoryStore(), self.clock)
        self.people = {name: Recipient() for name in ("columbia", "seas", "google")}
        for name, recipient in self.people.items():
            self.service.join(name, recipient)

    def test_broadcasts_of_one_turn_arrive_joined_in_one_write(self) -> None:
        self.service.broadcast("columbia", "one")
        self.service.broadcast("seas", "two")
        self.service.broadcast("columbia", "three")
        self.assertEqual(self.people["google"].received, [])
        self.clock.advance(0)
        self.assertEqual(
            self.people["google"].received,
            [b"columbia (broadcast): one\r\nseas (broadcast): two\r\ncolumbia (broadcast): three\r\n"],
        )
        # Senders get everyone's but their own.
        self.assertEqual(self.people["columbia"].received, [b"seas (broadcast): two\r\n"])
        self.assertEqual(
            self.people["seas"].received,
            [b"columbia (broadcast): one\r\ncolumbia (broadcast): three\r\n"],
        )

    def test_a_single_broadcast_is_the_line_itself(self) -> None:
        self.assertEqual(self.service.broadcast("columbia", "hi").count, 2)
        self.clock.advance(0)
        self.assertEqual(self.people["seas"].received, [b"columbia (broadcast): hi\r\n"])
        self.assertEqual(self.people["columbia"].received, [])

    def test_a_private_message_after_a_broadcast_arrives_after_it(self) -> None:
        self.service.broadcast("columbia", "to all")
        self.service.send("columbia", ["seas"], "to you", Kind.PRIVATE)
        self.service.flush()  # the end of the read
        self.assertEqual(
            self.people["seas"].received,
            [b"columbia (broadcast): to all\r\n", b"columbia (private): to you\r\n"],
        )

    def test_someone_joining_mid_turn_gets_only_later_broadcasts(self) -> None:
        self.service.broadcast("columbia", "before")
        latecomer = Recipient()
        self.service.join("facebook", latecomer)
        self.service.broadcast("columbia", "after")
        self.clock.advance(0)
        self.assertEqual(latecomer.received, [b"columbia (broadcast): after\r\n"])
        self.assertEqual(
            self.people["google"].received,
            [b"columbia (broadcast): before\r\n", b"columbia (broadcast): after\r\n"],
        )

    def test_someone_leaving_mid_turn_still_gets_what_was_sent_before(self) -> None:
        self.service.broadcast("columbia", "last words")
        self.service.leave("google", self.people["google"])
        self.assertEqual(self.people["google"].received, [b"columbia (broadcast): last words\r\n"])


class InboxTests(unittest.TestCase):
    """What another node put in the inbox of a user here: named (inbox_ready) or passed on (inbox_arrived)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.service = ChatService(frozenset({"columbia", "seas"}), self.store, self.clock)
        self.seas = Recipient()
        self.successResultOf(self.service.join("seas", self.seas))

    def test_what_waits_is_handed_over_once_and_forgotten_once_the_user_has_it(self) -> None:
        hi = Delivery("columbia", "hi", Kind.PRIVATE, 1.0, "m1", ("seas",))
        self.store.save_offline(["seas"], hi)
        self.service.inbox_ready("seas")
        self.service.inbox_ready("seas")
        self.assertEqual([m.delivery for m in self.seas.kept], [hi])
        # Still in the inbox until the session says the user has it: a
        # connection that dropped meanwhile would get it at the next login.
        self.assertEqual(len(self.successResultOf(self.store.offline_for("seas"))), 1)
        self.successResultOf(self.service.shown("seas", self.seas.kept))
        self.assertEqual(self.successResultOf(self.store.offline_for("seas")), [])

    def test_a_user_with_nothing_handed_keeps_no_set_of_ids(self) -> None:
        """
        An empty set is 216 bytes, once the largest thing a logged-in
        connection kept: it is made when something is handed, dropped once
        all of it is shown.
        """
        self.service.inbox_ready("seas")
        self.assertIsNone(self.service._handed["seas"].ids)
        hi = Delivery("columbia", "hi", Kind.PRIVATE, 1.0, "m1", ("seas",))
        self.store.save_offline(["seas"], hi)
        self.service.inbox_ready("seas")
        self.assertEqual(self.service._handed["seas"].ids, {"m1"})
        self.successResultOf(self.service.shown("seas", self.seas.kept))
        self.assertIsNone(self.service._handed["seas"].ids)

    def test_a_read_answered_after_the_session_left_counts_nothing_for_the_next(self) -> None:
        reads: list[Deferred[list[StoredMessage]]] = []

        def offline_for(name: str) -> Deferred[list[StoredMessage]]:
            reads.append(Deferred())
            return reads[-1]

        hi = Delivery("columbia", "hi", Kind.PRIVATE, 1.0, "m1", ("seas",))
        self.store.save_offline(["seas"], hi)
        [kept] = self.successResultOf(self.store.offline_for("seas"))
        self.store.offline_for = offline_for  # type: ignore[method-assign]
        late = self.service.unseen("seas")
        self.service.leave("seas", self.seas)
        self.assertEqual(self.successResultOf(self.service.join("seas", self.seas)), None)
        reads[0].callback([kept])
        self.assertEqual(self.successResultOf(late), [kept])  # for the session that left
        again = self.service.unseen("seas")
        reads[1].callback([kept])
        self.assertEqual(self.successResultOf(again), [kept])  # the next one is shown it too

    def test_notifications_during_a_read_make_one_more_read(self) -> None:
        reads: list[Deferred[list[StoredMessage]]] = []

        def offline_for(name: str) -> Deferred[list[StoredMessage]]:
            reads.append(Deferred())
            return reads[-1]

        self.store.offline_for = offline_for  # type: ignore[method-assign]
        for _ in range(3):
            self.service.inbox_ready("seas")
        self.assertEqual(len(reads), 1)
        reads[0].callback([])
        self.assertEqual(len(reads), 2)
        reads[1].callback([])
        self.assertEqual(len(reads), 2)

    def test_messages_passed_on_are_shown_without_a_read_and_not_again_by_one(self) -> None:
        hi = Delivery("columbia", "hi", Kind.PRIVATE, 1.0, "m1", ("seas",))
        self.store.save_offline(["seas"], hi)
        [kept] = self.successResultOf(self.store.offline_for("seas"))
        self.service.inbox_arrived("seas", [kept])
        self.service.inbox_arrived("seas", [kept])
        self.assertEqual(self.seas.kept, [kept])
        # A read of the inbox (a reconnect) finds it again: not shown twice.
        self.service.inbox_ready("seas")
        self.assertEqual(self.seas.kept, [kept])
        self.successResultOf(self.service.shown("seas", self.seas.kept))
        self.assertEqual(self.successResultOf(self.store.offline_for("seas")), [])

    def test_messages_passed_on_during_a_read_come_from_the_read_after_it_in_order(self) -> None:
        first = Delivery("columbia", "first", Kind.PRIVATE, 1.0, "m1", ("seas",))
        second = Delivery("columbia", "second", Kind.PRIVATE, 2.0, "m2", ("seas",))
        self.store.save_offline(["seas"], first)
        reads: list[Deferred[list[StoredMessage]]] = []
        offline_for = self.store.offline_for

        def held(name: str) -> Deferred[list[StoredMessage]]:
            reads.append(Deferred())
            return reads[-1]

        self.store.offline_for = held  # type: ignore[method-assign]
        self.service.inbox_ready("seas")
        self.store.save_offline(["seas"], second)
        [_, passed] = self.successResultOf(offline_for("seas"))
        self.service.inbox_arrived("seas", [passed])
        self.assertEqual(self.seas.kept, [], "shown before what the read on its way finds")
        reads[0].callback(self.successResultOf(offline_for("seas"))[:1])
        self.assertEqual(len(reads), 2, "the inbox is read again after")
        reads[1].callback(self.successResultOf(offline_for("seas")))
        self.assertEqual([m.delivery for m in self.seas.kept], [first, second])

    def test_messages_passed_on_for_a_user_not_online_here_wait_in_the_inbox(self) -> None:
        later = Delivery("seas", "later", Kind.PRIVATE, 1.0, "m2", ("columbia",))
        self.store.save_offline(["columbia"], later)
        kept = self.successResultOf(self.store.offline_for("columbia"))
        self.service.inbox_arrived("columbia", kept)
        self.assertEqual(len(self.successResultOf(self.store.offline_for("columbia"))), 1)
        self.assertEqual(self.seas.kept, [])

    def test_a_user_not_online_here_is_left_for_the_next_login(self) -> None:
        self.store.save_offline(
            ["columbia"], Delivery("seas", "later", Kind.PRIVATE, 1.0, "m2", ("columbia",))
        )
        self.service.inbox_ready("columbia")
        self.assertEqual(len(self.successResultOf(self.store.offline_for("columbia"))), 1)


class RelayedBroadcastTests(unittest.TestCase):
    """Broadcasts from other nodes' users (IPeerListener.remote_broadcasts)."""

    def test_those_of_one_turn_reach_each_user_in_one_write_with_local_ones(self) -> None:
        clock = Clock()
        service = ChatService(frozenset({"columbia", "seas", "google"}), MemoryStore(), clock)
        seas, google = Recipient(), Recipient()
        self.successResultOf(service.join("seas", seas))
        self.successResultOf(service.join("google", google))
        service.remote_broadcasts([Delivery("columbia", "one", Kind.BROADCAST, 1.0, "r1")])
        service.remote_broadcasts([Delivery("columbia", "two", Kind.BROADCAST, 1.0, "r2")])
        service.broadcast("google", "three")
        self.assertEqual(seas.received, [])
        clock.advance(0)
        self.assertEqual(
            seas.received,
            [b"columbia (broadcast): one\r\ncolumbia (broadcast): two\r\ngoogle (broadcast): three\r\n"],
        )
        self.assertEqual(google.received, [b"columbia (broadcast): one\r\ncolumbia (broadcast): two\r\n"])


class HistoryBacklogTests(unittest.TestCase):
    """A store that falls behind cannot make the history waiting for it grow without bound."""

    def test_newest_per_conversation_keeps_what_the_store_would(self) -> None:
        def d(text: str) -> Delivery:
            return Delivery("columbia", text, Kind.PRIVATE, 1.0, text)

        entries = [(d("a1"), "a"), (d("b1"), "b"), (d("a2"), "a"), (d("a3"), "a")]
        kept = newest_per_conversation(entries, 2)
        self.assertEqual([e[0].text for e in kept], ["b1", "a2", "a3"])
        self.assertEqual([e[0].text for e in newest_per_conversation(entries, 10)], ["a1", "b1", "a2", "a3"])

    def test_history_is_written_at_most_once_an_interval_and_at_once_for_a_reader(self) -> None:
        clock = Clock()
        store = MemoryStore()
        writes: list[list[str]] = []
        save = store.save_history

        def save_history(entries: Any) -> Deferred[None]:
            writes.append([delivery.text for delivery, _ in entries])
            return save(entries)

        store.save_history = save_history  # type: ignore[method-assign]
        service = ChatService(frozenset({"columbia", "seas"}), store, clock, history=200)
        service.join("columbia", Recipient())
        service.join("seas", Recipient())
        service.broadcast("columbia", "one")
        clock.advance(0)
        self.assertEqual(writes, [["one"]])
        service.broadcast("columbia", "two")
        clock.advance(0)
        service.message("seas", "columbia", "three")
        clock.advance(HISTORY_EVERY / 2)
        self.assertEqual(writes, [["one"]])
        clock.advance(HISTORY_EVERY / 2)
        self.assertEqual(writes, [["one"], ["two", "three"]])
        # Someone reading history gets what was sent, without waiting.
        service.broadcast("columbia", "four")
        service.history("seas", 10)
        self.assertEqual(writes[-1], ["four"])

    def stalled_service(self, names: list[str]) -> tuple[ChatService, Clock, list[Deferred[None]]]:
        """
        A service keeping 200 messages a conversation, with C{names}
        logged in, whose store never finishes a history write until the
        test fires it (the writes, in order, are the list).
        """
        clock = Clock()
        store = MemoryStore()
        stalled: list[Deferred[None]] = []

        def save_history(entries: object) -> Deferred[None]:
            stalled.append(Deferred())
            return stalled[-1]

        store.save_history = save_history  # type: ignore[method-assign]
        service = ChatService(frozenset(names), store, clock, history=200)
        for name in names:
            service.join(name, Recipient())
        return service, clock, stalled

    def test_a_flood_of_broadcasts_behind_a_stalled_store_keeps_a_bounded_backlog(self) -> None:
        service, clock, stalled = self.stalled_service(["columbia", "seas"])
        for i in range(50_000):
            service.broadcast("columbia", f"spam {i}")
            if i % 100 == 0:
                clock.advance(0)
        clock.advance(0)
        waiting = service._history._items
        self.assertLess(len(waiting), 4 * 2000)
        self.assertEqual(waiting[-1][0].text, "spam 49999")
        # The write in flight ends: what waits goes next (once a write's
        # interval has passed), the newest kept.
        stalled[0].callback(None)
        clock.advance(0)
        self.assertEqual(len(stalled), 1)
        clock.advance(HISTORY_EVERY)
        self.assertEqual(len(stalled), 2)

    def test_a_flood_over_many_conversations_behind_a_stalled_store_keeps_at_most_a_bound(self) -> None:
        """
        Each conversation under the limit, but together more than memory
        should hold: the oldest go, said once in the log (a line a minute).
        """
        names = [f"user{i}" for i in range(40)]
        service, clock, _ = self.stalled_service(names)
        service._history.MAX_KEPT = 3000
        events = capture_log(self)
        for round_ in range(250):
            for i in range(0, 40, 2):  # 20 conversations, 200 messages each at most kept
                service.message(names[i], names[i + 1], f"m {round_} {i}")
            clock.advance(0)
            self.assertLessEqual(len(service._history._items), 2 * 3000)
        waiting = service._history._items
        self.assertEqual(waiting[-1][0].text, "m 249 38")
        dropped = [e for e in events if e.get("kind") == "history dropped"]
        self.assertEqual(len(dropped), 1, [formatEvent(e) for e in dropped])
        self.assertIn("waited for the store", formatEvent(dropped[0]))
