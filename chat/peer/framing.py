"""
The pair chat's wire, as pure values and functions.

The classic C{chatserve.py} and C{chatclient} programs do not frame their
messages.  Each message is one C{send()} of C{handle> text}, and each side
takes one C{recv()} for one message.  Among the public implementations a
message may also come padded with NULs to a fixed 500 or 511 bytes, or as
C{handle>text} ended by a newline, or followed by whatever was in the
sender's buffer after its NUL; the quit may be C{handle> \\quit}, a bare
C{\\quit}, or C{\\quit} and a newline followed by junk; and two messages sent
quickly may arrive in one read with nothing between them.

So what we send is exactly what the classic programs send (L{Typed} reads
a line the user typed; L{encode_message} and L{encode_quit} make the one
write, with no terminator), and what we receive goes through a L{Decoder}
that finds the messages again by these rules:

 1. A NUL, CR or LF ends a message.
 2. The peer's handle followed by C{>} starts a new message wherever it
    appears, so C{SteveO> Hi!!SteveO> \\quit} is two messages.  The handle
    is learned from the peer's first message that starts with one; our own
    handles cannot contain C{>}, so the split is exact for anything we send.
 3. After a NUL, the bytes up to the peer's next C{handle>} are the
    padding of a fixed-size write, or what the sender's buffer held after
    its string: they are dropped unseen.  A bare C{\\quit} right after the
    NULs still counts.
 4. Text not yet ended by 1 or 2 may be the first part of a message split
    across reads: it waits until more arrives, or until the line has been
    quiet for a moment, when L{Decoder.flush} makes it a message (and ends
    the padding of rule 3).  The connection's protocol keeps that time.
 5. A message is UTF-8 (invalid bytes become U+FFFD), trimmed, with its
    control characters shown as C{^X}; one with nothing printable in it is
    noise, and dropped.
 6. A message whose text is C{\\quit}, with the peer's handle or bare, is
    the peer leaving; whatever follows it is ignored.

A message of ours that contains our own C{handle>} is split there by a
receiver that follows rule 2 -- shown as two lines, nothing lost.
"""

from __future__ import annotations

import enum
import re

import attrs

from chat.terminal import visible

__all__ = [
    "MAX_HANDLE",
    "MAX_MESSAGE",
    "MAX_PENDING",
    "QUIT",
    "Decoder",
    "Event",
    "Handle",
    "HandleError",
    "Message",
    "Quit",
    "Said",
    "Typed",
    "encode_message",
    "encode_quit",
]

#: The longest handle, in characters.
MAX_HANDLE = 10
#: The longest message we send, in characters.
MAX_MESSAGE = 500
#: What either side sends to leave.
QUIT = "\\quit"

_QUIT_BYTES = QUIT.encode("ascii")
#: A NUL pads; CR or LF ends a line.
_TERMINATOR = re.compile(rb"[\x00\r\n]")
#: A handle and its C{>} at the start of a message: no controls, spaces or
#: C{>}, and at most four UTF-8 bytes per character (checked again once
#: decoded).
_HANDLE_PREFIX = re.compile(rb"([^\x00-\x20\x7f>]{1,%d})>" % (4 * MAX_HANDLE))
#: Text held for the rest of its message longer than this is taken to be
#: whole: no message of ours is near it.
MAX_PENDING = 4096


class HandleError(ValueError):
    """A handle that cannot be used; the message says why, for the user."""


def _handle_problem(name: str) -> str | None:
    if not name:
        return "A handle needs at least one character."
    if any(ch.isspace() for ch in name):
        return "A handle is one word: no spaces."
    if ">" in name:
        return "A handle cannot contain '>', which marks its end in every message."
    if not name.isprintable():
        return "A handle can only have printable characters."
    if len(name) > MAX_HANDLE:
        return f"A handle has at most {MAX_HANDLE} characters; that one has {len(name)}."
    return None


