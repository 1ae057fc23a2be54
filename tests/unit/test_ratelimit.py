"""The token bucket, the exempt networks, and the count of open connections."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.trial import unittest

from chat.server.context import Settings
from chat.server.limits import (
    ConnectionCount,
    Exemptions,
    TokenBucket,
    connection_capacity,
    descriptor_limit,
)
from chat.server.quietlog import QuietLog
from tests.unit.harness import Harness, capture_log


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


class Holder:
    """What a slot's owner is to the count: a connection with a transport, logged in or not."""

    def __init__(self, count: ConnectionCount, host: str, logged_in: bool = False) -> None:
        self.transport = StringTransport()
        self.logged_in = logged_in
        self.slot = count.admit(host)
        self.slot.owner = self
        self.slot.logged_in = lambda: self.logged_in

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnected)

    def lose(self) -> None:
        self.slot.release()


class ConnectionCountTests(unittest.TestCase):
    """One count per address, whatever the edge, from the moment a connection is accepted."""

    def test_an_address_is_refused_past_its_limit_until_one_of_its_connections_closes(self) -> None:
        count = ConnectionCount(max_per_host=2, descriptors=None)
        first, second = count.admit("10.0.0.1"), count.admit("10.0.0.1")
        third = count.admit("10.0.0.1")
        self.assertEqual([s.refused for s in (first, second, third)], [False, False, True])
        self.assertEqual(count["10.0.0.1"], 2)
        self.assertFalse(count.admit("10.0.0.2").refused)
        third.release()
        self.assertEqual(count["10.0.0.1"], 2)
        first.release()
        first.release()  # only the first release counts
        self.assertEqual(count["10.0.0.1"], 1)
        self.assertFalse(count.admit("10.0.0.1").refused)

    def test_exempt_addresses_are_not_counted(self) -> None:
        count = ConnectionCount(max_per_host=1, exempt=Exemptions.parse("10.9.0.0/16"), descriptors=None)
        slots = [count.admit("10.9.0.1") for _ in range(5)]
        self.assertFalse(any(s.refused or s.counted for s in slots))
        self.assertEqual(count["10.9.0.1"], 0)

    def test_a_connection_being_closed_stops_counting_against_its_address(self) -> None:
        """The server closes it: it can carry nothing more, so it holds no place of its address's."""
        count = ConnectionCount(max_per_host=1, descriptors=None)
        slot = count.admit("10.0.0.1")
        slot.closing()
        self.assertFalse(count.admit("10.0.0.1").refused)
        self.assertEqual(count.open, 2)
        slot.release()
        self.assertEqual((count.open, count["10.0.0.1"]), (1, 1))

    def test_a_connection_is_counted_again_under_the_address_a_proxy_names(self) -> None:
        count = ConnectionCount(max_per_host=1, descriptors=None)
        taken = count.admit("10.1.2.3")
        slot = count.admit("127.0.0.1")
        count.readdress(slot, "10.1.2.3")
        self.assertTrue(slot.refused)
        self.assertEqual((count["127.0.0.1"], count["10.1.2.3"]), (0, 1))
        count.readdress(count.admit("127.0.0.1"), "10.9.9.9")
        self.assertEqual((count["127.0.0.1"], count["10.9.9.9"]), (0, 1))
        taken.release()
        slot.release()
        self.assertEqual(count["10.1.2.3"], 0)


class CapacityTests(unittest.TestCase):
    def test_the_reserve_is_a_tenth_of_the_limit_or_64(self) -> None:
        self.assertEqual(
            [connection_capacity(n) for n in (256, 1024, 65536, 64)],
            [256 - 64, 1024 - 102, 65536 - 6553, 16],
        )

    def test_the_limit_is_the_processs_own_by_default(self) -> None:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        count = ConnectionCount()
        if soft == resource.RLIM_INFINITY:
            self.assertIsNone(count.capacity)
        else:
            self.assertEqual((count.descriptors, count.capacity), (soft, connection_capacity(soft)))
        self.assertEqual(descriptor_limit(), count.descriptors)


