"""
Metrics and health for operators, on C{--metrics ENDPOINT}: C{/metrics} in
Prometheus's exposition format (with C{prometheus_client}), C{/healthz}
and C{/readyz}.

The server keeps plain numbers as it works (L{chat.server.counters}, the
stores' and links' L{Health}, the SQLite writer's queue and commit times);
nothing here is on the path of a message.  A scrape reads them in the
reactor thread (L{ChatCollector}: cheap, and the only thread where they
hold still), then hands what it read, with the process's own collectors
(CPU, memory, descriptors: reads of C{/proc}), to the encoder in a thread
of the reactor's pool, one scrape at a time: neither C{/proc} nor the
encoding runs on the reactor.

Labels come from bounded sets only (edge kinds, login results, message
kinds, error codes, why a session ended): nothing a user typed, no user
name.  The port has no authentication; bind it to localhost or a private
network.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, cast

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredSemaphore, fail
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, resource, server
from twisted.web.server import NOT_DONE_YET

from chat import __version__
from chat.server.backends.redis.cluster import RedisCluster
from chat.server.backends.redis.link import LinkGroup
from chat.server.backends.sqlite import SQLiteStore
from chat.server.counters import Durations
from chat.server.events import ERRORS, Fault, Kind, Reason, Refusal
from chat.server.health import Health
from chat.server.service import ChatService

log = Logger()

#: Seconds between the ticks that measure the reactor's lag.
LAG_INTERVAL = 0.5
#: The buckets of the lag, in seconds.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Seconds without a tick after which C{/healthz} says the reactor is stalled.
STALLED_AFTER = 5.0
#: Scrapes that may wait for the one being encoded; more are answered 503.
MAX_WAITING_SCRAPES = 8
#: Seconds a connection to the metrics port may stay idle.
IDLE_TIMEOUT = 30

#: Every edge there is, shown at 0 when none is connected.
EDGES = ("tcp", "web")
#: The label values known in advance, shown at 0 before anything happens (so
#: a rate is right from the first scrape); others the server counts still show.
LOGIN_RESULTS = ("ok", "resumed", *(r.value for r in Refusal))
MESSAGE_KINDS = tuple(k.value for k in Kind)
LOGOUT_REASONS = (*(r.value for r in Reason), "refused", "connection_lost")
ERROR_CODES = tuple(
    sorted(
        {code for code in (getattr(e, "code", None) for e in ERRORS) if isinstance(code, str)}
        | {f.value for f in Fault}
    )
)


class LagMonitor:
    """
    How late the reactor runs what is due: a call every C{interval}
    seconds, each measuring how long after its time it ran.  A turn of the
    reactor that takes 200 ms (a long read, a blocking call) makes the
    next tick 200 ms late.
    """

    def __init__(self, clock: IReactorTime, interval: float = LAG_INTERVAL) -> None:
        self._clock = clock
        self.interval = interval
        self.lags = Durations(LAG_BUCKETS)
        #: When the last tick ran; None before the first.
        self.last_tick: float | None = None
        self._due = 0.0
        self._call: IDelayedCall | None = None

    @property
    def running(self) -> bool:
        return self._call is not None

    def start(self) -> None:
        if self._call is None:
            self._schedule(self._clock.seconds())

    def stop(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _schedule(self, now: float) -> None:
        self._due = now + self.interval
        self._call = self._clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        now = self._clock.seconds()
        self.lags.record(max(0.0, now - self._due))
        self.last_tick = now
        self._schedule(now)

    def stalled_for(self) -> float | None:
        """Seconds since the last tick if that is more than L{STALLED_AFTER}, else None."""
        if self._call is None:
            return None
        since = self.last_tick if self.last_tick is not None else self._due - self.interval
        waited = self._clock.seconds() - since
        return waited if waited > max(STALLED_AFTER, 2 * self.interval) else None


def _counter(name: str, doc: str, label: str, counts: dict[str, int], known: Iterable[str]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    values = dict.fromkeys(known, 0)
    values.update(counts)
    for value, n in sorted(values.items()):
        family.add_metric([value], n)
    return family


def _gauge(name: str, doc: str, value: float) -> Metric:
    return GaugeMetricFamily(name, doc, value=value)


def _histogram(name: str, doc: str, durations: Durations) -> Metric:
    buckets = [(floatToGoString(bound), float(n)) for bound, n in durations.cumulative()]
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=durations.sum)


def _by_edge(participants: Iterable[object]) -> dict[str, int]:
    counts = dict.fromkeys(EDGES, 0)
    for participant in participants:
        kind = getattr(participant, "kind", "other")
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _redis_groups(peers: RedisCluster) -> list[LinkGroup]:
    groups = {id(g): g for g in (peers.link.group, peers.store_link.group, peers.subscriber.group)}
    return list(groups.values())


class ChatCollector(Collector):
    """
    The chat server's numbers, as Prometheus metric families.

    L{collect} reads the service as it is now, so it runs in the reactor
    thread (elsewhere the dictionaries it walks change under it); what it
    yields is plain values, safe to encode in any thread.
    """

    def __init__(self, service: ChatService, lag: LagMonitor | None = None) -> None:
        self.service = service
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        service = self.service
        counters = service.counters
        yield InfoMetricFamily("chat_build", "The server's version.", value={"version": __version__})
        for name, doc, participants in (
            (
                "chat_connections",
                "Open connections to this server, logged in or not, by edge.",
                list(service.sessions),
            ),
            (
                "chat_sessions",
                "Users logged in to this server (this node), by edge.",
                list(service.registry.online.values()),
            ),
        ):
            family = GaugeMetricFamily(name, doc, labels=["edge"])
            for edge, n in sorted(_by_edge(participants).items()):
                family.add_metric([edge], n)
            yield family
        yield _gauge(
            "chat_users_online",
            "Users logged in anywhere (every node of a cluster).",
            len(service.registry.present),
        )
        yield _counter(
            "chat_logins_total",
            "Logins, by result: ok, resumed, or why refused.",
            "result",
            counters.logins,
            LOGIN_RESULTS,
        )
        yield _counter(
            "chat_messages_total",
            "Messages sent by users, by kind.",
            "kind",
            counters.messages,
            MESSAGE_KINDS,
        )
        yield CounterMetricFamily(
            "chat_deliveries_total",
            "Messages handed to a connection (one message to five users is five).",
            value=counters.deliveries,
        )
        yield _counter(
            "chat_errors_total",
            "Errors the server answered with, by code.",
            "code",
            counters.errors,
            ERROR_CODES,
        )
        yield _counter(
            "chat_logouts_total", "Sessions ended, by why.", "why", counters.logouts, LOGOUT_REASONS
        )
        yield from self._store()
        yield from self._redis()
        yield from self._reactor()

    def _store(self) -> Iterator[Metric]:
        store = self.service.store
        health: Health = store.health
        yield _gauge(
            "chat_store_up", "Whether the store (the database) can be used now.", int(health.available)
        )
        yield CounterMetricFamily(
            "chat_store_outages_total", "Times the store became unusable.", value=health.outages
        )
        if isinstance(store, SQLiteStore):
            yield _gauge(
                "chat_store_queued_operations",
                "SQLite operations not done yet: waiting for the writer, or in the batch it writes.",
                store.queued,
            )
            yield CounterMetricFamily(
                "chat_store_operations_total",
                "SQLite operations in the batches committed.",
                value=store.operations,
            )
            yield _histogram(
                "chat_store_commit_seconds",
                "Seconds the SQLite writer took per batch (one transaction).",
                store.commits,
            )

    def _redis(self) -> Iterator[Metric]:
        peers = self.service.peers
        if not isinstance(peers, RedisCluster):
            return
        health = peers.health
        groups = _redis_groups(peers)
        links = [link for group in groups for link in group.links]
        yield _gauge(
            "chat_redis_up",
            "Whether Redis can be used now (every connection of the node up and recovered).",
            int(health.available),
        )
        yield CounterMetricFamily(
            "chat_redis_outages_total",
            "Times the node lost Redis.",
            value=sum(group.health.outages for group in groups),
        )
        yield _gauge("chat_redis_links", "The node's connections to Redis.", len(links))
        yield _gauge(
            "chat_redis_links_connected",
            "The node's connections to Redis that are connected now.",
            sum(1 for link in links if link.connected),
        )

    def _reactor(self) -> Iterator[Metric]:
        if self.lag is not None:
            yield _histogram(
                "chat_reactor_lag_seconds",
                "How late the reactor ran a call due at a given time: the length of the turns before it.",
                self.lag.lags,
            )
        clock = self.service.clock
        if hasattr(clock, "getDelayedCalls"):
            yield _gauge(
                "chat_reactor_delayed_calls",
                "Calls scheduled on the reactor (timers of sessions, retries, ...).",
                len(clock.getDelayedCalls()),
            )


class _Scrape(Collector):
    """One scrape: what the chat collector read in the reactor thread, then the process's collectors."""

    def __init__(self, chat: list[Metric], process: CollectorRegistry) -> None:
        self.chat = chat
        self.process = process

    def collect(self) -> Iterator[Metric]:
        yield from self.chat
        yield from self.process.collect()


