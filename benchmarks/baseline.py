"""
The bare baseline: the least a Twisted line server can do and still speak
the chat protocol to a load generator.

It accepts any login (two lines, then "Welcome"), broadcasts by encoding
once and writing to every other transport, and delivers private messages by
a dictionary lookup.  No auth, no limits, no storage, no replies to the
sender of a message, no logging past startup.  ``logout`` closes, and any
other line gets a one-line answer and the prompt, so a probe can time a
round trip.  Figures for the real server are quoted as ratios against this
one, measured in the same run on the same machine.

    python -m benchmarks.baseline PORT      (0: any free port)

It logs "BareFactory starting on N" to stderr once listening, as the chat
server logs "ChatFactory starting on N".
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.protocols.basic import LineOnlyReceiver


class BareProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 4096
    factory: BareFactory
    transport: Any

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.name = b""
        self.step = 0
        self.transport.write(b"Username: ")

    def lineReceived(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if self.step == 0:
            self.name = line
            self.step = 1
            self.transport.write(b"Password: ")
            return
        if self.step == 1:
            self.step = 2
            self.factory.online[self.name] = self
            self.transport.write(b"Welcome\r\nCommand: ")
            return
        if line.startswith(b"broadcast message "):
            data = self.name + b": " + line[18:] + b"\r\n"
            for peer in self.factory.online.values():
                if peer is not self:
                    peer.transport.write(data)
        elif line.startswith(b"message "):
            _, to, text = line.split(b" ", 2)
            receiver = self.factory.online.get(to)
            if receiver is not None:
                receiver.transport.write(self.name + b": " + text + b"\r\n")
        elif line == b"logout":
            self.transport.write(b"Goodbye\r\n")
            self.transport.loseConnection()
        else:
            self.transport.write(b"?\r\nCommand: ")

    def connectionLost(self, reason: object = None) -> None:
        if self.step == 2 and self.factory.online.get(self.name) is self:
            del self.factory.online[self.name]


class BareFactory(Factory):
    protocol = BareProtocol  # type: ignore[assignment]

    def __init__(self) -> None:
        self.online: dict[bytes, BareProtocol] = {}


def main(argv: list[str]) -> None:
    port = argv[1] if len(argv) > 1 else "4119"
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    endpoint = serverFromString(reactor, f"tcp:{port}:backlog=1024:interface=127.0.0.1")
    endpoint.listen(BareFactory())
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
