"""A job page in a real browser shows progress live: queued, then finished, without a reload
(its script is a static file, so the Content-Security-Policy lets it run)."""

from __future__ import annotations

from tests.support.accounts import TEST_PASSWORD, make_user
from tests.support.browser import screenshot, sign_in
from tests.support.reference_data import load_zip_sources
from tests.support.waiting import wait_until
from tests.support.workers import start_worker


def test_job_page_updates_live_when_a_worker_finishes_the_run(live_server, browser, settings, tmp_path,  # noqa: F811
                                                              artifacts_dir):
    app, base = live_server
    with app.app_context():
        load_zip_sources()
    admin = make_user(app, role="admin", email="lead@example.test", name="Lead")
    page = browser.new_context().new_page()
    blocked = []
    page.on("console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None)
    sign_in(page, base, admin.email, TEST_PASSWORD)

    page.goto(f"{base}/transformations/")
    page.click("form[action$='/zip3-reference/run'] button")
    assert "/jobs/" in page.url
    assert page.locator("#job-status").inner_text() == "queued"
    screenshot(page, artifacts_dir / "1-queued.png")

    worker = start_worker(settings, tmp_path, "--burst")
    try:
        assert worker.wait(120) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    # The page was not reloaded: only its polling script can change what it shows.
    wait_until(lambda: page.locator("#job-status").inner_text() == "finished", timeout=20,
               message="the job page to show the finished job")
    screenshot(page, artifacts_dir / "2-finished.png")
    assert blocked == []
