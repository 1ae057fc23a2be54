"""
The web site as a client meets it, over in-memory transports with a
task.Clock: what each path answers and with which headers, the deadline
of a request, the count of connections it shares with the TCP edge (from
the moment a connection is accepted), the room kept under the limit of
descriptors, and the C{--web-host} option.

A connection is built by the site's own C{buildProtocol}, as the listening
port builds it, and fed bytes as the reactor would feed them.
"""

from __future__ import annotations

import base64
import builtins
import json
import os
import socket
from collections.abc import Sequence
from typing import Any

import attrs
import wsproto
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.http import datetimeToString
from wsproto.events import TextMessage

from chat.server.edges.web import REQUEST_DEADLINE, STATIC, ChatSite, content_security_policy, make_site
from chat.server.edges.writethrough import write_through
from chat.server.limits import ConnectionCount
from chat.server.tap import Options
from tests.expect import until
from tests.unit.harness import PASSWORDS, Harness, capture_log

#: The headers every response carries, exactly as the site has always sent
#: them (the CSP for a page asked for as 127.0.0.1:8080).
SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self' ws://127.0.0.1:8080; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
}

TYPES = {
    "/index.html": "text/html",
    "/chat.js": "text/javascript",
    "/chat.css": "text/css",
    "/icon.svg": "image/svg+xml",
}

TOO_MANY = "Too many connections from your address (limit 20).\n"


class PolicyTests(unittest.TestCase):
    def test_the_pages_own_websocket_is_named_unless_it_is_reached_by_an_ipv6_address(self) -> None:
        self.assertIn(
            b"connect-src 'self' ws://127.0.0.1:8080;", content_security_policy("127.0.0.1:8080", False)
        )
        self.assertIn(
            b"connect-src 'self' wss://chat.example:8443;", content_security_policy("chat.example:8443", True)
        )
        self.assertIn(b"connect-src 'self';", content_security_policy("[::1]:8080", False))
        self.assertIn(b"connect-src 'self';", content_security_policy("evil;script-src *", False))


@attrs.frozen
class Response:
    status: int
    phrase: str
    headers: dict[str, str]
    body: bytes


def parse(data: bytes) -> Response:
    """One whole response (with a content-length), as a client reads it."""
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    _, code, phrase = status_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    assert len(rest) == length, (len(rest), length, data[:300])
    return Response(int(code), phrase, headers, rest)


class Web:
    """The site of a harness server, listening (its factory started, as the port starts it)."""

    def __init__(
        self,
        case: unittest.TestCase,
        server: Harness | None = None,
        connections: ConnectionCount | None = None,
        origins: Sequence[str] = (),
        hosts: Sequence[str] = (),
    ) -> None:
        self.server = server if server is not None else Harness()
        self.clock = self.server.clock
        context = self.server.context
        if connections is not None:
            context = attrs.evolve(context, connections=connections)
            self.server.factory.context = context
        self.context = context
        self.site: ChatSite = make_site(context, origins, 256 * 1024, hosts)
        self.site.doStart()
        case.addCleanup(self.site.doStop)
        self._port = 50000

    def connect(self, host: str = "10.0.0.9") -> Client:
        self._port += 1
        return Client(self, IPv4Address("TCP", host, self._port))


class Client:
    """One connection to the site."""

    def __init__(self, web: Web, address: IPv4Address) -> None:
        self.web = web
        self.transport = StringTransport(peerAddress=address)
        self.protocol: Any = web.site.buildProtocol(address)
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def request(
        self, path: bytes = b"/", method: bytes = b"GET", host: bytes = b"127.0.0.1:8080", *headers: bytes
    ) -> None:
        lines = [method + b" " + path + b" HTTP/1.1", b"Host: " + host, *headers]
        self.send(b"\r\n".join(lines) + b"\r\n\r\n")

    def get(self, path: bytes = b"/", *headers: bytes, method: bytes = b"GET") -> Response:
        self.request(path, method, b"127.0.0.1:8080", *headers)
        return self.response()

    def upgrade(self, origin: bytes | None = None, host: bytes = b"127.0.0.1:8080", *extra: bytes) -> None:
        headers = [
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)),
            b"Sec-WebSocket-Version: 13",
            *extra,
        ]
        if origin is not None:
            headers.append(b"Origin: " + origin)
        self.request(b"/ws", b"GET", host, *headers)

    def response(self) -> Response:
        data = self.transport.value()
        self.transport.clear()
        return parse(data)

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting or self.transport.disconnected)

    @property
    def aborted(self) -> bool:
        return bool(self.transport.disconnected)

    def lose(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))


