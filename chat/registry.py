"""
Who is online, and who was online lately.

The registry is the piece that several server nodes will one day share
through a broker, so the service only talks to it through L{IRegistry}.
L{LocalRegistry} is the single-process implementation: plain dictionaries,
each command answered from indexed state rather than by scanning every user.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface, implementer

if TYPE_CHECKING:
    from chat.service import IParticipant


class AlreadyOnline(Exception):
    """The user is logged in already; a second session is refused."""


class IRegistry(Interface):
    online = Attribute(
        "A read-only mapping of user name to L{IParticipant} for every user "
        "logged in now; iterating it must be cheap."
    )

    def add(name: str, participant: IParticipant, now: float) -> None:
        """
        Mark C{name} online.

        @raise AlreadyOnline: if C{name} is online already.
        """

    def remove(name: str, participant: IParticipant, now: float) -> None:
        """Mark C{name} offline, if C{participant} is the one online."""

    def everyone() -> tuple[IParticipant, ...]:
        """
        Every online participant, as a tuple that stays valid while the
        registry changes (a broadcast iterates it without copying).
        """

    def seen_since(cutoff: float) -> Iterator[str]:
        """Users offline now who were online at or after C{cutoff}."""

    def last_seen(name: str) -> float | None:
        """When C{name} was last online, or None if never."""


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
        self._everyone: tuple[IParticipant, ...] | None = ()
        self._last_seen: dict[str, float] = dict(sorted(last_seen.items(), key=lambda kv: kv[1]))

    @property
    def online(self) -> Mapping[str, IParticipant]:
        return self._online

    def add(self, name: str, participant: IParticipant, now: float) -> None:
        if name in self._online:
            raise AlreadyOnline(name)
        self._online[name] = participant
        self._everyone = None
        self._touch(name, now)

    def remove(self, name: str, participant: IParticipant, now: float) -> None:
        if self._online.get(name) is participant:
            del self._online[name]
            self._everyone = None
            self._touch(name, now)

    def _touch(self, name: str, now: float) -> None:
        self._last_seen.pop(name, None)
        self._last_seen[name] = now

    def everyone(self) -> tuple[IParticipant, ...]:
        # Rebuilt at most once per change of who is online, not per broadcast.
        if self._everyone is None:
            self._everyone = tuple(self._online.values())
        return self._everyone

    def seen_since(self, cutoff: float) -> Iterator[str]:
        for name in reversed(self._last_seen):
            if self._last_seen[name] < cutoff:
                return
            if name not in self._online:
                yield name

    def last_seen(self, name: str) -> float | None:
        return self._last_seen.get(name)
