"""Lists and details (issue 14, section 6), in chromium: users filtered by role and state and
facilities by organization and state through the pages' own forms; the audit log's action filter
is exact and its details are fields; the exports page says what the files really hold; an
import accepts a browser-renamed download and lists the files of a .zip it does not read."""

from __future__ import annotations

import json
import re
import zipfile

import pytest

from handled.context import system_context
from handled.db import data_db
from handled.models import Facility, FacilityOrganization, Organization
from handled.auth import users
from tests.support.accounts import TEST_PASSWORD, csrf_token, make_user
from tests.support.browser import screenshot, sign_in, submit
from tests.support.import_files import uszip_row, write_uszips, write_zone_chart, zone_row
from tests.support.reference_data import build_reference_tables

pytestmark = pytest.mark.browser


def emails_listed(page) -> list[str]:
    return page.locator("main tbody td:first-child a").all_inner_texts()


@pytest.mark.one_mode     # PRIMARY only: the same in both database modes
def test_users_and_facilities_filter_through_their_forms(live_server, browser, artifacts_dir):
    app, base = live_server
    admin = make_user(app, role="admin", email="boss@warehouse.test", name="Boss")
    make_user(app, role="warehouse_lead", email="lead.active@warehouse.test", name="Active Lead")
    gone = make_user(app, role="warehouse_lead", email="lead.gone@warehouse.test", name="Gone Lead")
    make_user(app, role="salesperson", email="sales_1@warehouse.test", name="Seller 100% sure")
    make_user(app, role="salesperson", email="salesx1@warehouse.test", name="Seller X")
    with app.app_context():
        users.set_disabled(system_context(app.config["HANDLED_SETTINGS"]), gone.id, True)
        acme, globex = Organization.create(code="ACME", name="Acme"), Organization.create(code="GLOBEX", name="Globex")
        for code, state, zip_code, served in (("NJ-1", "NJ", "07001", [acme]), ("TX-1", "TX", "75001", [acme, globex]),
                                              ("TX-2", "TX", "75002", [globex])):
            facility = Facility.create(code=code, name=code, state=state, zip=zip_code, timezone="America/Chicago")
            for organization in served:
                FacilityOrganization.create(facility=facility, organization=organization)
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    sign_in(page, base, admin.email, TEST_PASSWORD)

    page.goto(f"{base}/admin/users")
    page.select_option("select[name=role]", "warehouse_lead")
    submit(page, "form.filters button[type=submit]")
    assert emails_listed(page) == ["lead.active@warehouse.test", "lead.gone@warehouse.test"]
    page.select_option("select[name=state]", "disabled")      # the role chosen stays chosen
    submit(page, "form.filters button[type=submit]")
    assert emails_listed(page) == ["lead.gone@warehouse.test"]
    assert page.locator("main tbody tr").inner_text().split("\t")[3] == "disabled"
    screenshot(page, artifacts_dir / "1-users-role-and-state.png")
    assert page.locator("select[name=state] option").all_inner_texts() == ["any", "active", "disabled", "locked"]
    page.goto(f"{base}/admin/users")
    page.fill("input[name=q]", "_1")                          # a literal underscore, not "any character"
    submit(page, "form.filters button[type=submit]")
    assert emails_listed(page) == ["sales_1@warehouse.test"]
    page.fill("input[name=q]", "100%")
    submit(page, "form.filters button[type=submit]")
    assert emails_listed(page) == ["sales_1@warehouse.test"]
    page.goto(f"{base}/admin/users?page=99")                 # past the end: the last page
    assert "boss@warehouse.test" in emails_listed(page)

    page.goto(f"{base}/customers/facilities")
    page.select_option("select[name=organization]", label="GLOBEX Globex")
    page.select_option("select[name=state]", "TX")
    submit(page, "form.filters button[type=submit]")
    assert page.locator("main tbody td:first-child code").all_inner_texts() == ["TX-1", "TX-2"]
    page.select_option("select[name=organization]", label="ACME Acme")
    submit(page, "form.filters button[type=submit]")
    assert page.locator("main tbody td:first-child code").all_inner_texts() == ["TX-1"]
    screenshot(page, artifacts_dir / "2-facilities-organization-and-state.png")


