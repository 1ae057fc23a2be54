"""
Chromium, driven by Playwright, for the tests of the web page.

Playwright's synchronous API must not run in the reactor's thread (it
blocks), and its objects belong to the thread that made them.  So
L{Browsers} gives the browser one thread of its own: C{run(f)} calls C{f}
there and gives a Deferred of its result, while the test goes on in the
reactor, where the servers and the TCP clients live.  A test is then a
sequence of steps, each run where it belongs and awaited before the next.

Every page opened with L{Browsers.page} records its console, its uncaught
errors, its dialogs and the WebSocket frames it sent and received; on a
failure L{evidence} saves a screenshot, the DOM and that record of every
open page, and names the files in the failure.

A missing Chromium or Playwright skips the tests, except where C{CI} is set
(as CI services do): there it fails them.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.trial import unittest

try:
    from playwright.sync_api import Browser, Page, Playwright, WebSocket, expect, sync_playwright

    PLAYWRIGHT_MISSING: str | None = None
except ImportError as e:  # the tests then skip, or fail under CI
    PLAYWRIGHT_MISSING = f"Playwright is not installed ({e}); pip install -e '.[test]'"
    expect = None  # type: ignore[assignment]

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: Milliseconds an auto-waiting expectation or action waits by default.
TIMEOUT = 10_000

T = TypeVar("T")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None if they can."""
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return PLAYWRIGHT_MISSING


def require_browser(case: unittest.TestCase) -> None:
    """Skip C{case} if there is no browser, or fail it if C{CI} is set."""
    problem = browser_missing()
    if problem is None:
        return
    if os.environ.get("CI"):
        case.fail(f"CI is set, so a missing browser fails the browser tests rather than skip them: {problem}")
    raise unittest.SkipTest(problem)


class Record:
    """What one page did: console lines, uncaught errors, dialogs, WebSocket frames."""

    def __init__(self, label: str, page: Page) -> None:
        self.label = label
        self.page = page
        #: Everything, in order, as lines for the evidence file.
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        #: Parsed JSON frames, as ("sent" | "received", message).
        self.frames: list[tuple[str, dict[str, Any]]] = []
        #: When each of C{frames} was seen (C{time.monotonic()}), in the same order.
        self.times: list[float] = []
        self.start = time.monotonic()

    def note(self, line: str) -> None:
        self.lines.append(f"{time.monotonic() - self.start:8.3f} {line}")

    def frame(self, direction: str, payload: str | bytes) -> None:
        self.note(f"ws {'>' if direction == 'sent' else '<'} {payload!r}")
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if isinstance(message, dict):
            self.frames.append((direction, message))
            self.times.append(time.monotonic())

    def sent(self, kind: str) -> list[dict[str, Any]]:
        return [m for d, m in self.frames if d == "sent" and m.get("type") == kind]

    def received(self, kind: str) -> list[dict[str, Any]]:
        return [m for d, m in self.frames if d == "received" and m.get("type") == kind]

    def sent_at(self, kind: str) -> list[float]:
        """When each frame of C{kind} that the page sent was seen (C{time.monotonic()})."""
        pairs = zip(self.times, self.frames, strict=True)
        return [t for t, (d, m) in pairs if d == "sent" and m.get("type") == kind]


