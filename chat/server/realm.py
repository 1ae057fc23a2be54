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

from chat.server.events import (
    Announced,
    Broadcasted,
    Delivery,
    Kicked,
    Kind,
    Receipt,
    RosterEntry,
    Sessions,
    StoredMessage,
)
from chat.server.interfaces import IAdmin, IChatUser, IParticipant, Joining
from chat.server.service import ChatService


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
