"""
Login's realm and the avatar it hands out: L{ChatUser}, what a logged-in
user can do (L{IChatUser}), with their name filled in.

Joining happens in the realm, after the password was checked, so a refusal
for "already online" never tells anything to someone without the password.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred
from zope.interface import implementer

from chat.server import conversations
from chat.server.events import (
    Announced,
    Broadcasted,
    ConversationEntry,
    ConversationHistory,
    Conversations,
    Delivery,
    Kicked,
    Kind,
    Receipt,
    RoomJoined,
    RoomLeft,
    RoomList,
    RoomMembers,
    RoomReceipt,
    RosterEntry,
    SearchHit,
    SearchResults,
    Sessions,
    StoredMessage,
    Unread,
)
from chat.server.interfaces import ConversationState, IAdmin, IChatUser, IParticipant, Joining
from chat.server.rooms import NoSuchRoom, NotAMember, Rooms
from chat.server.service import ChatService, UnknownUser


class SelfMessage(Exception):
    """A private message addressed to its own sender."""


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
        return self.service.message(self.name, recipient, text)

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

    # --- rooms and conversations -------------------------------------------------

    def join(self, room: str) -> Deferred[RoomJoined]:
        return self.service.rooms.join(self.name, room)

    def leave(self, room: str) -> Deferred[RoomLeft]:
        key, name = self.service.rooms.find(room)
        if not self.service.rooms.is_member(key, self.name):
            raise NotAMember(name)
        return self.service.rooms.leave(self.name, key)

    def rooms(self) -> RoomList:
        return RoomList(self.service.rooms.listing(self.name))

    def members(self, room: str) -> RoomMembers:
        key, name = self.service.rooms.find(room)
        return RoomMembers(name, self.service.rooms.members(key))

    def room_message(self, room: str, text: str) -> Deferred[RoomReceipt]:
        key, _ = self.service.rooms.find(room)
        return self.service.rooms.send(self.name, key, text)

    def conversation(self, named: str) -> tuple[str, str]:
        """
        The key of the conversation the user calls C{named} (C{everyone},
        C{#room}, C{@user}) and what to call it.

        @raise chat.server.rooms.NoSuchRoom: a room that does not exist.
        @raise chat.server.service.UnknownUser: a user that does not exist.
        @raise SelfMessage: the user named themselves.
        """
        if named.startswith("#"):
            return self.service.rooms.find(named)
        key = conversations.from_client(named, self.name)
        if key is None:
            raise SelfMessage(named)
        if key == conversations.EVERYONE:
            return key, "everyone"
        other = named[1:]
        self.service.check_recipients(self.name, [other])
        return key, other

    def conversation_history(
        self, named: str, count: int, before: str | None
    ) -> Deferred[ConversationHistory]:
        key, name = self.conversation(named)
        shown = conversations.for_client(key, self.name)

        def page(found: tuple[list[Delivery], bool]) -> ConversationHistory:
            messages, more = found
            return ConversationHistory(shown, name, tuple(messages), more, self.name)

        return self.service.conversation_history(key, count, before).addCallback(page)

    def typing(self, named: str) -> None:
        try:
            key, _ = self.conversation(named)
        except (NoSuchRoom, UnknownUser, SelfMessage):
            return
        if conversations.is_room(key) and not self.service.rooms.is_member(key, self.name):
            return
        self.service.typists.typing(self.name, key)

    def search(
        self, text: str, words: Sequence[str], count: int, before: str | None
    ) -> Deferred[SearchResults]:
        rooms = self.service.rooms

        def shown(found: tuple[list[tuple[Delivery, str]], bool] | None) -> SearchResults:
            hits, more = found if found is not None else ([], False)
            return SearchResults(
                text,
                tuple(words),
                tuple(
                    SearchHit(conversations.for_client(key, self.name), self._called(key, rooms), delivery)
                    for delivery, key in hits
                ),
                more,
                self.name,
            )

        return self.service.search(self.name, words, count, before).addCallback(shown)

    def _called(self, key: str, rooms: Rooms) -> str:
        """What the user calls the conversation C{key}."""
        if key == conversations.EVERYONE:
            return "Everyone"
        if conversations.is_room(key):
            return rooms.name_of(key)
        return conversations.for_client(key, self.name)[1:]

    def conversations(self) -> Deferred[Conversations]:
        rooms = self.service.rooms

        def listed(states: list[ConversationState]) -> Conversations:
            if not any(state.key == conversations.EVERYONE for state in states):
                # Everyone's conversation is always listed, first, though nobody said anything yet.
                states = [ConversationState(conversations.EVERYONE, 0.0, 0), *states]
            entries = []
            for state in states:
                shown = conversations.for_client(state.key, self.name)
                if state.key == conversations.EVERYONE:
                    kind = "everyone"
                elif conversations.is_room(state.key):
                    if not rooms.is_member(state.key, self.name):
                        continue
                    kind = "room"
                else:
                    kind = "direct"
                name = self._called(state.key, rooms)
                entries.append(ConversationEntry(shown, kind, name, state.unread, state.last))
            entries.sort(key=lambda e: (e.kind != "everyone", -e.last, e.name))
            return Conversations(tuple(entries))

        return self.service.conversations_of(self.name).addCallback(listed)

    def unread(self) -> Deferred[Unread]:
        """The rooms with messages the user has not read."""

        def rooms_only(listed: Conversations) -> Unread:
            return Unread(
                tuple((c.name, c.unread) for c in listed.conversations if c.kind == "room" and c.unread)
            )

        return self.conversations().addCallback(rooms_only)

    def mark_read(self, named: Sequence[str], until: float | None = None) -> Deferred[None]:
        """The user has read these conversations up to C{until} (now, if not given or later)."""
        now = self.service.clock.seconds()
        at = now if until is None else min(until, now)
        marks = {}
        for name in named:
            key = conversations.from_client(name, self.name)
            if key is not None:
                marks[key] = at
        return self.service.store.mark_read(self.name, marks)


@implementer(IAdmin)
@attrs.define(slots=True, eq=False)
class AdminUser(ChatUser):
    """The avatar of a user named by C{--admins}: a user, and an admin."""

    def sessions(self) -> Deferred[Sessions]:
        return self.service.admin.sessions(self.name)

    def kick(self, user: str, why: str) -> Kicked:
        return self.service.admin.kick(self.name, user, why)

    def announce(self, text: str) -> Announced:
        return self.service.admin.announce(self.name, text)


@implementer(IRealm)
class ChatRealm:
    """Hands a logged-in user their L{ChatUser}; the mind says who receives their messages."""

    def __init__(self, service: ChatService) -> None:
        self.service = service

    def requestAvatar(
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> Deferred[tuple[Any, Any, Callable[[], None]]]:
        if IChatUser not in interfaces or not isinstance(avatarId, bytes):
            raise NotImplementedError("ChatRealm only provides IChatUser, to named users")
        if not isinstance(mind, Joining):
            raise NotImplementedError("ChatRealm needs a Joining mind: who receives the user's messages")
        name = avatarId.decode("utf-8")
        joined = self.service.join(name, mind.participant, mind.takeover)

        def avatar(_: object) -> tuple[Any, Any, Callable[[], None]]:
            kind = AdminUser if name in self.service.admin.admins else ChatUser
            user = kind(name, self.service, mind.participant)
            return IChatUser, user, user.logout

        return joined.addCallback(avatar)
