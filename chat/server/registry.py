"""
Presence for one process: who is online and who was lately, in plain
dictionaries, each question answered from indexed state rather than by
scanning every user.  A cluster's registry (L{chat.server.backends.redis.cluster})
keeps one of these for its own node.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from chat.server.interfaces import AlreadyOnline, IFormat, IParticipant, IRegistry


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
