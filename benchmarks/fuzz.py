"""
``python -m benchmarks fuzz``: many short sessions of random, broken and
hostile input, over TCP and over the WebSocket, against a server of its own
(``twistd -n chat --web ...``, options at their defaults, SQLite on).

Each session is planned in full from its own random generator, seeded with
``--seed``, the edge and the session's number, so any one of them can be run
again alone (``--replay tcp:123,ws:45``).  Sessions are:

- over TCP: random bytes; lines before logging in (past the budget, often);
  logins with right and wrong passwords and impossible names; then lines of
  the command grammar with random arguments, text from every corner of
  Unicode (marks, joiners, bidi and invisible characters, tags, separators,
  controls), bytes that are not UTF-8 or stop inside a character, lines
  near and past 4 KiB, CR and LF in every mix, writes cut at random places;
  ending with ``logout``, a close, a reset, or a reset as the reply arrives;
- over the web port: HTTP requests that are broken or hostile (bad paths,
  long URLs, bad upgrades, many headers, bodies that never come), and
  WebSocket sessions: logins, requests of every type with fields of the
  wrong type or missing, unknown types, JSON that is deep, huge, truncated
  or not JSON, random and invalid frames (reserved opcodes and bits,
  unmasked, fragmented controls, lengths that lie, invalid UTF-8, close
  codes that may not be sent), pings, close frames, and resets.

While they run, the server's log is read ten times a second; every
exception that escaped (a traceback, "Unhandled", a critical line) is
counted, and the sessions that were running when it was written are named
in ``WORKDIR/suspects`` (the first three times each exception is seen).
After the run the suspects of each are run again on a fresh server, then
half of them, and so on, as long as the exception comes back: the session
that raises it (or the few that raise it only together) is saved, byte for
byte, under ``WORKDIR/failing``.  Last, the server must still answer a
login on each edge.

Prints one JSON line and a small table, as the other benchmarks do; exits 1
if an exception escaped or the server stopped answering a login.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from types import FrameType
from typing import Any

import attrs
from twisted.logger import Logger

from benchmarks import procfs, report, users
from benchmarks.runner import _revision
from benchmarks.servers import Server, ServerError, ours_argv

log = Logger()

#: The user the final check logs in as; no session uses it.
PROBE_USER, PROBE_PASSWORD = "fuzzprobe", "probe-pw-1"
PROMPTS = (b"Username: ", b"Password: ", b"Command: ", b"Intro: ")
#: How long a step waits for the server's answer before going on anyway
#: (some input gets none: half a line, an ``active``, a frame in pieces).
REPLY_WAIT = 0.3
#: The longest a session may take; past it, it is reset and counted as a timeout.
SESSION_LIMIT = 20.0
#: Incidents kept, with their suspects, for each exception (the rest are counted).
KEPT_INCIDENTS = 3
#: A group of suspects that bisecting cannot split is run one session at a
#: time if it is no larger than this.
ONE_BY_ONE = 80

_RECORD_START = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
_ESCAPED = re.compile(rb"Traceback \(most recent call last\)|Unhandled|#critical\]")
_PORTS = {
    "tcp": re.compile(rb"ChatFactory starting on (\d+)"),
    "web": re.compile(rb"ChatSite starting on (\d+)"),
}


# --- what a session does ------------------------------------------------------------


@attrs.frozen
class Step:
    """
    One thing a session does: C{send} C{data} (then wait for an answer:
    C{wait} is C{"prompt"} for a TCP answer ending in a prompt, C{"reply"}
    for a WebSocket frame or any byte, C{"head"} for an HTTP response's
    head, or C{"none"}), C{sleep} C{seconds}, C{close}, C{abort}, or
    C{abort_on_reply} (reset the connection as soon as any byte of the
    answer arrives).
    """

    op: str
    data: bytes = b""
    wait: str = "none"
    seconds: float = 0.0

    def to_json(self, websocket: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op}
        if self.data:
            out["data_b64"] = base64.b64encode(self.data).decode("ascii")
            if websocket and self.data[:1] in FRAME_STARTS:
                out["frames"] = describe_frames(self.data)
            else:
                out["data"] = self.data[:2000].decode("utf-8", "backslashreplace")
        if self.wait != "none":
            out["wait"] = self.wait
        if self.seconds:
            out["seconds"] = self.seconds
        return out


@attrs.frozen
class Plan:
    edge: str  # "tcp" or "ws"
    index: int
    kind: str
    source: str
    steps: tuple[Step, ...]

    @property
    def key(self) -> str:
        return f"{self.edge}:{self.index}"

    def to_json(self, seed: int) -> dict[str, Any]:
        return {
            "session": self.key,
            "seed": seed,
            "kind": self.kind,
            "source": self.source,
            "replay": f"python -m benchmarks fuzz --seed {seed} --replay {self.key}",
            "steps": [s.to_json(self.edge == "ws") for s in self.steps],
        }


#: The first byte of a client frame (FIN or not, any opcode, no reserved bits)
#: rather than of an HTTP request.
FRAME_STARTS = frozenset(bytes([fin | op]) for fin in (0, 0x80) for op in range(16))
_OPCODES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}


def describe_frames(data: bytes) -> list[str]:
    """The client frames in C{data}, unmasked, one line each: what a saved session sent, readably."""
    out = []
    at = 0
    while len(data) - at >= 2:
        b0, b1 = data[at], data[at + 1]
        n, at = b1 & 0x7F, at + 2
        if n == 126:
            n, at = int.from_bytes(data[at : at + 2], "big"), at + 2
        elif n == 127:
            n, at = int.from_bytes(data[at : at + 8], "big"), at + 8
        key = data[at : at + 4] if b1 & 0x80 else b""
        at += len(key)
        payload = data[at : at + n]
        at += len(payload)
        if len(key) == 4:
            payload = mask(payload, key)
        what = _OPCODES.get(b0 & 0x0F, f"opcode {b0 & 0x0F}")
        if what == "close" and len(payload) >= 2 and len(payload) == n:
            what = f"close {int.from_bytes(payload[:2], 'big')}"
            payload = payload[2:]
        flags = [f for f, on in (("not final", not b0 & 0x80), ("unmasked", not key)) if on]
        if b0 & 0x70:
            flags.append(f"rsv {(b0 >> 4) & 7}")
        if len(payload) < n:
            flags.append(f"says {n:,} bytes, has {len(payload):,}")
        shown = payload[:300].decode("utf-8", "backslashreplace") + ("..." if len(payload) > 300 else "")
        out.append(f"{what}{' (' + ', '.join(flags) + ')' if flags else ''}: {shown}")
        if len(payload) < n:
            break
    if at < len(data):
        out.append(f"and {len(data) - at} more bytes: {data[at : at + 100]!r}")
    return out


def session_random(seed: int, edge: str, index: int) -> random.Random:
    return random.Random(f"{seed}/{edge}/{index}")


# --- text -----------------------------------------------------------------------------

_POOLS = (
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,:;!?'\"()-_/\\@#$%^&*+=<>[]{}|~`",
    "éèêçàüößñøåæœÿŷǅǈ",
    "日本語中文한국어ไทยनमस्तेগ্ৰ",
    "العربيةעברית",
    "😀👍🏽👨‍👩‍👧🏳️‍🌈🇫🇷🏴󠁧󠁢󠁳󠁣󠁴󠁿☕",
    "\u0300\u0301\u0308\u0323\u0345\u20dd\u0489\u1dc0",
    "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u3164\u115f\ufff9\ufffa\ufffb\u034f",
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c",
    "\u2028\u2029\u0085\u000b\u000c",
    "\x00\x01\x07\x08\x1b\x7f\x9b\x9d",
    "\U000e0001\U000e0041\U000e0062\U000e007f\U000e0020",
    "\ufffe\uffff\U0010ffff\ue000\U000f0000\ufffd",
    "\t",
)


def random_text(rng: random.Random, longest: int = 600) -> str:
    """Text mostly of a few characters, sometimes long, from any of the pools."""
    size = rng.choice((0, 1, 3, 8, 20, 60, 200, rng.randrange(longest + 1)))
    if rng.random() < 0.5:
        pool = rng.choice(_POOLS[:5])
    else:
        pool = "".join(rng.sample(_POOLS, rng.randrange(1, 5)))
    text = "".join(rng.choices(pool, k=size))
    r = rng.random()
    if r < 0.08:
        text = "x" + " " * rng.choice((16, 17, 100, 400)) + "seas (private): I am the admin"
    elif r < 0.12:
        text = "a" + "\u0301" * rng.choice((4, 5, 50))
    elif r < 0.15:
        text = rng.choice(("\ud800", "\udfff", "a\udc80b"))  # lone surrogates: not UTF-8
    return text


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


#: Byte sequences that are not UTF-8, or control a terminal or a telnet.
_BAD_BYTES = (
    b"\xff",
    b"\xc0\xae",
    b"\xed\xa0\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"\x80",
    b"\xff\xfd\x18",
    b"\x1b[2J",
    b"\x00",
    b"\xef\xbb\xbf",
)
_ENDINGS = (b"\n", b"\r\n", b"\r\n", b"\n", b"\r", b"\n\r", b"\r\r\n", b"", b"\n\n")


def broken(rng: random.Random, data: bytes) -> bytes:
    """C{data} with bad bytes put in, or cut inside a character."""
    r = rng.random()
    if r < 0.4:
        at = rng.randrange(len(data) + 1)
        return data[:at] + rng.choice(_BAD_BYTES) + data[at:]
    if r < 0.7 and data:
        return data[: rng.randrange(len(data))]
    return rng.randbytes(rng.randrange(1, 40))


def name_for(rng: random.Random, names: Sequence[str]) -> str:
    r = rng.random()
    if r < 0.7:
        return rng.choice(names)
    if r < 0.8:
        return f"nobody{rng.randrange(1000)}"
    if r < 0.9:
        return random_text(rng, 40)
    return rng.choice(
        ("", " ", "columbia", "COLUMBIA", "user0001\u200b", "\uff55\uff53\uff45\uff52" + "0001", "a" * 300)
    )


def number(rng: random.Random) -> str:
    return rng.choice(
        (
            "0",
            "1",
            "-1",
            "59",
            "60",
            "61",
            "20",
            "200",
            "201",
            "10" * 20,
            "abc",
            "1.5",
            "1e3",
            "٣",
            "",
            "+5",
            " 5",
        )
    )


_COMMANDS: dict[str, Callable[[random.Random, Sequence[str]], str]] = {
    "whoelse": lambda rng, names: rng.choice(
        ("whoelse", "WHOELSE", "  whoelse  ", "whoelse now", "whoelsee")
    ),
    "wholast": lambda rng, names: f"wholast {number(rng)}" + rng.choice(("", " 5", " x")),
    "broadcast": lambda rng, names: "broadcast message " + random_text(rng),
    "broadcast_to": lambda rng, names: (
        "broadcast user "
        + " ".join(name_for(rng, names) for _ in range(rng.randrange(0, 6)))
        + rng.choice((" message ", " massage ", " ", ""))
        + random_text(rng)
    ),
    "message": lambda rng, names: f"message {name_for(rng, names)} {random_text(rng)}",
    "intro": lambda rng, names: "personalintro" + rng.choice(("", " ")) + random_text(rng, 300),
    "history": lambda rng, names: "history" + rng.choice(("", " " + number(rng))),
    "help": lambda rng, names: "help" + rng.choice(("", " whoelse", " message", " " + random_text(rng, 20))),
    "logout": lambda rng, names: rng.choice(("logout", "LOGOUT", "logout now")),
    "word": lambda rng, names: random_text(rng, 80),
}
_COMMAND_WEIGHTS = {
    "whoelse": 8,
    "wholast": 6,
    "broadcast": 8,
    "broadcast_to": 8,
    "message": 14,
    "intro": 6,
    "history": 6,
    "help": 5,
    "logout": 1,
    "word": 8,
}


def command_line(rng: random.Random, names: Sequence[str]) -> str:
    kind = rng.choices(list(_COMMAND_WEIGHTS), weights=list(_COMMAND_WEIGHTS.values()))[0]
    return _COMMANDS[kind](rng, names)


def text_line(rng: random.Random, names: Sequence[str]) -> bytes:
    """One line for the TCP edge, ending included (or not)."""
    r = rng.random()
    if r < 0.6:
        data = encode(command_line(rng, names))
    elif r < 0.75:
        data = encode(random_text(rng))
    elif r < 0.87:
        data = broken(rng, encode(command_line(rng, names)))
    elif r < 0.95:
        data = (
            b"message "
            + rng.choice(names).encode()
            + b" "
            + b"y" * rng.choice((4000, 4087, 4088, 4096, 10000))
        )
    else:
        data = b"x" * rng.choice((4095, 4096, 4097, 70000))
    return data + rng.choice(_ENDINGS)


def chunked(rng: random.Random, data: bytes, wait: str) -> list[Step]:
    """C{data} as one write, or cut into a few with short pauses (the last one waits)."""
    if wait == "prompt" and b"\n" not in data:
        wait = "none"  # half a line: nothing to answer yet
    if len(data) < 2 or rng.random() < 0.8:
        return [Step("send", data, wait)]
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(1, 4))))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    steps: list[Step] = []
    for piece in pieces[:-1]:
        steps += [Step("send", piece), Step("sleep", seconds=rng.choice((0.0, 0.001, 0.01)))]
    steps.append(Step("send", pieces[-1], wait))
    return steps


def ending(rng: random.Random, logout: bytes | None) -> list[Step]:
    """How a session ends: logout, a close, a reset, or a reset as a long reply arrives."""
    r = rng.random()
    if r < 0.3 and logout is not None:
        return [Step("send", logout, "reply"), Step("close")]
    if r < 0.55:
        return [Step("close")]
    if r < 0.8:
        return [Step("abort")]
    return [Step("abort_on_reply")]


# --- TCP sessions ---------------------------------------------------------------------


def login_lines(rng: random.Random, accounts: Sequence[tuple[str, str]]) -> tuple[bytes, bytes, str]:
    name, password = rng.choice(accounts)
    r = rng.random()
    if r < 0.75:
        return encode(name), encode(password), "right"
    if r < 0.92:
        return encode(name), encode(random_text(rng, 30)), "wrong"
    return encode(random_text(rng, 60)), encode(random_text(rng, 60)), "impossible"


def tcp_plan(
    seed: int, index: int, accounts: Sequence[tuple[str, str]], names: Sequence[str] | None = None
) -> Plan:
    rng = session_random(seed, "tcp", index)
    names = names if names is not None else [name for name, _ in accounts]
    source = f"127.0.0.{rng.randrange(2, 255)}"
    steps: list[Step] = []
    r = rng.random()
    if r < 0.08:
        kind = "random bytes"
        data = rng.randbytes(rng.choice((1, 10, 100, 1000, 5000, 20000)))
        steps += chunked(rng, data, "prompt")
    elif r < 0.2:
        kind = "lines before login"
        for _ in range(rng.randrange(1, 16)):
            steps += chunked(rng, text_line(rng, names), rng.choice(("prompt", "none")))
    elif r < 0.32:
        kind = "wrong logins"
        name = encode(rng.choice(names))
        for _ in range(rng.randrange(1, 6)):
            steps.append(Step("send", name + b"\r\n", "prompt"))
            steps.append(Step("send", encode(random_text(rng, 20)) + b"\r\n", "prompt"))
    else:
        name, password, how = login_lines(rng, accounts)
        kind = f"login ({how}) and commands"
        if rng.random() < 0.1:
            steps += chunked(rng, name + b"\n" + password + b"\n", "prompt")
        else:
            steps.append(Step("send", name + rng.choice((b"\n", b"\r\n")), "prompt"))
            steps.append(Step("send", password + rng.choice((b"\n", b"\r\n")), "prompt"))
        for _ in range(rng.randrange(0, 14)):
            line = text_line(rng, names)
            steps += chunked(rng, line, "prompt" if rng.random() < 0.8 else "none")
        if rng.random() < 0.3:
            # Pipelined: several lines in one write.
            lines = b"".join(text_line(rng, names) for _ in range(rng.randrange(2, 30)))
            steps.append(Step("send", lines, "prompt"))
        if rng.random() < 0.3:
            steps.append(
                Step("send", rng.choice((b"help\n", b"history 200\n", b"wholast 60\n", b"whoelse\n")))
            )
            steps.append(Step("abort_on_reply"))
            return Plan("tcp", index, kind, source, tuple(steps))
    steps += ending(rng, b"logout\r\n")
    return Plan("tcp", index, kind, source, tuple(steps))


# --- WebSocket sessions ---------------------------------------------------------------


def frame(
    rng: random.Random,
    payload: bytes,
    opcode: int = 0x1,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """A client frame; C{length} may lie about the payload's."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = rng.randbytes(4)
    return head + key + mask(payload, key)


