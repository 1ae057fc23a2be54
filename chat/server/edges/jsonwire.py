"""
The WebSocket protocol's messages: events rendered as JSON objects, and
requests parsed from them.  Pure functions, so they can be fuzzed alone.

Every message either way is one JSON object with a C{"type"}.  The server's
first message is C{hello}, which names the protocol version.  The text of a
sentence (an error's C{text}, say) is the text protocol's own wording
(L{chat.server.edges.text}), so a browser shows what a terminal shows; the
sentences of errors only this protocol has (bad JSON, an unknown type) are
written here.

Messages sent to many (deliveries, presence) are rendered once, to the bytes
of a whole WebSocket frame: a server's frames are not masked, so the same
bytes go to every browser.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from functools import singledispatch
from typing import Any

import attrs
from zope.interface import implementer

from chat.server import commands
from chat.server.edges import text
from chat.server.events import (
    Announced,
    Announcement,
    Arrived,
    Ask,
    BadRoomName,
    BadUsage,
    Broadcasted,
    ConversationHistory,
    Conversations,
    Delivery,
    Event,
    Failed,
    Fault,
    Goodbye,
    Help,
    History,
    IntroTooLong,
    Kicked,
    Kind,
    LineTooLong,
    LoginRefused,
    Notice,
    NotInRoom,
    Offline,
    Presence,
    RateLimited,
    Receipt,
    RoomJoined,
    RoomLeft,
    RoomList,
    RoomMembers,
    RoomReceipt,
    Roster,
    SearchResults,
    Sessions,
    TooLong,
    TooManyConnections,
    Typing,
    UnknownCommand,
    UnknownRoom,
    UnknownUsers,
    Unread,
    Welcome,
)
from chat.server.interfaces import IFormat

PROTOCOL_VERSION = 1


def dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- events -> JSON -----------------------------------------------------------


def message(d: Delivery, with_recipients: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "from": d.sender,
        "kind": d.kind._value_,  # (less the Python-level property: per delivery)
        "text": d.text,
        "time": d.sent_at,
    }
    if with_recipients or (d.to and d.kind is Kind.BROADCAST):
        # A broadcast to named users names them to each of them too: it is
        # not one to everyone.
        out["to"] = list(d.to)
    if d.room:
        out["room"] = d.room
    return out


@singledispatch
def as_json(event: Any) -> Any:
    """
    C{event} as one JSON object (a dict, before encoding), or as several
    (a list of them) for an event that is sent as several messages.
    """
    raise TypeError(f"no JSON for {event!r}")


@as_json.register
def _welcome(event: Welcome) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "welcome", "name": event.name, "text": text.render(event)}
    if event.admin:
        out["admin"] = True
    return out


@as_json.register
def _refused(event: LoginRefused) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "login_refused", "reason": event.reason.value, "text": text.render(event)}
    if event.seconds:
        out["seconds"] = event.seconds
    return out


@as_json.register
def _delivery(event: Delivery) -> dict[str, Any]:
    return {"type": "message", **message(event)}


@as_json.register
def _arrived(event: Arrived) -> list[dict[str, Any]]:
    # Each a message as any other, marked for the client to acknowledge.
    return [{"type": "message", **message(m.delivery), "stored": True} for m in event.messages]


@as_json.register
def _offline(event: Offline) -> dict[str, Any]:
    return {"type": "offline", "messages": [message(m.delivery) for m in event.messages]}


@as_json.register
def _history(event: History) -> dict[str, Any]:
    return {
        "type": "history",
        "messages": [message(d, with_recipients=d.sender == event.owner) for d in event.messages],
    }


@as_json.register
def _conversation_history(event: ConversationHistory) -> dict[str, Any]:
    return {
        "type": "history",
        "conversation": event.conversation,
        "name": event.name,
        "more": event.more,
        "messages": [message(d, with_recipients=d.sender == event.owner) for d in event.messages],
    }


@as_json.register
def _search_results(event: SearchResults) -> dict[str, Any]:
    return {
        "type": "found",
        "query": event.text,
        "words": list(event.words),
        "more": event.more,
        "hits": [
            {
                "conversation": hit.conversation,
                "name": hit.name,
                **message(hit.message, with_recipients=hit.message.sender == event.owner),
            }
            for hit in event.hits
        ],
    }


@as_json.register
def _typing(event: Typing) -> dict[str, Any]:
    return {"type": "typing", "from": event.sender, "conversation": event.conversation}


@as_json.register
def _room_joined(event: RoomJoined) -> dict[str, Any]:
    return {
        "type": "joined",
        "room": event.room,
        "created": event.created,
        "members": event.members,
        "text": text.render(event),
    }


@as_json.register
def _room_left(event: RoomLeft) -> dict[str, Any]:
    return {"type": "left", "room": event.room, "text": text.render(event)}


@as_json.register
def _room_list(event: RoomList) -> dict[str, Any]:
    return {
        "type": "rooms",
        "rooms": [{"room": r.room, "members": r.members, "joined": r.joined} for r in event.rooms],
    }


@as_json.register
def _room_members(event: RoomMembers) -> dict[str, Any]:
    return {
        "type": "members",
        "room": event.room,
        "members": [{"name": name, "online": online} for name, online in event.members],
    }


@as_json.register
def _room_receipt(event: RoomReceipt) -> dict[str, Any]:
    return {
        "type": "receipt",
        "room": event.room,
        "online": event.online,
        "members": event.members,
        "id": event.id,
        "time": event.time,
        "text": text.render(event),
    }


@as_json.register
def _unread(event: Unread) -> dict[str, Any]:
    return {
        "type": "unread",
        "rooms": {room: count for room, count in event.rooms},
        "text": text.render(event),
    }


@as_json.register
def _conversations(event: Conversations) -> dict[str, Any]:
    return {
        "type": "conversations",
        "conversations": [
            {"id": c.id, "kind": c.kind, "name": c.name, "unread": c.unread, "last": c.last}
            for c in event.conversations
        ],
    }


@as_json.register
def _roster(event: Roster) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "roster",
        "view": "online" if event.minutes is None else "recent",
        "users": [
            {"name": e.name, "intro": e.intro, "online": e.online, "last_seen": e.last_seen}
            for e in event.entries
        ],
    }
    if event.minutes is not None:
        out["minutes"] = event.minutes
    return out


@as_json.register
def _receipt(event: Receipt) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "receipt",
        "delivered": list(event.delivered),
        "stored": list(event.stored),
        "id": event.id,
        "time": event.time,
        "text": text.render(event),
    }
    if event.failed:
        out["failed"] = list(event.failed)
    return out


@as_json.register
def _broadcasted(event: Broadcasted) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "receipt",
        "broadcast": event.count,
        "id": event.id,
        "time": event.time,
        "text": text.render(event),
    }
    if event.unreachable:
        out["unreachable"] = event.unreachable
    return out


@as_json.register
def _help(event: Help) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "help",
        "commands": [{"name": t.command, "usage": t.usage, "summary": t.summary} for t in event.topics],
    }
    if event.single:
        out["command"] = event.topics[0].command
    return out


@as_json.register
def _notice(event: Notice) -> dict[str, Any]:
    return {"type": "notice", "code": event.note.value, "text": text.render(event)}


@as_json.register
def _presence(event: Presence) -> dict[str, Any]:
    return {
        "type": "presence",
        "name": event.name,
        "online": event.online,
        "time": event.at,
        "intro": event.intro,
    }


@as_json.register
def _goodbye(event: Goodbye) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "goodbye", "reason": event.reason.value, "text": text.render(event)}
    if event.by is not None:
        out["by"] = event.by
        out["why"] = event.why
    return out


@as_json.register
def _sessions(event: Sessions) -> dict[str, Any]:
    return {
        "type": "sessions",
        "time": event.at,
        "unanswered": event.unanswered,
        "sessions": [
            {
                "user": s.user,
                "edge": s.edge,
                "address": s.address,
                "node": s.node,
                "since": s.since,
                "idle": max(0.0, event.at - s.active),
            }
            for s in event.sessions
        ],
    }


@as_json.register
def _kicked(event: Kicked) -> dict[str, Any]:
    return {
        "type": "kicked",
        "user": event.user,
        "here": event.here,
        "elsewhere": event.elsewhere,
        "text": text.render(event),
    }


@as_json.register
def _announcement(event: Announcement) -> dict[str, Any]:
    return {"type": "announcement", "text": event.text, "time": event.sent_at}


@as_json.register
def _announced(event: Announced) -> dict[str, Any]:
    return {"type": "announced", "here": event.here, "nodes": event.nodes, "text": text.render(event)}


def _error(event: Any) -> dict[str, Any]:
    """An error: its code, its sentence, and every field it carries."""
    out: dict[str, Any] = {"type": "error", "code": event.code, "text": text.render(event)}
    if not isinstance(event, Failed):
        for name, value in attrs.asdict(event, recurse=False).items():
            if value is not None:
                out[name] = list(value) if isinstance(value, tuple) else value
    return out


for _kind in (
    UnknownCommand,
    BadUsage,
    TooLong,
    IntroTooLong,
    UnknownUsers,
    RateLimited,
    LineTooLong,
    TooManyConnections,
    UnknownRoom,
    BadRoomName,
    NotInRoom,
    Failed,
):
    as_json.register(_kind, _error)


def hello(server: str, idle_timeout: float | None = None, limits: Mapping[str, int] | None = None) -> str:
    """
    The first message: the protocol's version; the seconds without a
    request after which the server logs a user out (a client that wants
    to stay sends C{active} more often than that); and the server's limits,
    so that a client checks what it sends against the server's own rules
    rather than constants of its own.
    """
    out: dict[str, Any] = {"type": "hello", "protocol": PROTOCOL_VERSION, "server": server}
    if idle_timeout is not None:
        out["idle_timeout"] = idle_timeout
    if limits is not None:
        out["limits"] = dict(limits)
    return dumps(out)


def session_token(token: str, expires: float) -> str:
    """The token that resumes this session without the password, and when it expires."""
    return dumps({"type": "session", "token": token, "expires": expires})


#: Prompts a browser acts on; the others are implied by the protocol (the
#: password comes with the username, commands may be sent at any time).
_PROMPTS: dict[Ask, str] = {Ask.USERNAME: "login", Ask.INTRO: "intro"}


def prompt(ask: Ask) -> str | None:
    kind = _PROMPTS.get(ask)
    return None if kind is None else dumps({"type": "prompt", "for": kind})


def render(event: Event) -> str:
    return dumps(as_json(event))


def frames(event: Event) -> bytes:
    """C{event} as the bytes of the frames that carry it: one per JSON object."""
    obj = as_json(event)
    if isinstance(obj, list):
        return b"".join(frame(dumps(o)) for o in obj)
    return frame(dumps(obj))


# --- frames -------------------------------------------------------------------


def frame(payload: str) -> bytes:
    """One unmasked, unfragmented WebSocket text frame (RFC 6455 5.2)."""
    data = payload.encode("utf-8")
    n = len(data)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + data


@implementer(IFormat)
class JsonFormat:
    """Deliveries and presence as whole WebSocket frames of JSON, built once for all browsers."""

    presence = True

    def delivery(self, d: Delivery) -> bytes:
        return frame(dumps({"type": "message", **message(d)}))

    def join(self, payloads: Sequence[bytes]) -> bytes:
        return b"".join(payloads)

    def event(self, event: Event) -> bytes:
        return frames(event)


JSON = JsonFormat()


# --- requests -----------------------------------------------------------------


@attrs.frozen
class Login:
    username: str
    password: str = attrs.field(repr=False)


@attrs.frozen
class Resume:
    """Log in again with the token of an earlier session."""

    token: str = attrs.field(repr=False)


@attrs.frozen
class Line:
    """A line as typed at the current prompt, parsed like the text protocol's."""

    text: str


