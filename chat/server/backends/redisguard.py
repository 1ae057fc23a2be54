"""
The login guard of a cluster: failed logins counted in Redis, so
C{--max-attempts} holds across every node together.

Each node keeps its own L{LoginGuard} too (it answers at once, and limits
the checks in progress from one address on this node); Redis adds the
count across nodes and the blocks it leads to.  A block set anywhere is
published to every node and kept in their memory until it ends, so a
username prompt never waits for Redis.  Redis holds only a keyed digest of
(user, address), never the name typed: it may be a password typed in the
wrong place.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chat.server.auth import LoginGuard
from chat.server.backends import rediskeys as keys
from chat.server.backends.redislink import RedisLink

log = Logger()

_FAILED = f"""
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if n >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
  local block = cjson.encode({{key = ARGV[4], ["until"] = tonumber(ARGV[3])}})
  redis.call('PUBLISH', '{keys.GUARD_CHANNEL}', block)
  return 1
end
return 0
"""


class RedisLoginGuard(LoginGuard):
    def __init__(
        self,
        link: RedisLink,
        clock: IReactorTime,
        max_attempts: int = 3,
        block_time: float = 60.0,
        max_entries: int = 100_000,
    ) -> None:
        super().__init__(clock, max_attempts, block_time, max_entries)
        self._link = link
        self._key = b""
        #: Blocks from the whole cluster: digest to when it ends.
        self._blocks: dict[str, float] = {}
        self._failed = link.script(_FAILED)
        link.on_connect(self._connected)

    def _digest(self, name: str, host: str) -> str:
        message = f"{name}\0{host}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

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

    def failed(self, name: str, host: str) -> Deferred[float]:
        here = self.failed_here(name, host)
        now = self._clock.seconds()
        until = now + self.block_time
        digest = self._digest(name, host)
        d = self._failed(
            [keys.FAILURES + digest, keys.BLOCKS],
            [self.max_attempts, int(self.block_time * 1000), repr(until), digest],
        )

        def counted(blocked: Any) -> float:
            if int(blocked):
                self._block(digest, until)
                return max(here, self.block_time)
            return here

        def alone(f: Failure) -> float:
            # Redis away: this node's own count still holds.
            log.warn("failed login not counted across nodes: {why}", why=f.getErrorMessage())
            return here

        return d.addCallbacks(counted, alone)

    def succeeded(self, name: str, host: str) -> None:
        super().succeeded(name, host)
        self._link.execute("DEL", keys.FAILURES + self._digest(name, host)).addErrback(lambda f: None)

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
