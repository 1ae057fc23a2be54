"""
"seas is typing…": who is told that someone is writing in a conversation.

A page (or a JSON client) says its user is typing in a conversation; the
others in that conversation who show such notices (the page: a terminal
never sees them) are told, on this node and, through the peers, on the
others.  A notice says only that the user typed lately: the client shows
it for a few seconds, and drops it when that user's message arrives or
they go offline.  So the server keeps no state of who is typing, only when
it last passed on a notice of each user in each conversation, to pass on
at most one every L{INTERVAL} seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from chat.server import conversations
from chat.server.events import Typing

if TYPE_CHECKING:
    from chat.server.service import ChatService

#: Seconds between two notices of one user in one conversation.
INTERVAL = 3.0

#: Pairs of (user, conversation) remembered before the old ones are forgotten.
REMEMBERED = 4096


class Typists:
    def __init__(self, service: ChatService) -> None:
        self._service = service
        self._last: dict[tuple[str, str], float] = {}

    def typing(self, name: str, key: str) -> None:
        """C{name} is typing in the conversation C{key}: tell the others, unless told lately."""
        now = self._service.clock.seconds()
        last = self._last.get((name, key))
        if last is not None and now - last < INTERVAL:
            return
        if len(self._last) >= REMEMBERED:
            self._last = {k: at for k, at in self._last.items() if now - at < INTERVAL}
        self._last[(name, key)] = now
        self.tell(name, key)
        peers = self._service.peers
        if peers is not None and peers.health.available:
            peers.typing(name, key)

    def tell(self, name: str, key: str) -> None:
        """Tell those online here who are in C{key} (and show such notices) that C{name} types."""
        online = self._service.registry.online
        # Everyone's conversation and a room are named alike by all: one
        # render per format; a direct conversation has one other person.
        rendered: dict[object, object] = {}
        for recipient in self._audience(name, key):
            participant = online.get(recipient)
            if participant is None or not participant.format.presence:
                continue
            fmt = participant.format
            payload = rendered.get(fmt)
            if payload is None:
                payload = fmt.event(Typing(name, conversations.for_client(key, recipient)))
                if not conversations.members(key):
                    rendered[fmt] = payload
            participant.deliver(payload)

    def _audience(self, name: str, key: str) -> Iterable[str]:
        if key == conversations.EVERYONE:
            others: Iterable[str] = self._service.registry.online
        elif conversations.is_room(key):
            others = self._service.rooms.members_of(key)
        else:
            others = conversations.members(key)
        return [other for other in others if other != name]
