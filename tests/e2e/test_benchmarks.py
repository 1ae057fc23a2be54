"""
The benchmark tools run for real: a seconds-long run of the runner, the
cluster benchmark and the fuzzer with tiny numbers, so the tools never rot.
Nothing here asserts on speed: the figures of a smoke run on a shared
machine mean nothing, only their shape does.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from tests import ROOT

# Every scenario's code path, tiny: fanout by window, fanout by rate, private,
# connect and the storm.  fanout-1000 and fanout-5000 only differ in numbers.
SMOKE_SCENARIOS = "fanout-100,latency-50k,private-500,connect-10k,storm"


COMMON_FIELDS = {
    "tool": str,
    "scenario": str,
    "conns": int,
    "login_ok": int,
    "login_failed": int,
    "login_time_s": (int, float),
    "server_pid": int,
    "aborted": bool,
    "bench": str,
    "server": str,
    "repeat": int,
    "generator": str,
}


TRAFFIC_FIELDS = {
    "deliveries_per_s": (int, float),
    "deliveries_measured": int,
    "completeness": (int, float),
    "lat_p50_ms": (int, float),
    "lat_p99_ms": (int, float),
    "server_cpu_pct": (int, float),
    "server_cpu_sys_pct": (int, float),
    "server_cpu_s_per_delivery": (int, float),
    "loadgen_cpu_pct": (int, float),
    "sent": int,
    "fanout": int,
}


STORM_FIELDS = {
    "lag_p50_ms": (int, float),
    "lag_p99_ms": (int, float),
    "lag_max_ms": (int, float),
    "lag_samples": int,
    "lag_method": str,
    "storm_logins_ok": int,
    "storm_logins_per_s": (int, float),
}


async def benchmark(case: unittest.TestCase, *argv: str) -> tuple[bytes, str]:
    """Run C{python -m benchmarks ARGV}; its output, and that it exited with 0 (or fail C{case})."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    out, err, code = await getProcessOutputAndValue(
        sys.executable, ["-m", "benchmarks", *argv], env=env, path=ROOT, reactor=reactor
    )
    case.assertEqual(code, 0, err.decode("utf-8", "replace")[-3000:])
    return out, err.decode("utf-8", "replace")


