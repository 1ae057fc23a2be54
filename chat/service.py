"""
The chat itself: presence, delivery, offline hand-off and login's realm.

L{ChatService} owns the shared state and no I/O of its own: recipients are
anything that provides L{IParticipant}, the store is an L{IStore}, presence
is an L{IRegistry}, and time comes from an injected L{IReactorTime}.  A
recipient that fails while receiving cannot stop delivery to the others.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from chat.commands import closest
from chat.messages import Delivery, Kind, StoredMessage
from chat.registry import AlreadyOnline, IRegistry, LocalRegistry
from chat.store import IStore

log = Logger()


class IParticipant(Interface):
    """
    The receiving end of a logged-in user: a session over some transport.
    """

    def receive(delivery: Delivery) -> None:
        """Show C{delivery} to the user.  Must not block."""

    def goodbye(reason: str) -> Deferred[None]:
        """Tell the user C{reason}, end the session; fires once it is closed."""


class IChatUser(Interface):
    """What a logged-in user can do: the avatar the realm hands out."""

    name = Attribute("The user's name.")


@attrs.frozen
class Entry:
    """A line of C{whoelse} or C{wholast}."""

    name: str
    intro: str | None
    online: bool


@attrs.frozen
class Receipt:
    """What became of a message: who has it now, who will get it at login."""

    delivered: tuple[str, ...]
    stored: tuple[str, ...]


class UnknownUser(Exception):
    def __init__(self, names: Sequence[str], suggestions: dict[str, str | None]) -> None:
        super().__init__(names)
        self.names = tuple(names)
        self.suggestions = suggestions


class SelfMessage(Exception):
    """A private message addressed to its own sender."""


class ChatService(Service):
    """
    Shared state of one chat server, and the rules of delivery.

    Known users come from the users file; a message to a known user who is
    offline is stored and handed over at their next login.
    """

    name = "chat"

    def __init__(
        self,
        users: Collection[str],
        store: IStore,
        clock: IReactorTime,
        registry: IRegistry | None = None,
        checkpoint_interval: float = 60.0,
    ) -> None:
        snapshot = store.snapshot()
        self.users = users
        self._sorted_users: list[str] | None = None
        self.store = store
        self.clock = clock
        self.registry = registry if registry is not None else LocalRegistry(snapshot.last_seen)
        self.intros: dict[str, str] = dict(snapshot.intros)
        self.sessions: set[IParticipant] = set()
        self._checkpoint = LoopingCall(self._mark_online_seen)
        self._checkpoint.clock = clock
        self._checkpoint_interval = checkpoint_interval

    # --- lifecycle -------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._checkpoint.start(self._checkpoint_interval, now=False)

    def stopService(self) -> Deferred[None]:
        """
        Say goodbye to every connection, record who was online, close the store.
        """
        super().stopService()
        if self._checkpoint.running:
            self._checkpoint.stop()
        goodbyes = [s.goodbye("The server is shutting down. Goodbye.") for s in list(self.sessions)]
        gone: Deferred[Any] = DeferredList(goodbyes, consumeErrors=True)
        gone.addCallback(lambda _: self._mark_online_seen())
        gone.addBoth(lambda _: self.store.close())
        return gone

    def _mark_online_seen(self) -> Deferred[None]:
        """
        Write the online users' presence to the store, so that after a crash
        wholast is off by at most one checkpoint interval.
        """
        online = list(self.registry.online)
        if not online:
            return succeed(None)
        d = self.store.mark_seen(online, self.clock.seconds())
        return d.addErrback(lambda f: log.failure("could not record presence", f))

    # --- connections -----------------------------------------------------------

    def attach(self, session: IParticipant) -> None:
        """Track a connection (logged in or not) so shutdown can say goodbye."""
        self.sessions.add(session)

    def detach(self, session: IParticipant) -> None:
        self.sessions.discard(session)

    # --- presence --------------------------------------------------------------

    def join(self, name: str, participant: IParticipant) -> ChatUser:
        """
        Put C{name} online.

        @raise AlreadyOnline: C{name} has a session already.
        """
        now = self.clock.seconds()
        self.registry.add(name, participant, now)
        self.store.mark_seen([name], now).addErrback(
            lambda f: log.failure("could not record login of {user}", f, user=name)
        )
        log.info("{user} logged in", user=name)
        return ChatUser(name, self, participant)

    def leave(self, name: str, participant: IParticipant) -> None:
        now = self.clock.seconds()
        self.registry.remove(name, participant, now)
        self.store.mark_seen([name], now).addErrback(
            lambda f: log.failure("could not record logout of {user}", f, user=name)
        )
        log.info("{user} logged out", user=name)

    def whoelse(self, me: str) -> list[Entry]:
        intros = self.intros
        return [Entry(name, intros.get(name), True) for name in sorted(self.registry.online) if name != me]

    def wholast(self, me: str, minutes: int) -> list[Entry]:
        cutoff = self.clock.seconds() - minutes * 60
        intros = self.intros
        names = set(self.registry.online)
        names.update(self.registry.seen_since(cutoff))
        names.discard(me)
        online = self.registry.online
        return [Entry(n, intros.get(n), n in online) for n in sorted(names)]

    def set_intro(self, name: str, text: str) -> Deferred[None]:
        def saved(_: None) -> None:
            self.intros[name] = text

        return self.store.set_intro(name, text).addCallback(saved)

    # --- delivery --------------------------------------------------------------

    def broadcast(self, sender: str, text: str) -> int:
        """Send C{text} to every other online user; return how many got it."""
        delivery = Delivery(sender, text, Kind.BROADCAST, self.clock.seconds())
        me = self.registry.online.get(sender)
        everyone = self.registry.everyone()
        # The hot loop of the server: one call per recipient, no copies.
        for participant in everyone:
            if participant is me:
                continue
            try:
                participant.receive(delivery)
            except Exception:
                log.failure("delivery to {participant!r} failed", participant=participant)
        return len(everyone) - (me is not None)

    def check_recipients(self, sender: str, names: Iterable[str]) -> None:
        """
        @raise UnknownUser: some of C{names} are not users at all.
        """
        unknown = [n for n in names if n not in self.users]
        if unknown:
            if self._sorted_users is None:
                self._sorted_users = sorted(self.users)
            candidates = self._sorted_users
            raise UnknownUser(unknown, {n: closest(n, candidates) for n in unknown})

    def send(self, sender: str, recipients: Sequence[str], text: str, kind: Kind) -> Deferred[Receipt]:
        """
        Send C{text} to C{recipients}: at once to those online, through the
        store to those offline.  Fires once the stored copies are durable.

        @raise UnknownUser: before anything is sent, if any name is unknown.
        """
        self.check_recipients(sender, recipients)
        delivery = Delivery(sender, text, kind, self.clock.seconds())
        online = self.registry.online
        delivered: list[str] = []
        offline: list[str] = []
        for name in recipients:
            participant = online.get(name)
            if participant is None:
                offline.append(name)
            else:
                try:
                    participant.receive(delivery)
                except Exception:
                    log.failure("delivery to {participant!r} failed", participant=participant)
                delivered.append(name)
        receipt = Receipt(tuple(delivered), tuple(offline))
        if not offline:
            return succeed(receipt)
        return self.store.save_offline(offline, delivery).addCallback(lambda _: receipt)


@implementer(IChatUser)
@attrs.define(slots=True, eq=False)
class ChatUser:
    """
    The avatar of a logged-in user: every command a session runs goes
    through here, with the user's name filled in.
    """

    name: str
    service: ChatService
    participant: IParticipant

    def whoelse(self) -> list[Entry]:
        return self.service.whoelse(self.name)

    def wholast(self, minutes: int) -> list[Entry]:
        return self.service.wholast(self.name, minutes)

    def broadcast(self, text: str) -> int:
        return self.service.broadcast(self.name, text)

    def broadcast_to(self, recipients: Sequence[str], text: str) -> Deferred[Receipt]:
        others = [r for r in recipients if r != self.name]
        return self.service.send(self.name, others, text, Kind.BROADCAST)

    def message(self, recipient: str, text: str) -> Deferred[Receipt]:
        if recipient == self.name:
            raise SelfMessage(recipient)
        return self.service.send(self.name, [recipient], text, Kind.PRIVATE)

    def set_intro(self, text: str) -> Deferred[None]:
        return self.service.set_intro(self.name, text)

    def offline_messages(self) -> Deferred[list[StoredMessage]]:
        return self.service.store.offline_for(self.name)

    def shown(self, messages: Sequence[StoredMessage]) -> Deferred[None]:
        return self.service.store.ack(messages)

    def logout(self) -> None:
        self.service.leave(self.name, self.participant)


@implementer(IRealm)
class ChatRealm:
    """
    Hands a logged-in user their L{ChatUser}; the mind is their session.

    Joining happens here, after the password was checked, so a refusal for
    "already online" never reveals anything to someone without the password.
    """

    def __init__(self, service: ChatService) -> None:
        self.service = service

    def requestAvatar(
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> tuple[Any, ChatUser, Callable[[], None]]:
        if IChatUser not in interfaces or not isinstance(avatarId, bytes):
            raise NotImplementedError("ChatRealm only provides IChatUser, to named users")
        user = self.service.join(avatarId.decode("utf-8"), IParticipant(mind))
        return IChatUser, user, user.logout


__all__ = [
    "AlreadyOnline",
    "ChatRealm",
    "ChatService",
    "ChatUser",
    "Entry",
    "IChatUser",
    "IParticipant",
    "Receipt",
    "SelfMessage",
    "UnknownUser",
]
