"""
What the server says to a user, as values.

A session decides what happens and emits one of these; each edge renders it
its own way (the TCP edge to the exact text of the classic protocol, the
WebSocket edge to one JSON object), so no sentence is written here.  The
same values will cross between server nodes, so they hold names, numbers
and times, never preformatted text.

Errors carry a C{code}: a stable string a program can switch on.  A
L{Delivery} is created once per message sent and rendered once per format
for all of its recipients.
"""

from __future__ import annotations

import enum
import itertools
import os
import typing
from typing import ClassVar

import attrs

# --- prompts ----------------------------------------------------------------


class Ask(enum.Enum):
    """What the session waits for next: the prompt an edge may show."""

    #: Members are singletons, equal only to themselves: hashed as objects,
    #: in C, not by Enum's Python-level hash of the name (a prompt is
    #: looked up for every answer).
    __hash__ = object.__hash__

    USERNAME = "username"
    PASSWORD = "password"
    COMMAND = "command"
    INTRO = "intro"


# --- messages ---------------------------------------------------------------


class Kind(enum.Enum):
    __hash__ = object.__hash__  # as Ask's
    PRIVATE = "private"
    BROADCAST = "broadcast"
    #: To the members of a room (L{Delivery.room}).
    ROOM = "room"


class MessageIds:
    """
    Message ids unique across runs and processes: a random prefix per
    process and a counter, cheap enough for the hot path.
    """

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix if prefix is not None else os.urandom(5).hex()
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}-{next(self._counter):x}"


@attrs.frozen
class Delivery:
    """One message, as every recipient sees it."""

    sender: str
    text: str
    kind: Kind
    sent_at: float
    id: str = ""
    #: Who it was addressed to: the recipient of a private message, the
    #: users named in C{broadcast user}; empty for a broadcast to everyone
    #: and a room's message.
    to: tuple[str, ...] = ()
    #: The room of a room's message (C{Kind.ROOM}), as its name is shown.
    room: str = ""


@attrs.frozen
class StoredMessage:
    """A message kept for a user who was offline when it was sent."""

    #: The store's own key for it: a row number in SQLite, a stream entry
    #: id in Redis.
    id: int | str
    recipient: str
    delivery: Delivery


@attrs.frozen
class Offline:
    """The messages that waited for the user, shown once at login."""

    messages: tuple[StoredMessage, ...]


@attrs.frozen
class Arrived:
    """
    Messages that reached a logged-in user through the store (sent from
    another node): shown as they come, like any message, but kept in the
    store until the user has shown they got them.
    """

    messages: tuple[StoredMessage, ...]


@attrs.frozen
class History:
    """The last messages a user sent and received, oldest first."""

    owner: str
    messages: tuple[Delivery, ...]


# --- login ------------------------------------------------------------------


@attrs.frozen
class Welcome:
    name: str
    #: Whether the user may use the admins' commands (a page shows their menu).
    admin: bool = False


class Refusal(enum.Enum):
    """Why a login did not succeed; the values are stable codes."""

    INVALID = "invalid"
    BLOCKED = "blocked"
    ALREADY_ONLINE = "already_online"
    BUSY = "busy"
    CHECKING = "checking"
    SERVER_ERROR = "server_error"
    #: A resume token that has expired (or was never issued), or was used.
    EXPIRED = "expired"
    REUSED = "reused"
    #: The shared database of a cluster (Redis) cannot be reached now.
    UNAVAILABLE = "unavailable"


@attrs.frozen
class LoginRefused:
    """
    A login that did not succeed.  C{seconds} is what is left of a block;
    a blocked login is followed by the end of the connection.
    """

    reason: Refusal
    name: str
    seconds: int = 0


# --- answers to commands ----------------------------------------------------


@attrs.frozen
class RosterEntry:
    name: str
    intro: str | None
    online: bool
    last_seen: float | None = None


@attrs.frozen
class Roster:
    """The answer to C{whoelse} (C{minutes} None) or C{wholast N}."""

    entries: tuple[RosterEntry, ...]
    minutes: int | None = None


@attrs.frozen
class Receipt:
    """
    What became of a message: who has it now, who will get it at login; and
    the message's id and time, so a client can show what it sent.
    """

    delivered: tuple[str, ...]
    stored: tuple[str, ...]
    id: str = ""
    time: float = 0.0
    #: Recipients it could not be delivered or stored for (the store went
    #: down while the message was on its way): they do not have it.
    failed: tuple[str, ...] = ()


@attrs.frozen
class Broadcasted:
    """
    A broadcast to everyone online reached C{count} users; C{unreachable}
    more are online on nodes that cannot be reached now, and did not get it.
    """

    count: int
    id: str = ""
    time: float = 0.0
    unreachable: int = 0


