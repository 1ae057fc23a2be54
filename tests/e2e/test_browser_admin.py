"""
The admins' part of the web page in a real browser (Chromium, driven by
Playwright) against a real ``twistd -n chat --web --admins columbia``, with
a terminal user on the TCP port beside it: the Admin panel lists every
session and kicks a terminal user and a page, an announcement reaches pages
(as a notice from the server, not a message) and terminals, and a page of
anyone else has no Admin panel at all.

As in L{tests.e2e.test_browser}, each step in the browser runs in the
browser's thread and waits for the page (Playwright's auto-waiting
expectations); the reactor's steps wait for the server's answers.  Nothing
sleeps.  Each test leaves screenshots of what it checked, on a desktop and
on a phone's screen, in its temporary directory (``_trial_temp``).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from tests.e2e.browser import Browsers, evidence, expect
from tests.e2e.support import closing
from tests.e2e.test_browser import BrowserTestCase, entry, log_in, shows

if TYPE_CHECKING:  # Playwright may be missing when the tests skip
    from playwright.sync_api import Locator, Page, ViewportSize

ADMINS = ("--admins", "columbia")
DESKTOP_SIZE: ViewportSize = {"width": 1280, "height": 800}
PHONE_SIZE: ViewportSize = {"width": 390, "height": 844}
DESKTOP = {"viewport": DESKTOP_SIZE}
PHONE = {
    "viewport": PHONE_SIZE,
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


# --- steps in the browser's thread ----------------------------------------------


def session_row(page: Page, user: str) -> Locator:
    return page.locator(f'#sessions-table tr.session[data-user="{user}"]')


def cell(page: Page, user: str, label: str) -> Locator:
    return session_row(page, user).locator(f'td[data-label="{label}"]')


def open_sessions(page: Page) -> None:
    """Open the Admin panel from the keyboard and wait for the list of sessions."""
    page.locator("#admin").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#admin-panel")).to_be_visible()
    expect(page.locator("#admin-close")).to_be_focused()
    expect(page.locator("#sessions-summary")).to_have_text(
        re.compile(r"^\d+ sessions?, as of \d\d:\d\d:\d\d\.$")
    )


def no_admin_panel(page: Page) -> None:
    """C{page} is in the chat, and has no Admin button or panel: not hidden, absent."""
    expect(page.locator("#chat")).to_be_visible()
    expect(page.locator("#admin")).to_have_count(0)
    expect(page.locator("#admin-panel")).to_have_count(0)
    expect(page.locator(".topbar")).not_to_contain_text("Admin")


def kick(page: Page, user: str, reason: str) -> None:
    """Kick C{user} with C{reason} from the keyboard: Kick, the reason, Enter."""
    session_row(page, user).get_by_role("button", name=f"Kick {user}").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#kick-reason")).to_be_focused()
    page.keyboard.type(reason)
    page.keyboard.press("Enter")
    expect(session_row(page, user)).to_have_count(0)
    expect(page.locator("#kick-form")).to_have_count(0)


def announcement(page: Page, text: str) -> Locator:
    exactly = re.compile(r"^\s*" + re.escape(text) + r"\s*$")
    return page.locator("#timeline .announcement").filter(has=page.locator(".text", has_text=exactly))


def shows_announcement(page: Page, text: str) -> None:
    """C{page}'s timeline shows C{text} once, as an announcement and not as anyone's message."""
    notice = announcement(page, text)
    expect(notice).to_have_count(1)
    expect(notice.locator(".announcement-label")).to_have_text("Announcement:")
    expect(notice.locator(".time")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    expect(notice.locator(".sender")).to_have_count(0)
    expect(entry(page, text)).to_have_count(0)  # not as a message


def console_errors(browsers: Browsers) -> list[str]:
    return [f"{r.label}: {line}" for r in browsers.records for line in r.lines if "console.error" in line]


# --- the tests ------------------------------------------------------------------


class AdminPanelTests(BrowserTestCase):
    @evidence
    async def test_an_admin_lists_the_sessions_and_kicks_a_terminal_user_and_a_page(self) -> None:
        port, url = await self.serve(*ADMINS)
        google = await self.login(port, "google")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia", **DESKTOP)
        seas = await b.run(b.page, "seas", **DESKTOP)
        await b.run(log_in, columbia, url, "columbia")
        await b.run(log_in, seas, url, "seas")
        await b.run(seas.wait_for_function, "() => sessionStorage.getItem('chat.session') !== null")
        token = await b.run(seas.evaluate, "() => sessionStorage.getItem('chat.session')")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)

        def listed() -> None:
            no_admin_panel(seas)
            open_sessions(columbia)
            expect(columbia.locator("#sessions-summary")).to_contain_text("3 sessions")
            expect(columbia.locator("#sessions-unanswered")).to_be_hidden()
            for user, edge in (("google", "tcp"), ("seas", "web"), ("columbia", "web")):
                expect(session_row(columbia, user)).to_have_count(1)
                expect(cell(columbia, user, "Edge")).to_have_text(edge)
                expect(cell(columbia, user, "Address")).to_have_text("127.0.0.1")
                expect(cell(columbia, user, "Node")).to_have_text("—")
                expect(cell(columbia, user, "Since")).to_have_text(re.compile(r"^\d\d:\d\d$"))
                expect(cell(columbia, user, "Idle")).to_have_text(re.compile(r"^\d+ [smh]"))
            # The admin's own session: marked, and not to be kicked from here.
            expect(session_row(columbia, "columbia")).to_contain_text("you")
            expect(session_row(columbia, "columbia").locator(".kick-button")).to_have_count(0)
            columbia.screenshot(path=os.path.join(directory, "sessions-desktop.png"))
            # The reason form, open, as the admin sees it before kicking.
            session_row(columbia, "google").get_by_role("button", name="Kick google").click()
            expect(columbia.locator("#kick-reason")).to_be_focused()
            columbia.screenshot(path=os.path.join(directory, "kick-form-desktop.png"))
            columbia.keyboard.press("Escape")  # closes the form, not the panel
            expect(columbia.locator("#kick-form")).to_have_count(0)
            expect(columbia.locator("#admin-panel")).to_be_visible()
            expect(session_row(columbia, "google").locator(".kick-button")).to_be_focused()
            # The same on a phone's screen: a card per session, nothing wider than the screen.
            columbia.set_viewport_size(PHONE_SIZE)
            session_row(columbia, "seas").get_by_role("button", name="Kick seas").click()
            expect(columbia.locator("#kick-reason")).to_be_focused()
            columbia.screenshot(path=os.path.join(directory, "kick-form-phone.png"))
            width = columbia.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
            columbia.get_by_role("button", name="Cancel").click()
            expect(columbia.locator("#kick-form")).to_have_count(0)
            columbia.set_viewport_size(DESKTOP_SIZE)

        await b.run(listed)

        # The terminal user: told who and why, and disconnected.
        await b.run(kick, columbia, "google", "flooding the channel")
        await b.run(
            expect(columbia.locator("#kick-result")).to_have_text,
            "Disconnected google; they cannot resume the session without their password.",
        )
        await google.expect(
            re.escape("You were disconnected by the admin columbia: flooding the channel\r\n")
        )
        await closing(google)

        # The page: back at the login form, saying who and why, without its token.
        await b.run(kick, columbia, "seas", "time for bed")

        def kicked() -> None:
            expect(seas.locator("#login")).to_be_visible()
            expect(seas.locator("#chat")).to_be_hidden()
            expect(seas.locator("#login-error")).to_have_text(
                "You were disconnected by the admin columbia: time for bed"
            )
            assert seas.evaluate("() => sessionStorage.getItem('chat.session')") is None
            seas.screenshot(path=os.path.join(directory, "kicked-desktop.png"))
            # A reload does not bring the session back: the empty form, waiting for a password.
            seas.reload()
            expect(seas.locator("#username")).to_be_focused()
            expect(seas.locator("#login")).to_be_visible()
            expect(seas.locator("#chat")).to_be_hidden()
            assert not b.record(seas).sent("resume"), "the kicked page tried to resume"
            expect(session_row(columbia, "seas")).to_have_count(0)
            expect(columbia.locator("#sessions-summary")).to_contain_text("1 session,")

        await b.run(kicked)

        def revoked() -> None:
            # Nor does the token it had: the server revoked it.
            page = b.page("seas-token")
            page.context.add_init_script(f"sessionStorage.setItem('chat.session', {token!r});")
            page.goto(url)
            expect(page.locator("#login")).to_be_visible()
            expect(page.locator("#chat")).to_be_hidden()
            expect(page.locator("#login-error")).not_to_be_empty()
            assert page.evaluate("() => sessionStorage.getItem('chat.session')") is None

        await b.run(revoked)
        [refused] = b.records[-1].received("login_refused")
        self.assertEqual(refused["reason"], "expired")

        def phone_and_close() -> None:
            columbia.locator("#sessions-refresh").click()
            expect(columbia.locator("#sessions-summary")).to_contain_text("1 session,")
            columbia.set_viewport_size(PHONE_SIZE)
            expect(columbia.locator("#admin-panel")).to_be_visible()
            columbia.screenshot(path=os.path.join(directory, "sessions-phone.png"))
            width = columbia.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
            columbia.keyboard.press("Escape")
            expect(columbia.locator("#admin-panel")).to_be_hidden()
            expect(columbia.locator("#admin")).to_be_focused()

        await b.run(phone_and_close)
        self.assertEqual(console_errors(b), [])
        self.assertEqual([d for r in b.records for d in r.dialogs], [])

    @evidence
    async def test_an_announcement_reaches_pages_as_a_notice_from_the_server_and_terminals(self) -> None:
        port, url = await self.serve(*ADMINS)
        google = await self.login(port, "google")
        b = await self.browser()
        columbia = await b.run(b.page, "columbia", **DESKTOP)
        # In the dark theme, to see the notice in both.
        seas = await b.run(b.page, "seas", color_scheme="dark", **PHONE)
        await b.run(log_in, columbia, url, "columbia")
        await b.run(log_in, seas, url, "seas")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        text = "The server restarts at 17:00 for an upgrade; back within 5 minutes"
        # A message first, for the difference between the two to show.
        google.send("broadcast message Deploying the new build now")
        await google.expect(r"Broadcast to 2 users\.")
        await b.run(shows, seas, "Deploying the new build now", "google", "broadcast")

        def announce() -> None:
            no_admin_panel(seas)
            open_sessions(columbia)
            columbia.locator("#announce-text").fill(text)
            columbia.locator("#announce-text").press("Enter")
            expect(columbia.locator("#announce-status")).to_have_text("Announced to 3 users here.")
            expect(columbia.locator("#announce-text")).to_have_value("")
            shows_announcement(seas, text)
            columbia.screenshot(path=os.path.join(directory, "announced-desktop.png"))
            seas.locator("#message").blur()
            seas.screenshot(path=os.path.join(directory, "announcement-phone.png"))
            # The admin's own page shows it too, once the panel is closed.
            columbia.locator("#admin-close").click()
            shows_announcement(columbia, text)
            columbia.screenshot(path=os.path.join(directory, "announcement-desktop.png"))

        await b.run(announce)
        await google.expect(re.escape(f"*** Announcement from the server: {text}\r\n"))

        # Markup in an announcement is shown as text.
        markup = '<img src=x onerror="alert(1)"> <b>bold</b>'

        def literal() -> None:
            columbia.locator("#admin").click()
            columbia.locator("#announce-text").fill(markup)
            columbia.locator("#announce-send").click()
            expect(columbia.locator("#announce-status")).to_have_text("Announced to 3 users here.")
            expect(announcement(seas, markup)).to_have_count(1)
            expect(seas.locator("#timeline img, #timeline b")).to_have_count(0)
            # What the server refuses is said in the panel, and the text is kept to fix.
            columbia.locator("#announce-text").fill("right-to-left \u202eereht")
            columbia.locator("#announce-text").press("Enter")
            status = columbia.locator("#announce-status")
            expect(status).to_contain_text("direction of text")
            expect(status).to_have_class(re.compile(r"(^|\s)error(\s|$)"))
            expect(columbia.locator("#announce-text")).to_have_value("right-to-left \u202eereht")
            expect(columbia.locator("#composer-error")).to_be_hidden()

        await b.run(literal)
        await google.expect(re.escape(f"*** Announcement from the server: {markup}\r\n"))
        self.assertEqual(console_errors(b), [])
        self.assertEqual([d for r in b.records for d in r.dialogs], [])

    @evidence
    async def test_a_page_of_a_user_who_is_not_an_admin_has_no_admin_panel(self) -> None:
        """Not even in the tab where an admin logged out before."""
        _, url = await self.serve(*ADMINS)
        b = await self.browser()
        page = await b.run(b.page, "tab", **DESKTOP)
        await b.run(log_in, page, url, "seas")
        await b.run(no_admin_panel, page)
        self.assertEqual(b.record(page).sent("sessions"), [])

        def admin_then_seas() -> None:
            page.locator("#logout").click()
            expect(page.locator("#login")).to_be_visible()
            log_in(page, url, "columbia")
            expect(page.locator("#admin")).to_have_count(1)
            page.locator("#logout").click()
            expect(page.locator("#login")).to_be_visible()
            expect(page.locator("#admin")).to_have_count(0)
            page.fill("#username", "seas")
            page.fill("#password", "summerisover")
            page.click("#login-button")
            no_admin_panel(page)

        await b.run(admin_then_seas)
        [welcome, again, last] = b.record(page).received("welcome")
        self.assertNotIn("admin", welcome)
        self.assertIs(again["admin"], True)
        self.assertNotIn("admin", last)
