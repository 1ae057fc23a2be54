"""
The web page in a real browser (Chromium, driven by Playwright) against a
real ``twistd -n chat --web``, with terminal users on the TCP port beside
it: chatting, the roster, messages kept while away and their
acknowledgement, presence that follows the reader and the one-click resume
after an idle logout, receipts of messages that did not reach everyone,
blocks, text that looks like markup, other origins, a restart of the server,
the unread count, a phone's screen; and the screenshots in the README.

Each step in the browser runs in the browser's own thread
(L{tests.e2e.browser.Browsers}); the test, the servers and the TCP
users stay in the reactor.  Nothing waits a fixed time: the browser's
steps wait for the page (Playwright's auto-waiting expectations), the
reactor's for the server's answers.  Only what is about the clock is
measured against it: the countdown of a block, a reader who moves the
pointer for longer than the idle timeout, and the short wait that shows an
acknowledgement was not sent.

Set C{CHAT_SCREENSHOTS=1} to write docs/screenshot-desktop.png and
docs/screenshot-phone.png.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial import unittest
from twisted.web import server as web_server
from twisted.web import static

from tests import ROOT
from tests.certificates import make_certificate
from tests.e2e.browser import Browsers, evidence, expect, first_number, require_browser
from tests.e2e.redis_server import redis_server
from tests.e2e.support import COMMAND, USERS, WEB, Lab, LineClient, ServerProcess, delivered
from tests.expect import until

if TYPE_CHECKING:  # Playwright may be missing when the tests skip
    from playwright.sync_api import Locator, Page

STORED = r"is offline; the message will be delivered when they next log in\."

#: How long the page gathers acknowledgements of live stored messages (chat.js's ACK_DELAY).
ACK_DELAY_MS = 250


# --- steps in the browser's thread ----------------------------------------------


def entry(page: Page, text: str, extra: str = "") -> Locator:
    """The timeline's messages (with the classes in C{extra}) whose text is exactly C{text}."""
    exactly = re.compile(r"^\s*" + re.escape(text) + r"\s*$")
    return page.locator(f"#timeline .message{extra}").filter(has=page.locator(".text", has_text=exactly))


def log_in(page: Page, url: str, name: str, password: str | None = None) -> None:
    """Open the page, log in with the form, and wait for the chat to show."""
    page.goto(url)
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#chat")).to_be_hidden()
    page.fill("#username", name)
    page.fill("#password", password if password is not None else USERS[name])
    page.click("#login-button")
    expect(page.locator("#chat")).to_be_visible()
    expect(page.locator("#me")).to_have_text(name)
    expect(page.locator("#login")).to_be_hidden()
    # With the count of unread messages in front, if there are any.
    expect(page).to_have_title(re.compile(r"^(\(\d+\) )?chat$"))


def send(page: Page, to: str, text: str) -> None:
    """Write C{text} to C{to} (empty: everyone) and wait for it in the sender's own timeline."""
    page.fill("#to", to)
    page.fill("#message", text)
    page.click("#send")
    mine = entry(page, text, ".mine")
    expect(mine).to_have_count(1)
    expect(mine).to_have_attribute("data-kind", "private" if to else "broadcast")
    expect(mine).to_have_attribute("data-id", re.compile(r"\S"))
    expect(page.locator("#message")).to_have_value("")


def shows(page: Page, text: str, sender: str, kind: str, away: bool = False) -> None:
    """C{page}'s timeline shows, once, C{text} from C{sender}, of C{kind}, (not) marked away."""
    message = entry(page, text)
    expect(message).to_have_count(1)
    expect(message).to_have_attribute("data-kind", kind)
    expect(message).to_have_attribute("data-id", re.compile(r"\S"))
    expect(message.locator(".sender")).to_have_text(sender)
    expect(message.locator(".time")).to_have_text(re.compile(r"\d"))
    expect(message).not_to_have_class(re.compile(r"(^|\s)mine(\s|$)"))
    away_class = re.compile(r"(^|\s)away(\s|$)")
    if away:
        expect(message).to_have_class(away_class)
    else:
        expect(message).not_to_have_class(away_class)


def lacks(page: Page, text: str) -> None:
    expect(entry(page, text)).to_have_count(0)


def unique_ids(page: Page) -> list[str]:
    """The C{data-id} of every message in the timeline; fails if one is shown twice."""
    ids: list[str] = page.eval_on_selector_all(
        "#timeline .message", "messages => messages.map(m => m.dataset.id)"
    )
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"messages shown twice: {duplicates} in {ids}"
    return ids