@attrs.frozen
class Handle:
    """The name a person chats under: one word of 1 to 10 characters, without C{>}."""

    name: str = attrs.field()

    @name.validator
    def _check(self, attribute: object, name: str) -> None:
        problem = _handle_problem(name)
        if problem is not None:
            raise HandleError(problem)

    @classmethod
    def parse(cls, text: str) -> Handle:
        """The handle typed as C{text}, spaces around it ignored; L{HandleError} if unusable."""
        return cls(text.strip())

    def __str__(self) -> str:
        return self.name


@attrs.frozen
class Message:
    """
    A message received.  C{handle} is the sender's when the message started
    with the handle the peer uses; otherwise the text is shown as it came.
    """

    handle: str | None
    #: One line, trimmed, with no control characters.
    text: str

    def __str__(self) -> str:
        return self.text if self.handle is None else f"{self.handle}> {self.text}"


@attrs.frozen
class Quit:
    """The peer said C{\\quit}: it is leaving."""

    handle: str | None


Event = Message | Quit


class Said(enum.Enum):
    """What a line typed at the message prompt amounts to."""

    NOTHING = "nothing"
    QUIT = "quit"
    MESSAGE = "message"
    TOO_LONG = "too long"


@attrs.frozen
class Typed:
    """
    A line typed at the message prompt, read once.  What it sends is what a
    receiver following the rules above shows: trimmed, controls as C{^X},
    and nothing at all if nothing in it is printable.
    """

    said: Said
    #: The message: trimmed, control characters shown as C{^X}, as the
    #: console's own transcript shows them.
    text: str = ""

    @classmethod
    def parse(cls, line: str) -> Typed:
        text = visible(line.strip())
        if not _has_content(text):
            # Nothing a receiver would show.
            return cls(Said.NOTHING)
        if text == QUIT:
            return cls(Said.QUIT)
        if len(text) > MAX_MESSAGE:
            return cls(Said.TOO_LONG, text)
        return cls(Said.MESSAGE, text)

    def refusal(self) -> str:
        return f"Not sent: that message has {len(self.text)} characters; the most is {MAX_MESSAGE}."


def encode_message(handle: Handle, text: str) -> bytes:
    """One message as the classic programs send it: C{handle> text}, no terminator."""
    return f"{handle.name}> {text}".encode("utf-8", "replace")


def encode_quit(handle: Handle | None) -> bytes:
    """
    The quit, as C{handle> \\quit}: the exact bytes that the strictest
    classic clients compare with.  Before a handle is chosen it is a bare
    C{\\quit}.
    """
    return _QUIT_BYTES if handle is None else f"{handle.name}> ".encode() + _QUIT_BYTES


def _learn(buf: bytes, pos: int) -> str | None:
    """The handle a message starting at C{pos} names, if it names a valid one."""
    m = _HANDLE_PREFIX.match(buf, pos)
    if m is None:
        return None
    try:
        name = m.group(1).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return name if _handle_problem(name) is None else None


def _has_content(text: str) -> bool:
    return any(not ch.isspace() and ch.isprintable() and ch != "\N{REPLACEMENT CHARACTER}" for ch in text)


def _event(segment: bytes, peer: str | None) -> Event | None:
    handle = None
    if peer is not None:
        prefix = _prefix(peer)
        if segment.startswith(prefix):
            handle, segment = peer, segment[len(prefix) :]
    text = segment.decode("utf-8", "replace").strip()
    if text == QUIT:
        return Quit(handle)
    if not _has_content(text):
        return None
    return Message(handle, visible(text))


def _prefix(peer: str) -> bytes:
    return peer.encode("utf-8") + b">"


def _partial_marker(buf: bytes, markers: tuple[bytes, ...]) -> int:
    """Where the longest end of C{buf} that could begin one of C{markers} starts."""
    longest = max(len(marker) for marker in markers) - 1
    for k in range(min(longest, len(buf)), 0, -1):
        tail = buf[-k:]
        if any(marker.startswith(tail) for marker in markers):
            return len(buf) - k
    return len(buf)