class PageTests(unittest.TestCase):
    def setUp(self) -> None:
        self.web = Web(self)

    def test_each_file_is_served_with_its_type_and_the_security_headers_and_no_server(self) -> None:
        client = self.web.connect()
        for path, kind in TYPES.items():
            response = client.get(path.encode())
            with open(os.path.join(STATIC, path[1:]), "rb") as f:
                self.assertEqual(response.body, f.read())
            self.assertEqual((response.status, response.headers["content-type"]), (200, kind))
            self.assertEqual({k: response.headers[k] for k in SECURITY}, SECURITY)
            self.assertEqual(response.headers["date"], datetimeToString(self.web.clock.seconds()).decode())
            self.assertNotIn("server", response.headers)
        self.assertFalse(client.closing)

    def test_slash_is_the_page(self) -> None:
        client = self.web.connect()
        self.assertEqual(client.get(b"/").body, client.get(b"/index.html").body)

    def test_the_files_are_read_once_at_startup(self) -> None:
        def no_files(*args: object, **kwargs: object) -> object:
            raise AssertionError("a file was opened while serving")

        client = self.web.connect()
        self.patch(builtins, "open", no_files)
        self.assertEqual([client.get(p.encode()).status for p in TYPES], [200] * 4)

    def test_a_file_the_browser_has_is_not_sent_again(self) -> None:
        client = self.web.connect()
        etag = client.get(b"/chat.js").headers["etag"]
        again = client.get(b"/chat.js", b"If-None-Match: " + etag.encode())
        self.assertEqual((again.status, again.body), (304, b""))
        self.assertNotEqual(client.get(b"/chat.css").headers["etag"], etag)

    def test_head_says_the_length_without_the_body_and_nothing_is_logged(self) -> None:
        """Before (for a path with no file): a line in the log per request, with its URL."""
        events = capture_log(self)
        for path, status, length in (
            (b"/chat.css", b"200 OK", os.path.getsize(os.path.join(STATIC, "chat.css"))),
            (b"/nothing/here", b"404 Not Found", len(b"Not found.\n")),
            (b"/ws", b"405 Method Not Allowed", len(b"Method not allowed.\n")),
        ):
            client = self.web.connect()
            client.request(path, b"HEAD")
            head, _, body = client.transport.value().partition(b"\r\n\r\n")
            self.assertIn(b"HTTP/1.1 " + status, head)
            self.assertIn(b"content-length: %d" % length, head.lower())
            self.assertEqual(body, b"")
        self.assertEqual(events, [])

    def test_any_other_path_is_a_short_404_and_nothing_is_logged(self) -> None:
        """
        Before: C{%00} raised in static.File (a 500, and a traceback in the
        log), C{%ff} and C{%c0%ae} logged a traceback each.
        """
        events = capture_log(self)
        client = self.web.connect()
        for path in (
            b"/%00",
            b"/%ff",
            b"/%c0%ae%c0%ae/etc/passwd",
            b"/..%2f..%2fetc/passwd",
            b"/chat.js/",
            b"/static/chat.js",
            b"//chat.js",
            b"/chat%2ejs",
            b"/ws/more",
            b"/" + b"A" * 8000,
        ):
            response = client.get(path)
            self.assertEqual((response.status, response.body), (404, b"Not found.\n"), path[:40])
            self.assertEqual({k: response.headers[k] for k in SECURITY}, SECURITY)
        self.assertEqual(events, [])

    def test_no_request_is_logged(self) -> None:
        """Before: the access log had a line per request, with the URL whole."""
        events = capture_log(self)
        client = self.web.connect()
        client.get(b"/")
        client.get(b"/" + b"x" * 8000)
        self.assertEqual(events, [])

    def test_a_failure_is_a_short_500_and_its_traceback_is_logged_once_a_minute(self) -> None:
        events = capture_log(self)

        def fail(request: object) -> bytes:
            raise RuntimeError("a bug")

        self.patch(self.web.site.resource, "render", fail)
        client = self.web.connect()
        for _ in range(3):
            response = client.get(b"/")
            self.assertEqual(
                (response.status, response.body), (500, b"The server failed to answer; it has been logged.\n")
            )
            self.assertEqual({k: response.headers[k] for k in SECURITY}, SECURITY)
        self.assertEqual([e["log_failure"].value.args for e in events if "log_failure" in e], [("a bug",)])
        self.flushLoggedErrors(RuntimeError)

    def test_other_methods_are_not_allowed(self) -> None:
        client = self.web.connect()
        response = client.get(b"/chat.js", method=b"POST")
        self.assertEqual((response.status, response.headers["allow"]), (405, "GET, HEAD"))

    def test_a_request_line_past_the_bound_is_answered_414_once_read_to_its_end(self) -> None:
        """Before: the connection was dropped, the rest unread, and no answer."""
        client = self.web.connect()
        client.send(b"GET /" + b"A" * 20_000)
        self.assertEqual(client.transport.value(), b"")
        client.send(b"A" * 50_000 + b" HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n")
        self.assertEqual(client.transport.value(), b"")
        client.send(b"\r\n")
        response = client.response()
        self.assertEqual((response.status, response.phrase), (414, "URI Too Long"))
        self.assertTrue(client.transport.disconnecting)

    def test_a_header_past_the_bound_is_answered_431(self) -> None:
        client = self.web.connect()
        client.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Big: " + b"B" * 20_000 + b"\r\n\r")
        client.send(b"\n")
        self.assertEqual(client.response().status, 431)


