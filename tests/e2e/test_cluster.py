"""
A cluster on Redis: L{RedisCluster} nodes against a real redis-server.

Each test starts its own redis-server (a tenth of a second), and its nodes
on it: a L{RedisLink}, a L{Subscriber} and a L{RedisStore} per node, as
C{tap._cluster} wires them.  The nodes talk to Redis on the real reactor;
their own timers and timestamps run on a L{Clock} each, so their
heartbeats, sweeps and resyncs happen only when a test calls them, at the
times it chose.  What travels by pub/sub is waited for with L{until},
never with a fixed sleep.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock, deferLater
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from chat.server.backends.redis import keys
from chat.server.backends.redis.cluster import RESYNC_INTERVAL, SESSIONS_TIMEOUT, RedisCluster, channels
from chat.server.backends.redis.guard import RedisLoginGuard
from chat.server.backends.redis.link import REPLY_TIMEOUT, RedisLink, Subscriber
from chat.server.backends.redis.store import RedisStore
from chat.server.events import Announcement, Delivery, Kind, SessionInfo, StoredMessage
from chat.server.interfaces import (
    AlreadyOnline,
    IParticipant,
    IPeerListener,
    IPeers,
    IRegistry,
    Snapshot,
    Unavailable,
)
from tests.e2e.redis_server import RedisServer, redis_server
from tests.expect import until

# The global reactor, typed loosely: it provides every interface used here.
reactor: Any = _reactor

#: The nodes' timeout: their LoopingCalls run every fifth of it on the
#: node's Clock, so never unless a test advances the Clock that far.
NODE_TIMEOUT = 100.0
#: When each node's Clock starts.
START = 1000.0


class Someone:
    """Stands in for a session: the registry only keeps it."""


def participant() -> IParticipant:
    return cast(IParticipant, Someone())


@implementer(IPeerListener)
class RecordingListener:
    """What a node is told by the others, in order."""

    def __init__(self) -> None:
        self.restored: list[Snapshot] = []
        self.presence: list[tuple[str, bool, float]] = []
        self.broadcasts: list[Delivery] = []
        self.intros: list[tuple[str, str]] = []
        self.inboxes: list[str] = []
        #: Messages passed on with a hand-over: (name, the messages).
        self.arrived: list[tuple[str, list[StoredMessage]]] = []
        self.evictions: list[tuple[str, IParticipant]] = []
        #: What an admin elsewhere asked of this node, and the sessions it has.
        self.kicks: list[tuple[str, str, str]] = []
        self.announcements: list[Announcement] = []
        self.sessions: list[SessionInfo] = []
        self.room_changes: list[tuple[str, str, str, bool]] = []
        self.room_messages: list[Delivery] = []
        self.typing: list[tuple[str, str]] = []
        #: Called on an eviction, after recording it: the service ends the
        #: session there and then, which removes it from the registry.
        self.on_evicted: Callable[[str, IParticipant], None] | None = None

    def restore(self, snapshot: Snapshot) -> None:
        self.restored.append(snapshot)

    def remote_presence(self, name: str, online: bool, at: float) -> None:
        self.presence.append((name, online, at))

    def remote_broadcasts(self, deliveries: Sequence[Delivery]) -> None:
        self.broadcasts.extend(deliveries)

    def remote_intro(self, name: str, text: str) -> None:
        self.intros.append((name, text))

    def inbox_ready(self, name: str) -> None:
        self.inboxes.append(name)

    def inbox_arrived(self, name: str, messages: Sequence[StoredMessage]) -> None:
        self.arrived.append((name, list(messages)))

    def evicted(self, name: str, participant: IParticipant) -> None:
        self.evictions.append((name, participant))
        if self.on_evicted is not None:
            self.on_evicted(name, participant)

    def local_sessions(self) -> list[SessionInfo]:
        return list(self.sessions)

    def remote_kick(self, name: str, by: str, why: str) -> None:
        self.kicks.append((name, by, why))

    def remote_announcement(self, announcement: Announcement) -> None:
        self.announcements.append(announcement)

    def remote_room_change(self, key: str, name: str, user: str, joined: bool) -> None:
        self.room_changes.append((key, name, user, joined))

    def remote_room_messages(self, deliveries: Sequence[Delivery]) -> None:
        self.room_messages.extend(deliveries)

    def remote_typing(self, name: str, key: str) -> None:
        self.typing.append((name, key))


class Node:
    """One node of a test cluster and everything it was made of."""

    def __init__(
        self,
        name: str,
        cluster: RedisCluster,
        link: RedisLink,
        subscriber: Subscriber,
        clock: Clock,
        listener: RecordingListener,
        guard: RedisLoginGuard | None,
    ) -> None:
        self.name = name
        self.cluster = cluster
        self.link = link
        self.subscriber = subscriber
        self.clock = clock
        self.listener = listener
        self.guard = guard

    def add(self, name: str, who: IParticipant, takeover: bool = False) -> Deferred[None]:
        """C{cluster.add} at the time of the node's clock."""
        return self.cluster.add(name, who, self.clock.seconds(), takeover)

    def remove(self, name: str, who: IParticipant) -> None:
        self.cluster.remove(name, who, self.clock.seconds())

    def end_sessions_when_evicted(self) -> None:
        """Do on an eviction what the service does: end the session, which leaves the registry."""
        self.listener.on_evicted = self.remove

    async def barrier(self) -> None:
        """Wait until Redis has run every command this node sent before (one connection, in order)."""
        await self.link.execute("PING")

    async def recovered(self, server: RedisServer, restored: int | None = None) -> None:
        """
        Wait until the node has done all it does after reconnecting (a
        test that stopped it sooner would cut that short): its link reloads
        the view last (the service is handed its C{restored + 1}th
        snapshot), and its subscriber hears messages once it has subscribed
        again (probes published until one arrives).
        """
        if restored is not None:
            count = restored
            await until(lambda: len(self.listener.restored) > count, f"node {self.name} reloads its view")
        deadline = time.monotonic() + 10
        probe = ("probe", f"{self.name} {time.monotonic()}")
        while probe not in self.listener.intros:
            if time.monotonic() > deadline:
                raise AssertionError(f"node {self.name} does not hear pub/sub messages again")
            message = json.dumps({"name": probe[0], "text": probe[1], "node": "probe"})
            server.command("PUBLISH", keys.INTRO_CHANNEL, message)
            await deferLater(reactor, 0.05, lambda: None)

    async def kill(self) -> None:
        """
        Die without a word: the connections close, nothing is released and
        the heartbeat key stays until it expires (or a test deletes it).
        """
        await gatherResults([self.link.stop(), self.subscriber.stop()])


