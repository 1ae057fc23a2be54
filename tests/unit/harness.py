"""
An in-memory chat server for unit tests: the real factory, protocol,
session, service, checker and guard, over StringTransports, with a
task.Clock for time.  Nothing here touches the network or the disk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from chat.server.auth import PlainSecret, Secret, UsersChecker
from chat.server.backends.memory import MemoryStore
from chat.server.build import ServerConfig, build_server
from chat.server.context import Settings
from chat.server.edges.tcp import ChatProtocol
from chat.server.events import Delivery, StoredMessage
from chat.server.interfaces import ConversationState, IStore, Snapshot, Unavailable


def capture_log(case: unittest.TestCase, namespace: str | None = None) -> list[dict[str, Any]]:
    """Every event logged (in C{namespace}, if given) from now until the end of the test."""
    events: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if namespace is None or event.get("log_namespace") == namespace:
            events.append(event)

    globalLogPublisher.addObserver(observe)  # type: ignore[arg-type]
    case.addCleanup(globalLogPublisher.removeObserver, observe)  # type: ignore[arg-type]
    return events


PASSWORDS = {
    "columbia": "116bway",
    "seas": "summerisover",
    "csee4119": "lotsofassignments",
    "foobar": "passpass",
    "google": "partofalphabet",
    "facebook": "wastetime",
}


@implementer(ICredentialsChecker)
class HeldChecker:
    """
    Wraps a checker so that each answer waits until the test releases it,
    as a password hash in a thread would.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, inner: UsersChecker) -> None:
        self.inner = inner
        self.waiting: list[tuple[Deferred[Any], Deferred[Any]]] = []

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        held: Deferred[Any] = Deferred()
        self.waiting.append((self.inner.requestAvatarId(credentials), held))
        return held

    def release(self) -> None:
        waiting, self.waiting = self.waiting, []
        for inner, held in waiting:
            inner.chainDeferred(held)


@implementer(IStore)
class HeldStore:
    """
    A MemoryStore whose every answer waits until the test releases it, to
    show what a session does while the disk is slow.
    """

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.health = self.inner.health
        self.waiting: list[tuple[Callable[[], Deferred[Any]], Deferred[Any]]] = []
        self.broken = False

    def _hold(self, call: Callable[[], Deferred[Any]]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.waiting.append((call, d))
        return d

    def release(self, error: Exception | None = None) -> None:
        """Answer what waits: with C{error} if given (or a broken disk's), else the real answer."""
        if error is None and self.broken:
            error = OSError("disk on fire")
        while self.waiting:
            waiting, self.waiting = self.waiting, []
            for call, d in waiting:
                if error is not None:
                    d.errback(Failure(error))
                else:
                    call().chainDeferred(d)

    def snapshot(self) -> Snapshot:
        return self.inner.snapshot()

    def save_offline(self, recipients: Sequence[str], delivery: Delivery) -> Deferred[None]:
        return self._hold(lambda: self.inner.save_offline(recipients, delivery))

    def offline_for(self, name: str) -> Deferred[list[StoredMessage]]:
        return self._hold(lambda: self.inner.offline_for(name))

    def ack(self, messages: Sequence[StoredMessage]) -> Deferred[None]:
        return self._hold(lambda: self.inner.ack(messages))

    def set_intro(self, name: str, text: str) -> Deferred[None]:
        return self._hold(lambda: self.inner.set_intro(name, text))

    def mark_seen(self, seen: Mapping[str, float]) -> Deferred[None]:
        return self.inner.mark_seen(seen)

    def save_history(self, entries: Sequence[tuple[Delivery, str]]) -> Deferred[None]:
        return self.inner.save_history(entries)

    def history_for(self, name: str, count: int) -> Deferred[list[Delivery]]:
        return self._hold(lambda: self.inner.history_for(name, count))

    def conversation_history(
        self, key: str, count: int, before: str | None = None
    ) -> Deferred[tuple[list[Delivery], bool]]:
        return self._hold(lambda: self.inner.conversation_history(key, count, before))

    def search(
        self, name: str, words: Sequence[str], count: int, before: str | None = None
    ) -> Deferred[tuple[list[tuple[Delivery, str]], bool] | None]:
        return self._hold(lambda: self.inner.search(name, words, count, before))

    def save_room(self, key: str, name: str) -> Deferred[bool]:
        return self._hold(lambda: self.inner.save_room(key, name))

    def join_room(self, key: str, user: str) -> Deferred[None]:
        return self._hold(lambda: self.inner.join_room(key, user))

    def leave_room(self, key: str, user: str) -> Deferred[None]:
        return self._hold(lambda: self.inner.leave_room(key, user))

    def mark_read(self, name: str, marks: Mapping[str, float]) -> Deferred[None]:
        return self.inner.mark_read(name, marks)

    def conversations_of(self, name: str, since: float) -> Deferred[list[ConversationState]]:
        return self._hold(lambda: self.inner.conversations_of(name, since))

    def save_token(self, name: str, digest: str, expires: float, now: float) -> Deferred[None]:
        return self.inner.save_token(name, digest, expires, now)

    def revoke_tokens(self, name: str) -> Deferred[None]:
        return self.inner.revoke_tokens(name)

    def use_token(self, digest: str, now: float) -> Deferred[tuple[str | None, str]]:
        return self.inner.use_token(digest, now)

    def close(self) -> Deferred[None]:
        return self.inner.close()


class OutageStore(MemoryStore):
    """
    A MemoryStore that can be taken down, as a cluster's Redis or a full
    disk is: while down its health says so and every call fails at once
    with Unavailable.  C{refused} names the calls made while it was down.
    """

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []

    @property
    def calls_while_down(self) -> int:
        return len(self.refused)

    def down(self, why: str = "connection refused") -> None:
        self.health.lost(why)

    def up(self) -> None:
        self.health.restored()

    def _refused(self, call: str) -> Deferred[Any] | None:
        if self.health.available:
            return None
        self.refused.append(call)
        return fail(Unavailable(f"{self.health.what} is unavailable"))

    def save_offline(self, recipients: Sequence[str], delivery: Delivery) -> Deferred[None]:
        return self._refused("save_offline") or super().save_offline(recipients, delivery)

    def offline_for(self, name: str) -> Deferred[list[StoredMessage]]:
        return self._refused("offline_for") or super().offline_for(name)

    def ack(self, messages: Sequence[StoredMessage]) -> Deferred[None]:
        return self._refused("ack") or super().ack(messages)

    def set_intro(self, name: str, text: str) -> Deferred[None]:
        return self._refused("set_intro") or super().set_intro(name, text)

    def mark_seen(self, seen: Mapping[str, float]) -> Deferred[None]:
        return self._refused("mark_seen") or super().mark_seen(seen)

    def save_history(self, entries: Sequence[tuple[Delivery, str]]) -> Deferred[None]:
        return self._refused("save_history") or super().save_history(entries)

    def history_for(self, name: str, count: int) -> Deferred[list[Delivery]]:
        return self._refused("history_for") or super().history_for(name, count)


class Connection:
    """One client connected to the harness server over a StringTransport."""

    def __init__(self, server: Harness, host: str, port: int) -> None:
        self.server = server
        address = IPv4Address("TCP", host, port)
        self.transport = StringTransport(peerAddress=address)
        protocol: Any = server.factory.buildProtocol(address)
        self.protocol = protocol
        protocol.makeConnection(self.transport)
        self.lost = False

    @property
    def session(self) -> Any:
        assert isinstance(self.protocol, ChatProtocol)
        return self.protocol.session

    def send(self, *lines: str) -> None:
        self.send_bytes("".join(line + "\r\n" for line in lines).encode("utf-8"))

    def send_bytes(self, data: bytes) -> None:
        """Deliver C{data} and let the rest of the reactor's turn happen."""
        self.protocol.dataReceived(data)
        self.server.clock.advance(0)

    def read(self) -> str:
        """Everything written since the last read (once the turn is over: a client reads after it)."""
        self.server.factory.turn.flush()
        text = self.transport.value().decode("utf-8")
        self.transport.clear()
        return text

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)

    def lose(self) -> None:
        """The TCP connection ends (either side closed it)."""
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(ConnectionDone()))