def mask(payload: bytes, key: bytes) -> bytes:
    """C{payload} XOR the 4-byte C{key} repeated (masking and unmasking alike)."""
    n = len(payload)
    if not n:
        return b""
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")


def json_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 3 or r < 0.5:
        return rng.choice(
            (
                None,
                True,
                False,
                0,
                -1,
                1,
                2**63,
                -(2**70),
                1.5,
                1e308,
                "",
                random_text(rng, 100),
                "whoelse",
                "columbia",
            )
        )
    if r < 0.75:
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    return {random_text(rng, 10): json_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))}


#: The requests of protocol 1, each field with the type it should have.
_REQUESTS: dict[str, dict[str, str]] = {
    "message": {"to": "names", "text": "text"},
    "broadcast": {"text": "text", "to": "names?"},
    "whoelse": {},
    "wholast": {"minutes": "int"},
    "intro": {"text": "text"},
    "history": {"count": "int?"},
    "help": {"command": "word?"},
    "logout": {},
    "line": {"text": "line"},
    "login": {"username": "name", "password": "text"},
    "resume": {"token": "token"},
    "active": {},
    "ack": {"ids": "ids"},
}


def _field(rng: random.Random, kind: str, names: Sequence[str]) -> Any:
    kind = kind.rstrip("?")
    if kind == "names":
        if rng.random() < 0.3:
            return name_for(rng, names)
        return [name_for(rng, names) for _ in range(rng.randrange(0, 5))]
    if kind == "text":
        return random_text(rng)
    if kind == "line":
        return command_line(rng, names)
    if kind == "int":
        return rng.choice((0, 1, -5, 10, 60, 61, 200, 10**30, 2.5, True))
    if kind == "word":
        return rng.choice(("whoelse", "message", "logout", "nosuch", "", random_text(rng, 20)))
    if kind == "name":
        return name_for(rng, names)
    if kind == "token":
        return rng.choice(
            ("", "x" * 43, base64.urlsafe_b64encode(rng.randbytes(32)).decode(), random_text(rng, 60))
        )
    if kind == "ids":
        return [rng.choice(("", "abc-1", random_text(rng, 20), 5, None)) for _ in range(rng.randrange(0, 6))]
    raise ValueError(kind)


