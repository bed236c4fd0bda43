"""The home page in a real browser, as an admin after some imports and builds: every section
readable, times in the reader's local form, no database details. Saved as docs/screenshots/home.png."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from handled.context import system_context
from handled.integrations.service import import_file
from handled.models import Facility, ImportRun
from handled.timeutil import utcnow
from handled.transformations import history as builds
from tests.support.accounts import TEST_PASSWORD, make_user
from tests.support.browser import screenshot, sign_in
from tests.support.environment import ROOT
from tests.support.import_files import usps_row, uszip_row, write_usps, write_uszips
from tests.support.reference_data import build_reference_tables

SCREENSHOTS = ROOT / "docs" / "screenshots"


def test_home_dashboard_in_chromium(live_server, browser, settings, tmp_path, artifacts_dir):
    app, base = live_server
    ctx = system_context(replace(settings, import_archive_dir=str(tmp_path / "archive"),
                                 import_upload_dir=str(tmp_path / "uploads")))
    with app.app_context():
        build_reference_tables(settings)              # both tables built: origins 100 and 700 covered
        (tmp_path / "old").mkdir()
        usps = import_file(ctx, "usps-3d-base", write_usps(
            tmp_path / "old" / "3D_Base_Service_Standard_Directory_09012026.csv", [usps_row("005", "006")]))
        ImportRun.update(finished_at=utcnow() - timedelta(days=75), started_at=utcnow() - timedelta(days=75)).where(
            ImportRun.id == usps.run_id).execute()    # a carrier file past its month
        bad = import_file(ctx, "us-zips", write_uszips(tmp_path / "uszips.csv",
                                                       [uszip_row("10001"), uszip_row("1000x")]))
        good = import_file(ctx, "us-zips", write_uszips(tmp_path / "uszips.csv",
                                                        [uszip_row("10001"), uszip_row("10002")]))
        assert (bad.status, good.status) == ("failed", "succeeded")   # zip3-reference is now stale
        build = builds.start_run("delivery-matrix", job_id="4f1c2a9e")
        builds.finish_run(build.id, "failed", message="Cancelled by admin@example.test while it was inserting rows.")
        for code, name, zip5, city, state in (("NYC1", "Manhattan fulfilment", "10001", "New York", "NY"),
                                              ("ANC1", "Anchorage cross-dock", "99501", "Anchorage", "AK"),
                                              ("RNO1", "Reno returns", "89501", "Reno", "NV")):
            Facility.create(code=code, name=name, city=city, state=state, zip=zip5, timezone="America/Los_Angeles")
    admin = make_user(app, role="admin", email="admin@example.test", name="Ada Admin")

    page = browser.new_context(viewport={"width": 1280, "height": 1500}, locale="en-US",
                               timezone_id="America/New_York").new_page()
    sign_in(page, base, admin.email, TEST_PASSWORD)
    page.goto(f"{base}/")
    text = page.locator("main").inner_text()
    for expected in ("Source files", "Reference tables", "Failed runs", "Facilities without coverage",
                     "STALE", "us-zips was imported since the last build", "Anchorage cross-dock", "Reno returns"):
        assert expected in text, expected
    assert "Manhattan fulfilment" not in text
    assert "0001_config_customer_schemas" not in page.content() and settings.primary.dbname not in page.content()
    shown = page.locator("#sources time").first
    assert "UTC" not in shown.inner_text() and "UTC" in shown.get_attribute("title")  # local form, UTC on hover
    assert page.locator(f"#failed a[href='/integrations/runs/{bad.run_id}']").count() == 1
    assert page.locator("#failed a[href='/jobs/4f1c2a9e']").count() == 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": page.evaluate("document.body.scrollHeight") + 10})
    screenshot(page, SCREENSHOTS / "home.png")
    screenshot(page, artifacts_dir / "home.png")

    page.click("#coverage a:has-text('Anchorage cross-dock')")
    assert "/coverage/" in page.url and "facility=" in page.url
