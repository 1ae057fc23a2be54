"""
The chat itself: presence, delivery, offline hand-off and login's realm.

L{ChatService} owns the shared state and no I/O of its own: recipients are
anything that provides L{IParticipant}, the store is an L{IStore}, presence
is an L{IRegistry}, and time comes from an injected L{IReactorTime}.  A
recipient that fails while receiving cannot stop delivery to the others.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence, Sized
from typing import Any, Generic, TypeVar, cast

import attrs
from twisted.application.service import Service
from twisted.cred.portal import IRealm
from twisted.internet.defer import CancelledError, Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chat.server.backends.memory import LocalRegistry
from chat.server.commands import closest
from chat.server.events import (
    Broadcasted,
    Delivery,
    Goodbye,
    Kind,
    MessageIds,
    Presence,
    Reason,
    Receipt,
    RosterEntry,
    StoredMessage,
)
from chat.server.health import Backoff, Health
from chat.server.interfaces import (
    PUBLIC,
    AlreadyOnline,
    IChatUser,
    IFormat,
    IParticipant,
    IPeerListener,
    IPeers,
    IRegistry,
    IStore,
    Snapshot,
    Unavailable,
)
from chat.server.quietlog import QuietLog

log = Logger()


class UnknownUser(Exception):
    """Some recipients are not users; C{suggestions} has the closest name to each, or None."""

    def __init__(self, names: Sequence[str], suggestions: Sequence[str | None]) -> None:
        super().__init__(names)
        self.names = tuple(names)
        self.suggestions = tuple(suggestions)


class SelfMessage(Exception):
    """A private message addressed to its own sender."""


@implementer(IPeerListener)
class ChatService(Service):
    """
    Shared state of one chat server, and the rules of delivery.

    Known users come from the users file; a message to a known user who is
    offline is stored and handed over at their next login.  In a cluster
    (C{peers}), the registry knows who is online on the other nodes; a
    message for one of them goes through the store (their inbox) and the
    node is told, so a message acknowledged is never only in flight.
    """

    name = "chat"

    def __init__(
        self,
        users: Collection[str],
        store: IStore,
        clock: IReactorTime,
        registry: IRegistry | None = None,
        checkpoint_interval: float = 60.0,
        peers: IPeers | None = None,
        history: int = 200,
    ) -> None:
        snapshot = store.snapshot()
        self.users = users
        self._sorted_users: list[str] | None = None
        self.store = store
        self.clock = clock
        self.registry = registry if registry is not None else LocalRegistry(snapshot.last_seen)
        self.intros: dict[str, str] = dict(snapshot.intros)
        self.sessions: set[IParticipant] = set()
        self.quiet = QuietLog(log, clock)
        # Logins and logouts change last-seen times; those of one turn of the
        # reactor are written together, so a storm of logins costs the store
        # one write per turn, not one per login.  So are the messages of one
        # turn added to the history.
        self._seen: TurnBatch[dict[str, float]] = TurnBatch(
            clock,
            dict,
            lambda seen: self.store.mark_seen(seen),
            "recording last-seen times",
            _newer,
            store.health,
            self.quiet,
        )
        self._history: TurnBatch[list[tuple[Delivery, tuple[str, ...]]]] = TurnBatch(
            clock,
            list,
            lambda entries: self.store.save_history(entries),
            "keeping history",
            lambda older, newer: older + newer,
            store.health,
            self.quiet,
            one_at_a_time=True,
        )
        self._broadcasts: list[tuple[IParticipant | None, Delivery]] = []
        #: Broadcasts from users of other nodes, delivered here with ours.
        self._relayed: list[Delivery] = []
        #: Online participants whose format shows who comes and goes.
        self._watchers: dict[IParticipant, None] = {}
        self.new_id = MessageIds()
        self.peers = peers
        #: Per user, the ids of the stored messages handed to their session
        #: and not yet removed from the store: the login and a notification
        #: may read the same inbox at once, and nobody sees a message twice.
        self._handed: dict[str, set[str]] = {}
        #: Users whose inbox is being read now, and whether to read it again
        #: after: notifications that come meanwhile need one more read, not
        #: one each.
        self._reading: dict[str, bool] = {}
        self._flush_broadcasts: IDelayedCall | None = None
        self._logins = self._logouts = 0
        self._checkpoint = LoopingCall(self._checkpoint_presence)
        self._checkpoint.clock = clock
        self._checkpoint_interval = checkpoint_interval
        #: Messages kept per owner (the store's limit too): a backlog of
        #: history waiting for the store is trimmed to what it would keep.
        self._history_limit = history
        self._history_trim_at = TRIM_AT_LEAST

    # --- lifecycle -------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._checkpoint.start(self._checkpoint_interval, now=False)

    def join_cluster(self) -> Deferred[None]:
        """Join the other nodes, if there are any; fails if they cannot be reached."""
        if self.peers is None:
            return succeed(None)
        return self.peers.start(self)

    def stopService(self) -> Deferred[None]:
        """
        Say goodbye to every connection, record who was online, close the store.
        """
        super().stopService()
        self.flush()
        if self._checkpoint.running:
            self._checkpoint.stop()
        online = list(self.registry.online)
        goodbyes = [s.goodbye(Goodbye(Reason.SHUTDOWN)) for s in list(self.sessions)]
        gone: Deferred[Any] = DeferredList(goodbyes, consumeErrors=True)

        def record(_: object) -> Deferred[Any]:
            now = self.clock.seconds()
            self._seen.pending().update(dict.fromkeys(online, now))
            return DeferredList([self._history.write(), self._seen.write()])

        gone.addCallback(record)
        gone.addBoth(lambda _: self.store.close())
        if self.peers is not None:
            peers = self.peers
            gone.addBoth(lambda _: peers.stop())
        return gone

    @property
    def node(self) -> str | None:
        """This node's name in its cluster, or None when it is alone."""
        return None if self.peers is None else self.peers.node

    def log_status(self) -> None:
        """One line about the state of the server, for an operator who asks (SIGUSR2)."""
        peers = self.peers
        log.info(
            "{connections} connections, {online} logged in here, {present} in all; "
            "store {store}; other nodes {peers}",
            connections=len(self.sessions),
            online=len(self.registry.online),
            present=len(self.registry.present),
            store="up" if self.store.health.available else f"down ({self.store.health.reason})",
            peers="none" if peers is None else "up" if peers.health.available else "unreachable",
        )

    def _saw(self, name: str, now: float) -> None:
        self._seen.pending()[name] = now

    def _checkpoint_presence(self) -> Deferred[None]:
        """
        Record that the online users are still online, so that after a crash
        wholast is off by at most one checkpoint interval; and say in the log
        how busy the server has been, instead of a line per login.
        """
        online = self.registry.online
        if self._logins or self._logouts:
            log.info(
                "{online} online; {activity} in the last {interval:g} s",
                online=len(online),
                activity=f"{_plural(self._logins, 'login')} and {_plural(self._logouts, 'logout')}",
                logins=self._logins,
                logouts=self._logouts,
                interval=self._checkpoint_interval,
            )
            self._logins = self._logouts = 0
        self._seen.pending().update(dict.fromkeys(online, self.clock.seconds()))
        return self._seen.write()

    def replace_users(self, users: Collection[str]) -> list[str]:
        """
        The users file was read again: C{users} are the users from now on.
        The sessions here of those no longer in it end, saying why; give
        their names.  (Each node of a cluster reads its own file.)
        """
        self.users = users
        self._sorted_users = None
        removed = [name for name in self.registry.online if name not in users]
        for name in removed:
            participant = self.registry.online.get(name)
            if participant is not None:
                participant.goodbye(Goodbye(Reason.REMOVED, name))
        return removed

    # --- connections -----------------------------------------------------------

    def attach(self, session: IParticipant) -> None:
        """Track a connection (logged in or not) so shutdown can say goodbye."""
        self.sessions.add(session)

    def detach(self, session: IParticipant) -> None:
        self.sessions.discard(session)

    # --- presence --------------------------------------------------------------

    def join(self, name: str, participant: IParticipant, takeover: bool = False) -> Deferred[ChatUser]:
        """
        Put C{name} online.  With C{takeover} (a session resumed with a
        token, so the same person), a session C{name} still has is ended
        first; the browser it belonged to has most likely lost it already.

        Fails with L{AlreadyOnline} if C{name} has a session already (on any
        node), or L{Unavailable} if a cluster cannot decide that now.
        """
        self.flush()
        if takeover:
            old = self.registry.online.get(name)
            if old is not None and old is not participant:
                old.goodbye(Goodbye(Reason.REPLACED, name))
        d = self.registry.add(name, participant, self.clock.seconds(), takeover)
        return d.addCallback(lambda _: self._joined(name, participant))

    def _joined(self, name: str, participant: IParticipant) -> ChatUser:
        now = self.clock.seconds()
        self._saw(name, now)
        self._logins += 1
        self.flush()
        self._announce(Presence(name, True, now, self.intros.get(name)))
        if participant.format.presence:
            self._watchers[participant] = None
        return ChatUser(name, self, participant)

    def leave(self, name: str, participant: IParticipant) -> None:
        self.flush()
        now = self.clock.seconds()
        self._watchers.pop(participant, None)
        if self.registry.online.get(name) is not participant:
            return
        self.registry.remove(name, participant, now)
        self._saw(name, now)
        self._logouts += 1
        self._watchers.pop(participant, None)
        self._handed.pop(name, None)
        self._announce(Presence(name, False, now, self.intros.get(name)))

    def _announce(self, presence: Presence) -> None:
        """
        Tell the participants whose format shows presence (a browser's
        roster) who came or went; others (a telnet screen) are not asked,
        and cost nothing: a storm of logins over TCP does no work here.  The
        one who came or went is not among them at that moment.
        """
        rendered: dict[IFormat, object] = {}
        for participant in self._watchers:
            fmt = participant.format
            payload = rendered.get(fmt)
            if payload is None:
                payload = rendered[fmt] = fmt.event(presence)
            _deliver(participant, payload)

    def whoelse(self, me: str) -> list[RosterEntry]:
        intros = self.intros
        return [
            RosterEntry(name, intros.get(name), True) for name in sorted(self.registry.present) if name != me
        ]

    def wholast(self, me: str, minutes: int) -> list[RosterEntry]:
        cutoff = self.clock.seconds() - minutes * 60
        intros = self.intros
        online = self.registry.present
        names = set(online)
        names.update(self.registry.seen_since(cutoff))
        names.discard(me)
        last_seen = self.registry.last_seen
        return [
            RosterEntry(n, intros.get(n), n in online, None if n in online else last_seen(n))
            for n in sorted(names)
        ]

    def set_intro(self, name: str, text: str) -> Deferred[None]:
        def saved(_: None) -> None:
            self.intros[name] = text
            if self.peers is not None:
                self.peers.intro_changed(name, text)
            self._intro_changed(name, text)

        return self.store.set_intro(name, text).addCallback(saved)

    def _intro_changed(self, name: str, text: str) -> None:
        """
        A roster shows intros: those who watch one (the page) are told at
        once, as the same presence they know, with the new intro.
        """
        if name in self.registry.present:
            self.flush()
            self._announce(Presence(name, True, self.clock.seconds(), text))

    # --- delivery --------------------------------------------------------------

    def broadcast(self, sender: str, text: str) -> Broadcasted:
        """
        Send C{text} to every other online user; say how many get it, and
        how many are online on nodes that cannot be reached now (a cluster
        whose Redis is away).  A broadcast that reaches nobody is not kept.

        The broadcast waits, with others, for L{flush}: sessions call it when
        they have handled all the input of one read, and the end of the
        reactor's turn calls it in any case, before anything is written to a
        socket.
        """
        delivery = Delivery(sender, text, Kind.BROADCAST, self.clock.seconds(), self.new_id())
        online = self.registry.online
        me = online.get(sender)
        here = len(online) - (me is not None)
        elsewhere = len(self.registry.present) - len(online)
        unreachable = 0
        if elsewhere and self.peers is not None and not self.peers.health.available:
            self.peers.health.refused()
            unreachable, elsewhere = elsewhere, 0
        reached = here + elsewhere
        if reached:
            self._broadcasts.append((me, delivery))
            if self._flush_broadcasts is None:
                self._flush_broadcasts = self.clock.callLater(0, self.flush)
        return Broadcasted(reached, delivery.id, delivery.sent_at, unreachable)

    def flush(self) -> None:
        """
        Deliver the broadcasts waiting since the last flush.

        A busy client sends several broadcasts at once, and they arrive in
        one read.  Each recipient gets them all in one write, joined, instead
        of one write per broadcast: writes are most of the server's work, so
        this is what lets fan-out keep up.  Senders get the same minus their
        own.  Waiting no longer than the end of a read keeps a lone
        broadcast as quick as if it were written at once.  Each broadcast is
        rendered once per format (text for TCP, JSON for browsers), however
        many recipients share that format.

        Anything else that reaches a participant's screen from someone else
        (a private message) or changes who is online flushes first, so
        everyone sees messages in the order they were sent.
        """
        if not self._broadcasts and not self._relayed:
            return
        if self._flush_broadcasts is not None:
            if self._flush_broadcasts.active():
                self._flush_broadcasts.cancel()
            self._flush_broadcasts = None
        waiting, self._broadcasts = self._broadcasts, []
        if waiting:
            self._keep([(delivery, (PUBLIC,)) for _, delivery in waiting])
            if self.peers is not None and self.peers.health.available:
                self.peers.publish([delivery for _, delivery in waiting])
        if self._relayed:
            relayed, self._relayed = self._relayed, []
            waiting = [(None, delivery) for delivery in relayed] + waiting
        self._fan_out(waiting)

    def _fan_out(self, waiting: Sequence[tuple[IParticipant | None, Delivery]]) -> None:
        """Each broadcast to every participant here but its sender, rendered once per format."""
        for fmt, members in self.registry.audiences():
            if len(waiting) == 1:
                [(me, delivery)] = waiting
                line = fmt.delivery(delivery)
                # The hot loop of the server: one call per recipient, no copies.
                for participant in members:
                    if participant is me:
                        continue
                    try:
                        participant.receive(line)
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
                    participant.receive(data)
                except Exception:
                    log.failure("delivery to {participant!r} failed", participant=participant)

    def check_recipients(self, sender: str, names: Iterable[str]) -> None:
        """
        @raise UnknownUser: some of C{names} are not users at all.
        """
        users = self.users
        unknown = [n for n in names if n not in users]
        if unknown:
            if self._sorted_users is None:
                self._sorted_users = sorted(self.users)
            candidates = self._sorted_users
            raise UnknownUser(unknown, [closest(n, candidates) for n in unknown])

    def send(
        self, sender: str, recipients: Sequence[str], text: str, kind: Kind
    ) -> Receipt | Deferred[Receipt]:
        """
        Send C{text} to C{recipients}: at once to those online here, through
        the store to the others (kept for those offline, handed to the node
        of those online elsewhere).  When nobody needed the store (the
        usual case, and a hot one) the answer is the receipt itself;
        otherwise a Deferred that fires once the stored copies are durable.

        What the sender is told is what happened.  A failure means nothing
        was sent to anyone: while the store is down, a message that needs it
        is refused before anything is done, so a retry cannot duplicate it.
        If the store fails only once the message was on its way (it went
        down meanwhile), those online here have it and the receipt names the
        others as not reached.  History keeps only what reached someone.

        @raise UnknownUser: before anything is sent, if any name is unknown.
        """
        self.check_recipients(sender, recipients)
        self.flush()
        delivery = Delivery(sender, text, kind, self.clock.seconds(), self.new_id(), tuple(recipients))
        if not recipients:
            return Receipt((), (), delivery.id, delivery.sent_at)
        online = self.registry.online
        present = self.registry.present
        here: list[tuple[str, IParticipant]] = []
        delivered: list[str] = []
        offline: list[str] = []
        elsewhere: list[str] = []
        for name in recipients:
            participant = online.get(name)
            if participant is not None:
                here.append((name, participant))
                delivered.append(name)
            elif name in present:
                # Online on another node: delivered through its inbox.
                elsewhere.append(name)
                delivered.append(name)
            else:
                offline.append(name)
        health = self.store.health
        if (offline or elsewhere) and not health.available:
            health.refused()
            return fail(Unavailable(f"{health.what} is unavailable"))
        rendered: dict[IFormat, object] = {}
        for _, participant in here:
            fmt = participant.format
            payload = rendered.get(fmt)
            if payload is None:
                payload = rendered[fmt] = fmt.delivery(delivery)
            _deliver(participant, payload)
        receipt = Receipt(tuple(delivered), tuple(offline), delivery.id, delivery.sent_at)
        if not offline and not elsewhere:
            self._keep([(delivery, (sender, *recipients))])
            return receipt
        saved = self.store.save_offline(offline + elsewhere, delivery)

        def stored(_: None) -> Receipt:
            if elsewhere:
                peers = self.peers
                assert peers is not None, "users online elsewhere without peers"
                peers.notify(elsewhere)
            self._keep([(delivery, (sender, *recipients))])
            return receipt

        def not_stored(f: Failure) -> Receipt | Failure:
            if not here:
                return f  # nothing happened: the sender is told so
            if not f.check(Unavailable):
                self.quiet.failure(
                    "storing messages", "could not store a message from {user}", f, user=sender
                )
            reached = tuple(name for name, _ in here)
            self._keep([(attrs.evolve(delivery, to=reached), (sender, *reached))])
            return Receipt(reached, (), delivery.id, delivery.sent_at, failed=tuple(offline + elsewhere))

        return saved.addCallbacks(stored, not_stored)

    def _keep(self, entries: Sequence[tuple[Delivery, tuple[str, ...]]]) -> None:
        """
        Add messages to their owners' history.  Nobody waits for this: what
        was delivered live is acknowledged by its delivery.  The messages of
        one turn of the reactor go to the store together, as one write, in
        its next group commit: one store operation per message cost the
        private-message path two thirds of its speed.
        """
        pending = self._history.pending()
        pending.extend(entries)
        if len(pending) > self._history_trim_at:
            # The store falls behind (a flood of broadcasts, a slow disk):
            # what waits is cut to what the store would keep of it, so the
            # backlog is bounded by owners, not by messages.
            kept = self._history.compact(lambda items: newest_per_owner(items, self._history_limit))
            self._history_trim_at = max(TRIM_AT_LEAST, 2 * kept)

    def history(self, name: str, count: int) -> Deferred[list[Delivery]]:
        """The last C{count} messages of C{name}'s history, after every one sent so far."""
        self.flush()
        # The store reads after what it was sent before: no need to wait.
        self._history.write()
        return self.store.history_for(name, count)

    # --- stored messages ---------------------------------------------------------

    def unseen(self, name: str) -> Deferred[list[StoredMessage]]:
        """
        The stored messages for C{name} that no session of theirs has been
        handed yet; they count as handed from now until L{shown}.
        """

        def fresh(messages: list[StoredMessage]) -> list[StoredMessage]:
            if not messages:
                return messages  # the usual login: nothing waited
            handed = self._handed.setdefault(name, set())
            new = [m for m in messages if m.delivery.id not in handed or not m.delivery.id]
            handed.update(m.delivery.id for m in new)
            return new

        return self.store.offline_for(name).addCallback(fresh)

    def shown(self, name: str, messages: Sequence[StoredMessage]) -> Deferred[None]:
        """Forget messages the user has been shown."""

        def forgotten(result: object) -> object:
            handed = self._handed.get(name)
            if handed is not None and not isinstance(result, Failure):
                handed.difference_update(m.delivery.id for m in messages)
            return result

        return self.store.ack(messages).addBoth(forgotten)

    # --- IPeerListener -------------------------------------------------------------

    def restore(self, snapshot: Snapshot) -> None:
        self.intros.update(snapshot.intros)

    def remote_presence(self, name: str, online: bool, at: float) -> None:
        self.flush()
        self._announce(Presence(name, online, at, self.intros.get(name)))

    def remote_broadcasts(self, deliveries: Sequence[Delivery]) -> None:
        # Joined with whatever else arrives in this turn (other nodes'
        # broadcasts come one pub/sub message each), as local ones are.
        self._relayed.extend(deliveries)
        if self._flush_broadcasts is None:
            self._flush_broadcasts = self.clock.callLater(0, self.flush)

    def remote_intro(self, name: str, text: str) -> None:
        self.intros[name] = text
        self._intro_changed(name, text)

    def inbox_ready(self, name: str) -> None:
        """Hand what waits in C{name}'s inbox to their session here, then forget it."""
        found = self.registry.online.get(name)
        if found is None:
            return  # gone: the messages wait for the next login
        if name in self._reading:
            self._reading[name] = True
            return
        self._reading[name] = False
        participant: IParticipant = found

        def hand_over(messages: list[StoredMessage]) -> None:
            if not messages or self.registry.online.get(name) is not participant:
                return
            self.flush()
            # They leave the inbox once the user has shown they got them
            # (the session acknowledges them): a connection that drops
            # before that gets them again at the next login.
            try:
                participant.handed(messages)
            except Exception:
                log.failure("handing stored messages to {participant!r}", participant=participant)

        def again(_: object) -> None:
            if self._reading.pop(name, False):
                self.inbox_ready(name)

        self.unseen(name).addCallback(hand_over).addErrback(self._inbox_failed, name).addBoth(again)

    def _inbox_failed(self, f: Failure, name: str) -> None:
        # Redis away: the messages stay in the inbox, and the cluster looks
        # again once it is back.  Its health said so once already.
        if not f.check(Unavailable):
            self.quiet.failure("reading inboxes", "could not deliver the inbox of {user}", f, user=name)

    def evicted(self, name: str, participant: IParticipant) -> None:
        participant.goodbye(Goodbye(Reason.REPLACED, name))


