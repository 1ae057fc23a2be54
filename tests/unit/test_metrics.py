"""
The metrics port (L{chat.server.metrics}): what C{/metrics} counts while
users chat in the in-memory harness, what C{/readyz} says is missing, the
reactor's lag on a task.Clock, the HTTP answers, and that the encoding
runs in a thread rather than on the reactor.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, cast

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from twisted.application.service import IServiceCollection
from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from chat.server.backends.sqlite import SQLiteStore
from chat.server.counters import Durations
from chat.server.health import Health
from chat.server.metrics import MAX_WAITING_SCRAPES, Busy, ChatCollector, LagMonitor, Metrics, Readiness
from chat.server.tap import Listener, Options, makeService
from tests.unit.harness import Harness, OutageStore

reactor: Any = _reactor

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def now(work: Callable[[], bytes]) -> Deferred[bytes]:
    """Encode at once, in this thread: a test's stand-in for the reactor's pool."""
    return succeed(work())


def parse(text: bytes) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text.decode("utf-8")):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def scraped(metrics: Metrics) -> tuple[Samples, bytes]:
    results: list[tuple[bytes, str]] = []
    metrics.scrape().addCallback(results.append)
    [(body, content_type)] = results
    assert content_type.startswith("text/plain"), content_type
    return parse(body), body


class FakeListener:
    def __init__(self, option: str, listening: bool = True) -> None:
        self.option = option
        self.port: Any = object() if listening else None


class CountsTests(unittest.TestCase):
    """What users do moves the counters by exactly what they did."""

    def setUp(self) -> None:
        self.server = Harness()
        self.metrics = Metrics(self.server.service, self.server.clock, in_thread=now)

    def scrape(self) -> Samples:
        return scraped(self.metrics)[0]

    def test_logins_messages_deliveries_and_errors_move_by_what_was_done(self) -> None:
        before = self.scrape()
        columbia = self.server.login("columbia")
        seas = self.server.login("seas")
        wrong = self.server.connect()
        wrong.send("google", "not the password")
        columbia.send("message seas lunch?", "broadcast message the printer is fixed")
        seas.send("frobnicate")
        after = self.scrape()

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        self.assertEqual(moved("chat_logins_total", result="ok"), 2)
        self.assertEqual(moved("chat_logins_total", result="invalid"), 1)
        self.assertEqual(moved("chat_messages_total", kind="private"), 1)
        self.assertEqual(moved("chat_messages_total", kind="broadcast"), 1)
        # The private message to seas, and the broadcast to seas (not to its sender).
        self.assertEqual(moved("chat_deliveries_total"), 2)
        self.assertEqual(moved("chat_errors_total", code="unknown_command"), 1)
        self.assertEqual(moved("chat_errors_total", code="unknown_user"), 0)

    def test_sessions_count_logged_in_users_by_edge_and_connections_count_every_one(self) -> None:
        self.server.login("columbia")
        self.server.login("seas")
        self.server.connect()  # at the username prompt
        samples = self.scrape()
        self.assertEqual(value(samples, "chat_sessions", edge="tcp"), 2)
        self.assertEqual(value(samples, "chat_sessions", edge="web"), 0)
        self.assertEqual(value(samples, "chat_connections", edge="tcp"), 3)
        self.assertEqual(value(samples, "chat_connections", edge="web"), 0)
        self.assertEqual(value(samples, "chat_users_online"), 2)

    def test_logouts_are_counted_by_why(self) -> None:
        columbia = self.server.login("columbia")
        seas = self.server.login("seas")
        columbia.send("logout")
        seas.lose()
        samples = self.scrape()
        self.assertEqual(value(samples, "chat_logouts_total", why="logout"), 1)
        self.assertEqual(value(samples, "chat_logouts_total", why="connection_lost"), 1)
        self.assertEqual(value(samples, "chat_sessions", edge="tcp"), 0)

    def test_known_labels_are_there_at_zero_before_anything_happens(self) -> None:
        samples = self.scrape()
        for result in ("ok", "invalid", "blocked", "already_online"):
            self.assertEqual(value(samples, "chat_logins_total", result=result), 0)
        for kind in ("private", "broadcast"):
            self.assertEqual(value(samples, "chat_messages_total", kind=kind), 0)
        self.assertEqual(value(samples, "chat_errors_total", code="rate_limited"), 0)

    def test_no_user_name_or_message_text_reaches_the_metrics(self) -> None:
        columbia = self.server.login("columbia")
        self.server.login("seas")
        columbia.send(
            "message seas the secret plan", "message nosuchuser hello", "broadcast message all hands"
        )
        wrong = self.server.connect()
        wrong.send("hunter2", "hunter2")
        body = scraped(self.metrics)[1].decode("utf-8")
        for secret in ("columbia", "seas", "secret plan", "nosuchuser", "all hands", "hunter2"):
            self.assertNotIn(secret, body)

    def test_the_process_collectors_are_there(self) -> None:
        samples = self.scrape()
        names = {name for name, _ in samples}
        self.assertIn("process_cpu_seconds_total", names)
        self.assertIn("process_resident_memory_bytes", names)
        self.assertIn("chat_build_info", names)

    def test_a_memory_store_has_no_sqlite_queue(self) -> None:
        names = {name for name, _ in self.scrape()}
        self.assertIn("chat_store_up", names)
        self.assertNotIn("chat_store_queued_operations", names)
        self.assertNotIn("chat_redis_up", names)


class SaidTests(unittest.TestCase):
    def test_every_error_is_counted_by_its_code(self) -> None:
        # Counters.said looks errors up by exact type: that holds while no
        # event type is made from another (a subclass would go uncounted).
        import inspect

        from chat.server import events
        from chat.server.counters import Counters

        kinds = [c for _, c in inspect.getmembers(events, inspect.isclass) if c.__module__ == events.__name__]
        for error in events.ERRORS:
            self.assertEqual([c for c in kinds if c is not error and issubclass(c, error)], [], error)
        counters = Counters()
        counters.said(events.Failed(events.Fault.SELF_MESSAGE))
        counters.said(events.LoginRefused(events.Refusal.INVALID, "seas"))
        counters.said(events.Receipt(("seas",), ()))
        self.assertEqual(counters.errors, {events.Failed(events.Fault.SELF_MESSAGE).code: 1})
        self.assertEqual(counters.logins, {"invalid": 1})


class StoreTests(unittest.TestCase):
    def test_a_store_that_goes_down_shows_in_metrics_and_readiness(self) -> None:
        store = OutageStore()
        server = Harness(store=store)
        metrics = Metrics(server.service, server.clock, in_thread=now)
        store.down("database or disk is full")
        samples = scraped(metrics)[0]
        self.assertEqual(value(samples, "chat_store_up"), 0)
        self.assertEqual(value(samples, "chat_store_outages_total"), 1)
        code, body = metrics.ready()
        self.assertEqual(code, 503)
        self.assertEqual(body, b'{"ready": false, "missing": ["store: database or disk is full"]}\n')
        store.up()
        samples = scraped(metrics)[0]
        self.assertEqual(value(samples, "chat_store_up"), 1)
        self.assertEqual(value(samples, "chat_store_outages_total"), 1)
        self.assertEqual(metrics.ready(), (200, b'{"ready": true}\n'))

    async def test_sqlite_shows_its_queue_and_how_long_its_commits_took(self) -> None:
        # The store answers from its writer thread through the reactor: a real one.
        store = SQLiteStore(os.path.abspath(self.mktemp()), reactor)
        self.addCleanup(store.close)
        server = Harness(store=store)
        metrics = Metrics(server.service, server.clock, in_thread=now)
        first = store.set_intro("seas", "hello")
        second = store.set_intro("columbia", "hi")
        samples = scraped(metrics)[0]
        # One in the writer's batch, one waiting for the next.
        self.assertEqual(value(samples, "chat_store_queued_operations"), 2)
        self.assertEqual(value(samples, "chat_store_commit_seconds_count"), 0)
        await first
        await second
        samples = scraped(metrics)[0]
        self.assertEqual(value(samples, "chat_store_queued_operations"), 0)
        self.assertEqual(value(samples, "chat_store_operations_total"), 2)
        self.assertEqual(value(samples, "chat_store_commit_seconds_count"), 2)
        self.assertEqual(value(samples, "chat_store_commit_seconds_bucket", le="+Inf"), 2)
        self.assertGreater(value(samples, "chat_store_commit_seconds_sum"), 0)


class DurationsTests(unittest.TestCase):
    def test_buckets_are_cumulative_and_a_bound_holds_what_equals_it(self) -> None:
        durations = Durations([0.1, 1.0])
        for seconds in (0.05, 0.1, 0.5, 3.0):
            durations.record(seconds)
        self.assertEqual(durations.cumulative(), [(0.1, 2), (1.0, 3), (float("inf"), 4)])
        self.assertEqual(durations.count, 4)
        self.assertAlmostEqual(durations.sum, 3.65)


class ReadinessTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = Health("the database chat.sqlite", self.clock)

    def readiness(self, peers: Any = None, **kwargs: Any) -> Readiness:
        service = SimpleNamespace(store=SimpleNamespace(health=self.store), peers=peers)
        return Readiness(cast(Any, service), **kwargs)

    def test_ready_when_every_listener_listens_and_the_store_works(self) -> None:
        listeners = [FakeListener("--port"), FakeListener("--web")]
        self.assertEqual(self.readiness(listeners=listeners).missing(), [])

    def test_a_listener_that_does_not_listen_is_missing(self) -> None:
        listeners = [FakeListener("--port"), FakeListener("--web", listening=False)]
        self.assertEqual(self.readiness(listeners=listeners).missing(), ["--web: not listening"])

    def test_a_node_is_not_ready_before_it_joined_the_cluster(self) -> None:
        redis = Health("Redis at tcp:db:6379", self.clock)
        joined: Deferred[None] = Deferred()
        readiness = self.readiness(SimpleNamespace(health=redis), joined=joined)
        self.assertEqual(readiness.missing(), ["cluster: not joined yet"])
        joined.callback(None)
        self.assertEqual(readiness.missing(), [])

    def test_redis_away_is_said_once_with_why_though_the_store_is_redis_too(self) -> None:
        redis = Health("Redis at tcp:db:6379", self.clock)
        self.store = redis
        readiness = self.readiness(SimpleNamespace(health=redis), joined=succeed(None))
        redis.lost("the connection was lost (Connection refused)")
        self.assertEqual(readiness.missing(), ["redis: the connection was lost (Connection refused)"])
        redis.restored()
        self.assertEqual(readiness.missing(), [])

    def test_a_long_reason_is_cut_to_one_short_line(self) -> None:
        self.store.lost("disk\nfull " + "x" * 500)
        [missing] = self.readiness().missing()
        self.assertTrue(missing.startswith("store: disk full xxx"), missing)
        self.assertLessEqual(len(missing), 170)
        self.assertTrue(missing.endswith("..."))

    def test_a_server_that_stops_is_not_ready(self) -> None:
        server = Harness()
        metrics = Metrics(server.service, server.clock, in_thread=now)
        metrics.startService()
        self.assertEqual(metrics.ready()[0], 200)
        metrics.stopService()
        self.assertEqual(metrics.ready(), (503, b'{"ready": false, "missing": ["server: stopping"]}\n'))


class LagTests(unittest.TestCase):
    def test_lag_is_how_late_each_tick_ran(self) -> None:
        clock = Clock()
        lag = LagMonitor(clock, interval=0.5)
        lag.start()
        clock.advance(0.5)  # on time
        clock.advance(0.8)  # due at 1.0, run at 1.3: a turn of 0.3 s before it
        self.assertEqual(lag.lags.count, 2)
        self.assertAlmostEqual(lag.lags.sum, 0.3)
        buckets = dict(lag.lags.cumulative())
        self.assertEqual((buckets[0.001], buckets[0.25], buckets[0.5]), (1, 1, 2))
        self.assertEqual(lag.last_tick, 1.3)
        lag.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_the_lag_histogram_is_scraped(self) -> None:
        server = Harness()
        metrics = Metrics(server.service, server.clock, in_thread=now, lag_interval=0.5)
        metrics.startService()
        self.addCleanup(metrics.stopService)
        server.clock.advance(0.5)
        server.clock.advance(0.6)
        samples = scraped(metrics)[0]
        self.assertEqual(value(samples, "chat_reactor_lag_seconds_count"), 2)
        self.assertAlmostEqual(value(samples, "chat_reactor_lag_seconds_sum"), 0.1, places=5)
        self.assertEqual(value(samples, "chat_reactor_lag_seconds_bucket", le="0.001"), 1)

    def test_the_monitor_runs_only_while_the_service_does(self) -> None:
        server = Harness()
        metrics = Metrics(server.service, server.clock, in_thread=now)
        before = len(server.clock.getDelayedCalls())
        metrics.startService()
        self.assertTrue(metrics.lag.running)
        self.assertEqual(len(server.clock.getDelayedCalls()), before + 1)
        metrics.stopService()
        self.assertFalse(metrics.lag.running)
        self.assertEqual(len(server.clock.getDelayedCalls()), before)

    def test_healthz_says_ok_while_the_reactor_ticks_and_stalled_when_it_did_not(self) -> None:
        server = Harness()
        metrics = Metrics(server.service, server.clock, in_thread=now)
        metrics.startService()
        self.addCleanup(metrics.stopService)
        server.clock.advance(1)
        self.assertEqual(metrics.health(), (200, b"ok\n"))
        # Time passes and nothing runs: a reactor stuck in one turn.
        server.clock.rightNow += 7
        code, body = metrics.health()
        self.assertEqual(code, 503)
        self.assertTrue(body.startswith(b"stalled: the reactor has not ticked for 7."), body)


class HTTPTests(unittest.TestCase):
    """The port over HTTP: three paths, GET and HEAD, nothing else, no Server header."""

    def setUp(self) -> None:
        self.server = Harness()
        self.held: list[Deferred[bytes]] = []
        self.metrics = Metrics(self.server.service, self.server.clock, in_thread=self.encode)
        self.hold = False

    def encode(self, work: Callable[[], bytes]) -> Deferred[bytes]:
        if not self.hold:
            return succeed(work())
        d: Deferred[bytes] = Deferred()
        d.addCallback(lambda _: work())
        self.held.append(d)
        return d

    def connect(self) -> tuple[Any, StringTransport]:
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        channel = self.metrics.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        assert channel is not None
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, Failure(Exception("test over")))
        return channel, transport

    def request(self, method: str, path: str, headers: str = "") -> tuple[int, dict[str, str], bytes]:
        channel, transport = self.connect()
        channel.dataReceived(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
        return self.response(transport)

    def response(self, transport: StringTransport) -> tuple[int, dict[str, str], bytes]:
        head, _, body = transport.value().partition(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, text = line.partition(":")
            headers[name.strip().lower()] = text.strip()
        return int(status.split()[1]), headers, body

    def test_metrics_is_prometheus_text_without_a_server_header(self) -> None:
        code, headers, body = self.request("GET", "/metrics")
        self.assertEqual(code, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"), headers)
        self.assertEqual(int(headers["content-length"]), len(body))
        self.assertNotIn("server", headers)
        self.assertIn(("chat_deliveries_total", ()), parse(body))

    def test_openmetrics_is_served_to_who_asks_for_it(self) -> None:
        code, headers, body = self.request(
            "GET", "/metrics", "Accept: application/openmetrics-text; version=1.0.0\r\n"
        )
        self.assertEqual(code, 200)
        self.assertTrue(headers["content-type"].startswith("application/openmetrics-text"), headers)
        self.assertTrue(body.endswith(b"# EOF\n"))

    def test_readyz_and_healthz(self) -> None:
        self.assertEqual(self.request("GET", "/readyz")[::2], (200, b'{"ready": true}\n'))
        self.assertEqual(self.request("GET", "/healthz")[::2], (200, b"ok\n"))

    def test_any_other_path_is_a_short_404(self) -> None:
        for path in ("/", "/metrics/", "/favicon.ico", "/readyz/x"):
            code, _, body = self.request("GET", path)
            self.assertEqual(code, 404, path)
            self.assertLess(len(body), 100)

    def test_other_methods_are_refused_with_405_and_allow(self) -> None:
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            code, headers, _ = self.request(method, "/metrics")
            self.assertEqual(code, 405, method)
            self.assertEqual(headers["allow"], "GET, HEAD")

    def test_head_has_the_headers_and_no_body(self) -> None:
        for path in ("/metrics", "/readyz", "/healthz"):
            code, headers, body = self.request("HEAD", path)
            self.assertEqual((code, body), (200, b""), path)
            self.assertGreater(int(headers["content-length"]), 0)

    def test_too_many_waiting_scrapes_are_refused_with_503(self) -> None:
        self.hold = True
        transports = []
        for _ in range(MAX_WAITING_SCRAPES + 1):  # one encoding, the rest waiting
            channel, transport = self.connect()
            channel.dataReceived(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            transports.append(transport)
        self.assertEqual(len(self.held), 1)
        code, _, body = self.request("GET", "/metrics")
        self.assertEqual(code, 503)
        self.assertIn(b"Too many scrapes", body)
        self.assertFailure(self.metrics.scrape(), Busy)
        # They are answered one at a time, each with its own reading.
        while self.held:
            self.held.pop(0).callback(b"")
        self.assertEqual([self.response(t)[0] for t in transports], [200] * len(transports))

    def test_a_scraper_that_hangs_up_before_the_answer_is_not_written_to(self) -> None:
        self.hold = True
        channel, transport = self.connect()
        channel.dataReceived(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        channel.connectionLost(Failure(Exception("gone")))
        self.held.pop().callback(b"")
        self.assertEqual(transport.value(), b"")


class RecordingCollector(Collector):
    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def collect(self) -> Iterator[Any]:
        self.threads.append(threading.current_thread())
        return iter(())


class ChatRecordingCollector(ChatCollector):
    def __init__(self, inner: ChatCollector) -> None:
        super().__init__(inner.service, inner.lag)
        self.threads: list[threading.Thread] = []

    def collect(self) -> Iterator[Any]:
        self.threads.append(threading.current_thread())
        return super().collect()


class ThreadTests(unittest.TestCase):
    async def test_the_chat_is_read_in_the_reactor_thread_and_encoded_in_another(self) -> None:
        server = Harness()
        # The real reactor: its thread pool does the encoding.
        metrics = Metrics(server.service, reactor)
        process = RecordingCollector()
        metrics.process.register(process)
        chat = metrics.collector = ChatRecordingCollector(metrics.collector)
        body, _ = await metrics.scrape()
        self.assertIn(b"chat_logins_total", body)
        self.assertIn(b"process_cpu_seconds_total", body)
        self.assertEqual(chat.threads, [threading.current_thread()])
        [encoder] = process.threads
        self.assertIsNot(encoder, threading.current_thread())


class TapTests(unittest.TestCase):
    def options(self, *args: str) -> Options:
        users = self.mktemp()
        with open(users, "w") as f:
            f.write("columbia 116bway\n")
        options = Options()
        options.parseOptions(["--users", users, "--database", ":memory:", *args])
        return options

    def test_without_metrics_there_is_no_metrics_port(self) -> None:
        service = makeService(self.options(), MemoryReactorClock())
        self.assertFalse(any(isinstance(s, Metrics) for s in IServiceCollection(service)))
        options = [s.option for s in IServiceCollection(service) if isinstance(s, Listener)]
        self.assertEqual(options, ["--port"])

    def test_metrics_listens_on_its_endpoint_and_is_ready_once_the_chat_listens(self) -> None:
        reactor = MemoryReactorClock()
        service = makeService(self.options("--metrics", "tcp:9119:interface=127.0.0.1"), reactor)
        children = list(IServiceCollection(service))
        [metrics] = [s for s in children if isinstance(s, Metrics)]
        options = [s.option for s in children if isinstance(s, Listener)]
        self.assertEqual(options, ["--metrics", "--port"])
        self.assertEqual(metrics.ready()[0], 503)
        service.privilegedStartService()
        service.startService()
        ports = [(port, interface) for port, _, _, interface in reactor.tcpServers]
        self.assertIn((9119, "127.0.0.1"), ports)
        self.assertEqual(metrics.ready(), (200, b'{"ready": true}\n'))
        self.assertTrue(metrics.lag.running)
        service.stopService()
        self.assertFalse(metrics.lag.running)
        code, body = metrics.ready()
        self.assertEqual(code, 503)
        self.assertIn(b"--port: not listening", body)

    def test_an_unusable_metrics_endpoint_is_one_line(self) -> None:
        with self.assertRaises(SystemExit) as caught:
            makeService(self.options("--metrics", "bogus:1"), MemoryReactorClock())
        message = str(caught.exception.code)
        self.assertTrue(message.startswith("twistd chat: --metrics 'bogus:1' is not usable"), message)