def request(rng: random.Random, names: Sequence[str]) -> dict[str, Any]:
    """A request of a known type, each field right, of the wrong type, or missing; extra fields sometimes."""
    kind = rng.choice(list(_REQUESTS))
    out: dict[str, Any] = {"type": kind}
    for field, expected in _REQUESTS[kind].items():
        r = rng.random()
        if r < 0.75:
            out[field] = _field(rng, expected, names)
        elif r < 0.92:
            out[field] = json_value(rng)
        # else: missing
    if rng.random() < 0.1:
        out[random_text(rng, 10)] = json_value(rng)
    if rng.random() < 0.05:
        out["type"] = rng.choice((json_value(rng), "nosuch", "MESSAGE", "__proto__", ""))
    return out


def json_text(rng: random.Random, names: Sequence[str]) -> bytes:
    """One message's worth of JSON, or of something that is not quite JSON."""
    r = rng.random()
    if r < 0.7:
        return json.dumps(request(rng, names), ensure_ascii=rng.random() < 0.5).encode(
            "utf-8", "surrogatepass"
        )
    if r < 0.78:
        depth = rng.choice((100, 500, 900, 960, 968, 969, 970, 980, 1000, 1500, 2000))
        inner = "[" * depth + "]" * depth if rng.random() < 0.5 else "[" * depth
        return f'{{"type":"{rng.choice(list(_REQUESTS))}","x":{inner}}}'.encode()
    if r < 0.84:
        size = rng.choice((4000, 4070, 4096, 4097, 8000, 70000))
        body = json.dumps({"type": "broadcast", "text": ""})
        return body.replace('""', '"' + "z" * size + '"').encode()
    if r < 0.9:
        good = json.dumps(request(rng, names)).encode()
        return good[: rng.randrange(len(good) + 1)]
    if r < 0.95:
        return json.dumps(json_value(rng), allow_nan=True).encode()
    return rng.choice(
        (
            b"",
            b"{}",
            b"null",
            b"\xef\xbb\xbf{}",
            b'{"type":"\\ud800"}',
            b'{"type":NaN}',
            b"{'type':'whoelse'}",
        )
    )