class DeadlineTests(unittest.TestCase):
    """A request has L{REQUEST_DEADLINE} seconds to arrive whole, however it is trickled."""

    def setUp(self) -> None:
        self.web = Web(self)
        self.clock = self.web.clock

    def test_headers_trickled_a_line_every_five_seconds_are_cut_off_at_the_deadline(self) -> None:
        """Before: every byte restarted Twisted's timeout of 12 hours."""
        events = capture_log(self)
        client = self.web.connect()
        client.send(b"GET /ws HTTP/1.1\r\n")
        for n in range(1, 3):
            self.clock.advance(REQUEST_DEADLINE / 2 - 0.01)
            self.assertFalse(client.closing)
            client.send(b"X-Trickle: %d\r\n" % n)
        self.clock.advance(0.02)
        self.assertTrue(client.aborted)
        self.assertEqual(client.transport.value(), b"")
        [line] = [e for e in events if e.get("kind") == "web connections closed: request not whole in time"]
        self.assertEqual(line["host"], "10.0.0.9")

    def test_a_body_trickled_is_cut_off_too(self) -> None:
        client = self.web.connect()
        client.send(b"POST /chat.js HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        for _ in range(9):
            client.send(b"x")
            self.clock.advance(1)
        self.assertFalse(client.closing)
        self.clock.advance(1)
        self.assertTrue(client.aborted)

    def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(self) -> None:
        client = self.web.connect()
        self.clock.advance(REQUEST_DEADLINE - 0.01)
        self.assertFalse(client.closing)
        self.clock.advance(0.01)
        self.assertTrue(client.transport.disconnecting)
        # Still there (its client reads nothing of the close): aborted later.
        self.clock.advance(REQUEST_DEADLINE)
        self.assertTrue(client.aborted)

    def test_a_request_in_time_is_answered_and_the_next_one_has_its_own_deadline(self) -> None:
        client = self.web.connect()
        self.clock.advance(REQUEST_DEADLINE - 1)
        self.assertEqual(client.get(b"/icon.svg").status, 200)
        self.clock.advance(REQUEST_DEADLINE - 1)
        self.assertFalse(client.closing)
        self.assertEqual(client.get(b"/icon.svg").status, 200)
        # Kept alive while idle for as long as a request may take, then closed.
        self.clock.advance(REQUEST_DEADLINE)
        self.assertTrue(client.transport.disconnecting)

    def test_a_closed_connection_whose_client_reads_nothing_is_aborted(self) -> None:
        client = self.web.connect()
        client.get(b"/chat.js", b"Connection: close")
        self.assertTrue(client.transport.disconnecting)
        self.clock.advance(REQUEST_DEADLINE)
        self.assertTrue(client.aborted)

    def test_a_connection_lost_leaves_no_timer(self) -> None:
        client = self.web.connect()
        client.send(b"GET / HTTP/1.1\r\n")
        client.lose()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_an_upgraded_websocket_has_no_deadline(self) -> None:
        client = self.web.connect()
        client.upgrade()
        self.assertIn(b"101", client.transport.value())
        self.clock.advance(REQUEST_DEADLINE * 2.5)  # short of the first ping's answer being due
        self.assertFalse(client.closing)


class CountTests(unittest.TestCase):
    """The web site's connections count with the TCP edge's, from the moment each is accepted."""

    def setUp(self) -> None:
        self.web = Web(self)
        self.connections = self.web.context.connections

    def test_connections_that_sent_nothing_count_and_the_next_one_is_told_429(self) -> None:
        """
        Before: a connection counted only once upgraded, so unfinished
        upgrades (or plain HTTP) from one address had no limit.
        """
        held = [self.web.connect() for _ in range(20)]
        self.assertEqual(self.connections["10.0.0.9"], 20)
        refused = self.web.connect()
        response = refused.get(b"/")
        self.assertEqual((response.status, response.phrase), (429, "Too Many Requests"))
        self.assertEqual(response.body.decode(), TOO_MANY)
        self.assertEqual(response.headers["connection"], "close")
        self.assertTrue(refused.transport.disconnecting)
        held[0].lose()
        self.assertEqual(self.web.connect().get(b"/").status, 200)

    def test_the_count_is_shared_with_the_tcp_edge(self) -> None:
        server = self.web.server
        terminals = [server.connect("10.0.0.9") for _ in range(19)]
        self.web.connect()
        self.assertIn("Too many connections", server.connect("10.0.0.9").read())
        self.assertEqual(self.web.connect().get(b"/").status, 429)
        terminals[0].lose()
        self.assertEqual(self.web.connect().get(b"/").status, 200)

    def test_an_upgraded_websocket_keeps_the_count_of_its_connection(self) -> None:
        client = self.web.connect()
        client.upgrade()
        self.assertIn(b"HTTP/1.1 101", client.transport.value())
        self.assertEqual(self.connections["10.0.0.9"], 1)
        client.lose()
        self.assertEqual((self.connections["10.0.0.9"], self.connections.open), (0, 0))

    def test_a_refused_upgrade_closes_and_stops_counting_at_once(self) -> None:
        client = self.web.connect()
        client.upgrade(b"http://evil.example")
        self.assertEqual(client.response().status, 403)
        self.assertTrue(client.transport.disconnecting)
        self.assertEqual(self.connections["10.0.0.9"], 0)

    def test_behind_a_proxy_the_connection_counts_for_the_address_the_proxy_names(self) -> None:
        client = self.web.connect("127.0.0.1")
        self.assertEqual(self.connections["127.0.0.1"], 1)
        # The PROXY header is read before the channel sees a byte: the
        # transport's peer is then the address it names.
        client.transport.peerAddr = IPv4Address("TCP", "10.1.2.3", 40000)
        client.get(b"/")
        self.assertEqual((self.connections["127.0.0.1"], self.connections["10.1.2.3"]), (0, 1))
        client.lose()
        self.assertEqual(self.connections["10.1.2.3"], 0)


class ReserveTests(unittest.TestCase):
    """Under the limit of descriptors, room for a newcomer is made from connections not logged in."""

    def setUp(self) -> None:
        # 80 descriptors: room for 20 connections.
        self.connections = ConnectionCount(max_per_host=100, descriptors=80)
        self.web = Web(self, connections=self.connections)
        self.server = self.web.server

    def test_unfinished_requests_make_room_for_a_login_over_tcp(self) -> None:
        unfinished = [self.web.connect(f"10.0.0.{i % 5}") for i in range(20)]
        for client in unfinished:
            client.send(b"GET / HTTP/1.1\r\n")
        user = self.server.login("columbia", host="10.9.9.9")
        self.assertFalse(user.closing)
        self.assertEqual(sum(c.aborted for c in unfinished), 1)

    def test_logged_in_users_of_both_edges_are_never_closed_for_room(self) -> None:
        # 24 descriptors: room for 6 connections, as many as there are users.
        self.connections = ConnectionCount(max_per_host=100, descriptors=24)
        self.assertEqual(self.connections.capacity, 6)
        web = Web(self, connections=self.connections)
        server = web.server
        users = [server.login(name, host="10.0.0.1") for name in ("columbia", "seas")]
        browser = web.connect("10.0.0.2")
        browser.upgrade()
        browser.transport.clear()
        login = {"type": "login", "username": "google", "password": PASSWORDS["google"]}
        browser.send(wsproto.Connection(wsproto.ConnectionType.CLIENT).send(TextMessage(json.dumps(login))))
        server.clock.advance(0)
        self.assertIn(b"welcome", browser.transport.value())
        unfinished = [web.connect("10.0.0.3") for _ in range(3)]
        newcomers = [web.connect("10.0.0.4") for _ in range(5)]
        self.assertEqual(sum(c.aborted for c in unfinished + newcomers), 5)
        # The rest of the users log in over TCP, each in the room of one not logged in.
        users += [server.login(name, host="10.0.0.5") for name in ("foobar", "facebook", "csee4119")]
        self.assertTrue(all(c.aborted for c in unfinished + newcomers))
        for client in unfinished + newcomers:
            client.lose()
        # Now everyone has logged in: a newcomer on either edge is closed at once.
        self.assertTrue(web.connect("10.0.0.6").aborted)
        self.assertTrue(server.connect("10.0.0.6").transport.disconnected)
        self.assertFalse(any(u.closing for u in users) or browser.closing)


class OneTurnFloodTests(unittest.TestCase):
    """Real sockets on the real reactor: what the port accepts in one turn of it."""

    timeout = 30

    async def test_a_flood_accepted_in_one_turn_holds_no_more_descriptors_than_it_has_room_for(self) -> None:
        """
        60 connections wait to be accepted by a site with room for 20 (80
        descriptors); the port takes all of them in one turn, each past
        the 20th closing one that has not logged in.  The descriptors held
        after that turn are 20, not 60.  Before: the ones closed to make
        room held theirs until the next turn, so at a real limit a flood
        accepted in one turn ran out of descriptors (EMFILE), which CI saw.
        """
        if not os.path.isdir("/proc/self/fd"):
            raise unittest.SkipTest("counts descriptors in /proc/self/fd")
        connections = ConnectionCount(max_per_host=100, descriptors=80)
        web = Web(self, connections=connections)
        endpoint = write_through(serverFromString(reactor, "tcp:0:interface=127.0.0.1:backlog=128"))
        port: Any = await endpoint.listen(web.site)
        self.addCleanup(port.stopListening)
        clients = []
        for _ in range(60):
            client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
            self.addCleanup(client.close)
            clients.append(client)
        before = len(os.listdir("/proc/self/fd"))
        port.doRead()  # the reactor's turn for the listening socket
        held = len(os.listdir("/proc/self/fd")) - before
        self.assertEqual((connections.open, connections.live), (60, 20))
        self.assertEqual(held, 20)
        # The losses are reported on the next turn; closing the clients ends the rest.
        await until(lambda: connections.open == 20, "the 40 closed to make room released")
        for client in clients:
            client.close()
        await until(lambda: connections.open == 0, "every connection released")


class WebHostOptionTests(unittest.TestCase):
    def setUp(self) -> None:
        self.users = self.mktemp()
        with open(self.users, "w") as f:
            f.write("columbia 116bway\n")

    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(["--users", self.users, *args])
        return options

    def test_host_names_are_listed_in_lower_case(self) -> None:
        self.assertEqual(self.parse()["web-hosts"], ())
        self.assertEqual(
            self.parse("--web-host", "Chat.Example.org, chat.local")["web-hosts"],
            ("chat.example.org", "chat.local"),
        )

    def test_something_that_is_not_a_host_name_is_one_line(self) -> None:
        for bad in ("chat.example.org:8080", "https://chat.example.org", "two words"):
            with self.assertRaises(SystemExit) as caught:
                self.parse("--web-host", bad)
            message = str(caught.exception.code)
            self.assertEqual(message, f"twistd chat: --web-host: {bad!r} is not a host name")


class UpgradeTests(unittest.TestCase):
    def setUp(self) -> None:
        self.web = Web(self, hosts=["chat.local"])

    def test_an_upgrade_under_a_rebound_name_is_refused_with_one_line(self) -> None:
        """Before: 101, the Origin agreeing with the Host."""
        client = self.web.connect()
        client.upgrade(b"http://evil.example", b"evil.example")
        response = client.response()
        self.assertEqual(
            (response.status, response.body),
            (403, b"This page may not open a chat connection here (host not allowed).\n"),
        )

    def test_an_upgrade_under_a_listed_name_is_let_in(self) -> None:
        client = self.web.connect()
        client.upgrade(b"http://chat.local:8080", b"chat.local:8080")
        self.assertTrue(client.transport.value().startswith(b"HTTP/1.1 101 "))

    def test_headers_wsproto_will_not_take_are_a_400_not_a_failure(self) -> None:
        """Before: wsproto raised UnicodeDecodeError, and the site logged a traceback."""
        events = capture_log(self)
        for header in (b"Sec-WebSocket-Protocol: \xff\xfe", b"Sec-WebSocket-Extensions: \xe9"):
            client = self.web.connect()
            client.upgrade(None, b"127.0.0.1:8080", header)
            response = client.response()
            self.assertEqual(response.status, 400, header)
            self.assertTrue(client.transport.disconnecting)
        self.assertEqual(events, [])
