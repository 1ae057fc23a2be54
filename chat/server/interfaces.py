"""
The interfaces of the chat server, together, as Twisted keeps its own in
C{twisted.words.iwords}: what an edge, a participant, the registry and the
store must do, so each can be replaced (another edge, another backend)
without touching the others.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from chat.server.events import Delivery, StoredMessage


class IEdge(Interface):
    """
    The transport side of a session: how text reaches the user.

    An edge hands the session each line with L{Session.line_received}, and
    calls L{Session.input_done} once it has handed over all the lines of one
    read, so that what they sent goes out together.
    """

    peer_host = Attribute("The address the user connects from, as text.")

    def send_text(text: str, prompt: str | None = None) -> None:
        """
        Send one or more complete lines (separated by newlines), and then
        C{prompt} if one is given.
        """

    def send_prompt(prompt: str) -> None:
        """Send a prompt that is not followed by a newline."""

    def send_line(line: bytes) -> None:
        """Send a chat message already rendered as a line (L{Delivery.wire})."""

    def route_deliveries(participant: IParticipant | None) -> None:
        """
        From now on keep C{participant.receive} pointed at the cheapest way
        to get a rendered line to this user, as the edge's state changes;
        C{None} stops that.  Messages to a logged-in user are the server's
        hot path: this lets them reach the transport in one call.
        """

    def pause_input() -> None:
        """Deliver no more lines until C{resume_input}."""

    def resume_input() -> None:
        """Deliver lines again, starting with any held back."""

    def close() -> None:
        """Close once what was sent has been written."""


class IParticipant(Interface):
    """
    The receiving end of a logged-in user: a session over some transport.
    """

    receive = Attribute(
        """
        A callable taking one chat message, rendered once for every
        recipient (L{Delivery.wire}: UTF-8 bytes ending in CRLF), that shows
        it to the user without blocking.  An attribute rather than a method
        because it is called once per recipient of every message: a
        participant rebinds it as its state changes, down to the transport's
        own C{write} when nothing else needs doing.
        """
    )

    def goodbye(reason: str) -> Deferred[None]:
        """Tell the user C{reason}, end the session; fires once it is closed."""


class IChatUser(Interface):
    """What a logged-in user can do: the avatar the realm hands out."""

    name = Attribute("The user's name.")


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


@attrs.frozen
class Snapshot:
    """The durable state the service needs in memory when it starts."""

    last_seen: dict[str, float]
    intros: dict[str, str]


class StoreError(Exception):
    """The store cannot be opened or used; the message says why."""


class IStore(Interface):
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

    def close() -> Deferred[None]:
        """Finish pending work and release resources."""
