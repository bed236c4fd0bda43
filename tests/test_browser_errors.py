"""Errors the same everywhere (issue 14, section 5), in chromium: a form shows every refused
field's sentence next to its field at once, and a refused import offers its option on the
page (a box already ticked) instead of naming a command-line flag."""

from __future__ import annotations

import pytest

from handled.integrations.options import FORCE_LABEL, PARTIAL_LABEL
from handled.models import Facility
from tests.support.accounts import TEST_PASSWORD, make_user
from tests.support.browser import screenshot, sign_in, submit
from tests.support.import_files import uszip_row, write_uszips

pytestmark = pytest.mark.browser


@pytest.mark.one_mode     # PRIMARY only: the same in both database modes
def test_a_facility_form_shows_every_refused_field_next_to_it_at_once(live_server, browser, artifacts_dir):
    app, base = live_server
    keeper = make_user(app, permissions=["view_customers", "manage_customers"], email="keeper@example.test")
    page = browser.new_context(viewport={"width": 1000, "height": 1100}).new_page()
    sign_in(page, base, keeper.email, TEST_PASSWORD)
    page.goto(f"{base}/customers/facilities/new")
    page.fill("input[name=code]", "east dock!")
    page.fill("input[name=city]", "Newark")
    page.fill("input[name=zip]", "00000")
    page.select_option("select[name=state]", "NJ")                  # a list, not a free text box
    page.select_option("select[name=timezone]", "America/New_York")
    submit(page, "main form button[type=submit]")

    assert page.locator(".flash-error").inner_text() == "Some fields need correcting; see the notes next to them."
    errors = {field: page.locator(f"#{field}-error").inner_text() for field in ("code", "name", "zip")}
    assert errors == {"code": "A code is 1-32 letters, digits, '-' or '_' (stored in capitals), e.g. ACME or WH-EAST.",
                      "name": "Name is required.",
                      "zip": "ZIP 00000 is not a ZIP code; enter the facility's own."}
    for field in errors:       # each sentence sits in its field's label, and the field points at it
        box = page.locator(f"input[name={field}]")
        assert box.get_attribute("aria-invalid") == "true"
        assert box.get_attribute("aria-describedby") == f"{field}-error"
        assert page.locator(f"label:has(input[name={field}]) #{field}-error").count() == 1
    assert page.locator(".field-error").count() == 3
    assert page.locator("input[name=city]").input_value() == "Newark"                     # what was typed stays
    assert page.locator("select[name=state]").input_value() == "NJ"
    assert "9223372036854775807" not in page.content() and "is not a valid" not in page.content()
    screenshot(page, artifacts_dir / "1-every-error-at-once.png", full_page=True)

    page.fill("input[name=code]", "east-dock")
    page.fill("input[name=name]", "East dock")
    page.fill("input[name=zip]", "07101")
    submit(page, "main form button[type=submit]")
    assert page.locator(".field-error").count() == 0
    with app.app_context():
        assert [(f.code, f.state, f.zip) for f in Facility.select()] == [("EAST-DOCK", "NJ", "07101")]


def test_a_refused_import_offers_its_option_on_the_page_not_a_flag(live_app, browser, tmp_path, artifacts_dir):
    app, base = live_app()
    lead = make_user(app, role="warehouse_lead", email="lead@example.test")
    bad = write_uszips(tmp_path / "uszips.csv", [uszip_row("10001"), uszip_row("1000x"), uszip_row("10002")])
    page = browser.new_context(viewport={"width": 1100, "height": 1000}).new_page()
    sign_in(page, base, lead.email, TEST_PASSWORD)
    page.goto(f"{base}/integrations/us-zips")
    page.set_input_files("#upload-form input[name=files]", str(bad))
    submit(page, "#upload-form button[type=submit]")

    said = page.locator("main").inner_text()
    assert "--partial" not in said and "--force" not in said
    assert f'import it again with "{PARTIAL_LABEL}" ticked' in page.locator(".flash-error").inner_text()
    again = page.locator("#import-again")
    assert again.locator("input[name=partial]").is_checked() and not again.locator("input[name=force]").is_checked()
    screenshot(page, artifacts_dir / "1-rejected-offers-the-box.png", full_page=True)
    again.locator("input[name=files]").set_input_files(str(bad))      # the page's own offer, as it stands
    again.locator("button[type=submit]").click()
    page.wait_for_load_state("load")
    assert "succeeded" in page.locator("h1").inner_text()
    assert page.locator(".flash").inner_text().startswith("uszips.csv: succeeded. 2 rows written")

    page.goto(f"{base}/integrations/us-zips")                         # the same file once more: skipped
    page.set_input_files("#upload-form input[name=files]", str(bad))
    page.check("#upload-form input[name=partial]")
    submit(page, "#upload-form button[type=submit]")
    assert "--force" not in page.locator("main").inner_text()
    assert f'"{FORCE_LABEL}" ticked' in page.locator(".flash").first.inner_text()
    assert page.locator("#import-again input[name=force]").is_checked()
    screenshot(page, artifacts_dir / "2-skipped-offers-the-box.png", full_page=True)
