"""
The command language of a logged-in session, declared once.

Each command is one entry of L{COMMANDS}, in the spirit of ergo's command
table: its name, its usage line and what it does (for C{help}), how a typed
line's arguments become its value, how a JSON request's fields do, and the
session's handler that runs it.  A new command is one entry here, its
handler, its wording where an edge shows it, and its control on the page.

Parsing is pure: from a line, or a JSON object, to a frozen command value or
a rejection (an error event, the same on every edge).  Nothing here knows
about users, sockets or time, so the parsers can be fuzzed on their own.
Whether a recipient exists is a question for the service, not the grammar.
Text that may be shown to others is checked once more, for every command
whatever its edge, by L{chat.server.textrules} in the session.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs

from chat.server import search
from chat.server.events import BadRoomName, BadUsage, IntroTooLong, TooLong, UnknownCommand


@attrs.frozen
class Limits:
    """The bounds the grammar enforces; they come from the server's options."""

    last_hour: int = 60
    max_message: int = 500


# --- values -------------------------------------------------------------------
#
# Each names the entry of COMMANDS it belongs to: its handler runs it.


@attrs.frozen
class WhoElse:
    command: ClassVar[str] = "whoelse"


@attrs.frozen
class WhoLast:
    command: ClassVar[str] = "wholast"
    minutes: int


@attrs.frozen
class Broadcast:
    command: ClassVar[str] = "broadcast"
    #: Its text may hold line breaks (the JSON protocol's).
    multiline: ClassVar[bool] = True
    text: str


@attrs.frozen
class BroadcastTo:
    command: ClassVar[str] = "broadcast"
    #: Its text may hold line breaks (the JSON protocol's).
    multiline: ClassVar[bool] = True
    recipients: tuple[str, ...]
    text: str


@attrs.frozen
class Message:
    command: ClassVar[str] = "message"
    #: Its text may hold line breaks (the JSON protocol's).
    multiline: ClassVar[bool] = True
    recipient: str
    text: str


@attrs.frozen
class PersonalIntro:
    command: ClassVar[str] = "personalintro"
    #: ``None`` means "ask for it on the next line", as seed 001 does.
    text: str | None


@attrs.frozen
class ShowHistory:
    command: ClassVar[str] = "history"
    count: int = 20
    #: One conversation, as the user names it (C{everyone}, C{#room},
    #: C{@user}); None: all of theirs together.
    conversation: str | None = None
    #: The id of the message the page ends before (the JSON protocol's paging).
    before: str | None = None


@attrs.frozen
class Search:
    """Messages the user may see that have every one of C{words}, newest first."""

    command: ClassVar[str] = "search"
    #: What was typed, and its words as compared (L{chat.server.search.words}).
    text: str
    words: tuple[str, ...]
    count: int = 20
    #: The id of the hit the page ends before (the JSON protocol's paging).
    before: str | None = None


@attrs.frozen
class RoomMessage:
    command: ClassVar[str] = "message"
    #: Its text may hold line breaks (the JSON protocol's).
    multiline: ClassVar[bool] = True
    room: str
    text: str


@attrs.frozen
class Join:
    command: ClassVar[str] = "join"
    room: str


@attrs.frozen
class Leave:
    command: ClassVar[str] = "leave"
    room: str


@attrs.frozen
class ListRooms:
    command: ClassVar[str] = "rooms"


@attrs.frozen
class Members:
    command: ClassVar[str] = "members"
    room: str


@attrs.frozen
class Help:
    command: ClassVar[str] = "help"
    topic: str | None = None


@attrs.frozen
class Logout:
    command: ClassVar[str] = "logout"


# Admins' commands: anyone else is answered as if they did not exist.


@attrs.frozen
class ListSessions:
    command: ClassVar[str] = "sessions"


@attrs.frozen
class Kick:
    command: ClassVar[str] = "kick"
    user: str
    #: What the user is told, and the log says; may be empty.
    reason: str = ""


@attrs.frozen
class Announce:
    command: ClassVar[str] = "announce"
    text: str


