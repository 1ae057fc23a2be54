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

With C{--floor DATABASE} it also does the least of what the chat server
must do for a private message and the bare server does not: it answers the
sender ("Sent to NAME." and the prompt, as ours does), and it keeps the
message, one row in a SQLite table like ours (WAL, synchronous=FULL, an
index by conversation) written by one thread, a transaction at a time
with what gathered meanwhile.  It prunes nothing and indexes nothing for
search, so it is a floor under what ours can cost, not a rival.

    python -m benchmarks.baseline PORT [--floor DATABASE]      (PORT 0: any free port)

It logs "BareFactory starting on N" to stderr once listening, as the chat
server logs "ChatFactory starting on N".
"""

from __future__ import annotations

import sqlite3
import sys
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.threads import deferToThread
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
                history = self.factory.history
                if history is not None:
                    self.transport.write(b"Sent to " + to + b".\r\nCommand: ")
                    history.add(self.name, to, text)
        elif line == b"logout":
            self.transport.write(b"Goodbye\r\n")
            self.transport.loseConnection()
        else:
            self.transport.write(b"?\r\nCommand: ")

    def connectionLost(self, reason: object = None) -> None:
        if self.step == 2 and self.factory.online.get(self.name) is self:
            del self.factory.online[self.name]


# The global reactor, typed loosely: it provides every interface used here.
_reactor: Any = reactor

_FLOOR_SCHEMA = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "CREATE TABLE IF NOT EXISTS message (seq INTEGER PRIMARY KEY, conversation TEXT NOT NULL,"
    " sender TEXT NOT NULL, text TEXT NOT NULL, sent_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS message_by_conversation ON message (conversation, seq)",
)


#: Rows per INSERT: four values each, under the 999 variables the oldest SQLite allows.
_ROWS_PER_INSERT = 240
_INSERT = "INSERT INTO message (conversation, sender, text, sent_at) VALUES "


class FloorHistory:
    """
    Messages written by one thread, one transaction at a time: what
    gathers while a write is under way goes in the next, as one (as the
    chat server's history does), so a writer that falls behind gets fewer,
    larger transactions instead of a queue of small ones.
    """

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for statement in _FLOOR_SCHEMA:
            self._conn.execute(statement)
        self._rows: list[tuple[str, str, str, float]] = []
        self._writing = False
        _reactor.getThreadPool().adjustPoolsize(1, 1)

    def add(self, sender: bytes, to: bytes, text: bytes) -> None:
        if not self._rows and not self._writing:
            _reactor.callLater(0, self._flush)
        name = sender.decode()
        a, b = sorted((name, to.decode()))
        self._rows.append((f"{a} {b}", name, text.decode(), time.time()))

    def _flush(self) -> None:
        if self._writing or not self._rows:
            return
        rows, self._rows = self._rows, []
        self._writing = True
        deferToThread(self._write, rows).addBoth(self._written)

    def _written(self, result: object) -> None:
        self._writing = False
        self._flush()

    def _write(self, rows: list[tuple[str, str, str, float]]) -> None:
        # Many rows per statement: each step of SQLite lets the reactor's
        # thread have the GIL and take it back, so one per row would make
        # the two threads trade it for every message.
        conn = self._conn
        conn.execute("BEGIN")
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            some = rows[start : start + _ROWS_PER_INSERT]
            values = [value for row in some for value in row]
            conn.execute(_INSERT + ", ".join(["(?, ?, ?, ?)"] * len(some)), values)
        conn.execute("COMMIT")


class BareFactory(Factory):
    protocol = BareProtocol  # type: ignore[assignment]

    def __init__(self, history: FloorHistory | None = None) -> None:
        self.online: dict[bytes, BareProtocol] = {}
        self.history = history


def main(argv: list[str]) -> None:
    port = argv[1] if len(argv) > 1 else "4119"
    history = FloorHistory(argv[3]) if len(argv) > 3 and argv[2] == "--floor" else None
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    endpoint = serverFromString(reactor, f"tcp:{port}:backlog=1024:interface=127.0.0.1")
    endpoint.listen(BareFactory(history))
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
