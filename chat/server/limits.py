"""
Flood limits: a token bucket per user, and the networks exempt from limits.

Time is passed in, so the bucket is a value that tests drive with a clock
and no sleeping.
"""

from __future__ import annotations

import ipaddress

import attrs

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


class ConnectionCount:
    """
    Open connections per address, one count across every edge (TCP and
    WebSocket), so a second edge is no way around the limit.  Exempt
    networks are not counted.
    """

    def __init__(self, max_per_host: int = 20, exempt: Exemptions | None = None) -> None:
        self.max_per_host = max_per_host
        self._exempt = exempt if exempt is not None else Exemptions()
        self._open: dict[str, int] = {}

    def open(self, host: str) -> bool | None:
        """
        Count a new connection from C{host}: True if counted, None if the
        address is exempt (nothing to release), False if over the limit.
        """
        if self._exempt.covers(host):
            return None
        count = self._open.get(host, 0)
        if count >= self.max_per_host:
            return False
        self._open[host] = count + 1
        return True

    def close(self, host: str) -> None:
        """A counted connection from C{host} has closed."""
        left = self._open.get(host, 0) - 1
        if left > 0:
            self._open[host] = left
        else:
            self._open.pop(host, None)

    def __getitem__(self, host: str) -> int:
        return self._open.get(host, 0)
