"""Driving Debian's chromium in browser tests (fixtures in tests/fixtures/browser.py).

Never a browser download: Playwright launches /usr/bin/chromium (scripts/test
installs Debian's package when it is missing).
"""

from __future__ import annotations

import contextlib
import threading
import time

from werkzeug.serving import make_server

from tests.support.processes import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@contextlib.contextmanager
def serving(app):
    """Serve ``app`` on a free local port in a thread; yields its base URL (live_server uses it)."""
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


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
    submit(page)


def submit(page, selector: str = "main button[type=submit]") -> None:
    """Click a form's submit button and wait until the page it leads to has loaded: right after
    the click the new URL can show while its document is still empty (content() == "")."""
    page.click(selector)
    page.wait_for_load_state("load")
