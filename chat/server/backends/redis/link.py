"""
A node's connections to Redis, kept alive together.

Each L{RedisLink} is one connection: Redis answers a connection's commands
in order, so a write is always seen by the reads sent after it (an inbox
entry removed is never read again), and a C{WAITAOF} waits for the writes
before it.  A command sent without a connection fails at once with
L{Unavailable}: a user is told in one line instead of waiting for as long
as Redis is away.  The protocol itself is in L{chat.server.backends.redis.resp}.

A node has three connections (the store's, the cluster's, pub/sub), and
they are useful only together: a login needs the cluster's, a message the
store's.  So they belong to one L{LinkGroup}, which owns what they share:
one L{Health} (the outage is said once, and its end once, when every
connection is back and has recovered), and one L{Backoff}.  When any
connection is lost, every connection that is down is tried again at once
after the backoff's delay, and as soon as one gets through the others
still down try again too, so they come back together.  Between attempts
nothing runs but the one timer of the next attempt, and an attempt that
fails is not logged: an outage of any length costs a few lines and no CPU.

A connection that dies without a FIN, or a Redis that stops answering
(C{SIGSTOP}, a swapped-out host), is noticed by a C{PING} every
L{PING_INTERVAL} seconds and a reply timeout: a connection whose oldest
unanswered command is older than L{REPLY_TIMEOUT} is dropped, which fails
everything outstanding on it with L{Unavailable}.
"""

from __future__ import annotations

import hashlib
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

from twisted.internet.defer import Deferred, FirstError, fail, gatherResults, succeed
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocol,
    IReactorTime,
    IStreamClientEndpoint,
    ISystemHandle,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from chat.server import twisted_internals
from chat.server.backends.redis.resp import Parser, ProtocolError, RedisError, encode
from chat.server.health import Backoff, Health
from chat.server.interfaces import Unavailable
from chat.server.quietlog import QuietLog

__all__ = [
    "PING_INTERVAL",
    "REPLY_TIMEOUT",
    "SEND_LIMIT",
    "LinkGroup",
    "RedisError",
    "RedisLink",
    "Script",
    "Subscriber",
    "Unavailable",
]

log = Logger()

#: Seconds between pings of an idle connection.
PING_INTERVAL = 5.0
#: Seconds the oldest unanswered command may wait before the connection is
#: given up as dead (and made again).
REPLY_TIMEOUT = 10.0
#: Bytes handed to the kernel at once on a connection to Redis.
SEND_LIMIT = 4 * 1024 * 1024


def _widen(transport: ITransport) -> None:
    """
    Let a connection to Redis send as much at once as the kernel takes.

    Twisted hands the kernel at most 128 KiB per connection per turn of the
    reactor; a busy node's turn can last a quarter of a second, and its
    writes to Redis (history, inboxes) then queue faster than they leave.

    That limit is a name Twisted does not publish (fenced in
    L{chat.server.twisted_internals}).  A transport without it (TLS,
    another reactor) keeps its own limit: slower under load, nothing worse.
    """
    twisted_internals.raise_send_limit(transport, SEND_LIMIT)
    handle = ISystemHandle(transport, None)
    if handle is None:
        return
    try:
        # And a kernel buffer to match (as far as net.core.wmem_max allows):
        # Twisted empties it once per turn.
        cast(socket.socket, handle.getHandle()).setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_LIMIT)
    except (AttributeError, OSError):
        pass


