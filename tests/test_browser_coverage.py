"""The coverage page in a real browser at full scale (918 destinations x 14 services): the header
row and the ZIP3 column stay visible while the table scrolls (sticky), and a screenshot of the
page goes to docs/screenshots/coverage.png for the README. On a small table, the page's own
controls filter by state and service, sort by a header, and download what is shown as CSV."""

from __future__ import annotations

import csv
import json

import pytest

from handled.models import Facility
from tests.support.accounts import TEST_PASSWORD, make_user
from tests.support.browser import screenshot, sign_in, submit
from tests.support.environment import ROOT
from tests.support.reference_data import write_reference

pytestmark = [pytest.mark.browser, pytest.mark.one_mode]   # the page renders the same in both database modes

# (city, state, lat, lng) in rough ZIP3 order, east to west: 918 ZIP3s are spread over them with
# a jitter, so the map draws something like the country; Anchorage falls outside the lower 48.
CITIES = [("New York", "NY", 40.7, -74.0), ("Albany", "NY", 42.7, -73.8), ("Boston", "MA", 42.4, -71.1),
          ("Providence", "RI", 41.8, -71.4), ("Hartford", "CT", 41.8, -72.7), ("Newark", "NJ", 40.7, -74.2),
          ("Philadelphia", "PA", 40.0, -75.2), ("Pittsburgh", "PA", 40.4, -80.0), ("Baltimore", "MD", 39.3, -76.6),
          ("Richmond", "VA", 37.5, -77.4), ("Charlotte", "NC", 35.2, -80.8), ("Atlanta", "GA", 33.7, -84.4),
          ("Orlando", "FL", 28.5, -81.4), ("Miami", "FL", 25.8, -80.2), ("Nashville", "TN", 36.2, -86.8),
          ("Columbus", "OH", 40.0, -83.0), ("Detroit", "MI", 42.3, -83.0), ("Chicago", "IL", 41.9, -87.6),
          ("Milwaukee", "WI", 43.0, -87.9), ("Minneapolis", "MN", 45.0, -93.3), ("Des Moines", "IA", 41.6, -93.6),
          ("St. Louis", "MO", 38.6, -90.2), ("Omaha", "NE", 41.3, -96.0), ("Dallas", "TX", 32.8, -96.8),
          ("Houston", "TX", 29.8, -95.4), ("Denver", "CO", 39.7, -105.0), ("Phoenix", "AZ", 33.4, -112.1),
          ("Salt Lake City", "UT", 40.8, -111.9), ("Las Vegas", "NV", 36.2, -115.1),
          ("Los Angeles", "CA", 34.1, -118.2), ("San Francisco", "CA", 37.8, -122.4), ("Portland", "OR", 45.5, -122.7),
          ("Seattle", "WA", 47.6, -122.3), ("Boise", "ID", 43.6, -116.2), ("Billings", "MT", 45.8, -108.5),
          ("Anchorage", "AK", 61.2, -149.9)]

