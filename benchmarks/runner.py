"""
``python -m benchmarks run``: every scenario against our server and the bare
baseline, alternating, repeated; one JSON line per run on stdout, then the
results table.

Each scenario gets a fresh pair of servers on free loopback ports, and the
connect scenario a fresh pair for every run, since RSS per connection only
means something on a process that has not served anything yet.  Runs of the
two servers alternate (ours first on odd repetitions, baseline first on
even ones), so a slow stretch of a noisy machine lands on both.

With C{--chatload PATH} the C load generator drives every scenario it has
(connect, fanout, private); the storm always uses the Python generator,
which has the probe.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import attrs
from twisted.logger import Logger

from benchmarks import procfs, report, users
from benchmarks.servers import Server, ServerError, baseline_argv, ours_argv

log = Logger()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@attrs.frozen
class Scenario:
    """One line of the plan: a load generator scenario with its numbers."""

    name: str
    kind: str  # connect, fanout, private, storm
    n: int = 0
    senders: int | None = None
    window: int = 4
    rate: float = 0.0
    duration: float = 10.0
    warmup: float = 2.0
    concurrency: int = 50
    hold: float = 1.0
    #: Fresh servers for every run, not only for every scenario.
    fresh: bool = False

    @property
    def connections(self) -> int:
        if self.kind == "fanout":
            return self.n + (self.senders or 1)
        if self.kind == "storm":
            return self.concurrency + 1
        return self.n


#: The figures of the performance targets, with chatload's reference numbers.
FULL: tuple[Scenario, ...] = (
    Scenario("fanout-100", "fanout", n=100, senders=4, window=16, duration=8),
    Scenario("fanout-1000", "fanout", n=1000, senders=4, window=16, duration=8),
    Scenario("fanout-5000", "fanout", n=5000, senders=4, window=16, duration=8),
    Scenario("latency-50k", "fanout", n=1000, senders=4, rate=12.5),
    Scenario("private-500", "private", n=1000, window=4),
    Scenario("connect-10k", "connect", n=10000, concurrency=50, fresh=True),
    Scenario("storm", "storm", concurrency=50),
)
NAMES = tuple(s.name for s in FULL)


def quick(s: Scenario) -> Scenario:
    """The same scenario with tiny numbers: proves the machinery, measures nothing."""
    return attrs.evolve(
        s,
        n=min(s.n, 20),
        concurrency=min(s.concurrency, 4),
        duration=0.6,
        warmup=0.2,
        hold=0.1,
    )


def chatload_argv(path: str, s: Scenario, port: int, users_file: str, pid: int) -> list[str]:
    """The reference commands, as the targets were measured."""
    argv = [path, "--port", str(port), "--users", users_file, "--scenario", s.kind, "--n", str(s.n)]
    argv += ["--server-pid", str(pid), "--label", s.name]
    if s.kind == "connect":
        return [*argv, "--concurrency", str(s.concurrency), "--hold", str(s.hold)]
    if s.senders is not None:
        argv += ["--senders", str(s.senders)]
    argv += ["--window", str(s.window), "--duration", str(s.duration), "--warmup", str(s.warmup)]
    if s.rate:
        argv += ["--rate", str(s.rate)]
    return [*argv, "--quickack"]


def python_argv(s: Scenario, port: int, users_file: str, pid: int, processes: int) -> list[str]:
    argv = [sys.executable, "-m", "benchmarks", "load", "--port", str(port), "--users", users_file]
    argv += ["--scenario", s.kind, "--n", str(s.n), "--server-pid", str(pid), "--label", s.name]
    argv += ["--processes", str(processes), "--concurrency", str(s.concurrency)]
    if s.kind == "connect":
        return [*argv, "--hold", str(s.hold)]
    if s.senders is not None:
        argv += ["--senders", str(s.senders)]
    argv += ["--window", str(s.window), "--duration", str(s.duration), "--warmup", str(s.warmup)]
    if s.rate:
        argv += ["--rate", str(s.rate)]
    return argv


def time_limit(s: Scenario) -> float:
    """How long one run may take before it is killed."""
    return 120 + s.warmup + s.duration + s.hold + s.n / 100


def run_load(argv: Sequence[str], limit: float) -> dict[str, Any]:
    """Run a load generator; its last JSON line, or a record saying why there is none."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    try:
        done = subprocess.run(list(argv), capture_output=True, timeout=limit, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"aborted": True, "first_error": f"load generator killed after {limit:.0f}s"}
    for line in reversed(done.stdout.decode("utf-8", "replace").splitlines()):
        if line.startswith("{"):
            record: dict[str, Any] = json.loads(line)
            return record
    err = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return {
        "aborted": True,
        "first_error": f"no JSON from the load generator (exit {done.returncode}): {' / '.join(err[-3:])}",
    }


