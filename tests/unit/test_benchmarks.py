"""
The benchmark tools: their logic in isolation.  Seconds-long runs of the
tools with tiny numbers, so they never rot: L{tests.e2e.test_benchmarks}.
"""

from __future__ import annotations

import base64
import json
import os
import socket

from twisted.trial import unittest

from benchmarks import cluster, fuzz, markers, procfs, report, runner, stacks, users
from benchmarks.ledger import Ledger
from benchmarks.loadgen import LoadError, is_loopback, plan
from benchmarks.servers import find_port
from benchmarks.stats import Histogram, bucket_of, bucket_value, median, ratio
from chat.server.auth import ScryptSecret, load_users


class HistogramTests(unittest.TestCase):
    def test_small_values_are_exact(self) -> None:
        for v in range(64):
            self.assertEqual(bucket_value(bucket_of(v)), v)

    def test_large_values_are_within_a_bucket_of_their_value(self) -> None:
        for v in (64, 65, 100, 1000, 12_345, 999_999, 10**9):
            mid = bucket_value(bucket_of(v))
            self.assertLessEqual(abs(mid - v) / v, 1 / 64, v)

    def test_buckets_are_ordered_like_values(self) -> None:
        indices = [bucket_of(v) for v in range(0, 100_000, 7)]
        self.assertEqual(indices, sorted(indices))

    def test_percentiles(self) -> None:
        h = Histogram()
        for v in range(1, 101):
            h.add(v)
        self.assertEqual(h.percentile(0.5), 50)
        self.assertEqual(h.percentile(0.99), 99)
        self.assertEqual(h.percentile(1.0), 100)
        self.assertEqual(h.maximum, 100)
        self.assertEqual(h.mean(), 50.5)

    def test_a_percentile_never_exceeds_the_maximum(self) -> None:
        h = Histogram()
        h.add(1000)
        self.assertEqual(h.percentile(0.99), 1000)

    def test_empty(self) -> None:
        self.assertEqual(Histogram().percentile(0.99), 0)
        self.assertEqual(Histogram().mean(), 0.0)

    def test_merge_through_json_is_adding_up(self) -> None:
        a, b, both = Histogram(), Histogram(), Histogram()
        for v in range(0, 5000, 3):
            a.add(v)
            both.add(v)
        for v in range(7, 90_000, 11):
            b.add(v)
            both.add(v)
        merged = Histogram.from_json(json.loads(json.dumps(a.to_json())))
        merged.merge(Histogram.from_json(json.loads(json.dumps(b.to_json()))))
        self.assertEqual(merged.counts, both.counts)
        self.assertEqual((merged.n, merged.total, merged.maximum), (both.n, both.total, both.maximum))
        for p in (0.5, 0.9, 0.99):
            self.assertEqual(merged.percentile(p), both.percentile(p))


class MedianTests(unittest.TestCase):
    def test_median_of_odd_and_even_counts(self) -> None:
        self.assertEqual(median([3, 1, 2]), 2)
        self.assertEqual(median([4, 1, 3, 2]), 2.5)

    def test_missing_values_are_left_out(self) -> None:
        self.assertEqual(median([None, 5.0, None]), 5.0)
        self.assertIsNone(median([]))
        self.assertIsNone(median([None]))

    def test_ratio(self) -> None:
        self.assertEqual(ratio(9.0, 10.0), 0.9)
        self.assertIsNone(ratio(None, 10.0))
        self.assertIsNone(ratio(1.0, 0.0))


