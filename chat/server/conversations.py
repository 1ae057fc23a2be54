"""
Which conversation a message belongs to, as the key it is kept under.

Everything a user can see belongs to a conversation of theirs:

- L{EVERYONE} (C{""}): broadcasts to everyone online.
- A room (L{room}: C{#} and its name in lower case).
- The user's direct conversation with another user (L{pair}): a private
  message is its sender's and its recipient's; a message to several users
  (C{broadcast user A B message ...}) belongs to each recipient's
  conversation with its sender, and is marked as sent to several (its
  C{to}).  Its sender finds it in each of those conversations, and once in
  their whole history.

Keys are plain strings a store indexes as they are: a pair's is C{@} and
the two names in order, separated by a tab (no name holds whitespace), so
the same two people have the same key whoever writes first; a room's
starts with C{#}, which no name does.

Clients name conversations from their own side (L{for_client}): C{everyone},
C{#dev}, or C{@seas} for the conversation with seas.
"""

from __future__ import annotations

from collections.abc import Sequence

from chat.server.events import Delivery, Kind

#: The conversation of broadcasts to everyone.
EVERYONE = ""

_PAIR = "@"
_SEPARATOR = "\t"
_ROOM = "#"


def pair(a: str, b: str) -> str:
    """The direct conversation of C{a} and C{b}, the same whoever wrote first."""
    return f"{_PAIR}{a}{_SEPARATOR}{b}" if a <= b else f"{_PAIR}{b}{_SEPARATOR}{a}"


def room(name: str) -> str:
    """The conversation of the room C{name} (with its C{#}), whatever its case."""
    return name.lower()


def is_room(key: str) -> bool:
    return key.startswith(_ROOM)


def members(key: str) -> tuple[str, ...]:
    """The two users of a direct conversation; none for a room or everyone's."""
    if not key.startswith(_PAIR):
        return ()
    first, _, second = key[1:].partition(_SEPARATOR)
    return (first, second)


def of(delivery: Delivery) -> tuple[str, ...]:
    """The conversations C{delivery} is kept in: one, or one per recipient of a message to several."""
    if delivery.kind is Kind.ROOM:
        return (room(delivery.room),)
    if delivery.kind is Kind.BROADCAST and not delivery.to:
        return (EVERYONE,)
    sender = delivery.sender
    return tuple(pair(sender, name) for name in delivery.to)


def entries(delivery: Delivery) -> list[tuple[Delivery, str]]:
    """C{delivery} as the store keeps it: once per conversation it belongs to."""
    return [(delivery, key) for key in of(delivery)]


def for_client(key: str, me: str) -> str:
    """How C{me} names the conversation C{key}: C{everyone}, C{#room}, or C{@other}."""
    if key == EVERYONE:
        return "everyone"
    names = members(key)
    if names:
        return _PAIR + (names[1] if names[0] == me else names[0])
    return key


def from_client(name: str, me: str) -> str | None:
    """The key of the conversation C{me} calls C{name}; None if that names none."""
    if name == "everyone":
        return EVERYONE
    if name.startswith(_PAIR) and len(name) > 1:
        other = name[1:]
        return None if any(c.isspace() for c in other) or other == me else pair(me, other)
    if name.startswith(_ROOM):
        return room(name)
    return None


def newest(kept: Sequence[tuple[int, Delivery]], count: int) -> list[Delivery]:
    """
    The newest C{count} messages, oldest first, of messages numbered in the
    order they were kept; a message kept in several conversations once.
    """
    ordered = sorted(kept, key=lambda item: item[0], reverse=True)
    seen: set[str] = set()
    out: list[Delivery] = []
    for _, delivery in ordered:
        if len(out) >= count:
            break
        if delivery.id:
            if delivery.id in seen:
                continue
            seen.add(delivery.id)
        out.append(delivery)
    out.reverse()
    return out