Command = (
    WhoElse
    | WhoLast
    | Broadcast
    | BroadcastTo
    | Message
    | RoomMessage
    | Join
    | Leave
    | ListRooms
    | Members
    | PersonalIntro
    | Help
    | ShowHistory
    | Search
    | Logout
    | ListSessions
    | Kick
    | Announce
)
COMMAND_TYPES = (
    WhoElse,
    WhoLast,
    Broadcast,
    BroadcastTo,
    Message,
    RoomMessage,
    Join,
    Leave,
    ListRooms,
    Members,
    PersonalIntro,
    Help,
    ShowHistory,
    Search,
    Logout,
    ListSessions,
    Kick,
    Announce,
)


# --- rejections ---------------------------------------------------------------
#
# An unknown command, wrong arguments and a text over the limit are error
# events (L{chat.server.events}), shown to the user as they are.


@attrs.frozen
class Blank:
    """An empty or all-space line: not an error, just nothing to do."""


Rejection = Blank | UnknownCommand | BadUsage | TooLong | IntroTooLong | BadRoomName
Parsed = Command | Rejection


class FieldError(Exception):
    """
    A JSON request whose field is missing or of the wrong type: the JSON
    edge answers it as a bad request (C{code} is C{missing_field} or
    C{wrong_type}; C{what} says what the field must be).
    """

    def __init__(self, code: str, field: str, what: str | None = None) -> None:
        super().__init__(code, field, what)
        self.code = code
        self.field = field
        self.what = what


class Fields:
    """The fields of a JSON request, read with their types checked."""

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self._obj = obj

    def get(self, name: str, kind: type | tuple[type, ...], what: str, required: bool = True) -> Any:
        value = self._obj.get(name)
        if value is None:
            if required:
                raise FieldError("missing_field", name)
            return None
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise FieldError("wrong_type", name, what)
        return value

    def text(self, name: str = "text") -> str:
        return str(self.get(name, str, "a string")).strip()

    def names(self, name: str) -> tuple[str, ...]:
        value = self._obj.get(name)
        if value is None:
            raise FieldError("missing_field", name)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise FieldError("wrong_type", name, "a username or a list of usernames")
        return tuple(dict.fromkeys(value))

    def present(self, name: str) -> bool:
        return self._obj.get(name) is not None


# --- the rules both parsers share ----------------------------------------------


def closest(word: str, candidates: tuple[str, ...] | list[str]) -> str | None:
    """
    The candidate a typist most likely meant, or None if nothing is close.
    Case does not count (C{SEAS} means C{seas}), since names are typed from
    memory and caps lock is on by mistake.
    """
    by_lower: dict[str, str] = {}
    for c in candidates:
        by_lower.setdefault(c.lower(), c)
    typed = word.lower()
    matches = difflib.get_close_matches(typed, list(by_lower), n=1, cutoff=0.6)
    if matches:
        return by_lower[matches[0]]
    # Prefixes ("who", "broad") are common and score low on ratio alone.
    prefixed = [c for c in by_lower if typed and c.startswith(typed)]
    if len(prefixed) >= 1 and len(word) >= 3:
        return by_lower[prefixed[0]]
    return None


def usage(command: str, limits: Limits) -> str:
    return COMMANDS[command].usage.format(last_hour=limits.last_hour)


def _bad(
    command: str,
    problem: str,
    limits: Limits,
    word: str | None = None,
    number: int | None = None,
    suggestion: str | None = None,
    limit: int | None = None,
) -> BadUsage:
    return BadUsage(command, problem, usage(command, limits), word, number, suggestion, limit)


def message_text(text: str, command: str, limits: Limits) -> str | BadUsage | TooLong:
    """The text of a message, or why it cannot be sent."""
    if not text:
        return _bad(command, "missing_text", limits)
    if len(text) > limits.max_message:
        return TooLong(len(text), limits.max_message)
    return text


def intro_text(text: str, limits: Limits) -> str | BadUsage | IntroTooLong:
    """A personal introduction, or why it cannot be set (the same on every edge)."""
    if not text:
        return _bad("personalintro", "missing_text", limits)
    if len(text) > limits.max_message:
        return IntroTooLong(len(text), limits.max_message)
    return text


def _minutes(minutes: int, limits: Limits) -> WhoLast | BadUsage:
    if minutes < 0:
        return _bad("wholast", "not_a_number", limits, word=str(minutes))
    if minutes > limits.last_hour:
        return _bad("wholast", "too_many_minutes", limits, number=minutes, limit=limits.last_hour)
    return WhoLast(minutes)


