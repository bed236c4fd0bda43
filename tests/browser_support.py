"""A live server and Debian's chromium driven by Playwright, for browser tests.

Never a browser download: Playwright launches /usr/bin/chromium (scripts/test
installs Debian's package when it is missing).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
from werkzeug.serving import make_server

from handled import create_app
from tests.servers import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]

@pytest.fixture
def live_server(settings):
    app = create_app(replace(settings, session_cookie_secure=False))
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def screenshot(page, path, attempts: int = 3) -> None:
    """Save what the page shows (evidence for a reader of the test run). Headless chromium
    now and then answers "Unable to capture screenshot" while it repaints, so try again
    a moment later; the last failure is raised."""
    from playwright.sync_api import Error

    for attempt in range(1, attempts + 1):
        try:
            page.screenshot(path=str(path))
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