@attrs.frozen
class Decoder:
    """
    What a receiver knows between reads: the peer's handle once learned,
    text that may continue in the next read, whether it is skipping padding,
    and whether the peer has quit.  L{feed} and L{flush} return the next
    decoder and the events found; nothing here raises on any input.
    """

    #: The handle the peer uses, learned from its first message.
    peer: str | None = None
    #: Bytes kept for the next read: the start of an unfinished message, or
    #: while skipping padding, what could be the start of the next one.
    pending: bytes = b""
    #: After a NUL: dropping bytes until the peer's next message.
    padding: bool = False
    #: The peer quit: nothing more is read.
    ended: bool = False

    @property
    def waiting(self) -> bool:
        """Something depends on whether more arrives soon: L{flush} when the line goes quiet."""
        return not self.ended and (self.padding or bool(self.pending))

    def feed(self, data: bytes) -> tuple[Decoder, tuple[Event, ...]]:
        """Take one read; the messages it completes."""
        if self.ended:
            return self, ()
        buf = self.pending + data
        peer, padding = self.peer, self.padding
        events: list[Event] = []
        pos = 0
        while pos < len(buf):
            if padding:
                pos, padding = _skip_padding(buf, pos, peer)
                if padding:
                    break
                continue
            if peer is None:
                peer = _learn(buf, pos)
            end = _message_end(buf, pos, peer)
            if end is None:
                if len(buf) - pos > MAX_PENDING:
                    end = len(buf)
                else:
                    break
            segment = buf[pos:end]
            if end < len(buf) and buf[end] == 0:
                padding = True
            if end < len(buf) and buf[end] in b"\r\n\x00":
                end += 1
            pos = end
            event = _event(segment, peer)
            if isinstance(event, Quit):
                events.append(event)
                return Decoder(peer, ended=True), tuple(events)
            if event is not None:
                events.append(event)
        return Decoder(peer, buf[pos:], padding), tuple(events)

    def flush(self) -> tuple[Decoder, tuple[Event, ...]]:
        """
        The line went quiet, or closed: what is pending is a whole message,
        or the end of padding.
        """
        if self.ended or not self.waiting:
            return self, ()
        if self.padding:
            return Decoder(self.peer), ()
        peer = self.peer if self.peer is not None else _learn(self.pending, 0)
        event = _event(self.pending, peer)
        if event is None:
            return Decoder(peer), ()
        return Decoder(peer, ended=isinstance(event, Quit)), (event,)


def _message_end(buf: bytes, pos: int, peer: str | None) -> int | None:
    """Where the message starting at C{pos} ends, or None if it may go on in the next read."""
    terminator = _TERMINATOR.search(buf, pos)
    end = terminator.start() if terminator is not None else None
    if peer is not None:
        following = buf.find(_prefix(peer), pos + 1, end)
        if following != -1:
            return following
    return end


def _skip_padding(buf: bytes, pos: int, peer: str | None) -> tuple[int, bool]:
    """
    Drop padding from C{pos}: the position after it, and whether it goes on
    past the end of C{buf} (in which case the bytes from that position are
    kept: they could be the start of the next message, cut by the read).
    """
    while pos < len(buf) and buf[pos] == 0:
        pos += 1
    rest = buf[pos:]
    markers = (_QUIT_BYTES,) if peer is None else (_QUIT_BYTES, _prefix(peer))
    if any(rest.startswith(marker) for marker in markers):
        return pos, False
    if any(marker.startswith(rest) for marker in markers):
        return pos, True
    if peer is None:
        return len(buf), True
    following = buf.find(_prefix(peer), pos)
    if following != -1:
        return following, False
    return max(pos, _partial_marker(buf, markers[1:])), True