def make_node(
    case: unittest.TestCase,
    server: RedisServer,
    name: str,
    clock: Clock | None = None,
    make_guard: Callable[[RedisLink, IReactorTime], RedisLoginGuard] | None = None,
    reply_timeout: float = REPLY_TIMEOUT,
) -> Node:
    """
    A node wired as C{tap._cluster} wires one (its connections to Redis in
    one group), not started; stopped when C{case} ends.
    """
    if clock is None:
        clock = Clock()
        clock.advance(START)
    endpoint = clientFromString(reactor, server.endpoint)
    link = RedisLink(endpoint, reactor, description=f"redis of node {name}", reply_timeout=reply_timeout)
    store = RedisStore(link)
    guard = make_guard(link, clock) if make_guard is not None else None
    subscriber = Subscriber(
        endpoint,
        reactor,
        channels(name),
        description=f"redis subscriber of node {name}",
        group=link.group,
        reply_timeout=reply_timeout,
    )
    cluster = RedisCluster(
        name,
        link,
        subscriber,
        clock,
        store,
        timeout=NODE_TIMEOUT,
        on_guard=guard.remote if guard is not None else None,
    )
    node = Node(name, cluster, link, subscriber, clock, RecordingListener(), guard)
    case.addCleanup(cluster.stop)
    return node


async def start_node(
    case: unittest.TestCase,
    server: RedisServer,
    name: str,
    clock: Clock | None = None,
    make_guard: Callable[[RedisLink, IReactorTime], RedisLoginGuard] | None = None,
    reply_timeout: float = REPLY_TIMEOUT,
) -> Node:
    """A node that has joined the cluster on C{server}."""
    node = make_node(case, server, name, clock, make_guard, reply_timeout)
    await node.cluster.start(node.listener)
    return node


def holder(server: RedisServer, name: str) -> str:
    """Who holds C{name} in Redis: "<node> <claim>", or "" if nobody."""
    return server.command("HGET", keys.ONLINE, name)


class ClusterTestCase(unittest.TestCase):
    """Two nodes, a and b, on a Redis of their own."""

    timeout = 60
    server: RedisServer
    a: Node
    b: Node

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self.start_cluster())

    async def start_cluster(self) -> None:
        self.server = redis_server(self)
        self.a = await start_node(self, self.server, "a")
        self.b = await start_node(self, self.server, "b")

    async def online_on_a(self, name: str, at: float | None = None) -> IParticipant:
        """Log C{name} in on node a and wait until node b knows."""
        if at is not None:
            self.a.clock.advance(at - self.a.clock.seconds())
        who = participant()
        await self.a.add(name, who)
        await until(lambda: name in self.b.cluster.present, f"node b sees {name} online on node a")
        return who