class MarkerTests(unittest.TestCase):
    def test_text_is_padded_to_its_size(self) -> None:
        text = markers.make_text(3, 7, 123456789, 64)
        self.assertEqual(len(text), 64)
        self.assertTrue(text.startswith(b"~LG3.7.123456789~x"))

    def test_a_long_marker_is_not_cut(self) -> None:
        self.assertEqual(markers.make_text(1, 2, 3, 4), b"~LG1.2.3~")

    def test_markers_are_found_after_any_prefix(self) -> None:
        chunk = (
            b"user0001 (broadcast): ~LG1004.0.5551234~xxxx\r\n"
            b"Command: \r\nuser0002: ~LG7.12.99~xx\r\n"
            b"Broadcast to 3 users.\r\n"
        )
        self.assertEqual(markers.parse(chunk), [(1004, 5551234), (7, 99)])

    def test_broken_markers_are_ignored(self) -> None:
        self.assertEqual(markers.parse(b"~LG1.2~ ~LGx.1.2~ ~LG1.2.3\r\n"), [])

    def test_chatload_markers_are_read(self) -> None:
        # chatload's own format: sender, sequence, nanoseconds since its start.
        self.assertEqual(markers.parse(b"a (private): ~LG12.0.1000~xxxxxxxx\r\n"), [(12, 1000)])


STAT = (
    "4242 (tw istd) (x) S 1 4242 4242 0 -1 4194560 2335 0 0 0 "
    "150 37 0 0 20 0 3 0 1234 123456789 9000 18446744073709551615 "
    "1 1 0 0 0 0 0 16781312 17415 0 0 0 17 1 0 0 0 0 0"
)

NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1017 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 55501 1 0
   1: 0100007F:1017 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 55502 1 0
   2: 0100007F:1018 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 55503 1 0
