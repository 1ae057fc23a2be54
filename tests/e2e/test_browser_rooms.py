"""
The page's conversations in a real browser (Chromium, driven by
Playwright) against a real ``twistd -n chat --web``, with terminal users
on the TCP port: rooms made and joined from the page, each conversation
shown apart (everyone, a room, a person), unread counts kept by the server
(raised elsewhere, cleared when opened, the same after a reload), paging
back to the first kept message, a phone's two screens, and a room across
two nodes on one Redis; and the pictures of rooms in docs/.

As in L{tests.e2e.test_browser}, each step in the browser runs in the
browser's thread and nothing waits a fixed time.

Set C{CHAT_SCREENSHOTS=1} to write docs/screenshot-rooms-desktop.png and
docs/screenshot-rooms-phone.png.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from tests import ROOT
from tests.e2e.browser import evidence, expect
from tests.e2e.redis_server import redis_server
from tests.e2e.support import COMMAND, WEB, delivered
from tests.e2e.test_browser import BrowserTestCase, entry, free_ports, log_in, shows
from tests.expect import until

if TYPE_CHECKING:  # Playwright may be missing when the tests skip
    from playwright.sync_api import Locator, Page

PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}}


# --- steps in the browser's thread ----------------------------------------------


def item(page: Page, conversation: str) -> Locator:
    """The sidebar's entry of C{conversation} (C{everyone}, C{#room}, C{@name})."""
    return page.locator(f'#sidebar .conv[data-conv="{conversation}"]')


def badge(page: Page, conversation: str, count: int) -> None:
    """The sidebar shows C{count} unread in C{conversation} (no badge for none)."""
    mark = item(page, conversation).locator(".badge")
    if count:
        expect(mark).to_be_visible()
        expect(mark).to_have_text(str(count))
    else:
        expect(item(page, conversation)).to_have_count(1)
        expect(mark).to_be_hidden()


def title_counts(page: Page, count: int) -> None:
    expect(page).to_have_title(f"({count}) chat" if count else "chat")


def open_conversation(page: Page, conversation: str, title: str) -> None:
    item(page, conversation).click()
    expect(page.locator("#conv-title")).to_have_text(title)
    expect(item(page, conversation)).to_have_attribute("aria-current", "true")


def seen(page: Page, text: str) -> None:
    """C{text} is on screen, once: in the open conversation."""
    expect(entry(page, text)).to_have_count(1)
    expect(entry(page, text)).to_be_visible()


def unseen(page: Page, text: str) -> None:
    """C{text} is in the page (its conversation's) but not in the open conversation's view."""
    expect(entry(page, text)).to_have_count(1)
    expect(entry(page, text)).to_be_hidden()


def write(page: Page, text: str) -> None:
    """Send C{text} from the composer, as it is (to the open conversation)."""
    page.fill("#message", text)
    page.click("#send")
    expect(entry(page, text, ".mine")).to_have_count(1)
    expect(page.locator("#message")).to_have_value("")


def make_room(page: Page, name: str) -> None:
    """Join (or create) C{name} with the page's rooms panel; it opens."""
    page.click("#browse-rooms")
    expect(page.locator("#rooms-panel")).to_be_visible()
    page.fill("#room-name", name)
    page.click("#room-join")
    expect(page.locator("#rooms-panel")).to_be_hidden()
    expect(page.locator("#conv-title")).to_have_text(name)
    expect(page.locator("#to")).to_have_value(name)