# 918 destination ZIP3s, each with a city, state and centre; days from origin 100 (New York) grow
# with the distance, express services are faster, and a few services are missing here and there.
FILL = """
INSERT INTO reference.zip3_reference (zip3, primary_city, primary_state, total_population, pop_lat, pop_lng)
  SELECT lpad((5 + s)::text, 3, '0'), c.city || CASE WHEN s %% 7 = 0 THEN '' ELSE ' ' || (s %% 7) END, c.state,
         ((s * 7919) %% 900000) + 1000, c.lat + 2.4 * (((s * 37) %% 100) / 100.0 - 0.5),
         c.lng + 3.2 * (((s * 61) %% 100) / 100.0 - 0.5)
  FROM generate_series(0, 917) s,
       LATERAL (SELECT * FROM jsonb_to_record(%(cities)s::jsonb -> (s * 36 / 918))
                AS c(city text, state text, lat float, lng float)) c;
INSERT INTO reference.delivery_matrix
  SELECT '100', z.zip3, v.carrier_code, v.code, d.days, NULL,
         CASE WHEN d.days <= 1 THEN 100 WHEN d.days = 2 THEN 95 WHEN d.days = 3 THEN 60
              WHEN d.days = 4 THEN 20 ELSE 0 END, 'test'
  FROM reference.zip3_reference z
  CROSS JOIN reference.services v
  CROSS JOIN LATERAL (SELECT greatest(1, 1 + (sqrt((z.pop_lat - 40.7) ^ 2 + ((z.pop_lng + 74) * 0.76) ^ 2) / 7)::int
                      - CASE WHEN v.code IN ('NDA', 'NDS', '2AM') THEN 3 WHEN v.code IN ('2DA', 'PRI') THEN 2
                             WHEN v.code IN ('3DS', 'FCM') THEN 1 ELSE 0 END
                      + (z.zip3::int %% 5 = 0 AND v.carrier_code = 'USPS')::int) AS days) d
  WHERE (z.zip3::int * 7 + ascii(v.code) + ascii(right(v.code, 1))) %% 53 <> 0;
"""


def test_coverage_header_stays_visible_while_the_table_scrolls(live_server, browser, artifacts_dir):
    app, base = live_server
    with app.app_context():
        write_reference(FILL, {"cities": json.dumps([dict(zip(("city", "state", "lat", "lng"), c))
                                                     for c in CITIES])})
        Facility.create(code="EWR1", name="Newark", zip="10001", timezone="America/New_York")
        Facility.create(code="RNO1", name="Reno", zip="89501", timezone="America/Los_Angeles", active=False)
    viewer = make_user(app, permissions=["view_customers"], email="lead@example.test", name="Lead")
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    sign_in(page, base, viewer.email, TEST_PASSWORD)

    page.goto(f"{base}/coverage/")             # nothing pressed: the first active facility is shown
    assert page.locator("h2").inner_text() == "From Newark, origin ZIP3 100"
    assert page.locator("table.coverage tbody tr").count() == 918
    # the map draws every ZIP3 of the lower 48 (Anchorage's 25 are counted, not drawn)
    assert page.locator("svg.coverage-map circle").count() == 918 - 25
    assert "25 ZIP3s outside the lower 48" in page.locator("figure figcaption").nth(1).inner_text()
    scroller = page.locator(".coverage-scroll")
    header = page.locator("table.coverage thead th").nth(12)   # a service column, right of the sticky ZIP3
    first_row = page.locator("table.coverage tbody th").first
    scroller.evaluate("box => box.scrollIntoView()")    # the page scrolls to the table, then the table scrolls
    before = header.bounding_box()
    scroller.evaluate("box => { box.scrollTop = 6000; box.scrollLeft = 400; }")
    assert scroller.evaluate("box => box.scrollTop") > 5000
    box = scroller.bounding_box()
    after = header.bounding_box()
    # the header row sits at the top of the scrolled box, still on screen, not scrolled away
    assert abs(after["y"] - box["y"]) <= 2 and abs(after["y"] - before["y"]) <= 2
    assert header.evaluate("th => { const r = th.getBoundingClientRect();"
                           " return document.elementFromPoint(r.left + 3, r.top + 3).closest('th') === th; }")
    # the first row scrolled out of view, while the ZIP3 column stayed at the left edge
    assert first_row.bounding_box()["y"] < box["y"]
    # what shows at the left edge, half way down the box, is a ZIP3 (row header) cell, not a day
    edge = page.evaluate("([x, y]) => { const el = document.elementFromPoint(x, y);"
                         " return el && el.closest('tbody th') ? el.closest('tbody th').textContent : null; }",
                         [box["x"] + 4, box["y"] + box["height"] / 2])
    assert edge is not None and len(edge) == 3 and edge.isdigit() and int(edge) > 100

    scroller.evaluate("box => { box.scrollTop = 0; box.scrollLeft = 0; }")
    page.evaluate("window.scrollTo(0, 0)")
    folder = ROOT / "docs" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    screenshot(page, folder / "coverage.png", full_page=True)

    # Reno's rows (its days from Reno instead of New York), then the two compared
    with app.app_context():
        write_reference(FILL.split("INSERT INTO reference.delivery_matrix", 1)[1]
                        .replace("'100'", "'895'").replace("40.7", "39.5").replace("+ 74", "+ 119.8")
                        .join(["INSERT INTO reference.delivery_matrix", ""]), {})
    page.select_option("select[name=other]", label="RNO1 · Reno (89501) · inactive")
    submit(page, "form.coverage-filters button[type=submit]")
    page.wait_for_load_state("load")       # the whole table parsed, not only its top
    assert page.locator("h2").inner_text() == "Best of EWR1 (origin 100) and RNO1 (origin 895)"
    assert page.locator("table.coverage tbody tr").count() == 918
    assert page.locator("table.coverage tbody sup", has_text="B").count() > 100
    screenshot(page, artifacts_dir / "compare.png", full_page=True)