class Listening(Protocol):
    """A listener of the server (L{chat.server.tap.Listener}), as readiness looks at it."""

    option: str
    port: IListeningPort | None


def _short(why: str | None) -> str:
    text = " ".join((why or "unavailable").split())
    return text if len(text) <= 160 else text[:157] + "..."


class Readiness:
    """
    Whether the server can serve: its listeners listening, its store
    usable, and in a cluster, Redis reachable and the cluster joined.
    """

    def __init__(
        self,
        service: ChatService,
        listeners: Sequence[Listening] = (),
        joined: Deferred[None] | None = None,
    ) -> None:
        self.service = service
        self.listeners = listeners
        self.joined = joined
        self.stopping = False

    def missing(self) -> list[str]:
        """What is missing, a short phrase each; empty when ready."""
        missing = []
        if self.stopping:
            missing.append("server: stopping")
        for listener in self.listeners:
            if listener.port is None:
                missing.append(f"{listener.option}: not listening")
        peers = self.service.peers
        redis = peers.health if peers is not None else None
        store = self.service.store.health
        if not store.available and store is not redis:
            missing.append(f"store: {_short(store.reason)}")
        if self.joined is not None and not self.joined.called:
            missing.append("cluster: not joined yet")
        if redis is not None and not redis.available:
            missing.append(f"redis: {_short(redis.reason)}")
        return missing


