"""
``python -m benchmarks load``: one run of one scenario against a chat server
at any host and port, printed as one JSON line.

The connections are shared out among C{--processes} worker processes
(L{benchmarks.worker}); this process only plans, keeps time, reads the
server's /proc entries and adds up what the workers counted.  Field names
are chatload's where the figures are the same, so the runner can put the two
generators' lines side by side.

Scenarios:

  connect  --n connections log in, --concurrency at a time; login time, and
           the server's RSS per connection (meaningful on a fresh server).
  fanout   --n receivers and --senders senders; each sender broadcasts at
           --rate per second, or (rate 0) keeps --window broadcasts not yet
           delivered to everybody.
  private  --n connections in pairs, each sending to its partner with
           --window messages in flight (or at --rate).
  storm    --concurrency logins in flight, over and over, against a users
           file of hashed passwords, while a probe user times the answer to
           ``help logout`` every --probe-interval seconds.

With --sender-port, fanout's senders and the first of each private pair
connect to that port instead: to another node of a cluster, so what is
measured is delivery from one node to another.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.logger import Logger

from benchmarks import procfs, users
from benchmarks.ledger import Ledger
from benchmarks.stats import Histogram

log = Logger()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = ("connect", "fanout", "private", "storm")
LAG_METHOD = "round trip of 'help logout' from a logged-in client, one every probe interval"


class LoadError(Exception):
    """The run cannot start or its workers misbehaved; the message says how."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--host", default="127.0.0.1")
    a("--port", type=int, required=True)
    a(
        "--sender-port",
        type=int,
        default=None,
        help="fanout: the senders' port; private: the port of the first of each pair (default: --port)",
    )
    a("--users", required=True, help="users file: '<user> <password>' lines (hashed: user0001 style names)")
    a("--scenario", choices=SCENARIOS, default="fanout")
    a("--n", type=int, default=100, help="connect: connections; fanout: receivers; private: connections")
    a(
        "--senders",
        type=int,
        default=None,
        help="fanout: sender connections (1); private: how many send (all)",
    )
    a("--rate", type=float, default=0.0, help="messages/s per sender; 0: as fast as the window allows")
    a("--window", type=int, default=4, help="messages per sender not yet delivered to everybody")
    a("--msg-size", type=int, default=64, help="bytes of message text, marker included")
    a("--duration", type=float, default=10.0, help="measured seconds")
    a("--warmup", type=float, default=2.0, help="unmeasured seconds of sending before")
    a("--settle", type=float, default=0.3, help="seconds between the last login and the first send")
    a("--drain", type=float, default=5.0, help="most seconds to wait for deliveries after sending stops")
    a(
        "--quiet",
        type=float,
        default=1.0,
        help="fan-out over several processes: drained once nothing arrived for this long",
    )
    a("--concurrency", type=int, default=50, help="logins in flight at once")
    a("--hold", type=float, default=1.0, help="connect: seconds to hold the connections before sampling RSS")
    a("--login-timeout", type=float, default=60.0)
    a("--processes", type=int, default=1, help="worker processes sharing the connections")
    a(
        "--server-pid",
        type=int,
        default=None,
        help="server process for CPU and RSS (default: the listener, if --host is loopback; 0: none)",
    )
    a(
        "--sender-server-pid",
        type=int,
        default=None,
        help="with --sender-port: the server process there, for its CPU (default as --server-pid)",
    )
    a("--probe-interval", type=float, default=0.01, help="storm: seconds between probe commands")
    a("--tick-ms", type=float, default=1.0, help="rate mode: scheduling tick")
    a("--quickack", action="store_true", help="set TCP_QUICKACK on every connection")
    a("--label", default="")