def set_hidden(page: Page, hidden: bool) -> None:
    """Make the page believe its tab is (no longer) in the background."""
    page.evaluate(
        """hidden => {
            Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
            Object.defineProperty(document, "visibilityState",
                                  {configurable: true, get: () => hidden ? "hidden" : "visible"});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


#: Opens a WebSocket and reports what became of it: opened, error, closed and the close code.
PROBE = """url => new Promise(resolve => {
    const seen = {opened: false, error: false, closed: false, code: null};
    const ws = new WebSocket(url);
    ws.onopen = () => { seen.opened = true; ws.close(); };
    ws.onerror = () => { seen.error = true; };
    ws.onclose = event => { seen.closed = true; seen.code = event.code; resolve(seen); };
})"""


def inside(box: dict[str, float] | None, width: float, height: float) -> bool:
    return (
        box is not None
        and box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= width + 0.5
        and box["y"] + box["height"] <= height + 0.5
    )


def free_ports(count: int) -> list[int]:
    """Ports free on loopback now, for a server that must come back on the same ones."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# --- the tests ------------------------------------------------------------------


class BrowserTestCase(unittest.TestCase):
    browsers: Browsers | None

    def setUp(self) -> None:
        require_browser(self)
        self.lab = Lab(self)
        self.servers: list[ServerProcess] = []
        self.browsers = None

    async def serve(self, *args: str) -> tuple[int, str]:
        """Start a server with the web edge; give its TCP port and the page's URL."""
        server, port, web = await self.lab.start_web(*args)
        self.servers.append(server)
        return port, f"http://127.0.0.1:{web}/"

    async def browser(self) -> Browsers:
        """Chromium for this test, closed before the servers are stopped."""
        self.browsers = await Browsers(self).start()
        return self.browsers

    async def login(self, port: int, name: str) -> LineClient:
        return await self.lab.login(port, name)


class ChatTests(BrowserTestCase):
    @evidence
    async def test_two_browsers_and_a_terminal_chat_in_every_direction(self) -> None:
        port, url = await self.serve()
        b = await self.browser()
        columbia = await b.run(b.page, "columbia")
        seas = await b.run(b.page, "seas")
        await b.run(log_in, columbia, url, "columbia")
        await b.run(log_in, seas, url, "seas")
        google = await self.login(port, "google")

        # Browser to browser, private.
        await b.run(send, columbia, "seas", "lunch at noon?")
        await b.run(shows, seas, "lunch at noon?", "columbia", "private")
        # Browser to terminal, private.
        await b.run(send, columbia, "google", "and you, google?")
        await google.expect(delivered("columbia", "private", "and you, google?"))
        # Terminal to browser, private.
        google.send("message seas count me in")
        await google.expect(r"Sent to seas\.\r\n" + COMMAND)
        await b.run(shows, seas, "count me in", "google", "private")
        # A broadcast from a browser reaches the other browser and the terminal.
        await b.run(send, seas, "", "see you both there")
        await b.run(shows, columbia, "see you both there", "seas", "broadcast")
        await google.expect(delivered("seas", "broadcast", "see you both there"))
        # A broadcast from the terminal reaches both browsers.
        google.send("broadcast message on my way")
        await google.expect(r"Broadcast to 2 users\.\r\n" + COMMAND)
        for page in (columbia, seas):
            await b.run(shows, page, "on my way", "google", "broadcast")

        # Private messages went to their recipient only.
        await b.run(lacks, columbia, "count me in")
        await b.run(lacks, seas, "and you, google?")
        # Each timeline shows each message once, and just these.
        self.assertEqual(len(await b.run(unique_ids, columbia)), 4)
        self.assertEqual(len(await b.run(unique_ids, seas)), 4)

        # A mistake is explained next to the composer, and nothing is sent.
        def misspelt() -> None:
            columbia.fill("#to", "seass")
            columbia.fill("#message", "are you there?")
            columbia.click("#send")
            expect(columbia.locator("#composer-error")).to_be_visible()
            expect(columbia.locator("#composer-error")).to_contain_text("seass")
            expect(entry(columbia, "are you there?")).to_have_count(0)

        await b.run(misspelt)
        # Had it reached seas, it would have come before this.
        await b.run(send, columbia, "seas", "second try")
        await b.run(shows, seas, "second try", "columbia", "private")
        await b.run(lacks, seas, "are you there?")


class RosterTests(BrowserTestCase):
    @evidence
    async def test_roster_follows_logins_and_logouts_and_the_account_buttons_work(self) -> None:
        port, url = await self.serve()
        google = await self.login(port, "google")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia")
        await b.run(log_in, columbia, url, "columbia")
        record = b.record(columbia)

        def said(kind: str, **fields: str) -> bool:
            """Whether the server sent the page a message of C{kind} with C{fields}."""
            return any(all(m.get(k) == v for k, v in fields.items()) for m in record.received(kind))

        def listed(name: str, count: int) -> None:
            person = columbia.locator(f'#roster li[data-name="{name}"]')
            expect(person).to_have_count(count)
            if count:
                expect(person).to_contain_text(name)

        # Someone online before the login is listed at once.
        await b.run(listed, "google", 1)
        await b.run(listed, "seas", 0)
        seas = await self.login(port, "seas")
        await b.run(listed, "seas", 1)
        seas.send("logout")
        await seas.closed
        await b.run(listed, "seas", 0)
        await b.run(listed, "google", 1)

        def recent() -> None:
            columbia.click("#show-recent")
            expect(columbia.locator("#recent")).to_be_visible()
            expect(columbia.locator("#recent")).to_contain_text("seas")

        await b.run(recent)

        def intro() -> None:
            columbia.click("#set-intro")
            expect(columbia.locator("#intro-text")).to_be_visible()
            columbia.fill("#intro-text", "I like Python")
            columbia.click("#intro-save")
            expect(columbia.locator("#intro-text")).to_be_hidden()
            b.wait_until(columbia, lambda: said("notice", code="intro_saved"), "the intro to be saved")

        await b.run(intro)
        google.send("whoelse")
        await google.expect(r"columbia +<I like Python>\r\n")

        def help_panel() -> None:
            columbia.click("#help")
            panel = columbia.locator("#help-panel")
            expect(panel).to_be_visible()
            expect(panel).to_contain_text("wholast")  # the commands, from the server
            columbia.keyboard.press("Escape")
            expect(panel).to_be_hidden()

        await b.run(help_panel)

        def logout() -> None:
            columbia.click("#logout")
            expect(columbia.locator("#login")).to_be_visible()
            expect(columbia.locator("#chat")).to_be_hidden()
            b.wait_until(columbia, lambda: said("goodbye", reason="logout"), "the server's goodbye")

        await b.run(logout)
        # The session is over on the server too: columbia may log in elsewhere.
        await self.login(port, "columbia")


class AwayTests(BrowserTestCase):
    @evidence
    async def test_messages_sent_while_offline_are_shown_at_login_marked_away(self) -> None:
        port, url = await self.serve()
        google = await self.login(port, "google")
        google.send("message columbia while you were out")
        await google.expect("columbia " + STORED)
        google.send("message columbia and one more")
        await google.expect("columbia " + STORED)
        b = await self.browser()
        columbia = await b.run(b.page, "columbia")
        record = b.record(columbia)
        await b.run(log_in, columbia, url, "columbia")
        await b.run(shows, columbia, "while you were out", "google", "private", True)
        await b.run(shows, columbia, "and one more", "google", "private", True)
        # Shown, so acknowledged: one ack, with exactly the ids of the offline message.
        await b.run(b.wait_until, columbia, lambda: bool(record.sent("ack")), "the acknowledgement")
        [offline] = record.received("offline")
        ids = [m["id"] for m in offline["messages"]]
        self.assertEqual(len(ids), 2)
        self.assertEqual(record.sent("ack"), [{"type": "ack", "ids": ids}])
        # What arrives now is not.
        google.send("message columbia welcome back")
        await google.expect(r"Sent to columbia\.")
        await b.run(shows, columbia, "welcome back", "google", "private", False)
        # Nor is it acknowledged (it never was in the store): longer than the
        # page gathers acknowledgements for, and still only the first one.
        await b.run(columbia.wait_for_timeout, 3 * ACK_DELAY_MS)
        self.assertEqual(record.sent("ack"), [{"type": "ack", "ids": ids}])


def offer(page: Page, seconds: int) -> None:
    """The page shows the resume offer after an idle logout of C{seconds}, not the chat nor the form."""
    expect(page.locator("#resume")).to_be_visible()
    expect(page.locator("#resume-button")).to_have_text("Resume")
    expect(page.locator("#resume-button")).to_be_enabled()
    sentence = f"Logged out after {seconds} seconds without a command."
    expect(page.locator("#resume-text")).to_have_text(sentence)
    expect(page.locator("#chat")).to_be_hidden()
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#password")).to_have_value("")


def saved_token(page: Page) -> dict[str, Any] | None:
    """What the page keeps in sessionStorage to resume with."""
    raw = page.evaluate("() => sessionStorage.getItem('chat.session')")
    return None if raw is None else cast("dict[str, Any]", json.loads(raw))


class PresenceTests(BrowserTestCase):
    @evidence
    async def test_a_reader_who_moves_the_pointer_stays_logged_in_past_the_idle_timeout(self) -> None:
        """
        With C{--idle-timeout 3}, a reader who only moves the pointer over
        the conversation for 9 seconds stays logged in: the page tells the
        server it is used ("active"), at most once a second (a third of the
        timeout).  Once the pointer stops, the server logs the page out
        after the timeout, and the page offers to resume.
        """
        _, url = await self.serve("--idle-timeout", "3")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia")
        record = b.record(columbia)
        await b.run(log_in, columbia, url, "columbia")
        [hello] = record.received("hello")
        self.assertEqual(hello["idle_timeout"], 3)

        def read(seconds: float) -> tuple[float, float]:
            box = columbia.locator("#timeline").bounding_box()
            assert box is not None
            start = time.monotonic()
            moved = start
            step = 0
            while time.monotonic() - start < seconds:
                step += 1
                x = box["x"] + box["width"] * (0.3 + 0.4 * (step % 2))
                columbia.mouse.move(x, box["y"] + box["height"] / 2)
                moved = time.monotonic()
                columbia.wait_for_timeout(500)
            return start, moved

        start, last_move = await b.run(read, 9)
        self.assertEqual(record.received("goodbye"), [])
        await b.run(lambda: expect(columbia.locator("#chat")).to_be_visible())
        # Told, but not at every move: at most one a second, each soon after
        # the last (so well within the timeout).
        told = [t for t in record.sent_at("active") if t >= start]
        self.assertGreaterEqual(len(told), 6, told)
        self.assertLessEqual(len(told), 11, told)
        gaps = [later - earlier for earlier, later in itertools.pairwise(told)]
        self.assertTrue(all(0.8 <= gap <= 2.0 for gap in gaps), gaps)
        self.assertTrue(all(m == {"type": "active"} for m in record.sent("active")))

        # Now left alone: logged out after the timeout, with the offer to resume.
        def left_alone() -> float:
            expect(columbia.locator("#resume")).to_be_visible(timeout=10_000)
            return time.monotonic()

        out = await b.run(left_alone)
        await b.run(offer, columbia, 3)
        self.assertEqual([g["reason"] for g in record.received("goodbye")], ["idle"])
        # The last "active" was sent within a second of the last move; the
        # server waited 3 s after it.
        self.assertGreaterEqual(out - last_move, 2.5)
        self.assertLessEqual(out - last_move, 5.5)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        await b.run(columbia.screenshot, path=os.path.join(directory, "idle-offer-desktop.png"))

    @evidence
    async def test_an_idle_page_resumes_with_one_click_and_shows_what_came_meanwhile(self) -> None:
        """
        With C{--idle-timeout 2}: the page left alone is logged out; it
        keeps the token that came just before the goodbye.  A message sent
        to its user meanwhile is stored; one click on Resume brings the
        chat back without the password, shows the message marked away and
        acknowledges it, so that a later login does not get it again.
        """
        port, url = await self.serve("--idle-timeout", "2")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia")
        record = b.record(columbia)
        await b.run(log_in, columbia, url, "columbia")
        await b.run(offer, columbia, 2)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        await b.run(columbia.screenshot, path=os.path.join(directory, "idle-offer.png"))

        # The token came just before the goodbye, and the page kept it.
        received = [m for d, m in record.frames if d == "received"]
        self.assertEqual([m["type"] for m in received[-2:]], ["session", "goodbye"])
        self.assertEqual(received[-1]["reason"], "idle")
        token = received[-2]["token"]
        kept = await b.run(saved_token, columbia)
        assert kept is not None
        self.assertEqual((kept["token"], kept["name"], kept["idle"]), (token, "columbia", True))

        google = await self.login(port, "google")
        google.send("message columbia did you see the news?")
        await google.expect("columbia " + STORED)

        def resume() -> str:
            columbia.click("#resume-button")
            expect(columbia.locator("#chat")).to_be_visible()
            columbia.screenshot(path=os.path.join(directory, "resumed.png"))
            expect(columbia.locator("#me")).to_have_text("columbia")
            shows(columbia, "did you see the news?", "google", "private", away=True)
            message_id = entry(columbia, "did you see the news?").get_attribute("data-id")
            assert message_id is not None
            return message_id

        message_id = await b.run(resume)
        self.assertEqual(len(record.sent("login")), 1, "the page sent the password again")
        self.assertEqual([r["token"] for r in record.sent("resume")], [token])
        self.assertEqual([m["id"] for o in record.received("offline") for m in o["messages"]], [message_id])
        await b.run(b.wait_until, columbia, lambda: bool(record.sent("ack")), "the acknowledgement")
        self.assertEqual(record.sent("ack"), [{"type": "ack", "ids": [message_id]}])

        # Left alone again, logged out again (which acknowledges nothing) ...
        await b.run(offer, columbia, 2)
        self.assertEqual([g["reason"] for g in record.received("goodbye")], ["idle", "idle"])
        # ... and a login elsewhere finds the message in the history, no
        # longer waiting.
        later = await b.run(b.page, "later")
        await b.run(log_in, later, url, "columbia")
        await b.run(shows, later, "did you see the news?", "google", "private", False)
        again = [m["id"] for o in b.record(later).received("offline") for m in o["messages"]]
        self.assertNotIn(message_id, again)

    @evidence
    async def test_a_reload_while_logged_out_for_idleness_offers_the_resume_again(self) -> None:
        """
        A reload in the idle state shows the offer again rather than resume
        by itself.  A token used meanwhile elsewhere is refused on the click:
        the login form comes back with the server's sentence and the name
        filled in.  "Log in with a password instead" forgets the token.
        """
        _, url = await self.serve("--idle-timeout", "2")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia")
        record = b.record(columbia)
        await b.run(log_in, columbia, url, "columbia")
        await b.run(offer, columbia, 2)
        stored = await b.run(columbia.evaluate, "() => sessionStorage.getItem('chat.session')")

        def reload_offers() -> None:
            columbia.reload()
            offer(columbia, 2)
            expect(columbia.locator("#resume-name")).to_have_text("columbia")
            expect(columbia.locator("#resume-button")).to_be_focused()

        await b.run(reload_offers)
        self.assertEqual(record.sent("resume"), [], "the reload resumed by itself")

        # The same token, given to another tab (a phone's, for its picture),
        # is used there first.
        def elsewhere() -> Page:
            other = b.page(
                "other",
                viewport={"width": 390, "height": 844},
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
            )
            other.context.add_init_script(f"sessionStorage.setItem('chat.session', {stored!r});")
            other.goto(url)
            offer(other, 2)
            other.click("#resume-button")
            expect(other.locator("#chat")).to_be_visible()
            expect(other.locator("#me")).to_have_text("columbia")
            return other

        other = await b.run(elsewhere)

        def refused() -> None:
            columbia.click("#resume-button")
            expect(columbia.locator("#login")).to_be_visible()
            expect(columbia.locator("#resume")).to_be_hidden()
            expect(columbia.locator("#chat")).to_be_hidden()
            expect(columbia.locator("#login-error")).to_contain_text("That session was resumed already")
            expect(columbia.locator("#username")).to_have_value("columbia")
            expect(columbia.locator("#password")).to_have_value("")
            assert saved_token(columbia) is None

        await b.run(refused)

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)

        # The other tab, idle in turn, takes the password route instead.
        def decline() -> None:
            offer(other, 2)
            expect(other.locator("#resume-when")).to_have_text(re.compile(r"^That was at \d\d:\d\d\.$"))
            other.screenshot(path=os.path.join(directory, "idle-offer-phone.png"))
            other.click("#resume-other")
            expect(other.locator("#login")).to_be_visible()
            expect(other.locator("#resume")).to_be_hidden()
            expect(other.locator("#username")).to_have_value("columbia")
            expect(other.locator("#password")).to_be_focused()
            assert saved_token(other) is None
            other.fill("#password", USERS["columbia"])
            other.click("#login-button")
            expect(other.locator("#chat")).to_be_visible()

        await b.run(decline)


