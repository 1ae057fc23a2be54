"""The token bucket and the exempt networks."""

from __future__ import annotations

from twisted.trial import unittest

from chat.server.limits import Exemptions, TokenBucket
from chat.server.session import Settings
from tests.harness import Harness


class TokenBucketTests(unittest.TestCase):
    def test_burst_then_rate(self) -> None:
        bucket = TokenBucket.full(rate=2, burst=3, now=0)
        self.assertEqual([bucket.take(0) for _ in range(4)], [True, True, True, False])
        self.assertFalse(bucket.take(0.4))
        self.assertTrue(bucket.take(0.5))
        self.assertFalse(bucket.take(0.5))

    def test_tokens_never_exceed_the_burst(self) -> None:
        bucket = TokenBucket.full(rate=100, burst=2, now=0)
        bucket.take(0)
        self.assertEqual([bucket.take(1000) for _ in range(3)], [True, True, False])

    def test_time_going_backwards_adds_nothing(self) -> None:
        bucket = TokenBucket.full(rate=1, burst=1, now=10)
        self.assertTrue(bucket.take(10))
        self.assertFalse(bucket.take(5))


class ExemptionsTests(unittest.TestCase):
    def test_covers_networks_and_single_addresses(self) -> None:
        exempt = Exemptions.parse("127.0.0.0/8, ::1,192.0.2.7")
        self.assertTrue(exempt.covers("127.1.2.3"))
        self.assertTrue(exempt.covers("::1"))
        self.assertTrue(exempt.covers("192.0.2.7"))
        self.assertFalse(exempt.covers("192.0.2.8"))
        self.assertFalse(exempt.covers("not an address"))

    def test_ipv4_mapped_ipv6_addresses_count_as_ipv4(self) -> None:
        self.assertTrue(Exemptions.parse("127.0.0.0/8").covers("::ffff:127.0.0.1"))

    def test_empty_covers_nothing(self) -> None:
        self.assertFalse(Exemptions.parse("").covers("127.0.0.1"))

    def test_bad_entry_is_named(self) -> None:
        with self.assertRaises(ValueError) as caught:
            Exemptions.parse("10.0.0.0/8,10.0.0.300")
        self.assertEqual(str(caught.exception), "'10.0.0.300' is not an IP network or address")


class ExemptSessionTests(unittest.TestCase):
    def test_exempt_addresses_skip_the_connection_and_flood_limits(self) -> None:
        server = Harness(settings=Settings(exempt=Exemptions.parse("10.9.0.0/16")), max_per_host=2)
        conns = [server.connect("10.9.0.1") for _ in range(5)]
        self.assertTrue(all(c.read() == "Username: " for c in conns))
        conn = server.login("columbia", host="10.9.0.1")
        conn.send_bytes(b"whoelse\n" * 100)
        self.assertEqual(conn.read().count("Nobody else is online."), 100)

    def test_other_addresses_keep_their_limits(self) -> None:
        server = Harness(settings=Settings(exempt=Exemptions.parse("10.9.0.0/16")), max_per_host=2)
        conn = server.login("columbia", host="10.8.0.1")
        conn.send_bytes(b"whoelse\n" * 30)
        self.assertIn("Slow down", conn.read())
        server.connect("10.8.0.1")
        self.assertIn("Too many connections", server.connect("10.8.0.1").read())
