"""
Named rooms: who is in each, and their messages to the members online here.

A room is made by the first C{join} of its name and lives on; anyone may
see and join any room.  Membership is kept by the store (every node of a
cluster reads the same), and each node keeps a copy in memory, told of
changes by the other nodes and reloaded with the rest of the shared state,
so sending to a room never waits on the store to know who is in it.

A message to a room reaches its members online here at once (rendered
once per format, like a broadcast), the other nodes' through L{IPeers},
and everyone else through the room's history, where the unread counts
find it.  Its receipt waits until that history is durable: the members
offline rely on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

from chat.server import conversations
from chat.server.commands import closest
from chat.server.events import (
    Delivery,
    Kind,
    RoomEntry,
    RoomJoined,
    RoomLeft,
    RoomReceipt,
)
from chat.server.fanout import deliver
from chat.server.interfaces import IFormat, Room, Unavailable

if TYPE_CHECKING:
    from chat.server.service import ChatService

log = Logger()

#: A room's name: C{#} and 1 to 32 letters, digits, C{-} or C{_}.
ROOM_NAME = re.compile(r"#[A-Za-z0-9_-]{1,32}")


def valid_room(name: str) -> bool:
    return ROOM_NAME.fullmatch(name) is not None


class NoSuchRoom(Exception):
    def __init__(self, name: str, suggestion: str | None) -> None:
        super().__init__(name)
        self.name = name
        self.suggestion = suggestion


class NotAMember(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@attrs.define
class _Room:
    name: str
    members: set[str] = attrs.Factory(set)


class Rooms:
    def __init__(self, service: ChatService, rooms: Mapping[str, Room]) -> None:
        self._service = service
        self._rooms: dict[str, _Room] = {}
        self.restore(rooms)

    def restore(self, rooms: Mapping[str, Room]) -> None:
        """The rooms as the store has them (at startup, and when a cluster reloads its view)."""
        self._rooms = {key: _Room(room.name, set(room.members)) for key, room in rooms.items()}

    # --- looking up -----------------------------------------------------------------

    def find(self, name: str) -> tuple[str, str]:
        """
        The key and the name as created of the room C{name}.

        @raise NoSuchRoom: there is none; with the closest room's name.
        """
        key = conversations.room(name)
        room = self._rooms.get(key)
        if room is None:
            hint = closest(key, sorted(self._rooms))
            raise NoSuchRoom(name, self._rooms[hint].name if hint is not None else None)
        return key, room.name

    def listing(self, user: str) -> tuple[RoomEntry, ...]:
        return tuple(
            RoomEntry(room.name, len(room.members), user in room.members)
            for _, room in sorted(self._rooms.items())
        )

    def members(self, key: str) -> tuple[tuple[str, bool], ...]:
        present = self._service.registry.present
        return tuple((name, name in present) for name in sorted(self._rooms[key].members))

    def members_of(self, key: str) -> frozenset[str]:
        """The members of the room C{key} (none if there is no such room)."""
        room = self._rooms.get(key)
        return frozenset(room.members) if room is not None else frozenset()

    def of(self, user: str) -> list[str]:
        """The keys of the rooms C{user} is in."""
        return [key for key, room in self._rooms.items() if user in room.members]

    def name_of(self, key: str) -> str:
        room = self._rooms.get(key)
        return room.name if room is not None else key

    def is_member(self, key: str, user: str) -> bool:
        room = self._rooms.get(key)
        return room is not None and user in room.members

    # --- changing -----------------------------------------------------------------

    def join(self, user: str, name: str) -> Deferred[RoomJoined]:
        """Join the room C{name}, making it if there is none; fires once that is durable."""
        service = self._service
        store = service.store
        if not store.health.available:
            store.health.refused()
            return fail(Unavailable(f"{store.health.what} is unavailable"))
        key = conversations.room(name)
        now = service.clock.seconds()

        def made(created: bool) -> Deferred[Any]:
            if not created and key not in self._rooms:
                # Made on another node, whose word of it has not come yet:
                # its name is the one it was made with, not as typed here,
                # and its members are those the store has.
                named = getattr(store, "room_name", None)
                if named is not None:
                    found = getattr(store, "room_members", None)

                    def members(kept: str | None) -> Deferred[Any]:
                        if found is None:
                            return joining(created, kept or name)
                        return found(key).addCallback(lambda them: joining(created, kept or name, them))

                    return named(key).addCallback(members)
            return joining(created, name)

        def joining(created: bool, name: str, members: Iterable[str] = ()) -> Deferred[Any]:
            room = self._rooms.setdefault(key, _Room(name))
            room.members.update(members)
            if created:
                room.name = name
                log.info("{user} made the room {room}", user=user, room=name)
            membership = store.join_room(key, user)
            # What was said before joining is not news to them.
            store.mark_read(user, {key: now}).addErrback(lambda f: None)
            return membership.addCallback(lambda _: (created, room))

        def joined(result: tuple[bool, _Room]) -> RoomJoined:
            created, room = result
            room.members.add(user)
            if service.peers is not None:
                service.peers.room_changed(key, room.name, user, True)
            return RoomJoined(room.name, created, len(room.members))

        return store.save_room(key, name).addCallback(made).addCallback(joined)

    def leave(self, user: str, key: str) -> Deferred[RoomLeft]:
        service = self._service
        store = service.store
        if not store.health.available:
            store.health.refused()
            return fail(Unavailable(f"{store.health.what} is unavailable"))
        room = self._rooms[key]

        def left(_: object) -> RoomLeft:
            room.members.discard(user)
            if service.peers is not None:
                service.peers.room_changed(key, room.name, user, False)
            return RoomLeft(room.name)

        return store.leave_room(key, user).addCallback(left)

    def changed(self, key: str, name: str, user: str, joined: bool) -> None:
        """Another node's user joined or left (making the room if it was new)."""
        room = self._rooms.setdefault(key, _Room(name))
        if joined:
            room.members.add(user)
        else:
            room.members.discard(user)

    # --- messages -----------------------------------------------------------------

    def send(self, sender: str, key: str, text: str) -> Deferred[RoomReceipt]:
        """
        C{text} from C{sender} to the room C{key}: to its members online
        here now, to the other nodes', and into its history, whose write
        the receipt waits for.

        @raise NotAMember: C{sender} is not in the room.
        """
        service = self._service
        room = self._rooms[key]
        if sender not in room.members:
            raise NotAMember(room.name)
        store = service.store
        if not store.health.available:
            store.health.refused()
            return fail(Unavailable(f"{store.health.what} is unavailable"))
        delivery = Delivery(sender, text, Kind.ROOM, service.clock.seconds(), service.new_id(), (), room.name)
        service.counters.messages[Kind.ROOM.value] += 1
        self.show(delivery, sender)
        if service.peers is not None:
            service.peers.room_messages([delivery])
        present = service.registry.present
        online = sum(1 for name in room.members if name != sender and name in present)
        receipt = RoomReceipt(room.name, online, len(room.members), delivery.id, delivery.sent_at)
        return store.save_history([(delivery, key)]).addCallback(lambda _: receipt)

    def show(self, delivery: Delivery, sender: str | None = None) -> None:
        """C{delivery} to the members of its room online here, but C{sender}."""
        service = self._service
        room = self._rooms.get(conversations.room(delivery.room))
        if room is None:
            return
        # After what was sent before it, as a broadcast would be.
        service.flush()
        online = service.registry.online
        payloads: dict[IFormat, Any] = {}
        shown = 0
        for name in room.members:
            if name == sender:
                continue
            participant = online.get(name)
            if participant is None:
                continue
            fmt = participant.format
            payload = payloads.get(fmt)
            if payload is None:
                payload = payloads[fmt] = fmt.delivery(delivery)
            deliver(participant, payload)
            shown += 1
        service.counters.deliveries += shown

    def remote(self, deliveries: list[Delivery]) -> None:
        """Messages to rooms sent on other nodes."""
        for delivery in deliveries:
            self.show(delivery)