@attrs.frozen
class Active:
    """The user is there (reading, typing): the idle timer starts again.  No answer."""


@attrs.frozen
class Ack:
    """The client has these stored messages (by message id): they may leave the store.  No answer."""

    ids: tuple[str, ...]


@attrs.frozen
class Read:
    """The user has read these conversations (up to a time, or now).  No answer."""

    conversations: tuple[str, ...]
    until: float | None = None


@attrs.frozen
class IsTyping:
    """The user is typing in a conversation (C{everyone}, C{#room}, C{@user}).  No answer."""

    conversation: str


@attrs.frozen
class ListConversations:
    """The user's conversations, with their unread counts."""


Request = Login | Resume | Line | Active | Ack | Read | IsTyping | ListConversations | commands.Command

#: The requests of a logged-in user that are not commands of the command table.
NOT_COMMANDS = (Active, Ack, Read, IsTyping, ListConversations)


@attrs.frozen
class BadRequest:
    """A message that is not a request; the session goes on."""

    code: str
    field: str | None = None
    detail: str | None = None


_BAD: dict[str, Callable[[BadRequest], str]] = {
    "bad_json": lambda e: "That message is not JSON; it was ignored.",
    "not_an_object": lambda e: 'A message must be a JSON object with a "type"; it was ignored.',
    "unknown_type": lambda e: f"Unknown message type {e.detail!r}; it was ignored.",
    "missing_field": lambda e: f"The message has no {e.field!r}; it was ignored.",
    "wrong_type": lambda e: f"{e.field!r} must be {e.detail}; the message was ignored.",
    "binary": lambda e: "Binary messages are not accepted; send JSON text.",
    "not_now": lambda e: "You are logged in already; that login was ignored.",
    "login_first": lambda e: 'Log in first: send a "login" message.',
    "message_too_big": lambda e: f"That message is longer than {e.detail} bytes; the connection is closed.",
}


