"""
The web site under abuse that only shows in the sockets, against a real
``twistd -n chat --web``: unfinished requests trickled from one address,
and a flood of them from many, under a limit of 256 descriptors.

Both wait on the server's deadline for a request (10 s of real time, not
an option): the waits poll, bounded, rather than sleep.
"""

from __future__ import annotations

from typing import TypeVar

from twisted.internet import reactor
from twisted.python import log
from twisted.trial import unittest

from chat.server.edges.web import REQUEST_DEADLINE
from tests.e2e.support import WEB, Lab, LineClient, closing, timed
from tests.expect import pause

T = TypeVar("T")

#: Every limit applies to loopback too: these clients stand for attackers.
NO_EXEMPTION = ("--exempt", "")


async def unfinished(lab: Lab, web: int, sources: list[str], count: int) -> list[LineClient]:
    """C{count} connections to C{web}, from C{sources} in turn, each with a request begun and not ended."""
    clients = []
    for i in range(count):
        client = await lab.connect(web, source=sources[i % len(sources)])
        client.send_bytes(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{web}\r\n".encode())
        clients.append(client)
    return clients


def still_open(clients: list[LineClient]) -> list[LineClient]:
    return [c for c in clients if not c.closed.called]


class TrickleTests(unittest.TestCase):
    timeout = 60

    async def test_trickled_upgrades_from_one_address_hold_no_more_than_its_limit(self) -> None:
        """
        60 upgrades from one address, each trickling a header every 4 s.
        They count from the moment they are accepted, with the address's
        TCP connections; the 21st gets a 429 once its request is whole; and
        at the deadline none is left.  Before: none counted until upgraded,
        and all 60 stayed open (Twisted's timeout, 12 hours, restarts with
        every byte).
        """
        lab = Lab(self)
        _, port, web = await lab.start_web(*NO_EXEMPTION)
        started = reactor.seconds()
        trickling = await unfinished(lab, web, ["127.0.0.2"], 60)
        # The address's limit (20) is taken by requests not even whole.
        terminal = await lab.connect(port, source="127.0.0.2")
        await closing(terminal)
        self.assertEqual(terminal.text, "Too many connections from your address (limit 20).\r\n")
        told = await lab.connect(web, source="127.0.0.2")
        told.send_bytes(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{web}\r\n\r\n".encode())
        await told.expect(r"HTTP/1\.1 429 Too Many Requests\r\n")
        await closing(told)

        deadline = started + REQUEST_DEADLINE + 5
        header = 0
        while still_open(trickling) and reactor.seconds() < deadline:
            header += 1
            for client in still_open(trickling):
                client.send_bytes(f"X-Trickle-{header}: {header}\r\n".encode())
            await pause(4)
        left = len(still_open(trickling))
        took = reactor.seconds() - started
        log.msg(f"trickled upgrades: {left} of 60 open after {took:.1f} s, {header} headers each")
        self.assertEqual(left, 0)
        for client in trickling:
            self.assertNotIn("HTTP/1.1 101", client.text)
        # The address may connect again.
        again = await lab.upgrade(web)
        self.assertEqual(again.status, 101)


class DescriptorReserveTests(unittest.TestCase):
    timeout = 90

    async def test_unfinished_requests_from_many_addresses_leave_room_for_logins(self) -> None:
        """
        Under a limit of 256 descriptors, 300 connections from 6 addresses
        begin a request and send nothing more; users logged in before stay,
        and a fresh user logs in over TCP, and another over the WebSocket,
        within a second each.  Before: the descriptors ran out, and the TCP
        port closed every new connection (Twisted's recovery from EMFILE)
        until the requests timed out, 12 hours later.
        """
        lab = Lab(self)
        server = lab.server(*WEB, max_files=256)
        port = await server.start()
        web = server.web_port
        assert web is not None
        columbia = await lab.login(port, "columbia")
        seas = await lab.ws_login(web, "seas")

        flood = await unfinished(lab, web, [f"127.0.0.{i}" for i in range(2, 8)], 300)
        _, tcp_took = await timed(lab.login(port, "google", source="127.0.0.100"))
        _, ws_took = await timed(lab.ws_login(web, "facebook"))
        held = len(still_open(flood))
        log.msg(
            f"descriptor reserve: 300 unfinished requests, {held} still open; "
            f"a TCP login took {tcp_took:.3f} s, a WebSocket login {ws_took:.3f} s"
        )
        self.assertLess(tcp_took, 1.0)
        self.assertLess(ws_took, 1.0)
        self.assertLess(held, 256)
        # Those logged in before were not closed for room.
        seas.send({"type": "message", "to": ["columbia"], "text": "still here"})
        await columbia.expect(r"seas \(private\): still here\r\n")
        await seas.expect(type="receipt")
        self.assertFalse(seas.closed.called or columbia.closed.called)
        await server.expect_log("closed a connection from 127\\.0\\.0\\.[2-7] that had not logged in")
        self.assertNotIn(b"EMFILE", server.log)
        # The deadline takes the rest.
        deadline = reactor.seconds() + REQUEST_DEADLINE + 10
        while still_open(flood) and reactor.seconds() < deadline:
            await pause(0.5)
        self.assertEqual(still_open(flood), [])
