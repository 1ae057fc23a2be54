"""
The standing adversarial suite: the attacks of the "Abuse" issue, each as
numbers a test checks, against a real ``twistd -n chat`` over loopback.

What the probe did to the server, and what each test holds it to:

- a pre-login burst flood (300 connections from 15 addresses, 64 KiB of
  invalid lines each) made a login take 25 s and the server grow from 58 MB
  to 1.67 GB: here a login takes under 1 s and RSS grows by under 64 MiB;
- 20 connections streaming lines before login made a login take 10-13 s,
  5 WebSockets sending C{{}} before login 8.9 s: here under 1 s, and the
  streams are closed;
- every refusal (a failed login) wrote a line, with what was typed: here a
  few lines in all, and nothing typed;
- a resume token must not outlive a C{logout};
- three wrong logins followed, in the same write, by a ping or an invalid
  UTF-8 frame raised wsproto's C{LocalProtocolError} (a traceback): here
  the connection closes, and the server logs no traceback;
- 969-deep JSON raised C{RecursionError} (a traceback): here every depth
  around the parser's limit gets an error or a close;
- text that forges (runs of spaces that wrap into a fake line, U+2028, a
  zero-width space in an intro) is refused, with its code, on both edges;
- an upgrade whose C{Host} and C{Origin} both name the attacker's site (DNS
  rebinding) was let in: here 403; bad HTTP paths (C{%00}, C{%ff},
  overlong UTF-8) logged tracebacks (C{%00} a 500), a 16,000-byte URL was
  logged whole and a 64 KiB one got no answer: here each is answered, and
  neither URL is in the log whole.

The servers run with C{--exempt ''}, so loopback gets no exemption from any
limit, as an attacker's address would not (except where a test says why).
A latency is measured with the reactor's clock around the awaits that make
it, and bounded at 1 s: a login takes milliseconds here, where the probe
measured 9 to 25 s, so a noisy machine stays far from either side.  The
figures each test saw go to the test log (C{_trial_temp/test.log}).

Not repeated here, tested with their fixes: upgrades trickled past the cap
of unfinished requests per address, the descriptor reserve, and parallel
password guesses across the nodes of a cluster.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer, reactor, task
from twisted.python import log
from twisted.trial import unittest
from wsproto.events import CloseConnection, Ping

from tests.e2e.support import (
    COMMAND,
    PASSWORD,
    USERNAME,
    USERS,
    Lab,
    LineClient,
    RawWebSocket,
    ServerProcess,
    WebSocketClient,
    closing,
    drain,
    timed,
    ws_drain,
)
from tests.expect import pause, until

T = TypeVar("T")

#: Every limit applies to loopback too: these clients stand for attackers.
NO_EXEMPTION = ("--exempt", "")

#: Lines that are each refused before login, each with a reply: not UTF-8,
#: a username with a space, control characters.
INVALID_LINES = b"\xff\xfe\xfd\r\ntwo words\r\n\x1b[2J\x07\r\n"


def burst(size: int) -> bytes:
    """C{size} bytes of L{INVALID_LINES}, whole lines."""
    return INVALID_LINES * (size // len(INVALID_LINES))


def gather(coroutines: list[Any]) -> defer.Deferred[list[Any]]:
    return defer.gatherResults([defer.ensureDeferred(c) for c in coroutines], consumeErrors=True)


async def connections(server: ServerProcess) -> int:
    """The server's own count of its connections (with a session), as SIGUSR2 logs it."""
    since = len(server.log)
    server.send_signal(signal.SIGUSR2)
    m = await server.expect_log(r"(\d+) connections, \d+ logged in here", since=since)
    return int(m.group(1))


async def settled(server: ServerProcess, count: int, timeout: float = 10) -> None:
    """Wait until the server holds C{count} connections: those closed are released."""
    held: list[int] = []

    async def released() -> bool:
        held.append(await connections(server))
        return held[-1] == count

    try:
        await until(released, f"the server to hold {count} connections", timeout, every=0.2)
    except AssertionError:
        raise AssertionError(f"the server still holds {held[-1]} connections, not {count}") from None


def streaming(write: Callable[[], None], until: defer.Deferred[None], interval: float = 0.005) -> None:
    """Call C{write} every C{interval} seconds until C{until} fires (the connection closed)."""
    loop = task.LoopingCall(write)
    loop.start(interval, now=True)

    def stop(result: object) -> object:
        if loop.running:
            loop.stop()
        return result

    until.addBoth(stop)