def describe_bad(error: BadRequest) -> str:
    return _BAD[error.code](error)


def render_bad(error: BadRequest) -> str:
    out: dict[str, Any] = {"type": "error", "code": error.code, "text": describe_bad(error)}
    if error.field is not None:
        out["field"] = error.field
    return dumps(out)


def _ids(fields: commands.Fields) -> tuple[str, ...]:
    value = fields.get("ids", list, "a list of message ids")
    if not all(isinstance(v, str) for v in value):
        raise commands.FieldError("wrong_type", "ids", "a list of message ids")
    return tuple(value)


#: The requests of the protocol itself; every command of the command table
#: (L{commands.COMMANDS}) is a request too, under its JSON type.
_REQUESTS: dict[str, Callable[[commands.Fields], Any]] = {
    "login": lambda f: Login(f.get("username", str, "a string"), f.get("password", str, "a string")),
    "resume": lambda f: Resume(f.get("token", str, "a string")),
    "line": lambda f: Line(f.get("text", str, "a string")),
    "active": lambda f: Active(),
    "ack": lambda f: Ack(_ids(f)),
    "read": lambda f: _read(f),
    "conversations": lambda f: ListConversations(),
    "typing": lambda f: IsTyping(f.get("conversation", str, "a conversation")),
}


def _read(fields: commands.Fields) -> Read:
    if fields.present("conversations"):
        named = fields.get("conversations", list, "a list of conversations")
        if not all(isinstance(v, str) for v in named):
            raise commands.FieldError("wrong_type", "conversations", "a list of conversations")
    else:
        named = [fields.get("conversation", str, "a conversation")]
    until = fields.get("until", (int, float), "a time", required=False)
    return Read(tuple(named[:100]), None if until is None else float(until))