class _Connection(Protocol):
    """
    One connection to Redis: commands out, replies matched to them in the
    order they were sent.  Everything that arrived in one read is parsed
    and answered in one pass, without a turn of the reactor per reply.
    """

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._clock = link.clock
        self._timeout = link.reply_timeout
        self._parser = Parser()
        #: Each command sent and not yet answered: its Deferred, and when it was sent.
        self._waiting: deque[tuple[Deferred[Any], float]] = deque()
        #: Looks at the oldest unanswered command once it may be late.
        self._watchdog: IDelayedCall | None = None
        self._pinger: IDelayedCall | None = None
        self._closing: IDelayedCall | None = None
        self._closed: list[Deferred[None]] = []
        #: The transport, as a TCP or unix connection's (it can abort).
        self._out: ITCPTransport = cast(ITCPTransport, None)
        #: Why the connection ended, if this side ended it.
        self._why: str | None = None
        self.open = False

    def connectionMade(self) -> None:
        self.open = True
        self._out = cast(ITCPTransport, self.transport)
        _widen(self._out)
        self._link._opened(self)

    def send(self, *args: Any) -> Deferred[Any]:
        """Send one command; fires with its reply, fails with L{RedisError} or L{Unavailable}."""
        if not self.open:
            return fail(Unavailable(f"{self._link.description}: not connected"))
        d: Deferred[Any] = Deferred()
        self._waiting.append((d, self._clock.seconds()))
        if self._watchdog is None:
            self._watchdog = self._clock.callLater(self._timeout, self._check)
        self._out.write(encode(*args))
        return d

    def dataReceived(self, data: bytes) -> None:
        on_read = self._link.on_read
        if on_read is not None:
            on_read()
        try:
            replies = self._parser.feed(data)
        except ProtocolError as e:
            self.drop(f"Redis sent what is not its protocol: {e}")
            return
        waiting = self._waiting
        for reply in replies:
            if not waiting:
                self.drop("Redis sent a reply to no command")
                return
            d = waiting.popleft()[0]
            if isinstance(reply, RedisError):
                d.errback(reply)
            else:
                d.callback(reply)

    def _check(self) -> None:
        self._watchdog = None
        if not self._waiting or not self.open:
            return
        late = self._clock.seconds() - self._waiting[0][1]
        if late >= self._timeout:
            self.drop(f"no reply in {self._timeout:g} s")
        else:
            self._watchdog = self._clock.callLater(self._timeout - late, self._check)

    def start_pinging(self, interval: float) -> None:
        """A C{PING} every C{interval} seconds while nothing else waits for a reply."""

        def ping() -> None:
            self._pinger = self._clock.callLater(interval, ping)
            if not self._waiting:
                self.send("PING").addErrback(lambda f: None)

        self._pinger = self._clock.callLater(interval, ping)

    def drop(self, why: str) -> None:
        """Abort the connection, saying C{why} (the first reason given is kept)."""
        if self._why is None:
            self._why = why
        if self.open:
            self._out.abortConnection()

    def close(self) -> Deferred[None]:
        """Close after what was written; fires once closed (aborted if Redis does not read it)."""
        if not self.open:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed.append(d)
        if self._closing is None:
            if self._why is None:
                self._why = "closed by this node"
            self._out.loseConnection()
            self._closing = self._clock.callLater(self._timeout, self._out.abortConnection)
        return d

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.open = False
        for call in (self._watchdog, self._pinger, self._closing):
            if call is not None and call.active():
                call.cancel()
        self._watchdog = self._pinger = self._closing = None
        why = self._why or f"the connection was lost ({reason.getErrorMessage()})"
        # The link first, so that whoever is told of a failed command below
        # finds it disconnected already.
        self._link._closed(self, why)
        waiting, self._waiting = self._waiting, deque()
        for d, _ in waiting:
            d.errback(Unavailable(f"{self._link.description}: {why}"))
        closed, self._closed = self._closed, []
        for d in closed:
            d.callback(None)


class _Subscription(_Connection):
    """
    A connection in pub/sub mode: besides the replies to its commands, it
    receives messages, which go to the link's receiver.
    """

    #: Confirmations of the last C{SUBSCRIBE} still to come before its reply
    #: (Redis confirms each channel on its own).
    _confirmations = 0

    def subscribe(self, channels: Sequence[str]) -> Deferred[Any]:
        self._confirmations = len(channels)
        return self.send("SUBSCRIBE", *channels)

    def dataReceived(self, data: bytes) -> None:
        on_read = self._link.on_read
        if on_read is not None:
            on_read()
        try:
            replies = self._parser.feed(data)
        except ProtocolError as e:
            self.drop(f"Redis sent what is not its protocol: {e}")
            return
        link = cast(Subscriber, self._link)
        waiting = self._waiting
        for reply in replies:
            if type(reply) is list and reply:
                kind = reply[0]
                if kind == "message" and len(reply) == 3:
                    link.message(reply[1], reply[2])
                    continue
                if kind == "subscribe" and self._confirmations > 1:
                    self._confirmations -= 1
                    continue
            if not waiting:
                self.drop("Redis sent a reply to no command")
                return
            self._confirmations = 0
            d = waiting.popleft()[0]
            if isinstance(reply, RedisError):
                d.errback(reply)
            else:
                d.callback(reply)


