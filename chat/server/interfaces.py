"""
The interfaces of the chat server, together, as Twisted keeps its own in
C{twisted.words.iwords}: what an edge, a participant, the registry and the
store must do, so each can be replaced (another edge, another backend)
without touching the others.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from chat.server.events import (
        Announced,
        Announcement,
        Ask,
        Broadcasted,
        ConversationHistory,
        Conversations,
        Delivery,
        Event,
        Goodbye,
        Kicked,
        Receipt,
        RoomJoined,
        RoomLeft,
        RoomList,
        RoomMembers,
        RoomReceipt,
        RosterEntry,
        SearchResults,
        SessionInfo,
        Sessions,
        StoredMessage,
        Unread,
    )


class IFormat(Interface):
    """
    How one kind of edge renders what is sent to many users at once.

    A message is rendered once per format, not once per recipient: the
    service groups recipients by format and hands each group the same
    payload, which only that format's edges understand.
    """

    presence = Attribute("Whether users of this format are told who comes and goes (L{Presence}).")

    def delivery(d: Delivery) -> Any:
        """The payload of one message."""

    def join(payloads: Sequence[Any]) -> Any:
        """Several payloads as one, in order, for one write."""

    def event(event: Event) -> Any:
        """The payload of any other event sent to many (a L{Presence})."""


class IParticipant(Interface):
    """
    The receiving end of a logged-in user: the edge of their connection, as
    in twisted.words the protocol is the chat client.  The service delivers
    to it; only it decides how a payload reaches its transport.
    """

    format = Attribute("The L{IFormat} of the payloads C{deliver} takes.")

    def deliver(payload: Any) -> None:
        """
        Show one payload of the participant's C{format} (one or more
        messages, rendered once for every recipient of that format) without
        blocking.  Called once per recipient of every message: the edge may
        make it, on its own instance, the cheapest way there is (its
        transport's C{write} while nothing else needs doing).
        """

    def handed(messages: Sequence[StoredMessage]) -> None:
        """
        Show C{messages}, which came through the store (from another node),
        and acknowledge them (L{IStore.ack}) once the user has shown they
        got them: until then they stay in the store, so a connection that
        drops first gets them again at the next login.
        """

    def goodbye(reason: Goodbye) -> Deferred[None]:
        """Say C{reason}, end the session; fires once it is closed."""

    def about() -> SessionInfo | None:
        """The session as an admin sees it; None until it has logged in."""


class IEdge(IParticipant):
    """
    The transport side of a session: how its events reach the user, and
    how messages do (as their L{IParticipant}).

    An edge hands the session each line with L{Session.line_received}, and
    what they sent others goes out together: at the end of the reactor's
    turn for the TCP edge (with the other clients' lines of that turn, see
    L{chat.server.edges.gathered.TurnWrites}), at the end of each read
    (L{Session.input_done}) for the others.  It renders what the session
    emits (L{chat.server.events}) in its own way.
    """

    peer_host = Attribute("The address the user connects from, as text.")
    kind = Attribute("What the edge is, for the log and the admins: 'tcp', 'web'.")
    acknowledges = Attribute(
        "Whether the client says which stored messages it got (the JSON protocol's "
        "C{ack}); if not (a terminal), the next line it sends is taken as the sign."
    )

    def send(event: Event, prompt: Ask | None = None) -> None:
        """Show C{event}, then the prompt for C{prompt} if given, in one write."""

    def send_prompt(prompt: Ask) -> None:
        """Show the prompt for what the session waits for next."""

    def start_deliveries() -> None:
        """
        The welcome is done: messages delivered since the login (held until
        now, in order) go out, and from now on as they come.
        """

    def stop_deliveries() -> None:
        """The session has ended: messages delivered from now on are dropped."""

    def pause_input() -> None:
        """Deliver no more lines until C{resume_input}."""

    def resume_input() -> None:
        """Deliver lines again, starting with any held back."""

    def answering_held_line() -> None:
        """
        The session answers now a line it took and held (typed while its
        messages waited for the store): what follows is that line's answer,
        written where a line just typed leaves the user, not as output that
        interrupts a prompt.
        """

    def close() -> None:
        """Close once what was sent has been written."""


@attrs.frozen
class Joining:
    """
    The mind a session gives the portal at login: who receives the user's
    messages, and whether this login takes over a session the user still
    has (a resume with a token: the same person, back).
    """

    participant: IParticipant
    takeover: bool = False


class IChatUser(Interface):
    """What a logged-in user can do: the avatar the realm hands out."""

    name = Attribute("The user's name.")

    def whoelse() -> list[RosterEntry]:
        """The other users online now."""

    def wholast(minutes: int) -> list[RosterEntry]:
        """The other users online in the last C{minutes}, online ones included."""

    def broadcast(text: str) -> Broadcasted:
        """Send C{text} to everyone online."""

    def broadcast_to(recipients: Sequence[str], text: str) -> Receipt | Deferred[Receipt]:
        """Send C{text} to C{recipients} (stored for those offline)."""

    def message(recipient: str, text: str) -> Receipt | Deferred[Receipt]:
        """Send C{text} to C{recipient} alone."""

    def set_intro(text: str) -> Deferred[None]:
        """Set the personal introduction others see."""

    def offline_messages() -> Deferred[list[StoredMessage]]:
        """The stored messages no session of the user has been handed yet."""

    def shown(messages: Sequence[StoredMessage]) -> Deferred[None]:
        """Forget stored messages the user has shown they got."""

    def history(count: int) -> Deferred[list[Delivery]]:
        """The user's last C{count} messages, oldest first."""

    def logout() -> None:
        """The session ended: the user is offline (here)."""

    def join(room: str) -> Deferred[RoomJoined]:
        """Join the room C{room}, making it if there is none."""

    def leave(room: str) -> Deferred[RoomLeft]:
        """Leave the room C{room}."""

    def rooms() -> RoomList:
        """Every room, and whether the user is in it."""

    def members(room: str) -> RoomMembers:
        """Who is in the room C{room}."""

    def room_message(room: str, text: str) -> Deferred[RoomReceipt]:
        """Send C{text} to the room C{room}, which the user is in; fires once it is kept."""

    def conversation_history(named: str, count: int, before: str | None) -> Deferred[ConversationHistory]:
        """A page of the conversation the user calls C{named} (C{everyone}, C{#room}, C{@user})."""

    def typing(named: str) -> None:
        """The user is typing in the conversation they call C{named}; the others in it may be told."""

    def search(text: str, words: Sequence[str], count: int, before: str | None) -> Deferred[SearchResults]:
        """What the user may see that has every one of C{words}, newest first."""

    def conversations() -> Deferred[Conversations]:
        """The user's conversations, with their unread counts."""

    def unread() -> Deferred[Unread]:
        """The rooms with messages the user has not read."""

    def mark_read(named: Sequence[str], until: float | None = None) -> Deferred[None]:
        """The user has read these conversations up to C{until} (now, if not given)."""


class IAdmin(IChatUser):
    """What an admin can do besides (the avatar of a user named by C{--admins})."""

    def sessions() -> Deferred[Sessions]:
        """Every session on every node that answers in time."""

    def kick(user: str, why: str) -> Kicked:
        """End C{user}'s sessions everywhere, telling them C{why}."""

    def announce(text: str) -> Announced:
        """Send C{text} to everyone online, from the server."""


class AlreadyOnline(Exception):
    """The user is logged in already; a second session is refused."""


class ILoginGuard(Interface):
    """
    What stops password guessing: failed logins counted per user and
    address, and blocks after too many.  A check is reserved before the
    password is hashed, so parallel guesses get no more checks than serial
    ones, on one node or across a cluster.
    """

    def blocked_for(name: str, host: str) -> float:
        """Seconds left in a block of C{name} from C{host}, or 0; never waits."""

    def begin(name: str, host: str) -> Deferred[bool]:
        """
        Reserve one password check of C{name} from C{host}: fires with
        whether it may happen now.  Every True is ended by exactly one of
        C{failed}, C{succeeded} or C{abandoned}.
        """

    def failed(name: str, host: str) -> Deferred[float]:
        """The check failed: fires with the seconds of the block it started, or 0."""

    def succeeded(name: str, host: str) -> None:
        """The password was right: earlier failures are forgotten."""

    def abandoned(name: str, host: str) -> None:
        """The check ended without an answer (the server busy, or broken)."""


class IRegistry(Interface):
    online = Attribute(
        "A read-only mapping of user name to L{IParticipant} for every user "
        "logged in to this server now (this node, in a cluster); iterating it "
        "must be cheap."
    )
    present = Attribute(
        "The names of every user logged in anywhere (on any node of a "
        "cluster), as a collection: membership and size are cheap, and never "
        "wait for another process."
    )

    def add(name: str, participant: IParticipant, now: float, takeover: bool = False) -> Deferred[None]:
        """
        Mark C{name} online here; fires once that is settled (at once for a
        single process; once the cluster agrees, for several).  With
        C{takeover}, a session of C{name} elsewhere is ended instead of
        refusing this one.

        The Deferred fails with L{AlreadyOnline} if C{name} is online
        already, or with L{Unavailable} if that cannot be decided now.
        """

    def remove(name: str, participant: IParticipant, now: float) -> None:
        """Mark C{name} offline, if C{participant} is the one online."""

    def audiences() -> tuple[tuple[IFormat, tuple[IParticipant, ...]], ...]:
        """
        Every online participant, grouped by format: pairs of a format and
        its participants, as tuples that stay valid while the registry
        changes (a broadcast renders once per group and iterates it without
        copying).
        """

    def seen_since(cutoff: float) -> Iterator[str]:
        """Users offline now who were online at or after C{cutoff}."""

    def last_seen(name: str) -> float | None:
        """When C{name} was last online, or None if never."""


@attrs.frozen
class Room:
    """A room as kept: its name as created (with its C{#}) and its members."""

    name: str
    members: frozenset[str] = frozenset()


@attrs.frozen
class ConversationState:
    """One conversation of a user, for their list of conversations."""

    #: Its key (L{chat.server.conversations}).
    key: str
    #: When its newest kept message was sent (0 if none is kept).
    last: float
    #: Messages from others newer than the user's read marker.
    unread: int


@attrs.frozen
class Snapshot:
    """The durable state the service needs in memory when it starts."""

    last_seen: dict[str, float]
    intros: dict[str, str]
    #: Every room, by key (C{#} and its name in lower case).
    rooms: dict[str, Room] = attrs.Factory(dict)


class StoreError(Exception):
    """The store cannot be opened or used; the message says why."""


class Unavailable(StoreError):
    """
    The store cannot be used now (the cluster's Redis is away, the disk is
    full or failing); nothing was done.  Sessions stay connected and say
    so; the store's L{health} says when it is back.
    """


class IStore(Interface):
    health = Attribute(
        "A L{chat.server.health.Health}: whether the store works now.  While it "
        "is down, calls fail with L{Unavailable} (at once where the store can "
        "tell), and the store finds out by itself when it is back; whoever "
        "has something to write later waits for that."
    )

    def snapshot() -> Snapshot:
        """The state loaded when the store was opened."""

    def save_offline(recipients: Sequence[str], delivery: Delivery) -> Deferred[None]:
        """Keep C{delivery} for each of C{recipients}; fires when durable."""

    def offline_for(name: str) -> Deferred[list[StoredMessage]]:
        """Messages kept for C{name}, oldest first (not removed: see C{ack})."""

    def ack(messages: Sequence[StoredMessage]) -> Deferred[None]:
        """Forget messages that have been shown to their recipient."""

    def set_intro(name: str, text: str) -> Deferred[None]:
        """Remember C{name}'s personal introduction."""

    def mark_seen(seen: Mapping[str, float]) -> Deferred[None]:
        """Remember when each user in C{seen} was last online."""

    def save_history(entries: Sequence[tuple[Delivery, str]]) -> Deferred[None]:
        """
        Keep each delivery once, in its conversation (a key of
        L{chat.server.conversations}), at most the store's limit per
        conversation, the oldest forgotten first; the members of a group's
        conversation have it among theirs from then on.
        """

    def history_for(name: str, count: int) -> Deferred[list[Delivery]]:
        """
        The last C{count} messages of C{name}'s conversations (everyone's
        among them) together, oldest first; a message kept in several of
        them (one to several users, as its sender sees it) once.
        """

    def conversation_history(
        key: str, count: int, before: str | None = None
    ) -> Deferred[tuple[list[Delivery], bool]]:
        """
        Up to C{count} messages of the conversation C{key}, oldest first:
        the newest ones, or those older than the message with id C{before};
        and whether older ones are kept.  None if C{before} is no longer
        kept: the answer is then empty.
        """

    def search(
        name: str, words: Sequence[str], count: int, before: str | None = None
    ) -> Deferred[tuple[list[tuple[Delivery, str]], bool] | None]:
        """
        Up to C{count} kept messages that C{name} may see (everyone's, their
        direct conversations, the rooms they are in) and that have every
        one of the folded C{words} (L{chat.server.search}), newest first,
        each with its conversation's key, each message once; older than the
        message with id C{before} if given; and whether there are more.
        None if C{before} is no longer kept.
        """

    def save_room(key: str, name: str) -> Deferred[bool]:
        """Create the room C{key}, shown as C{name}; fires with whether it was new (the first name stays)."""

    def join_room(key: str, user: str) -> Deferred[None]:
        """Make C{user} a member of the room C{key} (which exists); fires when durable."""

    def leave_room(key: str, user: str) -> Deferred[None]:
        """C{user} is no longer a member of the room C{key}; fires when durable."""

    def mark_read(name: str, marks: Mapping[str, float]) -> Deferred[None]:
        """C{name} has read each conversation up to the time given (never moved back)."""

    def conversations_of(name: str, since: float) -> Deferred[list[ConversationState]]:
        """
        Each conversation of C{name} that has a kept message or is a room they
        are in: everyone's, their rooms and their direct conversations.  Unread
        counts are of messages from others newer than C{name}'s read marker
        there, or, where they have none, than C{since}.
        """

    def save_token(name: str, digest: str, expires: float, now: float) -> Deferred[None]:
        """
        Keep a resume token for C{name} (its SHA-256, never the token),
        revoking the unused ones issued to C{name} before (used ones are kept
        until they expire, to tell a reused token from an expired one);
        fires when durable.
        """

    def revoke_tokens(name: str) -> Deferred[None]:
        """Forget every resume token of C{name}, used or not; fires when durable."""

    def use_token(digest: str, now: float) -> Deferred[tuple[str | None, str]]:
        """
        Use up the token with this digest: fires with the name it was
        issued to and C{"ok"}, or C{(None, "expired")} for one expired or
        unknown, or C{(name, "reused")} for one used before.
        """

    def close() -> Deferred[None]:
        """Finish pending work and release resources."""


class IPeerListener(Interface):
    """
    What a node is told by the other nodes of its cluster: implemented by
    the service, called by its L{IPeers}.
    """

    def restore(snapshot: Snapshot) -> None:
        """The shared state, as loaded after (re)connecting to the cluster."""

    def remote_presence(name: str, online: bool, at: float) -> None:
        """C{name} logged in or out on another node (or that node died)."""

    def remote_broadcasts(deliveries: Sequence[Delivery]) -> None:
        """Broadcasts to everyone, sent by a user of another node."""

    def remote_intro(name: str, text: str) -> None:
        """A user set their personal introduction on another node."""

    def inbox_ready(name: str) -> None:
        """The store holds messages for C{name}, a user of this node."""

    def inbox_arrived(name: str, messages: Sequence[StoredMessage]) -> None:
        """
        These C{messages} were put in the inbox of C{name}, a user of this
        node, by another node, which passed them on: shown without reading
        the inbox.
        """

    def evicted(name: str, participant: IParticipant) -> None:
        """
        C{participant}'s claim to C{name} was taken over (a resumed session
        elsewhere, or a login while this node was cut off): end it.
        """

    def local_sessions() -> list[SessionInfo]:
        """The logged-in sessions of this node, for an admin of another."""

    def remote_kick(name: str, by: str, why: str) -> None:
        """An admin of another node kicked C{name}: end their session here, if any."""

    def remote_announcement(announcement: Announcement) -> None:
        """An admin of another node spoke to everyone."""

    def remote_room_change(key: str, name: str, user: str, joined: bool) -> None:
        """A user of another node joined or left a room (made it, if it was new)."""

    def remote_typing(name: str, key: str) -> None:
        """C{name}, on another node, is typing in the conversation C{key}."""

    def remote_room_messages(deliveries: Sequence[Delivery]) -> None:
        """Messages to rooms sent by users of another node."""


class IPeers(Interface):
    """
    The other nodes of a cluster, as one node sees them.  What travels here
    is at most once (notifications, broadcasts to whoever is online now);
    anything acknowledged to a user is in the store first.
    """

    node = Attribute("This node's name in the cluster.")
    health = Attribute(
        "A L{chat.server.health.Health}: whether the other nodes can be reached "
        "now.  While they cannot, nothing sent to them arrives, and a receipt "
        "must not count their users."
    )

    def start(listener: IPeerListener) -> Deferred[None]:
        """Join the cluster; fails if its database cannot be reached at all."""

    def publish(deliveries: Sequence[Delivery]) -> None:
        """Hand broadcasts to everyone to the users of the other nodes."""

    def hand_over(names: Sequence[str], delivery: Delivery) -> Deferred[None]:
        """
        Keep C{delivery} for C{names}, users online on other nodes, as the
        store keeps offline messages, and pass it to their nodes; fires
        when durable.
        """

    def intro_changed(name: str, text: str) -> None:
        """Tell the other nodes of a new personal introduction."""

    def sessions() -> Deferred[tuple[list[SessionInfo], int]]:
        """
        The sessions of the other nodes, and how many nodes did not answer
        within a few seconds (or could not be asked).
        """

    def kick(name: str, by: str, why: str) -> None:
        """Ask every other node to end C{name}'s session."""

    def announce(announcement: Announcement) -> None:
        """Show C{announcement} to the users of the other nodes."""

    def room_changed(key: str, name: str, user: str, joined: bool) -> None:
        """Tell the other nodes that C{user} joined or left the room C{key} (kept in the store already)."""

    def typing(name: str, key: str) -> None:
        """Tell the other nodes that C{name} is typing in the conversation C{key} (not kept, best effort)."""

    def room_messages(deliveries: Sequence[Delivery]) -> None:
        """Hand messages to rooms to the members on the other nodes."""

    def stop() -> Deferred[None]:
        """Leave the cluster: release this node's users, stop its heartbeat."""
