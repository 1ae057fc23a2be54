"""
One load-generating process: a share of the connections of a run, driven by
its coordinator (L{benchmarks.loadgen}) over stdin and stdout.

The coordinator writes a JSON configuration line, then commands; the worker
answers with JSON event lines.  Times in commands are C{time.monotonic_ns()}
values, the same clock in every process, so workers need not talk to each
other to agree on when to send and what to measure.

    -> config              <- {"event": "logged_in", ...}
    -> {"cmd": "go", ...}  <- {"event": "result", ...}     (fanout, private, storm)
    -> {"cmd": "finish"}   <- {"event": "result", ...}     (connect)

The hot path is receiving: every chunk is cut at its last newline and the
markers of all its complete lines are found with one regular expression
call, which is what lets a Python process keep up with hundreds of thousands
of deliveries per second.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.internet.stdio import StandardIO
from twisted.internet.task import LoopingCall
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from benchmarks import markers
from benchmarks.ledger import Ledger
from benchmarks.stats import Histogram

reactor: Any = _reactor
log = Logger()

#: Bytes of an unfinished line kept before it is dropped as overlong.
CARRY_MAX = 1 << 16
_LINGER_RST = struct.pack("ii", 1, 0)
_now = time.monotonic_ns


def _tune(transport: Any, quickack: bool = False) -> None:
    """
    No Nagle (messages are small and latency is measured), and close with
    RST: a run of 10,000 connections closed normally would leave 10,000
    client ports in TIME_WAIT, and back-to-back runs would run out of them.
    """
    try:
        sock = transport.getHandle()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        if quickack:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    except (AttributeError, OSError):
        pass


class Client(Protocol):
    """
    One logged-in load connection: logs in by sending username and password
    at once, then receives deliveries and, if it is a sender, sends.
    """

    def __init__(self, worker: Worker, index: int, user: str, password: str, peer: str | None) -> None:
        self.worker = worker
        self.index = index
        self.login = f"{user}\n{password}\n".encode()
        if peer is None:
            self.prefix = b"broadcast message "
        else:
            self.prefix = b"message " + peer.encode() + b" "
        self.ready = False
        self.failed = False
        self.buffer = b""
        self.carry = b""
        self.sent = 0
        self.next_due = 0
        self.started = 0
        self.is_sender = False
        #: In the private scenario, the other half of the pair.
        self.partner: Client | None = None

    def connectionMade(self) -> None:
        _tune(self.transport, self.worker.quickack)
        self.transport.write(self.login)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self.ready:
            self.worker.received(self, data)
        else:
            self._login_data(data)

    def _login_data(self, data: bytes) -> None:
        self.buffer += data
        if b"Welcome" in self.buffer:
            self.ready = True
            self.buffer = b""
            self.worker.logged_in(self)
        elif self.buffer.count(b"Username: ") >= 2:
            # Asked for the username again: the login was refused.
            lines = self.buffer.split(b"\n")
            reason = lines[-2].strip().decode("utf-8", "replace") if len(lines) > 1 else ""
            self.worker.login_failed(self, reason or "login refused")
            self.transport.abortConnection()  # type: ignore[union-attr]
        elif len(self.buffer) > CARRY_MAX:
            self.buffer = self.buffer[-256:]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.worker.lost(self, reason)


class Probe(Client):
    """
    The storm's probe: a logged-in user who sends C{help logout} every few
    milliseconds and times the answer.  The round trip is how long the
    server took to get to a trivial command, as a client sees it.
    """

    def __init__(self, worker: Worker, user: str, password: str) -> None:
        super().__init__(worker, -1, user, password, None)
        self.sent_at = 0

    def ping(self) -> None:
        if self.ready and not self.sent_at and self.transport is not None:
            self.buffer = b""
            self.sent_at = _now()
            self.transport.write(b"help logout\n")

    def dataReceived(self, data: bytes) -> None:
        if not self.ready:
            self._login_data(data)
            return
        self.buffer += data
        if self.sent_at and self.buffer.endswith(b"Command: "):
            self.worker.lag(self.sent_at, _now())
            self.sent_at = 0
            self.buffer = b""
        elif len(self.buffer) > CARRY_MAX:
            self.buffer = self.buffer[-256:]


class StormClient(Protocol):
    """A login of the storm: log in, and once welcomed, hang up."""

    def __init__(self, worker: Worker, slot: int, user: str, password: str) -> None:
        self.worker = worker
        self.slot = slot
        self.login = f"{user}\n{password}\n".encode()
        self.buffer = b""
        self.started = _now()
        self.done = False

    def connectionMade(self) -> None:
        _tune(self.transport)
        self.transport.write(self.login)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self.done:
            return
        self.buffer += data
        if b"Welcome" in self.buffer:
            self._finish(True)
        elif self.buffer.count(b"Username: ") >= 2:
            self._finish(False)

    def _finish(self, ok: bool) -> None:
        self.done = True
        self.worker.storm_login_done(self, ok)
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.done:
            self.done = True
            self.worker.storm_login_done(self, False, reason.getErrorMessage())


class _Once(ClientFactory):
    """Connects one given protocol, quietly: a run makes thousands of these."""

    noisy = False

    def __init__(self, worker: Worker, protocol: Protocol) -> None:
        self.worker = worker
        self.protocol_ = protocol

    def buildProtocol(self, addr: object) -> Protocol:
        return self.protocol_

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.worker.connect_failed(reason, self.protocol_)


class Commands(LineReceiver):
    """The coordinator's side of stdin and stdout."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 26

    def __init__(self, on_line: Callable[[dict[str, Any]], None]) -> None:
        self.on_line = on_line

    def lineReceived(self, line: bytes) -> None:
        self.on_line(json.loads(line))

    def send(self, event: dict[str, Any]) -> None:
        self.transport.write(json.dumps(event).encode() + b"\n")  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # The coordinator went away: nobody will read the result.
        if reactor.running:
            reactor.stop()


