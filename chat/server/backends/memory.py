"""
The single-process backend: presence and storage in memory.

L{LocalRegistry} is who is online and who was lately, in plain
dictionaries, each command answered from indexed state rather than by
scanning every user.  L{MemoryStore} keeps nothing across a restart
(C{--database :memory:}); it is what another store is measured against.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterator, Mapping, Sequence

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from chat.server.events import Delivery, StoredMessage
from chat.server.health import Health
from chat.server.interfaces import PUBLIC, AlreadyOnline, IFormat, IParticipant, IRegistry, IStore, Snapshot


@implementer(IRegistry)
class LocalRegistry:
    """
    Presence for one process.

    C{_last_seen} is kept in order of time (an entry is moved to the end when
    it changes), so C{seen_since} walks back from the newest entry and stops
    at the first one older than the cutoff: its cost is the size of its answer.
    """

    def __init__(self, last_seen: Mapping[str, float] = {}) -> None:
        self._online: dict[str, IParticipant] = {}
        self._audiences: tuple[tuple[IFormat, tuple[IParticipant, ...]], ...] | None = ()
        self._last_seen: dict[str, float] = dict(sorted(last_seen.items(), key=lambda kv: kv[1]))

    @property
    def online(self) -> Mapping[str, IParticipant]:
        return self._online

    @property
    def present(self) -> Mapping[str, IParticipant]:
        # One process: everyone logged in anywhere is logged in here.
        return self._online

    def add(self, name: str, participant: IParticipant, now: float, takeover: bool = False) -> Deferred[None]:
        # A takeover within one process is the service's to do: it ends the
        # old session (which removes it here) before adding the new one.
        try:
            self.add_now(name, participant, now)
        except AlreadyOnline as e:
            return fail(e)
        return succeed(None)

    def add_now(self, name: str, participant: IParticipant, now: float) -> None:
        """
        Mark C{name} online at once: L{add} for a caller that has already
        settled it elsewhere (the cluster).

        @raise AlreadyOnline: if C{name} is online here already.
        """
        if name in self._online:
            raise AlreadyOnline(name)
        self._online[name] = participant
        self._audiences = None
        self._touch(name, now)

    def saw(self, name: str, at: float) -> None:
        """C{name} was online until (or since) C{at}, as another node says."""
        self.saw_all({name: at})

    def saw_all(self, seen: Mapping[str, float]) -> None:
        """
        Last-seen times from elsewhere (another node, a reload): the newer
        ones are kept, and the table stays in order of time.
        """
        last_seen = self._last_seen
        newest = last_seen[next(reversed(last_seen))] if last_seen else float("-inf")
        in_order = True
        for name, at in seen.items():
            current = last_seen.get(name)
            if current is not None and at <= current:
                continue
            last_seen.pop(name, None)
            last_seen[name] = at
            in_order = in_order and at >= newest
            newest = max(newest, at)
        if not in_order:
            # An older time than the newest (a dead node's users, a reload):
            # rare, so sorting again is cheaper than keeping a sorted index.
            self._last_seen = dict(sorted(last_seen.items(), key=lambda kv: kv[1]))

    def remove(self, name: str, participant: IParticipant, now: float) -> None:
        if self._online.get(name) is participant:
            del self._online[name]
            self._audiences = None
            self._touch(name, now)

    def _touch(self, name: str, now: float) -> None:
        self._last_seen.pop(name, None)
        self._last_seen[name] = now

    def audiences(self) -> tuple[tuple[IFormat, tuple[IParticipant, ...]], ...]:
        # Rebuilt at most once per change of who is online, not per broadcast.
        if self._audiences is None:
            groups: dict[IFormat, list[IParticipant]] = {}
            for participant in self._online.values():
                groups.setdefault(participant.format, []).append(participant)
            self._audiences = tuple((fmt, tuple(members)) for fmt, members in groups.items())
        return self._audiences

    def seen_since(self, cutoff: float) -> Iterator[str]:
        for name in reversed(self._last_seen):
            if self._last_seen[name] < cutoff:
                return
            if name not in self._online:
                yield name

    def last_seen(self, name: str) -> float | None:
        return self._last_seen.get(name)


@implementer(IStore)
class MemoryStore:
    """Keeps everything in memory, so nothing survives a restart."""

    def __init__(self, history: int = 200) -> None:
        #: Memory does not go away; a test may take it down by hand.
        self.health = Health("the memory store", Clock())
        self._history_limit = history
        #: Each owner's last messages, with a sequence number that keeps the
        #: order they were saved in when their times are equal.
        self._history: dict[str, deque[tuple[int, Delivery]]] = {}
        self._saved = itertools.count()
        self._messages: dict[int | str, StoredMessage] = {}
        #: Resume tokens by digest: the user, when it expires, whether used.
        self._tokens: dict[str, tuple[str, float, bool]] = {}
        self._next_id = 1
        self._seen: dict[str, float] = {}
        self._intros: dict[str, str] = {}

    def snapshot(self) -> Snapshot:
        return Snapshot(dict(self._seen), dict(self._intros))

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

    def save_history(self, entries: Sequence[tuple[Delivery, tuple[str, ...]]]) -> Deferred[None]:
        if self._history_limit:
            for delivery, owners in entries:
                seq = next(self._saved)
                for owner in owners:
                    kept = self._history.get(owner)
                    if kept is None:
                        kept = self._history[owner] = deque(maxlen=self._history_limit)
                    kept.append((seq, delivery))
        return succeed(None)

    def history_for(self, name: str, count: int) -> Deferred[list[Delivery]]:
        count = min(count, self._history_limit)
        if count <= 0:
            return succeed([])
        own = self._history.get(name, ())
        public = self._history.get(PUBLIC, ())
        merged = list(heapq.merge(own, public))
        return succeed([delivery for _, delivery in merged[-count:]])

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
