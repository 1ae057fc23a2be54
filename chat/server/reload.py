"""
Reading the users file again while the server runs (on SIGHUP), so an
operator adds a user, removes one or changes a password without a restart
that drops everyone.

The file is read in a thread (it is disk), parsed as at startup, and only a
file that parses whole replaces the users: one with a mistake keeps the
users loaded before and says, in one line, what is wrong and where.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from chat.server.auth import ResumeTokens, Secret, UsersChecker, UsersFileError, load_users
from chat.server.service import ChatService

log = Logger()


class ThreadedReactor(IReactorThreads, IReactorFromThreads):
    """A reactor with a thread pool (for typing only)."""


class UsersFile:
    """The users file of a running server, and what a new version of it changes."""

    def __init__(
        self,
        path: str,
        checker: UsersChecker,
        service: ChatService,
        tokens: ResumeTokens | None,
        reactor: ThreadedReactor,
    ) -> None:
        self.path = path
        self.checker = checker
        self.service = service
        self.tokens = tokens
        self._reactor = reactor
        self._waiters: list[Deferred[None]] = []
        self._again = False

    def reload(self) -> Deferred[None]:
        """
        Read the file again and apply it; fires when done (never fails).  A
        reload asked for while one runs reads the file once more after it,
        since the file may have changed again meanwhile.
        """
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        if len(self._waiters) == 1:
            Deferred.fromCoroutine(self._settle())
        else:
            self._again = True
        return d

    async def _settle(self) -> None:
        again = True
        while again:
            self._again = False
            try:
                await self._reload()
            except Exception:
                log.failure("reloading {path}", path=self.path)
            again = self._again
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    async def _reload(self) -> None:
        try:
            users = await deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), load_users, self.path
            )
        except UsersFileError as e:
            log.error(
                "{path} was not reloaded: {why}; the {count} users loaded before stay",
                path=self.path,
                why=str(e),
                count=len(self.checker.users),
            )
            return
        self._apply(users)

    def _apply(self, users: Mapping[str, Secret]) -> None:
        old = self.checker.users
        added = sorted(users.keys() - old.keys())
        removed = sorted(old.keys() - users.keys())
        changed = sorted(name for name in users.keys() & old.keys() if users[name] != old[name])
        self.checker.replace(users)
        self.service.replace_users(frozenset(users))
        log.info(
            "reloaded {path}: {count} users; added {added}, removed {removed}, new password for {changed}",
            path=self.path,
            count=len(users),
            added=", ".join(added) or "none",
            removed=", ".join(removed) or "none",
            changed=", ".join(changed) or "none",
        )
        if self.tokens is None:
            return
        # A session resumed with a token would outlive the password change
        # or the removal: none may.
        for name in (*removed, *changed):
            self.tokens.revoke(name).addErrback(self._not_revoked, name)

    def _not_revoked(self, f: Failure, name: str) -> None:
        log.warn("could not revoke the resume tokens of {user}: {why}", user=name, why=f.getErrorMessage())
