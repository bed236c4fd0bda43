"""Driving Debian's chromium in browser tests (fixtures in tests/fixtures/browser.py).

Never a browser download: Playwright launches /usr/bin/chromium (scripts/test
installs Debian's package when it is missing).
"""

from __future__ import annotations

import time

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def screenshot(page, path, attempts: int = 3, full_page: bool = False) -> None:
    """Save what the page shows (evidence for a reader of the test run). Headless chromium
    now and then answers "Unable to capture screenshot" while it repaints, so try again
    a moment later; the last failure is raised."""
    from playwright.sync_api import Error

    for attempt in range(1, attempts + 1):
        try:
            page.screenshot(path=str(path), full_page=full_page)
            return
        except Error as exc:
            if attempt == attempts or "Unable to capture screenshot" not in str(exc):
                raise
            time.sleep(0.3 * attempt)


def sign_in(page, base, email, password):
    page.goto(f"{base}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
