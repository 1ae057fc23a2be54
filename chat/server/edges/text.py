"""
Every sentence of the text protocol: the events of L{chat.server.events}
rendered as the lines a telnet user, C{nc} or the terminal client reads.

This is the one place where the server's wording lives.  The TCP edge sends
what L{render} returns; the WebSocket edge puts the same sentence in the
C{text} field of errors and notices, so a browser shows the words a
terminal user reads.

Lines end in CRLF on the wire; here they are joined with C{\\n} and the TCP
edge turns them into CRLF.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import singledispatch
from typing import Any

from zope.interface import implementer

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
    LineTooLong,
    LoginRefused,
    Note,
    Notice,
    NotInRoom,
    Offline,
    Presence,
    RateLimited,
    Reason,
    Receipt,
    Refusal,
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

PROMPTS: dict[Ask, str] = {
    Ask.USERNAME: "Username: ",
    Ask.PASSWORD: "Password: ",
    Ask.COMMAND: "Command: ",
    Ask.INTRO: "Intro: ",
}


#: The prompts as they are written, encoded once.
PROMPT_BYTES: dict[Ask, bytes] = {ask: text.encode("utf-8") for ask, text in PROMPTS.items()}


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def describe_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds % 3600 == 0 and seconds >= 3600:
        n, unit = seconds // 3600, "hour"
    elif seconds % 60 == 0 and seconds >= 60:
        n, unit = seconds // 60, "minute"
    else:
        n, unit = seconds, "second"
    return plural(n, unit)


def stamp(when: float) -> str:
    return time.strftime("[%Y-%m-%d %H:%M:%S UTC]", time.gmtime(when))


#: What starts each line of a message after its first: no message or
#: prompt starts so (they start with a name, a time or a word), so a
#: terminal user tells a message of several lines from several messages.
CONTINUATION = "  | "


def shown(text: str) -> str:
    """A message's text as a terminal shows it: its further lines marked as continuing it."""
    return text.replace("\n", "\n" + CONTINUATION) if "\n" in text else text


def message_line(d: Delivery) -> str:
    """A message as it is shown when it arrives."""
    return f"{d.sender} ({d.room or d.kind.value}): {shown(d.text)}"


@singledispatch
def render(event: Any) -> str:
    """The text of C{event}: one or more lines, without the last line ending."""
    raise TypeError(f"no text for {event!r}")


# --- login ------------------------------------------------------------------


@render.register
def _welcome(event: Welcome) -> str:
    return f"Login successful. Welcome to chat, {event.name}!"


_REFUSALS: dict[Refusal, Callable[[LoginRefused], str]] = {
    Refusal.INVALID: lambda e: "Invalid username or password.",
    Refusal.BLOCKED: lambda e: (
        f"{e.name} is blocked from your address for {e.seconds} more seconds "
        "after too many failed logins. Disconnecting."
    ),
    Refusal.ALREADY_ONLINE: lambda e: f"{e.name} is already logged in; a second session is not allowed.",
    Refusal.BUSY: lambda e: "The server is busy checking other logins; please try again in a moment.",
    Refusal.CHECKING: lambda e: (
        f"Too many logins for {e.name} from your address are being checked; please try again in a moment."
    ),
    Refusal.SERVER_ERROR: lambda e: "Login failed because of a server error; please try again.",
    Refusal.EXPIRED: lambda e: "Your session has expired; please log in again.",
    Refusal.REUSED: lambda e: (
        "That session was resumed already, perhaps in another tab; please log in again."
    ),
    Refusal.UNAVAILABLE: lambda e: (
        "The server cannot reach its database right now; please try again in a moment."
    ),
}


@render.register
def _refused(event: LoginRefused) -> str:
    return _REFUSALS[event.reason](event)


# --- messages ---------------------------------------------------------------


@render.register
def _delivery(event: Delivery) -> str:
    return message_line(event)


@render.register
def _offline(event: Offline) -> str:
    lines = [f"You have {plural(len(event.messages), 'offline message')}:"]
    lines.extend(f"{stamp(m.delivery.sent_at)} {message_line(m.delivery)}" for m in event.messages)
    return "\n".join(lines)


@render.register
def _arrived(event: Arrived) -> str:
    # As they would have been shown had they been sent from this node.
    return "\n".join(message_line(m.delivery) for m in event.messages)


