"""
The private message's Python, alone: the real factory, protocol, session,
service and memory store, wired by L{build_server}, over transports that
only count bytes, driven in one process without sockets.  What it measures
is the interpreter's share of a private message (parse, session, service,
render, gather), with no system calls and no second process sharing the
machine: the figure that moves when the path gets thinner, where the
server's CPU per message under ``chatload`` moves 20% between two runs of
the same build on this machine.

    python -m benchmarks hotpath [--messages 100000] [--pairs 50] [--repeat 5]
    python -m benchmarks hotpath --instructions --messages 10000

Prints one JSON line: the median and best microseconds per message over
the repeats; with C{--instructions}, the instructions per message that
valgrind's callgrind counts (the same for the same build, however busy
the machine: what the README's figures of instructions are).  Every
round checks that the last answer and delivery are the real ones ("Sent
to ..." and the message), so a refused or rate-limited message cannot pass
for a fast one.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.address import IPv4Address

from chat.server.auth import PlainSecret
from chat.server.backends.memory import MemoryStore
from chat.server.build import ServerConfig, build_server
from chat.server.context import Settings
from chat.server.limits import Exemptions


class CountingTransport:
    """A transport that keeps only the last write and a count of bytes."""

    disconnecting = False
    connected = True

    def __init__(self, address: IPv4Address) -> None:
        self.address = address
        self.written = 0
        self.last = b""

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.last = data

    def writeSequence(self, data: Sequence[bytes]) -> None:
        self.write(b"".join(data))

    def getPeer(self) -> IPv4Address:
        return self.address

    def getHost(self) -> IPv4Address:
        return self.address

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def loseConnection(self) -> None:
        self.disconnecting = True

    def abortConnection(self) -> None:
        self.disconnecting = True


def run(messages: int, pairs: int, repeat: int) -> dict[str, Any]:
    # A reactor of its own, never run: its timed calls (the ends of turns)
    # are run here by hand, as the running reactor runs them between reads.
    from twisted.internet.selectreactor import SelectReactor

    clock: Any = SelectReactor()
    users = {f"user{i:04d}": PlainSecret(f"pw{i:04d}".encode()) for i in range(1, 2 * pairs + 1)}
    # Loopback is free of the flood limit, as it is for a load test against twistd.
    settings = Settings(exempt=Exemptions.parse("127.0.0.0/8"))
    config = ServerConfig(users=users, descriptors=None, max_connections_per_ip=10 * pairs, settings=settings)
    server = build_server(config, clock, store=MemoryStore(200))
    protocols = []
    for i in range(1, 2 * pairs + 1):
        address = IPv4Address("TCP", "127.0.0.1", 30000 + i)
        protocol: Any = server.factory.buildProtocol(address)
        protocol.makeConnection(CountingTransport(address))
        protocol.dataReceived(f"user{i:04d}\npw{i:04d}\n".encode())
        clock.runUntilCurrent()
        protocols.append(protocol)
    lines = []
    for i in range(0, 2 * pairs, 2):
        a, b = f"user{i + 1:04d}", f"user{i + 2:04d}"
        lines.append((protocols[i], f"message {b} ~LG{a}.1.1234567890123~ some text\n".encode()))
        lines.append((protocols[i + 1], f"message {a} ~LG{b}.1.1234567890123~ some text\n".encode()))
    rounds = max(1, messages // len(lines))
    figures = []
    gc.collect()
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(rounds):
            for protocol, line in lines:
                protocol.dataReceived(line)
            # The turn ends: gathered writes, the outbox and history go.
            clock.runUntilCurrent()
        figures.append((time.perf_counter() - started) / (rounds * len(lines)) * 1e6)
        sender, recipient = protocols[0].transport.last, protocols[1].transport.last
        if b"Sent to user0002." not in sender or b"user0001 (private): ~LGuser0001" not in recipient:
            raise SystemExit(f"hotpath: unexpected answers {sender!r} / {recipient!r}")
    return {
        "scenario": "hotpath-private",
        "messages_per_round": rounds * len(lines),
        "us_per_message_median": round(statistics.median(figures), 2),
        "us_per_message_best": round(min(figures), 2),
        "python": sys.version.split()[0],
    }


#: What callgrind says it counted: "==PID== Collected : 123,456".
_COLLECTED = re.compile(r"Collected\s*:\s*([\d,]+)")


def collected(report: str) -> int:
    """The instructions callgrind counted, from what it wrote to stderr."""
    found = _COLLECTED.search(report)
    if found is None:
        raise ValueError("callgrind reported no count of instructions")
    return int(found.group(1).replace(",", ""))


def count_under_callgrind(messages: int, pairs: int) -> int:
    """Instructions of a whole run of C{messages} (setup included), under valgrind's callgrind."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks",
        "hotpath",
        "--messages",
        str(messages),
        "--pairs",
        str(pairs),
        "--repeat",
        "1",
    ]
    # Set hashing of str, so that the same build counts the same twice.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800, check=True)
    return collected(done.stderr)


def instructions(
    messages: int, pairs: int, count: Callable[[int, int], int] = count_under_callgrind
) -> dict[str, Any]:
    """
    Instructions per private message: two runs under callgrind, of a fifth
    of C{messages} and of that many more, the difference over C{messages}
    (the setup, logins and imports, cancel out).  Unlike time, the same
    build gives the same count on a busy machine, which is what tells a
    change that saves 3% from noise.
    """
    base = max(2 * pairs, messages // 5)
    fewer, more = count(base, pairs), count(base + messages, pairs)
    return {
        "scenario": "hotpath-private-instructions",
        "messages": messages,
        "instructions_per_message": round((more - fewer) / messages),
        "python": sys.version.split()[0],
    }


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks hotpath", description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000, help="private messages per repeat")
    parser.add_argument("--pairs", type=int, default=50, help="pairs of users writing to each other")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per message under valgrind's callgrind instead of timing"
        " (about 80 s with --messages 10000)",
    )
    options = parser.parse_args(argv)
    if options.instructions:
        print(json.dumps(instructions(options.messages, options.pairs)))
        return 0
    print(json.dumps(run(options.messages, options.pairs, options.repeat)))
    return 0
