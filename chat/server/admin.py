"""
What admins may see and do, across every node: list the sessions, end a
user's sessions (C{kick}), and speak to everyone as the server
(C{announce}).

Who is an admin is the server's option (C{--admins}); the realm hands an
admin an avatar that can reach this (L{chat.server.realm.AdminUser}), and
the command table hides these commands from everyone else.  Each action is
one line of the log saying who did what to whom.  In a cluster the other
nodes are asked through L{IPeers}: at most once, like everything there,
which is why C{sessions} says how many nodes did not answer in time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from chat.server.events import (
    Announced,
    Announcement,
    Goodbye,
    Kicked,
    Reason,
    SessionInfo,
    Sessions,
)
from chat.server.fanout import deliver

if TYPE_CHECKING:
    from chat.server.service import ChatService

log = Logger()


class Admin:
    def __init__(self, service: ChatService, admins: frozenset[str] = frozenset()) -> None:
        self._service = service
        #: The users who may use the admins' commands.
        self.admins = admins

    # --- asked by an admin here -------------------------------------------------

    def sessions(self, by: str) -> Deferred[Sessions]:
        """Every session on every node that answers in time."""
        service = self._service
        here = self.local_sessions()
        log.info("admin {admin} listed the sessions", admin=by, action="sessions")
        peers = service.peers
        if peers is None:
            return succeed(Sessions(tuple(here), service.clock.seconds()))

        def gathered(answer: tuple[list[SessionInfo], int]) -> Sessions:
            elsewhere, unanswered = answer
            every = sorted([*here, *elsewhere], key=lambda s: (s.user, s.node or ""))
            return Sessions(tuple(every), service.clock.seconds(), unanswered)

        return peers.sessions().addCallback(gathered)

    def kick(self, by: str, user: str, why: str) -> Kicked:
        """
        End C{user}'s session here, or ask the other nodes to; either way
        their resume tokens are revoked, so a page cannot quietly log them
        back in.

        @raise chat.server.service.UnknownUser: C{user} is no user.
        """
        service = self._service
        service.check_recipients(by, [user])
        here = self._end(user, by, why)
        elsewhere = not here and user in service.registry.present
        if service.peers is not None:
            service.peers.kick(user, by, why)
        service.store.revoke_tokens(user).addErrback(self._not_revoked, user)
        log.info(
            "admin {admin} kicked {user} ({where}){because}",
            admin=by,
            user=user,
            reason=why,
            action="kick",
            where="here" if here else ("on another node" if elsewhere else "not online"),
            because=f": {why}" if why else "",
        )
        return Kicked(user, here, elsewhere)

    def announce(self, by: str, text: str) -> Announced:
        """C{text} to everyone online, on every edge and node, from the server."""
        service = self._service
        announcement = Announcement(text, service.clock.seconds(), by)
        service.counters.messages["announcement"] += 1
        here = self._show(announcement)
        if service.peers is not None:
            service.peers.announce(announcement)
        log.info("admin {admin} announced: {text}", admin=by, text=text, action="announce")
        return Announced(here, service.peers is not None)

    # --- asked by the other nodes ------------------------------------------------

    def local_sessions(self) -> list[SessionInfo]:
        """The sessions of this node, logged in ones only."""
        found = (participant.about() for participant in self._service.registry.online.values())
        return sorted((info for info in found if info is not None), key=lambda s: s.user)

    def remote_kick(self, user: str, by: str, why: str) -> None:
        if self._end(user, by, why):
            log.info("ended {user}'s session: kicked by {admin}", user=user, admin=by, reason=why)

    def remote_announcement(self, announcement: Announcement) -> None:
        self._show(announcement)

    # --- here ----------------------------------------------------------------------

    def _end(self, user: str, by: str, why: str) -> int:
        participant = self._service.registry.online.get(user)
        if participant is None:
            return 0
        participant.goodbye(Goodbye(Reason.KICKED, user, by=by, why=why))
        return 1

    def _show(self, announcement: Announcement) -> int:
        """Deliver C{announcement} to everyone online here, rendered once per format."""
        service = self._service
        # After what was sent before it, as a broadcast would be.
        service.flush()
        shown = 0
        for fmt, members in service.registry.audiences():
            payload = fmt.event(announcement)
            for participant in members:
                deliver(participant, payload)
            shown += len(members)
        service.counters.deliveries += shown
        return shown

    def _not_revoked(self, f: Failure, user: str) -> None:
        self._service.quiet.failure(
            "revoking resume tokens", "could not revoke the resume tokens of {user}", f, user=user
        )