def bad_frame(rng: random.Random, names: Sequence[str]) -> bytes:
    """A frame a WebSocket may not send, or one the server must take in pieces."""
    text = json_text(rng, names)
    r = rng.randrange(14)
    if r == 0:
        return frame(rng, text, opcode=rng.choice((3, 4, 5, 6, 7, 11, 12, 13, 14, 15)))
    if r == 1:
        return frame(rng, text, rsv=rng.randrange(1, 8))
    if r == 2:
        return frame(rng, text, masked=False)
    if r == 3:
        return frame(rng, b"p" * rng.choice((0, 125, 126, 1000)), opcode=0x9, fin=rng.random() < 0.5)
    if r == 4:
        code = rng.choice((1000, 1001, 999, 1004, 1005, 1006, 1015, 2999, 3000, 4999, 5000, 65535))
        reason = rng.choice((b"", b"bye", b"\xff\xfe", b"r" * 130))
        payload = rng.choice((code.to_bytes(2, "big") + reason, b"\x03"))
        return frame(rng, payload, opcode=0x8)
    if r == 5:
        return frame(rng, text, opcode=0x0)  # a continuation with nothing to continue
    if r == 6:
        cut = rng.randrange(len(text) + 1)
        first = frame(rng, text[:cut], fin=False)
        ping = frame(rng, b"mid", opcode=0x9) if rng.random() < 0.5 else b""
        again = frame(rng, b"{}", opcode=0x1) if rng.random() < 0.3 else b""
        return first + ping + again + frame(rng, text[cut:], opcode=0x0)
    if r == 7:
        return frame(rng, b'{"type":"line","text":"\xff\xfe"}')
    if r == 8:
        return frame(rng, broken(rng, text))
    if r == 9:
        return frame(rng, text, opcode=0x2)
    if r == 10:
        return frame(rng, text, length=rng.choice((2**63 - 1, 2**40, 70000, len(text) + 10)))
    if r == 11:
        return rng.randbytes(rng.choice((1, 2, 14, 200)))
    if r == 12:
        return frame(rng, b"pong?", opcode=0xA)
    many = b"".join(frame(rng, b"{}") for _ in range(rng.randrange(5, 60)))
    return many


def upgrade_request(rng: random.Random, host: str, origin: str | None = None) -> bytes:
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: " + base64.b64encode(rng.randbytes(16)).decode(),
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def http_request(rng: random.Random, host: str) -> list[Step]:
    """A request for the web port that is broken, hostile, or merely unusual."""
    r = rng.randrange(16)
    path = rng.choice(
        (
            "/",
            "/index.html",
            "/app.js",
            "/style.css",
            "/ws",
            "/%00",
            "/%ff",
            "/%c0%ae%c0%ae/etc/passwd",
            "/../../etc/passwd",
            "/..%2f..%2fetc%2fpasswd",
            "//",
            "/ws/../ws",
            "/?" + "q" * 5000,
            "/" + "A" * rng.choice((2000, 16000, 70000)),
            "*",
            "http://evil.example/",
        )
    )
    method = rng.choice(
        ("GET", "GET", "HEAD", "POST", "PUT", "OPTIONS", "DELETE", "CONNECT", "TRACE", "GE T", "")
    )
    version = rng.choice(("HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/9", "", "HTTP/1.1 extra"))
    headers = [f"Host: {rng.choice((host, 'evil.example', '', host + ':1', '[::1]', 'a' * 300))}"]
    if r == 0:
        headers += [f"X-{i}: {i}" for i in range(rng.choice((50, 600)))]
    elif r == 1:
        headers.append("X-Big: " + "b" * rng.choice((8000, 20000)))
    elif r == 2:
        headers += ["Content-Length: " + rng.choice(("10", "-1", "99999999999", "abc", "5, 6")), ""]
    elif r == 3:
        headers += ["Transfer-Encoding: chunked", "", "zz\r\nbad\r\n"]
    elif r == 4:
        headers += ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 8"]
    elif r == 5:
        headers += [
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: short",
            "Sec-WebSocket-Version: 13",
        ]
    elif r == 6:
        headers += ["Bad Header Line", "\x00: \x01", "Host: second"]
    elif r == 7:
        headers.append("Origin: null")
    request = f"{method} {path} {version}\r\n" + "\r\n".join(headers) + "\r\n\r\n"
    data = request.encode("utf-8", "surrogatepass")
    if r == 8:
        data = rng.randbytes(rng.choice((1, 50, 3000)))
    elif r == 9:
        # Unfinished: part of a request, and then nothing, or a reset.
        part = data[: rng.randrange(1, max(2, len(data) - 4))]
        return [Step("send", part), Step("sleep", seconds=0.05), rng.choice((Step("abort"), Step("close")))]
    elif r == 10:
        data = data * rng.randrange(2, 5)  # pipelined
    return [*chunked(rng, data, "head"), rng.choice((Step("close"), Step("abort"), Step("abort_on_reply")))]