class StoredAckTests(BrowserTestCase):
    @evidence
    async def test_messages_from_another_node_are_acknowledged_once_shown(self) -> None:
        """
        In a cluster, a message from a user on node b reaches the page on
        node a through the store, marked C{stored}: the page shows it as it
        comes (not as away) and acknowledges it, and it leaves the user's
        inbox in Redis.
        """
        redis = redis_server(self)
        node_a = self.lab.server("--redis", redis.endpoint, "--node", "a", *WEB)
        node_b = self.lab.server("--redis", redis.endpoint, "--node", "b")
        self.servers += [node_a, node_b]
        await defer.gatherResults([node_a.start(), node_b.start()], consumeErrors=True)
        assert node_b.port is not None
        url = f"http://127.0.0.1:{node_a.web_port}/"
        b = await self.browser()
        columbia = await b.run(b.page, "columbia")
        record = b.record(columbia)
        await b.run(log_in, columbia, url, "columbia")
        google = await self.login(node_b.port, "google")

        # b learns that columbia is online by pub/sub: a moment.
        async def columbia_online() -> bool:
            start = google.position
            google.send("whoelse")
            m = await google.expect(COMMAND)
            return "columbia" in google.text[start : m.start()]

        await until(columbia_online, "node b sees columbia online", 5, every=0.1)

        texts = ["one from node b", "two from node b", "three from node b"]
        for text in texts:
            google.send(f"message columbia {text}")
            await google.expect(r"Sent to columbia\.")
        for text in texts:
            await b.run(shows, columbia, text, "google", "private", False)
        stored = [m for m in record.received("message") if m.get("stored") is True]
        ids = [m["id"] for m in stored]
        self.assertEqual([m["text"] for m in stored], texts)

        def acked() -> list[str]:
            return [i for a in record.sent("ack") for i in a["ids"]]

        await b.run(b.wait_until, columbia, lambda: len(acked()) >= len(ids), "the acknowledgements")
        self.assertEqual(acked(), ids)
        # Gathered: fewer acks than messages if any came within the page's delay of another.
        self.assertLessEqual(len(record.sent("ack")), len(ids))

        def inbox_empty() -> bool:
            return redis.command("XLEN", "chat:inbox:columbia") == "0"

        await until(inbox_empty, "columbia's inbox to be emptied", 5, every=0.1)