#: A room's name: C{#} and 1 to 32 letters, digits, C{-} or C{_}.
ROOM_NAME = re.compile(r"#[A-Za-z0-9_-]{1,32}")


def _room(word: str) -> str | BadRoomName:
    return word if ROOM_NAME.fullmatch(word) else BadRoomName(word[:64])


def _count(count: int, limits: Limits, word: str) -> ShowHistory | BadUsage:
    if count < 1:
        return _bad("history", "not_a_count", limits, word=word)
    return ShowHistory(count)


def _conversation(word: str) -> str | BadRoomName:
    """A conversation as typed (C{#room} or a user's name) as the protocol names it."""
    if word.startswith("#"):
        return _room(word)
    if word.lower() == "everyone":
        return "everyone"
    return "@" + word.lstrip("@")


def _topic(topic: str) -> Help:
    """A topic as asked for: whether it is a command the user may know is L{parse}'s to say."""
    return Help(topic)


def _split_word(rest: str) -> tuple[str, str]:
    """Split off the first space-separated word; tolerate runs of spaces."""
    parts = rest.split(None, 1)
    if not parts:
        return "", ""
    if len(parts) == 1:
        return parts[0], ""
    return parts[0], parts[1].strip()


def _whole(word: str) -> int | None:
    return int(word) if word.isascii() and word.isdigit() else None


# --- each command's parsers ---------------------------------------------------


def _no_arguments(value: Command) -> Callable[[str, Limits], Parsed]:
    def parse_bare(rest: str, limits: Limits) -> Parsed:
        return _bad(value.command, "no_arguments", limits) if rest else value

    return parse_bare


def _text_wholast(rest: str, limits: Limits) -> Parsed:
    words = rest.split()
    if len(words) != 1:
        return _bad("wholast", "one_number", limits)
    minutes = _whole(words[0])
    if minutes is None:
        return _bad("wholast", "not_a_number", limits, word=words[0])
    return _minutes(minutes, limits)


def _json_wholast(fields: Fields, limits: Limits) -> Parsed:
    return _minutes(fields.get("minutes", int, "a whole number"), limits)


def _text_broadcast(rest: str, limits: Limits) -> Parsed:
    mode, after = _split_word(rest)
    mode = mode.lower()
    if mode == "message":
        text = message_text(after, "broadcast", limits)
        return text if not isinstance(text, str) else Broadcast(text)
    if mode == "user":
        recipients: list[str] = []
        remaining = after
        while True:
            word, remaining = _split_word(remaining)
            if not word:
                return _bad("broadcast", "missing_message_word", limits)
            if word.lower() == "message":
                break
            if word not in recipients:
                recipients.append(word)
        if not recipients:
            return _bad("broadcast", "no_recipients", limits)
        text = message_text(remaining, "broadcast", limits)
        return text if not isinstance(text, str) else BroadcastTo(tuple(recipients), text)
    if not mode:
        return _bad("broadcast", "missing_mode", limits)
    return _bad("broadcast", "bad_mode", limits, word=mode, suggestion=closest(mode, ["message", "user"]))


def _lines(fields: Fields) -> str:
    """A message's text from JSON: its line breaks (CR LF taken for LF), blank lines at its ends trimmed."""
    return fields.text().replace("\r\n", "\n").strip("\n")


def _json_broadcast(fields: Fields, limits: Limits) -> Parsed:
    text = message_text(_lines(fields), "broadcast", limits)
    if not isinstance(text, str):
        return text
    if fields.present("to"):
        return BroadcastTo(fields.names("to"), text)
    return Broadcast(text)


def _text_message(rest: str, limits: Limits) -> Parsed:
    recipient, after = _split_word(rest)
    if not recipient:
        return _bad("message", "missing_recipient", limits)
    room = _room(recipient) if recipient.startswith("#") else None
    if isinstance(room, BadRoomName):
        return room
    text = message_text(after, "message", limits)
    if not isinstance(text, str):
        return text
    return RoomMessage(room, text) if room is not None else Message(recipient, text)


