"""
RESP2 without a network (L{chat.server.backends.redis.resp}): any reply, cut
anywhere, parses to what was sent; malformed input is refused; and a huge
reply arriving in small pieces costs no more work per byte than arriving at
once.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable
from types import FrameType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from chat.server.backends.redis import resp
from chat.server.backends.redis.resp import Parser, ProtocolError, RedisError, encode

# --- replies as Redis writes them, with the value each should parse to ---------------


def bulk(data: bytes) -> tuple[bytes, Any]:
    return b"$%d\r\n%b\r\n" % (len(data), data), data.decode("utf-8", "surrogateescape")


def simple(text: bytes) -> tuple[bytes, Any]:
    return b"+%b\r\n" % text, text.decode("utf-8", "surrogateescape")


def error(text: bytes) -> tuple[bytes, Any]:
    return b"-%b\r\n" % text, RedisError(text.decode("utf-8", "surrogateescape"))


def integer(n: int) -> tuple[bytes, Any]:
    return b":%d\r\n" % n, n


def array(items: list[tuple[bytes, Any]]) -> tuple[bytes, Any]:
    return b"*%d\r\n" % len(items) + b"".join(wire for wire, _ in items), [value for _, value in items]


NULLS = st.sampled_from([(b"$-1\r\n", None), (b"*-1\r\n", None)])
#: One line's text: anything but CR and LF.
LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))

SCALARS = st.one_of(
    st.binary(max_size=60).map(bulk),
    LINE.map(simple),
    LINE.map(error),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(integer),
    NULLS,
)
REPLIES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=6).map(array), max_leaves=40)


def comparable(value: Any) -> Any:
    """Errors compare by their text (two exceptions are never equal)."""
    if isinstance(value, RedisError):
        return ("error", str(value))
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def pieces(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def parse_all(chunks: Iterable[bytes]) -> list[Any]:
    parser = Parser()
    out: list[Any] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


class RoundTripTests(unittest.TestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(REPLIES, min_size=1, max_size=5), st.lists(st.integers(min_value=0), max_size=30))
    def test_any_replies_cut_anywhere_parse_to_what_was_sent(
        self, replies: list[tuple[bytes, Any]], cuts: list[int]
    ) -> None:
        wire = b"".join(w for w, _ in replies)
        expected = [comparable(v) for _, v in replies]
        self.assertEqual([comparable(v) for v in parse_all(pieces(wire, cuts))], expected)

    @settings(max_examples=100, deadline=None)
    @given(st.lists(REPLIES, min_size=1, max_size=3))
    def test_byte_by_byte_is_the_same_as_at_once(self, replies: list[tuple[bytes, Any]]) -> None:
        wire = b"".join(w for w, _ in replies)
        at_once = parse_all([wire])
        one_by_one = parse_all(wire[i : i + 1] for i in range(len(wire)))
        self.assertEqual([comparable(v) for v in one_by_one], [comparable(v) for v in at_once])

    def test_each_kind_of_reply(self) -> None:
        wire = (
            b"+OK\r\n-ERR no such key\r\n:42\r\n:-7\r\n$5\r\nh\xc3\xa9l\xff\r\n$0\r\n\r\n$-1\r\n"
            b"*0\r\n*-1\r\n*2\r\n*1\r\n-WRONGTYPE x\r\n$3\r\nend\r\n"
        )
        replies = Parser().feed(wire)
        self.assertEqual(
            comparable(replies),
            [
                "OK",
                ("error", "ERR no such key"),
                42,
                -7,
                "hél\udcff",
                "",
                None,
                [],
                None,
                [[("error", "WRONGTYPE x")], "end"],
            ],
        )
        self.assertIsInstance(replies[1], RedisError)

    def test_an_incomplete_reply_waits_and_the_rest_is_kept(self) -> None:
        parser = Parser()
        self.assertEqual(parser.feed(b"*2\r\n$3\r\nfo"), [])
        self.assertEqual(parser.feed(b"o\r"), [])
        self.assertEqual(parser.feed(b"\n:1"), [])
        self.assertEqual(parser.feed(b"\r"), [])
        self.assertEqual(parser.feed(b"\n+OK\r\n"), [["foo", 1], "OK"])
        self.assertEqual(parser.feed(b""), [])


class EncodeTests(unittest.TestCase):
    def test_a_command_is_an_array_of_bulk_strings(self) -> None:
        self.assertEqual(
            encode("SET", "k\u00e9", b"\xff\x00", 1.5, 3, 1e-7),
            b"*6\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$2\r\n\xff\x00\r\n$3\r\n1.5\r\n$1\r\n3\r\n$5\r\n1e-07\r\n",
        )

    def test_no_arguments(self) -> None:
        self.assertEqual(encode(), b"*0\r\n")

    @given(
        st.lists(
            st.one_of(
                st.text(), st.binary(), st.integers(), st.floats(allow_nan=False, allow_infinity=False)
            ),
            max_size=10,
        )
    )
    def test_what_is_encoded_parses_back_as_text(self, args: list[Any]) -> None:
        def text(arg: Any) -> str:
            if isinstance(arg, bytes):
                return arg.decode("utf-8", "surrogateescape")
            if isinstance(arg, float):
                return repr(arg)
            return str(arg).encode("utf-8", "surrogatepass").decode("utf-8", "surrogateescape")

        # Text with lone surrogates cannot be sent: Redis gets UTF-8.
        args = [a for a in args if not (isinstance(a, str) and any("\ud800" <= c <= "\udfff" for c in a))]
        self.assertEqual(Parser().feed(encode(*args)), [[text(a) for a in args]])

    def test_a_float_reads_back_as_the_same_float(self) -> None:
        for value in (1700000000.1234567, 1e-7, 0.1, -2.5e300):
            [[back]] = Parser().feed(encode(value))
            self.assertEqual(float(back), value)


class MalformedTests(unittest.TestCase):
    @given(st.integers(min_value=0, max_value=255).filter(lambda b: b not in b"+-:$*"), LINE)
    def test_an_unknown_type_byte_is_refused(self, kind: int, rest: bytes) -> None:
        with self.assertRaises(ProtocolError):
            Parser().feed(bytes([kind]) + rest + b"\r\n")

    def test_bad_lengths_and_numbers_are_refused(self) -> None:
        for wire in (
            b"$-2\r\n",
            b"$abc\r\n",
            b"$\r\n",
            b"$ 3\r\nabc\r\n",
            b"$1_0\r\n",
            b"*x\r\n",
            b"*-5\r\n",
            b":12a\r\n",
            b":\r\n",
            b":--1\r\n",
            b"$3\r\nabcd\r\n",  # longer than it says
            b"$%d\r\n" % (resp.MAX_BULK + 1),
        ):
            with self.subTest(wire=wire), self.assertRaises(ProtocolError):
                Parser().feed(wire)

    def test_a_bulk_string_longer_than_it_says_is_refused_when_it_ends_in_another_piece(self) -> None:
        parser = Parser()
        parser.feed(b"$3\r\nab")
        with self.assertRaises(ProtocolError):
            parser.feed(b"cd\r\n")

    def test_a_line_that_never_ends_is_refused_before_it_fills_the_memory(self) -> None:
        parser = Parser()
        parser.feed(b"+")
        chunk = b"x" * 65536
        with self.assertRaises(ProtocolError):
            for _ in range(resp.MAX_LINE // len(chunk) + 2):
                parser.feed(chunk)


# --- counting the parser's work -----------------------------------------------------------


class Counted(bytes):
    """A piece of input that counts the bytes the parser scans or copies out of it."""

    work = 0

    def find(self, sub: Any, start: Any = 0, end: Any = None) -> int:
        stop = len(self) if end is None else end
        found = bytes.find(self, sub, start, stop)
        Counted.work += (found + len(sub) if found >= 0 else stop) - start
        return found

    def __getitem__(self, key: Any) -> Any:
        part = bytes.__getitem__(self, key)
        if isinstance(key, slice):
            Counted.work += len(part)
        return part

    def __add__(self, other: Any) -> bytes:
        Counted.work += len(self) + len(other)
        return bytes.__add__(self, other)

    def __radd__(self, other: Any) -> bytes:
        Counted.work += len(self) + len(other)
        return bytes(other) + bytes(self)


def work_to_parse(wire: bytes, piece: int) -> tuple[int, list[Any]]:
    """
    The parser's work on C{wire} cut in pieces of C{piece} bytes: the lines
    of Python it runs plus the bytes it scans or copies out of the pieces.
    """
    chunks = [Counted(wire[i : i + piece]) for i in range(0, len(wire), piece)]
    lines = 0
    source = resp.__file__

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal lines
        if frame.f_code.co_filename != source:
            return None
        if event == "line":
            lines += 1
        return trace

    parser = Parser()
    out: list[Any] = []
    Counted.work = 0
    sys.settrace(trace)
    try:
        for chunk in chunks:
            out.extend(parser.feed(chunk))
    finally:
        sys.settrace(None)
    return lines + Counted.work, out


class LinearTests(unittest.TestCase):
    """
    Work is counted, not timed: a parser that scans again what it has, or
    joins what it has with each piece, does work growing with the square of
    the reply's size when it comes in small pieces.
    """

    PIECE = 4096

    def assertLinear(self, make: Any, size: int) -> None:
        small_work, small = work_to_parse(make(size), self.PIECE)
        big_work, big = work_to_parse(make(4 * size), self.PIECE)
        self.assertEqual(len(small), 1)
        self.assertEqual(len(big), 1)
        # Four times the bytes, four times the work (and some slack).
        self.assertLess(big_work, 4.5 * small_work, (small_work, big_work))
        # And each byte is looked at a bounded number of times.
        self.assertLess(big_work, 4 * len(make(4 * size)))

    def test_a_huge_bulk_string_in_small_pieces(self) -> None:
        def make(size: int) -> bytes:
            return bulk(b"x" * size)[0]

        self.assertLinear(make, 10 * 1024 * 1024 // 4)
        _, [value] = work_to_parse(make(10 * 1024 * 1024), self.PIECE)
        self.assertEqual(len(value), 10 * 1024 * 1024)

    def test_a_huge_array_of_small_strings_in_small_pieces(self) -> None:
        def make(size: int) -> bytes:
            item = bulk(b"y" * 90)[0]
            return b"*%d\r\n" % (size // len(item)) + item * (size // len(item))

        self.assertLinear(make, 1024 * 1024)

    def test_a_huge_nested_reply_in_small_pieces(self) -> None:
        def make(size: int) -> bytes:
            # An XRANGE-like reply: [[id, [field, value]], ...]
            entry = array([bulk(b"1700000000000-0"), array([bulk(b"d"), bulk(b"z" * 200)])])[0]
            count = size // len(entry)
            return b"*%d\r\n" % count + entry * count

        self.assertLinear(make, 1024 * 1024)