class ReceiptTests(BrowserTestCase):
    @evidence
    async def test_a_message_that_did_not_reach_everyone_says_so(self) -> None:
        """
        A receipt with C{failed} (the store failed while the message was on
        its way) or C{unreachable} (nodes of a cluster out of reach) needs
        a store failing at that very moment: here the real server's
        receipts are rewritten on their way to the page, into what such a
        server sends.  The page shows the sentence under the message, does
        not show it as delivered, and offers to send it again to those who
        did not get it.
        """
        port, url = await self.serve()
        seas = await self.login(port, "seas")
        google = await self.login(port, "google")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia")
        not_sent = (
            "Sent to seas. Not sent to google: the server cannot reach its database right now; "
            "please send it to them again."
        )
        unreachable = (
            "Broadcast to 2 users; 3 users on other servers of this chat could not be reached right now "
            "and did not get it."
        )

        def rewrite(route: Any) -> None:
            server = route.connect_to_server()

            def from_server(message: str | bytes) -> None:
                obj = json.loads(message)
                if obj.get("type") == "receipt" and sorted(obj.get("delivered", [])) == ["google", "seas"]:
                    obj.update(delivered=["seas"], failed=["google"], text=not_sent)
                elif obj.get("type") == "receipt" and obj.get("broadcast") == 2:
                    obj.update(unreachable=3, text=unreachable)
                route.send(json.dumps(obj))

            server.on_message(from_server)

        await b.run(columbia.route_web_socket, re.compile(r"/ws$"), rewrite)
        await b.run(log_in, columbia, url, "columbia")

        def sent_and_told() -> None:
            send(columbia, "seas", "all good")
            mine = entry(columbia, "all good", ".mine")
            expect(mine).to_have_attribute("data-delivery", "delivered")
            expect(mine.locator(".status")).to_have_count(0)

            # To two people: a "broadcast user ..." (send() expects a private message).
            columbia.fill("#to", "seas, google")
            columbia.fill("#message", "agenda for monday")
            columbia.click("#send")
            mine = entry(columbia, "agenda for monday", ".mine")
            expect(mine).to_have_count(1)
            expect(mine).to_have_attribute("data-delivery", "partial")
            expect(mine.locator(".status")).to_contain_text(not_sent)
            expect(mine.locator(".status")).to_have_class(re.compile(r"(^|\s)partial(\s|$)"))
            again = mine.locator("button.again")
            expect(again).to_have_text("Send again to google")
            again.click()
            expect(columbia.locator("#to")).to_have_value("google")
            expect(columbia.locator("#message")).to_have_value("agenda for monday")
            expect(columbia.locator("#message")).to_be_focused()
            columbia.fill("#message", "")

            send(columbia, "", "fire drill at 3")
            mine = entry(columbia, "fire drill at 3", ".mine")
            expect(mine).to_have_attribute("data-delivery", "partial")
            expect(mine.locator(".status")).to_have_text(unreachable)
            directory = os.path.abspath(self.mktemp())
            os.makedirs(directory)
            columbia.screenshot(path=os.path.join(directory, "partial-receipts.png"))

        await b.run(sent_and_told)
        # (The server did reach both: only the page was told otherwise.)
        await seas.expect(delivered("columbia", "broadcast", "agenda for monday"))
        await google.expect(delivered("columbia", "broadcast", "agenda for monday"))