def derive(record: dict[str, Any]) -> None:
    """Figures the Python generator reports and chatload's record lets us compute."""
    if record.get("aborted") is None:
        record["aborted"] = bool(record.get("aborted"))
    if "server_cpu_s_per_delivery" not in record:
        cpu, rate = record.get("server_cpu_pct"), record.get("deliveries_per_s")
        if isinstance(cpu, (int, float)) and isinstance(rate, (int, float)) and cpu >= 0 and rate > 0:
            record["server_cpu_s_per_delivery"] = float(f"{cpu / 100 / rate:.3g}")
    for key in ("server_cpu_pct", "rss_kib_per_conn"):
        if record.get(key) == -1:
            record[key] = None


class Bench:
    """The run: users files, servers, and the records gathered."""

    def __init__(self, options: argparse.Namespace, scenarios: Sequence[Scenario], directory: str) -> None:
        self.options = options
        self.scenarios = scenarios
        self.directory = directory
        self.records: list[dict[str, Any]] = []
        self.servers: list[Server] = []
        self.plain = os.path.join(directory, "users.txt")
        self.hashed = os.path.join(directory, "users-hashed.txt")
        self.extra = shlex.split(options.chat_args)

    def prepare(self) -> None:
        plain = max([s.connections for s in self.scenarios if s.kind != "storm"], default=0)
        if plain:
            users.write(self.plain, plain)
        storm = max([s.connections for s in self.scenarios if s.kind == "storm"], default=0)
        if storm:
            log.info("hashing {n} passwords for the storm", n=storm)
            users.write(self.hashed, storm, hashed=True, log_n=self.options.hash_log_n)

    def start(self, which: str, s: Scenario, round_: int) -> Server:
        users_file = self.hashed if s.kind == "storm" else self.plain
        directory = os.path.join(self.directory, f"{s.name}-{which}-{round_}")
        os.makedirs(directory, exist_ok=True)
        if which == "ours":
            argv = ours_argv(users_file, os.path.join(directory, "chat.sqlite"), self.extra)
        else:
            argv = baseline_argv(os.path.join(directory, "floor.sqlite") if self.options.floor else None)
        server = Server(which, argv, directory)
        self.servers.append(server)
        server.start()
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers = []

    def run(self) -> None:
        self.prepare()
        for s in self.scenarios:
            pair: dict[str, Server] = {}
            try:
                for k in range(self.options.repeat):
                    order = ("ours", "baseline") if k % 2 == 0 else ("baseline", "ours")
                    for which in order:
                        self.attempt(s, which, pair, k + 1)
            except ServerError as e:
                log.error("{scenario}: {error}", scenario=s.name, error=str(e))
                self.records.append({"bench": s.name, "aborted": True, "first_error": str(e)})
            finally:
                self.stop_all()

    def attempt(self, s: Scenario, which: str, pair: dict[str, Server], repeat: int) -> None:
        """
        One run, with a server started for it if need be.  A server that
        exits during the run was stopped by something else on this shared
        machine, not by the load: the run is done again, once, on a fresh one.
        """
        for attempt in (1, 2):
            if which not in pair or s.fresh:
                if which in pair:
                    pair[which].stop()
                pair[which] = self.start(which, s, repeat)
            server = pair[which]
            record = self.measure(s, which, server, repeat)
            code = server.process.poll() if server.process is not None else None
            if code is None:
                break
            del pair[which]
            record["aborted"] = True
            record["first_error"] = f"the {which} server exited during the run (status {code})"
            log.warn("{error}:\n{tail}", error=record["first_error"], tail=server.tail())
            server.stop()
            if attempt == 1:
                log.warn("running {scenario} {which} again on a fresh server", scenario=s.name, which=which)
        record["attempts"] = attempt
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
        self.records.append(record)
        if record.get("aborted"):
            log.warn(
                "{scenario} {which}: {error}", scenario=s.name, which=which, error=record.get("first_error")
            )

    def measure(self, s: Scenario, which: str, server: Server, repeat: int) -> dict[str, Any]:
        assert server.port is not None
        users_file = self.hashed if s.kind == "storm" else self.plain
        chatload = self.options.chatload
        if chatload and s.kind != "storm":
            argv = chatload_argv(chatload, s, server.port, users_file, server.pid)
            generator = "chatload"
        else:
            argv = python_argv(s, server.port, users_file, server.pid, self.options.processes)
            generator = "python"
        log.info(
            "{scenario} run {k}: {which} ({generator})",
            scenario=s.name,
            k=repeat,
            which=which,
            generator=generator,
        )
        record = run_load(argv, time_limit(s))
        derive(record)
        record.update(bench=s.name, server=which, repeat=repeat, generator=generator)
        return record