def is_loopback(host: str) -> bool:
    """Whether C{host} is this machine, so /proc can tell about the server."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


# --- planning -------------------------------------------------------------------


def plan(
    scenario: str,
    accounts: Sequence[tuple[str, str]],
    n: int,
    senders: int | None,
    processes: int,
    concurrency: int = 50,
    sender_port: int | None = None,
) -> list[dict[str, Any]]:
    """
    Share the connections of a run out among C{processes} workers.

    Connection indices are chatload's: fanout has receivers 0..n-1 and
    senders after them; private pairs 2k with 2k+1, and a pair always lives
    in one process so its window needs no other process's counts.  The
    storm's probe is the first user, in worker 0, and each login slot keeps
    one user of its own so no user is logging in twice at once.

    A connection is C{[index, user, password, role, peer, port]}; C{port}
    is None for the run's port, or C{sender_port} for fanout's senders and
    the even (first) connection of each private pair: against two nodes of
    a cluster, every broadcast then crosses from one node to the other, and
    so does every private message, in both directions.
    """
    processes = max(1, processes)
    shares: list[dict[str, Any]] = [{"conns": [], "storm_users": []} for _ in range(processes)]
    if scenario == "storm":
        if len(accounts) < concurrency + 1:
            raise LoadError(f"storm needs {concurrency + 1} users (a probe and one per login in flight)")
        shares[0]["probe"] = list(accounts[0])
        for slot in range(concurrency):
            shares[slot % processes]["storm_users"].append(list(accounts[1 + slot]))
        return shares
    if scenario == "fanout":
        count = n + (1 if senders is None else senders)
    elif scenario == "private":
        count = n + (n % 2)
    else:
        count = n
    if count > len(accounts):
        raise LoadError(f"the users file has {len(accounts)} users, the run needs {count}")
    sending = 0
    if scenario == "private":
        sending = count if senders is None else min(senders, count)
    for i in range(count):
        user, password = accounts[i]
        peer = None
        role = "r"
        if scenario == "fanout" and i >= n:
            role = "s"
        elif scenario == "private":
            peer = accounts[i ^ 1][0]
            if i < sending:
                role = "s"
        port = None
        if (scenario == "fanout" and role == "s") or (scenario == "private" and i % 2 == 0):
            port = sender_port
        worker = (i // 2 if scenario == "private" else i) % processes
        shares[worker]["conns"].append([i, user, password, role, peer, port])
    return shares


# --- workers --------------------------------------------------------------------


class WorkerProcess:
    """A worker subprocess and the JSON lines it has sent."""

    def __init__(self, config: dict[str, Any]) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.send(config)

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass

    def feed(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self.events.append(json.loads(line))

    def take(self, kind: str) -> dict[str, Any] | None:
        for i, event in enumerate(self.events):
            if event.get("event") == kind:
                return self.events.pop(i)
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


def wait_for(workers: Sequence[WorkerProcess], kind: str, deadline: float) -> list[dict[str, Any]]:
    """One C{kind} event from every worker, or L{LoadError} at the deadline."""
    got: list[dict[str, Any] | None] = [w.take(kind) for w in workers]
    with selectors.DefaultSelector() as sel:
        for w in workers:
            assert w.process.stdout is not None
            sel.register(w.process.stdout, selectors.EVENT_READ, w)
        while any(e is None for e in got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoadError(f"workers did not report {kind!r} in time")
            for key, _ in sel.select(min(left, 1.0)):
                w = key.data
                data = os.read(key.fd, 1 << 20)
                if not data:
                    sel.unregister(key.fileobj)
                    if got[workers.index(w)] is None and w.take(kind) is None:
                        raise LoadError(f"a worker exited before reporting {kind!r}")
                w.feed(data)
            for i, w in enumerate(workers):
                if got[i] is None:
                    got[i] = w.take(kind)
    return [e for e in got if e is not None]


def _sleep_until(ns: int) -> None:
    left = (ns - time.monotonic_ns()) / 1e9
    if left > 0:
        time.sleep(left)


# --- the run --------------------------------------------------------------------


def _ms(us: int | float) -> float:
    return round(us / 1000, 3)


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def _server_pid(options: argparse.Namespace, given: int | None, port: int) -> int | None:
    """The server process listening on C{port}: as given (0: none), else looked up if on this machine."""
    if given is not None:
        return given or None
    if is_loopback(options.host):
        return procfs.find_listener_pid(port)
    # A listener on this machine with the same port number is not the server.
    return None


def run(options: argparse.Namespace, on_window: Callable[[str], None] | None = None) -> dict[str, Any]:
    """
    Run one scenario as C{options} say; the result is the JSON record.

    C{on_window}, if given, is called with C{"start"} and C{"end"} right
    after the server's CPU is read at each end of the measured seconds: a
    caller that runs this in its own process can read what else it watches
    (another process's CPU, Redis's command counts) over the same seconds.
    """
    accounts = users.read(options.users)
    processes = max(1, options.processes)
    shares = plan(
        options.scenario,
        accounts,
        options.n,
        options.senders,
        processes,
        options.concurrency,
        options.sender_port,
    )
    conns = sum(len(s["conns"]) for s in shares)
    pid = _server_pid(options, options.server_pid, options.port)
    sender_pid = None
    if options.sender_port is not None:
        sender_pid = _server_pid(options, options.sender_server_pid, options.sender_port)
    record: dict[str, Any] = {
        "tool": "benchmarks.load",
        "label": options.label,
        "scenario": options.scenario,
        "host": options.host,
        "port": options.port,
        "n": options.n,
        "senders": sum(1 for s in shares for c in s["conns"] if c[3] == "s"),
        "conns": conns,
        "processes": processes,
        "concurrency": options.concurrency,
        "server_pid": pid,
    }
    if options.sender_port is not None:
        record.update(sender_port=options.sender_port, sender_server_pid=sender_pid)
    ledger_path = None
    if options.scenario == "fanout" and processes > 1:
        directory = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        fd, ledger_path = tempfile.mkstemp(prefix="chat-bench-", dir=directory)
        os.close(fd)
        Ledger.create(ledger_path, conns, processes)
    per_worker = max(1, math.ceil(options.concurrency / processes))
    senders = [c[0] for s in shares for c in s["conns"] if c[3] == "s"]
    timeline = options.login_timeout + options.settle + options.warmup + options.duration + options.drain
    workers: list[WorkerProcess] = []
    rss_start = procfs.status_kib(pid) if pid else None
    cpu_login0 = procfs.cpu_seconds(pid) if pid else None
    wall_login0 = time.monotonic()
    try:
        for k, share in enumerate(shares):
            config = {
                "scenario": options.scenario,
                "host": options.host,
                "port": options.port,
                "worker": k,
                "workers": processes,
                "columns": conns,
                "ledger": ledger_path,
                "concurrency": per_worker,
                "window": options.window,
                "rate": options.rate,
                "msg_size": options.msg_size,
                "tick_ms": options.tick_ms,
                "quickack": options.quickack,
                "login_timeout": options.login_timeout,
                "probe_interval": options.probe_interval,
                "sender_columns": senders,
                "deadline_s": timeline + options.hold + 30,
                **share,
            }
            workers.append(WorkerProcess(config))
        logins = wait_for(workers, "logged_in", time.monotonic() + options.login_timeout + 30)
        _login_figures(record, logins, options)
        cpu_login1 = procfs.cpu_seconds(pid) if pid else None
        wall_login = time.monotonic() - wall_login0
        rss_login = procfs.status_kib(pid) if pid else None
        if cpu_login0 is not None and cpu_login1 is not None and wall_login > 0:
            record["login_server_cpu_pct"] = round((cpu_login1 - cpu_login0) * 100 / wall_login, 1)
        record["server_rss_mib_start"] = _mib(rss_start)
        record["server_rss_mib_login"] = _mib(rss_login)
        ok = record["login_ok"]
        if rss_start is not None and rss_login is not None and ok and options.scenario != "storm":
            record["rss_kib_per_conn"] = round((rss_login - rss_start) / ok, 2)
        if options.scenario == "connect":
            time.sleep(options.hold)
            record["server_rss_mib_end"] = _mib(procfs.status_kib(pid) if pid else None)
            for w in workers:
                w.send({"cmd": "finish"})
            results = wait_for(workers, "result", time.monotonic() + 30)
        else:
            fanout = ok - 1 if options.scenario == "fanout" else 1
            if options.scenario != "storm" and ok < 2:
                raise LoadError(f"only {ok} connections logged in: {record.get('first_error')}")
            t_send = time.monotonic_ns() + int(options.settle * 1e9)
            t_m0 = t_send + int(options.warmup * 1e9)
            t_m1 = t_m0 + int(options.duration * 1e9)
            go = {
                "cmd": "go",
                "fanout": fanout,
                "t_send_ns": t_send,
                "t_m0_ns": t_m0,
                "t_m1_ns": t_m1,
                "drain_s": options.drain,
                "quiet_s": options.quiet,
            }
            for w in workers:
                w.send(go)
            _sleep_until(t_m0)
            cpu0, sys0 = (procfs.cpu_times(pid) if pid else None), procfs.system_ticks()
            sender_cpu0 = procfs.cpu_times(sender_pid) if sender_pid else None
            if on_window is not None:
                on_window("start")
            _sleep_until(t_m1)
            cpu1, sys1 = (procfs.cpu_times(pid) if pid else None), procfs.system_ticks()
            sender_cpu1 = procfs.cpu_times(sender_pid) if sender_pid else None
            if on_window is not None:
                on_window("end")
            record["server_rss_mib_end"] = _mib(procfs.status_kib(pid) if pid else None)
            results = wait_for(workers, "result", time.monotonic() + options.drain + 30)
            _traffic_figures(record, results, options, fanout, (cpu0, cpu1), (sys0, sys1))
            if options.sender_port is not None:
                _sender_figures(record, options, (sender_cpu0, sender_cpu1))
        record["server_hwm_mib"] = _mib(procfs.status_kib(pid, "VmHWM") if pid else None)
        record["lost_after_login"] = sum(r["lost_after_login"] for r in results)
        record["rx_bytes"] = sum(r["rx_bytes"] for r in results)
        errors = [e["first_error"] for e in logins + results if e.get("first_error")]
        record["first_error"] = errors[0] if errors else ""
        record["aborted"] = False
    except LoadError as e:
        record["aborted"] = True
        record["first_error"] = str(e)
    finally:
        for w in workers:
            w.stop()
        if ledger_path is not None:
            os.unlink(ledger_path)
    return record


def _login_figures(record: dict[str, Any], logins: list[dict[str, Any]], options: argparse.Namespace) -> None:
    hist = Histogram()
    for e in logins:
        hist.merge(Histogram.from_json(e["login_hist"]))
    starts = [e["first_start_ns"] for e in logins if e["first_start_ns"]]
    ends = [e["last_ready_ns"] for e in logins if e["last_ready_ns"]]
    ok = sum(e["ok"] for e in logins)
    seconds = (max(ends) - min(starts)) / 1e9 if starts and ends else 0.0
    record.update(
        login_ok=ok,
        login_failed=sum(e["failed"] for e in logins),
        login_timed_out=any(e["timed_out"] for e in logins),
        login_time_s=round(seconds, 3),
        logins_per_s=round(ok / seconds, 1) if seconds > 0 else None,
        login_p50_ms=_ms(hist.percentile(0.5)),
        login_p99_ms=_ms(hist.percentile(0.99)),
        login_max_ms=_ms(hist.maximum),
    )
    errors = [e["first_error"] for e in logins if e.get("first_error")]
    if errors:
        record["first_error"] = errors[0]


def _traffic_figures(
    record: dict[str, Any],
    results: list[dict[str, Any]],
    options: argparse.Namespace,
    fanout: int,
    cpu: tuple[tuple[float, float] | None, tuple[float, float] | None],
    system: tuple[tuple[int, int] | None, tuple[int, int] | None],
) -> None:
    seconds = options.duration
    total = {k: sum(r[k] for r in results) for k in ("sent", "sent_measured", "deliveries_total")}
    measured = sum(r["deliveries_measured"] for r in results)
    loadgen_cpu = sum(r["cpu_s"] for r in results)
    server_cpu = server_sys = None
    if cpu[0] is not None and cpu[1] is not None:
        server_cpu = sum(cpu[1]) - sum(cpu[0])
        server_sys = cpu[1][1] - cpu[0][1]
    busy = None
    if system[0] is not None and system[1] is not None and system[1][1] > system[0][1]:
        busy = (system[1][0] - system[0][0]) / (system[1][1] - system[0][1]) * (os.cpu_count() or 1)
    record.update(
        duration_s=seconds,
        warmup_s=options.warmup,
        server_cpu_pct=None if server_cpu is None else round(server_cpu * 100 / seconds, 1),
        server_cpu_sys_pct=None if server_sys is None else round(server_sys * 100 / seconds, 1),
        loadgen_cpu_pct=round(loadgen_cpu * 100 / seconds, 1),
        system_busy_cores=None if busy is None else round(busy, 2),
    )
    if options.scenario == "storm":
        lag, idle, login = Histogram(), Histogram(), Histogram()
        for r in results:
            lag.merge(Histogram.from_json(r["lag"]))
            idle.merge(Histogram.from_json(r["idle_lag"]))
            login.merge(Histogram.from_json(r["storm_login"]))
        ok_measured = sum(r["storm_ok_measured"] for r in results)
        record.update(
            storm_logins_ok=sum(r["storm_ok"] for r in results),
            storm_logins_failed=sum(r["storm_failed"] for r in results),
            storm_logins_per_s=round(ok_measured / seconds, 1),
            storm_login_p50_ms=_ms(login.percentile(0.5)),
            storm_login_p99_ms=_ms(login.percentile(0.99)),
            lag_method=LAG_METHOD,
            probe_interval_s=options.probe_interval,
            lag_samples=lag.n,
            lag_p50_ms=_ms(lag.percentile(0.5)),
            lag_p99_ms=_ms(lag.percentile(0.99)),
            lag_max_ms=_ms(lag.maximum),
            idle_lag_p50_ms=_ms(idle.percentile(0.5)),
            idle_lag_p99_ms=_ms(idle.percentile(0.99)),
            server_cpu_s_per_login=(
                None if server_cpu is None or not ok_measured else round(server_cpu / ok_measured, 6)
            ),
        )
        return
    latency = Histogram()
    for r in results:
        latency.merge(Histogram.from_json(r["latency"]))
    expected = total["sent"] * fanout
    record.update(
        rate_per_sender=options.rate,
        window=options.window,
        msg_size=options.msg_size,
        fanout=fanout,
        sent=total["sent"],
        sent_measured=total["sent_measured"],
        sends_per_s=round(total["sent_measured"] / seconds, 1),
        deliveries_measured=measured,
        deliveries_per_s=round(measured / seconds, 1),
        deliveries_total=total["deliveries_total"],
        completeness=round(total["deliveries_total"] / expected, 5) if expected else None,
        lat_samples=latency.n,
        lat_p50_ms=_ms(latency.percentile(0.5)),
        lat_p90_ms=_ms(latency.percentile(0.9)),
        lat_p99_ms=_ms(latency.percentile(0.99)),
        lat_p999_ms=_ms(latency.percentile(0.999)),
        lat_max_ms=_ms(latency.maximum),
        lat_mean_ms=_ms(latency.mean()),
        server_cpu_s_per_delivery=(
            None if server_cpu is None or not measured else float(f"{server_cpu / measured:.3g}")
        ),
        skipped_sends=sum(r["skipped_sends"] for r in results),
        bad_markers=sum(r["bad_markers"] for r in results),
    )


def _sender_figures(
    record: dict[str, Any],
    options: argparse.Namespace,
    cpu: tuple[tuple[float, float] | None, tuple[float, float] | None],
) -> None:
    """
    The CPU of the senders' server (another node of a cluster), in the
    same fields as the receivers' server's with C{sender_} in front, per
    delivery counted at the receivers: the two nodes' figures add up to
    what the cluster spends on a delivery.
    """
    if cpu[0] is None or cpu[1] is None:
        record.update(sender_server_cpu_pct=None, sender_server_cpu_sys_pct=None)
        record["sender_server_cpu_s_per_delivery"] = None
        return
    used = sum(cpu[1]) - sum(cpu[0])
    measured = record.get("deliveries_measured") or 0
    record.update(
        sender_server_cpu_pct=round(used * 100 / options.duration, 1),
        sender_server_cpu_sys_pct=round((cpu[1][1] - cpu[0][1]) * 100 / options.duration, 1),
        sender_server_cpu_s_per_delivery=float(f"{used / measured:.3g}") if measured else None,
    )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks load", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    options = parser.parse_args(argv)
    try:
        record = run(options)
    except (LoadError, OSError, ValueError) as e:
        log.error("{error}", error=str(e))
        return 2
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
    return 1 if record.get("aborted") else 0