class BlockTests(BrowserTestCase):
    @evidence
    async def test_three_wrong_passwords_block_with_a_countdown(self) -> None:
        _, url = await self.serve("--max-attempts", "3", "--block-time", "60")
        b = await self.browser()
        page = await b.run(b.page, "guesser")
        record = b.record(page)

        def answered(attempts: int) -> Callable[[], bool]:
            return lambda: len(record.received("login_refused")) >= attempts

        def guess() -> None:
            page.goto(url)
            error = page.locator("#login-error")
            for attempt in range(1, 4):
                page.fill("#username", "columbia")
                page.fill("#password", f"guess{attempt}")
                page.click("#login-button")
                b.wait_until(page, answered(attempt), f"the answer to attempt {attempt}")
                if attempt < 3:
                    expect(error).to_contain_text("Invalid username or password")
            expect(error).to_contain_text("blocked")
            expect(error).to_have_text(re.compile(r"\d+"))
            expect(page.locator("#chat")).to_be_hidden()

        await b.run(guess)

        def countdown() -> tuple[int, int, float]:
            error = page.locator("#login-error")
            first = first_number(error.inner_text())
            start = time.monotonic()
            page.wait_for_function(
                """n => {
                    const m = document.querySelector("#login-error").textContent.match(/\\d+/);
                    return m !== null && Number(m[0]) <= n - 2;
                }""",
                arg=first,
                timeout=5000,
            )
            elapsed = time.monotonic() - start
            return first, first_number(error.inner_text()), elapsed

        first, later, elapsed = await b.run(countdown)
        self.assertTrue(50 <= first <= 60, first)
        self.assertLessEqual(later, first - 2)
        # Two ticks of a countdown in seconds take more than one second.
        self.assertGreater(elapsed, 1.0)
        self.assertEqual(record.sent("resume"), [])