def _in_reactor_pool(reactor: Any) -> Callable[[Callable[[], bytes]], Deferred[bytes]]:
    def run(work: Callable[[], bytes]) -> Deferred[bytes]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), work)

    return run


class Metrics(Service):
    """
    What the metrics port serves: started and stopped with the server (it
    measures the reactor's lag while it runs).  Its L{site} is listened on
    by a listener of its own, added beside it.
    """

    name = "metrics"

    def __init__(
        self,
        service: ChatService,
        reactor: Any,
        listeners: Sequence[Listening] = (),
        joined: Deferred[None] | None = None,
        *,
        in_thread: Callable[[Callable[[], bytes]], Deferred[bytes]] | None = None,
        lag_interval: float = LAG_INTERVAL,
    ) -> None:
        """
        @param reactor: the clock, and the thread pool scrapes are encoded in.
        @param listeners: the chat's listeners, which must listen for
            C{/readyz} to say ready.
        @param joined: in a cluster, fires once the node has joined it.
        @param in_thread: runs the encoding and gives its outcome (a test's
            runs it at once); by default in a thread of C{reactor}'s pool.
        """
        self.clock: IReactorTime = reactor
        self.lag = LagMonitor(reactor, lag_interval)
        self.collector = ChatCollector(service, self.lag)
        self.readiness = Readiness(service, listeners, joined)
        #: The process's own collectors (read in the encoding thread).
        self.process = CollectorRegistry()
        ProcessCollector(registry=self.process)
        PlatformCollector(registry=self.process)
        GCCollector(registry=self.process)
        self._in_thread = in_thread if in_thread is not None else _in_reactor_pool(reactor)
        self._encoding = DeferredSemaphore(1)
        self.site = MetricsSite(_Root(self), reactor)

    def startService(self) -> None:
        super().startService()
        self.readiness.stopping = False
        self.lag.start()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        self.readiness.stopping = True
        self.lag.stop()
        return None

    def scrape(self, accept: str = "") -> Deferred[tuple[bytes, str]]:
        """
        The exposition, in the format C{accept} asks for (Prometheus's text
        format by default, OpenMetrics if asked), and its content type.
        Fails with L{Busy} when too many scrapes wait already.
        """
        if len(self._encoding.waiting) >= MAX_WAITING_SCRAPES:
            return fail(Busy())
        encoder, content_type = choose_encoder(accept)

        def read_and_encode() -> Deferred[tuple[bytes, str]]:
            # Read now, in the reactor thread, once this scrape's turn has come.
            scrape = _Scrape(list(self.collector.collect()), self.process)
            encoded = self._in_thread(lambda: encoder(scrape))
            return encoded.addCallback(lambda body: (body, content_type))

        return self._encoding.run(read_and_encode)

    def health(self) -> tuple[int, bytes]:
        """C{/healthz}: the reactor turns (answering is most of the proof), and the lag ticks."""
        stalled = self.lag.stalled_for()
        if stalled is not None:
            return (
                http.SERVICE_UNAVAILABLE,
                f"stalled: the reactor has not ticked for {stalled:.1f} s\n".encode(),
            )
        return http.OK, b"ok\n"

    def ready(self) -> tuple[int, bytes]:
        """C{/readyz}: 200 and C{{"ready": true}}, or 503 and what is missing."""
        missing = self.readiness.missing()
        if missing:
            body: dict[str, object] = {"ready": False, "missing": missing}
            code = http.SERVICE_UNAVAILABLE
        else:
            body = {"ready": True}
            code = http.OK
        return code, json.dumps(body).encode("utf-8") + b"\n"


