"""
A node of a cluster: presence across nodes on one Redis.

Who is logged in where is the hash C{chat:online}, user name to
"<node> <claim>".  Logging in claims the user in one Lua script, refused
while a live node holds them; logging out releases only the claim this
node made, so a node that stalled and came back cannot log out a newer
session.  Each node refreshes a heartbeat key with a TTL; every node sweeps
for nodes whose key has expired and releases their users, with the dead
node's last heartbeat as their last-seen time.  Keyspace notifications are
not used: a sweep that finds the key gone is all it takes, and it cannot
be missed.

A node keeps its own copy of who is online elsewhere, kept current by
presence messages and a full reload every L{RESYNC_INTERVAL} seconds (and
whenever its connections to Redis are back), so C{whoelse} and the routing
of a message never wait on Redis.

A claim whose answer never came (Redis stalled, the connection was given
up) may still be run by Redis later, for a login that was refused: nobody
would hold it, and the user could log in nowhere until the node died.  So
such a claim is released once Redis is back; the heartbeat counts this
node's users in Redis and, when the count is not what the node holds,
releases the claims of this node that it neither holds nor is making; and
a login refused because of a claim of this very node that it does not know
takes that claim over.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from itertools import chain
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredList, FirstError, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chat.server.backends.redis import keys
from chat.server.backends.redis.link import RedisError, RedisLink, Subscriber
from chat.server.backends.redis.store import RedisStore
from chat.server.events import Announcement, Delivery, SessionInfo, StoredMessage
from chat.server.health import Health
from chat.server.interfaces import (
    AlreadyOnline,
    IFormat,
    IParticipant,
    IPeerListener,
    IPeers,
    IRegistry,
    Snapshot,
    Unavailable,
)
from chat.server.quietlog import QuietLog
from chat.server.registry import LocalRegistry

log = Logger()

#: Seconds between full reloads of who is online, in case a presence
#: message was lost (pub/sub is at most once).
RESYNC_INTERVAL = 30.0

#: Seconds the other nodes have to say what sessions they have.
SESSIONS_TIMEOUT = 3.0

_CLAIM = f"""
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local mine = ARGV[2] .. ' ' .. ARGV[3]
if cur == mine then return {{1, ''}} end
-- ARGV[4] '1': a takeover; ARGV[6], if given: the one claim this may replace.
if cur and ARGV[4] ~= '1' and cur ~= ARGV[6] then
  local holder = string.match(cur, '^(%S+)')
  if redis.call('EXISTS', '{keys.NODE}' .. holder) == 1 then return {{0, cur}} end
end
redis.call('HSET', KEYS[1], ARGV[1], mine)
redis.call('SADD', '{keys.NODE_USERS}' .. ARGV[2], ARGV[1])
if cur then
  local holder = string.match(cur, '^(%S+)')
  if holder ~= ARGV[2] then
    redis.call('SREM', '{keys.NODE_USERS}' .. holder, ARGV[1])
  end
  redis.call('PUBLISH', '{keys.NODE_CHANNEL}' .. holder,
             cjson.encode({{evict = ARGV[1], claim = cur}}))