class _Factory(Factory):
    noisy = False  # no line per connection attempt

    def __init__(self, link: RedisLink) -> None:
        self._link = link

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        conn = self._link._protocol(self._link)
        conn.factory = self
        return conn


class Script:
    """
    A Lua script, run by its SHA1.  The link loads every script on each new
    connection before anything else is sent on it, and Redis runs a
    connection's commands in order, so a script call is never overtaken by
    a command sent after it (as it would be if the first call waited for
    a C{SCRIPT LOAD} reply).
    """

    def __init__(self, link: RedisLink, source: str) -> None:
        self._link = link
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Deferred[Any]:
        d = self._link.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        return d.addErrback(self._again, keys, args)

    def _again(self, f: Failure, keys: Sequence[str], args: Sequence[Any]) -> Deferred[Any] | Failure:
        # Only if someone flushed the script cache by hand.
        if f.check(RedisError) and str(f.value).startswith("NOSCRIPT"):
            return self._link.execute("EVAL", self.source, len(keys), *keys, *args)
        return f


def _first_error(f: Failure) -> Failure:
    error = f.value
    return error.subFailure if isinstance(error, FirstError) else f


class RedisLink:
    """
    One connection of the node to Redis, made again whenever it is lost
    (when, is its L{LinkGroup}'s to decide).

    C{on_connect} hooks run on every new connection, once it is
    authenticated and before any command of the node's own goes over it:
    the cluster uses them to announce its users again after Redis comes
    back.  C{reply_timeout} and C{ping_interval} are there for tests.
    """

    _protocol: type[_Connection] = _Connection

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        clock: IReactorTime,
        password: str | None = None,
        db: int = 0,
        description: str = "redis",
        group: LinkGroup | None = None,
        *,
        reply_timeout: float = REPLY_TIMEOUT,
        ping_interval: float = PING_INTERVAL,
    ) -> None:
        self._endpoint = endpoint
        self.clock = clock
        self._password = password
        self._db = db
        self.description = description
        self.reply_timeout = reply_timeout
        self.ping_interval = ping_interval
        #: The connections that come and go with this one (just this one if not given).
        self.group = group if group is not None else LinkGroup(description, clock)
        #: Called as replies arrive, before any is handled: what they make
        #: the server write to its clients can then gather until the end of
        #: the turn (L{chat.server.edges.gathered.TurnWrites}), one send
        #: per client for the many replies of one read.
        self.on_read: Callable[[], None] | None = None
        self._factory = _Factory(self)
        self._hooks: list[Callable[[], Deferred[Any] | None]] = []
        self._lost_hooks: list[Callable[[], None]] = []
        self._scripts: list[Script] = []
        #: The connection commands go over: its handshake is done.
        self._conn: _Connection | None = None
        #: The connection being made or used, from when it opens.
        self._open: _Connection | None = None
        #: The attempt in flight (connecting, shaking hands), if any.
        self._attempt: Deferred[_Connection] | None = None
        #: Whether it should be connected: from its first connection to stop().
        self._wanted = False
        #: Whether the hooks have run on the connection.
        self._ready = False
        self._first: Deferred[None] | None = None
        self.group._add(self)

    def __repr__(self) -> str:
        return f"<RedisLink {self.description}: {'connected' if self.connected else 'not connected'}>"

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def on_connect(self, hook: Callable[[], Deferred[Any] | None]) -> None:
        """Run C{hook} after each connection is made (and authenticated)."""
        self._hooks.append(hook)

    def on_lost(self, hook: Callable[[], None]) -> None:
        self._lost_hooks.append(hook)

    def script(self, source: str) -> Script:
        script = Script(self, source)
        self._scripts.append(script)
        if self._conn is not None:
            self._conn.send("SCRIPT", "LOAD", source).addErrback(self._not_loaded)
        return script

    def _not_loaded(self, f: Failure) -> None:
        if not f.check(Unavailable):
            log.warn(
                "could not load a script into {redis}: {why}", redis=self.description, why=f.getErrorMessage()
            )

    def start(self) -> Deferred[None]:
        """
        Connect; fires once the first connection is ready (its hooks have
        run), fails if the first attempt fails (Redis down, a wrong
        password): at startup that is a configuration mistake to report,
        not something to wait out.
        """
        if self._first is not None or self._wanted:
            raise RuntimeError(f"{self.description} is started already")
        first: Deferred[None] = Deferred()
        self._first = first
        self._try()
        return first

    def stop(self) -> Deferred[None]:
        """Close the connection, and make none again; fires once it is closed."""
        self._wanted = False
        first, self._first = self._first, None
        attempt = self._attempt
        if attempt is not None and self._open is None:
            attempt.cancel()  # still connecting
        conn = self._open
        self.group._review()
        if first is not None:
            first.errback(Unavailable(f"{self.description} was stopped before it connected"))
        if conn is None:
            return succeed(None)
        return conn.close()

    def execute(self, *args: Any) -> Deferred[Any]:
        """Send one command; fails with L{Unavailable} at once without a connection."""
        conn = self._conn
        if conn is None:
            return fail(Unavailable(f"{self.description} is not connected"))
        return conn.send(*args)

    # --- connecting: driven by the group -------------------------------------------

    def _try(self) -> None:
        """One attempt: connect, then C{AUTH}, C{SELECT}, the scripts and a C{PING} at once."""
        connecting = self._endpoint.connect(self._factory)
        connecting.addTimeout(self.reply_timeout, self.clock)
        d = connecting.addCallback(self._shake_hands)
        self._attempt = d
        d.addCallbacks(self._through, self._failed)

    def _shake_hands(self, protocol: IProtocol) -> Deferred[_Connection]:
        conn = cast(_Connection, protocol)
        steps: list[Deferred[Any]] = []
        if self._password is not None:
            steps.append(conn.send("AUTH", self._password))
        if self._db:
            steps.append(conn.send("SELECT", self._db))
        steps.extend(conn.send("SCRIPT", "LOAD", script.source) for script in self._scripts)
        # Always one command that needs an answer: a connection accepted by
        # the kernel of a Redis that is stopped is not a working one.
        steps.append(conn.send("PING"))
        done = gatherResults(steps, consumeErrors=True)
        return done.addCallbacks(lambda _: conn, _first_error)

    def _opened(self, conn: _Connection) -> None:
        if self._open is not None and self._open is not conn:
            self._open.drop("replaced by a newer connection")
        self._open = conn

    def _through(self, conn: _Connection) -> None:
        self._attempt = None
        if (not self._wanted and self._first is None) or conn is not self._open or not conn.open:
            conn.drop("not wanted any more")  # stopped meanwhile
            return
        self._wanted = True
        self._conn = conn
        self._ready = False
        conn.start_pinging(self.ping_interval)
        self.group._through(self)
        d: Deferred[Any] = succeed(None)
        for hook in list(self._hooks):
            d.addCallback(_run, hook)
        d.addErrback(self._recovery_failed)
        d.addCallback(self._recovered, conn)

    def _recovery_failed(self, f: Failure) -> None:
        # Unavailable: lost again already, which the group's health said.
        if not f.check(Unavailable):
            log.failure("recovering after connecting to {redis}", f, redis=self.description)

    def _recovered(self, _: object, conn: _Connection) -> None:
        if self._conn is conn:
            self._ready = True
            self.group._review()
        first, self._first = self._first, None
        if first is not None:
            first.callback(None)

    def _failed(self, f: Failure) -> None:
        self._attempt = None
        conn = self._open
        if conn is not None and conn is not self._conn:
            conn.drop("the handshake failed")
        refused = f.check(RedisError) is not None
        first, self._first = self._first, None
        if first is not None:
            # At startup: said by whoever started it, and not tried again.
            if refused:
                f = Failure(Unavailable(f"{self.description} refused the connection: {f.getErrorMessage()}"))
            first.errback(f)
        elif self._wanted and refused:
            # The password or the database number was refused: said (never
            # the password), and tried again with the backoff, since whoever
            # fixes Redis's side should not have to restart the node too.
            self.group.quiet.emit(
                LogLevel.error,
                "refused",
                "{redis} refused the connection: {why}",
                redis=self.description,
                why=f.getErrorMessage(),
            )
        self.group._review()

    def _closed(self, conn: _Connection, why: str) -> None:
        if conn is self._open:
            self._open = None
        if conn is not self._conn:
            return
        self._conn = None
        self._ready = False
        for hook in self._lost_hooks:
            try:
                hook()
            except Exception:
                log.failure("handling the loss of {redis}", redis=self.description)
        if self._wanted:
            self.group._lost(why)

    @property
    def _down(self) -> bool:
        """Wanted, not connected, and not being connected."""
        return self._wanted and self._conn is None and self._attempt is None


