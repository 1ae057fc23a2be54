"""
The chat itself: the shared state of one server and the rules of delivery.

L{ChatService} owns no I/O of its own: recipients are anything that
provides L{IParticipant} (an edge), the store is an L{IStore}, presence is
an L{IRegistry}, and time comes from an injected L{IReactorTime}.  Its
rooms: L{Presences} (who is here, who was, and the rosters), L{Fanout}
(broadcasts, rendered once per format and joined per read), L{TurnBatch}
(writes gathered per turn); login's realm and the avatar are in
L{chat.server.realm}.  A recipient that fails while receiving cannot stop
delivery to the others.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, FirstError, fail, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chat.server import conversations
from chat.server.admin import Admin
from chat.server.batching import TRIM_AT_LEAST, TurnBatch, newer, newest_per_conversation
from chat.server.commands import closest
from chat.server.counters import Counters
from chat.server.events import (
    Announcement,
    Broadcasted,
    Delivery,
    Goodbye,
    Kind,
    MessageIds,
    Presence,
    Reason,
    Receipt,
    RosterEntry,
    SessionInfo,
    StoredMessage,
)
from chat.server.fanout import Fanout
from chat.server.interfaces import (
    ConversationState,
    IFormat,
    IParticipant,
    IPeerListener,
    IPeers,
    IRegistry,
    IStore,
    Snapshot,
    Unavailable,
)
from chat.server.presence import Presences
from chat.server.quietlog import QuietLog
from chat.server.registry import LocalRegistry
from chat.server.rooms import Rooms
from chat.server.typists import Typists

log = Logger()

#: Seconds between two writes of history at least: what is sent meanwhile
#: goes in one transaction.  Nobody waits for history (a reader flushes it
#: first), and each write costs the store's thread a commit and a trade of
#: the GIL with the reactor's for each of its statements.
HISTORY_EVERY = 0.1

#: The counter of private messages (L{Kind.PRIVATE}'s value, looked up once).
_PRIVATE = Kind.PRIVATE.value
#: (An enum's member read from its class is a Python-level lookup in 3.11:
#: the busiest path reads it once, here.)
_PRIVATE_KIND = Kind.PRIVATE


class _Handed:
    """
    The ids of the stored messages handed to one session of a user and not
    yet removed from the store.  Its identity is the session's: a read
    answered after the session left adds to a holder nobody looks at any
    more.  The set is made only when something is handed, and dropped once
    all of it is shown: most users never have one, and an empty set would
    be the largest thing a logged-in connection keeps (216 bytes).
    """

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids: set[str] | None = None

    def fresh(self, messages: Sequence[StoredMessage]) -> list[StoredMessage]:
        """Those of C{messages} not handed yet, counted as handed from now."""
        if not messages:
            return []  # the usual login: nothing waited
        ids = self.ids
        new = [m for m in messages if not m.delivery.id or ids is None or m.delivery.id not in ids]
        if new:
            if ids is None:
                ids = self.ids = set()
            ids.update(m.delivery.id for m in new)
        return new

    def forget(self, messages: Sequence[StoredMessage]) -> None:
        ids = self.ids
        if ids is not None:
            ids.difference_update(m.delivery.id for m in messages)
            if not ids:
                self.ids = None


def _both(first: Deferred[None], second: Deferred[None]) -> Deferred[None]:
    """Wait for two writes; the first failure is the failure."""

    def failed(f: Failure) -> Failure:
        return f.value.subFailure if isinstance(f.value, FirstError) else f

    both = gatherResults([first, second], consumeErrors=True)
    return both.addCallbacks(lambda _: None, failed)


#: A time after every message: unread counts from there are those of read markers alone.
_NEVER = 1e18


class UnknownUser(Exception):
    """Some recipients are not users; C{suggestions} has the closest name to each, or None."""

    def __init__(self, names: Sequence[str], suggestions: Sequence[str | None]) -> None:
        super().__init__(names)
        self.names = tuple(names)
        self.suggestions = tuple(suggestions)


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
        admins: frozenset[str] = frozenset(),
    ) -> None:
        snapshot = store.snapshot()
        self.users = users
        self._sorted_users: list[str] | None = None
        self.store = store
        self.clock = clock
        self.registry = registry if registry is not None else LocalRegistry(snapshot.last_seen)
        #: Every connection, logged in or not, so that shutdown says goodbye.
        self.sessions: set[IParticipant] = set()
        self.counters = Counters()
        self.admin = Admin(self, admins)
        #: Users online here: when they were last seen before this login.
        self._away_since: dict[str, float] = {}
        #: What sessions that ended left to write (read markers), by user: a
        #: stop waits for it, and so does counting what that user has read.
        self._settling: dict[str, set[Deferred[Any]]] = {}
        self.rooms = Rooms(self, snapshot.rooms)
        self.typists = Typists(self)
        self.quiet = QuietLog(log, clock)
        self.new_id = MessageIds()
        self.peers = peers
        # Logins and logouts change last-seen times; those of one turn of the
        # reactor are written together, so a storm of logins costs the store
        # one write per turn, not one per login.  So are the messages of one
        # turn added to the history.
        self._seen: TurnBatch[dict[str, float]] = TurnBatch(
            clock,
            dict,
            lambda seen: self.store.mark_seen(seen),
            "recording last-seen times",
            newer,
            store.health,
            self.quiet,
        )
        self._history: TurnBatch[list[tuple[Delivery, str]]] = TurnBatch(
            clock,
            list,
            lambda entries: self.store.save_history(entries),
            "keeping history",
            lambda older, newer: older + newer,
            store.health,
            self.quiet,
            one_at_a_time=True,
            every=HISTORY_EVERY,
        )
        #: Messages kept per owner (the store's limit too): a backlog of
        #: history waiting for the store is trimmed to what it would keep.
        self._history_limit = history
        self._history_trim_at = TRIM_AT_LEAST
        self.fanout = Fanout(self.registry, clock, self._keep, self._publish, self.counters)
        self.presences = Presences(self.registry, clock, dict(snapshot.intros), self._seen, self.flush)
        #: Per user, the ids of the stored messages handed to their session
        #: and not yet removed from the store: the login and a notification
        #: may read the same inbox at once, and nobody sees a message twice.
        self._handed: dict[str, _Handed] = {}
        #: Users whose inbox is being read now, and whether to read it again
        #: after: notifications that come meanwhile need one more read, not
        #: one each.
        self._reading: dict[str, bool] = {}
        #: Private messages of this read, by recipient (L{_post}).
        self._outbox: dict[IParticipant, list[object]] = {}
        self._outbox_call: IDelayedCall | None = None
        self._checkpoint = LoopingCall(lambda: self.presences.checkpoint(checkpoint_interval))
        self._checkpoint.clock = clock
        self._checkpoint_interval = checkpoint_interval

    @property
    def intros(self) -> dict[str, str]:
        return self.presences.intros

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
        if self._outbox_call is not None and self._outbox_call.active():
            self._outbox_call.cancel()
        self._outbox_call = None
        if self._checkpoint.running:
            self._checkpoint.stop()
        online = list(self.registry.online)
        goodbyes = [s.goodbye(Goodbye(Reason.SHUTDOWN)) for s in list(self.sessions)]
        gone: Deferred[Any] = DeferredList(goodbyes, consumeErrors=True)

        def record(_: object) -> Deferred[Any]:
            now = self.clock.seconds()
            self._seen.pending().update(dict.fromkeys(online, now))
            settling = [work for works in self._settling.values() for work in works]
            return DeferredList([self._history.write(), self._seen.write(), *settling])

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

    def attach(self, participant: IParticipant) -> None:
        """Track a connection (logged in or not) so shutdown can say goodbye."""
        self.sessions.add(participant)

    def detach(self, participant: IParticipant) -> None:
        self.sessions.discard(participant)

    # --- presence --------------------------------------------------------------

    def join(self, name: str, participant: IParticipant, takeover: bool = False) -> Deferred[None]:
        """
        Put C{name} online, with C{participant} receiving their messages.
        With C{takeover} (a session resumed with a token, so the same
        person), a session C{name} still has is ended first; the browser it
        belonged to has most likely lost it already.

        Fails with L{AlreadyOnline} if C{name} has a session already (on any
        node), or L{Unavailable} if a cluster cannot decide that now.
        """
        self.flush()
        if takeover:
            old = self.registry.online.get(name)
            if old is not None and old is not participant:
                old.goodbye(Goodbye(Reason.REPLACED, name))
        now = self.clock.seconds()
        # Until when they were away: unread counts start there where they
        # have no read marker yet.
        away = self.registry.last_seen(name)
        d = self.registry.add(name, participant, now, takeover)

        def joined(_: object) -> None:
            self._away_since[name] = away if away is not None else now
            self.presences.joined(name, participant)

        return d.addCallback(joined)

    def leave(self, name: str, participant: IParticipant) -> None:
        self.flush()
        if self.presences.left(name, participant):
            self._handed.pop(name, None)
            since = self._away_since.pop(name, None)
            if since is not None:
                self._keep_unread(name, since)

    def _keep_unread(self, name: str, since: float) -> None:
        """
        C{name}'s session is over: in their conversations without a read
        marker, unread counts started at C{since} (when they were last
        away).  The next login starts from a later time, so they get a
        marker there: the counts stay as they were, after a reload, a
        resume, a restart or a login on another node.

        A conversation has no marker where its count depends on where
        counting starts; a marker never moves back, so one set meanwhile
        (a terminal's logout reads what it showed) stays.
        """
        if not self.store.health.available:
            return
        self._history.write()
        counted = DeferredList(
            [self.store.conversations_of(name, 0.0), self.store.conversations_of(name, _NEVER)],
            fireOnOneErrback=True,
            consumeErrors=True,
        )

        def keep(results: list[tuple[bool, list[ConversationState]]]) -> Deferred[None]:
            (_, everything), (_, marked) = results
            unread = {state.key: state.unread for state in marked}
            unmarked = {state.key: since for state in everything if state.unread != unread.get(state.key, 0)}
            return self.store.mark_read(name, unmarked)

        def failed(f: Failure) -> None:
            if isinstance(f.value, FirstError):
                f = f.value.subFailure
            if f.check(Unavailable):
                # The store went away meanwhile: its health said so once.
                # The counts then start from when the user was last seen.
                return
            self.quiet.failure("read markers", "could not keep the unread counts of {user}", f, user=name)

        self.settling(name, counted.addCallback(keep).addErrback(failed))

    def settling(self, name: str, work: Deferred[Any]) -> None:
        """
        Store work an ended session of C{name} left behind: a stop waits for
        it before closing the store, and their unread counts for it.
        """
        works = self._settling.setdefault(name, set())
        works.add(work)

        def done(result: object) -> object:
            works.discard(work)
            if not works and self._settling.get(name) is works:
                del self._settling[name]
            return result

        work.addBoth(done)

    def _settled(self, name: str) -> Deferred[Any]:
        """Fires once what ended sessions of C{name} left to write is written (or failed)."""
        works = self._settling.get(name)
        if not works:
            return succeed(None)
        return DeferredList(list(works), consumeErrors=True)

    def whoelse(self, me: str) -> list[RosterEntry]:
        return self.presences.whoelse(me)

    def wholast(self, me: str, minutes: int) -> list[RosterEntry]:
        return self.presences.wholast(me, minutes)

    def set_intro(self, name: str, text: str) -> Deferred[None]:
        def saved(_: None) -> None:
            if self.peers is not None:
                self.peers.intro_changed(name, text)
            self.presences.intro_changed(name, text)

        return self.store.set_intro(name, text).addCallback(saved)

    # --- delivery --------------------------------------------------------------

    def broadcast(self, sender: str, text: str) -> Broadcasted:
        """
        Send C{text} to every other online user; say how many get it, and
        how many are online on nodes that cannot be reached now (a cluster
        whose Redis is away).  A broadcast that reaches nobody is not kept.
        It is delivered with the others of this read (L{Fanout}).
        """
        delivery = Delivery(sender, text, Kind.BROADCAST, self.clock.seconds(), self.new_id())
        self.counters.messages[Kind.BROADCAST.value] += 1
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
            self.fanout.queue(me, delivery)
        return Broadcasted(reached, delivery.id, delivery.sent_at, unreachable)

    def flush(self) -> None:
        """
        Deliver what waits for the end of the read, now: the private
        messages of this read, one write per recipient (L{_post}), then the
        broadcasts (L{Fanout.flush}).  Whatever reaches someone's screen
        otherwise, or changes who is online, flushes first, so everyone sees
        messages in the order they were sent.
        """
        if self._outbox:
            self._send_outbox()
        self.fanout.flush()

    def _post(self, participant: IParticipant, payload: object) -> None:
        """
        A private message for C{participant}, written with the others of this
        read: a sender who writes several to one person at once costs that
        person one write, not one each.  A private message to someone is
        never behind a broadcast sent after it: broadcasts are delivered
        after what waits here.
        """
        self.counters.deliveries += 1
        box = self._outbox.get(participant)
        if box is None:
            self._outbox[participant] = [payload]
            if self._outbox_call is None:
                # In case no read ends to flush it (a message from a timer,
                # another node): one call per turn of the reactor, left to
                # fire once a read has flushed, not one per read made and
                # cancelled.
                self._outbox_call = self.clock.callLater(0, self._flush_later)
        else:
            box.append(payload)

    def _flush_later(self) -> None:
        self._outbox_call = None
        self.flush()

    def _send_outbox(self) -> None:
        outbox, self._outbox = self._outbox, {}
        for participant, payloads in outbox.items():
            try:
                participant.deliver(payloads[0] if len(payloads) == 1 else participant.format.join(payloads))
            except Exception:
                log.failure("delivery to {participant!r} failed", participant=participant)

    def _publish(self, deliveries: Sequence[Delivery]) -> None:
        if self.peers is not None and self.peers.health.available:
            self.peers.publish(deliveries)

    def check_recipients(self, sender: str, names: Iterable[str]) -> None:
        """
        @raise UnknownUser: some of C{names} are not users at all.
        """
        users = self.users
        unknown = None
        for name in names:
            if name not in users:
                unknown = [n for n in names if n not in users]
                break
        if unknown:
            if self._sorted_users is None:
                self._sorted_users = sorted(self.users)
            candidates = self._sorted_users
            raise UnknownUser(unknown, [closest(n, candidates) for n in unknown])

    def message(self, sender: str, recipient: str, text: str) -> Receipt | Deferred[Receipt]:
        """
        A private message: L{send} to one recipient, with the usual case
        (they are online here) taken first and alone, since it is the
        server's busiest path after fan-out: one lookup, one L{Delivery},
        one render, one history entry, one L{Receipt}.  Anything else (an
        unknown name, someone offline) is L{send}'s, but for someone online
        on another node, the next busiest: L{_to_another_node}.
        """
        participant = self.registry.online.get(recipient)
        if participant is None or recipient not in self.users:
            peers = self.peers
            if (
                peers is not None
                and recipient in self.registry.present
                and recipient in self.users
                and self.store.health.available
            ):
                return self._to_another_node(sender, recipient, text, peers)
            return self.send(sender, [recipient], text, Kind.PRIVATE)
        self.counters.messages[_PRIVATE] += 1
        self.fanout.flush()
        now = self.clock.seconds()
        delivery = Delivery(sender, text, _PRIVATE_KIND, now, self.new_id(), (recipient,))
        self._post(participant, participant.format.delivery(delivery))
        pending = self._history.pending()
        pending.append((delivery, conversations.pair(sender, recipient)))
        if len(pending) > self._history_trim_at:
            self._trim_history()
        return Receipt(delivery.to, (), delivery.id, now)

    def _to_another_node(self, sender: str, recipient: str, text: str, peers: IPeers) -> Deferred[Receipt]:
        """
        L{message} to a user online on another node: into their inbox and
        to their node (L{IPeers.hand_over}), answered once it is durable
        there, as L{send} answers it; if that fails, nothing was sent.
        """
        self.counters.messages[_PRIVATE] += 1
        self.fanout.flush()
        now = self.clock.seconds()
        delivery = Delivery(sender, text, Kind.PRIVATE, now, self.new_id(), (recipient,))
        entry = (delivery, conversations.pair(sender, recipient))

        def stored(_: None) -> Receipt:
            self._keep((entry,))
            return Receipt(delivery.to, (), delivery.id, now)

        return peers.hand_over(delivery.to, delivery).addCallback(stored)

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
        self.counters.messages[kind.value] += 1
        self.fanout.flush()
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
            self._post(participant, payload)
        receipt = Receipt(tuple(delivered), tuple(offline), delivery.id, delivery.sent_at)
        if not offline and not elsewhere:
            self._keep(conversations.entries(delivery))
            return receipt
        if elsewhere:
            peers = self.peers
            assert peers is not None, "users online elsewhere without peers"
            saved = peers.hand_over(elsewhere, delivery)
            if offline:
                saved = _both(saved, self.store.save_offline(offline, delivery))
        else:
            saved = self.store.save_offline(offline, delivery)

        def stored(_: None) -> Receipt:
            self._keep(conversations.entries(delivery))
            return receipt

        def not_stored(f: Failure) -> Receipt | Failure:
            if not here:
                return f  # nothing happened: the sender is told so
            if not f.check(Unavailable):
                self.quiet.failure(
                    "storing messages", "could not store a message from {user}", f, user=sender
                )
            reached = tuple(name for name, _ in here)
            partial = attrs.evolve(delivery, to=reached)
            self._keep(conversations.entries(partial))
            return Receipt(reached, (), delivery.id, delivery.sent_at, failed=tuple(offline + elsewhere))

        return saved.addCallbacks(stored, not_stored)

    def _keep(self, entries: Sequence[tuple[Delivery, str]]) -> None:
        """
        Add messages to the history of their conversations.  Nobody waits for this: what
        was delivered live is acknowledged by its delivery.  The messages of
        one turn of the reactor go to the store together, as one write, in
        its next group commit: one store operation per message cost the
        private-message path two thirds of its speed.
        """
        pending = self._history.pending()
        pending.extend(entries)
        if len(pending) > self._history_trim_at:
            self._trim_history()

    def _trim_history(self) -> None:
        """
        The store falls behind (a flood of broadcasts, a slow disk): what
        waits is cut to what the store would keep of it, so the backlog is
        bounded by conversations, not by messages, and by the batch's
        C{MAX_KEPT} however many conversations there are.
        """
        most = self._history.MAX_KEPT
        dropped = 0

        def cut(items: list[tuple[Delivery, str]]) -> list[tuple[Delivery, str]]:
            # Many conversations each under the limit can still add up to
            # more than memory should hold: past a bound, the oldest go.
            nonlocal dropped
            kept = newest_per_conversation(items, self._history_limit)
            if len(kept) > most:
                dropped = len(kept) - most
                kept = kept[dropped:]
            return kept

        kept = self._history.compact(cut)
        if dropped:
            self.quiet.warn(
                "history dropped",
                "history: {count} messages not kept, more than {limit} waited for the store",
                count=dropped,
                limit=most,
            )
        self._history_trim_at = max(TRIM_AT_LEAST, 2 * kept)

    def history(self, name: str, count: int) -> Deferred[list[Delivery]]:
        """The last C{count} messages of C{name}'s history, after every one sent so far."""
        self.flush()
        # The store reads after what it was sent before: no need to wait.
        self._history.write()
        return self.store.history_for(name, count)

    def conversation_history(
        self, key: str, count: int, before: str | None = None
    ) -> Deferred[tuple[list[Delivery], bool]]:
        """A page of the conversation C{key}, after every message sent so far."""
        self.flush()
        self._history.write()
        return self.store.conversation_history(key, count, before)

    def search(
        self, name: str, words: Sequence[str], count: int, before: str | None = None
    ) -> Deferred[tuple[list[tuple[Delivery, str]], bool] | None]:
        """What C{name} may see that has C{words}, after every message sent so far."""
        self.flush()
        self._history.write()
        return self.store.search(name, words, count, before)

    def conversations_of(self, name: str) -> Deferred[list[ConversationState]]:
        """
        C{name}'s conversations with their unread counts: where they have not
        read a conversation yet, what came since they were last seen.
        """
        self.flush()
        self._history.write()
        since = self._away_since.get(name, self.clock.seconds())
        # After the read markers their last session here left (a reload comes back at once).
        return self._settled(name).addCallback(lambda _: self.store.conversations_of(name, since))

    # --- stored messages ---------------------------------------------------------

    def unseen(self, name: str) -> Deferred[list[StoredMessage]]:
        """
        The stored messages for C{name} that no session of theirs has been
        handed yet; they count as handed from now until L{shown}.
        """
        # The session's holder as the read starts: if the user leaves
        # before it is answered, what it finds is not counted as handed to
        # the next session (whose login would then show nothing).
        handed = self._handed_to(name)
        return self.store.offline_for(name).addCallback(handed.fresh)

    def _handed_to(self, name: str) -> _Handed:
        """What has been handed to C{name}'s session (made at its first read)."""
        handed = self._handed.get(name)
        if handed is None:
            handed = self._handed[name] = _Handed()
        return handed

    def shown(self, name: str, messages: Sequence[StoredMessage]) -> Deferred[None]:
        """Forget messages the user has been shown."""

        def forgotten(result: object) -> object:
            handed = self._handed.get(name)
            if handed is not None and not isinstance(result, Failure):
                handed.forget(messages)
            return result

        return self.store.ack(messages).addBoth(forgotten)

    # --- IPeerListener -------------------------------------------------------------

    def restore(self, snapshot: Snapshot) -> None:
        self.intros.update(snapshot.intros)
        self.rooms.restore(snapshot.rooms)

    def remote_room_change(self, key: str, name: str, user: str, joined: bool) -> None:
        self.rooms.changed(key, name, user, joined)

    def remote_typing(self, name: str, key: str) -> None:
        self.typists.tell(name, key)

    def remote_room_messages(self, deliveries: Sequence[Delivery]) -> None:
        self.rooms.remote(list(deliveries))

    def remote_presence(self, name: str, online: bool, at: float) -> None:
        self.presences.announce(Presence(name, online, at, self.intros.get(name)))

    def remote_broadcasts(self, deliveries: Sequence[Delivery]) -> None:
        # Joined with whatever else arrives in this turn (other nodes'
        # broadcasts come one pub/sub message each), as local ones are.
        self.fanout.relay(deliveries)

    def remote_intro(self, name: str, text: str) -> None:
        self.presences.intro_changed(name, text)

    def _to_hand(self, name: str) -> IParticipant | None:
        """
        The session here to hand C{name}'s inbox messages to, if any and no
        read of the inbox is on its way (then it is read once more after
        that one, and what came meanwhile is in it, in order).
        """
        participant = self.registry.online.get(name)
        if participant is None:
            return None  # gone: the messages wait for the next login
        if name in self._reading:
            self._reading[name] = True
            return None
        return participant

    def inbox_ready(self, name: str) -> None:
        """Hand what waits in C{name}'s inbox to their session here, then forget it."""
        found = self._to_hand(name)
        if found is None:
            return
        self._reading[name] = False
        participant: IParticipant = found

        def hand_over(messages: list[StoredMessage]) -> None:
            if messages and self.registry.online.get(name) is participant:
                self._hand(participant, messages)

        def again(_: object) -> None:
            if self._reading.pop(name, False):
                self.inbox_ready(name)

        self.unseen(name).addCallback(hand_over).addErrback(self._inbox_failed, name).addBoth(again)

    def inbox_arrived(self, name: str, messages: Sequence[StoredMessage]) -> None:
        """
        Messages another node put in C{name}'s inbox and passed on: shown
        without reading the inbox, unless a read of it is on its way (they
        are in it, and come in order after what it finds).
        """
        participant = self._to_hand(name)
        if participant is None:
            return
        new = self._handed_to(name).fresh(messages)
        if new:
            self._hand(participant, new)

    def _hand(self, participant: IParticipant, messages: list[StoredMessage]) -> None:
        self.flush()
        # They leave the inbox once the user has shown they got them (the
        # session acknowledges them): a connection that drops before that
        # gets them again at the next login.
        try:
            participant.handed(messages)
        except Exception:
            log.failure("handing stored messages to {participant!r}", participant=participant)

    def _inbox_failed(self, f: Failure, name: str) -> None:
        # Redis away: the messages stay in the inbox, and the cluster looks
        # again once it is back.  Its health said so once already.
        if not f.check(Unavailable):
            self.quiet.failure("reading inboxes", "could not deliver the inbox of {user}", f, user=name)

    def evicted(self, name: str, participant: IParticipant) -> None:
        participant.goodbye(Goodbye(Reason.REPLACED, name))

    def local_sessions(self) -> list[SessionInfo]:
        return self.admin.local_sessions()

    def remote_kick(self, name: str, by: str, why: str) -> None:
        self.admin.remote_kick(name, by, why)

    def remote_announcement(self, announcement: Announcement) -> None:
        self.admin.remote_announcement(announcement)
