"""
Bad days, end to end against real ``twistd`` processes (and a real Redis):
a replay cut by a dropped connection, a Redis outage under traffic, a
Redis that stalls while someone logs in.  What is checked is what users and
operators would see: what was acknowledged arrives exactly once, what was
refused appears nowhere, nobody is locked out, and the nodes stay quiet
(CPU and log lines) while it lasts.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time

from twisted.trial import unittest

from benchmarks.procfs import cpu_seconds
from tests.e2e.support import COMMAND, PASSWORD, USERNAME, USERS, Lab, LineClient, drain
from tests.e2e.test_e2e_cluster import DOWN_COMMAND, DOWN_LOGIN, Cluster, answer, eventually, settles, whoelse
from tests.expect import pause

STORED = r"is offline; the message will be delivered when they next log in\.\r\n"


def cut_after_welcome(port: int, name: str) -> bytes:
    """
    Log in as C{name} on a socket with a small receive buffer, read only
    until the welcome, then reset the connection (as a crash or a dropped
    network would): whatever the server sent after the welcome is never read.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"{name}\n{USERS[name]}\n".encode())
        seen = b""
        while b"Welcome" not in seen:
            chunk = sock.recv(64)
            if not chunk:
                break
            seen += chunk
        # SO_LINGER with a zero timeout: close() sends a reset, not a FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        return seen
    finally:
        sock.close()


class DroppedReplayTests(unittest.TestCase):
    async def test_a_replay_cut_by_a_dropped_connection_is_given_again_in_full(self) -> None:
        lab = Lab(self)
        _, port = await lab.start()
        columbia = await lab.login(port, "columbia")
        count = 300
        for i in range(count):
            columbia.send(f"message seas stored number {i:03d} " + "x" * 60)
        await columbia.expect(r"(?:seas " + STORED + COMMAND + rf"){{{count}}}", timeout=30)
        seen = cut_after_welcome(port, "seas")
        self.assertIn(b"Welcome to chat, seas!", seen)
        self.assertNotIn(b"number 299", seen)
        # Once the server has noticed the reset, seas logs in again.
        seas = await lab.connect(port)
        await seas.expect(USERNAME)

        async def logged_in() -> bool:
            seas.send("seas", USERS["seas"])
            m = await seas.expect(r"already logged in.*\r\nUsername: |Welcome to chat, seas!\r\n")
            return m.group(0).startswith("Welcome")

        await eventually("the server to notice the reset", logged_in, within=10, every=0.2)
        await seas.expect(rf"You have {count} offline messages:\r\n", timeout=20)
        await seas.expect("number 299", timeout=20)
        await seas.expect(COMMAND)
        numbers = re.findall(r"stored number (\d{3})", seas.text)
        self.assertEqual(numbers, [f"{i:03d}" for i in range(count)])
        # Seen now (a command follows the replay): not given a third time.
        seas.send("logout")
        await seas.closed
        seas = await lab.login(port, "seas")
        self.assertNotIn("offline message", await drain(seas) + seas.text)


