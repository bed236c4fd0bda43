"""A job page in a real browser shows progress live: queued, then finished (or failed, with each
file's outcome and run), without a reload (its script is a static file, so the
Content-Security-Policy lets it run). The failed import's page is docs/screenshots/job.png.
A queued rebuild disables its Run button, a second request for it links to the job, and the
user who queued it (not another lead) cancels it from its page."""

from __future__ import annotations

import pytest

from tests.support.accounts import TEST_PASSWORD, make_user
from tests.support.browser import screenshot, sign_in, submit
from tests.support.environment import ROOT
from tests.support.import_files import uszip_row, write_uszips
from tests.support.reference_data import load_zip_sources
from tests.support.waiting import wait_until
from tests.support.workers import start_worker

SCREENSHOTS = ROOT / "docs" / "screenshots"


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


def test_an_upload_with_bad_lines_ends_failed_on_its_job_page(live_app, browser, settings, tmp_path,
                                                              artifacts_dir):
    app, base = live_app(import_background_bytes=0)     # every upload goes to the job queue
    lead = make_user(app, role="warehouse_lead", email="lead@example.test", name="Lead")
    rows = [uszip_row(f"{n:05d}") for n in range(1, 2001)] + [uszip_row(f"9{n}") for n in range(5)]
    path = write_uszips(tmp_path / "uszips.csv", rows)
    page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
    sign_in(page, base, lead.email, TEST_PASSWORD)
    page.goto(f"{base}/integrations/us-zips")
    page.set_input_files("input[name=files]", str(path))
    page.click("main form button[type=submit]")
    assert "/jobs/" in page.url
    assert page.locator("#job-status").inner_text() == "queued"
    assert page.locator("#job-waiting").is_visible()

    worker = start_worker(settings, tmp_path, "--burst")
    try:
        assert worker.wait(120) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    wait_until(lambda: page.locator("#job-status").inner_text() == "failed", timeout=20,
               message="the job page to show the failed job")
    assert page.locator("#job-waiting").count() == 0
    assert "uszips.csv was rejected: 5 of 2,005 rows were bad" in page.locator("#job-message").inner_text()
    row = page.locator("#job-files-rows tr").first
    assert "rejected" in row.inner_text() and "2,005" in row.inner_text()
    assert row.locator("a").get_attribute("href").startswith("/integrations/runs/")
    assert page.locator("#job-percent").inner_text() == "100%"
    assert page.locator("#job-cancel").is_hidden()
    started = page.locator("#job-started time")
    assert "T" not in started.inner_text() and started.get_attribute("datetime").endswith("Z")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screenshot(page, SCREENSHOTS / "job.png")
    screenshot(page, artifacts_dir / "job-failed.png")
    row.locator("a").click()
    assert "/integrations/runs/" in page.url and "rejected" in page.content()
    page.goto(f"{base}/jobs/")
    listed = page.locator("table.jobs tbody tr").first.inner_text()
    assert "uszips.csv" in listed and "failed" in listed and "lead@example.test" in listed
    screenshot(page, artifacts_dir / "job-list.png")


@pytest.mark.one_mode     # nothing runs: the queue and the page, the same in both database modes
def test_a_queued_rebuild_disables_its_run_button_and_a_second_request_links_to_its_job(live_server, browser,
                                                                                      artifacts_dir):
    app, base = live_server
    lead = make_user(app, role="warehouse_lead", email="lead@example.test", name="Lead")
    tabs = browser.new_context(viewport={"width": 1200, "height": 800})
    first, second = tabs.new_page(), tabs.new_page()       # one browser, two tabs (one session)
    sign_in(first, base, lead.email, TEST_PASSWORD)
    run_button = "form[action$='/zip3-reference/run'] button"
    second.goto(f"{base}/transformations/")                # opened before the first click: still enabled
    first.goto(f"{base}/transformations/")
    submit(first, run_button)                                # no worker runs: the job stays queued
    assert "/jobs/" in first.url
    job_path = first.url[len(base):]

    first.goto(f"{base}/transformations/")
    assert first.locator(run_button).is_disabled()
    row = first.locator("tr", has=first.locator(run_button))
    assert "queued" in row.inner_text() and row.locator(f"a[href='{job_path}']").count() == 1
    screenshot(first, artifacts_dir / "1-run-disabled.png")

    assert second.locator(run_button).is_enabled()
    submit(second, run_button)                               # the double click, from a stale page
    refusal = second.locator(".flash-error")
    assert "zip3-reference" in refusal.inner_text() and refusal.get_attribute("role") == "alert"
    assert refusal.locator(f"a[href='{job_path}']").inner_text() == "See that job"
    screenshot(second, artifacts_dir / "2-second-request-refused.png")
    second.goto(f"{base}/jobs/")
    assert second.locator("table.jobs tbody tr").count() == 1     # one rebuild queued, not two

    other = browser.new_context().new_page()                      # someone else may see it, not cancel it
    sign_in(other, base, make_user(app, role="warehouse_lead", email="other@example.test").email, TEST_PASSWORD)
    other.goto(f"{base}{job_path}")
    assert other.locator("#job-cancel").count() == 0
    first.goto(f"{base}{job_path}")                               # who queued it cancels it
    submit(first, "#job-cancel button")
    assert first.locator("#job-status").inner_text() == "cancelled"
    assert "Cancelled by lead@example.test before it started" in first.locator("#job-message").inner_text()
    first.goto(f"{base}/transformations/")
    assert first.locator(run_button).is_enabled()                 # free to run again
