"""
Who is online (here and, in a cluster, elsewhere), who was lately, and what
they say of themselves; and the rosters that watch it.

Only participants whose format shows presence (a page's roster) are told
who comes and goes; a terminal is not, and costs nothing: a storm of
logins over TCP does no work here.  Last-seen times go to the store a turn
at a time (L{TurnBatch}), and are written again every checkpoint so that
after a crash C{wholast} is off by at most one interval.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from chat.server.batching import TurnBatch
from chat.server.events import Presence, RosterEntry
from chat.server.fanout import deliver
from chat.server.interfaces import IFormat, IParticipant, IRegistry

log = Logger()


class Presences:
    def __init__(
        self,
        registry: IRegistry,
        clock: IReactorTime,
        intros: dict[str, str],
        seen: TurnBatch[dict[str, float]],
        before_change: Callable[[], None],
    ) -> None:
        self._registry = registry
        self._clock = clock
        #: Personal introductions by user (shared with the service, which saves them).
        self.intros = intros
        self._seen = seen
        #: What must go out before anyone is told of a change (the waiting broadcasts).
        self._before_change = before_change
        #: Online participants whose format shows who comes and goes.
        self._watchers: dict[IParticipant, None] = {}
        self.logins = self.logouts = 0

    def saw(self, name: str, now: float) -> None:
        self._seen.pending()[name] = now

    def joined(self, name: str, participant: IParticipant) -> None:
        """C{name} is online now (the registry agreed), with C{participant}."""
        now = self._clock.seconds()
        self.saw(name, now)
        self.logins += 1
        self.announce(Presence(name, True, now, self.intros.get(name)))
        if participant.format.presence:
            self._watchers[participant] = None

    def left(self, name: str, participant: IParticipant) -> bool:
        """C{participant}'s session of C{name} ended; say whether C{name} was online with it."""
        now = self._clock.seconds()
        self._watchers.pop(participant, None)
        if self._registry.online.get(name) is not participant:
            return False
        self._registry.remove(name, participant, now)
        self.saw(name, now)
        self.logouts += 1
        self.announce(Presence(name, False, now, self.intros.get(name)))
        return True

    def announce(self, presence: Presence) -> None:
        """Tell the rosters (the one who came or went is not among them at that moment)."""
        self._before_change()
        rendered: dict[IFormat, object] = {}
        for participant in self._watchers:
            fmt = participant.format
            payload = rendered.get(fmt)
            if payload is None:
                payload = rendered[fmt] = fmt.event(presence)
            deliver(participant, payload)

    def intro_changed(self, name: str, text: str) -> None:
        """A roster shows intros: it is told at once, as the presence it knows with the new intro."""
        self.intros[name] = text
        if name in self._registry.present:
            self.announce(Presence(name, True, self._clock.seconds(), text))

    def whoelse(self, me: str) -> list[RosterEntry]:
        intros = self.intros
        return [
            RosterEntry(name, intros.get(name), True) for name in sorted(self._registry.present) if name != me
        ]

    def wholast(self, me: str, minutes: int) -> list[RosterEntry]:
        cutoff = self._clock.seconds() - minutes * 60
        intros = self.intros
        online = self._registry.present
        names = set(online)
        names.update(self._registry.seen_since(cutoff))
        names.discard(me)
        last_seen = self._registry.last_seen
        return [
            RosterEntry(n, intros.get(n), n in online, None if n in online else last_seen(n))
            for n in sorted(names)
        ]

    def checkpoint(self, interval: float) -> Deferred[None]:
        """
        Record that the online users are still online, and say in the log
        how busy the server has been, instead of a line per login.
        """
        online = self._registry.online
        if self.logins or self.logouts:
            log.info(
                "{online} online; {activity} in the last {interval:g} s",
                online=len(online),
                activity=f"{_plural(self.logins, 'login')} and {_plural(self.logouts, 'logout')}",
                logins=self.logins,
                logouts=self.logouts,
                interval=interval,
            )
            self.logins = self.logouts = 0
        self._seen.pending().update(dict.fromkeys(online, self._clock.seconds()))
        return self._seen.write()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
