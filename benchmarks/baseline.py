"""
The bare baseline: the least a Twisted line server can do and still speak
the chat protocol to a load generator.

It accepts any login (two lines, then "Welcome"), broadcasts by encoding
once and writing to every other transport, and delivers private messages by
a dictionary lookup.  No auth, no limits, no storage, no logging.  Figures
for the real server are quoted as ratios against this one, measured in the
same run on the same machine.

    python -m benchmarks.baseline PORT
"""

from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver


class BareProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 4096
    factory: BareFactory

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        self.name: bytes | None = None
        self.step = 0
        self.transport.write(b"Username: ")  # type: ignore[union-attr]

    def lineReceived(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if self.step == 0:
            self.name = line
            self.step = 1
            self.transport.write(b"Password: ")  # type: ignore[union-attr]
            return
        if self.step == 1:
            self.step = 2
            assert self.name is not None
            self.factory.online[self.name] = self
            self.transport.write(b"Welcome\r\nCommand: ")  # type: ignore[union-attr]
            return
        if line.startswith(b"broadcast message "):
            data = self.name + b": " + line[18:] + b"\r\n"  # type: ignore[operator]
            for peer in self.factory.online.values():
                if peer is not self:
                    peer.transport.write(data)  # type: ignore[union-attr]
        elif line.startswith(b"message "):
            _, to, text = line.split(b" ", 2)
            peer = self.factory.online.get(to)
            if peer is not None:
                peer.transport.write(self.name + b": " + text + b"\r\n")  # type: ignore[operator, union-attr]

    def connectionLost(self, reason: object = None) -> None:
        if self.name is not None and self.factory.online.get(self.name) is self:
            del self.factory.online[self.name]


class BareFactory(Factory):
    protocol = BareProtocol

    def __init__(self) -> None:
        self.online: dict[bytes, BareProtocol] = {}


def main(argv: list[str]) -> None:
    port = argv[1] if len(argv) > 1 else "4119"
    endpoint = serverFromString(reactor, f"tcp:{port}:backlog=1024:interface=127.0.0.1")
    endpoint.listen(BareFactory())
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv)
