"""
Wiring a server, once: from a L{ServerConfig} (made from twistd's options,
or by a test) to the service, the portal, the guard, the shared context and
the edges' factories.  The twistd plugin (L{chat.server.tap}) adds the
listeners, signals and systemd around it; the unit tests' harness uses it
as it is, over in-memory transports, so what they test is wired as the
server is.

A new edge is a module under C{chat/server/edges/} with a factory made
here from the L{ServerContext}; a new backend, a module under
C{chat/server/backends/} chosen here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint

from chat.server.auth import LoginGuard, ResumeTokens, Secret, TokenChecker, UsersChecker
from chat.server.backends.memory import MemoryStore
from chat.server.backends.redis.cluster import RedisCluster, channels, check_durability
from chat.server.backends.redis.guard import RedisLoginGuard
from chat.server.backends.redis.link import RedisLink, Subscriber
from chat.server.backends.redis.store import RedisStore
from chat.server.backends.sqlite import SQLiteStore
from chat.server.context import ServerContext, Settings
from chat.server.edges.gathered import TurnWrites
from chat.server.edges.tcp import ChatFactory
from chat.server.edges.web import ChatSite, make_site
from chat.server.interfaces import ILoginGuard, IStore
from chat.server.limits import ConnectionCount
from chat.server.metrics import Listening, Metrics
from chat.server.realm import ChatRealm
from chat.server.reload import UsersFile
from chat.server.service import ChatService


@attrs.frozen
class RedisConfig:
    """Where a node's cluster is, and what the node is called in it."""

    endpoint: str
    node: str
    password: str | None = None
    db: int = 0
    node_timeout: float = 15.0


@attrs.frozen
class ServerConfig:
    """What a server is made of."""

    users: Mapping[str, Secret]
    #: The users file, read again on SIGHUP; None: never read again.
    users_path: str | None = None
    #: An SQLite file, or ":memory:" (nothing kept); ignored with C{redis}.
    database: str = ":memory:"
    redis: RedisConfig | None = None
    history: int = 200
    max_attempts: int = 3
    block_time: float = 60.0
    settings: Settings = attrs.field(factory=Settings)
    max_connections_per_ip: int = 20
    #: Descriptors to plan connections for: C{"rlimit"} reads the process's
    #: limit; None plans for none (a test's memory reactor).
    descriptors: Any = "rlimit"
    max_output_buffer: int = 256 * 1024
    web_origins: tuple[str, ...] = ()
    web_hosts: tuple[str, ...] = ()
    #: Whether resume tokens are issued (pages reconnect with them).
    resume_tokens: bool = True
    #: The users who may use the admins' commands.
    admins: frozenset[str] = frozenset()


@attrs.define
class Server:
    """One server's parts, wired."""

    config: ServerConfig
    service: ChatService
    guard: ILoginGuard
    checker: ICredentialsChecker
    tokens: ResumeTokens | None
    context: ServerContext
    factory: ChatFactory
    users_file: UsersFile | None

    def site(self) -> ChatSite:
        """The web edge's site, on the same context (made when asked: a server may have none)."""
        config = self.config
        return make_site(self.context, config.web_origins, config.max_output_buffer, hosts=config.web_hosts)

    def metrics(self, listeners: Sequence[Listening] = (), joined: Deferred[None] | None = None) -> Metrics:
        """
        What the metrics port serves (C{--metrics}), reading this server;
        ready while C{listeners} listen and, in a cluster, once C{joined} fired.
        """
        return Metrics(self.service, self.context.clock, listeners, joined)


def build_server(
    config: ServerConfig,
    reactor: Any,
    *,
    store: IStore | None = None,
    wrap_checker: Callable[[UsersChecker], ICredentialsChecker] | None = None,
) -> Server:
    """
    Everything a server needs but its listeners.  C{store} replaces the
    one the config names (a test's); C{wrap_checker} wraps the password
    checker (a test's that holds answers back).

    @raise chat.server.interfaces.StoreError: the database cannot be used.
    """
    guard: ILoginGuard
    # The turns whose writes to TCP clients gather, read from a client or from Redis.
    turn = TurnWrites(reactor)
    if config.redis is None:
        if store is None:
            store = open_store(config.database, reactor, config.history)
        service = ChatService(
            frozenset(config.users), store, reactor, history=config.history, admins=config.admins
        )
        guard = LoginGuard(reactor, config.max_attempts, config.block_time)
    else:
        service, guard = _node(config, config.redis, reactor, turn)
    users = UsersChecker(config.users, reactor)
    checker: ICredentialsChecker = wrap_checker(users) if wrap_checker is not None else users
    tokens = ResumeTokens(service.store, reactor) if config.resume_tokens else None
    checkers = [checker] if tokens is None else [checker, TokenChecker(tokens)]
    portal = Portal(ChatRealm(service), checkers)
    users_file = (
        UsersFile(config.users_path, users, service, tokens, reactor)
        if config.users_path is not None
        else None
    )
    settings = config.settings
    connections = ConnectionCount(config.max_connections_per_ip, settings.exempt, config.descriptors)
    context = ServerContext(service, portal, guard, reactor, settings, connections, tokens)
    factory = ChatFactory(context, max_backlog=config.max_output_buffer, turn=turn)
    return Server(config, service, guard, checker, tokens, context, factory, users_file)


def open_store(path: str, reactor: Any, history: int = 200) -> IStore:
    if path == ":memory:":
        return MemoryStore(history)
    return SQLiteStore(path, reactor, history)


def _node(
    config: ServerConfig, redis: RedisConfig, reactor: Any, turn: TurnWrites
) -> tuple[ChatService, ILoginGuard]:
    """The service of one node of a cluster on Redis, and its login guard."""
    endpoint: IStreamClientEndpoint = clientFromString(reactor, redis.endpoint)
    described = f"Redis at {redis.endpoint}"
    link = RedisLink(endpoint, reactor, redis.password, redis.db, described)
    # The node's three connections to Redis are down and back together: the
    # others join the group the store's link made (its health is "Redis at ...").
    group = link.group
    store = RedisStore(link, config.history)
    control = RedisLink(endpoint, reactor, redis.password, redis.db, described + " (cluster)", group)

    def wants_waitaof(yes: bool) -> None:
        store.waitaof = yes

    link.on_connect(lambda: check_durability(link, wants_waitaof))
    guard = RedisLoginGuard(control, reactor, config.max_attempts, config.block_time)
    subscriber = Subscriber(
        endpoint,
        reactor,
        channels(redis.node),
        None,
        redis.password,
        redis.db,
        described + " (pub/sub)",
        group,
    )
    cluster = RedisCluster(
        redis.node,
        control,
        subscriber,
        reactor,
        store,
        redis.node_timeout,
        on_guard=guard.remote,
    )
    for each in (link, control, subscriber):
        each.on_read = turn.begin
    users = frozenset(config.users)
    service = ChatService(
        users, store, reactor, registry=cluster, peers=cluster, history=config.history, admins=config.admins
    )
    return service, guard