@render.register
def _history(event: History) -> str:
    if not event.messages:
        return "No messages yet."
    lines = [f"Your last {plural(len(event.messages), 'message')}:"]
    for d in event.messages:
        if d.sender == event.owner and d.to:
            to = ", ".join(d.to)
            lines.append(f"{stamp(d.sent_at)} {d.sender} to {to} ({d.kind.value}): {shown(d.text)}")
        else:
            lines.append(f"{stamp(d.sent_at)} {message_line(d)}")
    return "\n".join(lines)


@render.register
def _conversation_history(event: ConversationHistory) -> str:
    where = (
        event.name
        if event.conversation.startswith("#")
        else (
            "everyone's conversation"
            if event.conversation == "everyone"
            else f"your conversation with {event.name}"
        )
    )
    if not event.messages:
        return f"No messages in {where} yet."
    count = len(event.messages)
    lines = [f"The last {count} messages in {where}:" if count > 1 else f"The last message in {where}:"]
    lines.extend(_history_line(d, event.owner) for d in event.messages)
    if event.more:
        lines.append("(older messages are kept: the page shows them, or ask for more with a larger N)")
    return "\n".join(lines)


def _history_line(d: Delivery, owner: str) -> str:
    """A kept message, as history shows it: the owner's own message to several names them."""
    if d.sender == owner and len(d.to) > 1:
        return f"{stamp(d.sent_at)} {d.sender} to {', '.join(d.to)} ({d.kind.value}): {shown(d.text)}"
    return f"{stamp(d.sent_at)} {message_line(d)}"


@render.register
def _search_results(event: SearchResults) -> str:
    asked = " ".join(event.words)
    if not event.hits:
        return f"No messages with {asked!r}."
    count = len(event.hits)
    lines = [f"Found {plural(count, 'message')} with {asked!r}, newest first:"]
    for hit in event.hits:
        where = "everyone" if hit.conversation == "everyone" else hit.name
        lines.append(f"  in {where}: {_history_line(hit.message, event.owner)}")
    if event.more:
        lines.append(f"(only the newest {count} are shown: add a word to narrow the search)")
    return "\n".join(lines)


@render.register
def _typing(event: Typing) -> str:
    # Never sent to a terminal (its format shows no presence); said for completeness.
    return f"{event.sender} is typing..."


@render.register
def _receipt(event: Receipt) -> str:
    parts = []
    if event.delivered:
        parts.append(f"Sent to {', '.join(event.delivered)}.")
    if event.stored:
        names = ", ".join(event.stored)
        verb = "is" if len(event.stored) == 1 else "are"
        parts.append(f"{names} {verb} offline; the message will be delivered when they next log in.")
    if event.failed:
        parts.append(
            f"Not sent to {', '.join(event.failed)}: the server cannot reach its database right now; "
            "please send it to them again."
        )
    if not parts:
        return "Nobody to send to."
    return " ".join(parts)


@render.register
def _broadcasted(event: Broadcasted) -> str:
    if event.unreachable:
        others = plural(event.unreachable, "user")
        missed = f"{others} on other servers of this chat could not be reached right now"
        if event.count:
            return f"Broadcast to {plural(event.count, 'user')}; {missed} and did not get it."
        return f"The broadcast reached no one: {missed}."
    if event.count:
        return f"Broadcast to {plural(event.count, 'user')}."
    return "Nobody else is online; the broadcast reached no one."


# --- answers ----------------------------------------------------------------


@render.register
def _roster(event: Roster) -> str:
    if event.minutes is None:
        header, empty = "Online now", "Nobody else is online."
    else:
        span = plural(event.minutes, "minute")
        header, empty = f"Online in the last {span}", f"Nobody else was online in the last {span}."
    entries = event.entries
    if not entries:
        return empty
    width = max(len(e.name) for e in entries)
    lines = [f"{header} ({len(entries)}):"]
    for e in entries:
        line = f"  {e.name:<{width}}"
        if e.intro:
            line += f"  <{e.intro}>"
        if not e.online:
            line += "  (offline)"
        lines.append(line.rstrip())
    return "\n".join(lines)


@render.register
def _help(event: Help) -> str:
    if event.single:
        [topic] = event.topics
        return f"Usage: {topic.usage}\n  {topic.summary}"
    lines = ["Commands:"]
    for topic in event.topics:
        lines.append(f"  {topic.usage}")
        lines.append(f"      {topic.summary}")
    return "\n".join(lines)