def ws_plan(
    seed: int,
    index: int,
    accounts: Sequence[tuple[str, str]],
    host: str,
    names: Sequence[str] | None = None,
) -> Plan:
    rng = session_random(seed, "ws", index)
    names = names if names is not None else [name for name, _ in accounts]
    source = f"127.0.0.{rng.randrange(2, 255)}"
    if rng.random() < 0.15:
        return Plan("ws", index, "HTTP", source, tuple(http_request(rng, host)))
    origin = rng.choices((None, f"http://{host}", "http://evil.example"), weights=(92, 5, 3))[0]
    steps = [Step("send", upgrade_request(rng, host, origin), "reply")]
    name, password, how = login_lines(rng, accounts)
    r = rng.random()
    if r < 0.7:
        login: dict[str, Any] = {"type": "login", "username": name.decode("utf-8", "surrogatepass")}
        login["password"] = password.decode("utf-8", "surrogatepass")
        kind = f"WebSocket: login ({how}) and requests"
        text = json.dumps(login, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        steps.append(Step("send", frame(rng, text), "reply"))
    elif r < 0.8:
        kind = "WebSocket: resume"
        steps.append(
            Step("send", frame(rng, json.dumps(request(rng, names) | {"type": "resume"}).encode()), "reply")
        )
    else:
        kind = "WebSocket: before login"
    for _ in range(rng.randrange(0, 14)):
        r = rng.random()
        if r < 0.6:
            steps.append(
                Step("send", frame(rng, json_text(rng, names)), "reply" if rng.random() < 0.8 else "none")
            )
        elif r < 0.9:
            steps += chunked(rng, bad_frame(rng, names), "reply")
        else:
            steps.append(Step("send", frame(rng, b"are you there", opcode=0x9), "reply"))
    close = frame(rng, (1000).to_bytes(2, "big"), opcode=0x8)
    if rng.random() < 0.2:
        # The close race: the last request, a ping and a frame that is not UTF-8 in one write.
        tail = frame(rng, b'{"type":"logout"}') + frame(rng, b"x", opcode=0x9) + frame(rng, b"\xff\xfe")
        steps.append(Step("send", tail, "reply"))
    steps += ending(rng, frame(rng, b'{"type":"logout"}'))
    if steps[-1].op == "close" and rng.random() < 0.5:
        steps.insert(-1, Step("send", close, "reply"))
    return Plan("ws", index, kind, source, tuple(steps))


# --- running a session ------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """Counts what arrives, keeps its tail, and for a WebSocket counts whole frames."""

    def __init__(self, websocket: bool, keep: bool = False) -> None:
        self.websocket = websocket
        #: Everything received, if asked to keep it (a check, not a session).
        self.data: bytearray | None = bytearray() if keep else None
        self.transport: asyncio.Transport | None = None
        self.received = 0
        self.tail = b""
        self.frames = 0
        self.head_done = False
        self._pending = b""
        self.closed = False
        #: Whether the server welcomed a login (or a resume) on this connection.
        self.welcomed = False
        self.changed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.tail = (self.tail + data)[-256:]
        if self.data is not None:
            self.data += data
        if not self.welcomed and (b"Welcome to chat" in data or b'"type":"welcome"' in data):
            self.welcomed = True
        if self.websocket:
            self._parse(data)
        self.changed.set()

    def _parse(self, data: bytes) -> None:
        buf = self._pending + data
        if not self.head_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._pending = buf[-65536:]
                return
            self.head_done = True
            buf = buf[end + 4 :]
        at = 0
        while len(buf) - at >= 2:
            n = buf[at + 1] & 0x7F
            head = 2
            if n == 126:
                if len(buf) - at < 4:
                    break
                n, head = int.from_bytes(buf[at + 2 : at + 4], "big"), 4
            elif n == 127:
                if len(buf) - at < 10:
                    break
                n, head = int.from_bytes(buf[at + 2 : at + 10], "big"), 10
            if len(buf) - at < head + n:
                break
            at += head + n
            self.frames += 1
        self._pending = buf[at:]

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.changed.set()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not (done() or self.closed):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                return False
        return True


def _more_frames(connection: _Connection, than: int) -> bool:
    return connection.frames > than


def _more_bytes(connection: _Connection, than: int) -> bool:
    return connection.received > than


def _prompted(connection: _Connection, than: int) -> bool:
    """Something new arrived, and it ends with a prompt: the server is done answering."""
    return connection.received > than and connection.tail.endswith(PROMPTS)


def _head(connection: _Connection) -> bool:
    return connection.head_done or b"\r\n\r\n" in connection.tail


def _never() -> bool:
    return False


#: Steps whose answer did not come within L{REPLY_WAIT}, by edge and what was awaited.
UNANSWERED: Counter[str] = Counter()
#: Sessions that got as far as a welcome (a login or a resume), by edge.
WELCOMED: Counter[str] = Counter()


async def run_plan(plan: Plan, port: int) -> str:
    """Run one session; say how it ended."""
    connection = _Connection(plan.edge == "ws")
    try:
        return await _run(plan, port, connection)
    finally:
        if connection.welcomed:
            WELCOMED[plan.edge] += 1


async def _run(plan: Plan, port: int, connection: _Connection) -> str:
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(
            loop.create_connection(lambda: connection, "127.0.0.1", port, local_addr=(plan.source, 0)), 10
        )
    except (OSError, asyncio.TimeoutError):
        return "could not connect"
    transport = connection.transport
    assert transport is not None
    for step in plan.steps:
        if connection.closed:
            return "closed by the server"
        if step.op == "send":
            frames, received = connection.frames, connection.received
            connection.write(step.data)
            done: Callable[[], bool] | None = None
            if step.wait == "reply" and connection.websocket:
                done = partial(_more_frames, connection, frames)
            elif step.wait == "reply":
                done = partial(_more_bytes, connection, received)
            elif step.wait == "prompt":
                done = partial(_prompted, connection, received)
            elif step.wait == "head":
                done = partial(_head, connection)
            if done is not None and not await connection.until(done, REPLY_WAIT):
                UNANSWERED[f"{plan.edge} {step.wait}"] += 1
        elif step.op == "sleep":
            await asyncio.sleep(step.seconds)
        elif step.op == "close":
            transport.close()
            return "closed"
        elif step.op == "abort":
            transport.abort()
            return "reset"
        elif step.op == "abort_on_reply":
            await connection.until(partial(_more_bytes, connection, connection.received), REPLY_WAIT)
            transport.abort()
            return "reset as the reply arrived"
    if connection.closed:
        return "closed by the server"
    transport.close()
    return "closed"


# --- watching the server's log ---------------------------------------------------------


def escaped_records(text: bytes) -> list[bytes]:
    """The log records (a time-stamped line and its continuation lines) that show an exception escaping."""
    records: list[bytes] = []
    current: list[bytes] = []
    for line in text.splitlines():
        if _RECORD_START.match(line) and current:
            records.append(b"\n".join(current))
            current = []
        current.append(line)
    if current:
        records.append(b"\n".join(current))
    return [r for r in records if _ESCAPED.search(r)]


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(: .*)?$")


def exception_kind(record: bytes) -> str:
    """
    The exception a log record shows, as the last line of its traceback
    names it (with memory addresses left out, so that repeats count as
    one kind); for a critical line without a traceback, its message.
    """
    lines = [ln.strip() for ln in record.decode("utf-8", "replace").splitlines()[1:] if ln.strip()]
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line) and not line.startswith("Traceback"):
            return re.sub(r"0x[0-9a-fA-F]{6,}", "0x...", line)[:300]
    first = record.decode("utf-8", "replace").splitlines()[0] if record else ""
    return first.split("] ", 1)[-1][:300]


@attrs.frozen
class Incident:
    """Exceptions found in the log at one look, and the sessions running then, most likely first."""

    records: list[bytes]
    kinds: list[str]
    plans: list[Plan]


class LogWatch:
    """Reads a server's log file as it grows; keeps the records that show an exception."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = os.path.getsize(path) if os.path.exists(path) else 0
        self._partial = b""
        self.escaped: list[bytes] = []

    def poll(self) -> list[bytes]:
        """The new records with an exception since the last poll."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.offset += len(data)
        data = self._partial + data
        # Each record is written whole, in one write: what ends with a newline
        # is whole; a read in the middle of a write keeps the rest for later.
        cut = data.rfind(b"\n") + 1
        complete, self._partial = data[:cut], data[cut:]
        found = escaped_records(complete)
        self.escaped += found
        return found

    def finish(self) -> list[bytes]:
        found = self.poll()
        rest, self._partial = self._partial, b""
        more = escaped_records(rest)
        self.escaped += more
        return found + more


# --- the run ----------------------------------------------------------------------------


@attrs.define
class Settings:
    tcp: int = 100_000
    ws: int = 20_000
    concurrency: int = 64
    seed: int = 1
    users: int = 2000


def quick_settings(seed: int = 1) -> Settings:
    return Settings(tcp=300, ws=100, concurrency=24, seed=seed, users=50)


def schedule(tcp: int, ws: int) -> Iterator[tuple[str, int]]:
    """The sessions, the two edges interleaved evenly."""
    total = tcp + ws
    t = w = 0
    for k in range(total):
        if w < ws and (t >= tcp or (k + 1) * ws > (w + 0.5) * total):
            yield "ws", w
            w += 1
        else:
            yield "tcp", t
            t += 1