class PresenceTests(ClusterTestCase):
    def test_a_node_provides_the_registry_and_the_peers(self) -> None:
        self.assertTrue(verifyObject(IRegistry, self.a.cluster))
        self.assertTrue(verifyObject(IPeers, self.a.cluster))
        self.assertTrue(verifyObject(IPeerListener, self.a.listener))

    async def test_a_user_online_on_one_node_is_present_on_the_other_but_not_online_there(self) -> None:
        await self.online_on_a("columbia", at=1005.0)
        self.assertEqual(self.b.listener.presence, [("columbia", True, 1005.0)])
        self.assertNotIn("columbia", self.b.cluster.online)
        self.assertEqual(list(self.b.cluster.present), ["columbia"])
        self.assertEqual(len(self.b.cluster.present), 1)
        self.assertIn("columbia", self.a.cluster.online)
        self.assertEqual(list(self.a.cluster.present), ["columbia"])
        self.assertEqual(self.a.listener.presence, [], "a node is not told of its own users")

    async def test_a_name_online_on_one_node_cannot_be_claimed_on_another(self) -> None:
        await self.a.add("columbia", participant())
        await self.assertFailure(self.b.add("columbia", participant()), AlreadyOnline)
        self.assertNotIn("columbia", self.b.cluster.online)
        self.assertTrue(holder(self.server, "columbia").startswith("a "))

    async def test_after_a_user_leaves_the_other_node_sees_them_absent_since_then(self) -> None:
        who = await self.online_on_a("columbia")
        self.a.clock.advance(10)
        self.a.remove("columbia", who)
        await until(lambda: "columbia" not in self.b.cluster.present, "node b sees columbia leave")
        self.assertEqual(self.b.listener.presence[-1], ("columbia", False, 1010.0))
        self.assertEqual(self.b.cluster.last_seen("columbia"), 1010.0)
        self.assertEqual(list(self.b.cluster.seen_since(1005.0)), ["columbia"])
        self.assertEqual(holder(self.server, "columbia"), "")
        self.assertEqual(float(self.server.command("HGET", keys.LAST_SEEN, "columbia")), 1010.0)
        # The name is free again, on either node.
        await self.b.add("columbia", participant())
        self.assertIn("columbia", self.b.cluster.online)

    async def test_a_user_online_elsewhere_is_not_among_those_seen_lately(self) -> None:
        await self.online_on_a("columbia", at=1005.0)
        self.assertEqual(self.b.cluster.last_seen("columbia"), 1005.0)
        self.assertEqual(list(self.b.cluster.seen_since(0)), [])

    async def test_a_node_joining_sees_who_is_online_already(self) -> None:
        await self.online_on_a("columbia")
        c = await start_node(self, self.server, "c")
        self.assertIn("columbia", c.cluster.present)
        self.assertNotIn("columbia", c.cluster.online)
        self.assertEqual(c.listener.presence, [("columbia", True, START)])

    async def test_a_takeover_evicts_the_session_on_the_other_node(self) -> None:
        old = await self.online_on_a("columbia")
        new = participant()
        await self.b.add("columbia", new, takeover=True)
        self.assertIs(self.b.cluster.online["columbia"], new)
        self.assertTrue(holder(self.server, "columbia").startswith("b "))
        await until(lambda: self.a.listener.evictions, "node a is told to end the old session")
        self.assertEqual(len(self.a.listener.evictions), 1)
        name, evicted = self.a.listener.evictions[0]
        self.assertEqual(name, "columbia")
        self.assertIs(evicted, old)
        self.assertEqual(self.server.command("SMEMBERS", keys.NODE_USERS + "b"), "columbia")
        self.assertEqual(self.server.command("SMEMBERS", keys.NODE_USERS + "a"), "")

    async def test_after_a_takeover_the_old_node_sees_the_user_on_the_new_one(self) -> None:
        self.a.end_sessions_when_evicted()
        await self.online_on_a("columbia")
        await self.b.add("columbia", participant(), takeover=True)
        await until(lambda: "columbia" not in self.a.cluster.online, "node a ends the old session")
        await until(lambda: "columbia" in self.a.cluster.present, "node a sees columbia on node b")
        self.assertTrue(holder(self.server, "columbia").startswith("b "))

    async def test_the_old_node_leaving_after_a_takeover_does_not_release_the_new_claim(self) -> None:
        old = await self.online_on_a("columbia")
        await self.b.add("columbia", participant(), takeover=True)
        claim = holder(self.server, "columbia")
        # The old session ends (whether or not node a has heard of the takeover yet).
        self.a.remove("columbia", old)
        await self.a.barrier()
        self.assertEqual(holder(self.server, "columbia"), claim)
        self.assertIn("columbia", self.b.cluster.online)
        self.assertEqual(self.server.command("HGET", keys.LAST_SEEN, "columbia"), "")

    async def test_a_release_never_removes_a_claim_made_since(self) -> None:
        """
        Node a has not heard of the takeover (the eviction was lost): its
        release, made with its own claim, leaves the newer claim alone.
        """
        who = await self.online_on_a("columbia")
        self.server.command("HSET", keys.ONLINE, "columbia", "b newer-claim")
        self.a.remove("columbia", who)
        await self.a.barrier()
        self.assertEqual(holder(self.server, "columbia"), "b newer-claim")
        self.assertEqual(self.server.command("HGET", keys.LAST_SEEN, "columbia"), "")

    async def test_a_takeover_on_the_same_node_while_a_login_is_settling_leaves_no_claim_behind(self) -> None:
        """
        A login and a resumed session of one user reach the same node at
        once (the second before the first is settled).  However it is
        decided, a name held in Redis by a live node is online on that node.
        """
        self.a.end_sessions_when_evicted()
        first, second = participant(), participant()
        logged_in = self.a.add("columbia", first)
        resumed = self.a.add("columbia", second, takeover=True)
        outcomes = await gatherResults(
            [
                logged_in.addErrback(lambda f: f.trap(AlreadyOnline)),
                resumed.addErrback(lambda f: f.trap(AlreadyOnline)),
            ]
        )
        # Let any eviction for this node arrive and be acted on.
        await self.b.add("seas", participant())
        await until(lambda: "seas" in self.a.cluster.present, "node a hears node b's presence")
        claimed = holder(self.server, "columbia")
        self.assertTrue(
            claimed == "" or "columbia" in self.a.cluster.online,
            f"Redis says {claimed!r} holds columbia, but nobody is online as columbia on node a "
            f"(outcomes {outcomes}, evictions {self.a.listener.evictions})",
        )