def _json_message(fields: Fields, limits: Limits) -> Parsed:
    if fields.present("room"):
        room = _room(fields.get("room", str, "a room's name"))
        if isinstance(room, BadRoomName):
            return room
        text = message_text(_lines(fields), "message", limits)
        return text if not isinstance(text, str) else RoomMessage(room, text)
    to = fields.names("to")
    text = message_text(_lines(fields), "message", limits)
    if not isinstance(text, str):
        return text
    if len(to) == 1 and to[0].startswith("#"):
        room = _room(to[0])
        return room if isinstance(room, BadRoomName) else RoomMessage(room, text)
    return Message(to[0], text) if len(to) == 1 else BroadcastTo(to, text)


def _one_room(command: str, make: Callable[[str], Command]) -> Callable[[str, Limits], Parsed]:
    def parse_room(rest: str, limits: Limits) -> Parsed:
        words = rest.split()
        if len(words) != 1:
            return _bad(command, "one_room", limits)
        room = _room(words[0])
        return room if isinstance(room, BadRoomName) else make(room)

    return parse_room


def _json_room(make: Callable[[str], Command]) -> Callable[[Fields, Limits], Parsed]:
    def parse_room(fields: Fields, limits: Limits) -> Parsed:
        room = _room(fields.get("room", str, "a room's name"))
        return room if isinstance(room, BadRoomName) else make(room)

    return parse_room


def _text_intro(rest: str, limits: Limits) -> Parsed:
    if not rest:
        return PersonalIntro(None)
    text = intro_text(rest, limits)
    return text if not isinstance(text, str) else PersonalIntro(text)


def _json_intro(fields: Fields, limits: Limits) -> Parsed:
    text = intro_text(fields.text(), limits)
    return text if not isinstance(text, str) else PersonalIntro(text)


def _text_history(rest: str, limits: Limits) -> Parsed:
    words = rest.split()
    if not words:
        return ShowHistory()
    conversation = None
    if _whole(words[0]) is None and (len(words) == 2 or not words[0].lstrip("-").isdigit()):
        # history #ROOM [N], history USER [N]
        named = _conversation(words[0])
        if isinstance(named, BadRoomName):
            return named
        conversation = named
        words = words[1:]
        if not words:
            return ShowHistory(conversation=conversation)
    if len(words) > 1:
        return _bad("history", "one_number", limits)
    count = _whole(words[0])
    if count is None:
        return _bad("history", "not_a_count", limits, word=words[0])
    shown = _count(count, limits, words[0])
    return attrs.evolve(shown, conversation=conversation) if isinstance(shown, ShowHistory) else shown


def _json_history(fields: Fields, limits: Limits) -> Parsed:
    count = fields.get("count", int, "a whole number", required=False)
    shown = ShowHistory() if count is None else _count(count, limits, str(count))
    if not isinstance(shown, ShowHistory):
        return shown
    conversation = fields.get("conversation", str, "a conversation", required=False)
    before = fields.get("before", str, "a message id", required=False)
    if conversation is not None and conversation.startswith("#"):
        room = _room(conversation)
        if isinstance(room, BadRoomName):
            return room
    if before is not None and conversation is None:
        raise FieldError("missing_field", "conversation")
    return attrs.evolve(shown, conversation=conversation, before=before)


#: The most hits one search answers with; the JSON protocol pages for more.
MAX_SEARCH_PAGE = 100


def _search(text: str, limits: Limits) -> Parsed:
    text = text.strip()
    if not text:
        return _bad("search", "missing_text", limits)
    if len(text) > limits.max_message:
        return TooLong(len(text), limits.max_message)
    found = search.words(text)
    if not found:
        return _bad("search", "no_words", limits, word=text[:64])
    if len(found) > search.MAX_WORDS:
        return _bad("search", "too_many_words", limits, number=len(found), limit=search.MAX_WORDS)
    return Search(text, found)


def _text_search(rest: str, limits: Limits) -> Parsed:
    return _search(rest, limits)


def _json_search(fields: Fields, limits: Limits) -> Parsed:
    found = _search(fields.text(), limits)
    if not isinstance(found, Search):
        return found
    count = fields.get("count", int, "a whole number", required=False)
    if count is not None:
        if count < 1:
            return _bad("search", "not_a_count", limits, word=str(count))
        found = attrs.evolve(found, count=min(count, MAX_SEARCH_PAGE))
    return attrs.evolve(found, before=fields.get("before", str, "a message id", required=False))