class FuzzServer:
    """``twistd -n chat`` with its web port, in a directory of its own."""

    def __init__(self, directory: str, accounts_file: str, extra: Sequence[str]) -> None:
        os.makedirs(directory, exist_ok=True)
        argv = ours_argv(
            accounts_file,
            os.path.join(directory, "chat.sqlite"),
            ["--web", "tcp:0:interface=127.0.0.1", *extra],
        )
        self.server = Server("chat", argv, directory)
        self.port = 0
        self.web_port = 0

    def start(self) -> None:
        self.server.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(self.server.log_path, "rb") as f:
                text = f.read()
            found = {k: p.search(text) for k, p in _PORTS.items()}
            if all(found.values()):
                self.port = int(found["tcp"].group(1))  # type: ignore[union-attr]
                self.web_port = int(found["web"].group(1))  # type: ignore[union-attr]
                return
            time.sleep(0.05)
        self.server.stop()
        raise ServerError("the server did not listen on both ports:\n" + self.server.tail())

    @property
    def pid(self) -> int:
        return self.server.pid

    def stop(self) -> None:
        self.server.stop()


class Fuzz:
    def __init__(self, settings: Settings, directory: str, extra: Sequence[str]) -> None:
        self.settings = settings
        self.directory = directory
        self.extra = list(extra)
        self.accounts_file = os.path.join(directory, "users.txt")
        users.write(self.accounts_file, settings.users)
        with open(self.accounts_file, "a") as f:
            f.write(f"{PROBE_USER} {PROBE_PASSWORD}\n")
        self.accounts = [(users.name(i), users.password(i)) for i in range(1, settings.users + 1)]
        self.names = [name for name, _ in self.accounts]
        self.outcomes: dict[str, Counter[str]] = {"tcp": Counter(), "ws": Counter()}
        self.kinds: dict[str, Counter[str]] = {"tcp": Counter(), "ws": Counter()}
        self.client_errors: list[str] = []
        self.suspects: dict[str, Plan] = {}
        #: The incidents kept (and saved), and how many there were in all.
        self.incidents: list[Incident] = []
        self.incident_count = 0
        self.kept_per_class: Counter[str] = Counter()

    def plan(self, edge: str, index: int, web_port: int) -> Plan:
        if edge == "tcp":
            return tcp_plan(self.settings.seed, index, self.accounts, self.names)
        return ws_plan(self.settings.seed, index, self.accounts, f"127.0.0.1:{web_port}", self.names)

    async def run(self, server: FuzzServer) -> dict[str, Any]:
        watch = LogWatch(server.server.log_path)
        active: dict[str, Plan] = {}
        recent: deque[tuple[float, Plan]] = deque()
        jobs = schedule(self.settings.tcp, self.settings.ws)
        done = 0
        total = self.settings.tcp + self.settings.ws
        started = time.monotonic()
        rss_start = procfs.status_kib(server.pid, "VmRSS")

        async def worker() -> None:
            nonlocal done
            for edge, index in jobs:
                plan = self.plan(edge, index, server.web_port)
                self.kinds[edge][plan.kind] += 1
                active[plan.key] = plan
                try:
                    port = server.port if edge == "tcp" else server.web_port
                    outcome = await asyncio.wait_for(run_plan(plan, port), SESSION_LIMIT)
                except asyncio.TimeoutError:
                    outcome = "timed out"
                except Exception as e:  # a bug of the fuzzer's own: counted, shown, not fatal
                    outcome = "fuzzer error"
                    if len(self.client_errors) < 20:
                        self.client_errors.append(f"{plan.key}: {e!r}")
                del active[plan.key]
                recent.append((time.monotonic(), plan))
                self.outcomes[edge][outcome] += 1
                done += 1

        async def watcher() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.1)
                now = time.monotonic()
                while recent and recent[0][0] < last - 1.0:
                    recent.popleft()
                found = watch.poll()
                if found:
                    self._incident(found, [*(p for _, p in reversed(recent)), *active.values()])
                last = now

        async def progress() -> None:
            while True:
                await asyncio.sleep(10)
                elapsed = time.monotonic() - started
                log.info(
                    "{done:,} of {total:,} sessions in {t:.0f} s; {n} exceptions so far; "
                    "server RSS {rss} KiB",
                    done=done,
                    total=total,
                    t=elapsed,
                    n=len(watch.escaped),
                    rss=procfs.status_kib(server.pid, "VmRSS"),
                )

        watching = asyncio.ensure_future(watcher())
        reporting = asyncio.ensure_future(progress())
        try:
            await asyncio.gather(*(worker() for _ in range(self.settings.concurrency)))
        finally:
            duration = time.monotonic() - started
            await asyncio.sleep(1.0)  # what the last sessions caused reaches the log
            found = watch.finish()
            if found:
                self._incident(found, [*(p for _, p in reversed(recent)), *active.values()])
            watching.cancel()
            reporting.cancel()
        welcomed = Counter(WELCOMED)
        login_tcp = await check_tcp_login(server.port)
        login_ws = await check_ws_login(server.web_port)
        return {
            "duration_s": round(duration, 1),
            "sessions_per_s": round(total / duration, 1) if duration else None,
            "rss_start_kib": rss_start,
            "rss_end_kib": procfs.status_kib(server.pid, "VmRSS"),
            "peak_rss_kib": procfs.status_kib(server.pid, "VmHWM"),
            "server_cpu_s": procfs.cpu_seconds(server.pid),
            "escaped": watch.escaped,
            "tcp_logged_in": welcomed["tcp"],
            "ws_logged_in": welcomed["ws"],
            "login_after_tcp": login_tcp,
            "login_after_ws": login_ws,
        }

    def _incident(self, records: list[bytes], plans: list[Plan]) -> None:
        """
        An exception escaped while C{plans} ran (the most likely first):
        keep them and save them, unless each exception it shows was seen
        in L{KEPT_INCIDENTS} incidents already (those are only counted).
        """
        kinds = sorted({exception_kind(r) for r in records})
        classes = {exception_class(k) for k in kinds}
        self.incident_count += 1
        if all(self.kept_per_class[c] >= KEPT_INCIDENTS for c in classes):
            return
        self.kept_per_class.update(classes)
        for p in plans:
            self.suspects[p.key] = p
        incident = Incident(records, kinds, plans)
        self.incidents.append(incident)
        directory = os.path.join(self.directory, "suspects")
        os.makedirs(directory, exist_ok=True)
        number = len(self.incidents)
        with open(os.path.join(directory, f"incident-{number:03d}.json"), "w") as f:
            json.dump(
                {
                    "exceptions": incident.kinds,
                    "log": [r.decode("utf-8", "replace")[:4000] for r in records],
                    # Each session is planned again from the seed: its name is enough.
                    "sessions": [p.key for p in plans],
                    "replay": f"python -m benchmarks fuzz --seed {self.settings.seed} --replay "
                    + ",".join(p.key for p in plans),
                },
                f,
                indent=1,
            )
        log.warn(
            "an exception escaped ({kinds}); {k} sessions were running: saved as incident {i}",
            kinds="; ".join(incident.kinds),
            k=len(plans),
            i=number,
        )


