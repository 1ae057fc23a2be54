"""
``python -m benchmarks cluster``: what it costs to deliver from one node of
a cluster to another, against delivering within one node of the same
cluster, measured in the same run.

It starts its own Redis (a temporary directory, a unix socket, AOF on with
C{appendfsync always}, as the server's README asks of a production Redis)
and two nodes, C{a} and C{b}, of C{twistd chat --redis}, with the flood
limits lifted so that they never hold a sender back.  Then, alternating and
repeated, with the Python load generator (L{benchmarks.loadgen}) in this
process:

  fanout within    N receivers and 4 senders, all on b
  fanout across    N receivers on b, 4 senders on a
  private within   N connections in pairs, all on b
  private across   the same pairs with one of each on a, one on b

The load generator reads each node's CPU over the measured seconds; this
module reads, at the same instants, Redis's CPU, the CPU of a node the load
leaves idle, and Redis's C{INFO commandstats}, whose differences divided by
the messages sent in those seconds are the Redis commands one broadcast or
one private message costs.

Nothing here is compared with the single server of C{python -m benchmarks
run}: the two runs use different generators, and only figures measured in
the same run are compared.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any

import attrs
from twisted.logger import Logger

from benchmarks import loadgen, procfs, report, users
from benchmarks.runner import _revision
from benchmarks.servers import TWISTD, Server, ServerError
from benchmarks.stats import median, ratio
from chat.server.backends.redis import keys as rediskeys

log = Logger()

#: Lifts the per-user flood limit (commands per second, and at once): the
#: generator's senders send as fast as their window lets them.
FLOOD_OFF = ("--rate", "1000000", "--burst", "1000000")
#: Commands that are the measuring itself, left out of every count.
NOT_COUNTED = frozenset({"info"})
#: Commands the nodes only run inside their Lua scripts, never send on
#: their own (see the scripts in chat/server/backends): C{INFO
#: commandstats} counts these as well as the C{EVALSHA} that ran them, so
#: they are told apart from the commands that cost a node a round trip.
#: C{SET} is the heartbeat's (the login guard's own is only for failed
#: logins).  C{HSET}, C{HGETALL}, C{DEL} and C{HDEL} are both sent and
#: scripted, and counted as sent: while messages flow, the scripted ones are
#: logins, logouts and the background heartbeats and sweeps.  So is
#: C{PUBLISH}, though a private message to another node is published by its
#: hand-over script (one per turn), a broadcast by a command of its own.
IN_SCRIPTS = frozenset(
    {
        "xadd",
        "xdel",
        "lpush",
        "ltrim",
        "lrange",
        "incr",
        "incrby",
        "hget",
        "hmget",
        "hexists",
        "exists",
        "set",
        "sadd",
        "srem",
        "smembers",
        "expire",
        "pexpire",
        "ttl",
        "zadd",
    }
)
#: Commands per message below this in every run are shown as one row.
MINOR = 0.01
#: What a node logs that a run's figures should be read with: a warning or
#: worse, or another node found this one dead (logged at info level).
_NOTEWORTHY = ("#warn]", "#error]", "#critical]", "stopped answering")
#: Seconds a node may take to join the cluster after it listens.
JOIN_TIMEOUT = 30.0


class ClusterError(Exception):
    """Redis or a node could not be started; the message says why."""


# --- Redis -------------------------------------------------------------------------


def parse_commandstats(text: str) -> dict[str, int]:
    """
    Calls per command from the text of C{INFO commandstats}: lines like
    C{cmdstat_evalsha:calls=12,usec=...}; subcommands keep their name
    (C{config|resetstat}).
    """
    calls: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith("cmdstat_"):
            continue
        name, _, fields = line[len("cmdstat_") :].partition(":")
        for field in fields.split(","):
            key, _, value = field.partition("=")
            if key == "calls":
                calls[name] = int(value)
    return calls


def command_counts(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Commands run between two readings, without the readings' own C{INFO}."""
    out = {}
    for name, calls in after.items():
        n = calls - before.get(name, 0)
        if n > 0 and name not in NOT_COUNTED:
            out[name] = n
    return out