class SheddingTests(unittest.TestCase):
    """
    At the limit of descriptors (less the reserve) a new connection gets in
    by closing one that has not logged in: never one that has.
    """

    def setUp(self) -> None:
        # 80 descriptors: room for 20 connections.
        self.count = ConnectionCount(max_per_host=1000, descriptors=80)
        self.assertEqual(self.count.capacity, 20)

    def fill(self, hosts: list[str], logged_in: bool = False) -> list[Holder]:
        return [Holder(self.count, host, logged_in) for host in hosts]

    def test_below_the_capacity_nobody_is_closed(self) -> None:
        held = self.fill(["10.0.0.1"] * 19)
        newcomer = Holder(self.count, "10.0.0.2")
        self.assertFalse(any(h.closed for h in held) or newcomer.slot.dropped)

    def test_at_the_capacity_the_newest_unfinished_connection_of_the_busiest_address_is_closed(self) -> None:
        busy = self.fill(["10.0.0.1"] * 12)
        quiet = self.fill(["10.0.0.2"] * 8)
        newcomer = Holder(self.count, "10.0.0.3")
        self.assertFalse(newcomer.slot.dropped)
        self.assertEqual([h for h in busy + quiet if h.closed], [busy[-1]])
        self.assertEqual((self.count.open, self.count.live), (21, 20))
        busy[-1].lose()
        self.assertEqual((self.count.open, self.count.live), (20, 20))

    def test_a_newcomer_from_a_quiet_address_outlasts_a_flood_from_busy_ones(self) -> None:
        flood = self.fill([f"10.0.0.{i % 4}" for i in range(20)])
        newcomer = Holder(self.count, "10.9.9.9")
        for i in range(100):
            flood.append(Holder(self.count, f"10.0.0.{i % 4}"))
            for closed in [h for h in flood if h.closed]:
                closed.lose()  # its connection is lost, as the abort makes it
                flood.remove(closed)
        self.assertFalse(newcomer.closed)
        self.assertEqual((self.count.open, self.count.live), (20, 20))

    def test_a_logged_in_user_is_never_closed_to_make_room(self) -> None:
        users = self.fill(["10.0.0.1"] * 15, logged_in=True)
        unfinished = self.fill(["10.0.0.2"] * 5)
        newcomers = self.fill(["10.0.0.3"] * 5)
        self.assertFalse(any(n.slot.dropped for n in newcomers))
        self.assertEqual(sum(h.closed for h in unfinished + newcomers), 5)
        self.assertFalse(any(u.closed for u in users))

    def test_a_connection_that_logged_in_since_it_came_is_kept(self) -> None:
        held = self.fill(["10.0.0.1"] * 20)
        held[-1].logged_in = True
        Holder(self.count, "10.0.0.2")
        self.assertEqual([h for h in held if h.closed], [held[-2]])

    def test_when_everyone_has_logged_in_the_newcomer_is_dropped(self) -> None:
        users = self.fill(["10.0.0.1"] * 20, logged_in=True)
        newcomer = Holder(self.count, "10.0.0.2")
        self.assertTrue(newcomer.slot.dropped)
        self.assertFalse(any(u.closed for u in users))
        newcomer.lose()
        users[0].lose()
        self.assertFalse(Holder(self.count, "10.0.0.2").slot.dropped)

    def test_what_is_closed_to_make_room_is_logged_once_a_minute(self) -> None:
        events = capture_log(self)
        clock = Clock()
        quiet = QuietLog(Logger(), clock)
        self.fill(["10.0.0.1"] * 20)
        for _ in range(5):
            self.count.admit("10.0.0.2", quiet)
        written = [e for e in events if e.get("kind", "").startswith("connections closed to make room")]
        self.assertEqual(len(written), 1)
        self.assertEqual(written[0]["host"], "10.0.0.1")