_NOTES: dict[Note, str] = {
    Note.ASK_INTRO: "Please enter your personal introduction (an empty line keeps the current one):",
    Note.INTRO_SAVED: "Personal introduction saved.",
    Note.INTRO_UNCHANGED: "Personal introduction unchanged.",
    Note.OFFLINE_NOT_LOADED: "Your offline messages could not be loaded now; they are kept for next time.",
}


@render.register
def _notice(event: Notice) -> str:
    return _NOTES[event.note]


@render.register
def _presence(event: Presence) -> str:
    # Not sent over TCP (a telnet screen is not a roster); worded for logs and
    # for edges that want a sentence.
    return f"{event.name} is {'online' if event.online else 'offline'}."


_GOODBYES: dict[Reason, Callable[[Goodbye], str]] = {
    Reason.LOGOUT: lambda e: f"Goodbye, {e.name}!",
    Reason.SHUTDOWN: lambda e: "The server is shutting down. Goodbye.",
    Reason.IDLE: lambda e: f"Logged out after {describe_duration(e.seconds)} without a command.",
    Reason.LOGIN_TIMEOUT: lambda e: f"Login timed out after {describe_duration(e.seconds)}. Disconnecting.",
    Reason.FLOOD: lambda e: "Disconnected for sending too many commands too fast.",
    Reason.SERVER_ERROR: lambda e: "Login failed because of a server error. Disconnecting.",
    Reason.REPLACED: lambda e: "You were logged in again from somewhere else; this session is closed.",
    Reason.REMOVED: lambda e: f"The user {e.name} no longer exists on this server; this session is closed.",
    Reason.KICKED: lambda e: f"You were disconnected by the admin {e.by}" + (f": {e.why}" if e.why else "."),
}


@render.register
def _goodbye(event: Goodbye) -> str:
    return _GOODBYES[event.reason](event)


# --- rooms ----------------------------------------------------------------------


@render.register
def _room_joined(event: RoomJoined) -> str:
    if event.created:
        return f"You made the room {event.room} and joined it."
    return f"You joined {event.room} ({plural(event.members, 'member')})."


@render.register
def _room_left(event: RoomLeft) -> str:
    return f"You left {event.room}."


@render.register
def _room_list(event: RoomList) -> str:
    if not event.rooms:
        return "There are no rooms yet; 'join #NAME' makes one."
    width = max(len(r.room) for r in event.rooms)
    lines = [f"Rooms ({len(event.rooms)}):"]
    for r in event.rooms:
        mine = "  (you are in it)" if r.joined else ""
        lines.append(f"  {r.room:<{width}}  {plural(r.members, 'member')}{mine}")
    return "\n".join(lines)


@render.register
def _room_members(event: RoomMembers) -> str:
    if not event.members:
        return f"Nobody is in {event.room}."
    lines = [f"Members of {event.room} ({len(event.members)}):"]
    lines.extend(f"  {name}{'' if online else '  (offline)'}" for name, online in event.members)
    return "\n".join(lines)


@render.register
def _room_receipt(event: RoomReceipt) -> str:
    others = event.members - 1
    if others <= 0:
        return f"Sent to {event.room}; nobody else is in it yet."
    return f"Sent to {event.room} ({event.online} of {plural(others, 'other member')} online)."


@render.register
def _unread(event: Unread) -> str:
    lines = []
    for room, count in event.rooms:
        them = "it" if count == 1 else "them"
        lines.append(f"{plural(count, 'unread message')} in {room}: 'history {room} {count}' shows {them}.")
    return "\n".join(lines)


@render.register
def _conversations(event: Conversations) -> str:
    if not event.conversations:
        return "No conversations yet."
    lines = [f"Conversations ({len(event.conversations)}):"]
    for c in event.conversations:
        unread = f"  ({c.unread} unread)" if c.unread else ""
        lines.append(f"  {c.id}{unread}")
    return "\n".join(lines)


# --- for admins ---------------------------------------------------------------