async def check_tcp_login(port: int) -> bool:
    """Whether the server answers a login over TCP within 10 s."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        writer.write(f"{PROBE_USER}\n{PROBE_PASSWORD}\n".encode())
        await asyncio.wait_for(reader.readuntil(b"Command: "), 10)
        writer.write(b"logout\n")
        await asyncio.wait_for(reader.read(), 10)
        return True
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return False
    finally:
        writer.close()


def _welcomed(connection: _Connection) -> bool:
    return b'"type":"welcome"' in (connection.data or b"")


async def check_ws_login(port: int) -> bool:
    """Whether the server answers a login over the WebSocket within 10 s."""
    loop = asyncio.get_running_loop()
    connection = _Connection(True, keep=True)
    rng = random.Random(0)
    try:
        await asyncio.wait_for(loop.create_connection(lambda: connection, "127.0.0.1", port), 10)
    except (OSError, asyncio.TimeoutError):
        return False
    # A client sends nothing more before the server's answer to its upgrade
    # (RFC 6455, 4.1); this server drops what does come.
    connection.write(upgrade_request(rng, f"127.0.0.1:{port}"))
    await connection.until(partial(_more_frames, connection, 1), 10)
    login = {"type": "login", "username": PROBE_USER, "password": PROBE_PASSWORD}
    connection.write(frame(rng, json.dumps(login).encode()))
    await connection.until(partial(_welcomed, connection), 10)
    welcomed = _welcomed(connection)
    connection.write(frame(rng, b'{"type":"logout"}'))
    await connection.until(_never, 2)
    if connection.transport is not None:
        connection.transport.close()
    return welcomed


def exception_class(kind: str) -> str:
    """The exception's name alone, to match a replay with what the run found."""
    return kind.split(":", 1)[0]


async def run_group(plans: Sequence[Plan], server: FuzzServer, watch: LogWatch, at_once: int) -> set[str]:
    """Run C{plans}, C{at_once} at a time; give the names of the exceptions the server logged meanwhile."""
    pending = iter(plans)

    async def worker() -> None:
        for plan in pending:
            port = server.port if plan.edge == "tcp" else server.web_port
            try:
                await asyncio.wait_for(run_plan(plan, port), SESSION_LIMIT)
            except asyncio.TimeoutError:
                pass

    await asyncio.gather(*(worker() for _ in range(min(at_once, len(plans)))))
    await asyncio.sleep(0.5)
    watch.poll()
    found, watch.escaped = watch.escaped, []
    return {exception_class(exception_kind(r)) for r in found}


async def confirm(
    incidents: Sequence[Incident], server: FuzzServer, at_once: int, per_kind: int = 2
) -> list[tuple[list[Plan], list[str]]]:
    """
    Find, for each incident, the session that raises its exception: run
    its suspects again on a fresh server, then half of them, and so on
    (bisecting), as long as the exception comes back.  Usually that ends
    with one session, which raises it alone; it may end with a group that
    raises it only together.  Incidents whose exceptions were found
    C{per_kind} times already are skipped.  Give each group found and the
    exceptions it raised.
    """
    watch = LogWatch(server.server.log_path)
    found_times: Counter[str] = Counter()
    out: list[tuple[list[Plan], list[str]]] = []
    for incident in incidents:
        wanted = {exception_class(k) for k in incident.kinds}
        if all(found_times[k] >= per_kind for k in wanted):
            continue
        group = list(incident.plans)
        raised = await run_group(group, server, watch, at_once) & wanted
        if not raised:
            log.info("incident's exceptions did not come back when its sessions ran again: {k}", k=wanted)
            continue
        while len(group) > 1:
            half = len(group) // 2
            for part in (group[:half], group[half:]):
                again = await run_group(part, server, watch, at_once) & wanted
                if again:
                    group, raised = part, again
                    break
            else:
                # Neither half alone: the sessions of one half may have
                # changed the state the other's culprit needs (a user logged
                # in...).  A small group is tried one session at a time.
                if len(group) <= ONE_BY_ONE:
                    for plan in group:
                        again = await run_group([plan], server, watch, 1) & wanted
                        if again:
                            group, raised = [plan], again
                            break
                break
        out.append((group, sorted(raised)))
        found_times.update(raised)
        log.info(
            "{what} raises {raised}",
            what=group[0].key if len(group) == 1 else f"{len(group)} sessions together",
            raised=", ".join(sorted(raised)),
        )
    return out


# --- the report ---------------------------------------------------------------------------


def _group_name(plans: Sequence[Plan]) -> str:
    return plans[0].key + (f" and {len(plans) - 1} more together" if len(plans) > 1 else "")


def summarise(
    fuzz: Fuzz, figures: dict[str, Any], failing: list[tuple[list[Plan], list[str]]]
) -> dict[str, Any]:
    escaped: list[bytes] = figures.pop("escaped")
    first_lines = Counter(exception_kind(r) for r in escaped)
    classes = Counter(exception_class(exception_kind(r)) for r in escaped)
    return {
        "bench": "fuzz",
        "seed": fuzz.settings.seed,
        "tcp_sessions": sum(fuzz.outcomes["tcp"].values()),
        "ws_sessions": sum(fuzz.outcomes["ws"].values()),
        "concurrency": fuzz.settings.concurrency,
        "exceptions": len(escaped),
        "exception_classes": dict(classes.most_common()),
        "exception_kinds": dict(first_lines.most_common(10)),
        "incidents": fuzz.incident_count,
        "suspects": len(fuzz.suspects),
        "failing_sessions": {_group_name(plans): raised for plans, raised in failing},
        "tcp_outcomes": dict(fuzz.outcomes["tcp"]),
        "ws_outcomes": dict(fuzz.outcomes["ws"]),
        "tcp_kinds": dict(fuzz.kinds["tcp"]),
        "ws_kinds": dict(fuzz.kinds["ws"]),
        "fuzzer_errors": fuzz.client_errors,
        "unanswered_steps": dict(UNANSWERED),
        "login_after": bool(figures["login_after_tcp"] and figures["login_after_ws"]),
        **figures,
    }


def table(record: dict[str, Any]) -> str:
    rows = [
        ("TCP sessions (of which logged in)", f"{record['tcp_sessions']:,} ({record['tcp_logged_in']:,})"),
        ("web port sessions (of which logged in)", f"{record['ws_sessions']:,} ({record['ws_logged_in']:,})"),
        ("sessions per second", f"{record['sessions_per_s']:,}"),
        ("exceptions escaped (server log)", f"{record['exceptions']:,}"),
        ("sessions found raising one (bisected)", f"{len(record['failing_sessions']):,}"),
        ("server peak RSS (VmHWM)", f"{(record['peak_rss_kib'] or 0) / 1024:,.1f} MiB"),
        (
            "server RSS at start / end",
            f"{(record['rss_start_kib'] or 0) / 1024:,.1f} / {(record['rss_end_kib'] or 0) / 1024:,.1f} MiB",
        ),
        (
            "server CPU (all its threads)",
            f"{record['server_cpu_s'] or 0:,.0f} s in {record['duration_s']:,.0f} s",
        ),
        (
            "login answered at the end (TCP, WebSocket)",
            f"{record['login_after_tcp']}, {record['login_after_ws']}",
        ),
    ]
    width = max(len(a) for a, _ in rows)
    value_width = max(len(b) for _, b in rows)
    rule = "=" * width + "  " + "=" * value_width
    lines = [rule, f"{'figure':<{width}}  {'value':<{value_width}}", rule]
    lines += [f"{a:<{width}}  {b:<{value_width}}" for a, b in rows]
    lines.append(rule)
    return "\n".join(lines)