def filesystem_of(path: str) -> str:
    """The type of the file system C{path} is on (ext4, tmpfs...): fsync costs depend on it."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount = fields[1]
                inside = path == mount or path.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


class Redis:
    """
    A redis-server of our own: AOF on with C{appendfsync always} (every
    acknowledged write on disk before the reply, which is what a cluster
    acknowledging private messages asks for), in a directory of its own
    with a unix socket, stopped by its PID.
    """

    def __init__(self, directory: str) -> None:
        server = shutil.which("redis-server")
        cli = shutil.which("redis-cli")
        if server is None or cli is None:
            raise ClusterError("redis-server and redis-cli are needed: 'apt-get install redis-server'")
        self.server, self.cli = server, cli
        self.directory = directory
        # Unix socket paths are limited to about 100 bytes: the directory is a short temporary one.
        self.socket = os.path.join(directory, "redis.sock")
        self.log_path = os.path.join(directory, "redis.log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def endpoint(self) -> str:
        return f"unix:{self.socket}"

    def start(self, timeout: float = 15.0) -> None:
        argv = [self.server, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700"]
        argv += ["--dir", self.directory, "--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        argv += ["--daemonize", "no", "--logfile", self.log_path]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if os.path.exists(self.socket) and self.command("PING", check=False) == "PONG":
                log.info("redis-server listening on {socket} (pid {pid})", socket=self.socket, pid=self.pid)
                return
            time.sleep(0.05)
        self.stop()
        raise ClusterError(f"redis-server did not start:\n{self.tail()}")

    def command(self, *args: str, check: bool = True) -> str:
        """One command through redis-cli; its reply as text."""
        done = subprocess.run(
            [self.cli, "-s", self.socket, *args], capture_output=True, timeout=10, check=False
        )
        if check and done.returncode != 0:
            raise ClusterError(f"redis-cli {' '.join(args)}: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode("utf-8", "replace").strip()

    def commandstats(self) -> dict[str, int]:
        return parse_commandstats(self.command("INFO", "commandstats"))

    def version(self) -> str:
        for line in self.command("INFO", "server").splitlines():
            if line.startswith("redis_version:"):
                return line.split(":", 1)[1].strip()
        return "unknown"

    def tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID, SIGKILL if it has not exited within C{timeout} seconds."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


# --- nodes ---------------------------------------------------------------------------


def node_argv(users_file: str, redis: str, node: str) -> list[str]:
    return [
        *TWISTD,
        "-n",
        "--pidfile=",
        "chat",
        "--port",
        "tcp:0:interface=127.0.0.1",
        "--users",
        users_file,
        "--redis",
        redis,
        "--node",
        node,
        *FLOOD_OFF,
    ]


class Node(Server):
    """A node of the cluster: started once it has joined, not once it listens."""

    def __init__(self, node: str, argv: Sequence[str], directory: str) -> None:
        super().__init__(f"node-{node}", argv, directory)
        self.node = node

    def start(self, timeout: float = 30.0) -> int:
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        port = super().start(timeout)
        joined = f"node {self.node} joined the cluster".encode()
        deadline = time.monotonic() + JOIN_TIMEOUT
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                if joined in f.read():
                    return port
            if self.process is None or self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"node {self.node} did not join the cluster:\n{self.tail()}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_size(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def noteworthy(self, offset: int, most: int = 10) -> list[str]:
        """
        What the node logged since C{offset} that a run should be read
        with: a node taken for dead by the others, its Redis link lost.
        """
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        lines = [line.strip() for line in text.splitlines() if any(n in line for n in _NOTEWORTHY)]
        return [line[:300] for line in lines[:most]]


# --- the plan ------------------------------------------------------------------------


@attrs.frozen
class Case:
    """One measurement: a scenario, and whether its messages cross from node a to node b."""

    kind: str  # fanout or private
    across: bool

    @property
    def name(self) -> str:
        return f"{self.kind}-{'across' if self.across else 'within'}"

    @property
    def placement(self) -> str:
        return "across" if self.across else "within"


@attrs.frozen
class Settings:
    n: int = 1000
    senders: int = 4
    fanout_window: int = 16
    private_window: int = 4
    duration: float = 8.0
    warmup: float = 2.0
    #: Most seconds to wait for the messages in flight when sending stops:
    #: across nodes, thousands of private messages can be queued for seconds.
    drain: float = 15.0

    def load_argv(self, case: Case, users_file: str, a: Node, b: Node) -> list[str]:
        """The load generator's options: receivers (and within, everybody) on b."""
        assert a.port is not None and b.port is not None
        window = self.fanout_window if case.kind == "fanout" else self.private_window
        argv = ["--port", str(b.port), "--users", users_file, "--scenario", case.kind]
        argv += ["--n", str(self.n), "--window", str(window), "--server-pid", str(b.pid)]
        argv += ["--duration", str(self.duration), "--warmup", str(self.warmup), "--drain", str(self.drain)]
        argv += ["--label", case.name]
        if case.kind == "fanout":
            argv += ["--senders", str(self.senders)]
        if case.across:
            argv += ["--sender-port", str(a.port), "--sender-server-pid", str(a.pid)]
        return argv

    @property
    def users(self) -> int:
        return max(self.n + self.senders, self.n + self.n % 2)