def _text_help(rest: str, limits: Limits) -> Parsed:
    words = rest.split()
    if not words:
        return Help()
    if len(words) > 1:
        return _bad("help", "one_topic", limits)
    return _topic(words[0])


def _json_help(fields: Fields, limits: Limits) -> Parsed:
    topic = fields.get("command", str, "a command name", required=False)
    return Help() if topic is None else _topic(topic)


def _text_kick(rest: str, limits: Limits) -> Parsed:
    user, reason = _split_word(rest)
    if not user:
        return _bad("kick", "missing_user", limits)
    return _kick(user, reason, limits)


def _json_kick(fields: Fields, limits: Limits) -> Parsed:
    reason = fields.get("reason", str, "a string", required=False)
    return _kick(fields.get("user", str, "a user name"), (reason or "").strip(), limits)


def _kick(user: str, reason: str, limits: Limits) -> Parsed:
    if len(reason) > limits.max_message:
        return TooLong(len(reason), limits.max_message)
    return Kick(user, reason)


def _text_announce(rest: str, limits: Limits) -> Parsed:
    text = message_text(rest, "announce", limits)
    return text if not isinstance(text, str) else Announce(text)


def _json_announce(fields: Fields, limits: Limits) -> Parsed:
    text = message_text(fields.text(), "announce", limits)
    return text if not isinstance(text, str) else Announce(text)


# --- the table ------------------------------------------------------------------


@attrs.frozen
class Entry:
    """One command: everything about it but its handler's body and its wording."""

    name: str
    #: The usage line; C{{last_hour}} is filled in from the limits.
    usage: str
    #: What it does, as C{help} says.
    summary: str
    #: A typed line's arguments (after the command word) to its value.
    parse_text: Callable[[str, Limits], Parsed]
    #: The JSON request C{type} that asks for it, and its fields to its value.
    json_type: str
    parse_json: Callable[[Fields, Limits], Parsed]
    #: The L{chat.server.session.Session} method that runs its values.
    handler: str
    #: Who may run it: an admin's command does not exist for anyone else
    #: (not parsed, not suggested, not in C{help}).
    admin: bool = False


COMMANDS: dict[str, Entry] = {
    entry.name: entry
    for entry in (
        Entry(
            "whoelse",
            "whoelse",
            "who else is online now, with their personal intros",
            _no_arguments(WhoElse()),
            "whoelse",
            lambda fields, limits: WhoElse(),
            "do_whoelse",
        ),
        Entry(
            "wholast",
            "wholast N   (N = minutes, 0 to {last_hour})",
            "who was online in the last N minutes",
            _text_wholast,
            "wholast",
            _json_wholast,
            "do_wholast",
        ),
        Entry(
            "broadcast",
            "broadcast message TEXT | broadcast user USER [USER ...] message TEXT",
            "send TEXT to everyone online, or to the listed users",
            _text_broadcast,
            "broadcast",
            _json_broadcast,
            "do_broadcast",
        ),
        Entry(
            "message",
            "message USER TEXT | message #ROOM TEXT",
            "send TEXT to USER alone (kept for them if they are offline), or to a room you are in",
            _text_message,
            "message",
            _json_message,
            "do_message",
        ),
        Entry(
            "personalintro",
            "personalintro [TEXT]",
            "set the intro others see in whoelse and wholast",
            _text_intro,
            "intro",
            _json_intro,
            "do_personalintro",
        ),
        Entry(
            "history",
            "history [#ROOM | USER] [N]   (the last N messages, 20 if not given)",
            "the messages you sent and received lately (or in one conversation), oldest first",
            _text_history,
            "history",
            _json_history,
            "do_history",
        ),
        Entry(
            "search",
            "search WORDS",
            "the messages you can see that have all of WORDS, newest first",
            _text_search,
            "search",
            _json_search,
            "do_search",
        ),
        Entry(
            "join",
            "join #ROOM",
            "join a room, making it if there is none",
            _one_room("join", Join),
            "join",
            _json_room(Join),
            "do_join",
        ),
        Entry(
            "leave",
            "leave #ROOM",
            "leave a room",
            _one_room("leave", Leave),
            "leave",
            _json_room(Leave),
            "do_leave",
        ),
        Entry(
            "rooms",
            "rooms",
            "every room, how many are in it, and whether you are",
            _no_arguments(ListRooms()),
            "rooms",
            lambda fields, limits: ListRooms(),
            "do_rooms",
        ),
        Entry(
            "members",
            "members #ROOM",
            "who is in a room, and who of them is online",
            _one_room("members", Members),
            "members",
            _json_room(Members),
            "do_members",
        ),
        Entry(
            "help",
            "help [COMMAND]",
            "this list, or the usage of one command",
            _text_help,
            "help",
            _json_help,
            "do_help",
        ),
        Entry(
            "logout",
            "logout",
            "leave the chat",
            _no_arguments(Logout()),
            "logout",
            lambda fields, limits: Logout(),
            "do_logout",
        ),
        Entry(
            "sessions",
            "sessions",
            "every session on every node: user, edge, address, node, since, idle",
            _no_arguments(ListSessions()),
            "sessions",
            lambda fields, limits: ListSessions(),
            "do_sessions",
            admin=True,
        ),
        Entry(
            "kick",
            "kick USER [REASON]",
            "end USER's sessions everywhere, telling them REASON",
            _text_kick,
            "kick",
            _json_kick,
            "do_kick",
            admin=True,
        ),
        Entry(
            "announce",
            "announce TEXT",
            "send TEXT to everyone online, from the server",
            _text_announce,
            "announce",
            _json_announce,
            "do_announce",
            admin=True,
        ),
    )
}

