"""
``twistd chat``: options, and the service they describe.

Everything that can be wrong with the configuration (a bad number, a
missing users file, a malformed line in it, an unusable database or
endpoint) is found before the server starts and reported as one line,
without a traceback.
"""

from __future__ import annotations

import gc
import os
import re
import socket
import stat
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from chat.server.auth import PlainSecret, UsersFileError, load_users, valid_name
from chat.server.build import RedisConfig, ServerConfig, build_server
from chat.server.commands import Limits
from chat.server.context import Settings
from chat.server.edges.tcp import ChatProtocol
from chat.server.edges.web import parse_hosts
from chat.server.edges.writethrough import write_through
from chat.server.interfaces import StoreError
from chat.server.limits import Exemptions
from chat.server.service import ChatService
from chat.server.signals import Signals
from chat.server.systemd import Notifier

log = Logger()

DEFAULT_BACKLOG = 1024
DEFAULT_EXEMPT = "127.0.0.0/8,::1"


def dual_stack() -> bool:
    """
    Whether one IPv6 socket on C{::} takes IPv4 connections too here: the
    machine has IPv6, and does not make such sockets IPv6-only.
    """
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            if probe.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY):
                return False
            probe.bind(("::", 0))
    except OSError:
        return False
    return True


def endpoint_description(port: str, both: bool | None = None) -> str:
    """
    Turn C{--port} into a server endpoint string.

    A bare number means TCP on that port, on IPv6 and IPv4 where the
    machine has both (C{both}, found out if not given; an IPv4 client then
    shows as its IPv4 address all the same), else on IPv4.  TCP and TLS
    listeners get a backlog of 1024 unless one is given: Twisted's default
    of 50 makes a burst of connections fail.
    """
    port = port.strip()
    if port.isdigit():
        if both is None:
            both = dual_stack()
        port = f"tcp6:{port}:interface=\\:\\:" if both else f"tcp:{port}"
    kind = port.split(":", 1)[0]
    if kind in ("tcp", "tcp6", "ssl") and "backlog=" not in port:
        port = f"{port}:backlog={DEFAULT_BACKLOG}"
    return port


#: The longest --max-message: what one line of the text protocol carries
#: (4,096 bytes) less room for the command and a name or room
#: (C{message #ROOM ...}).
MAX_MESSAGE_CHARACTERS = 4000

# name, default, what it means, (type, smallest allowed)
_NUMBERS: list[tuple[str, str, str, type, float]] = [
    (
        "block-time",
        "60",
        "Seconds a user stays blocked from an address after too many failed logins.",
        float,
        0,
    ),
    ("max-attempts", "3", "Consecutive failed logins (per user and address) before the block.", int, 1),
    ("idle-timeout", "1800", "Seconds without a command before a user is logged out.", float, 1),
    ("last-hour", "60", "The largest N, in minutes, that 'wholast N' accepts.", int, 0),
    ("max-message", "500", "Longest message text, in characters.", int, 1),
    ("history", "200", "Messages kept per user for 'history' (sent and received); 0 keeps none.", int, 0),
    ("redis-db", "0", "The Redis database number, with --redis.", int, 0),
    (
        "node-timeout",
        "15",
        "Seconds within which the users of a node that died are shown offline, with --redis.",
        float,
        1,
    ),
    ("login-timeout", "60", "Seconds a connection has to complete its login.", float, 1),
    ("max-connections-per-ip", "20", "Open connections allowed from one address.", int, 1),
    ("rate", "10", "Commands per second allowed per user, on average.", float, 0.001),
    ("burst", "20", "Commands a user may send at once before the rate applies.", int, 1),
    (
        "max-output-buffer",
        "262144",
        "Bytes queued for a client that is not reading before it is disconnected.",
        int,
        4096,
    ),
]


