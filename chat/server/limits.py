"""
Flood limits: a token bucket per user, the networks exempt from limits, and
the one account of every open connection (per address, and against the
process's limit on open descriptors).

Time is passed in, so the bucket is a value that tests drive with a clock
and no sleeping.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import attrs

from chat.server.twisted_internals import abort_now

if TYPE_CHECKING:
    from chat.server.quietlog import QuietLog

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.define(slots=True)
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    stamp: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate, burst, burst, now)

    def take(self, now: float) -> bool:
        """Spend one token if there is one; say whether there was."""
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@attrs.frozen
class Exemptions:
    """
    Networks whose connections skip the per-address connection limit and
    the per-user flood limit.

    By default that is loopback: connections from the server's own machine
    come from tools the operator runs (a gateway, a bridge, a load test),
    which put many users behind one address.  Password guessing is limited
    for every address regardless.
    """

    networks: tuple[Network, ...] = ()
    #: Recent answers by address: parsing an address costs more than the rest
    #: of accepting a connection.  Bounded by clearing it when full.
    _answers: dict[str, bool] = attrs.field(factory=dict, eq=False, repr=False, init=False)

    @classmethod
    def parse(cls, text: str) -> Exemptions:
        """
        Parse a comma-separated list of networks (CIDR) or addresses.

        @raise ValueError: with a message naming the bad entry.
        """
        networks: list[Network] = []
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP network or address") from None
        return cls(tuple(networks))

    def covers(self, host: str) -> bool:
        if not self.networks:
            return False
        answer = self._answers.get(host)
        if answer is None:
            if len(self._answers) >= 4096:
                self._answers.clear()
            answer = self._answers[host] = self._lookup(host)
        return answer

    def _lookup(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def describe(self) -> str:
        return ",".join(str(n) for n in self.networks)


#: Descriptors kept free of connections, at the least.  The server's own
#: files take about 20 (standard streams, epoll and its waker, the two
#: listening sockets, the database with its WAL and shared memory, three
#: links to Redis in a cluster, the users file while it is reloaded); the
#: rest is for connections already closed to make room, whose descriptors
#: Twisted frees on the next turn of the reactor, while it accepts dozens
#: more in the same turn.
MIN_RESERVE = 64


def descriptor_limit() -> int | None:
    """The process's soft limit on open descriptors (RLIMIT_NOFILE), or None if it has none."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def connection_capacity(limit: int) -> int:
    """
    How many connections may be open under a limit of C{limit} descriptors:
    the limit less a reserve of a tenth of it, or L{MIN_RESERVE} if that is
    more (so 192 of 256, 922 of 1024, 58,983 of 65,536); never less than a
    quarter of the limit, for a limit too small to keep the reserve.
    """
    return max(limit - max(MIN_RESERVE, limit // 10), limit // 4)


def _never() -> bool:
    return False


@attrs.define(eq=False)
class Slot:
    """
    One open connection's place in the count: against its address's limit
    (if C{counted}) and against the descriptors.  The edge that owns the
    connection releases it once, when the connection is lost.
    """

    host: str
    #: Counted against its address's limit (not so if exempt or refused).
    counted: bool
    #: Over its address's limit: the edge says so and closes it.
    refused: bool
    #: No room at all: the edge closes it at once.
    dropped: bool
    _count: ConnectionCount = attrs.field(repr=False)
    #: Whether the user of this connection has logged in: such a connection
    #: is never closed to make room.  The edge sets it.
    logged_in: Callable[[], bool] = attrs.field(default=_never, repr=False)
    #: What holds the connection (a protocol with a C{transport}): how it is closed to make room.
    owner: Any = attrs.field(default=None, repr=False)
    shed: bool = False
    released: bool = False

    def release(self) -> None:
        """The connection is closed.  Only the first call counts."""
        if not self.released:
            self.released = True
            self._count._release(self)

    def closing(self) -> None:
        """
        The server is closing the connection, which can carry nothing more:
        it no longer counts against its address (its descriptor counts
        until it is released).
        """
        self._count._uncount(self)

    def close_to_make_room(self) -> None:
        """Abort the connection: its descriptor is wanted for a newcomer, now, not a turn later."""
        self.shed = True
        transport = getattr(self.owner, "transport", None)
        if transport is not None:
            abort_now(transport)


class _Unfinished:
    """
    The connections not known to have logged in, by address: where room is
    made.  The address with the most of them gives up its newest first, so
    a flood from a few addresses pays for itself, and one new connection
    from elsewhere is the last to go.  Finding it costs O(1), amortized:
    addresses are kept by how many they have, as in an LFU cache, and a
    connection found to have logged in since it came is dropped from here
    for good (logging in is for the rest of a connection's life).
    """

    def __init__(self) -> None:
        self._by_host: dict[str, dict[Slot, None]] = {}
        #: Addresses by how many unfinished connections they have; in each,
        #: the address that reached that number last is last.
        self._levels: dict[int, dict[str, None]] = {}
        self._top = 0

    def add(self, slot: Slot) -> None:
        slots = self._by_host.setdefault(slot.host, {})
        self._move(slot.host, len(slots), len(slots) + 1)
        slots[slot] = None

    def discard(self, slot: Slot) -> None:
        slots = self._by_host.get(slot.host)
        if slots is None or slot not in slots:
            return
        del slots[slot]
        self._move(slot.host, len(slots) + 1, len(slots))
        if not slots:
            del self._by_host[slot.host]

    def _move(self, host: str, old: int, new: int) -> None:
        if old:
            level = self._levels[old]
            del level[host]
            if not level:
                del self._levels[old]
        if new:
            self._levels.setdefault(new, {})[host] = None
            self._top = max(self._top, new)

    def victim(self) -> Slot | None:
        """The connection to close to make room, if any has not logged in."""
        while self._top:
            level = self._levels.get(self._top)
            if not level:
                self._top -= 1
                continue
            host = next(reversed(level))
            slot = next(reversed(self._by_host[host]))
            if not slot.logged_in():
                return slot
            self.discard(slot)
        return None


class ConnectionCount:
    """
    Every open connection of every edge (TCP, the web site and its
    WebSockets), in one place, from the moment it is accepted:

    - per address, so a second edge is no way around the limit of
      connections per address (exempt networks are not counted);
    - against the process's limit on open descriptors, less a reserve
      (L{connection_capacity}): once that many are open, a new arrival gets
      in by closing a connection that has not logged in (the newest of the
      address with the most); a logged-in user is never closed for it, and
      if every connection has logged in the new one is closed instead.
      Running out of descriptors would be worse: the listening sockets
      could accept no one, logged in or not.
    """

    def __init__(
        self,
        max_per_host: int = 20,
        exempt: Exemptions | None = None,
        descriptors: int | Literal["rlimit"] | None = "rlimit",
    ) -> None:
        """
        @param descriptors: the limit on open descriptors; by default the
            process's own (RLIMIT_NOFILE) when this is made, at startup;
            None for no limit.
        """
        self.max_per_host = max_per_host
        self._exempt = exempt if exempt is not None else Exemptions()
        self._per_host: dict[str, int] = {}
        limit = descriptor_limit() if descriptors == "rlimit" else descriptors
        self.descriptors = limit
        #: Connections open at most, or None for no limit.
        self.capacity = None if limit is None else connection_capacity(limit)
        #: Accepted and not yet released, closing or not.
        self.open = 0
        #: Of those, the ones not closed to make room or refused for lack of it.
        self.live = 0
        self._unfinished = _Unfinished()

    def admit(self, host: str, quiet: QuietLog | None = None) -> Slot:
        """
        Account for a connection from C{host}, just accepted.  Its slot says
        whether it is C{dropped} (no room: close it at once), C{refused}
        (over its address's limit: say so and close it), or in.  Every slot
        is released when its connection is lost, whatever it says.
        """
        self.open += 1
        if self.capacity is not None and self.live >= self.capacity and not self._make_room(host, quiet):
            return Slot(host, counted=False, refused=False, dropped=True, count=self, shed=True)
        self.live += 1
        slot = Slot(host, counted=False, refused=False, dropped=False, count=self)
        self._count(slot, quiet)
        self._unfinished.add(slot)
        return slot

    def readdress(self, slot: Slot, host: str, quiet: QuietLog | None = None) -> None:
        """
        The connection of C{slot} turns out to come from C{host} (a proxy
        has said so, in the PROXY protocol): count it there instead.
        """
        if slot.released or slot.dropped or host == slot.host:
            return
        self._uncount(slot)
        unfinished = not slot.shed
        self._unfinished.discard(slot)
        slot.host = host
        slot.refused = False
        self._count(slot, quiet)
        if unfinished:
            self._unfinished.add(slot)

    def _count(self, slot: Slot, quiet: QuietLog | None) -> None:
        host = slot.host
        if self._exempt.covers(host):
            return
        count = self._per_host.get(host, 0)
        if count >= self.max_per_host:
            slot.refused = True
            if quiet is not None:
                quiet.warn(
                    "connections refused: too many from one address",
                    "refused a connection from {host}: {count} open",
                    host,
                    count=count,
                )
            return
        self._per_host[host] = count + 1
        slot.counted = True

    def _uncount(self, slot: Slot) -> None:
        if not slot.counted:
            return
        slot.counted = False
        left = self._per_host.get(slot.host, 0) - 1
        if left > 0:
            self._per_host[slot.host] = left
        else:
            self._per_host.pop(slot.host, None)

    def _make_room(self, host: str, quiet: QuietLog | None) -> bool:
        victim = self._unfinished.victim()
        if victim is None:
            if quiet is not None:
                quiet.warn(
                    "connections refused: out of descriptors",
                    "refused a connection from {host}: {open} open, every one logged in",
                    host,
                    open=self.open,
                )
            return False
        if quiet is not None:
            quiet.warn(
                "connections closed to make room: out of descriptors",
                "closed a connection from {host} that had not logged in, to make room "
                "({open} open, limit {descriptors} descriptors)",
                victim.host,
                open=self.open,
                descriptors=self.descriptors,
            )
        self._unfinished.discard(victim)
        self.live -= 1
        victim.close_to_make_room()
        return True

    def _release(self, slot: Slot) -> None:
        self.open -= 1
        if not slot.shed:
            self.live -= 1
        self._uncount(slot)
        self._unfinished.discard(slot)

    def __getitem__(self, host: str) -> int:
        """Connections from C{host} that count against its limit."""
        return self._per_host.get(host, 0)