"""


class ProcTests(unittest.TestCase):
    def test_ticks_count_fields_after_the_name(self) -> None:
        self.assertEqual(procfs.parse_stat_ticks(STAT), (150, 37))

    def test_status_fields(self) -> None:
        status = "Name:\ttwistd\nVmHWM:\t   50000 kB\nVmRSS:\t   41234 kB\n"
        self.assertEqual(procfs.parse_status_kib(status, "VmRSS"), 41234)
        self.assertEqual(procfs.parse_status_kib(status, "VmHWM"), 50000)
        self.assertIsNone(procfs.parse_status_kib(status, "VmSwap"))

    def test_listening_sockets_of_a_port(self) -> None:
        self.assertEqual(procfs.listening_inodes(NET_TCP, 0x1017), {55501})
        self.assertEqual(procfs.listening_inodes(NET_TCP, 0x1018), {55503})
        self.assertEqual(procfs.listening_inodes(NET_TCP, 80), set())

    def test_system_ticks(self) -> None:
        stat = "cpu  100 5 50 1000 20 0 3 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
        self.assertEqual(procfs.parse_system_ticks(stat), (158, 1178))

    def test_this_process(self) -> None:
        seconds = procfs.cpu_seconds(os.getpid())
        self.assertIsNotNone(seconds)
        self.assertGreater(procfs.status_kib(os.getpid()) or 0, 0)
        self.assertIsNone(procfs.cpu_seconds(-1))

    def test_the_listener_of_a_port_is_found(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            self.assertEqual(procfs.find_listener_pid(s.getsockname()[1]), os.getpid())

    def test_machine_names_the_cores(self) -> None:
        self.assertIn(f"{os.cpu_count()} cores", procfs.machine())


class LedgerTests(unittest.TestCase):
    def test_one_process_needs_no_file(self) -> None:
        ledger = Ledger(4)
        ledger.local[2] += 5
        ledger.publish([2])
        self.assertEqual(ledger.total(2), 5)

    def test_processes_see_each_others_counts_once_published(self) -> None:
        path = self.mktemp()
        Ledger.create(path, columns=3, rows=2)
        a = Ledger(3, path, row=0, rows=2)
        b = Ledger(3, path, row=1, rows=2)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        a.local[1] = 10
        b.local[1] = 4
        self.assertEqual(a.total(1), 10)
        b.publish([1])
        self.assertEqual(a.total(1), 14)
        a.publish([0, 1, 2])
        self.assertEqual(b.total(1), 14)
        self.assertEqual(b.total(0), 0)


class UsersTests(unittest.TestCase):
    def test_plain_users_file(self) -> None:
        path = self.mktemp()
        users.write(path, 3)
        with open(path) as f:
            self.assertEqual(f.read(), "user0001 pw0001\nuser0002 pw0002\nuser0003 pw0003\n")
        self.assertEqual(os.stat(path).st_mode & 0o077, 0)
        self.assertEqual(users.read(path)[2], ("user0003", "pw0003"))

    def test_hashed_users_file_is_the_servers_format(self) -> None:
        path = self.mktemp()
        users.write(path, 2, hashed=True, log_n=4)
        secrets = load_users(path)
        self.assertIsInstance(secrets["user0002"], ScryptSecret)
        self.assertTrue(secrets["user0002"].verify(b"pw0002"))
        self.assertEqual(users.read(path), [("user0001", "pw0001"), ("user0002", "pw0002")])


class PlanTests(unittest.TestCase):
    accounts = [(users.name(i), users.password(i)) for i in range(1, 41)]

    def test_fanout_senders_come_after_the_receivers(self) -> None:
        (share,) = plan("fanout", self.accounts, n=10, senders=4, processes=1)
        conns = share["conns"]
        self.assertEqual(len(conns), 14)
        self.assertEqual([c[0] for c in conns], list(range(14)))
        self.assertEqual({c[3] for c in conns[:10]}, {"r"})
        self.assertEqual({c[3] for c in conns[10:]}, {"s"})
        self.assertEqual({c[4] for c in conns}, {None})

    def test_fanout_is_shared_among_processes(self) -> None:
        shares = plan("fanout", self.accounts, n=10, senders=3, processes=3)
        indices = sorted(c[0] for s in shares for c in s["conns"])
        self.assertEqual(indices, list(range(13)))
        self.assertTrue(all(s["conns"] for s in shares))

    def test_private_pairs_stay_in_one_process(self) -> None:
        shares = plan("private", self.accounts, n=9, senders=None, processes=3)
        seen = 0
        for share in shares:
            indices = {c[0] for c in share["conns"]}
            for c in share["conns"]:
                self.assertIn(c[0] ^ 1, indices)
                self.assertEqual(c[4], self.accounts[c[0] ^ 1][0])
                self.assertEqual(c[3], "s")
            seen += len(indices)
        self.assertEqual(seen, 10)

    def test_private_senders_can_be_fewer(self) -> None:
        (share,) = plan("private", self.accounts, n=10, senders=4, processes=1)
        self.assertEqual([c[3] for c in share["conns"]].count("s"), 4)

    def test_storm_gives_each_slot_its_own_user(self) -> None:
        shares = plan("storm", self.accounts, n=0, senders=None, processes=2, concurrency=5)
        self.assertEqual(shares[0]["probe"], list(self.accounts[0]))
        self.assertNotIn("probe", shares[1])
        slots = [u[0] for s in shares for u in s["storm_users"]]
        self.assertEqual(sorted(slots), [a[0] for a in self.accounts[1:6]])

    def test_only_a_server_on_this_machine_is_looked_up(self) -> None:
        self.assertTrue(is_loopback("127.0.0.1"))
        self.assertTrue(is_loopback("localhost"))
        self.assertFalse(is_loopback("192.0.2.1"))
        self.assertFalse(is_loopback("no such host.invalid"))

    def test_every_connection_goes_to_the_run_port_by_default(self) -> None:
        for scenario in ("fanout", "private", "connect"):
            (share,) = plan(scenario, self.accounts, n=10, senders=4, processes=1)
            self.assertEqual({c[5] for c in share["conns"]}, {None}, scenario)

    def test_fanout_senders_go_to_the_sender_port(self) -> None:
        (share,) = plan("fanout", self.accounts, n=10, senders=4, processes=1, sender_port=7)
        ports = {c[0]: c[5] for c in share["conns"]}
        self.assertEqual({ports[i] for i in range(10)}, {None})
        self.assertEqual({ports[i] for i in range(10, 14)}, {7})

    def test_private_pairs_are_split_between_the_ports(self) -> None:
        shares = plan("private", self.accounts, n=10, senders=None, processes=2, sender_port=7)
        for share in shares:
            for index, _, _, role, _, port in share["conns"]:
                self.assertEqual(port, 7 if index % 2 == 0 else None, index)
                self.assertEqual(role, "s")

    def test_too_few_users(self) -> None:
        self.assertRaises(LoadError, plan, "connect", self.accounts, 41, None, 1)
        self.assertRaises(LoadError, plan, "storm", self.accounts, 0, None, 1, 40)


_LOOP = "<module> (twistd:8);ReactorBase.mainLoop (twisted/internet/base.py:697)"
PROFILE = f"""\
{_LOOP};doRead (tcp.py:1);broadcast (chat/service.py:10);write (abstract.py:5) 6
{_LOOP};doRead (tcp.py:1);broadcast (chat/service.py:12) 3
{_LOOP};doPoll (epollreactor.py:2) 1
_bootstrap (threading.py:1);wait (threading.py:320) 10
not a sample line
"""


class StacksTests(unittest.TestCase):
    def test_reactor_thread_self_and_inclusive(self) -> None:
        profile = stacks.parse(PROFILE.splitlines(keepends=True))
        self.assertEqual((profile.samples, profile.reactor), (20, 10))
        self.assertEqual(profile.own["write (abstract.py)"], 6)
        # Two lines of one function add up.
        self.assertEqual(profile.own["broadcast (chat/service.py)"], 3)
        self.assertEqual(profile.subtree["broadcast (chat/service.py)"], 9)
        self.assertEqual(profile.others["wait (threading.py)"], 10)
        self.assertEqual(profile.percent(9), 90.0)

    def test_report(self) -> None:
        text = stacks.report(stacks.parse(PROFILE.splitlines()), top=5)
        self.assertIn("20 samples, 10 on the reactor thread (50%)", text)
        self.assertIn("   90.0%  broadcast (chat/service.py)", text)
        self.assertIn("   60.0%  write (abstract.py)", text)
        self.assertNotIn("mainLoop", text.split("inclusive:")[1].split("other threads")[0])
        self.assertIn("   50.0%  wait (threading.py)", text)


def _record(bench: str, server: str, repeat: int, **figures: float) -> dict[str, object]:
    return {"bench": bench, "server": server, "repeat": repeat, "aborted": False, **figures}


class ReportTests(unittest.TestCase):
    records = [
        _record("fanout-1000", "ours", 1, deliveries_per_s=900.0, server_cpu_s_per_delivery=2e-6),
        _record("fanout-1000", "baseline", 1, deliveries_per_s=1000.0, server_cpu_s_per_delivery=1e-6),
        _record("fanout-1000", "ours", 2, deliveries_per_s=800.0),
        _record("fanout-1000", "baseline", 2, deliveries_per_s=1000.0),
        _record("fanout-1000", "ours", 3, deliveries_per_s=1000.0),
        _record("fanout-1000", "baseline", 3, deliveries_per_s=1000.0),
        _record("connect-10k", "ours", 1, rss_kib_per_conn=4.5, login_time_s=0.5),
        _record("connect-10k", "baseline", 1, rss_kib_per_conn=1.5, login_time_s=0.2),
        {"bench": "connect-10k", "server": "ours", "repeat": 2, "aborted": True, "first_error": "boom"},
    ]

    def row(self, label_start: str) -> list[str]:
        lines = report.table(self.records).splitlines()
        (line,) = [line for line in lines if line.startswith(label_start)]
        return line.split("  ")

    def test_medians_ratios_and_targets(self) -> None:
        rows = {r.figure.label: r for r in report.rows(self.records)}
        fanout = rows["fan-out, 1,000 receivers: deliveries/s"]
        self.assertEqual(sorted(fanout.ours), [800.0, 900.0, 1000.0])
        self.assertEqual(fanout.ratio, 0.9)
        self.assertTrue(fanout.met)
        rss = rows["10,000 logged in: RSS KiB per connection"]
        self.assertEqual(rss.ours, [4.5])  # the aborted run is left out
        self.assertFalse(rss.met)
        self.assertTrue(rows["10,000 logins, 50 in flight: seconds"].met)

    def test_only_scenarios_that_ran_have_rows(self) -> None:
        benches = {r.figure.bench for r in report.rows(self.records)}
        self.assertEqual(benches, {"fanout-1000", "connect-10k"})

    def test_table_cells(self) -> None:
        text = report.table(self.records)
        self.assertIn("900 ±11%", text)
        self.assertIn("1,000", text)
        self.assertIn("n/a", text)  # CPU per delivery of one run: a median, no spread
        self.assertIn(">= 0.9x baseline", text)
        self.assertIn("NO", text)
        lines = text.splitlines()
        self.assertEqual(lines[0], lines[2])
        self.assertEqual(lines[0], lines[-1])
        widths = [len(w) for w in lines[0].split("  ")]
        self.assertEqual(len(widths), 6)

    def test_cpu_per_delivery_is_shown_in_microseconds(self) -> None:
        rows = {r.figure.label: r for r in report.rows(self.records)}
        row = rows["fan-out, 1,000: server CPU µs/delivery"]
        self.assertEqual(report.cell(row.ours, row.figure), "2.00")
        self.assertAlmostEqual(row.ratio or 0, 2.0)

    def test_targets_describe_themselves(self) -> None:
        self.assertEqual(report.Target("ratio_at_least", 0.9).describe(), ">= 0.9x baseline")
        self.assertEqual(report.Target("ratio_at_most", 1).describe(), "<= baseline")
        self.assertEqual(report.Target("at_most", 20, "ms").describe(), "<= 20 ms")
        self.assertIsNone(report.Target("ratio_at_least", 0.9).met(1.0, None))

    def test_problems_are_listed(self) -> None:
        notes = report.problems(
            [
                *self.records,
                _record("private-500", "ours", 1, completeness=0.5, login_failed=2, lost_after_login=1),
            ]
        )
        self.assertEqual(len(notes), 4)
        self.assertIn("connect-10k ours run 2: aborted: boom", notes)

    def test_document_says_where(self) -> None:
        text = report.document(self.records, ["Measured on a test."])
        self.assertTrue(text.startswith("Measured on a test.\n\n===="))
        self.assertIn("Runs with problems:", text)


class RunnerTests(unittest.TestCase):
    def test_chatload_gets_the_reference_commands(self) -> None:
        fanout, latency, private, connect = (
            next(s for s in runner.FULL if s.name == name)
            for name in ("fanout-1000", "latency-50k", "private-500", "connect-10k")
        )
        base = ["cl", "--port", "9", "--users", "u"]
        self.assertEqual(
            runner.chatload_argv("cl", fanout, 9, "u", 42),
            [
                *base,
                *("--scenario", "fanout", "--n", "1000", "--server-pid", "42", "--label", "fanout-1000"),
                *("--senders", "4", "--window", "16", "--duration", "8", "--warmup", "2.0", "--quickack"),
            ],
        )
        self.assertIn("--rate", runner.chatload_argv("cl", latency, 9, "u", 42))
        self.assertEqual(
            runner.chatload_argv("cl", latency, 9, "u", 42)[-3:], ["--rate", "12.5", "--quickack"]
        )
        argv = runner.chatload_argv("cl", private, 9, "u", 42)
        self.assertEqual(argv[argv.index("--window") + 1], "4")
        self.assertNotIn("--senders", argv)
        argv = runner.chatload_argv("cl", connect, 9, "u", 42)
        self.assertEqual(argv[argv.index("--n") + 1], "10000")
        self.assertEqual(argv[argv.index("--concurrency") + 1], "50")

    def test_python_generator_gets_the_same_numbers(self) -> None:
        fanout = next(s for s in runner.FULL if s.name == "fanout-5000")
        argv = runner.python_argv(fanout, 9, "u", 42, 2)
        for option, value in (("--n", "5000"), ("--senders", "4"), ("--window", "16"), ("--processes", "2")):
            self.assertEqual(argv[argv.index(option) + 1], value)

    def test_quick_scenarios_are_tiny(self) -> None:
        for s in runner.FULL:
            q = runner.quick(s)
            self.assertLessEqual(q.n, 20)
            self.assertLess(q.duration, 1)
            self.assertEqual(q.name, s.name)

    def test_cpu_per_delivery_from_a_chatload_record(self) -> None:
        record: dict[str, object] = {"server_cpu_pct": 50.0, "deliveries_per_s": 100_000.0}
        runner.derive(record)
        self.assertEqual(record["server_cpu_s_per_delivery"], 5e-6)
        self.assertIs(record["aborted"], False)
        record = {"server_cpu_pct": -1, "deliveries_per_s": 1.0, "rss_kib_per_conn": -1}
        runner.derive(record)
        self.assertNotIn("server_cpu_s_per_delivery", record)
        self.assertIsNone(record["server_cpu_pct"])
        self.assertIsNone(record["rss_kib_per_conn"])

    def test_the_port_is_read_from_either_servers_log(self) -> None:
        self.assertEqual(find_port(b"... [-] ChatFactory starting on 43121\n"), 43121)
        self.assertEqual(find_port(b"x BareFactory starting on 5\n"), 5)
        self.assertIsNone(find_port(b"Starting factory <BareFactory>\n"))


COMMANDSTATS = """\
# Commandstats
cmdstat_evalsha:calls=12,usec=400,usec_per_call=33.33,rejected_calls=0,failed_calls=0
cmdstat_publish:calls=30,usec=90,usec_per_call=3.00,rejected_calls=0,failed_calls=0
cmdstat_config|resetstat:calls=1,usec=53,usec_per_call=53.00,rejected_calls=0,failed_calls=0
cmdstat_info:calls=4,usec=20,usec_per_call=5.00,rejected_calls=0,failed_calls=0
"""


def _cluster_record(kind: str, placement: str, repeat: int, **figures: object) -> dict[str, object]:
    return {"bench": kind, "placement": placement, "repeat": repeat, "aborted": False, **figures}


class ClusterTests(unittest.TestCase):
    """The cluster benchmark's arithmetic, without a cluster."""

    def test_commandstats(self) -> None:
        calls = cluster.parse_commandstats(COMMANDSTATS)
        self.assertEqual(calls, {"evalsha": 12, "publish": 30, "config|resetstat": 1, "info": 4})

    def test_command_counts_leave_out_the_measuring(self) -> None:
        before = {"evalsha": 2, "publish": 30, "info": 1}
        after = {"evalsha": 12, "publish": 30, "info": 3, "xrange": 5}
        self.assertEqual(cluster.command_counts(before, after), {"evalsha": 10, "xrange": 5})

    def test_commands_per_message_tell_scripts_from_round_trips(self) -> None:
        record: dict[str, object] = {"deliveries_measured": 100, "sent_measured": 10, "server_cpu_pct": 50.0}
        record["server_cpu_s_per_delivery"] = 0.01
        watched = {
            "window_s": 2.0,
            "cpu_s": {"redis": 0.5, "a": 0.1, "b": 1.0},
            "commands": {"evalsha": 10, "xadd": 10, "publish": 10, "xrange": 5},
        }
        cluster.derive(record, watched, cluster.Case("private", across=False))
        self.assertEqual(
            record["redis_commands_per_message"],
            {"EVALSHA": 1.0, "XADD": 1.0, "PUBLISH": 1.0, "XRANGE": 0.5, "total": 3.5, "sent": 2.5},
        )
        self.assertEqual(record["redis_cpu_s_per_delivery"], 0.005)
        self.assertEqual(record["redis_cpu_pct"], 25.0)
        # Within one node, node a has no clients: its CPU is read by the cluster tool.
        self.assertEqual(record["node_a_cpu_s_per_delivery"], 0.001)
        self.assertEqual(record["node_b_cpu_pct"], 50.0)
        self.assertEqual(record["cluster_cpu_s_per_delivery"], 0.016)

    def test_table_has_both_placements_and_their_ratio(self) -> None:
        records = [
            _cluster_record(
                "fanout",
                placement,
                k,
                deliveries_per_s=rate,
                redis_commands_per_message={
                    "total": 1.0,
                    "sent": 0.5,
                    "PUBLISH": 0.5,
                    "HSET": 0.001,
                    "XADD": 0.0001 if placement == "within" else 1.0,
                },
            )
            for placement, rates in (("within", (100.0, 90.0, 110.0)), ("across", (50.0, 40.0, 60.0)))
            for k, rate in enumerate(rates, 1)
        ]
        text = cluster.table(records, cluster.Settings(n=1000))
        lines = {line.split("  ")[0]: line for line in text.splitlines()}
        self.assertIn("100 ±10%", lines["fan-out to 1,000: deliveries/s"])
        self.assertTrue(lines["fan-out to 1,000: deliveries/s"].endswith("0.50"))
        self.assertIn("fan-out: PUBLISH per broadcast", lines)
        self.assertIn("fan-out: other commands (HSET) per broadcast", lines)
        # No ratio to what shows as zero.
        self.assertTrue(lines["fan-out: XADD (in scripts) per broadcast"].endswith("n/a"))
        self.assertNotIn("private", text)

    def test_what_the_nodes_logged_during_a_run(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        node = cluster.Node("a", [], directory)
        with open(node.log_path, "w") as f:
            f.write("2026-11-29T20:28:41+0000 [chat.server.tap#warn] users file in plain text\n")
        offset = node.log_size()
        with open(node.log_path, "a") as f:
            f.write("2026-11-29T20:29:00+0000 [chat.server.service#info] 4 online\n")
            f.write(
                "2026-11-29T20:29:14+0000 [chat.server.backends.redis.cluster#info] "
                "node b stopped answering; its users are offline now\n"
            )
        lines = node.noteworthy(offset)
        self.assertEqual(len(lines), 1)
        record = _cluster_record("private", "within", 2, node_log={"a": lines})
        self.assertEqual(
            cluster.problems([record]),
            ["private within run 2: node a logged: node b stopped answering; its users are offline now"],
        )

    def test_quick_settings_are_tiny(self) -> None:
        options = cluster.parse(["--quick"])
        self.assertEqual(options.repeat, 1)
        self.assertLessEqual(options.settings.n, 20)
        self.assertLess(options.settings.duration, 1)
        self.assertEqual(cluster.parse(["--n", "100"]).settings.n, 100)


class FuzzTests(unittest.TestCase):
    """The fuzzer's plans and its reading of the server's log, without a server."""

    accounts = [(users.name(i), users.password(i)) for i in range(1, 11)]

    def test_a_session_is_planned_the_same_from_the_same_seed(self) -> None:
        for index in range(50):
            self.assertEqual(fuzz.tcp_plan(7, index, self.accounts), fuzz.tcp_plan(7, index, self.accounts))
            self.assertEqual(
                fuzz.ws_plan(7, index, self.accounts, "127.0.0.1:1"),
                fuzz.ws_plan(7, index, self.accounts, "127.0.0.1:1"),
            )
        self.assertNotEqual(
            [fuzz.tcp_plan(7, i, self.accounts) for i in range(5)],
            [fuzz.tcp_plan(8, i, self.accounts) for i in range(5)],
        )

    def test_saved_sessions_carry_their_bytes(self) -> None:
        plan = fuzz.ws_plan(3, 1, self.accounts, "127.0.0.1:1")
        saved = json.loads(json.dumps(plan.to_json(3)))
        self.assertEqual(saved["replay"], "python -m benchmarks fuzz --seed 3 --replay ws:1")
        sent = [s for s in saved["steps"] if s["op"] == "send"]
        self.assertEqual(
            [base64.b64decode(s["data_b64"]) for s in sent], [s.data for s in plan.steps if s.op == "send"]
        )

    def test_frames_are_described_unmasked(self) -> None:
        import random

        rng = random.Random(0)
        data = fuzz.frame(rng, b'{"type":"whoelse"}') + fuzz.frame(rng, b"x", opcode=0x9, fin=False)
        data += fuzz.frame(rng, b"abc", length=10)
        self.assertEqual(
            fuzz.describe_frames(data),
            ['text: {"type":"whoelse"}', "ping (not final): x", "text (says 10 bytes, has 3): abc"],
        )

    def test_the_edges_are_interleaved(self) -> None:
        order = list(fuzz.schedule(10, 5))
        everything = [("tcp", i) for i in range(10)] + [("ws", i) for i in range(5)]
        self.assertEqual(sorted(order), sorted(everything))
        self.assertEqual([edge for edge, _ in order[:6]].count("ws"), 2)

    def test_escaped_exceptions_are_found_in_the_log(self) -> None:
        log = (
            b"2026-12-05T23:52:51+0000 [-] ChatSite starting on 1\n"
            b"2026-12-05T23:52:59+0000 [_GenericHTTPChannelProtocol,1,127.0.0.1] Unhandled Error\n"
            b"\tTraceback (most recent call last):\n"
            b'\t  File "x.py", line 1, in f\n'
            b"\twsproto.utilities.LocalProtocolError: Event Pong(payload=b'x') cannot be sent\n"
            b"\t\n"
            b"2026-12-05T23:53:00+0000 [chat.server.service#info] 3 online\n"
            b"2026-12-05T23:53:01+0000 [chat.server.edges.web._SecureRequest#critical] \n"
            b"\tTraceback (most recent call last):\n"
            b"\tbuiltins.ValueError: embedded null byte at 0x7f4c73217a10\n"
        )
        records = fuzz.escaped_records(log)
        self.assertEqual(
            [fuzz.exception_kind(r) for r in records],
            [
                "wsproto.utilities.LocalProtocolError: Event Pong(payload=b'x') cannot be sent",
                "builtins.ValueError: embedded null byte at 0x...",
            ],
        )
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "server.log")
        with open(path, "wb") as f:
            f.write(log[:100])
        watch = fuzz.LogWatch(path)
        with open(path, "ab") as f:
            f.write(log[100:])
        self.assertEqual(len(watch.poll()), 2)
        self.assertEqual(watch.poll(), [])

    def test_quick_settings_are_small(self) -> None:
        options = fuzz.parse(["--quick", "--seed", "5"])
        self.assertEqual((options.settings.tcp, options.settings.ws, options.settings.seed), (300, 100, 5))
        self.assertEqual(fuzz.parse(["--tcp", "10"]).settings.tcp, 10)


