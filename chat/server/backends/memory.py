"""
The store that keeps nothing across a restart (C{--database :memory:}): what
another store is measured against, and what the unit tests run on.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from chat.server import conversations, search
from chat.server.events import Delivery, StoredMessage
from chat.server.health import Health
from chat.server.interfaces import ConversationState, IStore, Room, Snapshot


@implementer(IStore)
class MemoryStore:
    """Keeps everything in memory, so nothing survives a restart."""

    def __init__(self, history: int = 200) -> None:
        #: Memory does not go away; a test may take it down by hand.
        self.health = Health("the memory store", Clock())
        self._history_limit = history
        #: Each conversation's last messages, with a sequence number that
        #: keeps the order they were saved in when their times are equal.
        self._history: dict[str, deque[tuple[int, Delivery]]] = {}
        #: The conversations of each user, but everyone's: direct ones and rooms.
        self._members: dict[str, set[str]] = {}
        self._rooms: dict[str, Room] = {}
        #: Each user's read markers: conversation to time.
        self._read: dict[str, dict[str, float]] = {}
        self._saved = itertools.count()
        self._messages: dict[int | str, StoredMessage] = {}
        #: Resume tokens by digest: the user, when it expires, whether used.
        self._tokens: dict[str, tuple[str, float, bool]] = {}
        self._next_id = 1
        self._seen: dict[str, float] = {}
        self._intros: dict[str, str] = {}

    def snapshot(self) -> Snapshot:
        return Snapshot(dict(self._seen), dict(self._intros), dict(self._rooms))

    def save_offline(self, recipients: Sequence[str], delivery: Delivery) -> Deferred[None]:
        for name in recipients:
            self._messages[self._next_id] = StoredMessage(self._next_id, name, delivery)
            self._next_id += 1
        return succeed(None)

    def offline_for(self, name: str) -> Deferred[list[StoredMessage]]:
        return succeed([m for m in self._messages.values() if m.recipient == name])

    def ack(self, messages: Sequence[StoredMessage]) -> Deferred[None]:
        for m in messages:
            self._messages.pop(m.id, None)
        return succeed(None)

    def set_intro(self, name: str, text: str) -> Deferred[None]:
        self._intros[name] = text
        return succeed(None)

    def mark_seen(self, seen: Mapping[str, float]) -> Deferred[None]:
        self._seen.update(seen)
        return succeed(None)

    def save_history(self, entries: Sequence[tuple[Delivery, str]]) -> Deferred[None]:
        if self._history_limit:
            for delivery, key in entries:
                kept = self._history.get(key)
                if kept is None:
                    kept = self._history[key] = deque(maxlen=self._history_limit)
                    for name in conversations.members(key):
                        self._members.setdefault(name, set()).add(key)
                kept.append((next(self._saved), delivery))
        return succeed(None)

    def history_for(self, name: str, count: int) -> Deferred[list[Delivery]]:
        count = min(count, self._history_limit)
        if count <= 0:
            return succeed([])
        keys = (conversations.EVERYONE, *self._members.get(name, ()))
        kept = [
            item for key in keys for item in itertools.islice(reversed(self._history.get(key, ())), count)
        ]
        return succeed(conversations.newest(kept, count))

    def conversation_history(
        self, key: str, count: int, before: str | None = None
    ) -> Deferred[tuple[list[Delivery], bool]]:
        kept = [d for _, d in self._history.get(key, ())]
        if before is not None:
            at = next((i for i, d in enumerate(kept) if d.id == before), None)
            if at is None:
                return succeed(([], False))
            kept = kept[:at]
        page = kept[-count:] if count > 0 else []
        return succeed((page, len(kept) > len(page)))

    def search(
        self, name: str, words: Sequence[str], count: int, before: str | None = None
    ) -> Deferred[tuple[list[tuple[Delivery, str]], bool] | None]:
        keys = (conversations.EVERYONE, *self._members.get(name, ()))
        kept = [(seq, d, key) for key in keys for seq, d in self._history.get(key, ())]
        return succeed(search.newest_matching(kept, words, count, before))

    def save_room(self, key: str, name: str) -> Deferred[bool]:
        if key in self._rooms:
            return succeed(False)
        self._rooms[key] = Room(name)
        return succeed(True)

    def room_name(self, key: str) -> Deferred[str | None]:
        """The name the room C{key} was made with, or None if there is no such room."""
        room = self._rooms.get(key)
        return succeed(room.name if room is not None else None)

    def join_room(self, key: str, user: str) -> Deferred[None]:
        room = self._rooms[key]
        self._rooms[key] = Room(room.name, room.members | {user})
        self._members.setdefault(user, set()).add(key)
        return succeed(None)

    def leave_room(self, key: str, user: str) -> Deferred[None]:
        room = self._rooms[key]
        self._rooms[key] = Room(room.name, room.members - {user})
        self._members.get(user, set()).discard(key)
        return succeed(None)

    def mark_read(self, name: str, marks: Mapping[str, float]) -> Deferred[None]:
        mine = self._read.setdefault(name, {})
        for key, at in marks.items():
            mine[key] = max(at, mine.get(key, at))
        return succeed(None)

    def conversations_of(self, name: str, since: float) -> Deferred[list[ConversationState]]:
        marks = self._read.get(name, {})
        keys = {conversations.EVERYONE, *self._members.get(name, ())}
        states = []
        for key in sorted(keys):
            kept = [d for _, d in self._history.get(key, ())]
            if not kept and not conversations.is_room(key):
                continue
            mark = marks.get(key, since)
            unread = sum(1 for d in kept if d.sent_at > mark and d.sender != name)
            states.append(ConversationState(key, kept[-1].sent_at if kept else 0.0, unread))
        return succeed(states)

    def save_token(self, name: str, digest: str, expires: float, now: float) -> Deferred[None]:
        self._tokens = {d: t for d, t in self._tokens.items() if t[1] > now and (t[0] != name or t[2])}
        self._tokens[digest] = (name, expires, False)
        return succeed(None)

    def revoke_tokens(self, name: str) -> Deferred[None]:
        self._tokens = {d: t for d, t in self._tokens.items() if t[0] != name}
        return succeed(None)

    def use_token(self, digest: str, now: float) -> Deferred[tuple[str | None, str]]:
        token = self._tokens.get(digest)
        if token is None or token[1] <= now:
            return succeed((None, "expired"))
        name, expires, used = token
        if used:
            return succeed((name, "reused"))
        self._tokens[digest] = (name, expires, True)
        return succeed((name, "ok"))

    def close(self) -> Deferred[None]:
        return succeed(None)
