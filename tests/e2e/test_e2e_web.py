"""
The web edge against a real ``twistd -n chat --web``: WebSocket users
(speaking JSON on C{/ws}) and TCP users (speaking lines) in the same chat,
and what the web edge guards against (other origins, oversized or broken
messages, too many connections, password guessing).
"""

from __future__ import annotations

import json
import signal
import time

from twisted.trial import unittest
from twisted.web.websocket import ConnectionRejected

from tests.e2e.support import (
    COMMAND,
    PASSWORD,
    USERNAME,
    USERS,
    Lab,
    closing,
    drain,
    entries,
    offline_line,
    ws_drain,
)

STORED = r"is offline; the message will be delivered when they next log in\."
TOO_MANY = "Too many connections from your address (limit 2).\r\n"

#: The fields of a message as a browser gets it.
MESSAGE_FIELDS = {"type", "from", "kind", "text", "time", "id"}

#: Loopback is exempt from the per-address limit by default; these tests need it counted.
LIMIT_TWO = ("--exempt", "", "--max-connections-per-ip", "2")


def types(events: list[dict[str, object]]) -> list[object]:
    return [event.get("type") for event in events]


class ChatAcrossEdgesTests(unittest.TestCase):
    def assertMessage(self, event: dict[str, object], sender: str, kind: str, text: str) -> None:
        """C{event} is a delivered message with every field a browser needs, sent just now."""
        self.assertEqual(set(event), MESSAGE_FIELDS, event)
        self.assertEqual((event["from"], event["kind"], event["text"]), (sender, kind, text))
        sent = event["time"]
        assert isinstance(sent, float | int), event
        self.assertLess(abs(time.time() - sent), 60, event)
        self.assertIsInstance(event["id"], str)
        self.assertTrue(event["id"], event)

    async def test_websocket_and_tcp_users_exchange_private_messages_and_broadcasts(self) -> None:
        """
        A message crosses edges in both directions, rendered for each: the
        TCP user reads exactly the classic line, the browser a JSON object.
        """
        lab = Lab(self)
        _, port, web = await lab.start_web()
        columbia = await lab.login(port, "columbia")
        seas = await lab.ws_login(web, "seas")

        seas.send({"type": "message", "to": ["columbia"], "text": "hi"})
        receipt = await seas.expect(type="receipt")
        self.assertEqual((receipt["delivered"], receipt["stored"]), (["columbia"], []))
        # The line is the classic one; the CRLF before it ends columbia's "Command: " line.
        self.assertEqual(await drain(columbia), "\r\nseas (private): hi\r\n")

        columbia.send("message seas hello back")
        await columbia.expect(r"Sent to seas\.\r\n" + COMMAND)
        private = await seas.expect(type="message")
        self.assertMessage(private, "columbia", "private", "hello back")

        seas.send({"type": "broadcast", "text": "to everyone"})
        receipt = await seas.expect(type="receipt")
        self.assertEqual(receipt["broadcast"], 1)
        self.assertEqual(await drain(columbia), "\r\nseas (broadcast): to everyone\r\n")

        columbia.send("broadcast message and back to you")
        await columbia.expect(r"Broadcast to 1 user\.\r\n" + COMMAND)
        broadcast = await seas.expect(type="message")
        self.assertMessage(broadcast, "columbia", "broadcast", "and back to you")
        self.assertNotEqual(private["id"], broadcast["id"])
        # Nobody gets their own broadcast back, on either edge.
        self.assertNotIn("message", types(await ws_drain(seas)))
        self.assertNotIn("and back to you", await drain(columbia))

    async def test_whoelse_on_each_edge_lists_the_user_on_the_other(self) -> None:
        """One roster for both edges: each side sees the other, in its own rendering."""
        lab = Lab(self)
        _, port, web = await lab.start_web()
        columbia = await lab.login(port, "columbia")
        seas = await lab.ws_login(web, "seas")
        columbia.send("whoelse")
        m = await columbia.expect(r"Online now \(1\):\r\n((?:  [^\r\n]*\r\n)*)" + COMMAND)
        self.assertEqual(entries(m.group(1)), ["seas"])
        seas.send({"type": "whoelse"})
        roster = await seas.expect(type="roster")
        self.assertEqual(roster["view"], "online")
        self.assertEqual([(u["name"], u["online"]) for u in roster["users"]], [("columbia", True)])

    async def test_offline_message_sent_from_websocket_is_shown_at_the_next_tcp_login(self) -> None:
        """What a browser leaves for someone offline is stored like a terminal's, and shown at a TCP login."""
        lab = Lab(self)
        _, port, web = await lab.start_web()
        seas = await lab.ws_login(web, "seas")
        seas.send({"type": "message", "to": ["google"], "text": "kept for you"})
        receipt = await seas.expect(type="receipt")
        self.assertEqual((receipt["delivered"], receipt["stored"]), ([], ["google"]))
        google = await lab.connect(port)
        await google.expect(USERNAME)
        google.send("google", "partofalphabet")
        await google.expect(
            r"Welcome[^\r\n]*\r\n"
            r"You have 1 offline message:\r\n" + offline_line("seas", "private", "kept for you") + COMMAND
        )

    async def test_offline_message_sent_from_tcp_is_in_the_offline_event_at_websocket_login(self) -> None:
        """A browser gets what waited for it as one event, with the same fields as a live message."""
        lab = Lab(self)
        _, port, web = await lab.start_web()
        columbia = await lab.login(port, "columbia")
        columbia.send("message seas while you were out")
        await columbia.expect("seas " + STORED)
        seas = await lab.ws_login(web, "seas")
        offline = await seas.expect(type="offline")
        [message] = offline["messages"]
        self.assertEqual(
            (message["from"], message["kind"], message["text"]), ("columbia", "private", "while you were out")
        )
        self.assertEqual(set(message), MESSAGE_FIELDS - {"type"})
        # Shown right after the welcome (the resume token may come between).
        shown = [t for t in types(seas.events) if t != "session"]
        self.assertEqual(shown[:4], ["hello", "prompt", "welcome", "offline"])


