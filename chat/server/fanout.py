"""
Broadcasts to everyone online here: the server's hot path.

A broadcast waits, with the others of the same read (or turn of the
reactor), for L{Fanout.flush}, and each recipient then gets them all in one
write, rendered once per format (text for terminals, JSON frames for pages)
however many recipients share it.  Writes are most of a server's work, so
this is what lets fan-out keep up; waiting no longer than the end of a read
keeps a lone broadcast as quick as if it were written at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from chat.server.conversations import EVERYONE
from chat.server.counters import Counters
from chat.server.events import Delivery
from chat.server.interfaces import IParticipant, IRegistry

log = Logger()

History = Callable[[Sequence[tuple[Delivery, str]]], None]


def deliver(participant: IParticipant, payload: object) -> None:
    """One payload to one participant; a failure there is logged, not spread."""
    try:
        participant.deliver(payload)
    except Exception:
        log.failure("delivery to {participant!r} failed", participant=participant)


class Fanout:
    """
    The broadcasts waiting for the end of this read: those of users here
    (kept in the public history, and passed to the other nodes of a
    cluster) and those relayed from other nodes.
    """

    def __init__(
        self,
        registry: IRegistry,
        clock: IReactorTime,
        keep: History,
        publish: Callable[[Sequence[Delivery]], None],
        counters: Counters,
    ) -> None:
        self._registry = registry
        self._counters = counters
        self._clock = clock
        self._keep = keep
        self._publish = publish
        self._broadcasts: list[tuple[IParticipant | None, Delivery]] = []
        #: Broadcasts from users of other nodes, delivered here with ours.
        self._relayed: list[Delivery] = []
        self._call: IDelayedCall | None = None

    def queue(self, sender: IParticipant | None, delivery: Delivery) -> None:
        """A broadcast of a user here (C{sender}: who does not get it back)."""
        self._broadcasts.append((sender, delivery))
        self._soon()

    def relay(self, deliveries: Sequence[Delivery]) -> None:
        """Broadcasts of users of other nodes (one pub/sub message each), joined with ours."""
        self._relayed.extend(deliveries)
        self._soon()

    def _soon(self) -> None:
        if self._call is None:
            self._call = self._clock.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Deliver the broadcasts waiting since the last flush.  Senders get
        the others' minus their own.  Anything else that reaches someone's
        screen (a private message) or changes who is online flushes first,
        so everyone sees messages in the order they were sent.
        """
        if not self._broadcasts and not self._relayed:
            return
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        waiting, self._broadcasts = self._broadcasts, []
        if waiting:
            self._keep([(delivery, EVERYONE) for _, delivery in waiting])
            self._publish([delivery for _, delivery in waiting])
        if self._relayed:
            relayed, self._relayed = self._relayed, []
            waiting = [(None, delivery) for delivery in relayed] + waiting
        self._fan_out(waiting)

    def _fan_out(self, waiting: Sequence[tuple[IParticipant | None, Delivery]]) -> None:
        """Each broadcast to every participant here but its sender, rendered once per format."""
        audiences = self._registry.audiences()
        everyone = sum(len(members) for _, members in audiences)
        senders = sum(1 for sender, _ in waiting if sender is not None)
        self._counters.deliveries += everyone * len(waiting) - senders
        for fmt, members in audiences:
            if len(waiting) == 1:
                [(me, delivery)] = waiting
                line = fmt.delivery(delivery)
                # The hot loop of the server: one call per recipient, no copies.
                for participant in members:
                    if participant is me:
                        continue
                    try:
                        participant.deliver(line)
                    except Exception:
                        log.failure("delivery to {participant!r} failed", participant=participant)
                continue
            payloads = [(sender, fmt.delivery(delivery)) for sender, delivery in waiting]
            joined = fmt.join([payload for _, payload in payloads])
            own = {
                sender: fmt.join([payload for other, payload in payloads if other is not sender])
                for sender, _ in payloads
            }
            for participant in members:
                data = own.get(participant, joined)
                if not data:
                    continue
                try:
                    participant.deliver(data)
                except Exception:
                    log.failure("delivery to {participant!r} failed", participant=participant)