def _run(_: object, hook: Callable[[], Deferred[Any] | None]) -> Deferred[Any] | None:
    return hook()


class LinkGroup:
    """
    All the connections of one node to one Redis: they are down together
    and come back together.

    One L{Health} says so, once each way: down when any of them is lost, up
    when every one is connected again and its hooks have run.  One
    L{Backoff} spaces the attempts: each tries every connection that is
    down, and one that gets through makes the others still down try again
    at once.  While down, the only thing scheduled is the next attempt.
    """

    def __init__(
        self,
        description: str,
        clock: IReactorTime,
        backoff: Backoff | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        #: Whether Redis can be used, as the rest of the node asks.
        self.health = Health(description, clock)
        #: Lines that could repeat with every attempt (a refused password).
        self.quiet = QuietLog(log, clock)
        self._clock = clock
        self._backoff = backoff if backoff is not None else Backoff(first=0.25, most=5.0)
        self._random = random
        self._links: list[RedisLink] = []
        self._retry: IDelayedCall | None = None
        #: Set while attempts are being started, so that one failing at
        #: once does not schedule the next round before the others are tried.
        self._trying = False

    def __repr__(self) -> str:
        return f"<LinkGroup {self.health.what}: {len(self._links)} links>"

    @property
    def links(self) -> tuple[RedisLink, ...]:
        return tuple(self._links)

    def _add(self, link: RedisLink) -> None:
        self._links.append(link)

    def _lost(self, why: str) -> None:
        self.health.lost(why)
        self._review()

    def _through(self, link: RedisLink) -> None:
        """C{link} got through: Redis is there, so the others still down try now."""
        self._try_all()

    def _again(self) -> None:
        self._retry = None
        self._try_all()

    def _try_all(self) -> None:
        self._trying = True
        try:
            for link in self._links:
                if link._down:
                    link._try()
        finally:
            self._trying = False
        self._review()

    def _review(self) -> None:
        """After any change: schedule the next attempt, or say it is all back."""
        if self._trying:
            return
        wanted = [link for link in self._links if link._wanted]
        if not any(link._down for link in wanted):
            if self._retry is not None:
                if self._retry.active():
                    self._retry.cancel()
                self._retry = None
            if wanted and all(link._ready for link in wanted):
                self._backoff.reset()
                self.health.restored()
            return
        if self._retry is None and not any(link._attempt is not None for link in wanted):
            self._retry = self._clock.callLater(self._backoff.next(self._random), self._again)


class Subscriber(RedisLink):
    """
    The node's pub/sub connection: subscribes to its channels after every
    connect, since a new connection has none, and hands each message to
    C{receiver}.  Pub/sub is at most once: only notifications travel here,
    never the only copy of something acknowledged.
    """

    _protocol = _Subscription

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        clock: IReactorTime,
        channels: Sequence[str],
        receiver: Callable[[str, str], None] | None = None,
        password: str | None = None,
        db: int = 0,
        description: str = "redis",
        group: LinkGroup | None = None,
        *,
        reply_timeout: float = REPLY_TIMEOUT,
        ping_interval: float = PING_INTERVAL,
    ) -> None:
        super().__init__(
            endpoint,
            clock,
            password,
            db,
            description,
            group,
            reply_timeout=reply_timeout,
            ping_interval=ping_interval,
        )
        self.channels = tuple(channels)
        #: Where each message goes: set by whoever listens.
        self.receiver = receiver
        self.on_connect(self._subscribe)

    def _subscribe(self) -> Deferred[Any]:
        conn = self._conn
        if not isinstance(conn, _Subscription):
            return fail(Unavailable(f"{self.description} is not connected"))
        return conn.subscribe(self.channels)

    def message(self, channel: str, message: str) -> None:
        if self.receiver is None:
            return
        try:
            self.receiver(channel, message)
        except Exception:
            log.failure("handling a message on {channel}", channel=channel)