def _revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", ROOT, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rev = ""
    return rev or "unknown"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 'es' if word.endswith('s') else 's'}"


def context(options: argparse.Namespace, scenarios: Sequence[Scenario], machine: str) -> list[str]:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    python = f"the Python generator ({_plural(options.processes, 'process')})"
    if options.chatload:
        generators = ["chatload (C, epoll) for connect, fan-out and private", f"{python} for the storm"]
    else:
        generators = [f"{python} for every scenario"]
    lines = [
        f"Measured {when} at revision {_revision()} on {machine}.",
        f"Medians of {_plural(options.repeat, 'run')} per server, alternating; "
        "± is half the range of the runs.",
        "Load generators: " + "; ".join(generators) + ".",
        "Server options: defaults, SQLite on"
        + (f", plus {options.chat_args}" if options.chat_args else "")
        + "; both servers on loopback.",
    ]
    if options.floor:
        lines.append(
            "The baseline is the floor: it also answers the sender and keeps each private message in SQLite."
        )
    if options.quick:
        lines.insert(0, "QUICK RUN: tiny numbers that prove the tools work; these are not figures.")
    return lines


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks run", description=__doc__.split("\n\n")[0])
    a = parser.add_argument
    a("--quick", action="store_true", help="tiny numbers and one run each: a smoke test of the tools")
    a("--repeat", type=int, default=None, help="runs per server and scenario (3; 1 with --quick)")
    a("--chatload", default=None, help="path of the C load generator, for the scenarios it has")
    a("--scenarios", default=",".join(NAMES), help=f"comma-separated, of: {', '.join(NAMES)}")
    a("--processes", type=int, default=1, help="worker processes of the Python load generator")
    a("--output", default=None, help="also write the table (reStructuredText) to this file")
    a("--json", default=None, help="also write the JSON lines to this file")
    a("--chat-args", default="", help="extra options for 'twistd chat', e.g. \"--database :memory:\"")
    a(
        "--floor",
        action="store_true",
        help="the baseline also answers each private message and keeps it in SQLite: the floor under ours",
    )
    a("--hash-log-n", type=int, default=14, help="scrypt cost of the storm's users file")
    a(
        "--workdir",
        default=None,
        help="keep users files and server logs here (default: a temporary directory)",
    )
    options = parser.parse_args(argv)
    if options.repeat is None:
        options.repeat = 1 if options.quick else 3
    wanted = [n.strip() for n in options.scenarios.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in NAMES]
    if unknown:
        parser.error(f"unknown scenarios {', '.join(unknown)}; known: {', '.join(NAMES)}")
    options.scenario_list = [s for s in FULL if s.name in wanted]
    if options.quick:
        options.scenario_list = [quick(s) for s in options.scenario_list]
    if options.chatload and not os.access(options.chatload, os.X_OK):
        parser.error(f"--chatload {options.chatload!r} is not an executable")
    return options


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str]) -> int:
    options = parse(argv)
    # A runner stopped with SIGTERM still stops its servers (the finally clauses).
    signal.signal(signal.SIGTERM, _terminate)
    machine = procfs.machine()
    directory = options.workdir or tempfile.mkdtemp(prefix="chat-bench-")
    os.makedirs(directory, exist_ok=True)
    bench = Bench(options, options.scenario_list, directory)
    started = time.monotonic()
    try:
        bench.run()
    finally:
        bench.stop_all()
        if options.workdir is None:
            shutil.rmtree(directory, ignore_errors=True)
    text = report.document(bench.records, context(options, options.scenario_list, machine))
    report.publish(text, bench.records, options.output, options.json)
    log.info("done in {s:.0f}s", s=time.monotonic() - started)
    return 1 if any(r.get("aborted") for r in bench.records) else 0