@attrs.frozen
class HelpTopic:
    """One command: its usage line and what it does."""

    command: str
    usage: str
    summary: str = ""


@attrs.frozen
class Help:
    """The commands, or one of them."""

    topics: tuple[HelpTopic, ...]
    #: Whether one command was asked for, rather than the list.
    single: bool = False


class Note(enum.Enum):
    """Things the server tells a user that need no data; stable codes."""

    ASK_INTRO = "ask_intro"
    INTRO_SAVED = "intro_saved"
    INTRO_UNCHANGED = "intro_unchanged"
    OFFLINE_NOT_LOADED = "offline_not_loaded"


@attrs.frozen
class Notice:
    note: Note


@attrs.frozen
class Presence:
    """Someone came online or went offline (edges with a roster show it)."""

    name: str
    online: bool
    at: float
    intro: str | None = None


class Reason(enum.Enum):
    """Why a session ended; the values are stable codes."""

    LOGOUT = "logout"
    SHUTDOWN = "shutdown"
    IDLE = "idle"
    LOGIN_TIMEOUT = "login_timeout"
    FLOOD = "flood"
    SERVER_ERROR = "server_error"
    #: The same user resumed the session from somewhere else.
    REPLACED = "replaced"
    #: The user is no longer in the users file (reloaded).
    REMOVED = "removed"
    #: An admin ended the session (C{kick}).
    KICKED = "kicked"


@attrs.frozen
class Goodbye:
    """The last thing a session says before the connection closes."""

    reason: Reason
    name: str | None = None
    #: The timeout that ended it, for IDLE and LOGIN_TIMEOUT.
    seconds: float = 0
    #: For KICKED: the admin, and what they said (may be empty).
    by: str | None = None
    why: str = ""


# --- for admins -----------------------------------------------------------------


@attrs.frozen
class SessionInfo:
    """One logged-in session, as an admin sees it."""

    user: str
    #: The edge: C{tcp} or C{web}.
    edge: str
    address: str
    #: The node it is on (None: a server on its own).
    node: str | None
    #: When it logged in, and when its user last did something.
    since: float
    active: float


@attrs.frozen
class Sessions:
    """Every session the admin's question reached, and how many nodes did not answer in time."""

    sessions: tuple[SessionInfo, ...]
    #: When the list was made: idle times are counted to it.
    at: float
    unanswered: int = 0


@attrs.frozen
class Kicked:
    """What a C{kick} did: the sessions ended here, and whether the user was on another node."""

    user: str
    here: int
    elsewhere: bool


@attrs.frozen
class Announcement:
    """A message from the server (an admin's C{announce}) to everyone online."""

    text: str
    sent_at: float
    #: The admin who sent it: for the log, not shown to users.
    by: str = attrs.field(repr=False, default="")


@attrs.frozen
class Announced:
    """What an C{announce} reached: the users online here, and whether other nodes were told."""

    here: int
    nodes: bool


# --- rooms and conversations -------------------------------------------------------


@attrs.frozen
class RoomJoined:
    room: str
    #: Whether joining made the room.
    created: bool
    members: int


@attrs.frozen
class RoomLeft:
    room: str


@attrs.frozen
class RoomEntry:
    room: str
    members: int
    #: Whether the asking user is in it.
    joined: bool


@attrs.frozen
class RoomList:
    rooms: tuple[RoomEntry, ...]


@attrs.frozen
class RoomMembers:
    room: str
    #: Each member and whether they are online (anywhere).
    members: tuple[tuple[str, bool], ...]


@attrs.frozen
class RoomReceipt:
    """What a message to a room did: its members online got it; the rest find it unread."""

    room: str
    #: The members (but the sender) online now, and all of them.
    online: int
    members: int
    id: str = ""
    time: float = 0.0


@attrs.frozen
class Unread:
    """At login: the rooms with messages the user has not read, and how many."""

    rooms: tuple[tuple[str, int], ...]


@attrs.frozen
class ConversationEntry:
    """One of a user's conversations, as their client names it."""

    #: C{everyone}, C{#room} or C{@user}.
    id: str
    #: C{everyone}, C{room} or C{direct}.
    kind: str
    #: What to call it: C{Everyone}, the room's name as created, the other user.
    name: str
    unread: int
    #: When its newest message was sent (0 if none is kept).
    last: float


@attrs.frozen
class Conversations:
    conversations: tuple[ConversationEntry, ...]


@attrs.frozen
class ConversationHistory:
    """A page of one conversation's history, oldest first."""

    #: How the user names it (C{everyone}, C{#room}, C{@user}), and what to call it.
    conversation: str
    name: str
    messages: tuple[Delivery, ...]
    #: Whether older messages are kept.
    more: bool
    #: The user asking: their own messages to several name the recipients.
    owner: str