class LoginAcrossEdgesTests(unittest.TestCase):
    async def test_user_online_on_one_edge_cannot_log_in_on_the_other(self) -> None:
        """
        One user, one session, whichever edge it came from; the refused
        connection may still log in as someone else, and the first session
        goes on.
        """
        lab = Lab(self)
        _, port, web = await lab.start_web()
        columbia = await lab.login(port, "columbia")
        second = await lab.websocket(web)
        await second.expect({"type": "prompt", "for": "login"})
        second.send({"type": "login", "username": "columbia", "password": "116bway"})
        refused = await second.expect(type="login_refused")
        self.assertEqual(refused["reason"], "already_online")
        self.assertIn("already logged in", refused["text"])
        await second.expect({"type": "prompt", "for": "login"})

        seas = await lab.ws_login(web, "seas")
        again = await lab.connect(port)
        await again.expect(USERNAME)
        again.send("seas", "summerisover")
        await again.expect(PASSWORD + r"seas is already logged in[^\r\n]*\r\n" + USERNAME)

        second.send({"type": "login", "username": "google", "password": "partofalphabet"})
        await second.expect(type="welcome", name="google")
        seas.send({"type": "message", "to": ["columbia"], "text": "still here"})
        await columbia.expect(r"seas \(private\): still here\r\n")
        self.assertNotIn("Welcome", again.text)

    async def test_websocket_user_sees_tcp_users_come_and_go(self) -> None:
        """
        A browser keeps its roster up to date from presence events, so it
        must get them for users on the other edge too.
        """
        lab = Lab(self)
        _, port, web = await lab.start_web()
        seas = await lab.ws_login(web, "seas")
        columbia = await lab.login(port, "columbia")
        online = await seas.expect(type="presence", name="columbia")
        self.assertIs(online["online"], True)
        columbia.send("logout")
        await closing(columbia)
        offline = await seas.expect(type="presence", name="columbia")
        self.assertIs(offline["online"], False)
        self.assertGreaterEqual(offline["time"], online["time"])

    async def test_three_wrong_passwords_over_websocket_block_the_user_from_that_address_on_tcp_too(
        self,
    ) -> None:
        """Guessing is blocked per user and address, not per edge: switching to TCP must not reset it."""
        lab = Lab(self)
        _, port, web = await lab.start_web("--max-attempts", "3", "--block-time", "45")
        guesser = await lab.websocket(web)
        for _ in range(2):
            await guesser.expect({"type": "prompt", "for": "login"})
            guesser.send({"type": "login", "username": "columbia", "password": "guess"})
            refused = await guesser.expect(type="login_refused")
            self.assertEqual(refused["reason"], "invalid")
        await guesser.expect({"type": "prompt", "for": "login"})
        guesser.send({"type": "login", "username": "columbia", "password": "guess"})
        blocked = await guesser.expect(type="login_refused", reason="blocked")
        self.assertTrue(0 < blocked["seconds"] <= 45, blocked)
        await closing(guesser)
        # The same address over TCP, with the right password: blocked too.
        tcp = await lab.connect(port)
        await tcp.expect(USERNAME)
        tcp.send("columbia", "116bway")
        await closing(tcp)
        self.assertRegex(tcp.text, r"columbia is blocked from your address for \d+ more seconds")
        self.assertNotIn("Welcome", tcp.text)