COMMAND_NAMES: tuple[str, ...] = tuple(COMMANDS)
#: The commands anyone may know of.
PUBLIC_NAMES: tuple[str, ...] = tuple(name for name, entry in COMMANDS.items() if not entry.admin)


def names_for(admin: bool) -> tuple[str, ...]:
    """The commands a user may run (and be told of)."""
    return COMMAND_NAMES if admin else PUBLIC_NAMES


#: The JSON request types that are commands, and their entries.
BY_JSON_TYPE: dict[str, Entry] = {entry.json_type: entry for entry in COMMANDS.values()}


def parse(line: str, limits: Limits = Limits(), admin: bool = False) -> Parsed:
    """
    Parse one line typed at the ``Command:`` prompt, by an admin or not.

    Never raises: every string maps to a command or a rejection that can be
    described to the user in one line.
    """
    parts = line.split(None, 2)
    if len(parts) == 3 and parts[0] == "message" and parts[1][0] != "#":
        # The busiest line of all, a private message, in one split (what
        # the table's parser makes of it, less two splits and four calls;
        # the property tests hold the two to the same answers).
        text = parts[2].rstrip()
        if len(text) <= limits.max_message:
            return Message(parts[1], text)
    return _parse_entry(line, limits, admin)


def _parse_entry(line: str, limits: Limits, admin: bool) -> Parsed:
    """L{parse} through the command table: each command's entry parses the rest of its line."""
    word, rest = _split_word(line)
    if not word:
        return Blank()
    name = word.lower()
    entry = COMMANDS.get(name)
    if entry is None or (entry.admin and not admin):
        return UnknownCommand(word, closest(name, names_for(admin)))
    return _known_topic(entry.parse_text(rest, limits), admin)


def parse_json(
    kind: str, obj: Mapping[str, Any], limits: Limits = Limits(), admin: bool = False
) -> Parsed | None:
    """
    The command a JSON request of type C{kind} asks for, or a rejection;
    None if C{kind} is no command (or one only admins have, and C{admin} is
    false).

    @raise FieldError: a field is missing or of the wrong type.
    """
    entry = BY_JSON_TYPE.get(kind)
    if entry is None or (entry.admin and not admin):
        return None
    return _known_topic(entry.parse_json(Fields(obj), limits), admin)


def _known_topic(parsed: Parsed, admin: bool) -> Parsed:
    """C{help TOPIC} for a command the user may run, or the answer to an unknown one."""
    if not isinstance(parsed, Help) or parsed.topic is None:
        return parsed
    name = parsed.topic.lower()
    entry = COMMANDS.get(name)
    if entry is None or (entry.admin and not admin):
        return UnknownCommand(parsed.topic, closest(name, names_for(admin)))
    return Help(name)