end
redis.call('PUBLISH', '{keys.PRESENCE_CHANNEL}', ARGV[5])
return {{1, cur or ''}}
"""

_RELEASE = f"""
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] .. ' ' .. ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', '{keys.NODE_USERS}' .. ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('PUBLISH', '{keys.PRESENCE_CHANNEL}', ARGV[5])
return 1
"""

#: Returns whether the node was known (not swept), and how many users
#: Redis holds for it.
_HEARTBEAT = """
local known = redis.call('HEXISTS', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
return {known, redis.call('SCARD', KEYS[3])}
"""

#: Release the claims of this node (ARGV[1]) that it neither holds nor is
#: making (ARGV[3] on), as a release does, at ARGV[2]; forget users in its
#: set that another node holds, or nobody.  Returns the names released.
_RECONCILE = f"""
local mine = {{}}
for i = 3, #ARGV do mine[ARGV[i]] = true end
local released = {{}}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local cur = redis.call('HGET', KEYS[1], name)
  local node, claim
  if cur then node, claim = string.match(cur, '^(%S+) (%S+)$') end
  if node ~= ARGV[1] then
    redis.call('SREM', KEYS[3], name)
  elseif not mine[claim] then
    redis.call('HDEL', KEYS[1], name)
    redis.call('SREM', KEYS[3], name)
    redis.call('HSET', KEYS[2], name, ARGV[2])
    redis.call('PUBLISH', '{keys.PRESENCE_CHANNEL}',
               '{{"name":' .. cjson.encode(name) .. ',"online":false,"at":' .. ARGV[2] ..
               ',"node":' .. cjson.encode(ARGV[1]) .. '}}')
    table.insert(released, name)
  end
end
return released
"""

#: Release the users of every node whose heartbeat has expired (or of the
#: node named in ARGV[2] whatever its heartbeat: a node restarting under
#: the same name clears what its previous life left).
_SWEEP = f"""
local reaped = {{}}
local nodes = redis.call('HGETALL', KEYS[1])
for i = 1, #nodes, 2 do
  local node, last = nodes[i], nodes[i + 1]
  if node == ARGV[2] or (node ~= ARGV[1] and redis.call('EXISTS', '{keys.NODE}' .. node) == 0) then
    local users = redis.call('SMEMBERS', '{keys.NODE_USERS}' .. node)
    for _, name in ipairs(users) do
      local cur = redis.call('HGET', KEYS[2], name)
      if cur and string.match(cur, '^(%S+)') == node then
        redis.call('HDEL', KEYS[2], name)
        redis.call('HSET', KEYS[3], name, last)
        redis.call('PUBLISH', '{keys.PRESENCE_CHANNEL}',
                   cjson.encode({{name = name, online = false, at = tonumber(last), node = node}}))
      end
    end
    redis.call('DEL', '{keys.NODE_USERS}' .. node)
    redis.call('HDEL', KEYS[1], node)
    table.insert(reaped, node)
  end
end
return reaped
"""


class _Present(Collection[str]):
    """Every user online anywhere: this node's and the others', without copying."""

    def __init__(self, local: Mapping[str, object], remote: Mapping[str, str]) -> None:
        self._local = local
        self._remote = remote

    def __contains__(self, name: object) -> bool:
        return name in self._local or name in self._remote

    def __iter__(self) -> Iterator[str]:
        return chain(self._local, self._remote)

    def __len__(self) -> int:
        return len(self._local) + len(self._remote)


def _number(text: str) -> float:
    return float(text)


@attrs.define(eq=False)
class _Question:
    """An admin's question to the other nodes: the answers so far, and how many are expected."""

    id: str
    done: Deferred[tuple[list[SessionInfo], int]]
    sessions: list[SessionInfo] = attrs.Factory(list)
    answers: int = 0
    #: How many nodes heard it, but this one (None until Redis says).
    expected: int | None = None
    timeout: IDelayedCall | None = None


@implementer(IRegistry, IPeers)
class RedisCluster:
    """
    This node's side of the cluster: the registry of who is online (here
    and elsewhere) and the channel to the other nodes.

    C{timeout} bounds how long the users of a node that died stay shown
    online: its heartbeat key lives half of it, and the nodes sweep every
    fifth of it.  After an outage of Redis every key may have expired, so
    a node that reconnects sweeps only a timeout later, once the nodes
    still alive have heartbeated again.

    C{link} is the cluster's own connection (heartbeats, claims, sweeps,
    broadcasts); the C{store}'s link (which may be the same) carries the
    messages for users of other nodes, in the store's order.  Apart, a node
    busy writing history cannot delay its own heartbeat behind it and be
    taken for dead.  Its L{health} is that of C{link}'s group: the node's
    connections to Redis, together.
    """

    def __init__(
        self,
        node: str,
        link: RedisLink,
        subscriber: Subscriber,
        clock: IReactorTime,
        store: RedisStore,
        timeout: float = 15.0,
        on_guard: Any = None,
    ) -> None:
        self.node = node
        self.link = link
        self.store = store
        self.store_link = store.link
        self.subscriber = subscriber
        self.clock = clock
        self._load = store.load
        self.timeout = timeout
        self._on_guard = on_guard
        self._instance = os.urandom(8).hex()
        self._local = LocalRegistry()
        #: Users online on other nodes: name to node.
        self._remote: dict[str, str] = {}
        self._present = _Present(self._local.online, self._remote)
        #: This node's claims: name to claim token.
        self._claims: dict[str, str] = {}
        #: Claims being made: claim token to name.
        self._claiming: dict[str, str] = {}
        #: Claims to release once Redis is back, as (name, claim): releases
        #: that failed, and claims whose answer was lost (Redis may run
        #: them late, for a login that was refused).
        self._unreleased: dict[tuple[str, str], None] = {}
        self._pending: set[Deferred[Any]] = set()
        #: An admin's questions to the other nodes, by id, waiting for answers.
        self._asking: dict[str, _Question] = {}
        self._listener: IPeerListener | None = None
        #: What fails once per message or user while Redis is away: a line a minute.
        self._quiet = QuietLog(log, clock)
        self._claim = link.script(_CLAIM)
        self._release = link.script(_RELEASE)
        self._heartbeat_script = link.script(_HEARTBEAT)
        self._sweep_script = link.script(_SWEEP)
        self._reconcile_script = link.script(_RECONCILE)
        self._heartbeat = LoopingCall(self.heartbeat)
        self._sweeper = LoopingCall(self.sweep)
        self._resync = LoopingCall(self.resync)
        for call in (self._heartbeat, self._sweeper, self._resync):
            call.clock = clock
        self._first = True
        self._stopping = False
        #: No sweep before this time (the clock's): after an outage, until
        #: the other nodes have had a node timeout to heartbeat again.
        self._sweep_from = 0.0
        link.on_connect(self._connected)
        if self.store_link is not link:
            self.store_link.on_connect(self._subscribed)
        subscriber.receiver = self.message
        subscriber.on_connect(self._subscribed)
        # Once all of them are back (and have recovered), the view is
        # reloaded: presence messages were lost meanwhile.
        groups = {id(g): g for g in (link.group, self.store_link.group, subscriber.group)}
        for group in groups.values():
            group.health.watch(self._health_changed)

    def __repr__(self) -> str:
        return f"<RedisCluster node {self.node}>"

    @property
    def health(self) -> Health:
        return self.link.group.health

    # --- IRegistry ---------------------------------------------------------------

    @property
    def online(self) -> Mapping[str, IParticipant]:
        return self._local.online

    @property
    def present(self) -> Collection[str]:
        return self._present

    def audiences(self) -> tuple[tuple[IFormat, tuple[IParticipant, ...]], ...]:
        return self._local.audiences()

    def seen_since(self, cutoff: float) -> Iterator[str]:
        return (n for n in self._local.seen_since(cutoff) if n not in self._remote)

    def last_seen(self, name: str) -> float | None:
        return self._local.last_seen(name)

    def add(self, name: str, participant: IParticipant, now: float, takeover: bool = False) -> Deferred[None]:
        if name in self._local.online:
            return fail(AlreadyOnline(name))
        claim = os.urandom(8).hex()
        presence = self._presence_message(name, True, now)
        self._claiming[claim] = name
        d = self._send_claim(name, claim, takeover, presence)

        def claimed(result: list[Any], retry: bool = True) -> Deferred[None] | None:
            ok, holder = result
            if not int(ok):
                if retry and self._stale(name, holder):
                    # A claim of this node that it does not know: one made
                    # for a login refused when its answer was lost, run by
                    # Redis late.  Nobody holds it; this login takes it over.
                    self._quiet.info(
                        "stale claim taken over",
                        "a claim of {user} left by a refused login was taken over",
                        user=name,
                    )
                    again = self._send_claim(name, claim, False, presence, replace=holder)
                    return again.addCallback(claimed, False)
                raise AlreadyOnline(name)
            old = self._local.online.get(name)
            if old is not None:
                # Only a takeover gets here: a login of the same user settled
                # on this node while it was being claimed.  The claim is now
                # this one's, so the other session ends.
                self._claims.pop(name, None)
                self._local.remove(name, old, now)
                if self._listener is not None:
                    self._listener.evicted(name, old)
            self._local.add_now(name, participant, now)
            self._claims[name] = claim
            self._remote.pop(name, None)
            return None

        def settled(result: object) -> object:
            self._claiming.pop(claim, None)
            return result

        return d.addCallback(claimed).addBoth(settled)

    def _send_claim(
        self, name: str, claim: str, takeover: bool, presence: str, replace: str = ""
    ) -> Deferred[Any]:
        """
        Run the claim script.  If it was sent but its answer is lost, Redis
        may run it still: it is released once Redis is back (only if Redis
        holds exactly that claim then).
        """
        sent = self.link.connected
        args = [name, self.node, claim, "1" if takeover else "0", presence, replace]
        d = self._claim([keys.ONLINE], args)
        if sent:
            d.addErrback(self._claim_lost, name, claim)
        return d

    def _claim_lost(self, f: Failure, name: str, claim: str) -> Failure:
        if f.check(Unavailable):
            self._unreleased[name, claim] = None
        return f

    def _stale(self, name: str, holder: str) -> bool:
        """Whether C{holder} ("<node> <claim>") is this node's, but neither held nor being made."""
        node, _, claim = holder.partition(" ")
        return (
            node == self.node
            and name not in self._local.online
            and self._claims.get(name) != claim
            and claim not in self._claiming
        )

    def remove(self, name: str, participant: IParticipant, now: float) -> None:
        if self._local.online.get(name) is not participant:
            return
        self._local.remove(name, participant, now)
        claim = self._claims.pop(name, None)
        if claim is not None:
            self._release_claim(name, claim, now)

    def _release_claim(self, name: str, claim: str, now: float) -> None:
        presence = self._presence_message(name, False, now)
        d = self._release([keys.ONLINE, keys.LAST_SEEN], [name, self.node, claim, repr(now), presence])

        def failed(f: Failure) -> None:
            # Released when Redis is back (see _connected).
            self._unreleased[name, claim] = None
            self._quiet.warn(
                "release failed",
                "could not release {user} now, will when Redis is back: {why}",
                user=name,
                why=f.getErrorMessage(),
            )

        self._track(d.addErrback(failed))

    def _presence_message(self, name: str, online: bool, at: float) -> str:
        return json.dumps({"name": name, "online": online, "at": at, "node": self.node})

    def _track(self, d: Deferred[Any]) -> None:
        """Keep C{d} until it fires, so that L{stop} can wait for it."""
        self._pending.add(d)

        def done(result: object) -> object:
            self._pending.discard(d)
            return result

        d.addBoth(done)

    # --- IPeers --------------------------------------------------------------------

    def start(self, listener: IPeerListener) -> Deferred[None]:
        self._listener = listener
        d = self.store_link.start() if self.store_link is not self.link else succeed(None)
        d.addCallback(lambda _: self.link.start())
        d.addCallback(lambda _: self.subscriber.start())
        return d.addCallback(self._started)

    def _started(self, _: object) -> None:
        interval = self.timeout / 5
        self._heartbeat.start(interval, now=False)
        self._sweeper.start(interval, now=False)
        self._resync.start(RESYNC_INTERVAL, now=False)

    def publish(self, deliveries: Sequence[Delivery]) -> None:
        message = json.dumps(
            {"node": self.node, "d": [keys.delivery_value(d) for d in deliveries]},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        self.link.execute("PUBLISH", keys.BROADCAST_CHANNEL, message).addErrback(
            lambda f: self._quiet.warn(
                "publish failed", "broadcasts not passed to the other nodes: {why}", why=f.getErrorMessage()
            )
        )

    def hand_over(self, names: Sequence[str], delivery: Delivery) -> Deferred[None]:
        """
        Into the inboxes of C{names} (users online on other nodes as far
        as this node knows), and to their nodes with it, in one script per
        turn (L{RedisStore.hand_over}).  A user who has just moved gets it
        from their inbox at their next login, or the node's next read of it.
        """
        remote = self._remote
        routes = []
        for name in names:
            node = remote.get(name)
            routes.append((name, keys.node_channel(node) if node is not None else ""))
        return self.store.hand_over(routes, delivery)

    def intro_changed(self, name: str, text: str) -> None:
        message = json.dumps({"name": name, "text": text, "node": self.node}, ensure_ascii=False)
        self.link.execute("PUBLISH", keys.INTRO_CHANNEL, message).addErrback(lambda f: None)

    # --- rooms ---------------------------------------------------------------------

    def _to_rooms(self, value: dict[str, Any], what: str) -> None:
        message = json.dumps({**value, "node": self.node}, ensure_ascii=False, separators=(",", ":"))
        self.link.execute("PUBLISH", keys.ROOMS_CHANNEL, message).addErrback(
            lambda f: self._quiet.warn(
                what + " not passed on",
                what + " not passed to the other nodes: {why}",
                why=f.getErrorMessage(),
            )
        )

    def room_changed(self, key: str, name: str, user: str, joined: bool) -> None:
        self._to_rooms({"room": key, "name": name, "user": user, "joined": joined}, "room membership")

    def room_messages(self, deliveries: Sequence[Delivery]) -> None:
        self._to_rooms({"d": [keys.delivery_value(d) for d in deliveries]}, "room messages")

    def typing(self, name: str, key: str) -> None:
        # Not worth a warning when it fails: the next notice comes in seconds.
        message = json.dumps({"typing": name, "in": key, "node": self.node}, separators=(",", ":"))
        self.link.execute("PUBLISH", keys.ROOMS_CHANNEL, message).addErrback(lambda f: None)

    def _room_message(self, listener: IPeerListener, value: dict[str, Any]) -> None:
        if value.get("node") == self.node:
            return
        if "d" in value:
            listener.remote_room_messages([keys.delivery_from_value(d) for d in value["d"]])
        elif "typing" in value:
            listener.remote_typing(str(value["typing"]), str(value["in"]))
        else:
            listener.remote_room_change(
                str(value["room"]), str(value["name"]), str(value["user"]), bool(value["joined"])
            )

    # --- the admins' requests ---------------------------------------------------------

    def _to_admins(self, value: dict[str, Any]) -> Deferred[int]:
        """Publish to every node's admin channel; fires with how many nodes (this one too) got it."""
        message = json.dumps({**value, "node": self.node}, ensure_ascii=False, separators=(",", ":"))
        return self.link.execute("PUBLISH", keys.ADMIN_CHANNEL, message)

    def kick(self, name: str, by: str, why: str) -> None:
        self._to_admins({"op": "kick", "user": name, "by": by, "why": why}).addErrback(
            lambda f: self._quiet.warn(
                "kick not passed on",
                "a kick was not passed to the other nodes: {why}",
                why=f.getErrorMessage(),
            )
        )

    def announce(self, announcement: Announcement) -> None:
        value = {
            "op": "announce",
            "text": announcement.text,
            "at": announcement.sent_at,
            "by": announcement.by,
        }
        self._to_admins(value).addErrback(
            lambda f: self._quiet.warn(
                "announcement not passed on",
                "an announcement was not passed to the other nodes: {why}",
                why=f.getErrorMessage(),
            )
        )

    def sessions(self) -> Deferred[tuple[list[SessionInfo], int]]:
        """
        Ask every node; each answers on this node's channel.  PUBLISH says
        how many nodes heard the question, so the answer is complete when
        that many (but this one) have answered, or after
        L{SESSIONS_TIMEOUT} seconds with what came.
        """
        question = _Question(os.urandom(8).hex(), Deferred())
        self._asking[question.id] = question

        def heard(nodes: int) -> None:
            question.expected = max(0, int(nodes) - 1)
            self._answered(question)

        def not_asked(f: Failure) -> None:
            # Redis away: nobody could be asked; count the nodes known to have users.
            question.expected = len(set(self._remote.values()))
            self._finish(question)

        self._to_admins({"op": "sessions", "id": question.id}).addCallbacks(heard, not_asked)
        question.timeout = self.clock.callLater(SESSIONS_TIMEOUT, self._finish, question)
        return question.done

    def _answered(self, question: _Question) -> None:
        if question.expected is not None and question.answers >= question.expected:
            self._finish(question)

    def _finish(self, question: _Question) -> None:
        if self._asking.pop(question.id, None) is None:
            return
        if question.timeout is not None and question.timeout.active():
            question.timeout.cancel()
        unanswered = max(0, (question.expected or 0) - question.answers)
        question.done.callback((question.sessions, unanswered))

    def _admin_request(self, listener: IPeerListener, value: dict[str, Any]) -> None:
        if value.get("node") == self.node:
            return
        op = value.get("op")
        if op == "kick":
            listener.remote_kick(str(value["user"]), str(value["by"]), str(value["why"]))
        elif op == "announce":
            listener.remote_announcement(
                Announcement(str(value["text"]), float(value["at"]), str(value["by"]))
            )
        elif op == "sessions":
            answer = {
                "sessions": [keys.session_value(s) for s in listener.local_sessions()],
                "id": value["id"],
                "from": self.node,
            }
            message = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
            self.link.execute("PUBLISH", keys.node_channel(str(value["node"])), message).addErrback(
                lambda f: None
            )

    def _sessions_answer(self, value: dict[str, Any]) -> None:
        question = self._asking.get(str(value["id"]))
        if question is None:
            return  # too late: the admin was answered without it
        question.sessions.extend(keys.session_from_value(v) for v in value["sessions"])
        question.answers += 1
        self._answered(question)

    def stop(self) -> Deferred[None]:
        """Wait for the releases of the users who left, then leave the cluster cleanly."""
        self._stopping = True
        for call in (self._heartbeat, self._sweeper, self._resync):
            if call.running:
                call.stop()
        # Sessions are ended before this; any left are released here, since
        # a node that left is never swept.
        now = self.clock.seconds()
        for name, claim in list(self._claims.items()):
            self._release_claim(name, claim, now)
        self._claims.clear()
        if self.link.connected:
            self._release_leftovers()
        pending: Deferred[Any] = DeferredList(list(self._pending), consumeErrors=True)

        def leave(_: object) -> Deferred[Any]:
            if not self.link.connected:
                return succeed(None)
            gone = DeferredList(
                [
                    self.link.execute("DEL", keys.NODE + self.node),
                    self.link.execute("HDEL", keys.NODES, self.node),
                ],
                consumeErrors=True,
            )
            return gone

        pending.addCallback(leave)
        pending.addBoth(
            lambda _: DeferredList([self.subscriber.stop(), self.link.stop(), self.store_link.stop()])
        )
        return pending.addBoth(lambda _: None)

    # --- keeping the cluster's view ---------------------------------------------------

    def _connected(self) -> Deferred[Any]:
        """
        After every connect: clear what a previous life of this node left
        (once), release what could not be released (before the heartbeat
        counts this node's users), announce the node, claim again this
        node's users (Redis may have lost them, or swept them while it could
        not hear this node), and load the view (at startup; after an
        outage, once every connection is back: L{_health_changed}).
        """
        d: Deferred[Any] = succeed(None)
        first = self._first
        if first:
            self._first = False
            d.addCallback(
                lambda _: self._sweep_script([keys.NODES, keys.ONLINE, keys.LAST_SEEN], ["", self.node])
            )
        else:
            # Back after an outage: the other nodes' heartbeat keys may have
            # expired while none of them could reach Redis, and a node that
            # is alive but a moment slower to reconnect must not have its
            # users shown offline (and a message to them kept as if they
            # were): a dead node's are released a node timeout later.
            self._sweep_from = self.clock.seconds() + self.timeout
        d.addCallback(lambda _: self._release_leftovers())
        d.addCallback(lambda _: self.heartbeat())
        d.addCallback(lambda _: self._reclaim())
        if first:
            d.addCallback(lambda _: self.resync())
        # Notifications that came while commands could not be sent were
        # not acted on: look in every inbox here now.
        d.addCallback(lambda _: self._subscribed())
        return d

    def _health_changed(self, available: bool) -> None:
        if available and self._listener is not None and not self._stopping:
            self.resync()

    def _reclaim(self) -> Deferred[Any]:
        now = self.clock.seconds()
        calls = []
        for name, claim in list(self._claims.items()):
            presence = self._presence_message(name, True, now)
            d = self._claim([keys.ONLINE], [name, self.node, claim, "0", presence])
            d.addCallback(self._reclaimed, name, claim)
            calls.append(d)
        return DeferredList(calls, consumeErrors=True)

    def _reclaimed(self, result: list[Any], name: str, claim: str) -> None:
        ok, _ = result
        if int(ok) or self._claims.get(name) != claim:
            return
        # Someone logged in as this user elsewhere while this node was cut
        # off: the newer session wins.
        participant = self._local.online.get(name)
        del self._claims[name]
        if participant is not None and self._listener is not None:
            self._listener.evicted(name, participant)

    def _release_leftovers(self) -> None:
        now = self.clock.seconds()
        leftovers, self._unreleased = self._unreleased, {}
        for name, claim in leftovers:
            self._release_claim(name, claim, now)

    def heartbeat(self) -> Deferred[Any]:
        ttl = int(self.timeout * 1000 / 2)
        d = self._heartbeat_script(
            [keys.NODE + self.node, keys.NODES, keys.NODE_USERS + self.node],
            [self.node, self._instance, ttl, repr(self.clock.seconds())],
        )

        def beat(reply: list[Any]) -> Deferred[Any] | None:
            known, count = int(reply[0]), int(reply[1])
            if not known and self._claims:
                # Swept by the others while this node could not reach Redis.
                log.warn("node {node} was taken for dead; announcing its users again", node=self.node)
                return self._reclaim()
            if count != len(self._claims) + len(self._claiming):
                return self.reconcile()
            return None

        return d.addCallback(beat).addErrback(self._beat_failed)

    def reconcile(self) -> Deferred[Any]:
        """
        Release the claims of this node in Redis that it neither holds nor
        is making: a claim run late for a login that was refused, a release
        lost.  Run when the heartbeat finds Redis counting other users for
        this node than it has, so within one heartbeat of it happening.
        """
        now = repr(self.clock.seconds())
        mine = [*self._claims.values(), *self._claiming]
        d = self._reconcile_script(
            [keys.ONLINE, keys.LAST_SEEN, keys.NODE_USERS + self.node], [self.node, now, *mine]
        )

        def released(names: list[str]) -> None:
            if names:
                self._quiet.info(
                    "stale claims",
                    "released {count} claims of this node that it did not hold: {users}",
                    count=len(names),
                    users=", ".join(sorted(names)),
                )

        return d.addCallback(released).addErrback(self._beat_failed)

    def _beat_failed(self, f: Failure) -> None:
        if f.check(RedisError):
            # Redis refused (out of memory, a script killed): once a minute.
            self._quiet.warn(
                "heartbeat failed", "Redis refused a heartbeat, sweep or reload: {why}", why=str(f.value)
            )
        elif not f.check(Unavailable):
            log.failure("heartbeat failed", f)

    def sweep(self) -> Deferred[Any]:
        if self.clock.seconds() < self._sweep_from:
            return succeed(None)
        d = self._sweep_script([keys.NODES, keys.ONLINE, keys.LAST_SEEN], [self.node, ""])

        def swept(reaped: list[str]) -> None:
            for node in reaped or ():
                log.info("node {dead} stopped answering; its users are offline now", dead=node)

        return d.addCallback(swept).addErrback(self._beat_failed)

    def resync(self) -> Deferred[Any]:
        """Reload who is online elsewhere, last-seen times and intros; tell the service what changed."""
        online = self.link.execute("HGETALL", keys.ONLINE)
        seen = self.link.execute("HGETALL", keys.LAST_SEEN)
        loaded = self._load()
        d = DeferredList([online, seen, loaded], fireOnOneErrback=True, consumeErrors=True)
        d.addCallback(lambda results: self._reload(results[0][1], results[1][1], results[2][1]))
        return d.addErrback(self._resync_failed)

    def _resync_failed(self, f: Failure) -> None:
        self._beat_failed(f.value.subFailure if isinstance(f.value, FirstError) else f)

    def _reload(self, online: list[str], seen: list[str], snapshot: Snapshot) -> None:
        self._local.saw_all({name: _number(at) for name, at in zip(seen[::2], seen[1::2], strict=True)})
        remote: dict[str, str] = {}
        for name, holder in zip(online[::2], online[1::2], strict=True):
            node = holder.split(" ", 1)[0]
            if node != self.node and name not in self._local.online:
                remote[name] = node
        listener = self._listener
        if listener is not None:
            listener.restore(snapshot)
        came = [n for n in remote if n not in self._remote]
        went = [n for n in self._remote if n not in remote]
        self._remote.clear()
        self._remote.update(remote)
        if listener is not None:
            now = self.clock.seconds()
            for name in came:
                listener.remote_presence(name, True, now)
            for name in went:
                listener.remote_presence(name, False, self._local.last_seen(name) or now)

    def _subscribed(self) -> None:
        """
        The subscriber (re)connected: notifications sent while it was away
        are lost, so look in the inbox of every user here.  (Also once
        commands can be sent again: the two connections come back in either
        order.)
        """
        connected = self.link.connected and self.store_link.connected and self.subscriber.connected
        if self._listener is not None and connected:
            for name in list(self._local.online):
                self._listener.inbox_ready(name)

    # --- messages from the other nodes ---------------------------------------------

    def message(self, channel: str, text: str) -> None:
        """One pub/sub message, from the subscriber."""
        listener = self._listener
        if listener is None:
            return
        value = json.loads(text)
        if channel == keys.BROADCAST_CHANNEL:
            if value["node"] != self.node:
                listener.remote_broadcasts([keys.delivery_from_value(d) for d in value["d"]])
        elif channel == keys.PRESENCE_CHANNEL:
            self._presence(listener, value["name"], value["online"], float(value["at"]), value["node"])
        elif channel == keys.INTRO_CHANNEL:
            if value["node"] != self.node:
                listener.remote_intro(value["name"], value["text"])
        elif channel == keys.GUARD_CHANNEL:
            if self._on_guard is not None:
                self._on_guard(value)
        elif channel == keys.ROOMS_CHANNEL:
            self._room_message(listener, value)
        elif channel == keys.ADMIN_CHANNEL:
            self._admin_request(listener, value)
        elif channel == keys.node_channel(self.node):
            if "m" in value:
                self._arrived(listener, value["m"])
            else:
                # From a node that names the inboxes without their messages.
                for name in value.get("inbox", ()):
                    listener.inbox_ready(name)
            if "evict" in value:
                self._evict(listener, value["evict"], value["claim"])
            if "sessions" in value:
                self._sessions_answer(value)

    def _arrived(self, listener: IPeerListener, entries: list[list[Any]]) -> None:
        """Messages put in the inboxes of users of this node, each with its stream id."""
        arrived: dict[str, list[StoredMessage]] = {}
        for name, entry_id, value in entries:
            message = StoredMessage(entry_id, name, keys.delivery_from_value(value))
            found = arrived.get(name)
            if found is None:
                arrived[name] = [message]
            else:
                found.append(message)
        for name, messages in arrived.items():
            listener.inbox_arrived(name, messages)

    def _presence(self, listener: IPeerListener, name: str, online: bool, at: float, node: str) -> None:
        if node == self.node:
            return
        self._local.saw(name, at)
        if online:
            if name in self._local.online or self._remote.get(name) == node:
                return
            self._remote[name] = node
        else:
            if self._remote.get(name) != node:
                return
            del self._remote[name]
        listener.remote_presence(name, online, at)

    def _evict(self, listener: IPeerListener, name: str, claim: str) -> None:
        if f"{self.node} {self._claims.get(name)}" != claim:
            return
        del self._claims[name]
        participant = self._local.online.get(name)
        if participant is not None:
            listener.evicted(name, participant)


def channels(node: str) -> tuple[str, ...]:
    """What the subscriber of node C{node} listens to."""
    return (
        keys.PRESENCE_CHANNEL,
        keys.BROADCAST_CHANNEL,
        keys.INTRO_CHANNEL,
        keys.GUARD_CHANNEL,
        keys.ROOMS_CHANNEL,
        keys.ADMIN_CHANNEL,
        keys.node_channel(node),
    )


def check_durability(link: RedisLink, wants_waitaof: Any) -> Deferred[None]:
    """
    Read Redis's own durability settings and say in the log when an
    acknowledged message could be lost if Redis itself crashed.  With
    C{appendfsync everysec} on Redis 7.2 or newer, C{wants_waitaof(True)}
    makes each acknowledged write wait for the fsync (C{WAITAOF}).
    """
    settings = DeferredList(
        [link.execute("CONFIG", "GET", "append*"), link.execute("INFO", "server")],
        fireOnOneErrback=True,
        consumeErrors=True,
    )

    def judge(results: list[tuple[bool, Any]]) -> None:
        config = dict(zip(results[0][1][::2], results[0][1][1::2], strict=True))
        version = _version(results[1][1])
        aof, fsync = config.get("appendonly", "no"), config.get("appendfsync", "everysec")
        waitaof = aof == "yes" and fsync == "everysec" and version >= (7, 2)
        wants_waitaof(waitaof)
        if aof != "yes":
            log.warn(
                "Redis has appendonly {aof}: messages acknowledged since its last snapshot would be "
                "lost if Redis crashed; run it with --appendonly yes --appendfsync always",
                aof=aof,
            )
        elif fsync == "no" or (fsync == "everysec" and not waitaof):
            log.warn(
                "Redis has appendfsync {fsync} (version {version}): up to a second of acknowledged "
                "messages could be lost if Redis crashed; use appendfsync always, or everysec on "
                "Redis 7.2 or newer (the server then waits with WAITAOF)",
                fsync=fsync,
                version=".".join(map(str, version)),
            )

    def unknown(f: Failure) -> None:
        log.warn("could not read Redis's durability settings: {why}", why=f.getErrorMessage())

    return settings.addCallbacks(judge, unknown)


def _version(info: str) -> tuple[int, ...]:
    for line in info.splitlines():
        if line.startswith("redis_version:"):
            return tuple(int(p) for p in line.split(":", 1)[1].strip().split(".") if p.isdigit())
    return (0,)