class Worker:
    """The connections of one process and everything counted about them."""

    def __init__(self, config: dict[str, Any], commands: Commands) -> None:
        self.config = config
        self.commands = commands
        self.scenario: str = config["scenario"]
        self.host: str = config["host"]
        self.port: int = config["port"]
        self.quickack: bool = config.get("quickack", False)
        self.window: int = config.get("window", 4)
        self.rate: float = config.get("rate", 0.0)
        self.msg_size: int = config.get("msg_size", 64)
        self.concurrency: int = max(1, config.get("concurrency", 50))
        self.ledger = Ledger(
            config.get("columns", 1),
            config.get("ledger"),
            config.get("worker", 0),
            config.get("workers", 1),
        )
        #: Window mode with senders' deliveries counted in other processes too.
        self.shared = config.get("workers", 1) > 1 and self.scenario == "fanout" and self.rate <= 0
        #: Every sender's column, whichever process it lives in: this process publishes them all.
        self.sender_columns: list[int] = config.get("sender_columns", [])

        # login
        self.plan: list[list[Any]] = config.get("conns", [])
        self.clients: list[Client] = []
        self.by_index: dict[int, Client] = {}
        self.next_to_start = 0
        self.in_flight = 0
        self.ready = 0
        self.failed = 0
        self.first_start = 0
        self.last_ready = 0
        self.login_hist = Histogram()
        self.first_error = ""
        self.lost_after_login = 0
        self.login_reported = False

        # sending and receiving
        self.senders: list[Client] = []
        self.fanout = 1
        self.sending = False
        self.t_send = 0
        self.m0 = 1 << 62
        self.m1 = 1 << 62
        self.sent_total = 0
        self.sent_measured = 0
        self.delivered = 0
        self.delivered_measured = 0
        self.bad_markers = 0
        self.skipped = 0
        self.rx_bytes = 0
        self.last_rx = 0
        self.latency = Histogram()
        self._flush_call: IDelayedCall | None = None
        #: Senders whose windows may have opened since the last flush.
        self._dirty: set[Client] = set()
        self._dirty_all = False
        self._loops: list[LoopingCall] = []
        self.cpu0 = 0.0
        self.cpu1 = 0.0
        self._period = 0
        self._quiet_ns = 1_000_000_000

        # storm
        self.probe: Probe | None = None
        self.storm_users: list[list[str]] = config.get("storm_users", [])
        self.storm_ok = 0
        self.storm_failed = 0
        self.storm_ok_measured = 0
        self.storm_hist = Histogram()
        self.lag_hist = Histogram()
        self.idle_lag_hist = Histogram()
        self.storming = False
        self.reported = False

    # --- login ----------------------------------------------------------------

    def start(self) -> None:
        probe = self.config.get("probe")
        if probe:
            self.probe = Probe(self, probe[0], probe[1])
            self.first_start = _now()
            self.in_flight += 1
            self._connect(self.probe)
        self._start_more()
        self._check_login_done()
        reactor.callLater(self.config.get("login_timeout", 60.0), self._login_timeout)

    def _connect(self, protocol: Protocol, port: int | None = None) -> None:
        reactor.connectTCP(self.host, port or self.port, _Once(self, protocol), timeout=30)

    def connect_failed(self, f: Failure, protocol: Protocol) -> None:
        if isinstance(protocol, StormClient):
            protocol.done = True
            self.storm_login_done(protocol, False, f.getErrorMessage())
            return
        self._note_error(f"connect: {f.getErrorMessage()}")
        self.in_flight -= 1
        self.failed += 1
        self._start_more()
        self._check_login_done()

    def _start_more(self) -> None:
        while self.next_to_start < len(self.plan) and self.in_flight < self.concurrency:
            # The port is the run's unless the plan says otherwise (--sender-port).
            index, user, password, role, peer, port = self.plan[self.next_to_start]
            self.next_to_start += 1
            client = Client(self, index, user, password, peer)
            client.started = now = _now()
            if not self.first_start:
                self.first_start = now
            self.clients.append(client)
            self.by_index[index] = client
            if peer is not None:
                partner = self.by_index.get(index ^ 1)
                if partner is not None:
                    client.partner, partner.partner = partner, client
            if role == "s":
                client.is_sender = True
                self.senders.append(client)
            self.in_flight += 1
            self._connect(client, port)

    def logged_in(self, client: Client) -> None:
        now = _now()
        self.in_flight -= 1
        self.ready += 1
        self.last_ready = now
        if client is not self.probe:
            self.login_hist.add((now - client.started) // 1000)
        self._start_more()
        self._check_login_done()

    def login_failed(self, client: Client, reason: str) -> None:
        if client.failed:
            return
        client.failed = True
        user = client.login.split(b"\n", 1)[0].decode("utf-8", "replace")
        self._note_error(f"{user}: {reason}")
        self.in_flight -= 1
        self.failed += 1
        self._start_more()
        self._check_login_done()

    def lost(self, client: Client, reason: Failure) -> None:
        if client.ready:
            if not self.reported:
                self.lost_after_login += 1
                self._note_error(f"connection {client.index} lost: {reason.getErrorMessage()}")
        elif not client.failed:
            self.login_failed(client, f"closed during login: {reason.getErrorMessage()}")

    def _note_error(self, text: str) -> None:
        if not self.first_error:
            self.first_error = text
            log.warn("{error}", error=text)

    def _check_login_done(self) -> None:
        total = len(self.plan) + (1 if self.probe is not None else 0)
        if not self.login_reported and self.ready + self.failed >= total:
            self._report_login(timed_out=False)

    def _login_timeout(self) -> None:
        if not self.login_reported:
            self._note_error("login timeout")
            self._report_login(timed_out=True)

    def _report_login(self, timed_out: bool) -> None:
        self.login_reported = True
        self.commands.send(
            {
                "event": "logged_in",
                "ok": self.ready,
                "failed": self.failed + (len(self.plan) - self.next_to_start),
                "timed_out": timed_out,
                "first_start_ns": self.first_start,
                "last_ready_ns": self.last_ready,
                "login_hist": self.login_hist.to_json(),
                "first_error": self.first_error,
            }
        )

    # --- commands from the coordinator ----------------------------------------

    def command(self, cmd: dict[str, Any]) -> None:
        what = cmd.get("cmd")
        if what == "go":
            self.go(cmd)
        elif what == "finish":
            self.report()
        else:
            log.error("unknown command {cmd!r}", cmd=cmd)

    def go(self, cmd: dict[str, Any]) -> None:
        self.fanout = max(1, int(cmd.get("fanout", 1)))
        self.t_send = int(cmd["t_send_ns"])
        self.m0 = int(cmd["t_m0_ns"])
        self.m1 = int(cmd["t_m1_ns"])
        drain = float(cmd.get("drain_s", 5.0))
        quiet = float(cmd.get("quiet_s", 0.3))
        self._at(self.t_send, self._start_sending)
        self._at(self.m0, self._measure_start)
        self._at(self.m1, self._measure_end)
        self._at(self.m1 + int(drain * 1e9), self.report)
        if self.probe is not None:
            loop = LoopingCall(self.probe.ping)
            loop.start(float(self.config.get("probe_interval", 0.01)))
            self._loops.append(loop)
        self._quiet_ns = int(quiet * 1e9)

    def _at(self, when_ns: int, f: Callable[[], None]) -> None:
        reactor.callLater(max(0.0, (when_ns - _now()) / 1e9), f)

    def _measure_start(self) -> None:
        self.cpu0 = time.process_time()

    def _measure_end(self) -> None:
        self.cpu1 = time.process_time()
        self.sending = False
        self.storming = False
        if self.scenario in ("fanout", "private"):
            check = LoopingCall(self._drained)
            check.start(0.05, now=False)
            self._loops.append(check)
        elif self.scenario == "storm":
            reactor.callLater(0.2, self.report)

    def _drained(self) -> None:
        """
        After sending stopped: done once every message has arrived everywhere
        (the drain deadline ends it otherwise).  A process that receives only
        its own senders' messages (one process, or private pairs) can count;
        a fan-out shared among processes cannot, and ends once nothing has
        arrived for a quiet period instead.
        """
        if self.scenario == "private" or self.config.get("workers", 1) == 1:
            done = self.delivered >= self.sent_total * self.fanout
        else:
            done = _now() - max(self.last_rx, self.m1) >= self._quiet_ns
        if done:
            self.report()

    def _start_sending(self) -> None:
        if self.scenario == "storm":
            self.storming = True
            for slot, (user, password) in enumerate(self.storm_users):
                self._storm_connect(slot, user, password)
            return
        if self.shared:
            # Publish deliveries for the senders of other processes, and see
            # theirs for ours, every millisecond.
            loop = LoopingCall(self._flush)
            loop.start(0.001)
            self._loops.append(loop)
        if not self.senders:
            return
        self.sending = True
        if self.rate > 0:
            period = int(1e9 / self.rate)
            now = _now()
            for k, c in enumerate(self.senders):
                c.next_due = now + period * k // len(self.senders)
            self._period = period
            loop = LoopingCall(self._rate_tick)
            loop.start(float(self.config.get("tick_ms", 1.0)) / 1000)
            self._loops.append(loop)
        else:
            for c in self.senders:
                self._fill(c)

    # --- sending ----------------------------------------------------------------

    def _compose(self, c: Client) -> bytes:
        now = _now()
        line = c.prefix + markers.make_text(c.index, c.sent, now, self.msg_size) + b"\n"
        c.sent += 1
        self.sent_total += 1
        if self.m0 <= now < self.m1:
            self.sent_measured += 1
        return line

    def _fill(self, c: Client) -> None:
        """Send while fewer than C{window} of C{c}'s messages are undelivered."""
        if not self.sending or not c.is_sender or not c.ready or c.transport is None:
            return
        fanout = self.fanout
        limit = self.window * fanout
        delivered = self.ledger.total(c.index)
        lines: list[bytes] = []
        while c.sent * fanout - delivered < limit and len(lines) < self.window:
            lines.append(self._compose(c))
        if lines:
            c.transport.write(b"".join(lines))

    def _rate_tick(self) -> None:
        if not self.sending:
            return
        now = _now()
        period = self._period
        for c in self.senders:
            if not c.ready or c.transport is None:
                continue
            lines: list[bytes] = []
            while c.next_due <= now and len(lines) < 10000:
                lines.append(self._compose(c))
                c.next_due += period
            if lines:
                c.transport.write(b"".join(lines))

    def _flush(self) -> None:
        """Publish this process's counts, then refill the senders' windows."""
        self._flush_call = None
        if self.shared:
            self.ledger.publish(self.sender_columns)
        if self._dirty_all or self.shared:
            targets: Iterable[Client] = self.senders
        else:
            targets = self._dirty
        for c in targets:
            self._fill(c)
        self._dirty_all = False
        self._dirty = set()

    # --- receiving ---------------------------------------------------------------

    def received(self, client: Client, data: bytes) -> None:
        now = _now()
        self.rx_bytes += len(data)
        self.last_rx = now
        if client.carry:
            data = client.carry + data
        cut = data.rfind(b"\n") + 1
        if cut != len(data):
            client.carry = data[cut:]
            if len(client.carry) > CARRY_MAX:
                client.carry = b""
            if not cut:
                return
            data = data[:cut]
        elif client.carry:
            client.carry = b""
        found = markers.MARKER.findall(data)
        if not found:
            return
        counts = self.ledger.local
        n = len(found)
        self.delivered += n
        measuring = self.m0 <= now < self.m1
        if measuring:
            self.delivered_measured += n
            add = self.latency.add
            for s, t in found:
                try:
                    counts[int(s)] += 1
                except IndexError:
                    self.bad_markers += 1
                add((now - int(t)) // 1000)
        else:
            for s, _ in found:
                try:
                    counts[int(s)] += 1
                except IndexError:
                    self.bad_markers += 1
        if self.sending and self.rate <= 0:
            if client.partner is not None:
                self._dirty.add(client.partner)
            else:
                self._dirty_all = True
            if self._flush_call is None:
                self._flush_call = reactor.callLater(0, self._flush)

    # --- storm -------------------------------------------------------------------

    def _storm_connect(self, slot: int, user: str, password: str) -> None:
        self._connect(StormClient(self, slot, user, password))

    def storm_login_done(self, client: StormClient, ok: bool, reason: str = "") -> None:
        now = _now()
        if ok:
            self.storm_ok += 1
            self.storm_hist.add((now - client.started) // 1000)
            if self.m0 <= now < self.m1:
                self.storm_ok_measured += 1
        else:
            self.storm_failed += 1
            said = client.buffer[-200:].decode("utf-8", "replace")
            self._note_error(f"storm login failed: {reason or said}")
        if self.storming:
            user, password = self.storm_users[client.slot]
            self._storm_connect(client.slot, user, password)

    def lag(self, sent_at: int, now: int) -> None:
        rtt = (now - sent_at) // 1000
        if self.m0 <= sent_at < self.m1:
            self.lag_hist.add(rtt)
        elif sent_at < self.t_send:
            self.idle_lag_hist.add(rtt)

    # --- the end -----------------------------------------------------------------

    def report(self) -> None:
        if self.reported:
            return
        self.reported = True
        self.sending = False
        self.storming = False
        for loop in self._loops:
            if loop.running:
                loop.stop()
        if not self.cpu1:
            self.cpu1 = time.process_time()
        self.commands.send(
            {
                "event": "result",
                "sent": self.sent_total,
                "sent_measured": self.sent_measured,
                "deliveries_total": self.delivered,
                "deliveries_measured": self.delivered_measured,
                "latency": self.latency.to_json(),
                "rx_bytes": self.rx_bytes,
                "bad_markers": self.bad_markers,
                "skipped_sends": self.skipped,
                "lost_after_login": self.lost_after_login,
                "cpu_s": self.cpu1 - self.cpu0 if self.cpu0 else 0.0,
                "storm_ok": self.storm_ok,
                "storm_failed": self.storm_failed,
                "storm_ok_measured": self.storm_ok_measured,
                "storm_login": self.storm_hist.to_json(),
                "lag": self.lag_hist.to_json(),
                "idle_lag": self.idle_lag_hist.to_json(),
                "first_error": self.first_error,
            }
        )
        self.ledger.close()
        # Let the line reach the pipe before the sockets are reset.
        reactor.callLater(0.05, reactor.stop)


def main() -> None:
    warnings = FilteringLogObserver(textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(LogLevel.warn)])
    globalLogBeginner.beginLoggingTo([warnings], redirectStandardIO=False)
    state: dict[str, Worker] = {}

    def on_line(message: dict[str, Any]) -> None:
        worker = state.get("worker")
        if worker is None:
            worker = state["worker"] = Worker(message, commands)
            worker.start()
            deadline = float(message.get("deadline_s", 600))
            reactor.callLater(deadline, _expired, worker)
        else:
            worker.command(message)

    commands = Commands(on_line)
    StandardIO(commands)
    reactor.run()


def _expired(worker: Worker) -> None:
    worker._note_error("worker deadline reached")
    if not worker.login_reported:
        worker._report_login(timed_out=True)
    worker.report()


if __name__ == "__main__":
    main()