C = TypeVar("C", bound=Sized)


class TurnBatch(Generic[C]):
    """
    Writes gathered during one turn of the reactor and handed to the store
    together at its end, or sooner when someone needs them written (a
    reader that must see them, a shutdown).  Nobody waits for them: a
    failure is logged.

    With C{one_at_a_time} (the history), a turn's write is started only
    when the last one is done; what gathers meanwhile goes in the next, as
    one.  A store that falls behind (a busy node's Redis connection) then
    gets fewer, larger writes instead of a queue of small ones.  Without it
    (last-seen times), each turn's write goes at its end, in order with the
    store's other writes: once a later write is durable, so is it.  A write
    someone asks for goes at once.

    While the store is down (L{Unavailable}), what could not be written is
    kept, up to L{MAX_KEPT}, and written again when the store says it is
    back, or at the latest after a backoff: never once per turn, which is
    what made a node spin through a Redis outage.
    """

    MAX_KEPT = 100_000

    def __init__(
        self,
        clock: IReactorTime,
        empty: Callable[[], C],
        write: Callable[[C], Deferred[None]],
        what: str,
        merge: Callable[[C, C], C],
        health: Health,
        quiet: QuietLog,
        one_at_a_time: bool = False,
    ) -> None:
        self._clock = clock
        self._empty = empty
        self._merge = merge
        self._write = write
        self._what = what
        self._health = health
        self._quiet = quiet
        self._items = empty()
        self._call: IDelayedCall | None = None
        self._in_flight = 0
        self._one_at_a_time = one_at_a_time
        self._backoff = Backoff(first=1.0, most=30.0)
        #: While the store is down: the timer and the wait for it to come
        #: back, whichever comes first starts the next write.
        self._retry: tuple[IDelayedCall, Deferred[None]] | None = None

    def pending(self) -> C:
        """What will be written at the end of this turn; add to it."""
        if self._call is None and self._retry is None:
            self._call = self._clock.callLater(0, self._turn_ended)
        return self._items

    def compact(self, cut: Callable[[C], C]) -> int:
        """Replace what waits by C{cut} of it; give how much waits then."""
        self._items = cut(self._items)
        return len(self._items)

    def _turn_ended(self) -> None:
        self._call = None
        if not (self._one_at_a_time and self._in_flight):
            self.write()

    def write(self) -> Deferred[None]:
        """Write what has gathered, now."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        self._stop_waiting()
        if not self._items:
            return succeed(None)
        items, self._items = self._items, self._empty()
        self._in_flight += 1
        return self._write(items).addCallbacks(self._written, self._failed, errbackArgs=(items,))

    def _written(self, _: object) -> None:
        self._in_flight -= 1
        self._backoff.reset()
        self._next()

    def _next(self) -> None:
        if not self._in_flight and self._items and self._call is None and self._retry is None:
            # What gathered while the store was busy: next turn, as one.
            self._call = self._clock.callLater(0, self._turn_ended)

    def _failed(self, f: Failure, items: C) -> None:
        self._in_flight -= 1
        if not f.check(Unavailable):
            self._quiet.failure(self._what, "{what} failed", f, what=self._what)
            self._next()
            return
        # The store said it is down (once, in its own words): keep what was
        # not written for later, up to a bound, rather than lose it.
        if len(items) + len(self._items) <= self.MAX_KEPT:
            self._items = self._merge(items, self._items)
        else:
            self._quiet.warn(
                self._what + " dropped",
                "{what}: {count} entries dropped, more than {limit} waited for the store",
                what=self._what,
                count=len(items),
                limit=self.MAX_KEPT,
            )
        self._wait_for_store()

    def _wait_for_store(self) -> None:
        if self._retry is not None or not self._items:
            return
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        timer = self._clock.callLater(self._backoff.next(), self._retry_now)
        back = self._health.when_available()
        self._retry = (timer, back)
        back.addCallbacks(lambda _: self._retry_now(), lambda f: f.trap(CancelledError))

    def _stop_waiting(self) -> None:
        retry, self._retry = self._retry, None
        if retry is not None:
            timer, back = retry
            if timer.active():
                timer.cancel()
            if not back.called:
                back.cancel()

    def _retry_now(self) -> None:
        self._stop_waiting()
        if not self._in_flight:
            self.write()
        # Otherwise the write in flight decides: done, what waits goes next
        # turn; failed, the wait starts again.


#: Entries of history waiting for the store before the first trim.
TRIM_AT_LEAST = 2000


def newest_per_owner(
    entries: list[tuple[Delivery, tuple[str, ...]]], limit: int
) -> list[tuple[Delivery, tuple[str, ...]]]:
    """The entries the store would keep of C{entries}: the newest C{limit} of each owner."""
    counts: dict[str, int] = {}
    kept = []
    for delivery, owners in reversed(entries):
        wanted = False
        for owner in owners:
            count = counts.get(owner, 0)
            wanted = wanted or count < limit
            counts[owner] = count + 1
        if wanted:
            kept.append((delivery, owners))
    kept.reverse()
    return kept


def _newer(older: dict[str, float], newer: dict[str, float]) -> dict[str, float]:
    return {**older, **newer}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _deliver(participant: IParticipant, payload: object) -> None:
    """One payload to one participant; a failure there is logged, not spread."""
    try:
        participant.receive(payload)
    except Exception:
        log.failure("delivery to {participant!r} failed", participant=participant)


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

    def whoelse(self) -> list[RosterEntry]:
        return self.service.whoelse(self.name)

    def wholast(self, minutes: int) -> list[RosterEntry]:
        return self.service.wholast(self.name, minutes)

    def broadcast(self, text: str) -> Broadcasted:
        return self.service.broadcast(self.name, text)

    def broadcast_to(self, recipients: Sequence[str], text: str) -> Receipt | Deferred[Receipt]:
        others = [r for r in recipients if r != self.name]
        return self.service.send(self.name, others, text, Kind.BROADCAST)

    def message(self, recipient: str, text: str) -> Receipt | Deferred[Receipt]:
        if recipient == self.name:
            raise SelfMessage(recipient)
        return self.service.send(self.name, [recipient], text, Kind.PRIVATE)

    def set_intro(self, text: str) -> Deferred[None]:
        return self.service.set_intro(self.name, text)

    def offline_messages(self) -> Deferred[list[StoredMessage]]:
        return self.service.unseen(self.name)

    def shown(self, messages: Sequence[StoredMessage]) -> Deferred[None]:
        return self.service.shown(self.name, messages)

    def history(self, count: int) -> Deferred[list[Delivery]]:
        return self.service.history(self.name, count)

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
    ) -> Deferred[tuple[Any, Any, Callable[[], None]]]:
        if IChatUser not in interfaces or not isinstance(avatarId, bytes):
            raise NotImplementedError("ChatRealm only provides IChatUser, to named users")
        # The mind is the session asking to log in, an IParticipant; one that
        # resumes with a token takes over an older session of the same user.
        takeover = bool(getattr(mind, "resuming", False))
        joined = self.service.join(avatarId.decode("utf-8"), cast(IParticipant, mind), takeover)
        return joined.addCallback(lambda user: (IChatUser, user, user.logout))


__all__ = [
    "AlreadyOnline",
    "ChatRealm",
    "ChatService",
    "ChatUser",
    "SelfMessage",
    "UnknownUser",
]
