"""
Writing and finding on the page, in a real browser (Chromium, driven by
Playwright) against a real ``twistd -n chat --web``, with terminal users on
the TCP port: messages of several lines (Shift+Enter, a pasted snippet, code
between triple backquotes) from the page to another page and to a
terminal; the search box and its hits, which open their conversation at the
message; "seas is typing…" between two pages; and the rough edges of issue
22: right-to-left text, broadcasts to named users, the intro form that owns
the keyboard, notes that clear, typed commands that always answer, and a
roster that says it is stale while the connection is down.

As in L{tests.e2e.test_browser}, each step in the browser runs in the
browser's thread and nothing waits a fixed time, but the typing notice's
six seconds.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tests.e2e.browser import evidence, expect
from tests.e2e.support import COMMAND
from tests.e2e.test_browser import BrowserTestCase, entry, free_ports, log_in, shows
from tests.e2e.test_browser_rooms import (
    DESKTOP,
    PHONE,
    badge,
    item,
    make_room,
    open_conversation,
    reload,
    seen,
    unseen,
    write,
)

if TYPE_CHECKING:  # Playwright may be missing when the tests skip
    from playwright.sync_api import Locator, Page

#: A page that may paste: its context may write and read the clipboard.
PASTING: dict[str, Any] = dict(DESKTOP, permissions=["clipboard-read", "clipboard-write"])

SNIPPET = "def double(x):\n    y = x * 2\n    return y"


# --- steps in the browser's thread ----------------------------------------------


def paste(page: Page, text: str) -> None:
    """Put C{text} on the clipboard and paste it where the focus is (Ctrl+V)."""
    page.evaluate("text => navigator.clipboard.writeText(text)", text)
    page.keyboard.press("Control+V")


def typed(page: Page, line: str) -> None:
    """Type C{line} in the composer and press Enter, as a person does."""
    page.locator("#message").focus()
    page.keyboard.type(line)
    page.keyboard.press("Enter")


def note(page: Page) -> Locator:
    return page.locator("#composer-note")


def hit(page: Page, text: str) -> Locator:
    """The search result whose text is C{text}."""
    return page.locator("#search-hits .hit").filter(has=page.locator(".hit-text", has_text=text))


# --- the tests ------------------------------------------------------------------


class MultiLineTests(BrowserTestCase):
    @evidence
    async def test_a_pasted_snippet_arrives_intact_in_a_page_and_in_lines_on_a_terminal(self) -> None:
        port, url = await self.serve()
        google = await self.login(port, "google")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia", **PASTING)
        seas = await b.run(b.page, "seas", **DESKTOP)
        await b.run(log_in, columbia, url, "columbia")
        await b.run(log_in, seas, url, "seas")
        record = b.record(columbia)
        text = "Here is the helper:\n```\n" + SNIPPET + "\n```"

        def compose() -> None:
            box = columbia.locator("#message")
            one_line = box.evaluate("t => t.offsetHeight")
            box.focus()
            columbia.keyboard.type("Here is the helper:")
            # Shift+Enter is a new line, not a send.
            columbia.keyboard.press("Shift+Enter")
            paste(columbia, "```\n" + SNIPPET + "\n```")
            expect(box).to_have_value(text)
            self.assertEqual(record.sent("broadcast"), [])
            # The composer grew with the lines.
            self.assertGreater(box.evaluate("t => t.offsetHeight"), one_line + 30)
            columbia.keyboard.press("Enter")
            expect(box).to_have_value("")
            b.wait_until(columbia, lambda: bool(record.sent("broadcast")), "the message to be sent")
            self.assertEqual(record.sent("broadcast")[-1]["text"], text)

        await b.run(compose)

        def arrived(page: Page) -> None:
            message = page.locator("#timeline .message").filter(has=page.locator("pre.code"))
            expect(message).to_have_count(1)
            code = message.locator(".text pre.code")
            # The code as it was written, every line and its indentation, in a monospace block.
            self.assertEqual(code.text_content(), SNIPPET)
            self.assertEqual(code.evaluate("e => getComputedStyle(e).whiteSpace"), "pre")
            self.assertIn("mono", code.evaluate("e => getComputedStyle(e).fontFamily"))
            self.assertEqual(
                message.locator(".text").evaluate("e => getComputedStyle(e).whiteSpace"), "pre-wrap"
            )
            expect(message.locator(".text")).to_contain_text("Here is the helper:")
            # Three lines of code: three lines tall, not one wrapped.
            lines = code.evaluate(
                """e => Math.round(e.querySelector('code').getBoundingClientRect().height
                                   / parseFloat(getComputedStyle(e).lineHeight))"""
            )
            self.assertEqual(lines, 3)

        await b.run(arrived, seas)
        await b.run(arrived, columbia)
        # A terminal reads every line, each after the first marked as continuing it.
        lines = ["columbia (broadcast): Here is the helper:", "```", *SNIPPET.split("\n"), "```"]
        await google.expect(re.escape("\r\n  | ".join(lines) + "\r\n"))

        # Lines typed with Shift+Enter reach a page as lines, and a room keeps them in its history.
        def two_lines() -> None:
            seas.locator("#message").focus()
            seas.keyboard.type("first line")
            seas.keyboard.press("Shift+Enter")
            seas.keyboard.type("second line")
            seas.keyboard.press("Enter")
            message = entry(columbia, "first line\nsecond line")
            expect(message).to_have_count(1)
            height = message.locator(".text").evaluate("e => e.getBoundingClientRect().height")
            line = message.locator(".text").evaluate("e => parseFloat(getComputedStyle(e).lineHeight)")
            self.assertGreater(height, 1.5 * line)

        await b.run(two_lines)
        await google.expect(re.escape("seas (broadcast): first line\r\n  | second line\r\n"))

    @evidence
    async def test_on_a_touch_screen_enter_starts_a_line_and_send_sends(self) -> None:
        port, url = await self.serve()
        google = await self.login(port, "google")
        b = await self.browser()
        phone = await b.run(b.page, "phone", **PHONE)
        record = b.record(phone)
        await b.run(log_in, phone, url, "columbia")

        def list_of_two() -> None:
            phone.locator('#roster .person[data-name="google"]').click()
            expect(phone.locator("#conv-title")).to_have_text("google")
            box = phone.locator("#message")
            # The keyboard's key says "enter", not "send".
            expect(box).to_have_attribute("enterkeyhint", "enter")
            box.focus()
            phone.keyboard.type("milk")
            phone.keyboard.press("Enter")
            phone.keyboard.type("eggs")
            expect(box).to_have_value("milk\neggs")
            self.assertEqual(record.sent("message"), [])
            phone.click("#send")
            expect(box).to_have_value("")
            expect(entry(phone, "milk\neggs", ".mine")).to_have_count(1)

        await b.run(list_of_two)
        await google.expect(re.escape("columbia (private): milk\r\n  | eggs\r\n"))


class SearchTests(BrowserTestCase):
    @evidence
    async def test_search_finds_rooms_and_direct_messages_but_never_others_private_ones(self) -> None:
        port, url = await self.serve("--rate", "1000", "--burst", "1000")
        google = await self.login(port, "google")
        seas = await self.login(port, "seas")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia", **DESKTOP)
        record = b.record(columbia)
        await b.run(log_in, columbia, url, "columbia")
        await b.run(make_room, columbia, "#ops")
        google.send("join #ops")
        await google.expect(r"You joined #ops")
        google.send("join #elsewhere")
        await google.expect(r"You made the room #elsewhere")
        google.send("message #ops The Deploy starts at five")
        await google.expect(r"Sent to #ops")
        # More than a page of the room after it: opening the hit pages back to it.
        for i in range(60):
            google.send(f"message #ops chatter {i}")
        for _ in range(60):
            await google.expect(r"Sent to #ops \(1 of 1 other member online\)\.\r\n")
        seas.send("message columbia can you deploy tonight?")
        await seas.expect(r"Sent to columbia\.")
        # Others' private messages, and a room columbia is not in: never found.
        google.send("message seas secret deploy plans")
        await google.expect(r"Sent to seas\.")
        google.send("message #elsewhere deploy in another room")
        await google.expect(r"Sent to #elsewhere")

        def found() -> None:
            # A reload: the page has only the newest page of each conversation it opens.
            reload(columbia)
            open_conversation(columbia, "everyone", "Everyone")
            columbia.fill("#search-text", "deploy")
            columbia.press("#search-text", "Enter")
            expect(columbia.locator("#search-results")).to_be_visible()
            expect(columbia.locator("#search-hits .hit")).to_have_count(2)
            self.assertEqual(record.sent("search")[-1]["text"], "deploy")
            # Newest first, each with its conversation, sender and time, the word marked.
            direct, room = columbia.locator("#search-hits .hit").all()
            expect(direct.locator(".hit-conv")).to_have_text("with seas")
            expect(direct.locator(".hit-from")).to_have_text("seas")
            expect(direct.locator(".hit-text")).to_have_text("can you deploy tonight?")
            expect(room.locator(".hit-conv")).to_have_text("#ops")
            expect(room.locator(".hit-from")).to_have_text("google")
            expect(room.locator(".hit-text mark")).to_have_text("Deploy")
            for h in (direct, room):
                expect(h.locator(".hit-time")).to_have_text(re.compile(r"\d\d:\d\d"))
            expect(columbia.locator("#search-results")).not_to_contain_text("secret")
            expect(columbia.locator("#search-results")).not_to_contain_text("another room")
            # The conversations' list gives way to the results.
            expect(columbia.locator("#room-list")).to_be_hidden()

            # The room's hit: its conversation opens at the message, older pages loaded to reach it.
            room.click()
            expect(columbia.locator("#conv-title")).to_have_text("#ops")
            message = entry(columbia, "The Deploy starts at five")
            expect(message).to_have_class(re.compile(r"(^|\s)found(\s|$)"))
            expect(message).to_be_visible()
            expect(message).to_be_in_viewport()
            pages = [m for m in record.sent("history") if m.get("conversation") == "#ops"]
            self.assertIn("before", pages[-1])

            # The direct one.
            direct.click()
            expect(columbia.locator("#conv-title")).to_have_text("seas")
            message = entry(columbia, "can you deploy tonight?")
            expect(message).to_have_class(re.compile(r"(^|\s)found(\s|$)"))
            expect(message).to_be_in_viewport()

            # Closed: the conversations again.
            columbia.click("#search-close")
            expect(columbia.locator("#search-results")).to_be_hidden()
            expect(item(columbia, "#ops")).to_be_visible()

            # Typed as a command, the answer shows in the same place.
            columbia.fill("#message", "/search DÉPLOY tonight")
            columbia.click("#send")
            expect(columbia.locator("#search-results")).to_be_visible()
            expect(columbia.locator("#search-hits .hit")).to_have_count(1)
            expect(hit(columbia, "can you deploy tonight?")).to_have_count(1)

            # Many hits come a page at a time.
            columbia.fill("#search-text", "chatter")
            columbia.press("#search-text", "Enter")
            hits = columbia.locator("#search-hits .hit .hit-text")
            expect(hits).to_have_count(20)
            expect(hits.first).to_have_text("chatter 59")
            columbia.click("#search-more")
            expect(hits).to_have_count(40)
            last_shown = record.received("found")[-2]["hits"][-1]["id"]
            self.assertEqual(record.sent("search")[-1]["before"], last_shown)
            expect(hits.nth(20)).to_have_text("chatter 39")
            # Escape in the box closes the results.
            columbia.locator("#search-text").focus()
            columbia.keyboard.press("Escape")
            expect(columbia.locator("#search-results")).to_be_hidden()
            expect(item(columbia, "#ops")).to_be_visible()

        await b.run(found)


class TypingTests(BrowserTestCase):
    @evidence
    async def test_seas_is_typing_shows_and_clears_between_two_pages(self) -> None:
        _port, url = await self.serve()
        b = await self.browser()
        columbia = await b.run(b.page, "columbia", **DESKTOP)
        seas = await b.run(b.page, "seas", **DESKTOP)
        await b.run(log_in, columbia, url, "columbia")
        await b.run(log_in, seas, url, "seas")
        sent = b.record(seas)

        def typing() -> None:
            columbia.locator('#roster .person[data-name="seas"]').click()
            seas.locator('#roster .person[data-name="columbia"]').click()
            expect(seas.locator("#conv-title")).to_have_text("columbia")
            seas.locator("#message").focus()
            seas.keyboard.type("are you ")
            expect(columbia.locator("#typing")).to_have_text("seas is typing…")
            # Said once for a few keys, to the conversation it is typed in.
            self.assertEqual(sent.sent("typing"), [{"type": "typing", "conversation": "@columbia"}])
            # The message comes: the notice goes.
            seas.keyboard.type("there?")
            seas.keyboard.press("Enter")
            shows(columbia, "are you there?", "seas", "private")
            expect(columbia.locator("#typing")).to_have_text("")

            # Typed in another conversation: there, in the sidebar, not in the one open.
            open_conversation(seas, "everyone", "Everyone")
            seas.locator("#message").focus()
            seas.keyboard.type("hello all")
            expect(item(columbia, "everyone").locator(".conv-typing")).to_have_text("typing…")
            expect(columbia.locator("#typing")).to_have_text("")
            # Six seconds without a word, and it is gone.
            expect(item(columbia, "everyone").locator(".conv-typing")).to_have_count(0, timeout=9_000)
            open_conversation(columbia, "everyone", "Everyone")
            expect(columbia.locator("#typing")).to_have_text("")

            # Typing again, then gone offline: the notice goes at once.
            seas.locator("#message").fill("")
            seas.keyboard.type(" and more")
            expect(columbia.locator("#typing")).to_have_text("seas is typing…")
            seas.click("#logout")
            expect(seas.locator("#login")).to_be_visible()
            expect(columbia.locator('#roster .person[data-name="seas"]')).to_have_count(0)
            expect(columbia.locator("#typing")).to_have_text("")

        await b.run(typing)


class RoughEdgeTests(BrowserTestCase):
    @evidence
    async def test_right_to_left_text_is_right_aligned(self) -> None:
        port, url = await self.serve()
        google = await self.login(port, "google")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia", **DESKTOP)
        await b.run(log_in, columbia, url, "columbia")
        hebrew = "שלום, מה שלומך היום?"
        google.send(f"broadcast message {hebrew}")
        google.send("broadcast message hello from the left")
        await google.expect(r"Broadcast to 1 user\.\r\n" + COMMAND + r".*Broadcast to 1 user\.")

        def aligned() -> None:
            # What is typed follows its own direction too.
            for box in ("#message", "#search-text", "#intro-text"):
                expect(columbia.locator(box)).to_have_attribute("dir", "auto")
            for text, direction in ((hebrew, "rtl"), ("hello from the left", "ltr")):
                body = entry(columbia, text).locator(".text")
                expect(body).to_have_attribute("dir", "auto")
                self.assertEqual(body.evaluate("e => getComputedStyle(e).direction"), direction)
                # Where the words sit in the line: against the right edge, or the left.
                left, right, words_left, words_right = body.evaluate(
                    """e => { const r = document.createRange(); r.selectNodeContents(e);
                        const box = e.getBoundingClientRect(), words = r.getBoundingClientRect();
                        return [box.left, box.right, words.left, words.right]; }"""
                )
                if direction == "rtl":
                    self.assertAlmostEqual(words_right, right, delta=2)
                    self.assertGreater(words_left, left + 100)
                else:
                    self.assertAlmostEqual(words_left, left, delta=2)

        await b.run(aligned)

    @evidence
    async def test_a_broadcast_to_named_users_shows_them_in_the_direct_conversation(self) -> None:
        port, url = await self.serve()
        google = await self.login(port, "google")
        await self.login(port, "seas")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia", **DESKTOP)
        await b.run(log_in, columbia, url, "columbia")
        google.send("broadcast user columbia seas message lunch for the two of you")
        await google.expect(r"Sent to columbia, seas\.|Sent to seas, columbia\.|Sent to")
        google.send("broadcast message lunch for everyone")
        await google.expect(r"Broadcast to 2 users\.")

        def filed() -> None:
            expect(columbia.locator("#conv-title")).to_have_text("Everyone")
            # Not one to everyone: in the conversation with its sender, counted there.
            unseen(columbia, "lunch for the two of you")
            seen(columbia, "lunch for everyone")
            badge(columbia, "@google", 1)
            expect(entry(columbia, "lunch for everyone").locator(".tag")).to_have_count(0)
            open_conversation(columbia, "@google", "google")
            seen(columbia, "lunch for the two of you")
            expect(entry(columbia, "lunch for the two of you").locator(".tag")).to_have_text("to you, seas")

        await b.run(filed)

    @evidence
    async def test_the_intro_form_owns_the_keyboard_and_typed_commands_always_answer(self) -> None:
        port, url = await self.serve()
        google = await self.login(port, "google")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia", **DESKTOP)
        record = b.record(columbia)
        await b.run(log_in, columbia, url, "columbia")

        def intro() -> None:
            typed(columbia, "/personalintro")
            form = columbia.locator("#intro-form")
            expect(form).to_be_visible()
            expect(columbia.locator("#intro-text")).to_be_focused()
            # The composer cannot take the keyboard while the form is open.
            columbia.evaluate("document.getElementById('message').focus()")
            expect(columbia.locator("#intro-text")).to_be_focused()
            # What is typed next is the intro, and the composer gets nothing.
            columbia.keyboard.press("Control+A")
            columbia.keyboard.type("Coffee first, then code")
            columbia.keyboard.press("Enter")
            expect(form).to_be_hidden()
            expect(note(columbia)).to_contain_text("Personal introduction saved.")
            expect(columbia.locator("#message")).to_have_value("")
            expect(columbia.locator("#message")).to_be_focused()
            expect(columbia.locator("#composer-error")).to_be_hidden()
            self.assertEqual(record.sent("line")[-1], {"type": "line", "text": "Coffee first, then code"})

        await b.run(intro)
        google.send("whoelse")
        await google.expect(r"columbia +<Coffee first, then code>\r\n")

        def cancelled_then_cleared() -> None:
            typed(columbia, "/personalintro")
            expect(columbia.locator("#intro-form")).to_be_visible()
            columbia.keyboard.press("Escape")
            expect(columbia.locator("#intro-form")).to_be_hidden()
            expect(note(columbia)).to_contain_text("Personal introduction unchanged.")
            # The next message is a message, and the old note goes.
            write(columbia, "back to work")
            expect(note(columbia)).to_be_hidden()
            expect(columbia.locator("#composer-error")).to_be_hidden()

        await b.run(cancelled_then_cleared)

        def answers() -> None:
            typed(columbia, "/whoelse")
            expect(note(columbia)).to_be_visible()
            expect(note(columbia)).to_contain_text("Online now:")
            expect(note(columbia).locator("li")).to_have_text(["google"])
            typed(columbia, "/history 3")
            expect(note(columbia)).to_contain_text("Your last messages (1):")
            expect(note(columbia).locator("li")).to_have_count(1)
            expect(note(columbia).locator("li")).to_contain_text("back to work")

        await b.run(answers)

    @evidence
    async def test_while_disconnected_the_roster_says_it_is_stale(self) -> None:
        tcp, web = free_ports(2)
        server = self.lab.server(
            "--port", f"tcp:{tcp}:interface=127.0.0.1", "--web", f"tcp:{web}:interface=127.0.0.1"
        )
        self.servers.append(server)
        port = await server.start()
        await self.login(port, "google")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia", **DESKTOP)
        await b.run(log_in, columbia, f"http://127.0.0.1:{web}/", "columbia")

        def fresh() -> None:
            expect(columbia.locator('#roster .person[data-name="google"]')).to_have_count(1)
            expect(columbia.locator("#roster-stale")).to_be_hidden()
            columbia.wait_for_function("() => sessionStorage.length > 0")

        await b.run(fresh)
        # Killed: no goodbye, no one seen leaving; the connection just drops.
        first_log = server.log
        await server.kill()
        server.earlier_log = first_log  # type: ignore[attr-defined]

        def stale() -> None:
            expect(columbia.locator("#banner")).to_be_visible()
            expect(columbia.locator("#roster-stale")).to_be_visible()
            expect(columbia.locator("#roster-stale")).to_have_text(re.compile(r"^as of \d\d:\d\d$"))
            expect(columbia.locator("#sidebar")).to_have_class(re.compile(r"(^|\s)stale(\s|$)"))
            # Who was there stays listed, greyed.
            expect(columbia.locator('#roster .person[data-name="google"]')).to_have_count(1)

        await b.run(stale)
        await server.start()

        def current() -> None:
            expect(columbia.locator("#banner")).to_be_hidden(timeout=30_000)
            expect(columbia.locator("#roster-stale")).to_be_hidden()
            expect(columbia.locator("#sidebar")).not_to_have_class(re.compile(r"(^|\s)stale(\s|$)"))
            # google's terminal went with the server: the roster is the server's again.
            expect(columbia.locator('#roster .person[data-name="google"]')).to_have_count(0)

        await b.run(current)