class Browsers:
    """
    One Chromium for one test, on a thread of its own; a new context (its
    own cookies and storage: a person) for every page.
    """

    def __init__(self, case: unittest.TestCase) -> None:
        self.case = case
        self.pool = ThreadPool(1, 1, "browser")
        self.records: list[Record] = []
        self.playwright: Playwright | None = None
        self.browser: Browser | None = None

    async def start(self) -> Browsers:
        self.pool.start()
        self.case.addCleanup(self._stop)
        await self.run(self._launch)
        return self

    def run(self, f: Callable[..., T], *args: Any, **kwargs: Any) -> defer.Deferred[T]:
        """Call C{f} in the browser's thread; fires with what it returns."""
        return deferToThreadPool(cast(IReactorFromThreads, reactor), self.pool, f, *args, **kwargs)

    # --- in the browser's thread --------------------------------------------

    def _launch(self) -> None:
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        expect.set_options(timeout=TIMEOUT)

    def page(self, label: str, **context_options: Any) -> Page:
        """A new page in a new context (C{viewport}, C{is_mobile}, ...), recorded."""
        assert self.browser is not None
        context = self.browser.new_context(**context_options)
        context.set_default_timeout(TIMEOUT)
        page = context.new_page()
        record = Record(label, page)
        self.records.append(record)

        def console(message: Any) -> None:
            record.note(f"console.{message.type}: {message.text}")

        def error(exception: Any) -> None:
            record.errors.append(str(exception))
            record.note(f"uncaught: {exception}")

        def dialog(dialog: Any) -> None:
            record.dialogs.append(f"{dialog.type}: {dialog.message}")
            record.note(f"dialog {dialog.type}: {dialog.message}")
            dialog.dismiss()

        def websocket(ws: WebSocket) -> None:
            record.note(f"websocket opened: {ws.url}")
            ws.on("framesent", lambda payload: record.frame("sent", payload))
            ws.on("framereceived", lambda payload: record.frame("received", payload))
            ws.on("close", lambda _: record.note(f"websocket closed: {ws.url}"))
            ws.on("socketerror", lambda e: record.note(f"websocket error: {e}"))

        page.on("console", console)
        page.on("pageerror", error)
        page.on("dialog", dialog)
        page.on("websocket", websocket)
        page.on("framenavigated", lambda frame: record.note(f"navigated: {frame.url}"))
        return page

    def record(self, page: Page) -> Record:
        return next(r for r in self.records if r.page is page)

    def wait_until(self, page: Page, condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
        """
        Wait for C{condition} of what the test records (frames, dialogs),
        letting Playwright deliver events meanwhile; fail after C{timeout}.
        In the browser's thread, which blocks: the one wait not made with
        L{tests.expect}, whose Deferreds belong to the reactor's thread.
        """
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            page.wait_for_timeout(25)

    def _capture(self, directory: str) -> list[str]:
        os.makedirs(directory, exist_ok=True)
        saved = []
        for i, record in enumerate(self.records):
            base = os.path.join(directory, f"{i}-{record.label}")
            page = record.page
            if not page.is_closed():
                try:
                    page.screenshot(path=base + ".png", full_page=True, timeout=5000)
                    saved.append(base + ".png")
                except Exception as e:
                    record.note(f"(no screenshot: {e})")
                try:
                    with open(base + ".html", "w", encoding="utf-8") as f:
                        f.write(page.content())
                    saved.append(base + ".html")
                except Exception as e:
                    record.note(f"(no DOM: {e})")
                record.note(f"url {page.url}, title {page.title()!r}")
            with open(base + ".log", "w", encoding="utf-8") as f:
                f.write("\n".join(record.lines) + "\n")
            saved.append(base + ".log")
        return saved

    def _close(self) -> None:
        if self.browser is not None:
            self.browser.close()
        if self.playwright is not None:
            self.playwright.stop()

    # --- in the reactor -----------------------------------------------------

    def errors(self) -> list[str]:
        """Uncaught errors of every page, labelled."""
        return [f"{r.label}: {e}" for r in self.records for e in r.errors]

    async def capture(self, directory: str) -> list[str]:
        """Save a screenshot, the DOM and the record of every page; give the paths."""
        return await self.run(self._capture, directory)

    async def _stop(self) -> None:
        try:
            await self.run(self._close)
        finally:
            self.pool.stop()


def evidence(
    test: Callable[[Any], Awaitable[None]],
) -> Callable[[Any], Awaitable[None]]:
    """
    Decorate a test method of a case with C{browsers} (a L{Browsers}, once
    started) and C{servers} (the servers it started): on any failure, save
    every page's screenshot, DOM and record, and every server's log, under
    the test's temporary directory, and name them in the failure.  An
    uncaught error in a page fails the test too.
    """

    @functools.wraps(test)
    async def wrapper(self: Any) -> None:
        try:
            await test(self)
            browsers = getattr(self, "browsers", None)
            if browsers is not None and browsers.errors():
                raise AssertionError("uncaught errors in the page:\n" + "\n".join(browsers.errors()))
        except unittest.SkipTest:
            raise
        except BaseException:
            problem = traceback.format_exc()
            directory = os.path.abspath(self.mktemp())
            saved: list[str] = []
            browsers = getattr(self, "browsers", None)
            if browsers is not None and browsers.browser is not None:
                try:
                    saved += await browsers.capture(directory)
                except Exception:
                    problem += "\n(could not save the pages: " + traceback.format_exc() + ")"
            os.makedirs(directory, exist_ok=True)
            for i, server in enumerate(getattr(self, "servers", [])):
                path = os.path.join(directory, f"server-{i}.log")
                with open(path, "wb") as f:
                    f.write(getattr(server, "earlier_log", b"") + server.log)
                saved.append(path)
            listing = "\n  ".join(saved) or "(nothing)"
            self.fail(f"{problem}\nScreenshots, DOMs, page and server logs:\n  {listing}")

    return wrapper


def first_number(text: str) -> int:
    m = re.search(r"\d+", text)
    if m is None:
        raise AssertionError(f"no number in {text!r}")
    return int(m.group())
