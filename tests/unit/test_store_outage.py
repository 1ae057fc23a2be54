"""
The store goes away (a cluster's Redis stops, a disk fills) while users
chat, in the in-memory harness with a task.Clock: nothing spins, the log
stays short, and nothing is recorded or acknowledged that did not happen.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface import implementer

from chat.server.backends.memory import MemoryStore
from chat.server.conversations import EVERYONE
from chat.server.events import Announcement, Broadcasted, Delivery, Kind, SessionInfo
from chat.server.health import Backoff, Health
from chat.server.interfaces import IPeerListener, IPeers, IRegistry, Unavailable
from chat.server.registry import LocalRegistry
from chat.server.service import ChatService
from tests.unit.harness import Harness, HeldStore, OutageStore, capture_log
from tests.unit.test_service import Recipient

DOWN = "The server cannot reach its database right now, so that was not done; please try again."


class HistoryWaitsForTheStoreTests(unittest.TestCase):
    """History and last-seen times gathered while the store is down are written once it is back."""

    def setUp(self) -> None:
        self.store = OutageStore()
        self.server = Harness(store=self.store)
        self.seas = self.server.login("seas")
        self.columbia = self.server.login("columbia")
        self.log = capture_log(self)

    def test_a_store_that_is_down_is_not_retried_every_turn(self) -> None:
        """
        A minute of a broadcast every tenth of a second while the store is
        down: the batches wait (a few attempts with backoff), they are not
        tried again on every turn of the reactor, which spun a node at 99 %.
        """
        self.store.down()
        for i in range(600):
            self.columbia.send(f"broadcast message number {i}")
            self.server.clock.advance(0.1)
        self.assertIn("columbia (broadcast): number 599", self.seas.read())
        self.assertLessEqual(self.store.calls_while_down, 12)
        # What was kept meanwhile is all written once the store is back.
        self.store.up()
        self.server.clock.advance(0)
        kept = [d.text for _, d in self.store._history[EVERYONE]]
        self.assertEqual(kept, [f"number {i}" for i in range(400, 600)])

    def test_an_idle_server_with_its_store_down_does_nothing_for_an_hour(self) -> None:
        self.store.down()
        self.columbia.send("broadcast message one")
        for _ in range(3600):
            self.server.clock.advance(1)
        # The checkpoint's last-seen write each minute, and the history's
        # retries with a backoff up to 30 s, each spread by its jitter (at
        # shortest 24 s: a bound taking 30 s failed a CI run): a
        # handful a minute, not one per turn.
        shortest = 30 * (1 - Backoff().jitter)
        self.assertLessEqual(self.store.calls_while_down, 60 + 3600 / shortest + 10)
        self.assertLessEqual(len(self.server.clock.getDelayedCalls()), 6)

    def test_the_log_says_it_once_not_once_per_message(self) -> None:
        self.store.down()
        for i in range(300):
            self.columbia.send(f"message google offline number {i}")
            self.server.clock.advance(0.2)
        self.columbia.read()
        warnings = [e for e in self.log if e.get("log_level") is not None and e["log_level"].name != "debug"]
        self.assertLessEqual(len(warnings), 4, [e.get("log_format") for e in warnings])


class NothingRecordedThatWasNotSentTests(unittest.TestCase):
    def setUp(self) -> None:
        self.store = OutageStore()
        self.server = Harness(store=self.store)
        self.columbia = self.server.login("columbia")

    def history(self, conn: Any) -> str:
        conn.send("history")
        return str(conn.read())

    def test_a_message_refused_while_the_store_is_down_is_nowhere(self) -> None:
        seas = self.server.login("seas")
        seas.lose()
        self.store.down()
        self.columbia.send("message seas refused one", "broadcast user seas google message refused two")
        self.assertEqual(self.columbia.read(), f"{DOWN}\r\nCommand: {DOWN}\r\nCommand: ")
        self.assertNotIn("save_offline", self.store.refused)
        self.store.up()
        self.server.clock.advance(0)
        self.assertNotIn("refused", self.history(self.columbia))
        seas = self.server.login("seas")
        self.assertNotIn("refused", seas.read() + self.history(seas))
        google = self.server.login("google")
        self.assertNotIn("refused", google.read() + self.history(google))

    def test_a_message_to_nobody_is_not_kept(self) -> None:
        self.columbia.send("broadcast user columbia message self")
        self.assertEqual(self.columbia.read(), "Nobody to send to.\r\nCommand: ")
        self.columbia.send("broadcast message anyone?")
        self.assertEqual(
            self.columbia.read(), "Nobody else is online; the broadcast reached no one.\r\nCommand: "
        )
        self.assertEqual(self.history(self.columbia), "No messages yet.\r\nCommand: ")

    def test_a_message_delivered_while_the_store_is_down_is_kept_once_it_is_back(self) -> None:
        seas = self.server.login("seas")
        self.store.down()
        self.columbia.send("message seas live")
        self.assertEqual(self.columbia.read(), "Sent to seas.\r\nCommand: ")
        self.assertIn("columbia (private): live", seas.read())
        self.store.up()
        self.server.clock.advance(0)
        self.assertIn("columbia to seas (private): live", self.history(self.columbia))

    def test_a_store_failing_once_the_message_is_on_its_way_gets_a_receipt_naming_who_missed_it(self) -> None:
        store = HeldStore()
        server = Harness(store=store)
        columbia, seas = server.login("columbia"), server.login("seas")
        store.broken = True
        columbia.send("broadcast user seas google message half")
        store.release()
        self.assertEqual(
            columbia.read(),
            "Sent to seas. Not sent to google: the server cannot reach its database right now; "
            "please send it to them again.\r\nCommand: ",
        )
        self.assertIn("columbia (broadcast): half", seas.read())
        self.flushLoggedErrors(OSError)
        store.broken = False
        columbia.send("history")
        store.release()
        self.assertIn("columbia to seas (broadcast): half", columbia.read())

    def test_a_logout_as_the_store_goes_away_logs_no_traceback(self) -> None:
        """
        At logout the unread counts are kept with a read of the user's
        conversations; the store lost meanwhile (a node stopping after its
        Redis) is what its health says once, not a failure with a traceback.
        """
        store = HeldStore()
        server = Harness(store=store)
        log = capture_log(self)
        columbia = server.login("columbia")
        store.release()
        columbia.send("logout")
        self.assertTrue(store.waiting, "the unread counts were not read at logout")
        store.release(Unavailable("Redis at unix:/run/redis.sock: the connection was lost"))
        self.assertFalse(store.waiting)
        self.assertEqual([e for e in log if e.get("log_failure") is not None], [])
        self.assertEqual(self.flushLoggedErrors(), [])


# --- broadcasts across nodes while the others cannot be reached -------------------


@implementer(IRegistry, IPeers)
class TwoNodes(LocalRegistry):
    """This node's registry and its peers, with C{remote} online on another node."""

    node = "a"

    def __init__(self, clock: Clock, remote: Collection[str]) -> None:
        super().__init__()
        self.remote = set(remote)
        self.health = Health("Redis", clock)
        self.published: list[Delivery] = []
        #: What was handed to the other nodes: (names, delivery).
        self.handed: list[tuple[tuple[str, ...], Delivery]] = []

    @property
    def present(self) -> Collection[str]:  # type: ignore[override]
        return set(self.online) | self.remote

    def start(self, listener: IPeerListener) -> Deferred[None]:
        return succeed(None)

    def publish(self, deliveries: Sequence[Delivery]) -> None:
        self.published.extend(deliveries)

    def hand_over(self, names: Sequence[str], delivery: Delivery) -> Deferred[None]:
        self.handed.append((tuple(names), delivery))
        return succeed(None)

    def intro_changed(self, name: str, text: str) -> None:
        pass

    def sessions(self) -> Deferred[tuple[list[SessionInfo], int]]:
        return succeed(([], 0))

    def kick(self, name: str, by: str, why: str) -> None:
        pass

    def announce(self, announcement: Announcement) -> None:
        pass

    def room_changed(self, key: str, name: str, user: str, joined: bool) -> None:
        pass

    def room_messages(self, deliveries: Sequence[Delivery]) -> None:
        pass

    def typing(self, name: str, key: str) -> None:
        pass

    def stop(self) -> Deferred[None]:
        return succeed(None)


class UnreachableNodesTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.nodes = TwoNodes(self.clock, ["google", "facebook"])
        self.store = MemoryStore()
        users = frozenset({"columbia", "seas", "google", "facebook", "csee4119"})
        self.service = ChatService(users, self.store, self.clock, registry=self.nodes, peers=self.nodes)
        self.seas = Recipient()
        self.successResultOf(self.service.join("columbia", Recipient()))
        self.successResultOf(self.service.join("seas", self.seas))

    def test_a_broadcast_counts_the_users_of_other_nodes_while_they_can_be_reached(self) -> None:
        sent = self.service.broadcast("columbia", "all")
        self.assertEqual((sent.count, sent.unreachable), (3, 0))
        self.clock.advance(0)
        self.assertEqual([d.text for d in self.nodes.published], ["all"])

    def test_while_they_cannot_the_receipt_says_so_and_nothing_is_published(self) -> None:
        self.nodes.health.lost("connection refused")
        sent = self.service.broadcast("columbia", "here only")
        self.assertEqual(sent, Broadcasted(1, sent.id, sent.time, unreachable=2))
        self.clock.advance(0)
        self.assertEqual(self.nodes.published, [])
        self.assertEqual(self.seas.received, [b"columbia (broadcast): here only\r\n"])

    def test_a_message_to_a_user_of_another_node_is_handed_to_it_and_kept_for_one_offline(self) -> None:
        sent = self.service.send("columbia", ["google", "csee4119", "seas"], "hi", Kind.PRIVATE)
        assert isinstance(sent, Deferred), "a message that needs the store is answered once it is stored"
        receipt = self.successResultOf(sent)
        self.assertEqual((receipt.delivered, receipt.stored), (("google", "seas"), ("csee4119",)))
        [(names, delivery)] = self.nodes.handed
        self.assertEqual((names, delivery.text, delivery.id), (("google",), "hi", receipt.id))
        [kept] = self.successResultOf(self.store.offline_for("csee4119"))
        self.assertEqual(kept.delivery, delivery)
        self.assertEqual(self.successResultOf(self.store.offline_for("google")), [])
        self.clock.advance(0)
        self.assertEqual(self.seas.received, [b"columbia (private): hi\r\n"])

    def test_a_private_message_to_a_user_of_another_node_is_answered_once_handed_over(self) -> None:
        sent = self.service.message("columbia", "google", "hi")
        assert isinstance(sent, Deferred), "answered once the hand-over is durable"
        receipt = self.successResultOf(sent)
        [(names, delivery)] = self.nodes.handed
        self.assertEqual((names, delivery.text, delivery.kind), (("google",), "hi", Kind.PRIVATE))
        self.assertEqual((receipt.delivered, receipt.stored, receipt.id), (("google",), (), delivery.id))
        self.assertEqual(self.successResultOf(self.service.history("columbia", 10)), [delivery])

    def test_a_private_message_whose_hand_over_fails_is_not_kept(self) -> None:
        self.nodes.hand_over = lambda names, delivery: fail(Unavailable("Redis is unavailable"))  # type: ignore[method-assign]
        self.failureResultOf(self.service.message("columbia", "google", "lost"), Unavailable)
        self.assertEqual(self.successResultOf(self.service.history("columbia", 10)), [])

    def test_a_private_message_to_another_node_is_refused_while_the_store_is_down(self) -> None:
        self.store.health.lost("connection refused")
        sent = self.service.send("columbia", ["google"], "hi", Kind.PRIVATE)
        self.assertIsInstance(sent, Deferred)
        self.failureResultOf(sent)
        again = self.service.message("columbia", "google", "hi")
        self.assertIsInstance(again, Deferred)
        self.failureResultOf(again)
        self.clock.advance(0)
        self.store.health.restored()
        self.clock.advance(0)
        self.assertEqual(self.nodes.handed, [])
        self.assertEqual(self.successResultOf(self.store.offline_for("google")), [])
        self.assertEqual(self.successResultOf(self.store.history_for("columbia", 10)), [])