def reload(page: Page) -> None:
    """Reload: the page resumes its session with its token and asks the server for the counts."""
    page.reload()
    expect(page.locator("#chat")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()


def scroll_to_top(page: Page) -> None:
    page.locator("#timeline").evaluate("t => { t.scrollTop = 0; t.dispatchEvent(new Event('scroll')); }")


# --- the tests ------------------------------------------------------------------


class RoomTests(BrowserTestCase):
    @evidence
    async def test_a_room_made_on_the_page_shows_its_messages_and_only_them(self) -> None:
        port, url = await self.serve()
        google = await self.login(port, "google")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia", **DESKTOP)
        await b.run(log_in, columbia, url, "columbia")
        await b.run(make_room, columbia, "#Dev")
        await b.run(lambda: expect(item(columbia, "#dev")).to_contain_text("Dev"))

        # A terminal user joins the room the page made, whatever the case, and talks in it.
        google.send("join #dev")
        await google.expect(r"You joined #Dev \(2 members\)\.\r\n" + COMMAND)
        google.send("message #dev the build is green")
        await google.expect(r"Sent to #Dev \(1 of 1 other member online\)\.\r\n" + COMMAND)
        google.send("broadcast message lunch, anyone?")
        await google.expect(r"Broadcast to 1 user\.\r\n" + COMMAND)

        def apart() -> None:
            seen(columbia, "the build is green")
            expect(entry(columbia, "the build is green")).to_have_attribute("data-kind", "room")
            # The broadcast is everyone's: not in the room's view, counted on Everyone.
            unseen(columbia, "lunch, anyone?")
            badge(columbia, "everyone", 1)
            badge(columbia, "#dev", 0)
            open_conversation(columbia, "everyone", "Everyone")
            seen(columbia, "lunch, anyone?")
            unseen(columbia, "the build is green")
            badge(columbia, "everyone", 0)
            expect(columbia.locator("#to")).to_have_value("")
            open_conversation(columbia, "#dev", "#Dev")
            expect(columbia.locator("#to")).to_have_value("#Dev")
            # Sent from the composer of the open room: to the room.
            write(columbia, "thanks google")
            expect(entry(columbia, "thanks google")).to_have_attribute("data-kind", "room")
            seen(columbia, "thanks google")

        await b.run(apart)
        await google.expect(delivered("columbia", "#Dev", "thanks google"))

        # Markup in a room's message is text.
        markup = '<img src=x onerror="alert(1)"> <b>bold</b>'
        google.send(f"message #dev {markup}")
        await google.expect(r"Sent to #Dev")

        def literal() -> None:
            seen(columbia, markup)
            expect(columbia.locator("#timeline img, #timeline b, #sidebar img, #sidebar b")).to_have_count(0)
            self.assertEqual(b.record(columbia).dialogs, [])

        await b.run(literal)

        # A typed command still works, and joins another room from the terminal side of the page.
        def typed() -> None:
            write_command(columbia, "/join #ops")
            expect(columbia.locator("#conv-title")).to_have_text("#ops")
            expect(item(columbia, "#ops")).to_have_count(1)
            # Leaving takes it off the list and back to everyone.
            columbia.click("#leave-room")
            expect(item(columbia, "#ops")).to_have_count(0)
            expect(columbia.locator("#conv-title")).to_have_text("Everyone")

        await b.run(typed)

        # The list of rooms offers to join the ones the user is not in.
        google.send("join #design")
        await google.expect(r"You made the room #design and joined it\.")

        def browse() -> None:
            columbia.click("#browse-rooms")
            entry_ = columbia.locator('#room-directory li[data-room="#design"]')
            expect(entry_).to_contain_text("1 member")
            entry_.get_by_role("button", name="Join #design").click()
            expect(columbia.locator("#conv-title")).to_have_text("#design")
            # A bad name is refused in the panel, saying the rule.
            columbia.click("#browse-rooms")
            columbia.fill("#room-name", "#no spaces")
            columbia.click("#room-join")
            expect(columbia.locator("#rooms-error")).to_contain_text("1 to 32 letters")
            columbia.keyboard.press("Escape")
            expect(columbia.locator("#rooms-panel")).to_be_hidden()

        await b.run(browse)


def write_command(page: Page, line: str) -> None:
    page.fill("#message", line)
    page.click("#send")
    expect(page.locator("#message")).to_have_value("")


class UnreadTests(BrowserTestCase):
    @evidence
    async def test_unread_counts_rise_elsewhere_clear_when_opened_and_survive_a_reload(self) -> None:
        port, url = await self.serve()
        google = await self.login(port, "google")
        google.send("join #dev")
        await google.expect(r"You made the room #dev and joined it\.")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia", **DESKTOP)
        record = b.record(columbia)
        await b.run(log_in, columbia, url, "columbia")
        await b.run(make_room, columbia, "#dev")
        await b.run(open_conversation, columbia, "everyone", "Everyone")

        for text in ("are you there?", "it is about the release"):
            google.send(f"message columbia {text}")
            await google.expect(r"Sent to columbia\.\r\n" + COMMAND)
        for text in ("standup moved to 10", "room for one more", "see you there"):
            google.send(f"message #dev {text}")
            await google.expect(r"Sent to #dev")

        def counted() -> None:
            badge(columbia, "@google", 2)
            badge(columbia, "#dev", 3)
            title_counts(columbia, 5)
            # The view did not move.
            expect(columbia.locator("#conv-title")).to_have_text("Everyone")
            unseen(columbia, "see you there")
            unseen(columbia, "are you there?")

        await b.run(counted)

        def after_reload() -> None:
            reload(columbia)
            expect(columbia.locator("#conv-title")).to_have_text("Everyone")
            badge(columbia, "@google", 2)
            badge(columbia, "#dev", 3)
            title_counts(columbia, 5)
            # Opened: read, on the server too.
            open_conversation(columbia, "@google", "google")
            seen(columbia, "are you there?")
            seen(columbia, "it is about the release")
            badge(columbia, "@google", 0)
            title_counts(columbia, 3)
            b.wait_until(
                columbia,
                lambda: any(
                    m.get("conversation") == "@google" or "@google" in m.get("conversations", [])
                    for m in record.sent("read")
                ),
                "the page to mark @google read",
            )
            reload(columbia)
            # A reload comes back to the open conversation, with the server's counts.
            expect(columbia.locator("#conv-title")).to_have_text("google")
            badge(columbia, "@google", 0)
            badge(columbia, "#dev", 3)
            title_counts(columbia, 3)

        await b.run(after_reload)

        # A message in the open conversation, the tab shown: read as it comes.
        google.send("message columbia one more thing")
        await google.expect(r"Sent to columbia\.")

        def read_as_it_comes() -> None:
            seen(columbia, "one more thing")
            badge(columbia, "@google", 0)
            reload(columbia)
            badge(columbia, "@google", 0)
            badge(columbia, "#dev", 3)

        await b.run(read_as_it_comes)

        # The server agrees: a terminal login of columbia is told of the room's three only.
        await b.run(columbia.click, "#logout")
        terminal = await self.login(port, "columbia")
        self.assertIn("3 unread messages in #dev", terminal.text)
        self.assertNotIn("in @google", terminal.text)

    @evidence
    async def test_unread_counts_are_the_same_after_the_server_restarts(self) -> None:
        tcp, web = free_ports(2)
        server = self.lab.server(
            "--port", f"tcp:{tcp}:interface=127.0.0.1", "--web", f"tcp:{web}:interface=127.0.0.1"
        )
        self.servers.append(server)
        port = await server.start()
        url = f"http://127.0.0.1:{web}/"
        google = await self.login(port, "google")
        google.send("join #dev")
        await google.expect(r"You made the room #dev and joined it\.")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia", **DESKTOP)
        record = b.record(columbia)
        await b.run(log_in, columbia, url, "columbia")
        await b.run(make_room, columbia, "#dev")
        await b.run(open_conversation, columbia, "everyone", "Everyone")
        google.send("message columbia before the restart")
        await google.expect(r"Sent to columbia\.")
        google.send("message #dev the deploy starts now")
        await google.expect(r"Sent to #dev")

        def counted() -> None:
            badge(columbia, "@google", 1)
            badge(columbia, "#dev", 1)
            columbia.wait_for_function("() => sessionStorage.length > 0")

        await b.run(counted)
        resumes = len(record.sent("resume"))
        first_log = server.log
        await server.stop()
        server.earlier_log = first_log  # type: ignore[attr-defined]
        await b.run(lambda: expect(columbia.locator("#banner")).to_be_visible())
        await server.start()

        def same() -> None:
            expect(columbia.locator("#banner")).to_be_hidden(timeout=30_000)
            b.wait_until(columbia, lambda: len(record.sent("resume")) > resumes, "the page to resume")
            b.wait_until(columbia, lambda: len(record.received("conversations")) >= 2, "the counts again")
            badge(columbia, "@google", 1)
            badge(columbia, "#dev", 1)
            title_counts(columbia, 2)

        await b.run(same)

    @evidence
    async def test_a_room_member_who_was_offline_sees_what_is_unread_at_login(self) -> None:
        port, url = await self.serve()
        seas = await self.login(port, "seas")
        seas.send("join #dev")
        await seas.expect(r"You made the room #dev and joined it\.")
        seas.send("logout")
        await seas.closed
        google = await self.login(port, "google")
        google.send("join #dev")
        await google.expect(r"You joined #dev")
        for i in range(1, 6):
            google.send(f"message #dev while seas was away {i}")
            await google.expect(r"Sent to #dev \(0 of 1 other member online\)\.")
        b = await self.browser()
        page = await b.run(b.page, "seas", **DESKTOP)

        def told() -> None:
            log_in(page, url, "seas")
            badge(page, "#dev", 5)
            title_counts(page, 5)
            open_conversation(page, "#dev", "#dev")
            for i in range(1, 6):
                seen(page, f"while seas was away {i}")
            badge(page, "#dev", 0)
            title_counts(page, 0)

        await b.run(told)


class DirectTests(BrowserTestCase):
    @evidence
    async def test_direct_conversations_with_two_people_are_kept_apart(self) -> None:
        port, url = await self.serve()
        google = await self.login(port, "google")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia", **DESKTOP)
        seas = await b.run(b.page, "seas", **DESKTOP)
        await b.run(log_in, columbia, url, "columbia")
        await b.run(log_in, seas, url, "seas")

        def seas_writes() -> None:
            # From the roster: a click opens the conversation with that person.
            seas.locator('#roster .person[data-name="columbia"]').click()
            expect(seas.locator("#conv-title")).to_have_text("columbia")
            expect(seas.locator("#to")).to_have_value("columbia")
            write(seas, "lunch at noon?")

        await b.run(seas_writes)
        google.send("message columbia the review is done")
        await google.expect(r"Sent to columbia\.")

        def apart() -> None:
            shows(columbia, "lunch at noon?", "seas", "private")
            shows(columbia, "the review is done", "google", "private")
            badge(columbia, "@seas", 1)
            badge(columbia, "@google", 1)
            # Most recent first.
            expect(columbia.locator("#direct-list .conv")).to_have_count(2)
            expect(columbia.locator("#direct-list .conv").first).to_have_attribute("data-conv", "@google")
            open_conversation(columbia, "@seas", "seas")
            seen(columbia, "lunch at noon?")
            unseen(columbia, "the review is done")
            write(columbia, "yes, at the usual place")
            open_conversation(columbia, "@google", "google")
            seen(columbia, "the review is done")
            unseen(columbia, "lunch at noon?")
            unseen(columbia, "yes, at the usual place")
            expect(columbia.locator("#direct-list .conv").first).to_have_attribute("data-conv", "@seas")
            # seas has the answer in the conversation with columbia.
            seen(seas, "yes, at the usual place")

        await b.run(apart)
        # The reply went to seas alone.
        google.send("whoelse")
        await google.expect(COMMAND)
        self.assertNotIn("usual place", google.text)


class HistoryTests(BrowserTestCase):
    @evidence
    async def test_scrolling_up_pages_back_to_the_first_kept_message(self) -> None:
        # 120 kept per conversation (some more until the next pruning): pages of 50, 50 and the rest.
        port, url = await self.serve("--history", "120", "--rate", "1000", "--burst", "1000")
        google = await self.login(port, "google")
        google.send("join #dev")
        await google.expect(r"You made the room #dev and joined it\.")
        total = 160
        for i in range(1, total + 1):
            google.send(f"message #dev note {i}")
        for _ in range(total):
            await google.expect(r"Sent to #dev; nobody else is in it yet\.\r\n")
        # What the server keeps, oldest first: the page must get back to the first of them.
        web_port = self.servers[0].web_port
        assert web_port is not None
        ws = await self.lab.ws_login(web_port, "seas")
        ws.send({"type": "history", "conversation": "#dev", "count": 500})
        kept = await ws.expect({"type": "history", "conversation": "#dev"})
        first, last = kept["messages"][0]["text"], kept["messages"][-1]["text"]
        self.assertEqual(last, f"note {total}")
        self.assertGreater(len(kept["messages"]), 100)
        self.assertLess(len(kept["messages"]), total)

        b = await self.browser()
        columbia = await b.run(b.page, "columbia", **DESKTOP)
        record = b.record(columbia)
        await b.run(log_in, columbia, url, "columbia")
        await b.run(make_room, columbia, "#dev")

        def back_to_the_start() -> None:
            seen(columbia, f"note {total}")
            expect(columbia.locator("#load-older")).to_be_visible()
            expect(entry(columbia, first)).to_have_count(0)
            # Up to the top: the page before the oldest shown comes, and the view stays put.
            shown = "#timeline .message:not([hidden])"
            for i in range(10):
                if columbia.locator("#older-start").is_visible():
                    break
                before = columbia.locator(shown).count()
                top = columbia.locator(shown).first.locator(".text").text_content() or ""
                # The first older page by the button (activated where it is: a
                # click would scroll it into view, which loads the page as
                # well), the others by scrolling to the top.
                if i == 0:
                    columbia.locator("#load-older").dispatch_event("click")
                else:
                    scroll_to_top(columbia)
                columbia.wait_for_function(
                    """([shown, before]) => document.querySelectorAll(shown).length > before
                        || !document.querySelector("#older-start").hidden""",
                    arg=[shown, before],
                )
                if i > 0:
                    # What was at the top stays in view: the older page went above it.
                    expect(entry(columbia, top)).to_be_in_viewport()
            expect(columbia.locator("#older-start")).to_be_visible()
            expect(columbia.locator("#load-older")).to_be_hidden()
            seen(columbia, first)
            ids = columbia.eval_on_selector_all(
                "#timeline .message:not([hidden])", "ms => ms.map(m => m.querySelector('.text').textContent)"
            )
            self.assertEqual(ids, [m["text"] for m in kept["messages"]])
            pages = [m for m in record.sent("history") if m.get("conversation") == "#dev"]
            self.assertGreaterEqual(len(pages), 3)
            self.assertIn("before", pages[-1])

        await b.run(back_to_the_start)


class PhoneTests(BrowserTestCase):
    @evidence
    async def test_on_a_phone_the_list_and_a_conversation_are_screens_of_their_own(self) -> None:
        port, url = await self.serve()
        google = await self.login(port, "google")
        b = await self.browser()
        phone = await b.run(b.page, "phone", **PHONE)
        await b.run(log_in, phone, url, "columbia")
        google.send("message columbia are you on your phone?")
        await google.expect(r"Sent to columbia\.")

        def screens() -> None:
            # The list first: the conversations, and the roster under them.
            expect(phone.locator("#sidebar")).to_be_visible()
            expect(phone.locator("#conversation")).to_be_hidden()
            badge(phone, "@google", 1)
            expect(phone.locator('#roster .person[data-name="google"]')).to_be_visible()
            open_conversation(phone, "@google", "google")
            expect(phone.locator("#sidebar")).to_be_hidden()
            expect(phone.locator("#conversation")).to_be_visible()
            seen(phone, "are you on your phone?")
            for what in ("#message", "#send", "#back"):
                expect(phone.locator(what)).to_be_in_viewport()
            write(phone, "yes, on the train")
            phone.click("#back")
            expect(phone.locator("#sidebar")).to_be_visible()
            expect(phone.locator("#conversation")).to_be_hidden()
            badge(phone, "@google", 0)
            # The roster is reachable from the list: a person there opens a conversation.
            phone.locator('#roster .person[data-name="google"]').click()
            expect(phone.locator("#conversation")).to_be_visible()
            expect(phone.locator("#conv-title")).to_have_text("google")
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
            phone.click("#back")

        await b.run(screens)
        await google.expect(delivered("columbia", "private", "yes, on the train"))

        # While the list shows, a message to the conversation last open is unread.
        google.send("message columbia and then?")
        await google.expect(r"Sent to columbia\.")
        await b.run(badge, phone, "@google", 1)


class ClusterTests(BrowserTestCase):
    @evidence
    async def test_a_room_across_two_nodes_reaches_the_page_and_counts_unread(self) -> None:
        redis = redis_server(self)
        node_a = self.lab.server("--redis", redis.endpoint, "--node", "a", *WEB)
        node_b = self.lab.server("--redis", redis.endpoint, "--node", "b")
        self.servers += [node_a, node_b]
        await defer.gatherResults([node_a.start(), node_b.start()], consumeErrors=True)
        assert node_b.port is not None
        url = f"http://127.0.0.1:{node_a.web_port}/"
        b = await self.browser()
        columbia = await b.run(b.page, "columbia", **DESKTOP)
        await b.run(log_in, columbia, url, "columbia")
        await b.run(make_room, columbia, "#dev")
        google = await self.login(node_b.port, "google")
        google.send("join #dev")
        await google.expect(r"You joined #dev \(2 members\)\.")

        async def reaches(text: str) -> bool:
            google.send(f"message #dev {text}")
            m = await google.expect(r"Sent to #dev \((\d) of 1 other member online\)\.")
            return m.group(1) == "1"

        # Node b learns that columbia is online by pub/sub: a moment.
        await until(lambda: reaches("hello from node b"), "columbia online for node b", 10, every=0.2)
        await b.run(seen, columbia, "hello from node b")
        await b.run(open_conversation, columbia, "everyone", "Everyone")
        google.send("message #dev while you look elsewhere")
        await google.expect(r"Sent to #dev")
        await b.run(badge, columbia, "#dev", 1)

        def there() -> None:
            open_conversation(columbia, "#dev", "#dev")
            seen(columbia, "while you look elsewhere")
            write(columbia, "hello from node a")

        await b.run(there)
        await google.expect(delivered("columbia", "#dev", "hello from node a"))


class ScreenshotTests(BrowserTestCase):
    @evidence
    async def test_screenshots_of_rooms_and_conversations(self) -> None:
        """
        The pictures in docs/: a #dev room with a few messages (one of them
        code, on several lines) and someone typing, two direct conversations
        and unread counts, on a desktop and on a phone.
        Taken on every run; written to docs/ only with CHAT_SCREENSHOTS=1.
        """
        port, url = await self.serve()
        terminals = {}
        for name, intro in (
            ("google", "Organizing the world's information"),
            ("wikipedia", "The free encyclopedia"),
        ):
            terminals[name] = t = await self.login(port, name)
            t.send(f"personalintro {intro}")
            await t.expect(r"Personal introduction saved\.")
        google, wikipedia = terminals["google"], terminals["wikipedia"]
        for t in (google, wikipedia):
            t.send("join #dev")
            await t.expect(r"You (made the room #dev and )?joined")
        google.send("join #design")
        await google.expect(r"You made the room #design")
        b = await self.browser()
        desktop = await b.run(b.page, "desktop", **DESKTOP)
        phone = await b.run(b.page, "phone", **PHONE)
        await b.run(log_in, desktop, url, "columbia")
        await b.run(log_in, phone, url, "seas")
        await b.run(make_room, desktop, "#dev")
        await b.run(make_room, phone, "#dev")

        google.send("message #dev Morning! The build is green again.")
        await google.expect(r"Sent to #dev")
        wikipedia.send("message #dev Great. I am starting on the search page today.")
        await wikipedia.expect(r"Sent to #dev")
        await b.run(seen, desktop, "Great. I am starting on the search page today.")
        await b.run(write, desktop, "Nice. Review at 11 in the small room?")
        google.send("message #dev Works for me")
        await google.expect(r"Sent to #dev")
        await b.run(seen, desktop, "Works for me")

        def phone_writes_code() -> None:
            phone.fill(
                "#message",
                "Found it, the check was inverted:\n```\nif not user.online:\n    store(message)\n```",
            )
            phone.click("#send")
            expect(phone.locator("#message")).to_have_value("")
            expect(desktop.locator("#timeline .message pre.code")).to_have_count(1)

        await b.run(phone_writes_code)
        # Someone on a page of their own, about to answer in #dev.
        web_port = self.servers[0].web_port
        assert web_port is not None
        facebook = await self.lab.ws_login(web_port, "facebook")
        facebook.send({"type": "join", "room": "#dev"})
        await facebook.expect({"type": "joined"})

        def phone_writes() -> None:
            phone.click("#back")
            phone.locator('#roster .person[data-name="columbia"]').click()
            write(phone, "Running 5 minutes late, start without me")

        await b.run(phone_writes)
        wikipedia.send("message columbia Could you look at my pull request after the review?")
        await wikipedia.expect(r"Sent to columbia\.")
        wikipedia.send("message columbia It is #42, the one with the new history command.")
        await wikipedia.expect(r"Sent to columbia\.")
        google.send("broadcast message Lunch at the usual place at noon, everyone welcome")
        await google.expect(r"Broadcast to")
        google.send("message seas Are you joining the review?")
        await google.expect(r"Sent to seas\.")
        wikipedia.send("message #dev Pushed the fix for the search page")
        await wikipedia.expect(r"Sent to #dev")
        await b.run(seen, desktop, "Pushed the fix for the search page")

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        shots = {
            "rooms-desktop": os.path.join(directory, "screenshot-rooms-desktop.png"),
            "rooms-phone": os.path.join(directory, "screenshot-rooms-phone.png"),
        }

        def photograph() -> None:
            open_conversation(desktop, "#dev", "#dev")
            expect(desktop.locator("#conv-sub")).to_have_text("5 members")
            badge(desktop, "@wikipedia", 2)
            badge(desktop, "@seas", 1)
            badge(desktop, "everyone", 1)
            expect(desktop.locator("#typing")).to_have_text("facebook is typing…")
            # The phone on its list: the conversations with their counts, and who is online.
            phone.click("#back")
            badge(phone, "@google", 1)
            badge(phone, "everyone", 1)
            badge(phone, "#dev", 1)
            for page in (desktop, phone):
                page.locator("#message").blur()
                # No passing note, and no pointer resting on an entry.
                page.evaluate("() => document.querySelector('#composer-note').hidden = true")
                page.mouse.move(5, 790)
            desktop.screenshot(path=shots["rooms-desktop"])
            phone.screenshot(path=shots["rooms-phone"])
            # Not in docs/, to look at: the rooms panel, a phone in a room, the dark theme.
            desktop.click("#browse-rooms")
            expect(desktop.locator('#room-directory li[data-room="#design"]')).to_be_visible()
            desktop.screenshot(path=os.path.join(directory, "rooms-panel-desktop.png"))
            desktop.keyboard.press("Escape")
            # The search box's results, a hit opened.
            desktop.fill("#search-text", "search page")
            desktop.press("#search-text", "Enter")
            expect(desktop.locator("#search-hits .hit")).to_have_count(2)
            desktop.locator("#search-hits .hit").last.click()
            expect(desktop.locator("#timeline .message.found")).to_have_count(1)
            desktop.screenshot(path=os.path.join(directory, "search-desktop.png"))
            desktop.click("#search-close")
            open_conversation(phone, "#dev", "#dev")
            phone.locator("#message").blur()
            phone.screenshot(path=os.path.join(directory, "room-phone.png"))
            phone.click("#back")
            phone.fill("#search-text", "review")
            phone.press("#search-text", "Enter")
            expect(phone.locator("#search-hits .hit")).to_have_count(2)
            phone.screenshot(path=os.path.join(directory, "search-phone.png"))
            phone.locator("#search-hits .hit").first.click()
            expect(phone.locator("#conversation")).to_be_visible()
            expect(phone.locator("#timeline .message.found")).to_be_in_viewport()
            desktop.emulate_media(color_scheme="dark")
            open_conversation(desktop, "@wikipedia", "wikipedia")
            desktop.locator("#message").blur()
            desktop.screenshot(path=os.path.join(directory, "direct-desktop-dark.png"))

        facebook.send({"type": "typing", "conversation": "#dev"})
        await b.run(photograph)
        for path in shots.values():
            self.assertGreater(os.path.getsize(path), 10_000, path)
        if os.environ.get("CHAT_SCREENSHOTS") == "1":
            for name, path in shots.items():
                shutil.copyfile(path, os.path.join(ROOT, "docs", f"screenshot-{name}.png"))