class MarkupTests(BrowserTestCase):
    @evidence
    async def test_markup_in_messages_and_intros_is_shown_as_text(self) -> None:
        port, url = await self.serve()
        google = await self.login(port, "google")
        intro = "<img src=x onerror=alert(2)> <b>bold</b>"
        google.send(f"personalintro {intro}")
        await google.expect(r"Personal introduction saved\.")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia")
        await b.run(log_in, columbia, url, "columbia")
        payload = "<img src=x onerror=alert(1)>"
        google.send(f"message columbia {payload}")
        await google.expect(r"Sent to columbia\.")
        google.send("broadcast message <script>alert(3)</script>")
        await google.expect(r"Broadcast to 1 user\.")

        def literal() -> None:
            shows(columbia, payload, "google", "private")
            shows(columbia, "<script>alert(3)</script>", "google", "broadcast")
            expect(columbia.locator('#roster li[data-name="google"]')).to_contain_text(intro)
            for where in ("#timeline", "#roster"):
                expect(columbia.locator(f"{where} img, {where} script")).to_have_count(0)
            expect(columbia.locator('#roster li[data-name="google"] b, #timeline .text b')).to_have_count(0)

        await b.run(literal)
        self.assertEqual(b.record(columbia).dialogs, [])


class TLSTests(BrowserTestCase):
    @evidence
    async def test_over_https_the_page_uses_wss(self) -> None:
        """
        With C{--web ssl:...} the page is served over https and opens its
        WebSocket with C{wss:}, which its CSP names.  The certificate is
        self-signed, so this browser is told to accept it.
        """
        key, cert = make_certificate(os.path.abspath(self.mktemp()))
        _, port, web = await self.lab.start_web(
            "--web", f"ssl:0:privateKey={key}:certKey={cert}:interface=127.0.0.1"
        )
        url = f"https://localhost:{web}/"
        b = await self.browser()
        columbia = await b.run(b.page, "columbia", ignore_https_errors=True)
        await b.run(log_in, columbia, url, "columbia")
        seas = await self.login(port, "seas")
        seas.send("message columbia over tls")
        await b.run(shows, columbia, "over tls", "seas", "private")
        opened = [line for line in b.record(columbia).lines if "websocket opened" in line]
        self.assertTrue(opened and all(f"wss://localhost:{web}/ws" in line for line in opened), opened)


class OriginTests(BrowserTestCase):
    @evidence
    async def test_a_page_from_another_origin_cannot_open_the_websocket(self) -> None:
        _, url = await self.serve()
        web = urlsplit(url).port
        elsewhere = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            web_server.Site(static.Data(b"<!doctype html><title>elsewhere</title>", "text/html"))
        )
        self.addCleanup(elsewhere.stopListening)
        other = cast(IPv4Address, elsewhere.getHost()).port
        b = await self.browser()
        page = await b.run(b.page, "elsewhere")
        ws = f"ws://127.0.0.1:{web}/ws"

        def probe(origin: str) -> dict[str, Any]:
            page.goto(origin)
            result: dict[str, Any] = page.evaluate(PROBE, ws)
            return result

        refused = await b.run(probe, f"http://127.0.0.1:{other}/")
        self.assertFalse(refused["opened"], refused)
        self.assertTrue(refused["closed"], refused)
        self.assertNotIn(refused["code"], (1000, 1005), refused)
        await self.servers[0].expect_log(re.escape(f"refused a WebSocket from http://127.0.0.1:{other}"))
        # The same script on the page's own origin connects: the refusal was the origin's.
        own = await b.run(probe, url)
        self.assertTrue(own["opened"], own)


