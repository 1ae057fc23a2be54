"""
Which conversation a message belongs to, as the key the stores keep it
under: every message belongs to exactly one conversation, and a user's
history is that of their conversations.

- L{EVERYONE} (C{""}): broadcasts to everyone online, everyone's scrollback.
- The conversation of a group of users (L{between}): a private message is
  its sender's and its recipient's; a message to several users
  (C{broadcast user A B message ...}) is the conversation of the sender
  with all of them, as a group message is in the team chats people know.

Keys are plain strings, so a store indexes them as they are.  A group's
key is C{@} and its names, sorted, separated by tabs: no username holds
whitespace, so no key is mistaken for another, and the same people always
have the same key whoever writes first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from chat.server.events import Delivery, Kind

#: The conversation of broadcasts to everyone.
EVERYONE = ""

_GROUP = "@"
_SEPARATOR = "\t"


def between(names: Iterable[str]) -> str:
    """The conversation of the users C{names}, in whatever order and however often named."""
    return _GROUP + _SEPARATOR.join(sorted(set(names)))


def members(key: str) -> tuple[str, ...]:
    """The users of a group's conversation; none for everyone's."""
    if not key.startswith(_GROUP):
        return ()
    return tuple(key[1:].split(_SEPARATOR))


def of(delivery: Delivery) -> str:
    """The conversation C{delivery} belongs to."""
    if delivery.kind is Kind.BROADCAST and not delivery.to:
        return EVERYONE
    return between((delivery.sender, *delivery.to))


def newest(kept: Sequence[tuple[int, Delivery]], count: int) -> list[Delivery]:
    """The newest C{count} of messages numbered in the order they were kept, oldest first."""
    ordered = sorted(kept, key=lambda item: item[0])
    return [delivery for _, delivery in ordered[-count:]] if count > 0 else []