@pytest.mark.one_mode
def test_audit_log_filters_one_exact_action_and_shows_details_as_fields(live_server, browser, artifacts_dir):
    app, base = live_server
    admin = make_user(app, role="admin", email="boss@example.test", name="Boss")
    clerk = make_user(app, role="salesperson", email="clerk@example.test", name="Clerk")
    guesser = app.test_client()
    for _ in range(2):
        guesser.post("/login", data={"email": clerk.email, "password": "a guess", "csrf_token": csrf_token(guesser)})
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    sign_in(page, base, admin.email, TEST_PASSWORD)
    page.goto(f"{base}/admin/users/{clerk.id}")
    page.click("#disable-user")

    page.goto(f"{base}/admin/audit")
    page.select_option("select[name=action]", "auth.sign_in")
    submit(page, "form.filters button[type=submit]")
    assert page.locator("main tbody td:nth-child(3)").all_inner_texts() == ["auth.sign_in"]     # not ..._failed
    page.select_option("select[name=action]", "auth.sign_in_failed")
    submit(page, "form.filters button[type=submit]")
    rows = page.locator("main tbody tr")
    assert rows.count() == 2
    assert rows.first.locator("dl.details dt").all_inner_texts() == ["reason"]
    assert rows.first.locator("dl.details dd").all_inner_texts() == ["wrong password"]
    target = rows.first.locator("td:nth-child(4) a")
    assert target.inner_text() == "clerk@example.test" and target.get_attribute("href") == f"/admin/users/{clerk.id}"
    page.select_option("select[name=action]", "auth.*")              # a whole family, when asked for
    submit(page, "form.filters button[type=submit]")
    assert sorted(set(page.locator("main tbody td:nth-child(3)").all_inner_texts())) == [
        "auth.sign_in", "auth.sign_in_failed"]
    page.select_option("select[name=action]", "user.disable")
    submit(page, "form.filters button[type=submit]")
    assert page.locator("main tbody tr").inner_text().split("\t")[1] == "boss@example.test"
    assert "{" not in page.locator("main tbody").inner_text()            # no raw JSON anywhere
    screenshot(page, artifacts_dir / "audit.png")


def test_the_exports_page_says_what_the_files_really_hold(live_server, browser, settings, artifacts_dir):
    app, base = live_server
    with app.app_context():
        build_reference_tables(settings)
        matrix_rows = data_db.execute_sql("SELECT count(*) FROM reference.delivery_matrix").fetchone()[0]
        zip3_rows = data_db.execute_sql("SELECT count(*) FROM reference.zip3_reference").fetchone()[0]
    lead = make_user(app, role="warehouse_lead", email="lead@example.test")
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, base, lead.email, TEST_PASSWORD)

    def contents(name):
        row = page.locator("main tbody tr", has=page.locator(f"a:text-is('{name}')"))
        return row.locator("td:nth-child(4)").inner_text(), row.locator("td:nth-child(5)").inner_text()

    page.goto(f"{base}/exports/")
    assert "about" not in page.locator("main table").inner_text()
    assert contents("delivery_matrix.csv")[0] == f"{matrix_rows:,} rows"
    assert contents("zip3_reference.csv")[0] == f"{zip3_rows:,} rows"
    assert contents("services.csv")[0] == "14 rows"
    assert contents("zone-matrix.json")[0] == "not written since the last build"
    with page.expect_download() as download:
        page.click("a:text-is('zone-matrix.json')")
    body = open(download.value.path(), "rb").read()
    matrix = json.loads(body)
    page.reload()
    cells = len(matrix["origins"]) * len(matrix["destinations"])
    assert contents("zone-matrix.json") == (f"{cells:,} cells", f"{len(body):,} bytes")
    screenshot(page, artifacts_dir / "exports.png")


def test_imports_take_a_renamed_download_and_list_zip_extras_as_ignored(live_app, browser, tmp_path,
                                                                        artifacts_dir):
    app, base = live_app()
    lead = make_user(app, role="warehouse_lead", email="lead@example.test")
    page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
    sign_in(page, base, lead.email, TEST_PASSWORD)

    renamed = write_uszips(tmp_path / "uszips (1).csv", [uszip_row("10001"), uszip_row("10002")])
    page.goto(f"{base}/integrations/us-zips")
    page.set_input_files("#upload-form input[name=files]", str(renamed))
    submit(page, "#upload-form button[type=submit]")
    assert "succeeded" in page.locator("h1").inner_text()
    assert "judged as uszips.csv" in page.locator("main > p").first.inner_text()
    screenshot(page, artifacts_dir / "1-renamed-download.png")

    chart = write_zone_chart(tmp_path / "007.xlsx", [zone_row("004"), zone_row("005")])
    bundle = tmp_path / "charts.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(chart, "zones/007.xlsx")
        archive.writestr("zones/license.txt", "Data (c) UPS\n")
    page.goto(f"{base}/integrations/ups-zones")
    page.set_input_files("#upload-form input[name=files]", str(bundle))
    submit(page, "#upload-form button[type=submit]")
    assert "succeeded" in page.locator("h1").inner_text()             # one run: the chart's
    said = page.locator(".flash").all_inner_texts()
    assert said[0].startswith("007.xlsx: succeeded. 2 rows written")
    assert said[1] == ("zones/license.txt: ignored. Ignored: no integration reads zones/license.txt "
                       "(in charts.zip); nothing was done with it.")
    assert page.locator(".flash-error").count() == 0
    screenshot(page, artifacts_dir / "2-zip-with-license.png")
    page.goto(f"{base}/integrations/")
    runs = page.locator("main table").nth(1).locator("tbody tr").all_inner_texts()
    assert len(runs) == 2 and not any("license.txt" in run or "failed" in run for run in runs)
    assert re.search(r"007\.xlsx\s+succeeded", runs[0]) and re.search(r"uszips \(1\)\.csv\s+succeeded", runs[1])