class ResyncTests(ClusterTestCase):
    async def test_a_lost_presence_message_is_picked_up_by_a_resync(self) -> None:
        self.server.command("HSET", keys.ONLINE, "ghost", "c some-claim")
        self.assertNotIn("ghost", self.b.cluster.present)
        self.b.clock.advance(7)
        await self.b.cluster.resync()
        self.assertIn("ghost", self.b.cluster.present)
        self.assertNotIn("ghost", self.b.cluster.online)
        self.assertEqual(self.b.listener.presence, [("ghost", True, START + 7)])

    async def test_a_lost_logout_is_picked_up_by_a_resync_with_its_time(self) -> None:
        self.server.command("HSET", keys.ONLINE, "ghost", "c some-claim")
        await self.b.cluster.resync()
        self.server.command("HDEL", keys.ONLINE, "ghost")
        self.server.command("HSET", keys.LAST_SEEN, "ghost", "1003.5")
        await self.b.cluster.resync()
        self.assertNotIn("ghost", self.b.cluster.present)
        self.assertEqual(self.b.listener.presence[-1], ("ghost", False, 1003.5))
        self.assertEqual(self.b.cluster.last_seen("ghost"), 1003.5)

    async def test_a_resync_hands_the_service_what_the_store_holds(self) -> None:
        self.server.command("HSET", keys.INTROS, "columbia", "The lion")
        self.server.command("HSET", keys.LAST_SEEN, "columbia", "900.5")
        await self.b.cluster.resync()
        self.assertEqual(
            self.b.listener.restored[-1], Snapshot({"columbia": 900.5}, {"columbia": "The lion"})
        )

    async def test_a_resync_does_not_count_the_nodes_own_users_twice(self) -> None:
        await self.online_on_a("columbia")
        await self.a.cluster.resync()
        self.assertEqual(list(self.a.cluster.present), ["columbia"])
        self.assertEqual(self.a.listener.presence, [])

    async def test_after_a_resync_the_users_seen_lately_are_all_found(self) -> None:
        """
        Redis keeps last-seen times in the order names were first written,
        not in order of time: columbia, who left first and came back, was
        seen last.
        """
        columbia = await self.online_on_a("columbia", at=1001.0)
        self.a.remove("columbia", columbia)
        seas = await self.online_on_a("seas", at=1002.0)
        self.a.remove("seas", seas)
        columbia = await self.online_on_a("columbia", at=1003.0)
        self.a.remove("columbia", columbia)
        await until(lambda: not self.b.cluster.present, "node b sees everyone leave")
        self.assertEqual(list(self.b.cluster.seen_since(1002.5)), ["columbia"])
        await self.b.cluster.resync()
        self.assertEqual(self.b.cluster.last_seen("columbia"), 1003.0)
        self.assertEqual(list(self.b.cluster.seen_since(1002.5)), ["columbia"])
        self.assertEqual(list(self.b.cluster.seen_since(1001.5)), ["columbia", "seas"])

    async def test_the_node_resyncs_by_itself(self) -> None:
        self.server.command("HSET", keys.ONLINE, "ghost", "c some-claim")
        self.b.clock.advance(RESYNC_INTERVAL)
        await until(lambda: "ghost" in self.b.cluster.present, "node b's own resync finds ghost")


class AdminRequestTests(ClusterTestCase):
    """An admin's requests reach every node, and the sessions of every node come back."""

    def info(self, user: str, node: str) -> SessionInfo:
        return SessionInfo(user, "tcp", "10.0.0.1", node, 1000.0, 1010.5)

    async def test_the_sessions_of_the_other_nodes_come_back(self) -> None:
        self.b.listener.sessions = [self.info("seas", "b"), self.info("google", "b")]
        self.a.listener.sessions = [self.info("columbia", "a")]
        elsewhere, unanswered = await self.a.cluster.sessions()
        by_user = sorted(elsewhere, key=lambda s: s.user)
        self.assertEqual(by_user, [self.info("google", "b"), self.info("seas", "b")])
        self.assertEqual(unanswered, 0)

    async def test_a_node_that_does_not_answer_is_counted_once_the_time_is_up(self) -> None:
        # A third subscriber of the admins' channel that never answers: a
        # node that is stalled, or of an older version.
        endpoint = clientFromString(reactor, self.server.endpoint)
        silent = Subscriber(endpoint, reactor, [keys.ADMIN_CHANNEL], lambda channel, text: None)
        self.addCleanup(silent.stop)
        await silent.start()
        heard: list[str] = []

        def spy(channel: str, text: str) -> None:
            heard.append(text)
            self.a.cluster.message(channel, text)

        self.a.subscriber.receiver = spy
        asked = self.a.cluster.sessions()
        # Node b answers (on node a's channel); the silent one never does.
        await until(lambda: any('"from":"b"' in text for text in heard), "node b answers")
        self.assertNoResult(asked)
        self.a.clock.advance(SESSIONS_TIMEOUT)
        elsewhere, unanswered = await asked
        self.assertEqual((elsewhere, unanswered), ([], 1))

    async def test_a_kick_reaches_every_other_node(self) -> None:
        self.a.cluster.kick("seas", "columbia", "spam")
        await until(lambda: self.b.listener.kicks, "node b hears the kick")
        self.assertEqual(self.b.listener.kicks, [("seas", "columbia", "spam")])
        self.assertEqual(self.a.listener.kicks, [])

    async def test_an_announcement_reaches_every_other_node_with_its_time(self) -> None:
        sent = Announcement("restart at noon", 1234.5, "columbia")
        self.a.cluster.announce(sent)
        await until(lambda: self.b.listener.announcements, "node b hears the announcement")
        self.assertEqual(self.b.listener.announcements, [sent])
        self.assertEqual(self.a.listener.announcements, [])