def document(record: dict[str, Any], options: argparse.Namespace, machine: str) -> str:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = []
    if options.quick:
        lines.append("QUICK RUN: a few hundred sessions that prove the tool works; these are not figures.")
    lines += [
        f"Fuzzed {when} at revision {_revision()} on {machine}.",
        f"Seed {record['seed']}, {record['concurrency']} sessions at a time; "
        "server options: defaults, SQLite on"
        + (f", plus {options.chat_args}" if options.chat_args else "")
        + ".",
        "",
        table(record),
    ]
    if record["exceptions"]:
        lines += ["", "Exceptions that escaped, by class:", ""]
        lines += [f"- {n:,} x {name}" for name, n in record["exception_classes"].items()]
        lines += ["", "The most frequent, as the last line of the traceback says:", ""]
        lines += [f"- {n:,} x {kind}" for kind, n in record["exception_kinds"].items()]
        lines += ["", "Sessions that raise them, found by running the suspects again on a fresh server:", ""]
        found = record["failing_sessions"].items()
        lines += [f"- {name}: {', '.join(raised)}" for name, raised in found] or ["- none found"]
    if record["fuzzer_errors"]:
        lines += ["", "The fuzzer's own errors:", ""] + [f"- {e}" for e in record["fuzzer_errors"]]
    return "\n".join(lines) + "\n"


# --- the command ------------------------------------------------------------------------


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks fuzz", description=__doc__.split("\n\n")[0])
    a = parser.add_argument
    a("--tcp", type=int, default=None, help="TCP sessions (100000; 300 with --quick)")
    a("--ws", type=int, default=None, help="sessions on the web port (20000; 100 with --quick)")
    a("--seed", type=int, default=1, help="the run's seed: the same seed runs the same sessions")
    a("--concurrency", type=int, default=None, help="sessions at a time (64; 24 with --quick)")
    a("--users", type=int, default=None, help="users in the server's users file (2000)")
    a("--quick", action="store_true", help="a few hundred sessions: a smoke test of the tool")
    a("--replay", default=None, help="run these sessions alone, e.g. tcp:12,ws:5 (with the run's --seed)")
    a("--chat-args", default="", help="extra options for 'twistd chat'")
    a("--output", default=None, help="also write the table (reStructuredText) to this file")
    a("--json", default=None, help="also write the JSON line to this file")
    a("--workdir", default=None, help="keep the server's log, the suspects and the failing sessions here")
    options = parser.parse_args(argv)
    settings = quick_settings(options.seed) if options.quick else Settings(seed=options.seed)
    for name in ("tcp", "ws", "concurrency", "users"):
        value = getattr(options, name)
        if value is not None:
            setattr(settings, name, value)
    if settings.tcp < 0 or settings.ws < 0 or settings.concurrency < 1 or settings.users < 1:
        parser.error("--tcp and --ws must be at least 0, --concurrency and --users at least 1")
    options.settings = settings
    return options


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _save_failing(directory: str, seed: int, failing: list[tuple[list[Plan], list[str]]]) -> None:
    if not failing:
        return
    out = os.path.join(directory, "failing")
    os.makedirs(out, exist_ok=True)
    for plans, raised in failing:
        name = plans[0].key.replace(":", "-") + (f"-and-{len(plans) - 1}-more" if len(plans) > 1 else "")
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump({"raised": raised, "sessions": [p.to_json(seed) for p in plans]}, f, indent=1)


def main(argv: Sequence[str]) -> int:
    options = parse(argv)
    settings: Settings = options.settings
    signal.signal(signal.SIGTERM, _terminate)
    machine = procfs.machine()
    directory = options.workdir or tempfile.mkdtemp(prefix="chat-fuzz-")
    os.makedirs(directory, exist_ok=True)
    extra = options.chat_args.split()
    fuzz = Fuzz(settings, directory, extra)
    try:
        if options.replay:
            return _replay_only(fuzz, options.replay, directory, extra)
        server = FuzzServer(os.path.join(directory, "server"), fuzz.accounts_file, extra)
        server.start()
        try:
            figures = asyncio.run(fuzz.run(server))
        finally:
            server.stop()
        failing: list[tuple[list[Plan], list[str]]] = []
        if fuzz.incidents:
            log.info("bisecting the suspects of {n} incidents on a fresh server", n=len(fuzz.incidents))
            again = FuzzServer(os.path.join(directory, "replay"), fuzz.accounts_file, extra)
            again.start()
            try:
                failing = asyncio.run(confirm(fuzz.incidents, again, settings.concurrency))
            finally:
                again.stop()
            _save_failing(directory, settings.seed, failing)
    except ServerError as e:
        log.error("{error}", error=str(e))
        return 2
    finally:
        if options.workdir is None:
            shutil.rmtree(directory, ignore_errors=True)
    record = summarise(fuzz, figures, failing)
    sys.stdout.write(json.dumps(record) + "\n")
    report.publish(document(record, options, machine), [record], options.output, options.json)
    return 0 if record["exceptions"] == 0 and record["login_after"] else 1


async def _run_each(plans: Sequence[Plan], server: FuzzServer) -> list[tuple[Plan, list[bytes]]]:
    """Run each plan alone, one after another; give those after which the server logged an exception."""
    watch = LogWatch(server.server.log_path)
    failing: list[tuple[Plan, list[bytes]]] = []
    for plan in plans:
        port = server.port if plan.edge == "tcp" else server.web_port
        try:
            await asyncio.wait_for(run_plan(plan, port), SESSION_LIMIT)
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(0.5)
        found = watch.poll()
        if found:
            failing.append((plan, found))
    return failing


def _replay_only(fuzz: Fuzz, which: str, directory: str, extra: Sequence[str]) -> int:
    server = FuzzServer(os.path.join(directory, "replay"), fuzz.accounts_file, extra)
    server.start()
    try:
        plans = []
        for item in which.split(","):
            edge, _, index = item.strip().partition(":")
            if edge not in ("tcp", "ws") or not index.isdigit():
                raise SystemExit(f"--replay: {item!r} is not tcp:N or ws:N")
            plans.append(fuzz.plan(edge, int(index), server.web_port))
        failing = asyncio.run(_run_each(plans, server))
    finally:
        server.stop()
    raised = {plan.key for plan, _ in failing}
    for plan in plans:
        sys.stdout.write(
            json.dumps({**plan.to_json(fuzz.settings.seed), "raised": plan.key in raised}) + "\n"
        )
    for plan, records in failing:
        sys.stdout.write(f"\n{plan.key} made the server log:\n")
        for r in records:
            sys.stdout.write(r.decode("utf-8", "replace") + "\n")
    return 1 if failing else 0