def _number(name: str, text: str, kind: type, smallest: float) -> float | int:
    what = "a whole number" if kind is int else "a number"
    try:
        value = kind(text)
    except ValueError:
        raise usage.UsageError(f"--{name} must be {what}, not {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise usage.UsageError(f"--{name} must be a finite number, not {text!r}")
    if value < smallest:
        raise usage.UsageError(f"--{name} must be at least {smallest:g}, not {text!r}")
    return value


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Runs the chat server: users from the users file log in and chat. "
        "Connect with 'nc HOST PORT' or 'python -m chat.client HOST PORT'."
    )

    optParameters = [
        [
            "port",
            "p",
            "4119",
            "Server endpoint to listen on, e.g. tcp:4119:interface=127.0.0.1; a bare number means TCP on"
            " that port, on IPv6 and IPv4 where the machine has both.",
        ],
        ["users", "u", "user_pass.txt", "The users file: '<username> <password>' per line."],
        [
            "admins",
            None,
            "",
            "Users (comma-separated) who may list sessions, kick users and announce to everyone.",
        ],
        [
            "database",
            "d",
            "chat.sqlite",
            "SQLite file for what survives a restart; ':memory:' keeps nothing.",
        ],
        [
            "web",
            None,
            None,
            "Server endpoint for the web page and its WebSocket (/ws), e.g. 8080 (IPv6 and IPv4, as for"
            " --port) or tcp:8080:interface=127.0.0.1; off if not given.",
        ],
        [
            "web-origin",
            None,
            "",
            "Origins (scheme://host:port, comma-separated) allowed to open the WebSocket, "
            "besides the page's own.",
        ],
        [
            "web-host",
            None,
            "",
            "Host names (comma-separated) the web page is served under, besides IP addresses, "
            "localhost and the hosts of --web-origin; its WebSocket refuses a page under any other "
            "name (DNS rebinding).",
        ],
        [
            "redis",
            None,
            None,
            "Run as one node of a cluster on this Redis (a client endpoint: tcp:HOST:PORT, "
            "unix:PATH, tls:HOST:PORT); the database is then Redis, not --database.",
        ],
        ["redis-password", None, None, "The Redis password (AUTH); prefer --redis-password-file."],
        ["redis-password-file", None, None, "A file whose first line is the Redis password."],
        [
            "node",
            None,
            None,
            "This node's name in the cluster (letters, digits, '.', '_', '-'); default HOST-PID.",
        ],
        [
            "metrics",
            None,
            None,
            "Server endpoint for /metrics (Prometheus), /healthz and /readyz, e.g. "
            "tcp:9119:interface=127.0.0.1; off if not given.  No authentication: keep it private.",
        ],
        [
            "exempt",
            None,
            DEFAULT_EXEMPT,
            "Networks (CIDR, comma-separated) free of the per-address connection limit "
            "and the flood limit; '' for none.",
        ],
    ] + [[name, None, default, doc] for name, default, doc, _, _ in _NUMBERS]

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Parse, and on any mistake exit with one line rather than the usage
        text twistd would print.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            raise SystemExit(f"twistd chat: {e}") from None

    def postOptions(self) -> None:
        for name, _, _, kind, smallest in _NUMBERS:
            self[name] = _number(name, str(self[name]), kind, smallest)
        if self["last-hour"] > 24 * 60:
            raise usage.UsageError("--last-hour must be at most 1440 minutes (a day)")
        if self["max-message"] > MAX_MESSAGE_CHARACTERS:
            raise usage.UsageError(
                f"--max-message must be at most {MAX_MESSAGE_CHARACTERS} characters: a line of"
                f" the text protocol (and a WebSocket message) carries at most"
                f" {ChatProtocol.MAX_LENGTH} bytes, command included"
            )
        self["endpoint"] = endpoint_description(self["port"])
        self["web-origins"] = tuple(o.strip().rstrip("/") for o in self["web-origin"].split(",") if o.strip())
        try:
            self["web-hosts"] = parse_hosts(self["web-host"])
        except ValueError as e:
            raise usage.UsageError(f"--web-host: {e}") from None
        try:
            self["exemptions"] = Exemptions.parse(self["exempt"])
        except ValueError as e:
            raise usage.UsageError(f"--exempt: {e}") from None
        try:
            self["users-db"] = load_users(self["users"])
        except UsersFileError as e:
            raise usage.UsageError(str(e)) from None
        self["admin-names"] = frozenset(a.strip() for a in self["admins"].split(",") if a.strip())
        bad = sorted(a for a in self["admin-names"] if not valid_name(a))
        if bad:
            raise usage.UsageError(f"--admins: {bad[0]!r} is not a user name")
        self._cluster_options()

    def _cluster_options(self) -> None:
        if self["redis"] is None:
            for name in ("redis-password", "redis-password-file", "node"):
                if self[name] is not None:
                    raise usage.UsageError(f"--{name} needs --redis")
            return
        node = self["node"] or f"{socket.gethostname()}-{os.getpid()}"
        if not _NODE_NAME.fullmatch(node):
            raise usage.UsageError(
                f"--node must be letters, digits, '.', '_' or '-' (at most 64), not {node!r}"
            )
        self["node"] = node
        if self["redis"].startswith("unix:"):
            # Longer paths do not fit a socket address; Twisted would fail
            # inside the reactor instead of refusing the connection.
            path = self["redis"][len("unix:") :].split(":", 1)[0].replace("path=", "", 1)
            if len(os.fsencode(path)) > 107:
                raise usage.UsageError(f"--redis: a unix socket path has at most 107 bytes, not {path!r}")
        if self["redis-password-file"] is not None:
            if self["redis-password"] is not None:
                raise usage.UsageError("give --redis-password or --redis-password-file, not both")
            try:
                with open(self["redis-password-file"], encoding="utf-8") as f:
                    self["redis-password"] = f.readline().rstrip("\r\n")
            except OSError as e:
                raise usage.UsageError(f"--redis-password-file: {e.strerror}: {e.filename}") from None