class Harness:
    """A whole server in memory, wired by L{build_server} as twistd's is."""

    def __init__(
        self,
        settings: Settings | None = None,
        store: IStore | None = None,
        users: dict[str, Secret] | None = None,
        max_attempts: int = 3,
        block_time: float = 60,
        max_per_host: int = 20,
        max_backlog: int = 256 * 1024,
        hold_logins: bool = False,
        tokens: bool = False,
        admins: frozenset[str] = frozenset(),
    ) -> None:
        """
        @param tokens: issue and take resume tokens, as a server with a web
            edge does.
        """
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = store if store is not None else MemoryStore()
        self.users = users or {n: PlainSecret(p.encode()) for n, p in PASSWORDS.items()}
        self.settings = settings or Settings()
        config = ServerConfig(
            users=self.users,
            max_attempts=max_attempts,
            block_time=block_time,
            settings=self.settings,
            max_connections_per_ip=max_per_host,
            descriptors=None,
            max_output_buffer=max_backlog,
            resume_tokens=tokens,
            admins=admins,
        )
        self.server = build_server(
            config, self.clock, store=self.store, wrap_checker=HeldChecker if hold_logins else None
        )
        self.service = self.server.service
        self.checker: Any = self.server.checker
        self.tokens = self.server.tokens
        self.guard = self.server.guard
        self.context = self.server.context
        self.connections = self.context.connections
        self.portal = self.context.portal
        self.factory = self.server.factory
        self._port = 40000

    def connect(self, host: str = "10.0.0.1") -> Connection:
        self._port += 1
        return Connection(self, host, self._port)

    def login(self, name: str, host: str = "10.0.0.1") -> Connection:
        conn = self.connect(host)
        conn.send(name, PASSWORDS[name])
        if isinstance(self.checker, HeldChecker):
            self.checker.release()
        if isinstance(self.store, HeldStore):
            self.store.release()
        text = conn.read()
        assert "Welcome" in text and text.endswith("Command: "), text
        return conn
