"""Times in chromium: pages that printed a bare "2026-11-29 23:41" or "... UTC" (transformations,
users, audit log, a run page) show the reader's local time, like the job and home pages, with the
UTC form on hover."""

from __future__ import annotations

from datetime import datetime, timezone

from handled import runs
from handled.models import ImportRun, TransformationRun
from tests.support.accounts import TEST_PASSWORD, make_user
from tests.support.browser import sign_in

MOMENT = datetime(2026, 11, 29, 23, 41, 5, tzinfo=timezone.utc)   # 6:41 PM the same day in New York


def test_times_are_local_on_every_page_in_chromium(live_server, browser):
    app, base = live_server
    admin = make_user(app, role="admin", email="admin@example.test")
    with app.app_context():
        build = runs.start_run("transformation", actor_id=admin.id, actor_email=admin.email,
                               transformation="zip3-reference")
        runs.finish_run("transformation", build.id, "succeeded", rows_written=1)
        TransformationRun.update(started_at=MOMENT).where(TransformationRun.id == build.id).execute()
        imp = runs.start_run("import", actor_id=admin.id, actor_email=admin.email, integration="us-zips",
                             file_name="uszips.csv", file_sha256="0" * 64, file_size=10)
        runs.finish_run("import", imp.id, "succeeded", message="Imported.", rows_read=1, rows_written=1)
        ImportRun.update(started_at=MOMENT).where(ImportRun.id == imp.id).execute()
    page = browser.new_context(locale="en-US", timezone_id="America/New_York").new_page()
    sign_in(page, base, admin.email, TEST_PASSWORD)
    for path in ("/transformations/", f"/integrations/runs/{imp.id}", "/admin/users", "/admin/audit"):
        page.goto(f"{base}{path}")
        times = page.locator("main time")
        assert times.count() > 0, path
        for i in range(times.count()):
            shown = times.nth(i)
            assert "UTC" not in shown.inner_text() and shown.get_attribute("title").endswith(" UTC"), path
        if path != "/admin/users" and path != "/admin/audit":
            assert "06:41:05 PM" in page.locator("main").inner_text(), path