REQUEST_TYPES = (*_REQUESTS, *commands.BY_JSON_TYPE)
DEFAULT_LIMITS = commands.Limits()


#: The deepest nesting of arrays and objects a request may have.  Requests
#: are two deep at most (a list of names in an object); deeper is refused
#: before it is parsed, as the parser (and anything that walks what it
#: made) recurses once per level, up to Python's recursion limit.
MAX_DEPTH = 16

#: What can open or close a level of nesting, or a string (in which
#: brackets do not count), or escape a quote in a string.
_STRUCTURE = re.compile(r'[\[\]{}"\\]')


def too_deep(data: str, limit: int = MAX_DEPTH) -> bool:
    """
    Whether the JSON text C{data} nests arrays and objects deeper than
    C{limit}: counted over the brackets outside strings, in one pass that
    never recurses.  A message with no more opening brackets than
    C{limit} (every request) is answered without a scan.  For text that is
    not JSON the answer may be either; the parser then refuses it anyway.
    """
    if data.count("[") + data.count("{") <= limit:
        return False
    depth = 0
    in_string = False
    escaped = -1
    for m in _STRUCTURE.finditer(data):
        at = m.start()
        if at == escaped:
            continue
        c = data[at]
        if in_string:
            if c == '"':
                in_string = False
            elif c == "\\":
                escaped = at + 1
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > limit:
                return True
        elif c in "]}":
            depth -= 1
    return False


def _has_lone_surrogate(value: object) -> bool:
    """
    Whether a string anywhere in C{value} (a parsed request, so at most
    L{MAX_DEPTH} deep) holds half of a UTF-16 pair: JSON can escape one
    (C{"\\ud800"}), and it is no text, so nothing can show it.  Walked
    with a stack, not re-encoded whole.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_request(data: str, limits: commands.Limits = DEFAULT_LIMITS, admin: bool = False) -> Any:
    """
    One message from a browser, as a L{Request}, an error event of the
    command language (the same as the text protocol's), or a L{BadRequest};
    the admins' commands only if C{admin}.  Never raises.
    """
    if too_deep(data):
        return BadRequest("bad_json")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return BadRequest("bad_json")
    if not isinstance(obj, dict):
        return BadRequest("not_an_object")
    if _has_lone_surrogate(obj):
        return Failed(Fault.NOT_UTF8)
    kind = obj.get("type")
    if not isinstance(kind, str):
        return (
            BadRequest("missing_field", "type")
            if kind is None
            else BadRequest("wrong_type", "type", "a string")
        )
    try:
        request = _REQUESTS.get(kind)
        if request is not None:
            return request(commands.Fields(obj))
        parsed = commands.parse_json(kind, obj, limits, admin)
    except commands.FieldError as e:
        return BadRequest(e.code, e.field, e.what)
    if parsed is None:
        return BadRequest("unknown_type", "type", kind[:64])
    return parsed