class NodeFailureTests(ClusterTestCase):
    async def kill_a(self) -> None:
        """Node a dies, and its heartbeat key has expired."""
        await self.a.kill()
        self.server.command("DEL", keys.NODE + "a")

    async def test_a_sweep_leaves_the_users_of_live_nodes_alone(self) -> None:
        await self.online_on_a("columbia")
        await self.b.cluster.sweep()
        self.assertTrue(holder(self.server, "columbia").startswith("a "))
        await self.b.barrier()
        self.assertIn("columbia", self.b.cluster.present)

    async def test_a_dead_nodes_users_are_released_by_a_sweep_as_of_its_last_heartbeat(self) -> None:
        await self.online_on_a("columbia", at=1001.0)
        await self.online_on_a("seas")
        self.a.clock.advance(4)
        await self.a.cluster.heartbeat()  # its last: dead since 1005
        await self.kill_a()
        await self.b.cluster.sweep()
        self.assertEqual(holder(self.server, "columbia"), "")
        self.assertEqual(holder(self.server, "seas"), "")
        self.assertEqual(float(self.server.command("HGET", keys.LAST_SEEN, "columbia")), 1005.0)
        self.assertEqual(self.server.command("HEXISTS", keys.NODES, "a"), "0")
        self.assertEqual(self.server.command("EXISTS", keys.NODE_USERS + "a"), "0")
        await until(lambda: not self.b.cluster.present, "node b sees node a's users leave")
        self.assertEqual(
            sorted(p for p in self.b.listener.presence if not p[1]),
            [("columbia", False, 1005.0), ("seas", False, 1005.0)],
        )
        self.assertEqual(self.b.cluster.last_seen("columbia"), 1005.0)
        await self.b.add("columbia", participant())

    async def test_a_node_restarting_under_its_name_clears_what_its_previous_life_left(self) -> None:
        await self.online_on_a("columbia")
        self.a.clock.advance(3)
        await self.a.cluster.heartbeat()
        # Killed, and started again at once: its heartbeat key has not expired.
        await self.a.kill()
        again = await start_node(self, self.server, "a")
        self.assertEqual(holder(self.server, "columbia"), "")
        self.assertEqual(float(self.server.command("HGET", keys.LAST_SEEN, "columbia")), 1003.0)
        self.assertNotIn("columbia", again.cluster.present)
        await until(lambda: "columbia" not in self.b.cluster.present, "node b sees columbia leave")
        self.assertEqual(self.b.listener.presence[-1], ("columbia", False, 1003.0))
        await self.b.add("columbia", participant())

    async def test_a_node_swept_while_alive_claims_its_users_again_at_its_next_heartbeat(self) -> None:
        await self.online_on_a("columbia")
        # Node a could not reach Redis for a while: its heartbeat expired and node b swept it.
        self.server.command("DEL", keys.NODE + "a")
        await self.b.cluster.sweep()
        self.assertEqual(holder(self.server, "columbia"), "")
        await until(lambda: "columbia" not in self.b.cluster.present, "node b sees columbia swept")
        await self.a.cluster.heartbeat()
        self.assertTrue(holder(self.server, "columbia").startswith("a "))
        self.assertEqual(self.server.command("SMEMBERS", keys.NODE_USERS + "a"), "columbia")
        self.assertEqual(self.server.command("HEXISTS", keys.NODES, "a"), "1")
        self.assertIn("columbia", self.a.cluster.online)
        await until(lambda: "columbia" in self.b.cluster.present, "node b sees columbia back")
        await self.assertFailure(self.b.add("columbia", participant()), AlreadyOnline)

    async def test_after_an_outage_a_node_sweeps_only_once_the_others_had_a_timeout_to_heartbeat(
        self,
    ) -> None:
        """
        Every heartbeat key may expire while Redis is away: a node back
        first must not take the others, a moment slower, for dead (their
        users would be shown offline, and messages to them kept for later).
        A node that did die is still swept, a node timeout on.
        """
        await self.online_on_a("columbia")
        restored = len(self.b.listener.restored)
        await self.kill_a()  # the one that stays down: a key expired is all node b sees
        self.server.stop()
        await until(lambda: not self.b.link.connected, "node b notices Redis is gone")
        self.server.start()
        await self.b.recovered(self.server, restored)
        await self.b.cluster.sweep()
        self.assertTrue(holder(self.server, "columbia").startswith("a "))
        self.assertIn("columbia", self.b.cluster.present)
        self.b.clock.advance(NODE_TIMEOUT)  # its sweeps run on its clock
        await until(lambda: holder(self.server, "columbia") == "", "node b sweeps the dead node a")
        await until(lambda: "columbia" not in self.b.cluster.present, "node b sees columbia leave")

    async def test_stop_releases_the_users_still_online(self) -> None:
        """IPeers.stop: 'Leave the cluster: release this node's users, stop its heartbeat.'"""
        await self.online_on_a("columbia")
        await self.a.cluster.stop()
        self.assertEqual(self.server.command("EXISTS", keys.NODE + "a"), "0")
        self.assertEqual(holder(self.server, "columbia"), "")
        await until(lambda: "columbia" not in self.b.cluster.present, "node b sees columbia leave")


