"""Browser fixtures for the UI tests: headless Debian chromium driven by Playwright.

`browser` is one chromium per test module (Playwright's sync API keeps an event loop running while it
is open, which would break asyncio.run() in any test after it); `page` is a fresh page per test, whose
console errors and page errors fail the test (a view that throws would otherwise look merely empty).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    problems: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            problems.append(f"console error: {msg.text}")

    pg.on("console", on_console)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.set_default_timeout(15_000)
    try:
        yield pg
    finally:
        context.close()
    # A 4xx the view asked for on purpose (a bad query) logs a console error too: views mark those
    # requests' errors as shown in the page, so only unexpected ones are reported here.
    unexpected = [p for p in problems if "Failed to load resource" not in p]
    assert not unexpected, unexpected
