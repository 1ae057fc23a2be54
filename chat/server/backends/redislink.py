"""
One connection to Redis, kept alive, for a node of a cluster.

txredisapi speaks the protocol; this module decides what a command does
while Redis is away.  Its own connection handler queues a command until a
connection comes back, which would leave a user waiting for as long as
Redis is down; here a command sent without a connection fails at once with
L{Unavailable}, so the session can say so in one line.

Everything goes over one connection: Redis answers in order on a
connection, so a write is always seen by the reads sent after it (an inbox
entry removed is never read again), and a C{WAITAOF} waits for the writes
before it.  txredisapi's pool would send each command on any connection.

The pitfalls Synapse met with txredisapi are handled here: C{AUTH} and
C{SELECT} are sent by this module after each connect, so a refused password
is logged and retried with backoff instead of stopping reconnects for good;
a C{PING} every few seconds, with a reply timeout, notices a connection
that died without a FIN; and the subscriber re-subscribes after every
reconnect (L{Subscriber}).
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable, Sequence
from typing import Any

import txredisapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from chat.server.interfaces import Unavailable

log = Logger()

#: Seconds between pings, and how long a reply may take before the
#: connection is given up as dead and made again.
PING_INTERVAL = 5.0
REPLY_TIMEOUT = 10.0
#: Bytes handed to the kernel at once on the connection to Redis.
SEND_LIMIT = 4 * 1024 * 1024


class _Wire:
    """
    Reads replies without a reactor turn per value, and writes commands
    in one piece.

    txredisapi's own reader pauses the connection after every bulk string
    and reads the rest of what arrived on the next turn of the reactor, so
    a reply of N strings takes N turns and 2N C{epoll_ctl} calls: measured,
    three quarters of a busy node's reactor went there.  This loop reads
    every complete value of what arrived at once, with txredisapi's own
    parsing of each line (C{lineReceived}) and each string
    (C{bulkDataReceived}), and keeps an incomplete string for later.
    """

    line_mode: int
    bulk_length: int
    _unread = b""

    def dataReceived(self, data: bytes) -> None:
        buffer = self._unread + data if self._unread else data
        at = 0
        end = len(buffer)
        while at < end:
            if self.line_mode:
                eol = buffer.find(b"\r\n", at)
                if eol < 0:
                    break
                line = buffer[at:eol]
                at = eol + 2
                self.lineReceived(line.decode())  # type: ignore[attr-defined]
            else:
                # lineReceived saw "$N": N bytes and CRLF follow.
                if end - at < self.bulk_length:
                    break
                value = buffer[at : at + self.bulk_length - 2]
                at += self.bulk_length
                self.bulk_length = 0
                self.line_mode = 1
                self.bulkDataReceived(value)  # type: ignore[attr-defined]
        self._unread = buffer[at:]

    def _build_command(self, *args: Any, **kwargs: Any) -> bytes:
        """
        A command in Redis's protocol, made with C{bytes} formatting:
        txredisapi's own made it a piece at a time, and a turn's history
        (one script call with thousands of arguments) cost a busy node
        several times what the store's work did.
        """
        parts = [b"*%d\r\n" % len(args)]
        append = parts.append
        for arg in args:
            if isinstance(arg, str):
                data = arg.encode("utf-8")
            elif isinstance(arg, bytes):
                data = arg
            elif isinstance(arg, float):
                data = repr(arg).encode("ascii")
            else:
                data = str(arg).encode("utf-8")
            append(b"$%d\r\n%b\r\n" % (len(data), data))
        return b"".join(parts)


class _Protocol(_Wire, txredisapi.RedisProtocol):
    pass


class _Factory(txredisapi.RedisFactory):
    """A factory of one connection that tells its link when one is usable."""

    def __init__(self, link: RedisLink, protocol: type[Any]) -> None:
        self.protocol = protocol
        # convertNumbers off: a message "123" must come back as text, not 123.
        super().__init__("chat", None, 1, isLazy=True, replyTimeout=REPLY_TIMEOUT, convertNumbers=False)
        self._link = link

    def addConnection(self, conn: Any) -> None:
        super().addConnection(conn)
        if conn in self.pool:
            self._link._arrived(conn)

    def delConnection(self, conn: Any) -> None:
        super().delConnection(conn)
        self._link._departed(conn)


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
        if f.check(txredisapi.ResponseError) and "NOSCRIPT" in str(f.value):
            return self._link.execute("EVAL", self.source, len(keys), *keys, *args)
        return f


class RedisLink:
    """
    The node's connection to Redis, made again with backoff whenever it is
    lost.  C{ready} hooks run on every new connection, before any command
    of the node's own goes over it: the cluster uses them to re-announce
    its users after Redis comes back.
    """

    protocol: type[Any] = _Protocol

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        clock: IReactorTime,
        password: str | None = None,
        db: int = 0,
        description: str = "redis",
    ) -> None:
        self._endpoint = endpoint
        self._clock = clock
        self._password = password
        self._db = db
        self.description = description
        self._conn: Any = None
        self._factory: _Factory | None = None
        self._first: Deferred[None] | None = None
        self._hooks: list[Callable[[], Deferred[Any] | None]] = []
        self._lost_hooks: list[Callable[[], None]] = []
        self._scripts: list[Script] = []
        self._pinger = LoopingCall(self._ping)
        self._pinger.clock = clock
        self._was_connected = False

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
            self._load(self._conn, [script])
        return script

    def _load(self, conn: Any, scripts: Sequence[Script]) -> None:
        for script in scripts:
            conn.execute_command("SCRIPT", "LOAD", script.source).addErrback(
                lambda f: log.warn(
                    "could not load a script into {redis}: {why}",
                    redis=self.description,
                    why=f.getErrorMessage(),
                )
            )

    def start(self) -> Deferred[None]:
        """
        Connect; fires once the first connection is ready, fails if the
        first attempt fails (Redis down, wrong password): at startup that
        is a configuration mistake to report, not something to wait out.
        """
        self._first = Deferred()
        self._factory = _Factory(self, self.protocol)
        self._factory.startConnecting(self._endpoint)
        for slot in self._factory.slots:
            slot.service.whenConnected(failAfterFailures=1).addErrback(self._failed_first)
        return self._first

    def _failed_first(self, f: Failure) -> None:
        first, self._first = self._first, None
        if first is not None:
            first.errback(f)

    def stop(self) -> Deferred[None]:
        if self._pinger.running:
            self._pinger.stop()
        factory, self._factory = self._factory, None
        self._conn = None
        if factory is None:
            return succeed(None)
        return factory.disconnect().addErrback(lambda f: None)

    def execute(self, *args: Any) -> Deferred[Any]:
        """Send one command; fails with L{Unavailable} at once without a connection."""
        conn = self._conn
        if conn is None or not conn.connected:
            return fail(Unavailable(f"{self.description} is not connected"))
        try:
            d: Deferred[Any] = conn.execute_command(*args)
        except txredisapi.ConnectionError as e:
            return fail(Unavailable(str(e)))
        return d.addErrback(_unavailable)

    # --- connection events ------------------------------------------------------

    def _arrived(self, conn: Any) -> None:
        d = succeed(None)
        if self._password is not None:
            d.addCallback(lambda _: conn.execute_command("AUTH", self._password))
        if self._db:
            d.addCallback(lambda _: conn.execute_command("SELECT", self._db))
        d.addCallbacks(lambda _: self._usable(conn), lambda f: self._refused(conn, f))

    def _refused(self, conn: Any, f: Failure) -> None:
        # The password or the database number was refused: say why (never
        # the password), drop the connection and let the backoff retry.
        log.error("{redis} refused the connection: {why}", redis=self.description, why=f.getErrorMessage())
        conn.transport.loseConnection()
        first, self._first = self._first, None
        if first is not None:
            for slot in self._factory.slots if self._factory else ():
                slot.stop()
            first.errback(
                Failure(Unavailable(f"{self.description} refused the connection: {f.getErrorMessage()}"))
            )

    def _usable(self, conn: Any) -> Deferred[None]:
        # Twisted hands the kernel at most 128 KiB per connection per turn
        # of the reactor; a busy node's turn can last a quarter of a second,
        # and its writes to Redis (history, inboxes) then queue faster than
        # they leave.  One connection carries all of them: let it send what
        # the kernel will take.
        conn.transport.SEND_LIMIT = SEND_LIMIT
        try:
            # And a kernel buffer to match (as far as net.core.wmem_max
            # allows): Twisted empties it once per turn.
            conn.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_LIMIT)
        except (AttributeError, OSError):
            pass
        self._load(conn, self._scripts)
        self._conn = conn
        if self._was_connected:
            log.info("{redis} is back", redis=self.description)
        self._was_connected = True
        if not self._pinger.running:
            self._pinger.start(PING_INTERVAL, now=False)
        d: Deferred[Any] = succeed(None)
        for hook in self._hooks:
            d.addCallback(_run, hook)
        d.addErrback(self._recovery_failed)

        def done(_: object) -> None:
            first, self._first = self._first, None
            if first is not None:
                first.callback(None)

        return d.addCallback(done)

    def _recovery_failed(self, f: Failure) -> None:
        if f.check(Unavailable):
            # Lost again already: the next connection recovers.
            log.warn(
                "{redis} went away while recovering: {why}", redis=self.description, why=f.getErrorMessage()
            )
        else:
            log.failure("recovering after connecting to {redis}", f, redis=self.description)

    def _departed(self, conn: Any) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        if self._factory is None:
            return  # stopping
        log.warn("lost the connection to {redis}; reconnecting", redis=self.description)
        for hook in self._lost_hooks:
            try:
                hook()
            except Exception:
                log.failure("handling the loss of {redis}", redis=self.description)

    def _ping(self) -> None:
        # A reply that does not come within REPLY_TIMEOUT aborts the
        # connection (txredisapi's reply timeout), and reconnecting starts.
        if self._conn is not None:
            self.execute("PING").addErrback(lambda f: None)


def _run(_: object, hook: Callable[[], Deferred[Any] | None]) -> Deferred[Any] | None:
    return hook()


def _unavailable(f: Failure) -> Failure:
    if f.check(txredisapi.ConnectionError):
        return Failure(Unavailable(f.getErrorMessage()))
    return f


class _SubscriberProtocol(_Wire, txredisapi.SubscriberProtocol):
    def messageReceived(self, pattern: Any, channel: str, message: str) -> None:
        self.factory._link.message(channel, message)


class Subscriber(RedisLink):
    """
    The node's pub/sub connection: subscribes to its channels after every
    connect, since a new connection has none, and hands each message to
    C{receiver}.  Pub/sub is at most once: only notifications travel here,
    never the only copy of something acknowledged.
    """

    protocol = _SubscriberProtocol

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        clock: IReactorTime,
        channels: Sequence[str],
        receiver: Callable[[str, str], None] | None = None,
        password: str | None = None,
        db: int = 0,
        description: str = "redis",
    ) -> None:
        super().__init__(endpoint, clock, password, db, description)
        self.channels = tuple(channels)
        #: Where each message goes: set by whoever listens.
        self.receiver = receiver
        self.on_connect(self._subscribe)

    def _subscribe(self) -> Deferred[Any]:
        return self.execute("SUBSCRIBE", *self.channels)

    def message(self, channel: str, message: str) -> None:
        if self.receiver is None:
            return
        try:
            self.receiver(channel, message)
        except Exception:
            log.failure("handling a message on {channel}", channel=channel)