class RedisOutageTests(unittest.TestCase):
    timeout = 180

    async def test_an_outage_under_traffic_is_quiet_and_every_answer_is_true(self) -> None:
        """
        Users on two nodes send a message a second each, before, during and
        after 20 seconds without Redis.  Each node stays under a quarter of
        a core and writes a few lines, not thousands; every message
        acknowledged arrives exactly once, and every one refused nowhere.
        """
        cluster = await Cluster.start(self)
        lab = cluster.lab
        columbia = await lab.login(cluster.port_a, "columbia")
        seas = await lab.login(cluster.port_a, "seas")
        google = await lab.login(cluster.port_b, "google")
        await settles(google, whoelse, ["columbia", "seas"])
        await settles(columbia, whoelse, ["google", "seas"])

        # (sender's name, sender, recipient, the recipient's client)
        routes = [
            ("columbia", columbia, "google", google),  # a -> b: needs Redis
            ("google", google, "columbia", columbia),  # b -> a: needs Redis
            ("seas", seas, "columbia", columbia),  # a -> a: does not
        ]
        acknowledged: list[tuple[str, LineClient]] = []
        refused: list[str] = []
        broadcasts: list[str] = []

        async def one_round(tag: str) -> None:
            for name, sender, to, reader in routes:
                text = f"{tag} from {name}"
                reply = await answer(sender, f"message {to} {text}")
                last = reply.split("\r\n")[-2]
                if last == f"Sent to {to}.":
                    acknowledged.append((text, reader))
                elif last == DOWN_COMMAND:
                    refused.append(text)
                else:
                    raise AssertionError(f"unexpected answer to {text!r}: {reply!r}")

        for i in range(5):
            await one_round(f"before-{i}")
            await pause(1)

        mark_a, mark_b = len(cluster.a.log), len(cluster.b.log)
        cpu_a, cpu_b = cpu_seconds(cluster.a.pid), cpu_seconds(cluster.b.pid)
        started = time.monotonic()
        cluster.redis.stop()
        for i in range(20):
            await one_round(f"during-{i}")
            if i == 10:
                broadcasts.append(await answer(google, "broadcast message while redis is away"))
            await pause(1)
        elapsed = time.monotonic() - started
        used_a = (cpu_seconds(cluster.a.pid) or 0) - (cpu_a or 0)
        used_b = (cpu_seconds(cluster.b.pid) or 0) - (cpu_b or 0)
        outage_log_a = cluster.a.log[mark_a:].decode("utf-8", "replace").splitlines()
        outage_log_b = cluster.b.log[mark_b:].decode("utf-8", "replace").splitlines()
        cluster.redis.start()

        # Both nodes are back: a message crosses again, each way.
        async def crosses(sender: LineClient, to: str, reader: LineClient) -> bool:
            text = f"probe-{time.monotonic()}"
            reply = await answer(sender, f"message {to} {text}")
            last = reply.split("\r\n")[-2]
            if last == f"Sent to {to}.":
                acknowledged.append((text, reader))
                return True
            if last == DOWN_COMMAND or last.startswith(f"Not sent to {to}: "):
                refused.append(text)
                return False
            # Not "is offline; ... when they next log in": the nodes, back
            # together, must not take each other's users for gone.
            raise AssertionError(f"unexpected answer to {text!r}: {reply!r}")

        await eventually("a to b again", lambda: crosses(columbia, "google", google), 15, every=0.5)
        await eventually("b to a again", lambda: crosses(google, "columbia", columbia), 15, every=0.5)
        for i in range(5):
            await one_round(f"after-{i}")

        # The nodes were quiet while Redis was away.
        self.assertLess(used_a / elapsed, 0.25, f"node a used {used_a:.2f} s of CPU in {elapsed:.1f} s")
        self.assertLess(used_b / elapsed, 0.25, f"node b used {used_b:.2f} s of CPU in {elapsed:.1f} s")
        self.assertLess(len(outage_log_a), 15, "\n".join(outage_log_a))
        self.assertLess(len(outage_log_b), 15, "\n".join(outage_log_b))
        self.assertTrue([line for line in outage_log_a if "is unavailable" in line], outage_log_a)
        # Same-node messages went through; cross-node ones were refused.
        self.assertTrue(any(t.startswith("during-") and t.endswith("seas") for t, _ in acknowledged))
        self.assertTrue(any(t.startswith("during-") for t in refused))
        # The broadcast from b reached nobody on a, and said so.
        self.assertEqual(
            broadcasts,
            [
                "The broadcast reached no one: 2 users on other servers of this chat could not be "
                "reached right now.\r\n"
            ],
        )

        # Every acknowledged message arrived (those across nodes come through
        # the recipient's inbox, a moment after the receipt) exactly once; no
        # refused one at all.
        async def all_arrived() -> bool:
            return all(f"(private): {text}\r\n" in reader.text for text, reader in acknowledged)

        await eventually("every acknowledged message to arrive", all_arrived, within=10, every=0.2)
        for client in (columbia, seas, google):
            await drain(client)
        for text, reader in acknowledged:
            self.assertEqual(reader.text.count(f"(private): {text}\r\n"), 1, text)
        for text in refused:
            for client in (columbia, seas, google):
                self.assertNotIn(f": {text}\r\n", client.text)
        # Nor in anyone's history.
        for client in (columbia, google):
            history = await answer(client, "history 200")
            for text in refused:
                self.assertNotIn(f": {text}\r\n", history)
        self.assertNotIn("while redis is away", await answer(columbia, "history 200"))


class StalledRedisTests(unittest.TestCase):
    timeout = 120

    async def test_a_login_refused_while_redis_is_stalled_leaves_no_claim(self) -> None:
        """
        Redis paused (SIGSTOP) while windows logs in on node a: the login is
        refused, and when Redis resumes the claim it ran late is cleared
        within the dead-node bound: windows logs in on either node, and
        nobody is told windows is online.
        """
        cluster = await Cluster.start(self, "--node-timeout", "5")
        lab = cluster.lab
        google = await lab.login(cluster.port_b, "google")
        windows = await lab.connect(cluster.port_a)
        await windows.expect(USERNAME)
        process = cluster.redis.process
        assert process is not None
        os.kill(process.pid, signal.SIGSTOP)
        try:
            windows.send("windows", USERS["windows"])
            await windows.expect(PASSWORD + re.escape(DOWN_LOGIN) + r"\r\n" + USERNAME, timeout=30)
        finally:
            os.kill(process.pid, signal.SIGCONT)
        # Within the dead-node bound (5 s here), nothing of it is left.
        await eventually(
            "the late claim to be cleared",
            lambda: _none_online(cluster, "windows"),
            within=5 + 5,
            every=0.5,
        )
        await settles(google, whoelse, [])
        reply = await answer(google, "message windows are you there")
        self.assertRegex(reply, "^windows " + STORED + "$")

        # And windows logs in (once the node's connections are back: a
        # login a moment earlier is refused in one line, and tried again).
        async def logs_in() -> bool:
            windows.send("windows", USERS["windows"])
            m = await windows.expect(r"Welcome to chat, windows!|" + re.escape(DOWN_LOGIN))
            return m.group(0).startswith("Welcome")

        await eventually("windows to log in", logs_in, within=15, every=0.5)


async def _none_online(cluster: Cluster, name: str) -> bool:
    return cluster.redis.command("HGET", "chat:online", name) == ""