def test_filter_sort_and_csv_through_the_page_controls(live_server, browser, artifacts_dir):
    app, base = live_server
    with app.app_context():
        write_reference("INSERT INTO reference.zip3_reference (zip3, primary_city, primary_state, total_population) "
                        "VALUES ('200', 'Albany', 'NY', 1000), ('300', 'Boston', 'MA', 3000), "
                        "('400', 'Buffalo', 'NY', 500), ('500', 'Camden', 'NJ', 6000)")
        write_reference("INSERT INTO reference.delivery_matrix VALUES "
                        "('100', '200', 'UPS', 'GND', 2, NULL, 95, 't'), ('100', '300', 'UPS', 'GND', 5, NULL, 0, 't'), "
                        "('100', '400', 'UPS', 'GND', 1, NULL, 100, 't'), ('100', '200', 'USPS', 'PRI', 1, NULL, 100, 't'), "
                        "('100', '500', 'USPS', 'PRI', 4, NULL, 20, 't')")
        Facility.create(code="EWR1", name="Newark", zip="10001", timezone="America/New_York")
    lead = make_user(app, role="warehouse_lead", email="lead@example.test", name="Lead")
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, base, lead.email, TEST_PASSWORD)

    def zip3s():
        return page.locator("table.coverage tbody th").all_inner_texts()

    page.goto(f"{base}/coverage/")
    assert zip3s() == ["200", "300", "400", "500"]
    assert page.locator("table.coverage tbody tr").first.locator("td").all_inner_texts()[:3] == ["Albany", "NY", "1,000"]
    page.select_option("select[name=state]", "NY")
    page.check("input[name=service][value=UPS-GND]")
    submit(page, "form.coverage-filters button[type=submit]")
    assert zip3s() == ["200", "400"]
    headers = [" ".join(h.split()).rstrip(" ▲▼") for h in page.locator("table.coverage thead th").all_inner_texts()]
    assert headers == ["ZIP3", "City", "State", "Population", "UPS GND"]
    submit(page, "table.coverage thead th a:has-text('GND')")            # sort by that service, fewest days first
    assert zip3s() == ["400", "200"]
    assert page.locator("table.coverage thead th").nth(4).get_attribute("aria-sort") == "ascending"
    submit(page, "table.coverage thead th a:has-text('GND')")            # the same header again: the other way
    assert zip3s() == ["200", "400"]
    assert page.locator("select[name=state]").input_value() == "NY"    # the filters outlive the sort
    assert page.locator("svg").count() >= 1 and "UPS GND" in page.locator("figure").first.inner_text()
    screenshot(page, artifacts_dir / "filtered-sorted.png", full_page=True)
    with page.expect_download() as download:
        page.click("a:text-is('Download CSV')")
    with open(download.value.path(), newline="") as shown:
        assert list(csv.reader(shown)) == [["zip3", "city", "state", "population", "UPS GND days"],
                                           ["200", "Albany", "NY", "1000", "2"], ["400", "Buffalo", "NY", "500", "1"]]