def quick_settings() -> Settings:
    """Tiny numbers: proves the tool works in seconds, measures nothing."""
    return Settings(n=20, senders=4, duration=0.6, warmup=0.2, drain=5.0)


# --- measuring -----------------------------------------------------------------------


class Window:
    """
    What the load generator does not read, read at each end of its measured
    seconds (its C{on_window} hook): Redis's command counts and CPU, and
    every node's CPU, so a node with no clients is seen too.
    """

    def __init__(self, redis: Redis, nodes: Mapping[str, Node]) -> None:
        self.redis = redis
        self.pids = {"redis": redis.pid, **{name: node.pid for name, node in nodes.items()}}
        self.readings: dict[str, tuple[float, dict[str, float | None], dict[str, int]]] = {}

    def __call__(self, edge: str) -> None:
        when = time.monotonic()
        cpu = {name: procfs.cpu_seconds(pid) for name, pid in self.pids.items()}
        try:
            stats = self.redis.commandstats()
        except (ClusterError, OSError, subprocess.TimeoutExpired) as e:
            log.warn("could not read Redis's command counts: {error}", error=str(e))
            return
        self.readings[edge] = (when, cpu, stats)

    def figures(self) -> dict[str, Any]:
        if "start" not in self.readings or "end" not in self.readings:
            return {}
        (t0, cpu0, stats0), (t1, cpu1, stats1) = self.readings["start"], self.readings["end"]
        used: dict[str, float | None] = {}
        for name in self.pids:
            before, after = cpu0.get(name), cpu1.get(name)
            used[name] = None if before is None or after is None else after - before
        return {"window_s": t1 - t0, "cpu_s": used, "commands": command_counts(stats0, stats1)}


def _per(value: float | None, count: float) -> float | None:
    return None if value is None or not count else float(f"{value / count:.4g}")


def derive(record: dict[str, Any], watched: Mapping[str, Any], case: Case) -> None:
    """
    The figures of the table, per run.  Node CPU per delivery comes from the
    load generator (b always; a when the senders are there); Redis's, and
    node a's when the load leaves it idle, from this module's own readings.
    Commands are per message sent in the measured seconds: per broadcast,
    however many receive it, or per private message.
    """
    if not watched:
        return
    seconds = watched["window_s"] or record.get("duration_s") or 1.0
    cpu = watched["cpu_s"]
    deliveries = record.get("deliveries_measured") or 0
    sent = record.get("sent_measured") or 0
    record["window_s"] = round(seconds, 3)
    record["redis_cpu_pct"] = None if cpu["redis"] is None else round(cpu["redis"] * 100 / seconds, 1)
    record["redis_cpu_s_per_delivery"] = _per(cpu["redis"], deliveries)
    record["node_b_cpu_s_per_delivery"] = record.get("server_cpu_s_per_delivery")
    record["node_b_cpu_pct"] = record.get("server_cpu_pct")
    if case.across:
        record["node_a_cpu_s_per_delivery"] = record.get("sender_server_cpu_s_per_delivery")
        record["node_a_cpu_pct"] = record.get("sender_server_cpu_pct")
    else:
        record["node_a_cpu_s_per_delivery"] = _per(cpu["a"], deliveries)
        record["node_a_cpu_pct"] = None if cpu["a"] is None else round(cpu["a"] * 100 / seconds, 1)
    parts = [record.get(f"{p}_cpu_s_per_delivery") for p in ("node_a", "node_b", "redis")]
    record["cluster_cpu_s_per_delivery"] = (
        None if any(p is None for p in parts) else float(f"{sum(p for p in parts if p):.4g}")
    )
    commands = watched["commands"]
    record["redis_commands"] = commands
    per: dict[str, float] = {}
    if sent:
        per = {name.upper(): n / sent for name, n in commands.items()}
        per["total"] = sum(commands.values()) / sent
        per["sent"] = sum(n for name, n in commands.items() if name not in IN_SCRIPTS) / sent
    record["redis_commands_per_message"] = {k: round(v, 4) for k, v in per.items()}