class GuardTests(unittest.TestCase):
    async def test_upgrade_from_another_origin_is_refused_and_takes_no_place(self) -> None:
        """
        A page elsewhere may not open a chat connection in its visitor's
        name: 403, and no session (so it does not count against the
        address's connections either).  The site's own origin and those
        given with --web-origin are let in.
        """
        lab = Lab(self)
        _, port, web = await lab.start_web("--web-origin", "https://chat.example.org", *LIMIT_TWO)
        refused = [
            await lab.upgrade(web, origin="https://evil.example.org"),
            # Another port is another origin.
            await lab.upgrade(web, origin=f"http://127.0.0.1:{port}"),
        ]
        self.assertEqual([client.status for client in refused], [403, 403])
        own = await lab.upgrade(web, origin=f"http://127.0.0.1:{web}")
        listed = await lab.upgrade(web, origin="https://chat.example.org")
        self.assertEqual((own.status, listed.status), (101, 101))
        for client in (own, listed):
            await client.expect(type="hello", protocol=1)
        # The two accepted upgrades fill the limit of 2; the refused ones took none.
        third = await lab.upgrade(web, origin=f"http://127.0.0.1:{web}")
        self.assertEqual(third.status, 429)
        for client in refused:
            self.assertIn(b"origin not allowed", client.body)

    async def test_oversized_message_is_refused_and_closes_only_that_connection(self) -> None:
        """
        A message over 4 KiB is never buffered whole: one error, the
        connection closes, nothing of it is sent, and the others go on.
        """
        lab = Lab(self)
        _, port, web = await lab.start_web()
        columbia = await lab.login(port, "columbia")
        seas = await lab.ws_login(web, "seas")
        big = await lab.ws_login(web, "google")
        request = {"type": "message", "to": ["columbia"], "text": ""}
        request["text"] = "x" * (5000 - len(json.dumps(request)))
        self.assertEqual(len(json.dumps(request)), 5000)
        big.send(request)
        error = await big.expect(type="error")
        self.assertEqual(error["code"], "message_too_big")
        await closing(big)
        self.assertNotIn("google", await drain(columbia))
        # Everyone else goes on, and the server takes new connections.
        seas.send({"type": "message", "to": ["columbia"], "text": "still fine"})
        await columbia.expect(r"seas \(private\): still fine\r\n")
        fresh = await lab.ws_login(web, "csee4119")
        fresh.send({"type": "whoelse"})
        roster = await fresh.expect(type="roster")
        self.assertEqual(sorted(u["name"] for u in roster["users"]), ["columbia", "seas"])

    async def test_bad_json_is_answered_with_an_error_and_the_session_goes_on(self) -> None:
        """A program's mistake costs it one message, not its session."""
        lab = Lab(self)
        _, _, web = await lab.start_web()
        seas = await lab.ws_login(web, "seas")
        seas.send_text('{"type": "whoelse"')
        error = await seas.expect(type="error")
        self.assertEqual(error["code"], "bad_json")
        seas.send({"type": "whoelse"})
        roster = await seas.expect(type="roster")
        self.assertEqual(roster["users"], [])
        self.assertFalse(seas.closed.called)

    async def test_frame_split_across_reads_is_answered_once(self) -> None:
        """
        A frame may arrive in pieces (here cut inside a multi-byte
        character): the server joins them and answers once.  Between the two
        writes a round trip on another connection shows that the server has
        read the first piece alone (on loopback the piece is in the server's
        socket before that connection's request is).
        """
        lab = Lab(self)
        _, port, web = await lab.start_web()
        columbia = await lab.login(port, "columbia")
        raw = await lab.upgrade(web)
        self.assertEqual(raw.status, 101)
        await raw.expect({"type": "prompt", "for": "login"})
        raw.send({"type": "login", "username": "seas", "password": "summerisover"})
        await raw.expect(type="welcome", name="seas")

        text = "caffè ☕ split"
        request = {"type": "message", "to": ["columbia"], "text": text}
        frame = raw.frame(request)
        payload = json.dumps(request, ensure_ascii=False).encode("utf-8")
        cut = len(frame) - len(payload) + payload.index("☕".encode()) + 1
        sock = raw.transport.getHandle()  # type: ignore[union-attr]
        self.assertEqual(sock.send(frame[:cut]), cut)  # at once, not queued by the reactor
        self.assertEqual(await drain(columbia), "")
        raw.write(frame[cut:])

        receipt = await raw.expect(type="receipt")
        self.assertEqual(receipt["delivered"], ["columbia"])
        self.assertEqual(await drain(columbia), f"\r\nseas (private): {text}\r\n")
        self.assertNotIn("receipt", types(await ws_drain(raw)))

    async def test_connection_limit_counts_tcp_and_websocket_connections_together(self) -> None:
        """One address cannot double its connections by using both edges."""
        lab = Lab(self)
        _, port, web = await lab.start_web(*LIMIT_TWO)
        columbia = await lab.login(port, "columbia")
        seas = await lab.ws_login(web, "seas")
        # One of each: a third on either edge is one too many.
        extra = await lab.connect(port)
        await closing(extra)
        self.assertEqual(extra.text, TOO_MANY)
        try:
            await lab.websocket(web)
        except ConnectionRejected as e:
            self.assertEqual(e.response.code, 429)
        else:
            self.fail("a third connection was upgraded")
        # (Twisted's client ends a refusal's body with ConnectionDone, which
        # readBody takes for a failure: the sentence is read by hand.)
        by_hand = await lab.upgrade(web)
        self.assertEqual(
            (by_hand.status, by_hand.body.decode("utf-8")), (429, TOO_MANY.replace("\r\n", "\n"))
        )
        # The two that fit are untouched.
        seas.send({"type": "message", "to": ["columbia"], "text": "we fit"})
        await columbia.expect(r"seas \(private\): we fit\r\n")

    async def test_sigterm_says_goodbye_on_both_edges_before_exiting(self) -> None:
        """Users on either edge learn why the connection ends, rather than seeing it drop."""
        lab = Lab(self)
        server, port, web = await lab.start_web()
        columbia = await lab.login(port, "columbia")
        seas = await lab.ws_login(web, "seas")
        await server.signal(signal.SIGTERM)
        await columbia.expect(r"The server is shutting down\. Goodbye\.\r\n")
        await closing(columbia)
        goodbye = await seas.expect(type="goodbye")
        self.assertEqual(goodbye["reason"], "shutdown")
        await closing(seas)
        self.assertTrue(
            server.clean_exit() or server.killed_by() == signal.SIGTERM,
            f"exit: {server.exit}\n{server.log.decode()}",
        )