class MessageTests(ClusterTestCase):
    async def test_broadcasts_reach_the_other_nodes_but_not_the_senders(self) -> None:
        deliveries = [
            Delivery("columbia", "héllo ☃", Kind.BROADCAST, 1000.123456789, "m-1"),
            Delivery("columbia", "to some", Kind.BROADCAST, 1001.5, "m-2", ("seas", "google")),
        ]
        self.a.cluster.publish(deliveries)
        await until(lambda: len(self.b.listener.broadcasts) == 2, "node b receives both broadcasts")
        self.assertEqual(self.b.listener.broadcasts, deliveries)
        # Node a's subscriber hears node b's intro after the broadcasts (one
        # connection, in order): by then it has dropped its own broadcasts.
        self.b.cluster.intro_changed("seas", "hi")
        await until(lambda: self.a.listener.intros, "node a hears node b's intro")
        self.assertEqual(self.a.listener.broadcasts, [])

    async def test_messages_handed_over_reach_the_node_of_each_name_with_their_inbox_ids(self) -> None:
        c = await start_node(self, self.server, "c")
        await self.b.add("seas", participant())
        await self.b.add("google", participant())
        await c.add("csee4119", participant())
        await self.a.add("columbia", participant())
        await until(
            lambda: {"seas", "google", "csee4119"} <= set(self.a.cluster.present),
            "node a sees the others' users",
        )
        one = Delivery("columbia", "one", Kind.PRIVATE, START, "m-1", ("seas", "csee4119"))
        two = Delivery("columbia", "two ☃", Kind.BROADCAST, START, "m-2", ("google", "nobody", "seas"))
        first = self.a.cluster.hand_over(["seas", "csee4119"], one)
        second = self.a.cluster.hand_over(["google", "nobody", "seas"], two)
        # The hand-overs of one turn go as one script at its end.
        self.assertNoResult(first)
        await gatherResults([first, second])
        await until(lambda: len(self.b.listener.arrived) == 2, "node b is passed two users' messages")
        await until(lambda: c.listener.arrived, "node c is passed csee4119's message")
        # One message per node: seas's two in order, each with the id of its inbox entry.
        arrived = dict(self.b.listener.arrived)
        self.assertEqual(sorted(arrived), ["google", "seas"])
        self.assertEqual([m.delivery for m in arrived["seas"]], [one, two])
        self.assertEqual([m.delivery for m in arrived["google"]], [two])
        for name, messages in [*self.b.listener.arrived, *c.listener.arrived]:
            self.assertEqual(messages, await self.a.cluster.store.offline_for(name))
        [(name, [kept])] = c.listener.arrived
        self.assertEqual((name, kept.delivery), ("csee4119", one))
        # Nobody online: kept, and no node is told.
        [kept] = await self.a.cluster.store.offline_for("nobody")
        self.assertEqual(kept.delivery, two)
        self.assertEqual(self.a.listener.arrived, [])
        self.assertEqual(self.b.listener.inboxes + c.listener.inboxes, [])

    async def test_a_node_that_names_inboxes_only_still_gets_them_read(self) -> None:
        """A node of an earlier version says which inboxes have something, without the messages."""
        self.server.command("PUBLISH", keys.node_channel("b"), json.dumps({"inbox": ["seas", "google"]}))
        await until(lambda: len(self.b.listener.inboxes) == 2, "node b is told of two inboxes")
        self.assertEqual(self.b.listener.inboxes, ["seas", "google"])
        self.assertEqual(self.b.listener.arrived, [])

    async def test_a_new_intro_reaches_the_other_nodes(self) -> None:
        self.a.cluster.intro_changed("columbia", "The lion ☃")
        await until(lambda: self.b.listener.intros, "node b hears the intro")
        self.assertEqual(self.b.listener.intros, [("columbia", "The lion ☃")])
        self.b.cluster.intro_changed("seas", "hi")
        await until(lambda: self.a.listener.intros, "node a hears node b's intro")
        self.assertEqual(self.a.listener.intros, [("seas", "hi")], "a node is not told its own intros")

    async def test_typing_reaches_the_other_nodes_and_not_its_own(self) -> None:
        self.a.cluster.typing("columbia", "#dev")
        await until(lambda: self.b.listener.typing, "node b hears columbia typing")
        self.assertEqual(self.b.listener.typing, [("columbia", "#dev")])
        self.b.cluster.intro_changed("seas", "hi")
        await until(lambda: self.a.listener.intros, "node a hears node b")
        self.assertEqual(self.a.listener.typing, [], "a node is not told of its own typists")