@attrs.frozen
class Typing:
    """C{sender} is typing in a conversation (as the recipient names it); for pages only."""

    sender: str
    conversation: str


@attrs.frozen
class SearchHit:
    """A message a search found, in the conversation the user sees it in."""

    #: How the user names the conversation (C{everyone}, C{#room}, C{@user}), and what to call it.
    conversation: str
    name: str
    message: Delivery


@attrs.frozen
class SearchResults:
    """A page of what a search found, newest first."""

    text: str
    words: tuple[str, ...]
    hits: tuple[SearchHit, ...]
    #: Whether older hits are kept.
    more: bool
    #: The user asking: their own messages to several name the recipients.
    owner: str


# --- errors -----------------------------------------------------------------
#
# Each has a stable C{code}.  The parser's rejections (an unknown command, a
# command with the wrong arguments, a text over the limit) are among them.


@attrs.frozen
class UnknownCommand:
    code: ClassVar[str] = "unknown_command"
    word: str
    suggestion: str | None


@attrs.frozen
class BadUsage:
    """
    A known command with the wrong arguments.  C{problem} is a stable code
    for what is wrong; C{word}, C{number} and C{suggestion} are what the
    sentence about it needs.
    """

    code: ClassVar[str] = "bad_usage"
    command: str
    problem: str
    usage: str
    word: str | None = None
    number: int | None = None
    suggestion: str | None = None
    limit: int | None = None


@attrs.frozen
class TooLong:
    code: ClassVar[str] = "too_long"
    length: int
    limit: int


@attrs.frozen
class IntroTooLong:
    code: ClassVar[str] = "intro_too_long"
    length: int
    limit: int


@attrs.frozen
class UnknownUsers:
    """Names that are not users, so the command did nothing (sent nothing, kicked nobody)."""

    code: ClassVar[str] = "unknown_user"
    names: tuple[str, ...]
    #: The closest real username for each of C{names}, or None.
    suggestions: tuple[str | None, ...]
    #: The command that named them, when it sends nothing (C{kick}).
    command: str | None = None


@attrs.frozen
class RateLimited:
    code: ClassVar[str] = "rate_limited"
    rate: float


@attrs.frozen
class LineTooLong:
    code: ClassVar[str] = "line_too_long"
    limit: int


@attrs.frozen
class TooManyConnections:
    code: ClassVar[str] = "too_many_connections"
    limit: int


class Fault(enum.Enum):
    """Errors that need no data; the values are their codes."""

    CONTROL_CHARACTERS = "control_characters"
    DIRECTION_CONTROLS = "direction_controls"
    LINE_SEPARATORS = "line_separators"
    INVISIBLE_CHARACTERS = "invisible_characters"
    STACKED_MARKS = "stacked_marks"
    SPACE_RUN = "space_run"
    TOO_MANY_LINES = "too_many_lines"
    NOT_UTF8 = "not_utf8"
    BAD_USERNAME = "bad_username"
    SELF_MESSAGE = "self_message"
    NOT_STORED = "not_stored"
    INTRO_NOT_SAVED = "intro_not_saved"
    HISTORY_UNAVAILABLE = "history_unavailable"
    SERVER_ERROR = "server_error"
    BUSY = "busy"
    #: The shared database of a cluster (Redis) cannot be reached now.
    UNAVAILABLE = "unavailable"


@attrs.frozen
class UnknownRoom:
    """A room that does not exist (only C{join} makes one)."""

    code: ClassVar[str] = "unknown_room"
    room: str
    suggestion: str | None


@attrs.frozen
class BadRoomName:
    code: ClassVar[str] = "bad_room_name"
    room: str


@attrs.frozen
class NotInRoom:
    """Only a room's members send to it (or read it)."""

    code: ClassVar[str] = "not_in_room"
    room: str


@attrs.frozen
class Failed:
    fault: Fault

    @property
    def code(self) -> str:
        return self.fault.value


Error = (
    UnknownCommand
    | BadUsage
    | TooLong
    | IntroTooLong
    | UnknownUsers
    | RateLimited
    | LineTooLong
    | TooManyConnections
    | UnknownRoom
    | BadRoomName
    | NotInRoom
    | Failed
)
#: The same, for C{isinstance}.
ERRORS: tuple[type, ...] = typing.get_args(Error)

Event = (
    Welcome
    | LoginRefused
    | Offline
    | Arrived
    | History
    | Roster
    | Receipt
    | Broadcasted
    | Help
    | Notice
    | Presence
    | Goodbye
    | Delivery
    | Sessions
    | Kicked
    | Announcement
    | Announced
    | RoomJoined
    | RoomLeft
    | RoomList
    | RoomMembers
    | RoomReceipt
    | Unread
    | Conversations
    | ConversationHistory
    | SearchResults
    | Typing
    | Error
)