_NODE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Listener(Service):
    """
    Listens on the server endpoint when twistd starts its services.

    Binding happens in C{privilegedStartService}, before the reactor runs;
    a port that cannot be bound (in use, not permitted) stops startup with
    one line instead of a traceback.
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        description: str,
        option: str = "--port",
    ) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.description = description
        self.option = option
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        outcome: list[Any] = []
        self.endpoint.listen(self.factory).addBoth(outcome.append)
        if not outcome:
            raise SystemExit(
                f"twistd chat: {self.option} {self.description!r} did not start listening at once"
            )
        result = outcome[0]
        if isinstance(result, Failure):
            reason = result.getErrorMessage()
            raise SystemExit(f"twistd chat: cannot listen on {self.description!r}: {reason}")
        self.port = result

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self.port is None:
            return succeed(None)
        port, self.port = self.port, None
        stopped = port.stopListening()
        return stopped if isinstance(stopped, Deferred) else succeed(None)


def _warn_about_users_file(path: str, users: dict[str, Any]) -> None:
    plain = sum(1 for s in users.values() if isinstance(s, PlainSecret))
    if plain:
        log.warn(
            "{path} keeps {plain} of {total} passwords in plain text; "
            "'python -m chat.passwd {path} USER' stores a hash instead",
            path=path,
            plain=plain,
            total=len(users),
        )
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warn("{path} is readable by other users; 'chmod 600 {path}' fixes that", path=path)


def _endpoint(reactor: Any, option: str, given: str, description: str) -> IStreamServerEndpoint:
    try:
        return write_through(serverFromString(reactor, description))
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise SystemExit(f"twistd chat: {option} {given!r} is not usable: {e}") from None
    except Exception as e:  # the TLS endpoint raises OpenSSL's own errors
        raise SystemExit(f"twistd chat: {option} {given!r} is not usable: {e!r}") from None


def server_config(options: Options) -> ServerConfig:
    """The server the options describe (checked already, in L{Options.postOptions})."""
    redis = None
    if options["redis"] is not None:
        redis = RedisConfig(
            options["redis"],
            options["node"],
            options["redis-password"],
            options["redis-db"],
            options["node-timeout"],
        )
    return ServerConfig(
        users=options["users-db"],
        users_path=options["users"],
        database=options["database"],
        redis=redis,
        history=options["history"],
        max_attempts=options["max-attempts"],
        block_time=options["block-time"],
        settings=Settings(
            limits=Limits(last_hour=options["last-hour"], max_message=options["max-message"]),
            login_timeout=options["login-timeout"],
            idle_timeout=options["idle-timeout"],
            rate=options["rate"],
            burst=options["burst"],
            exempt=options["exemptions"],
            history=options["history"],
        ),
        max_connections_per_ip=options["max-connections-per-ip"],
        max_output_buffer=options["max-output-buffer"],
        web_origins=options["web-origins"],
        web_hosts=options["web-hosts"],
        admins=options["admin-names"],
    )


def makeService(options: Options, reactor: Any = None) -> IService:
    if reactor is None:
        from twisted.internet import reactor
    endpoint = _endpoint(reactor, "--port", options["port"], options["endpoint"])
    web_endpoint = None
    if options["web"] is not None:
        web_endpoint = _endpoint(reactor, "--web", options["web"], endpoint_description(options["web"]))
    metrics_endpoint = None
    if options["metrics"] is not None:
        metrics_endpoint = _endpoint(
            reactor, "--metrics", options["metrics"], endpoint_description(options["metrics"])
        )
    try:
        server = build_server(server_config(options), reactor)
    except StoreError as e:
        raise SystemExit(f"twistd chat: {e}") from None
    except Exception as e:  # a client endpoint string Twisted cannot parse
        if options["redis"] is None:
            raise
        raise SystemExit(f"twistd chat: --redis {options['redis']!r} is not usable: {e}") from None
    _warn_about_users_file(options["users"], options["users-db"])
    for name in sorted(options["admin-names"] - set(options["users-db"])):
        log.warn("--admins names {name}, who is not in {path}", name=name, path=options["users"])
    service = server.service
    assert server.users_file is not None

    top = MultiService()
    service.setServiceParent(top)
    Signals(reactor, server.users_file.reload, service.log_status).setServiceParent(top)
    ready: Deferred[None] = succeed(None)
    if service.peers is not None:
        joining = JoinCluster(service, options["redis"], reactor)
        joining.setServiceParent(top)
        ready = joining.joined
    listeners = [Listener(endpoint, server.factory, options["port"])]
    if web_endpoint is not None:
        listeners.append(Listener(web_endpoint, server.site(), options["web"], "--web"))
    if metrics_endpoint is not None:
        # Before the chat's listeners, so it answers (not ready) while they stop.
        metrics = server.metrics(listeners, ready if service.peers is not None else None)
        metrics.setServiceParent(top)
        Listener(metrics_endpoint, metrics.site, options["metrics"], "--metrics").setServiceParent(top)
    # Added last so that they stop first: no new connections during goodbyes.
    for listener in listeners:
        listener.setServiceParent(top)
    # Last of all, so it says STOPPING=1 first.
    Notifier(reactor, ready).setServiceParent(top)
    Collector().setServiceParent(top)
    return top


class Collector(Service):
    """
    The cyclic garbage collector, set for a server: a message's objects
    are acyclic and die young, and with Python's thresholds (a collection
    every 700 new objects, the whole heap every 70 of those) the collector
    took 3-4% of the reactor's time under load, walking the same
    sessions again and again.  What exists once the server is set up is
    moved out of its sight (C{gc.freeze}), and collections come every
    20,000 new objects (the whole heap every 400 of those: a few seconds
    under load).  Cycles are still collected; memory per connection is
    bounded by the edges, not by the collector.
    """

    THRESHOLDS = (20_000, 20, 20)

    def startService(self) -> None:
        super().startService()
        self._before = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(*self.THRESHOLDS)

    def stopService(self) -> None:
        super().stopService()
        gc.set_threshold(*self._before)
        gc.unfreeze()


class JoinCluster(Service):
    """
    Joins the cluster once the reactor runs.  If Redis cannot be reached
    (or refuses the password) at startup, that is a mistake in the
    configuration, not an outage to wait out: one line, and the server
    exits with status 1.
    """

    def __init__(self, service: ChatService, description: str, reactor: Any) -> None:
        self.chat = service
        self.description = description
        self.reactor = reactor
        #: Fires once the node has joined (it serves then).
        self.joined: Deferred[None] = Deferred()

    def startService(self) -> None:
        super().startService()
        self.chat.join_cluster().addCallbacks(self._joined, self._failed)

    def _joined(self, _: object) -> None:
        peers = self.chat.peers
        log.info(
            "node {node} joined the cluster on Redis at {redis}",
            node=getattr(peers, "node", "?"),
            redis=self.description,
        )
        self.joined.callback(None)

    def _failed(self, f: Failure) -> None:
        log.critical(
            "twistd chat: cannot use Redis at {redis}: {why}", redis=self.description, why=f.getErrorMessage()
        )
        # twistd has no exit status of its own to set: leave with 1 once the
        # reactor has stopped, so a supervisor sees the failure.
        self.reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        self.reactor.stop()