class RedisDownTests(ClusterTestCase):
    async def start_cluster(self) -> None:
        # Node a alone: every node reconnects when Redis is back, and a test
        # waits for each to finish before stopping it.
        self.server = redis_server(self)
        self.a = await start_node(self, self.server, "a")

    async def test_with_redis_down_a_login_fails_at_once_as_unavailable(self) -> None:
        self.server.stop()
        # Sent before the node noticed: fails when the connection does.
        await self.assertFailure(self.a.add("columbia", participant()), Unavailable)
        await until(lambda: not self.a.link.connected, "node a notices Redis is gone")
        d = self.a.add("seas", participant())
        self.assertTrue(d.called, "a login waits for Redis")
        self.failureResultOf(d, Unavailable)
        self.assertEqual(dict(self.a.cluster.online), {})

    async def test_after_redis_comes_back_the_node_claims_its_users_again(self) -> None:
        await self.a.add("columbia", participant())
        restored = len(self.a.listener.restored)
        # Redis loses everything, and is away for a while.
        self.server.command("FLUSHALL")
        self.server.stop()
        await until(lambda: not self.a.link.connected, "node a notices Redis is gone")
        self.server.start()
        await until(lambda: holder(self.server, "columbia").startswith("a "), "node a claims columbia again")
        self.assertTrue(self.a.link.connected)
        self.assertEqual(self.server.command("EXISTS", keys.NODE + "a"), "1")
        self.assertEqual(self.server.command("SMEMBERS", keys.NODE_USERS + "a"), "columbia")
        await self.a.recovered(self.server, restored)

    async def test_a_user_who_left_while_redis_was_away_is_released_when_it_is_back(self) -> None:
        who = participant()
        await self.a.add("columbia", who)
        await self.a.add("seas", participant())
        restored = len(self.a.listener.restored)
        self.server.stop()
        await until(lambda: not self.a.link.connected, "node a notices Redis is gone")
        self.a.clock.advance(12)
        self.a.remove("columbia", who)
        self.assertNotIn("columbia", self.a.cluster.online)
        self.server.start()
        await until(lambda: holder(self.server, "columbia") == "", "node a releases columbia")
        self.assertEqual(float(self.server.command("HGET", keys.LAST_SEEN, "columbia")), START + 12)
        self.assertTrue(holder(self.server, "seas").startswith("a "))
        await self.a.recovered(self.server, restored)

    async def test_an_outage_is_a_few_lines_in_the_log_not_one_per_message_or_user(self) -> None:
        said: list[dict[str, Any]] = []

        @implementer(ILogObserver)
        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace", "").startswith(("chat.server.backends", "chat.server.health")):
                said.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        users = {f"user{i}": participant() for i in range(20)}
        for name, who in users.items():
            await self.a.add(name, who)
        restored = len(self.a.listener.restored)
        self.server.stop()
        await until(lambda: not self.a.link.connected, "node a notices Redis is gone")
        for i in range(100):
            self.a.cluster.publish([Delivery("user0", f"hello {i}", Kind.BROADCAST, START, f"m-{i}")])
            self.a.cluster.intro_changed("user0", f"intro {i}")
        for name, who in users.items():
            self.a.remove(name, who)
        self.a.clock.advance(2 * NODE_TIMEOUT / 5)  # two heartbeats and sweeps
        lines = [formatEvent(e) for e in said]
        self.assertEqual(len(lines), 3, lines)
        self.assertIn("is unavailable", lines[0])
        self.assertEqual(sorted(e.get("kind") for e in said[1:]), ["publish failed", "release failed"])
        # A minute on, one line each says how many more there were.
        self.a.clock.advance(60)
        self.assertEqual(
            sorted(formatEvent(e) for e in said[3:]),
            ["publish failed: 99 more in the last 60 s", "release failed: 19 more in the last 60 s"],
        )
        self.server.start()
        await self.a.recovered(self.server, restored)
        await until(
            lambda: all(holder(self.server, name) == "" for name in users), "node a releases them all"
        )
        self.assertIn("is back after", formatEvent(said[-1]))

    async def test_after_the_subscriber_reconnects_every_local_inbox_is_looked_in(self) -> None:
        """Notifications sent while it was away were lost."""
        await self.a.add("columbia", participant())
        self.assertEqual(self.a.listener.inboxes, [])
        self.server.command("CLIENT", "KILL", "TYPE", "pubsub")
        await until(lambda: self.a.listener.inboxes, "node a looks in columbia's inbox")
        self.assertEqual(self.a.listener.inboxes, ["columbia"])
        await self.a.recovered(self.server)

    async def test_after_the_link_reconnects_every_local_inbox_is_looked_in(self) -> None:
        """Notifications that came while no command could be sent were not acted on."""
        await self.a.add("columbia", participant())
        restored = len(self.a.listener.restored)
        self.server.command("CLIENT", "KILL", "TYPE", "normal")
        await self.a.recovered(self.server, restored)
        self.assertEqual(self.a.listener.inboxes, ["columbia"])


