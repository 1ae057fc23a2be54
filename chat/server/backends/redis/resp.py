"""
Redis's protocol, RESP2, with nothing of the network in it: a command made
into bytes, and replies read out of whatever pieces the connection hands
over.

Kept apart from the connection (L{chat.server.backends.redis.link}) so that
it can be tested for what matters most on a busy node, without a reactor:
that a read of many replies is parsed in one pass, and that a reply of
megabytes arriving a few kilobytes at a time costs no more than arriving at
once (nothing is scanned or copied again while the rest is awaited).
"""

from __future__ import annotations

from typing import Any

#: The longest bulk string Redis sends (its own C{proto-max-bulk-len}): a
#: longer one means the stream is not what it should be.
MAX_BULK = 512 * 1024 * 1024
#: The longest line (a status, an error, a length): anything longer is not
#: Redis talking.
MAX_LINE = 1024 * 1024


class RedisError(Exception):
    """
    Redis answered a command with an error: the command was refused (a
    wrong type, a missing script, a failed Lua call), the connection is fine.
    """


class ProtocolError(Exception):
    """
    What arrived is not RESP2: nothing read after it can be trusted, so the
    connection must be dropped.
    """


def encode(*args: Any) -> bytes:
    """
    A command as Redis reads it: an array of bulk strings, made in one piece
    with C{bytes} formatting (building it an argument at a time cost a busy
    node more than the store's own work, on a history batch with thousands
    of arguments).  Floats are written with C{repr}, which reads back as the
    same float.
    """
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode("utf-8")
        elif isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, float):
            data = repr(arg).encode("ascii")
        else:
            data = str(arg).encode("utf-8")
        append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _text(data: bytes | memoryview) -> str:
    # Redis stores bytes; what the node wrote is UTF-8, and anything else
    # survives the round trip instead of failing the whole reply.
    return str(data, "utf-8", "surrogateescape")


def _length(line: bytes) -> int:
    """The count of a C{$} or C{*} line: digits, or -1 for nothing."""
    digits = line[1:]
    if digits.isdigit():
        return int(digits)
    if digits == b"-1":
        return -1
    raise ProtocolError(f"not a length: {line[:40]!r}")


class Parser:
    """
    Replies out of a stream, as its pieces arrive.

    L{feed} returns every reply completed so far and keeps where it stopped:
    the unfinished line (its pieces, not yet joined), the bulk string still
    waiting for its bytes (its pieces and how many are missing), and the
    arrays being filled (a stack of them, innermost last).  Nothing already
    read is looked at again, so each byte costs the same however the stream
    is cut.

    Replies are Python values: a status is a C{str}, an error a
    L{RedisError} instance (a value, so that an error inside an array is one
    too), an integer an C{int}, a bulk string a C{str} (or C{None}), an
    array a C{list} (or C{None}).  Malformed input raises L{ProtocolError};
    the parser is not to be used after that.
    """

    def __init__(self) -> None:
        #: The pieces of a line not yet ended, and their total length.
        self._line: list[bytes] = []
        self._line_size = 0
        #: The pieces of a bulk string, and how many bytes of it (with its
        #: CRLF) are still to come; 0 when none is waiting.
        self._bulk: list[bytes] = []
        self._need = 0
        #: The arrays being filled, outermost first: each its items and how
        #: many are still to come.
        self._arrays: list[list[Any]] = []

    def feed(self, data: bytes) -> list[Any]:
        """Every reply completed by C{data}, in order."""
        out: list[Any] = []
        end = len(data)
        if not end:
            return out
        at = 0
        line: bytes | None = None
        if self._need:
            at = self._more_bulk(data, out)
            if at < 0:
                return out
        elif self._line:
            at, line = self._more_line(data)
            if line is None:
                return out
        arrays = self._arrays
        while True:
            if line is None:
                eol = data.find(b"\r\n", at)
                if eol < 0:
                    if at < end:
                        self._line = [data[at:]]
                        self._line_size = end - at
                        if self._line_size > MAX_LINE:
                            raise ProtocolError(f"a line of more than {MAX_LINE} bytes")
                    return out
                line = data[at:eol]
                at = eol + 2
            kind = line[:1]
            value: Any
            if kind == b"$":
                n = _length(line)
                line = None
                if n < 0:
                    value = None
                else:
                    if n > MAX_BULK:
                        raise ProtocolError(f"a bulk string of {n} bytes")
                    stop = at + n
                    if stop + 2 <= end:
                        if data[stop : stop + 2] != b"\r\n":
                            raise ProtocolError("a bulk string longer than its length")
                        value = _text(data[at:stop])
                        at = stop + 2
                    else:
                        # The rest comes later: keep what is here, without
                        # looking at it again.
                        self._bulk = [data[at:]] if at < end else []
                        self._need = n + 2 - (end - at)
                        return out
            elif kind == b"*":
                n = _length(line)
                line = None
                if n > 0:
                    arrays.append([[], n])
                    continue
                value = [] if n == 0 else None
            elif kind == b":":
                digits = line[1:]
                if not (digits.isdigit() or (digits[:1] == b"-" and digits[1:].isdigit())):
                    raise ProtocolError(f"not an integer: {line[:40]!r}")
                value = int(digits)
                line = None
            elif kind == b"+":
                value = _text(line[1:])
                line = None
            elif kind == b"-":
                value = RedisError(_text(line[1:]))
                line = None
            else:
                raise ProtocolError(f"not a reply: {line[:40]!r}")
            # A value is complete: it ends the arrays it completes.
            while arrays:
                top = arrays[-1]
                top[0].append(value)
                top[1] -= 1
                if top[1]:
                    break
                arrays.pop()
                value = top[0]
            else:
                out.append(value)
            if at >= end:
                return out

    def _more_bulk(self, data: bytes, out: list[Any]) -> int:
        """
        Add C{data} to the bulk string waiting for its bytes: where the rest
        of C{data} starts once it is complete (and handed on), or -1.
        """
        end = len(data)
        if end < self._need:
            self._bulk.append(data)
            self._need -= end
            return -1
        at = self._need
        self._bulk.append(data[:at])
        self._need = 0
        raw = b"".join(self._bulk)
        self._bulk = []
        if raw[-2:] != b"\r\n":
            raise ProtocolError("a bulk string longer than its length")
        value: Any = _text(memoryview(raw)[:-2])
        arrays = self._arrays
        while arrays:
            top = arrays[-1]
            top[0].append(value)
            top[1] -= 1
            if top[1]:
                break
            arrays.pop()
            value = top[0]
        else:
            out.append(value)
        return at

    def _more_line(self, data: bytes) -> tuple[int, bytes | None]:
        """
        Add C{data} to the unfinished line: the line and where the rest of
        C{data} starts once it ends, or C{(0, None)}.
        """
        pieces = self._line
        if pieces[-1][-1:] == b"\r" and data[:1] == b"\n":
            line = b"".join(pieces)[:-1]
            at = 1
        else:
            eol = data.find(b"\r\n")
            if eol < 0:
                pieces.append(data)
                self._line_size += len(data)
                if self._line_size > MAX_LINE:
                    raise ProtocolError(f"a line of more than {MAX_LINE} bytes")
                return 0, None
            pieces.append(data[:eol])
            line = b"".join(pieces)
            at = eol + 2
        self._line = []
        self._line_size = 0
        return at, line