def _idle(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@render.register
def _sessions(event: Sessions) -> str:
    rows = [("USER", "EDGE", "ADDRESS", "NODE", "SINCE (UTC)", "IDLE")]
    for s in event.sessions:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.since))
        rows.append((s.user, s.edge, s.address, s.node or "-", since, _idle(event.at - s.active)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    header = f"{plural(len(event.sessions), 'session')}:"
    if event.unanswered:
        header += f" ({plural(event.unanswered, 'node')} did not answer in time)"
    lines = [header]
    if event.sessions:
        lines.extend(
            "  " + "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        )
    return "\n".join(lines)


@render.register
def _kicked(event: Kicked) -> str:
    if event.here:
        return f"Disconnected {event.user}; they cannot resume the session without their password."
    if event.elsewhere:
        return f"Asked the other nodes to disconnect {event.user}."
    return f"{event.user} is not online; any saved sessions of theirs were revoked."


@render.register
def _announcement(event: Announcement) -> str:
    return f"*** Announcement from the server: {event.text}"


@render.register
def _announced(event: Announced) -> str:
    where = " and to the other nodes" if event.nodes else ""
    return f"Announced to {plural(event.here, 'user')} here{where}."


# --- errors -----------------------------------------------------------------


@render.register
def _unknown_command(event: UnknownCommand) -> str:
    if event.suggestion is not None:
        return f"Unknown command '{event.word}'; did you mean '{event.suggestion}'?"
    return f"Unknown command '{event.word}'; type 'help' for the list of commands."


def _bad_mode(e: BadUsage) -> str:
    if e.suggestion is not None:
        return f"'{e.word}' is not 'message' or 'user' (did you mean '{e.suggestion}'?)"
    return f"'{e.word}' is not 'message' or 'user'"


_PROBLEMS: dict[str, Callable[[BadUsage], str]] = {
    "missing_text": lambda e: "Missing message text",
    "one_number": lambda e: f"{e.command} takes one number",
    "not_a_number": lambda e: f"'{e.word}' is not a whole number of minutes",
    "not_a_count": lambda e: f"'{e.word}' is not a number of messages (1 or more)",
    "too_many_minutes": lambda e: f"{e.number} is more than {e.limit} minutes",
    "missing_message_word": lambda e: "Missing 'message' after the user names",
    "no_recipients": lambda e: "No user names before 'message'",
    "missing_mode": lambda e: "broadcast needs 'message' or 'user'",
    "bad_mode": _bad_mode,
    "missing_recipient": lambda e: "Missing recipient and text",
    "no_arguments": lambda e: f"{e.command} takes no arguments",
    "one_topic": lambda e: "help takes at most one command name",
    "missing_user": lambda e: "Missing user name",
    "one_room": lambda e: f"{e.command} takes one room name",
}


@render.register
def _bad_usage(event: BadUsage) -> str:
    return f"{_PROBLEMS[event.problem](event)}. Usage: {event.usage}"


@render.register
def _too_long(event: TooLong) -> str:
    return f"Message too long: {event.length} characters; the limit is {event.limit}. Nothing was sent."


@render.register
def _intro_too_long(event: IntroTooLong) -> str:
    return f"Introduction too long: {event.length} characters; the limit is {event.limit}. Unchanged."


@render.register
def _unknown_users(event: UnknownUsers) -> str:
    parts = []
    for name, hint in zip(event.names, event.suggestions, strict=True):
        if hint is not None:
            parts.append(f"No user named '{name}'; did you mean '{hint}'?")
        else:
            parts.append(f"No user named '{name}'.")
    # What was not done (nothing, for a look at a conversation).
    outcomes = {"kick": " Nobody was disconnected.", "history": ""}
    return " ".join(parts) + outcomes.get(event.command or "", " Nothing was sent.")


@render.register
def _rate_limited(event: RateLimited) -> str:
    commands = "command" if event.rate == 1 else "commands"
    return f"Slow down: at most {event.rate:g} {commands} per second. That one was ignored."


@render.register
def _line_too_long(event: LineTooLong) -> str:
    return f"That line is longer than {event.limit} bytes; it was ignored."


@render.register
def _too_many_connections(event: TooManyConnections) -> str:
    return f"Too many connections from your address (limit {event.limit})."


_FAULTS: dict[Fault, str] = {
    Fault.CONTROL_CHARACTERS: "Control characters are not allowed; that line was ignored.",
    Fault.DIRECTION_CONTROLS: (
        "Characters that change the direction of text (such as U+202E) are not allowed; "
        "that line was ignored."
    ),
    Fault.NOT_UTF8: "That line is not valid UTF-8 text; it was ignored.",
    Fault.LINE_SEPARATORS: (
        "Line and paragraph separators (U+2028, U+2029) are not allowed; that line was ignored."
    ),
    Fault.INVISIBLE_CHARACTERS: (
        "Invisible characters (such as zero-width spaces) are not allowed; that line was ignored."
    ),
    Fault.STACKED_MARKS: "More than 4 accents on one letter are not allowed; that line was ignored.",
    Fault.SPACE_RUN: "More than 16 spaces in a row are not allowed; that line was ignored.",
    Fault.TOO_MANY_LINES: "A message may have at most 50 lines; nothing was sent.",
    Fault.BAD_USERNAME: "A username is a single word; please try again.",
    Fault.SELF_MESSAGE: "That is you; send a message to someone else.",
    Fault.NOT_STORED: (
        "The message could not be stored for offline users, so it was not kept; please try again."
    ),
    Fault.INTRO_NOT_SAVED: "Your introduction could not be saved; please try again.",
    Fault.HISTORY_UNAVAILABLE: "Your history could not be loaded now; please try again.",
    Fault.SERVER_ERROR: "Sorry, that failed because of a server error; please try again.",
    Fault.BUSY: "Still working on your previous command; that line was ignored.",
    Fault.UNAVAILABLE: (
        "The server cannot reach its database right now, so that was not done; please try again."
    ),
}


@render.register
def _unknown_room(event: UnknownRoom) -> str:
    if event.suggestion is not None:
        return f"No room named '{event.room}'; did you mean '{event.suggestion}'?"
    return f"No room named '{event.room}'; 'rooms' lists them, 'join {event.room}' makes it."


@render.register
def _bad_room_name(event: BadRoomName) -> str:
    return f"'{event.room}' is not a room's name: a room is # and 1 to 32 letters, digits, '-' or '_'."


@render.register
def _not_in_room(event: NotInRoom) -> str:
    return f"You are not in {event.room}; 'join {event.room}' first."


@render.register
def _failed(event: Failed) -> str:
    return _FAULTS[event.fault]


# --- on the wire ------------------------------------------------------------


def encode(event: Any, prompt: Ask | None = None) -> bytes:
    """C{event} as the bytes of the text protocol, then C{prompt} if given."""
    kind = type(event)
    if kind is Receipt and len(event.delivered) == 1 and not event.stored and not event.failed:
        # The answer to a private message, "Sent to NAME.", is the same
        # bytes every time for the same name and prompt: made once.
        key = (event.delivered[0], prompt)
        sent = _SENT.get(key)
        if sent is None:
            if len(_SENT) >= _SENT_KEPT:
                _SENT.clear()
            sent = _SENT[key] = _encode(kind, event, prompt)
        return sent
    return _encode(kind, event, prompt)


#: The answers "Sent to NAME." and their prompt, as bytes, by name and
#: prompt; at most L{_SENT_KEPT} (then started afresh).
_SENT: dict[tuple[str, Ask | None], bytes] = {}
_SENT_KEPT = 4096


def _encode(kind: type, event: Any, prompt: Ask | None) -> bytes:
    renderer = _RENDERERS.get(kind)
    if renderer is None:
        renderer = _RENDERERS[kind] = render.dispatch(kind)
    text = renderer(event)
    if "\n" in text:
        text = text.replace("\n", "\r\n")
    if prompt is None:
        return (text + "\r\n").encode("utf-8")
    return (text + "\r\n" + PROMPTS[prompt]).encode("utf-8")


#: Each event type's renderer, found once (C{render}'s own lookup is a
#: weak dictionary and a call more, for every answer).
_RENDERERS: dict[type, Callable[[Any], str]] = {}


@implementer(IFormat)
class TextFormat:
    """
    Deliveries as lines of the text protocol: C{sender (kind): text} and
    CRLF, encoded once for every TCP recipient of a message.
    """

    presence = False

    def delivery(self, d: Delivery) -> bytes:
        text = d.text
        if "\n" in text:
            text = shown(text).replace("\n", "\r\n")
        # (_value_: an enum's value without its descriptor, per message.)
        return (f"{d.sender} ({d.room or d.kind._value_}): {text}\r\n").encode()

    def join(self, payloads: Sequence[bytes]) -> bytes:
        return b"".join(payloads)

    def event(self, event: Event) -> bytes:
        return encode(event)


TEXT = TextFormat()
