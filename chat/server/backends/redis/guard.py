"""
The login guard of a cluster: password checks counted in Redis, so
C{--max-attempts} holds across every node together.

A check is counted before it starts, not after it failed: with hashed
passwords a check takes a while, and ten guesses sent at once to each of
two nodes would otherwise all be checked before the first failure was
counted anywhere.  So L{RedisLoginGuard.begin} reserves the check in Redis,
in one Lua script, against one count per (user, address) of failures and
checks in progress together; a failure keeps its place in the count, a
success clears it, a check that ended without an answer gives its place
back.  At most C{max_attempts} passwords are checked per user and address
per block period, however many nodes and connections share the guessing.

Each node keeps its own L{LoginGuard} too: it answers at once, bounds the
checks in progress from one address on this node (its hashing threads),
and is what is left while Redis is away.  A block set anywhere is published
to every node and kept in their memory until it ends, so a username prompt
never waits for Redis.  Redis holds only a keyed digest of (user, address),
never the name typed: it may be a password typed in the wrong place.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from chat.server.auth import LoginGuard
from chat.server.backends.redis import keys
from chat.server.backends.redis.link import RedisLink
from chat.server.quietlog import QuietLog

log = Logger()

#: The kind of the quiet log's line while the guard counts without Redis.
ALONE = "logins counted on this node alone"
#: Seconds a password check waits for Redis to count it.  Redis answers in
#: well under a millisecond; a stalled one is given up by the link only
#: after its reply timeout (10 s), too long to hold a login for the guard.
BEGIN_TIMEOUT = 2.0

# The count of (user, address), keys.ATTEMPTS, is a hash: "n", the failures
# and the checks in progress, which is what a check is allowed against;
# "f", the failures alone, which is what starts a block.  It expires with
# the block time after the last check began or failed, as a node's own table
# forgets them, so a place held by a node that died while checking is not
# held for ever.

#: Reserve a check: refused during a block (which a node that missed it
#: then learns: the block's end is the answer), or once the count is full.
#: KEYS: count, blocks.  ARGV: max_attempts, TTL in ms, digest, now.
_BEGIN = """
local blocked = redis.call('ZSCORE', KEYS[2], ARGV[3])
if blocked and tonumber(blocked) > tonumber(ARGV[4]) then
  return blocked
end
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if n >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

#: A check failed: its place in the count becomes a failure (a check that
#: was not reserved here, begun while Redis was away, takes a place now);
#: the failure that makes C{max_attempts} starts the block, which is
#: published, and the ended blocks are cleared out.
#: KEYS: count, blocks.  ARGV: max_attempts, TTL in ms, until, digest,
#: whether the check was reserved (1 or 0), now.
_FAILED = f"""
local f = redis.call('HINCRBY', KEYS[1], 'f', 1)
local n = redis.call('HINCRBY', KEYS[1], 'n', 1 - tonumber(ARGV[5]))
if n < f then
  redis.call('HSET', KEYS[1], 'n', f)
end
if f >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[6])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
  local block = cjson.encode({{key = ARGV[4], ["until"] = tonumber(ARGV[3])}})
  redis.call('PUBLISH', '{keys.GUARD_CHANNEL}', block)
  return 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
"""

#: A reserved check ended without an answer: its place is given back (never
#: a failure's, and nothing if a success cleared the count meanwhile).
#: KEYS: count.
_ABANDONED = """
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local f = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
if n <= f then
  return 0
end
if n - 1 <= 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('HINCRBY', KEYS[1], 'n', -1)
end
return 1
"""


