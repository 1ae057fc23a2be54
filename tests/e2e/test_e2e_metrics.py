"""
The metrics port end to end: a real ``twistd -n chat --metrics ...``
scraped over HTTP while users chat over TCP, and a node of a cluster whose
real redis-server is stopped and started again under it.  Every wait polls
with a deadline; none sleeps blindly.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor as _reactor
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from tests.e2e.redis_server import redis_server
from tests.e2e.support import Lab, ServerProcess, delivered
from tests.expect import until

reactor: Any = _reactor

T = TypeVar("T")

#: The metrics port, on a port of the server's choosing (read from its log).
METRICS = ("--metrics", "tcp:0:interface=127.0.0.1")

#: How soon /readyz must say Redis is gone once it is (the node sees its connections close).
NOTICED = 5.0
#: How soon it must say ready again once Redis is back (one backoff: 0.25 s first, at most 5 s).
RECOVERY = 15.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def metrics_port(server: ServerProcess) -> int:
    found = await server.expect_log(r"MetricsSite starting on (\d+)")
    return int(found.group(1))


async def get(port: int, path: str) -> tuple[int, bytes]:
    response = await Agent(reactor).request(b"GET", f"http://127.0.0.1:{port}{path}".encode())
    body = await readBody(response)
    return response.code, body


async def scrape(port: int) -> Samples:
    code, body = await get(port, "/metrics")
    assert code == 200, (code, body)
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def ready(port: int) -> tuple[int, dict[str, Any]]:
    code, body = await get(port, "/readyz")
    return code, json.loads(body)


async def within(seconds: float, what: str, check: Callable[[], Awaitable[T | None]]) -> T:
    """Ask C{check} every tenth of a second until it gives something, for at most C{seconds}."""
    found: T = await until(check, what, seconds, every=0.1)
    return found


class MetricsTests(unittest.TestCase):
    async def test_counts_move_while_two_users_chat_and_the_server_says_ready(self) -> None:
        lab = Lab(self)
        server, port = await lab.start(*METRICS)
        metrics = await metrics_port(server)
        self.assertEqual(await get(metrics, "/healthz"), (200, b"ok\n"))
        self.assertEqual(await ready(metrics), (200, {"ready": True}))
        before = await scrape(metrics)

        columbia = await lab.login(port, "columbia")
        seas = await lab.login(port, "seas")
        columbia.send("message seas lunch at noon?")
        await seas.expect(delivered("columbia", "private", "lunch at noon?"))
        seas.send("broadcast message yes!")
        await columbia.expect(delivered("seas", "broadcast", "yes!"))
        after = await scrape(metrics)

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        self.assertEqual(moved("chat_logins_total", result="ok"), 2)
        self.assertEqual(moved("chat_messages_total", kind="private"), 1)
        self.assertEqual(moved("chat_messages_total", kind="broadcast"), 1)
        self.assertEqual(moved("chat_deliveries_total"), 2)
        self.assertEqual(value(after, "chat_sessions", edge="tcp"), 2)
        self.assertEqual(value(after, "chat_store_up"), 1)
        self.assertGreater(value(after, "process_resident_memory_bytes"), 0)

        # The history of those messages is written in the store's next
        # commit; the reactor's lag is measured every half second.
        async def committed_and_ticked() -> Samples | None:
            samples = await scrape(metrics)
            grew = value(samples, "chat_store_commit_seconds_count") > value(
                before, "chat_store_commit_seconds_count"
            )
            ticked = value(samples, "chat_reactor_lag_seconds_count") > 0
            return samples if grew and ticked else None

        await within(5, "a commit of the store and a tick of the reactor", committed_and_ticked)

        columbia.send("logout")
        await columbia.expect("Goodbye")

        async def logged_out() -> Samples | None:
            samples = await scrape(metrics)
            return samples if value(samples, "chat_sessions", edge="tcp") == 1 else None

        samples = await within(5, "one session left", logged_out)
        self.assertEqual(value(samples, "chat_logouts_total", why="logout"), 1)

    async def test_readyz_turns_503_when_redis_stops_and_200_when_it_is_back(self) -> None:
        redis = redis_server(self)
        lab = Lab(self)
        server = lab.server("--redis", redis.endpoint, "--node", "a", *METRICS)
        await server.start()  # once it has joined the cluster
        metrics = await metrics_port(server)
        self.assertEqual(await ready(metrics), (200, {"ready": True}))
        samples = await scrape(metrics)
        self.assertEqual(value(samples, "chat_redis_up"), 1)
        self.assertEqual(value(samples, "chat_redis_links_connected"), value(samples, "chat_redis_links"))

        redis.stop()

        async def not_ready() -> dict[str, Any] | None:
            code, body = await ready(metrics)
            return body if code == 503 else None

        body = await within(NOTICED, "/readyz to say 503", not_ready)
        self.assertFalse(body["ready"])
        self.assertTrue(any(m.startswith("redis: ") for m in body["missing"]), body)
        samples = await scrape(metrics)
        self.assertEqual(value(samples, "chat_redis_up"), 0)
        self.assertEqual(value(samples, "chat_redis_outages_total"), 1)
        # The process still turns: that is health, not readiness.
        self.assertEqual(await get(metrics, "/healthz"), (200, b"ok\n"))

        redis.start()  # on the same socket

        async def ready_again() -> bool:
            return await ready(metrics) == (200, {"ready": True})

        await within(RECOVERY, "/readyz to say 200 again", ready_again)
        samples = await scrape(metrics)
        self.assertEqual(value(samples, "chat_redis_up"), 1)
        self.assertEqual(value(samples, "chat_redis_links_connected"), value(samples, "chat_redis_links"))