class RestartTests(BrowserTestCase):
    @evidence
    async def test_page_resumes_without_the_password_after_the_server_restarts(self) -> None:
        tcp, web = free_ports(2)
        server = self.lab.server(
            "--port", f"tcp:{tcp}:interface=127.0.0.1", "--web", f"tcp:{web}:interface=127.0.0.1"
        )
        self.servers.append(server)
        port = await server.start()
        self.assertEqual((port, server.web_port), (tcp, web))
        url = f"http://127.0.0.1:{web}/"
        b = await self.browser()
        columbia = await b.run(b.page, "columbia")
        record = b.record(columbia)
        await b.run(log_in, columbia, url, "columbia")
        # The page has its token before the server goes.
        await b.run(columbia.wait_for_function, "() => sessionStorage.length > 0")
        self.assertTrue(record.received("session"))

        first_log = server.log
        await server.stop()
        server.earlier_log = first_log  # type: ignore[attr-defined]
        self.assertEqual(server.tracebacks(), [])

        def banner() -> None:
            expect(columbia.locator("#banner")).to_be_visible()
            expect(columbia.locator("#login")).to_be_hidden()
            expect(columbia.locator("#me")).to_have_text("columbia")

        await b.run(banner)
        # The browser's network goes down too, so that the page cannot
        # resume before the message below is written: it is kept for the
        # user, and shown when the page resumes.
        await b.run(columbia.context.set_offline, True)
        await server.start()
        google = await self.login(port, "google")
        google.send("message columbia welcome back")
        await google.expect("columbia " + STORED)
        await b.run(columbia.context.set_offline, False)

        def resumed() -> None:
            expect(columbia.locator("#banner")).to_be_hidden(timeout=30_000)
            expect(columbia.locator("#login")).to_be_hidden()
            expect(columbia.locator("#chat")).to_be_visible()
            expect(columbia.locator("#me")).to_have_text("columbia")
            shows(columbia, "welcome back", "google", "private", away=True)

        await b.run(resumed)
        self.assertEqual(len(record.sent("login")), 1, "the page sent the password again")
        self.assertTrue(record.sent("resume"), "the page did not resume")
        # And it is a working session: live both ways.
        google.send("message columbia still there?")
        await google.expect(r"Sent to columbia\.")
        await b.run(shows, columbia, "still there?", "google", "private")
        await b.run(send, columbia, "google", "right here")
        await google.expect(delivered("columbia", "private", "right here"))
        await b.run(unique_ids, columbia)


class StaleTokenTests(BrowserTestCase):
    @evidence
    async def test_a_used_or_unknown_token_brings_back_the_login_form_saying_why(self) -> None:
        """
        A reload resumes with the token (and gets a new one); the old token
        given to another tab is refused as reused, a made-up one as expired,
        and each tab shows the login form with the server's sentence.
        """
        _, url = await self.serve()
        b = await self.browser()
        first = await b.run(b.page, "first")
        await b.run(log_in, first, url, "columbia")
        await b.run(first.wait_for_function, "() => sessionStorage.getItem('chat.session') !== null")
        stored = await b.run(first.evaluate, "() => sessionStorage.getItem('chat.session')")

        def reload_resumes() -> None:
            first.reload()
            expect(first.locator("#chat")).to_be_visible()
            expect(first.locator("#me")).to_have_text("columbia")
            expect(first.locator("#login")).to_be_hidden()

        await b.run(reload_resumes)
        self.assertEqual(len(b.record(first).sent("login")), 1, "the reload asked for the password")

        def refused(label: str, token_json: str, sentence: str) -> None:
            page = b.page(label)
            page.context.add_init_script(f"sessionStorage.setItem('chat.session', {token_json!r});")
            page.goto(url)
            expect(page.locator("#login")).to_be_visible()
            expect(page.locator("#chat")).to_be_hidden()
            expect(page.locator("#login-error")).to_contain_text(sentence)
            assert page.evaluate("() => sessionStorage.getItem('chat.session')") is None

        await b.run(refused, "reused", stored, "That session was resumed already")
        made_up = json.dumps({**json.loads(stored), "token": "never-issued"})
        await b.run(refused, "expired", made_up, "Your session has expired; please log in again.")


class UnreadTests(BrowserTestCase):
    @evidence
    async def test_the_title_counts_unread_messages_while_the_tab_is_hidden(self) -> None:
        port, url = await self.serve()
        google = await self.login(port, "google")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia")
        await b.run(log_in, columbia, url, "columbia")
        await b.run(set_hidden, columbia, True)
        for text in ("one", "two"):
            google.send(f"message columbia {text}")
            await google.expect(r"Sent to columbia\.")

        def counted() -> None:
            shows(columbia, "two", "google", "private")
            expect(columbia).to_have_title("(2) chat")
            # Back to the tab: still unread, in the conversation with google, until it is opened.
            set_hidden(columbia, False)
            expect(columbia).to_have_title("(2) chat")
            columbia.click('#sidebar .conv[data-conv="@google"]')
            expect(columbia).to_have_title("chat")
            set_hidden(columbia, True)

        await b.run(counted)
        # In the open conversation, a message counts while the tab is hidden, and is read once it is shown.
        google.send("message columbia three")
        await google.expect(r"Sent to columbia\.")

        def read_when_shown() -> None:
            shows(columbia, "three", "google", "private")
            expect(columbia).to_have_title("(1) chat")
            set_hidden(columbia, False)
            expect(columbia).to_have_title("chat")

        await b.run(read_when_shown)