class Busy(Exception):
    """Too many scrapes wait already."""


_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json"


class _Root(resource.Resource):
    """C{/metrics}, C{/healthz}, C{/readyz}; GET and HEAD only; 404 anywhere else."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render(self, request: server.Request) -> bytes | int:
        path = request.path
        if path not in (b"/metrics", b"/healthz", b"/readyz"):
            return _answer(
                request,
                http.NOT_FOUND,
                _TEXT,
                b"Not found: this port serves /metrics, /healthz and /readyz.\n",
            )
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return _answer(request, http.NOT_ALLOWED, _TEXT, b"Only GET and HEAD.\n")
        if path == b"/healthz":
            code, body = self.metrics.health()
            return _answer(request, code, _TEXT, body)
        if path == b"/readyz":
            code, body = self.metrics.ready()
            return _answer(request, code, _JSON, body)
        return self._scrape(request)

    def _scrape(self, request: server.Request) -> int:
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)
        accept = request.getHeader(b"accept")
        scraped = self.metrics.scrape(accept.decode("latin-1") if accept is not None else "")

        def send(result: tuple[bytes, str]) -> None:
            if not gone:
                body, content_type = result
                _finish(request, http.OK, content_type.encode("ascii"), body)

        def failed(f: Failure) -> None:
            if f.check(Busy):
                body = b"Too many scrapes at once; try again.\n"
            else:
                log.failure("encoding the metrics", f)
                body = b"The metrics could not be encoded; it has been logged.\n"
            if not gone:
                _finish(
                    request,
                    http.SERVICE_UNAVAILABLE if f.check(Busy) else http.INTERNAL_SERVER_ERROR,
                    _TEXT,
                    body,
                )

        scraped.addCallbacks(send, failed)
        return NOT_DONE_YET


def _answer(request: server.Request, code: int, content_type: bytes, body: bytes) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", content_type)
    return body


def _finish(request: server.Request, code: int, content_type: bytes, body: bytes) -> None:
    request.setResponseCode(code)
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"content-length", b"%d" % len(body))
    request.write(body)
    request.finish()


class MetricsSite(server.Site):
    """
    The metrics port's site: no access log (a scraper every few seconds
    would fill it), no C{Server} header, no tracebacks in answers.
    """

    def __init__(self, root: resource.Resource, reactor: Any) -> None:
        super().__init__(root, timeout=IDLE_TIMEOUT, reactor=reactor)
        self.requestFactory = _Request
        self.displayTracebacks = False

    def startFactory(self) -> None:
        """No access log to open (nor its clock ticking every second)."""

    def stopFactory(self) -> None:
        pass

    def log(self, request: Any) -> None:
        pass


class _Request(server.Request):
    """A request answered by the site's root itself, without a C{Server} header."""

    def process(self) -> None:
        site = cast(MetricsSite, cast(Any, self.channel).site)
        self.site = site
        self.setHeader(b"date", http.datetimeToString(site.reactor.seconds()))
        self.setHeader(b"cache-control", b"no-store")
        self.setHeader(b"x-content-type-options", b"nosniff")
        self.prepath = []
        self.postpath = []
        try:
            body = site.resource.render(self)
        except Exception:
            self.processingFailed(Failure())
            return
        if body is NOT_DONE_YET:
            return
        self.setHeader(b"content-length", b"%d" % len(body))
        self.write(body)
        self.finish()