class HotPathTests(unittest.TestCase):
    def test_the_in_process_private_path_runs_and_checks_its_answers(self) -> None:
        from benchmarks import hotpath

        result = hotpath.run(messages=200, pairs=2, repeat=2)
        self.assertEqual(result["messages_per_round"], 200)
        self.assertGreater(result["us_per_message_median"], 0)
        self.assertLessEqual(result["us_per_message_best"], result["us_per_message_median"])

    def test_instructions_per_message_are_the_difference_of_two_runs(self) -> None:
        from benchmarks import hotpath

        asked: list[tuple[int, int]] = []

        def count(messages: int, pairs: int) -> int:
            # Setup costs 5,000,000; each message 80,000.
            asked.append((messages, pairs))
            return 5_000_000 + 80_000 * messages

        result = hotpath.instructions(10_000, 50, count)
        self.assertEqual(result["instructions_per_message"], 80_000)
        self.assertEqual(asked, [(2_000, 50), (12_000, 50)])

    def test_callgrinds_count_is_read_from_its_report(self) -> None:
        from benchmarks import hotpath

        report = (
            "==123== Events    : Ir\n==123== Collected : 1,234,567,890\n==123==\n"
            "==123== I   refs:  1,234,567,890\n"
        )
        self.assertEqual(hotpath.collected(report), 1_234_567_890)
        self.assertRaises(ValueError, hotpath.collected, "valgrind: no such tool\n")