class PhoneTests(BrowserTestCase):
    @evidence
    async def test_on_a_phone_the_composer_and_the_last_message_are_on_screen(self) -> None:
        port, url = await self.serve()
        google = await self.login(port, "google")
        b = await self.browser()
        phone = await b.run(
            b.page,
            "phone",
            viewport={"width": 390, "height": 844},
            device_scale_factor=3,
            is_mobile=True,
            has_touch=True,
        )
        await b.run(log_in, phone, url, "columbia")
        # Enough to fill the screen several times over.
        for i in range(1, 31):
            google.send(f"message columbia line {i} of a long conversation")
            await google.expect(r"Sent to columbia\.\r\n" + COMMAND)

        def on_screen() -> dict[str, Any]:
            # A phone shows the list of conversations first; the one with google is a tap away.
            phone.click('#sidebar .conv[data-conv="@google"]')
            last = entry(phone, "line 30 of a long conversation")
            expect(last).to_have_count(1)
            try:
                expect(last).to_be_in_viewport()
            except AssertionError:
                pass  # the boxes say where it is
            boxes = {what: phone.locator(what).bounding_box() for what in ("#message", "#send")}
            boxes["the last message"] = phone.locator("#timeline .message").last.bounding_box()
            width = phone.evaluate("document.documentElement.scrollWidth")
            return {"boxes": boxes, "scroll_width": width}

        seen = await b.run(on_screen)
        outside = {what: box for what, box in seen["boxes"].items() if not inside(box, 390, 844)}
        self.assertEqual(outside, {}, f"not within the 390x844 screen; all: {seen['boxes']}")
        self.assertLessEqual(seen["scroll_width"], 390, "the page scrolls sideways on a phone")


class ScreenshotTests(BrowserTestCase):
    @evidence
    async def test_screenshots_of_a_chat_in_progress(self) -> None:
        """
        The README's pictures: a chat on a desktop and on a phone.  Taken on
        every run (into the test's directory); written to docs/ only with
        CHAT_SCREENSHOTS=1.
        """
        port, url = await self.serve()
        google = await self.login(port, "google")
        google.send("personalintro Organizing the world's information")
        await google.expect(r"Personal introduction saved\.")
        wikipedia = await self.login(port, "wikipedia")
        wikipedia.send("personalintro The free encyclopedia")
        await wikipedia.expect(r"Personal introduction saved\.")
        b = await self.browser()
        desktop = await b.run(b.page, "desktop", viewport={"width": 1280, "height": 800})
        phone = await b.run(
            b.page,
            "phone",
            viewport={"width": 390, "height": 844},
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
        )
        await b.run(log_in, desktop, url, "columbia")
        await b.run(log_in, phone, url, "seas")
        # A phone starts on its list of conversations: to the one with everyone.
        await b.run(phone.click, '#sidebar .conv[data-conv="everyone"]')

        await b.run(send, desktop, "", "Good morning, everyone! Standup in 10 minutes.")
        await b.run(shows, phone, "Good morning, everyone! Standup in 10 minutes.", "columbia", "broadcast")
        await b.run(send, phone, "columbia", "Running 5 minutes late, start without me")
        await b.run(shows, desktop, "Running 5 minutes late, start without me", "seas", "private")
        google.send("broadcast message The build is green again")
        await google.expect(r"Broadcast to 3 users\.")
        wikipedia.send("message columbia Could you review my pull request after standup?")
        await wikipedia.expect(r"Sent to columbia\.")
        await b.run(shows, desktop, "Could you review my pull request after standup?", "wikipedia", "private")
        await b.run(send, desktop, "wikipedia", "Sure, send me the link")
        await wikipedia.expect(r"columbia \(private\): Sure")
        wikipedia.send("message columbia It is #42, the one with the new history command. Thanks!")
        await wikipedia.expect(r"Sent to columbia\.")
        google.send("message columbia Lunch at the usual place at noon?")
        await google.expect(r"Sent to columbia\.")
        await b.run(shows, desktop, "Lunch at the usual place at noon?", "google", "private")
        await b.run(send, desktop, "seas", "Lunch at noon with google, are you in?")
        await b.run(shows, phone, "Lunch at noon with google, are you in?", "columbia", "private")
        await b.run(send, phone, "columbia", "Count me in!")
        await b.run(shows, desktop, "Count me in!", "seas", "private")
        await b.run(shows, phone, "The build is green again", "google", "broadcast")

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        shots = {
            "desktop": os.path.join(directory, "screenshot-desktop.png"),
            "phone": os.path.join(directory, "screenshot-phone.png"),
        }

        def photograph() -> None:
            expect(desktop.locator('#roster li[data-name="google"]')).to_be_visible()
            # The phone in its conversation with columbia (the roster is on its other screen).
            expect(phone.locator("#conv-title")).to_have_text("columbia")
            for page in (desktop, phone):
                page.locator("#message").blur()
            desktop.screenshot(path=shots["desktop"])
            phone.screenshot(path=shots["phone"])

        await b.run(photograph)
        for path in shots.values():
            self.assertGreater(os.path.getsize(path), 10_000, path)
        if os.environ.get("CHAT_SCREENSHOTS") == "1":
            for name, path in shots.items():
                shutil.copyfile(path, os.path.join(ROOT, "docs", f"screenshot-{name}.png"))