class StaleClaimTests(ClusterTestCase):
    """
    Claims of a node in Redis that the node does not hold: left by a login
    refused while Redis stalled, which Redis ran once it resumed.
    """

    def leave_stale_claim(self, name: str, node: str = "a") -> None:
        """A claim of C{node} that it does not know, announced as a claim is."""
        self.server.command("HSET", keys.ONLINE, name, f"{node} stale-claim")
        self.server.command("SADD", keys.NODE_USERS + node, name)
        presence = {"name": name, "online": True, "at": START, "node": node}
        self.server.command("PUBLISH", keys.PRESENCE_CHANNEL, json.dumps(presence))

    async def test_a_stale_claim_is_released_by_the_nodes_next_heartbeat_on_both_nodes(self) -> None:
        await self.online_on_a("columbia")
        self.leave_stale_claim("windows")
        await until(lambda: "windows" in self.b.cluster.present, "node b sees windows online on node a")
        await self.assertFailure(self.b.add("windows", participant()), AlreadyOnline)
        # One heartbeat interval later.
        self.a.clock.advance(NODE_TIMEOUT / 5)
        await until(
            lambda: holder(self.server, "windows") == "", "node a releases the claim it does not hold"
        )
        await until(lambda: "windows" not in self.b.cluster.present, "node b sees windows leave")
        released_at = START + NODE_TIMEOUT / 5
        self.assertEqual(self.b.listener.presence[-1], ("windows", False, released_at))
        self.assertEqual(self.b.cluster.last_seen("windows"), released_at)
        self.assertEqual(float(self.server.command("HGET", keys.LAST_SEEN, "windows")), released_at)
        # What node a does hold stays.
        self.assertTrue(holder(self.server, "columbia").startswith("a "))
        self.assertEqual(self.server.command("SMEMBERS", keys.NODE_USERS + "a"), "columbia")
        self.assertIn("columbia", self.b.cluster.present)
        await self.b.add("windows", participant())

    async def test_a_claim_being_made_is_not_taken_for_stale(self) -> None:
        login = self.a.add("seas", participant())
        # Sent after the claim, before its answer: Redis holds a claim the node is still making.
        released = self.a.cluster.reconcile()
        await login
        await released
        self.assertTrue(holder(self.server, "seas").startswith("a "))
        self.assertIn("seas", self.a.cluster.online)

    async def test_users_of_the_nodes_set_that_it_does_not_hold_are_left_out_of_it(self) -> None:
        """A name in node a's set held by another node, or by nobody: dropped from the set only."""
        await self.b.add("google", participant())
        self.server.command("SADD", keys.NODE_USERS + "a", "google", "nobody")
        await self.a.cluster.heartbeat()
        self.assertEqual(self.server.command("SMEMBERS", keys.NODE_USERS + "a"), "")
        self.assertTrue(holder(self.server, "google").startswith("b "))
        self.assertEqual(self.server.command("HGET", keys.LAST_SEEN, "google"), "")

    async def test_a_stale_claim_of_this_node_does_not_refuse_a_login_there(self) -> None:
        self.leave_stale_claim("windows")
        who = participant()
        await self.a.add("windows", who)
        self.assertIs(self.a.cluster.online["windows"], who)
        claim = holder(self.server, "windows")
        self.assertTrue(claim.startswith("a ") and claim != "a stale-claim", claim)
        self.assertEqual(self.server.command("SMEMBERS", keys.NODE_USERS + "a"), "windows")
        # Held for real now: refused elsewhere, and a heartbeat keeps it.
        await self.assertFailure(self.b.add("windows", participant()), AlreadyOnline)
        self.a.clock.advance(NODE_TIMEOUT / 5)
        await self.a.barrier()
        self.assertEqual(holder(self.server, "windows"), claim)
        # The takeover's eviction, sent to node a itself, ends nothing (messages arrive in order).
        self.b.cluster.intro_changed("seas", "hi")
        await until(lambda: self.a.listener.intros, "node a hears node b's intro")
        self.assertEqual(self.a.listener.evictions, [])

    async def test_a_claim_of_another_live_node_still_refuses_a_login(self) -> None:
        self.leave_stale_claim("windows", node="b")
        await self.assertFailure(self.a.add("windows", participant()), AlreadyOnline)
        self.assertEqual(holder(self.server, "windows"), "b stale-claim")


class StalledRedisTests(ClusterTestCase):
    """Redis stops answering (SIGSTOP) for a while: node a gives up on it after a second."""

    async def start_cluster(self) -> None:
        self.server = redis_server(self)
        self.a = await start_node(self, self.server, "a", reply_timeout=1.0)
        self.b = await start_node(self, self.server, "b")

    def pause(self) -> None:
        assert self.server.process is not None
        os.kill(self.server.process.pid, signal.SIGSTOP)
        self.addCleanup(self.resume)

    def resume(self) -> None:
        if self.server.process is not None and self.server.process.poll() is None:
            os.kill(self.server.process.pid, signal.SIGCONT)

    async def test_a_claim_run_late_for_a_refused_login_is_released_within_a_heartbeat(self) -> None:
        """
        windows logs in on node a while Redis is stalled: refused (Redis did
        not answer in time), but Redis runs the claim when it resumes.  It
        must not lock windows out of every node.
        """
        restored = len(self.a.listener.restored)
        self.pause()
        await self.assertFailure(self.a.add("windows", participant()), Unavailable)
        self.assertNotIn("windows", self.a.cluster.online)
        self.resume()
        await until(
            lambda: ("windows", True, START) in self.b.listener.presence,
            "Redis runs the claim late, and says so to node b",
        )
        await until(lambda: self.a.cluster.health.available, "node a is back")
        await self.a.recovered(self.server, restored)
        self.a.clock.advance(NODE_TIMEOUT / 5)  # one heartbeat
        await until(lambda: holder(self.server, "windows") == "", "node a releases the late claim")
        await until(lambda: "windows" not in self.b.cluster.present, "node b sees windows offline")
        self.assertEqual(self.server.command("SMEMBERS", keys.NODE_USERS + "a"), "")
        # windows can log in again, on either node.
        await self.b.add("windows", participant())
        self.b.remove("windows", self.b.cluster.online["windows"])
        await self.b.barrier()
        await self.a.add("windows", participant())