class ProxyTests(unittest.TestCase):
    async def test_behind_a_proxy_the_guard_blocks_the_address_the_proxy_names(self) -> None:
        """
        With C{--web haproxy:tcp:...} the address is the one in the PROXY
        header: three wrong passwords block that address, not the proxy's
        (every connection here comes from 127.0.0.1).
        """
        lab = Lab(self)
        _, _, web = await lab.start_web("--web", "haproxy:tcp:0:interface=127.0.0.1", "--exempt", "")
        guesser = await lab.upgrade(web, proxy_from="10.1.2.3")
        self.assertEqual(guesser.status, 101)
        for _ in range(3):
            guesser.send({"type": "login", "username": "columbia", "password": "wrong"})
            await guesser.expect(type="login_refused")
        blocked = await guesser.expect(type="login_refused", reason="blocked")
        self.assertGreater(blocked["seconds"], 0)

        again = await lab.upgrade(web, proxy_from="10.1.2.3")
        again.send({"type": "login", "username": "columbia", "password": USERS["columbia"]})
        await again.expect(type="login_refused", reason="blocked")

        elsewhere = await lab.upgrade(web, proxy_from="10.9.9.9")
        elsewhere.send({"type": "login", "username": "columbia", "password": USERS["columbia"]})
        await elsewhere.expect(type="welcome", name="columbia")