class SmokeTests(unittest.TestCase):
    """The runner end to end: both servers, the Python generator, tiny numbers."""

    timeout = 300

    async def test_quick_run_of_every_scenario(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        table_path = os.path.join(directory, "results.rst")
        json_path = os.path.join(directory, "runs.jsonl")
        argv = ["run", "--quick", "--scenarios", SMOKE_SCENARIOS]
        argv += ["--output", table_path, "--json", json_path, "--workdir", os.path.join(directory, "work")]
        out, _ = await benchmark(self, *argv)

        lines = [line for line in out.decode().splitlines() if line.startswith("{")]
        records = [json.loads(line) for line in lines]
        names = SMOKE_SCENARIOS.split(",")
        self.assertEqual(
            sorted((r["bench"], r["server"]) for r in records),
            sorted((n, s) for n in names for s in ("ours", "baseline")),
        )
        for r in records:
            what = f"{r['bench']} {r['server']}: {r}"
            self.assertFalse(r["aborted"], what)
            self.assertEqual(r["login_ok"], r["conns"] + (1 if r["scenario"] == "storm" else 0), what)
            fields = dict(COMMON_FIELDS)
            if r["scenario"] != "storm":
                fields["rss_kib_per_conn"] = (int, float)
            if r["scenario"] in ("fanout", "private"):
                fields.update(TRAFFIC_FIELDS)
            if r["scenario"] == "storm":
                fields.update(STORM_FIELDS)
            for field, kind in fields.items():
                self.assertIsInstance(r.get(field), kind, f"{field} of {what}")
            if r["scenario"] in ("fanout", "private"):
                self.assertGreater(r["deliveries_measured"], 0, what)
                self.assertGreaterEqual(r["completeness"], 0)
                self.assertLessEqual(r["completeness"], 1)
            if r["scenario"] == "storm":
                self.assertGreater(r["lag_samples"], 0, what)
                self.assertGreater(r["storm_logins_ok"], 0, what)

        with open(json_path) as f:
            self.assertEqual([json.loads(line) for line in f], records)
        with open(table_path) as f:
            table = f.read()
        self.assertIn(table, out.decode())
        self.assertTrue(table.startswith("QUICK RUN"))
        for label in (
            "fan-out, 100 receivers",
            "50,000 deliveries/s",
            "private",
            "10,000 logged in",
            "storm",
        ):
            self.assertIn(label, table)
        self.assertNotIn("Runs with problems", table)

    async def test_the_floor_answers_each_private_message_and_keeps_it_in_sqlite(self) -> None:
        directory = os.path.abspath(self.mktemp())
        work = os.path.join(directory, "work")
        out, _ = await benchmark(
            self, "run", "--quick", "--floor", "--scenarios", "private-500", "--workdir", work
        )
        records = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
        floor = next(r for r in records if r["server"] == "baseline")
        self.assertGreater(floor["deliveries_measured"], 0, floor)
        self.assertIn("The baseline is the floor", out.decode())
        with sqlite3.connect(os.path.join(work, "private-500-baseline-1", "floor.sqlite")) as db:
            (kept,) = db.execute("SELECT count(*) FROM message").fetchone()
        # Every message sent was kept (warm-up ones too, which are not measured).
        self.assertGreaterEqual(kept, floor["deliveries_measured"])


class ClusterSmokeTests(unittest.TestCase):
    """The cluster benchmark end to end: its own Redis, two nodes, tiny numbers, seconds."""

    timeout = 120

    async def test_quick_run(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        table_path = os.path.join(directory, "cluster.rst")
        json_path = os.path.join(directory, "cluster.jsonl")
        argv = ["cluster", "--quick", "--output", table_path, "--json", json_path]
        argv += ["--workdir", os.path.join(directory, "work")]
        out, _ = await benchmark(self, *argv)

        records = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
        self.assertEqual(
            sorted((r["bench"], r["placement"]) for r in records),
            [("fanout", "across"), ("fanout", "within"), ("private", "across"), ("private", "within")],
        )
        for r in records:
            what = f"{r['bench']} {r['placement']}: {r}"
            self.assertFalse(r["aborted"], what)
            self.assertEqual(r["login_ok"], r["conns"], what)
            self.assertGreater(r["deliveries_measured"], 0, what)
            self.assertLessEqual(r["completeness"], 1, what)
            self.assertGreater(r["redis_commands_per_message"]["total"], 0, what)
            self.assertIsInstance(r["node_b_cpu_s_per_delivery"], (int, float), what)
            self.assertIsInstance(r["node_a_cpu_s_per_delivery"], (int, float), what)
            self.assertIsInstance(r["redis_cpu_s_per_delivery"], (int, float), what)
        across = next(r for r in records if r["bench"] == "private" and r["placement"] == "across")
        # A message to another node goes into the recipient's inbox, by a
        # script that also passes it on: the inbox is not read for it.
        commands = across["redis_commands_per_message"]
        self.assertGreater(commands.get("EVALSHA", 0), 0)
        self.assertGreater(commands.get("XADD", 0), 0)
        self.assertLess(commands.get("XRANGE", 0), commands["XADD"] / 2)
        # Both nodes' CPU, from the load generator: --server-pid and --sender-server-pid.
        self.assertIsInstance(across["sender_server_pid"], int)
        self.assertNotEqual(across["sender_server_pid"], across["server_pid"])
        self.assertIsInstance(across["sender_server_cpu_s_per_delivery"], (int, float))

        with open(json_path) as f:
            self.assertEqual([json.loads(line) for line in f], records)
        with open(table_path) as f:
            table = f.read()
        self.assertIn(table, out.decode())
        self.assertTrue(table.startswith("QUICK RUN"))
        self.assertIn("cores", table)
        self.assertIn("--rate 1000000 --burst 1000000", table)
        self.assertNotIn("Runs with problems", table)
        rows = {line.split("  ")[0]: line.split("  ")[1:] for line in table.splitlines() if "  " in line}
        for label in (
            "fan-out to 20: deliveries/s",
            "fan-out: Redis commands per broadcast",
            "private, 10 pairs x 4 in flight: messages/s",
            "private: Redis commands per message",
        ):
            cells = [c.strip() for c in rows[label] if c.strip()]
            within, across_cell = (float(c.split()[0].replace(",", "")) for c in cells[:2])
            self.assertGreater(within, 0, label)
            self.assertGreater(across_cell, 0, label)
        self.assertIn("private: XADD (in scripts) per message", rows)
        self.assertIn("private: EVALSHA per message", rows)


class FuzzSmokeTests(unittest.TestCase):
    """The fuzzer end to end: its own server, a few hundred sessions."""

    timeout = 300

    async def test_quick_run(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        table_path = os.path.join(directory, "fuzz.rst")
        json_path = os.path.join(directory, "fuzz.jsonl")
        argv = ["-m", "benchmarks", "fuzz", "--quick", "--output", table_path, "--json", json_path]
        argv += ["--workdir", os.path.join(directory, "work")]
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        out, err, code = await getProcessOutputAndValue(
            sys.executable, argv, env=env, path=ROOT, reactor=reactor
        )
        diagnostics = err.decode("utf-8", "replace")[-3000:]
        records = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
        self.assertEqual(len(records), 1, diagnostics)
        r = records[0]
        # What the server does is the fuzzer's finding, not this test's: the
        # exit status says whether it found anything, and the tool must work.
        self.assertEqual(code, 0 if r["exceptions"] == 0 and r["login_after"] else 1, diagnostics)
        self.assertEqual((r["tcp_sessions"], r["ws_sessions"]), (300, 100))
        self.assertEqual(r["fuzzer_errors"], [])
        self.assertLess(sum(r["tcp_outcomes"].get(k, 0) for k in ("could not connect", "timed out")), 30, r)
        self.assertGreater(r["tcp_outcomes"].get("closed by the server", 0), 0, r)
        self.assertGreater(r["peak_rss_kib"], 0)
        self.assertTrue(r["login_after_tcp"], r)
        for saved in os.listdir(os.path.join(directory, "work", "failing")) if r["failing_sessions"] else []:
            with open(os.path.join(directory, "work", "failing", saved)) as f:
                self.assertIn("steps", json.load(f)["sessions"][0])
        with open(json_path) as f:
            self.assertEqual([json.loads(line) for line in f], records)
        with open(table_path) as f:
            table = f.read()
        self.assertIn(table, out.decode())
        self.assertTrue(table.startswith("QUICK RUN"))
        self.assertIn("exceptions escaped (server log)", table)