class Bench:
    """The cluster, the runs, and their records."""

    def __init__(self, settings: Settings, repeat: int, directory: str, redis_directory: str) -> None:
        self.settings = settings
        self.repeat = repeat
        self.directory = directory
        self.users_file = os.path.join(directory, "users.txt")
        self.redis = Redis(redis_directory)
        self.nodes: dict[str, Node] = {}
        self.records: list[dict[str, Any]] = []

    def start(self) -> None:
        users.write(self.users_file, self.settings.users)
        self.redis.start()
        for name in ("a", "b"):
            self.nodes[name] = Node(
                name, node_argv(self.users_file, self.redis.endpoint, name), self.directory
            )
        for node in self.nodes.values():
            node.start()

    def stop(self) -> None:
        """Nodes first (they say goodbye through Redis), then Redis; each by its PID."""
        for node in self.nodes.values():
            node.stop()
        self.redis.stop()

    def run(self) -> None:
        for k in range(self.repeat):
            for kind in ("fanout", "private"):
                # Alternate which placement goes first, so a slow stretch
                # of a shared machine lands on both.
                pair = [Case(kind, across=False), Case(kind, across=True)]
                for case in reversed(pair) if k % 2 else pair:
                    self.records.append(self.measure(case, k + 1))

    def _settled(self, timeout: float = 15.0) -> None:
        """Wait until the previous run's users are released, so no login is refused as a duplicate."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.redis.command("HLEN", rediskeys.ONLINE) in ("0", ""):
                return
            time.sleep(0.1)
        log.warn("users of the previous run are still online after {t:.0f}s", t=timeout)

    def measure(self, case: Case, repeat: int) -> dict[str, Any]:
        for node in self.nodes.values():
            if not node.running:
                log.warn("{node} had exited; starting it again:\n{tail}", node=node.name, tail=node.tail())
                node.stop()
                node.start()
        self._settled()
        a, b = self.nodes["a"], self.nodes["b"]
        parser = argparse.ArgumentParser()
        loadgen.add_arguments(parser)
        options = parser.parse_args(self.settings.load_argv(case, self.users_file, a, b))
        log.info("{case} run {k}", case=case.name, k=repeat)
        watch = Window(self.redis, self.nodes)
        offsets = {name: node.log_size() for name, node in self.nodes.items()}
        try:
            record = loadgen.run(options, on_window=watch)
        except (loadgen.LoadError, OSError, ValueError) as e:
            record = {"aborted": True, "first_error": str(e)}
        derive(record, watch.figures(), case)
        record.update(bench=case.kind, placement=case.placement, repeat=repeat, generator="python")
        record["node_log"] = {
            name: lines for name, node in self.nodes.items() if (lines := node.noteworthy(offsets[name]))
        }
        for node in self.nodes.values():
            if not node.running:
                record["aborted"] = True
                record["first_error"] = f"{node.name} exited during the run"
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
        if record.get("aborted"):
            log.warn("{case}: {error}", case=case.name, error=record.get("first_error"))
        return record


# --- the table -----------------------------------------------------------------------


@attrs.frozen
class Figure:
    """A row: which runs, what to read from each, how to show it."""

    kind: str
    label: str
    read: Callable[[Mapping[str, Any]], Any]
    scale: float = 1.0
    digits: int = 0


def _field(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda r: r.get(name)


def _command(*names: str) -> Callable[[Mapping[str, Any]], Any]:
    """The commands per message of C{names} together (0 for a command a run did not use)."""

    def read(r: Mapping[str, Any]) -> Any:
        per = r.get("redis_commands_per_message")
        return sum(per.get(name, 0.0) for name in names) if per else None

    return read


def figures(records: Sequence[Mapping[str, Any]], settings: Settings) -> list[Figure]:
    """The rows of the scenarios that ran, with a row per Redis command either placement uses."""
    out = []
    for kind, unit, what in (("fanout", "delivery", "broadcast"), ("private", "message", "message")):
        if not any(r.get("bench") == kind for r in records):
            continue
        if kind == "fanout":
            head = f"fan-out to {settings.n:,}: deliveries/s"
            label = "fan-out"
        else:
            pairs = settings.n // 2
            head = f"private, {pairs:,} pairs x {settings.private_window} in flight: messages/s"
            label = "private"
        out += [
            Figure(kind, head, _field("deliveries_per_s")),
            Figure(kind, f"{label}: p50 latency ms", _field("lat_p50_ms"), digits=1),
            Figure(kind, f"{label}: node b CPU µs/{unit}", _field("node_b_cpu_s_per_delivery"), 1e6, 2),
            Figure(kind, f"{label}: node a CPU µs/{unit}", _field("node_a_cpu_s_per_delivery"), 1e6, 2),
            Figure(kind, f"{label}: Redis CPU µs/{unit}", _field("redis_cpu_s_per_delivery"), 1e6, 2),
            Figure(
                kind,
                f"{label}: both nodes and Redis, CPU µs/{unit}",
                _field("cluster_cpu_s_per_delivery"),
                1e6,
                2,
            ),
            Figure(kind, f"{label}: node b CPU %", _field("node_b_cpu_pct"), digits=1),
            Figure(kind, f"{label}: node a CPU %", _field("node_a_cpu_pct"), digits=1),
            Figure(kind, f"{label}: Redis CPU %", _field("redis_cpu_pct"), digits=1),
            Figure(kind, f"{label}: Redis commands per {what}", _command("total"), digits=3),
            Figure(kind, f"{label}: of which sent by the nodes", _command("sent"), digits=3),
        ]
        seen: dict[str, float] = {}
        for r in records:
            if r.get("bench") == kind and not r.get("aborted"):
                for name, v in (r.get("redis_commands_per_message") or {}).items():
                    if name not in ("total", "sent"):
                        seen[name] = max(seen.get(name, 0.0), v)
        minor = sorted(name for name, v in seen.items() if v < MINOR)
        for name in sorted(seen, key=lambda c: (-seen[c], c)):
            if seen[name] >= MINOR:
                where = " (in scripts)" if name.lower() in IN_SCRIPTS else ""
                out.append(Figure(kind, f"{label}: {name}{where} per {what}", _command(name), digits=3))
        if minor:
            names = ", ".join(minor[:5]) + (", ..." if len(minor) > 5 else "")
            others = f"{label}: other commands ({names}) per {what}"
            out.append(Figure(kind, others, _command(*minor), digits=3))
    return out


def values(records: Sequence[Mapping[str, Any]], figure: Figure, placement: str) -> list[float]:
    out = []
    for r in records:
        if r.get("bench") == figure.kind and r.get("placement") == placement and not r.get("aborted"):
            v = figure.read(r)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
                out.append(float(v) * figure.scale)
    return out


def cell(vs: Sequence[float], digits: int) -> str:
    m = median(vs)
    if m is None:
        return "n/a"
    text = report.fmt(m, digits)
    s = report.spread(vs)
    if s is not None:
        text += f" ±{s * 100:.0f}%"
    return text


def table(records: Sequence[Mapping[str, Any]], settings: Settings) -> str:
    body = []
    for f in figures(records, settings):
        within, across = values(records, f, "within"), values(records, f, "across")
        # No ratio to a figure that shows as zero: it would only measure noise.
        shown = median(within)
        r = ratio(median(across), shown) if shown is not None and round(shown, f.digits) else None
        body.append(
            [f.label, cell(within, f.digits), cell(across, f.digits), "n/a" if r is None else f"{r:.2f}"]
        )
    return report.rst_table(["figure", "within one node", "across nodes", "across/within"], body)


def problems(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """
    Runs whose figures need reading with care: the runner's reasons, and
    what the nodes logged during the run (a node taken for dead while it
    was busy makes its users offline to the cluster, though they chat on).
    """
    out = report.problems([{**r, "server": r.get("placement")} for r in records])
    for r in records:
        what = f"{r.get('bench')} {r.get('placement')} run {r.get('repeat')}"
        for name, lines in (r.get("node_log") or {}).items():
            for line in lines[:3]:
                # The log line without its time stamp and logger.
                out.append(f"{what}: node {name} logged: {line.split('] ', 1)[-1]}")
    return out


def context(options: argparse.Namespace, settings: Settings, machine: str, redis: str, fs: str) -> list[str]:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    runs = f"{options.repeat} run{'s' if options.repeat != 1 else ''}"
    lines = [
        f"Measured {when} at revision {_revision()} on {machine}.",
        f"Medians of {runs} per case, the cases alternating; ± is half the range of the runs.",
        f"Redis {redis} of its own: unix socket, appendonly yes, appendfsync always, data on {fs}.",
        "Nodes a and b: twistd chat --redis unix:... --node a|b, flood limits lifted "
        f"({' '.join(FLOOD_OFF)}) so they never hold a sender back.",
        f"Load: the Python generator, one process; fan-out: {settings.n:,} receivers on b and "
        f"{settings.senders} senders (within: on b; across: on a), window {settings.fanout_window}; "
        f"private: {settings.n:,} connections in pairs, window {settings.private_window} "
        "(within: all on b; across: one of each pair on a, the other on b, both sending); "
        f"{settings.duration:g} s measured after {settings.warmup:g} s of warm-up.",
        "CPU per delivery: a process's CPU seconds over the measured seconds / deliveries received in "
        "them.  Redis commands: INFO commandstats over the measured seconds / messages sent in them "
        "(broadcasts, or private messages); the nodes' own heartbeats and pings are included.",
    ]
    if options.quick:
        lines.insert(0, "QUICK RUN: tiny numbers that prove the tool works; these are not figures.")
    return lines


def document(records: Sequence[Mapping[str, Any]], lines: Sequence[str], settings: Settings) -> str:
    parts = [*lines, "", table(records, settings)]
    notes = problems(records)
    if notes:
        parts += ["", "Runs with problems:", ""] + [f"- {note}" for note in notes]
    return "\n".join(parts) + "\n"


# --- the command ---------------------------------------------------------------------


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks cluster", description=__doc__.split("\n\n")[0]
    )
    a = parser.add_argument
    a("--quick", action="store_true", help="tiny numbers and one run each: a smoke test of the tool")
    a("--repeat", type=int, default=None, help="runs per case (3; 1 with --quick)")
    a("--n", type=int, default=None, help="fan-out receivers, and private connections (1000)")
    a("--duration", type=float, default=None, help="measured seconds per run (8)")
    a("--warmup", type=float, default=None, help="unmeasured seconds of sending first (2)")
    a("--output", default=None, help="also write the table (reStructuredText) to this file")
    a("--json", default=None, help="also write the runs, one JSON line each, to this file")
    a("--workdir", default=None, help="keep the users file and the nodes' logs here")
    options = parser.parse_args(argv)
    if options.repeat is None:
        options.repeat = 1 if options.quick else 3
    settings = quick_settings() if options.quick else Settings()
    changes = {k: getattr(options, k) for k in ("n", "duration", "warmup") if getattr(options, k) is not None}
    options.settings = attrs.evolve(settings, **changes)
    if options.settings.n < 2 or options.repeat < 1:
        parser.error("--n must be at least 2 and --repeat at least 1")
    return options


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str]) -> int:
    options = parse(argv)
    settings: Settings = options.settings
    # Stopped with SIGTERM, the finally clause still stops Redis and the nodes.
    signal.signal(signal.SIGTERM, _terminate)
    machine = procfs.machine()
    directory = options.workdir or tempfile.mkdtemp(prefix="chat-cluster-")
    os.makedirs(directory, exist_ok=True)
    redis_directory = tempfile.mkdtemp(prefix="chat-cluster-redis-")
    started = time.monotonic()
    bench = Bench(settings, options.repeat, directory, redis_directory)
    redis_version = fs = "unknown"
    try:
        bench.start()
        redis_version = bench.redis.version()
        fs = filesystem_of(redis_directory)
        bench.run()
    except (ClusterError, ServerError) as e:
        log.error("{error}", error=str(e))
        return 2
    finally:
        bench.stop()
        shutil.rmtree(redis_directory, ignore_errors=True)
        if options.workdir is None:
            shutil.rmtree(directory, ignore_errors=True)
    text = document(bench.records, context(options, settings, machine, redis_version, fs), settings)
    report.publish(text, bench.records, options.output, options.json)
    log.info("done in {s:.0f}s", s=time.monotonic() - started)
    return 1 if any(r.get("aborted") for r in bench.records) else 0