class RedisLoginGuard(LoginGuard):
    def __init__(
        self,
        link: RedisLink,
        clock: IReactorTime,
        max_attempts: int = 3,
        block_time: float = 60.0,
        max_entries: int = 100_000,
        begin_timeout: float = BEGIN_TIMEOUT,
    ) -> None:
        super().__init__(clock, max_attempts, block_time, max_entries)
        #: Seconds a check waits for Redis to count it before this node's count decides.
        self.begin_timeout = begin_timeout
        self._link = link
        self._key = b""
        #: Blocks from the whole cluster: digest to when it ends.
        self._blocks: dict[str, float] = {}
        #: Checks in progress on this node that hold a place in Redis, per
        #: (user, address): those begun while Redis was away hold none, and
        #: end without giving one back.
        self._reserved: dict[tuple[str, str], int] = {}
        #: Lines that would repeat with every guess while Redis is away.
        self._quiet = QuietLog(log, clock)
        self._begin = link.script(_BEGIN)
        self._failed = link.script(_FAILED)
        self._abandoned = link.script(_ABANDONED)
        # Clears out the blocks that ended, here and in Redis, while any
        # is remembered: an attack that ended leaves nothing behind, and a
        # quiet node runs no timer for it.
        self._pruner = LoopingCall(self.prune)
        self._pruner.clock = clock
        link.on_connect(self._connected)

    @property
    def _ttl(self) -> int:
        """The count's lifetime in Redis, in ms (at least 1: PEXPIRE 0 deletes)."""
        return max(1, int(self.block_time * 1000))

    @property
    def remembered_blocks(self) -> int:
        """How many blocks this node keeps in memory, ended ones not yet cleared out included."""
        return len(self._blocks)

    def _digest(self, name: str, host: str) -> str:
        message = f"{name}\0{host}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def _usable(self) -> bool:
        """
        Whether to ask Redis before a check.  Not while the node's
        connections are down or recovering (the digest key may not be
        agreed yet): a login must not wait for an outage to end.
        """
        return bool(self._key) and self._link.connected and self._link.group.health.available

    def _alone(self, host: str, why: str) -> None:
        self._quiet.warn(
            ALONE,
            "login attempts from {host} are counted on this node alone: {why}",
            host,
            why=why,
        )

    def blocked_for(self, name: str, host: str) -> float:
        here = super().blocked_for(name, host)
        if not self._blocks:
            return here
        digest = self._digest(name, host)
        until = self._blocks.get(digest)
        if until is None:
            return here
        left = until - self._clock.seconds()
        if left <= 0:
            del self._blocks[digest]
            return here
        return max(here, left)

    def begin(self, name: str, host: str) -> Deferred[bool]:
        """
        This node's count first (it answers at once, and bounds this node's
        own checks), then the cluster's, in Redis.  Never fails, and waits
        for Redis at most C{begin_timeout} seconds: without an answer, this
        node's count alone decides.
        """
        if not self.begin_here(name, host):
            return succeed(False)
        if not self._usable():
            self._alone(host, "Redis is unavailable")
            return succeed(True)
        digest = self._digest(name, host)
        asked = self._begin(
            [keys.ATTEMPTS + digest, keys.BLOCKS],
            [self.max_attempts, self._ttl, digest, repr(self._clock.seconds())],
        )
        answer: Deferred[bool] = Deferred()

        def no_answer() -> None:
            # A stalled Redis is noticed by the link only after its reply
            # timeout; a login does not wait that long for the guard.
            self._alone(host, f"Redis did not answer in {self.begin_timeout:g} s")
            answer.callback(True)

        timer = self._clock.callLater(self.begin_timeout, no_answer)

        def answered(reply: Any) -> None:
            if not timer.active():
                self._late(name, host, digest, reply)
                return
            timer.cancel()
            if reply == 1:
                self._reserve(name, host)
                answer.callback(True)
                return
            # Refused by the cluster: this node's place is given back.
            LoginGuard.abandoned(self, name, host)
            if isinstance(reply, str):
                self._block(digest, float(reply))
            answer.callback(False)

        def alone(f: Failure) -> None:
            if not timer.active():
                return
            timer.cancel()
            # Redis away, or went away while asked: this node's place stands.
            self._alone(host, f.getErrorMessage())
            answer.callback(True)

        asked.addCallbacks(answered, alone)
        return answer

    def _late(self, name: str, host: str, digest: str, reply: Any) -> None:
        """
        Redis answered a C{begin} after the check went ahead on this node's
        count alone: a place it reserved is given back (the check's outcome
        is counted as one that held none), and a block it found is kept.
        """
        if reply == 1:
            self._abandoned([keys.ATTEMPTS + digest], []).addErrback(lambda f: None)
        elif isinstance(reply, str):
            self._block(digest, float(reply))

    def _reserve(self, name: str, host: str) -> None:
        self._reserved[name, host] = self._reserved.get((name, host), 0) + 1

    def _release(self, name: str, host: str) -> bool:
        """A check of (name, host) ended: whether it held a place in Redis."""
        held = self._reserved.get((name, host), 0)
        if not held:
            return False
        if held == 1:
            del self._reserved[name, host]
        else:
            self._reserved[name, host] = held - 1
        return True

    def failed(self, name: str, host: str) -> Deferred[float]:
        here = self.failed_here(name, host)
        reserved = self._release(name, host)
        now = self._clock.seconds()
        until = now + self.block_time
        digest = self._digest(name, host)
        d = self._failed(
            [keys.ATTEMPTS + digest, keys.BLOCKS],
            [self.max_attempts, self._ttl, repr(until), digest, int(reserved), repr(now)],
        )

        def counted(blocked: Any) -> float:
            if int(blocked):
                self._block(digest, until)
                return max(here, self.block_time)
            return here

        def alone(f: Failure) -> float:
            # Redis away: this node's own count still holds.
            self._alone(host, f.getErrorMessage())
            return here

        return d.addCallbacks(counted, alone)

    def succeeded(self, name: str, host: str) -> None:
        super().succeeded(name, host)
        self._release(name, host)
        self._link.execute("DEL", keys.ATTEMPTS + self._digest(name, host)).addErrback(lambda f: None)

    def abandoned(self, name: str, host: str) -> None:
        super().abandoned(name, host)
        if self._release(name, host):
            # If this is lost with Redis, the place comes back with the block time.
            self._abandoned([keys.ATTEMPTS + self._digest(name, host)], []).addErrback(lambda f: None)

    def remote(self, value: dict[str, Any]) -> None:
        """A block published by a node (this one too)."""
        self._block(value["key"], float(value["until"]))

    def _block(self, digest: str, until: float) -> None:
        self._blocks[digest] = until
        if len(self._blocks) > self._max_entries:
            # Bounded like the local table: the ended blocks go first, then the oldest.
            now = self._clock.seconds()
            self._blocks = {k: t for k, t in self._blocks.items() if t > now}
            while len(self._blocks) > self._max_entries:
                del self._blocks[next(iter(self._blocks))]
        if not self._pruner.running:
            # Every block lasts the block time: one started now has ended
            # by the first run, one started later by the second.
            done = self._pruner.start(max(self.block_time, 1.0), now=False)
            done.addErrback(lambda f: log.failure("clearing out ended login blocks", f))

    def prune(self) -> None:
        """
        Forget the blocks that ended, here and in Redis; stop looking once
        none is left here.  Every node that heard of a block clears it out
        of Redis once it ended; one no running node heard of (its node died)
        goes with the next block set anywhere, or when a node connects.
        """
        now = self._clock.seconds()
        self._blocks = {k: t for k, t in self._blocks.items() if t > now}
        if not self._blocks and self._pruner.running:
            self._pruner.stop()
        self._link.execute("ZREMRANGEBYSCORE", keys.BLOCKS, "-inf", repr(now)).addErrback(lambda f: None)

    def _connected(self) -> Deferred[Any]:
        """Agree on the digest key with the other nodes, and load the blocks in force."""
        now = self._clock.seconds()
        key = self._link.execute("SET", keys.GUARD_KEY, os.urandom(16).hex(), "NX", "GET")
        blocks = self._link.execute("ZRANGEBYSCORE", keys.BLOCKS, repr(now), "+inf", "WITHSCORES")
        self._link.execute("ZREMRANGEBYSCORE", keys.BLOCKS, "-inf", repr(now)).addErrback(lambda f: None)
        d = DeferredList([key, blocks], fireOnOneErrback=True, consumeErrors=True)

        def loaded(results: list[tuple[bool, Any]]) -> Deferred[Any] | None:
            found, listed = results[0][1], results[1][1]
            for digest, until in zip(listed[::2], listed[1::2], strict=True):
                self._block(digest, float(until))
            if found is None:
                # SET ... NX GET answers nil when it set the key: read it back.
                return self._link.execute("GET", keys.GUARD_KEY).addCallback(self._keyed)
            self._keyed(found)
            return None

        return d.addCallback(loaded)

    def _keyed(self, key: str) -> None:
        self._key = key.encode("ascii")