def masked_frame(opcode: int, payload: bytes, key: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    """A whole client frame built by hand (wsproto will not build an invalid one)."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def error_or_close(client: WebSocketClient | RawWebSocket) -> str:
    """The code of the next error C{client} gets, or C{"closed"} if the server closes it instead."""
    try:
        error = await client.expect(type="error")
    except AssertionError:
        if not client.closed.called:
            raise
        return "closed"
    return str(error["code"])


class PreLoginFloodTests(unittest.TestCase):
    """Input before login costs the server a few lines' work, then the connection."""

    timeout = 120

    async def test_burst_floods_from_many_addresses_leave_logins_fast_and_memory_flat(self) -> None:
        """
        Three rounds of 300 connections from 15 addresses (20 each, within
        the limit per address), each sending one 64 KiB burst of invalid
        lines at C{Username:} and closing; during each, a user from another
        address logs in.  Before: a login took 25 s and RSS went from 58 MB
        to 1.67 GB.
        """
        lab = Lab(self)
        server, port = await lab.start(*NO_EXEMPTION)
        sources = [f"127.0.0.{i}" for i in range(2, 17)]
        data = burst(64 * 1024)
        rss_before = server.status_kib("VmRSS")
        figures = []
        for round_ in range(1, 4):
            flood = await gather([lab.connect(port, source=sources[i % 15]) for i in range(300)])
            await gather([client.expect(USERNAME) for client in flood])
            for client in flood:
                client.send_bytes(data)
                client.transport.loseConnection()
            user, took = await timed(lab.login(port, "columbia", source="127.0.0.100"))
            await gather([closing(client, timeout=30) for client in flood])
            user.send("logout")
            await closing(user)
            await settled(server, 0)
            grown = server.status_kib("VmRSS") - rss_before
            figures.append(f"round {round_}: login {took:.3f} s, RSS +{grown} KiB")
            self.assertLess(took, 1.0, "; ".join(figures))
            self.assertLess(grown, 64 * 1024, "; ".join(figures))
        peak = server.status_kib("VmHWM") - rss_before
        log.msg(f"burst flood: {'; '.join(figures)}; peak RSS +{peak} KiB")
        self.assertLess(peak, 64 * 1024, f"peak RSS +{peak} KiB; " + "; ".join(figures))

    async def test_lines_streamed_before_login_close_the_stream_and_logins_stay_fast(self) -> None:
        """
        20 connections from one address stream invalid lines without pause;
        a user from another address logs in meanwhile.  Before: 10-13 s,
        and the streams went on.
        """
        lab = Lab(self)
        _, port = await lab.start(*NO_EXEMPTION)
        streams = await gather([lab.connect(port, source="127.0.0.2") for _ in range(20)])
        await gather([client.expect(USERNAME) for client in streams])
        chunk = burst(65536)
        for client in streams:

            def send(client: LineClient = client) -> None:
                client.send_bytes(chunk)

            streaming(send, client.closed)
        # Let them stream for a second (less if the server closes them all).
        deadline = reactor.seconds() + 1
        while reactor.seconds() < deadline and not all(client.closed.called for client in streams):
            await pause(0.05)
        user, took = await timed(lab.login(port, "columbia", source="127.0.0.3"))
        log.msg(f"streaming lines: login {took:.3f} s")
        self.assertLess(took, 1.0)
        # The server closes every stream; the test never does.
        await gather([closing(client) for client in streams])
        for client in streams:
            self.assertLess(len(client.text), 4096, client.text)
        user.send("whoelse")
        await user.expect("Nobody else is online")

    async def test_websockets_sending_before_login_are_closed_and_logins_stay_fast(self) -> None:
        """
        5 WebSockets send C{{}} without pause before logging in (whole
        frames written straight to the socket, so the flood costs the test
        nothing); another logs in meanwhile.  Before: 8.9 s, and the
        flooders were answered, an error each, for as long as they sent.
        """
        lab = Lab(self)
        _, _, web = await lab.start_web(*NO_EXEMPTION)
        flooders = await gather([lab.websocket(web) for _ in range(5)])
        await gather([client.expect({"type": "prompt", "for": "login"}) for client in flooders])
        frames = masked_frame(0x1, b"{}") * 500
        for client in flooders:

            def send(client: WebSocketClient = client) -> None:
                client.transport.write(frames)

            streaming(send, client.closed)
        user, took = await timed(lab.ws_login(web, "columbia"))
        log.msg(f"WebSockets before login: login {took:.3f} s")
        self.assertLess(took, 1.0)
        await gather([closing(client) for client in flooders])
        for client in flooders:
            goodbye = [e for e in client.events if e.get("type") == "goodbye"]
            self.assertEqual([e.get("reason") for e in goodbye], ["flood"], client.events[-3:])
            # hello, prompt, an error for each of the 10 allowed, the goodbye.
            self.assertLessEqual(len(client.events), 15, client.events)
        self.assertEqual([e["type"] for e in await ws_drain(user)], [])


class LogVolumeTests(unittest.TestCase):
    timeout = 60

    async def test_failed_logins_write_a_few_lines_in_all_and_nothing_typed(self) -> None:
        """
        One client fails to log in with fresh usernames (so the guard never
        blocks it), reconnecting whenever the server closes it, for four
        seconds.  Before: a line per attempt, naming what was typed.
        """
        lab = Lab(self)
        server, port = await lab.start(*NO_EXEMPTION)
        await settled(server, 0)
        start = len(server.log)
        typed: list[str] = []
        connections_made = 0
        deadline = reactor.seconds() + 4
        while reactor.seconds() < deadline:
            client = await lab.connect(port)
            connections_made += 1
            try:
                await client.expect(USERNAME)
                while reactor.seconds() < deadline:
                    name, password = f"nx{os.urandom(5).hex()}", f"pw{os.urandom(5).hex()}"
                    client.send(name)
                    await client.expect(PASSWORD)
                    client.send(password)
                    typed += [name, password]
                    await client.expect(r"Invalid username or password\.\r\n" + USERNAME)
            except AssertionError:
                self.assertTrue(client.closed.called, client.unread())
            else:
                await client.close()
        attempts = len(typed) // 2
        self.assertGreater(attempts, 30, "too few attempts to measure anything")
        await settled(server, 0)
        written = server.log[start:].decode("utf-8", "replace")
        # Leave out the server's answers to SIGUSR2 (the test's own questions).
        asked = ("SIGUSR2", "connections, ")
        lines = [line for line in written.splitlines() if not any(a in line for a in asked)]
        said = f"{attempts} attempts on {connections_made} connections:\n{written[:3000]}"
        log.msg(f"failed logins: {len(lines)} lines for {said}")
        self.assertLessEqual(len(lines), 4, said)
        for text in typed:
            self.assertNotIn(text, written)


class WebSocketAbuseTests(unittest.TestCase):
    timeout = 60

    async def test_no_token_resumes_a_session_after_logout(self) -> None:
        """
        A token taken from a page (or its storage) is worth nothing once
        its user has logged out: not even a resume sent the moment the
        goodbye arrives, and not one kept from an earlier web session that
        was lost rather than logged out, once the user logs out over TCP.
        """
        lab = Lab(self)
        server, port, web = await lab.start_web(*NO_EXEMPTION)
        thief = await lab.websocket(web)
        await thief.expect({"type": "prompt", "for": "login"})
        browser = await lab.ws_login(web, "columbia")
        token = (await browser.expect(type="session"))["token"]
        browser.send({"type": "logout"})
        await browser.expect(type="goodbye", reason="logout")
        thief.send({"type": "resume", "token": token})
        refused = await thief.expect(type="login_refused")
        self.assertEqual(refused["reason"], "expired")
        await closing(browser)

        lost = await lab.ws_login(web, "seas")
        kept = (await lost.expect(type="session"))["token"]
        lost.transport.abortConnection()
        await closing(lost)
        await settled(server, 1)  # the thief
        terminal = await lab.login(port, "seas")
        terminal.send("logout")
        await closing(terminal)
        await thief.expect({"type": "prompt", "for": "login"})
        thief.send({"type": "resume", "token": kept})
        refused = await thief.expect(type="login_refused")
        self.assertEqual(refused["reason"], "expired")
        self.assertNotIn("welcome", [e.get("type") for e in thief.events])

    async def close_race(self, lab: Lab, web: int, before: list[bytes], expected: list[str]) -> None:
        """
        Upgrade by hand; send each of C{before} (frames) but the last,
        awaiting the next event of C{expected} after each; then, in one
        write, the last of C{before} with a ping and a text frame that is
        not UTF-8.  The server ends the connection (its close frame is
        answered, as a browser does), and logs no traceback (the L{Lab}).
        """
        raw = await lab.upgrade(web)
        self.assertEqual(raw.status, 101)
        await raw.expect({"type": "prompt", "for": "login"})
        for frame, answer in zip(before[:-1], expected, strict=True):
            raw.write(frame)
            await raw.expect(type=answer)
        raw.write(before[-1] + raw.ws.send(Ping(b"race")) + masked_frame(0x1, b"\xff\xfe not utf-8"))
        # Poll for the server's close frame (RawWebSocket keeps it among the
        # events without waking an expect), or for the connection to end.
        deadline = reactor.seconds() + 15
        while not raw.closed.called and reactor.seconds() < deadline:
            codes = [e["close"] for e in raw.events if "close" in e]
            if codes:
                raw.write(raw.ws.send(CloseConnection(codes[0]).response()))
                break
            await pause(0.05)
        await closing(raw)

    async def test_a_ping_and_invalid_utf8_in_the_write_that_ends_the_session(self) -> None:
        """
        After the third wrong login (the block closes the connection), or a
        logout, a ping and an invalid UTF-8 frame in the same write.
        Before: wsproto's LocalProtocolError, unhandled.
        """
        lab = Lab(self)
        _, _, web = await lab.start_web(*NO_EXEMPTION, "--max-attempts", "3")

        def login(name: str, password: str) -> bytes:
            return masked_frame(
                0x1, json.dumps({"type": "login", "username": name, "password": password}).encode()
            )

        wrong = [login("columbia", "guess") for _ in range(3)]
        await self.close_race(lab, web, wrong, ["login_refused", "login_refused"])
        # The same in one write: the three guesses, the ping, the bad frame.
        await self.close_race(lab, web, [b"".join(login("seas", "guess") for _ in range(3))], [])
        logout = masked_frame(0x1, b'{"type":"logout"}')
        await self.close_race(lab, web, [login("google", "partofalphabet"), logout], ["welcome"])
        # The server goes on.
        await lab.ws_login(web, "facebook")

    async def test_deep_json_is_an_error_or_a_close(self) -> None:
        """
        JSON nested about as deep as the parser's recursion allows, at every
        depth from 850 to 1,050, before and after logging in; and deeper, up
        to the 4 KiB limit and past it.  Before: 969-deep JSON (at the stack
        depth of a logged-in session's request) parsed, then raised
        RecursionError when the request was encoded again, and the
        connection dropped with a traceback.

        Loopback keeps its exemption from the command rate here, so that
        one session can send the whole sweep.
        """
        lab = Lab(self)
        _, _, web = await lab.start_web()
        deep = {d: '{"type":"nosuch","x":' + "[" * d + "]" * d + "}" for d in range(850, 1051)}
        outcomes: dict[str, list[object]] = {}

        def note(outcome: str, what: object) -> None:
            outcomes.setdefault(outcome, []).append(what)

        # Logged in: one session, a new one (of another user, as the server
        # may not have seen the last one go yet) only if the server closes it.
        users = iter(USERS)
        client = await lab.ws_login(web, next(users))
        for depth, payload in deep.items():
            client.send_text(payload)
            note(await error_or_close(client), depth)
            if client.closed.called:
                client = await lab.ws_login(web, next(users))
        # Before login: at most 9 requests a connection, within the budget.
        depths = list(deep)
        for start in range(0, len(depths), 9):
            client = await lab.websocket(web)
            await client.expect({"type": "prompt", "for": "login"})
            for depth in depths[start : start + 9]:
                client.send_text(deep[depth])
                note(await error_or_close(client), ("before login", depth))
                if client.closed.called:
                    break
            else:
                await client.close()
        # Deeper, unfinished, and too big.
        for what, payload in {
            "2,000 deep": '{"type":"nosuch","x":' + "[" * 2000 + "]" * 2000 + "}",
            "4,000 open brackets": "[" * 4000,
            "800 open objects": '{"a":' * 800,
            "100,000 deep": "[" * 100_000,
        }.items():
            client = await lab.websocket(web)
            await client.expect({"type": "prompt", "for": "login"})
            client.send_text(payload)
            note(await error_or_close(client), what)
            if not client.closed.called:
                await client.close()
        log.msg(f"deep JSON: {sorted((k, len(v)) for k, v in outcomes.items())}")
        # Every request was answered with an error or a close (error_or_close
        # waits for one of them); a traceback fails the test (the Lab).
        self.assertIn("100,000 deep", outcomes["message_too_big"])
        await lab.ws_login(web, "network")


#: Text that would pass for another line, or hide: each with the code it is refused with.
FORGERIES = [
    ("x" + " " * 400 + "seas (private): I am the admin", "space_run", "More than 16 spaces in a row"),
    ("hi\u2028seas (private): I am the admin", "line_separators", "Line and paragraph separators"),
    ("\u200bseas", "invisible_characters", "Invisible characters"),
]


class ForgingTests(unittest.TestCase):
    timeout = 60

    async def test_forging_text_is_refused_on_both_edges_and_reaches_nobody(self) -> None:
        lab = Lab(self)
        _, port, web = await lab.start_web(*NO_EXEMPTION)
        seas = await lab.login(port, "seas")
        columbia = await lab.login(port, "columbia")
        browser = await lab.ws_login(web, "google")
        await ws_drain(browser)
        for text, code, sentence in FORGERIES:
            for line in (f"message seas {text}", f"broadcast message {text}", f"personalintro {text}"):
                columbia.send(line)
                await columbia.expect(re.escape(sentence) + r".*\r\n" + COMMAND)
            for request in (
                {"type": "message", "to": ["seas"], "text": text},
                {"type": "broadcast", "text": text},
                {"type": "intro", "text": text},
                {"type": "line", "text": f"message seas {text}"},
            ):
                browser.send(request)
                error = await browser.expect(type="error")
                self.assertEqual(error["code"], code, (request, error))
        self.assertEqual(await drain(seas), "")
        seas.send("whoelse")
        roster = await seas.expect(r"Online now \(2\):\r\n([^:]*)" + COMMAND)
        self.assertEqual(sorted(roster.group(1).split()), ["columbia", "google"])
        self.assertEqual([e["type"] for e in await ws_drain(browser)], [])


class HttpTests(unittest.TestCase):
    timeout = 60

    async def test_an_upgrade_naming_another_host_is_refused(self) -> None:
        """
        DNS rebinding: the attacker's name resolves to 127.0.0.1, so the
        page's C{Origin} and the C{Host} agree, and name neither this
        server nor an allowed origin.  Before: 101.
        """
        lab = Lab(self)
        _, _, web = await lab.start_web(*NO_EXEMPTION)
        rebound = await lab.upgrade(web, origin="http://evil.example", host="evil.example")
        self.assertEqual(rebound.status, 403)
        program = await lab.upgrade(web, host=f"127.0.0.1:{web}")
        self.assertEqual(program.status, 101)
        await program.expect(type="hello", protocol=1)

    async def test_bad_paths_are_answered_quietly_and_long_urls_are_not_logged_whole(self) -> None:
        """
        Paths the static files cannot be asked for (a NUL, bytes that are
        not UTF-8, an overlong encoding of C{..}), a URL just under
        Twisted's 16 KiB line and one of 64 KiB.  Before: C{%00} was a 500
        with a traceback, C{%ff} and C{%c0%ae} logged a traceback each, the
        16,000-byte URL was logged whole and the 64 KiB one got no answer.
        """
        lab = Lab(self)
        server, _, web = await lab.start_web(*NO_EXEMPTION)
        long_paths = ["/" + "A" * 16_000, "/" + "B" * (64 * 1024)]
        start = len(server.log)
        answers: dict[str, int | None] = {}
        for path in ("/%00", "/%ff", "/%c0%ae%c0%ae/etc/passwd", "/..%2f..%2fetc/passwd", *long_paths):
            client = await lab.connect(web)
            request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{web}\r\nConnection: close\r\n\r\n"
            client.send_bytes(request.encode("ascii"))
            try:
                answer = await client.expect(r"HTTP/1\.[01] (\d{3})")
            except AssertionError:
                answers[path[:30]] = None  # closed without an answer
            else:
                answers[path[:30]] = int(answer.group(1))
            await closing(client)
        log.msg(f"bad paths: {answers}")
        for status in answers.values():
            self.assertIn(status, (400, 404, 414, 431), answers)
        written = server.log[start:]
        for path in long_paths:
            self.assertNotIn(path.encode("ascii"), written)
        self.assertLess(len(written), 16_000, written[:2000])
        # The page is still served.
        client = await lab.connect(web)
        client.send_bytes(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{web}\r\nConnection: close\r\n\r\n".encode())
        await client.expect(r"HTTP/1\.1 200 ")
