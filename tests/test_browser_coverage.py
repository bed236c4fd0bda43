"""The coverage page in a real browser at full scale (918 destinations x 14 services): the header
row and the ZIP3 column stay visible while the table scrolls (sticky), and a screenshot of the
page goes to docs/screenshots/coverage.png for the README."""

from __future__ import annotations

from handled.db import data_db
from handled.models import Facility
from tests.support.accounts import TEST_PASSWORD, make_user
from tests.support.browser import screenshot, sign_in
from tests.support.environment import ROOT

CITIES = ["New York NY", "Albany NY", "Boston MA", "Providence RI", "Hartford CT", "Newark NJ", "Trenton NJ",
          "Philadelphia PA", "Pittsburgh PA", "Baltimore MD", "Richmond VA", "Charlotte NC", "Atlanta GA",
          "Miami FL", "Orlando FL", "Nashville TN", "Columbus OH", "Detroit MI", "Chicago IL", "Milwaukee WI",
          "Minneapolis MN", "Des Moines IA", "St. Louis MO", "Omaha NE", "Dallas TX", "Houston TX", "Denver CO",
          "Phoenix AZ", "Salt Lake City UT", "Las Vegas NV", "Los Angeles CA", "San Francisco CA",
          "Portland OR", "Seattle WA", "Boise ID", "Anchorage AK"]

# 918 destination ZIP3s, each with a city and state; days from origin 100 grow with the distance
# between ZIP3 prefixes (a rough stand-in for geography), express services faster, a few gaps.
FILL = """
INSERT INTO reference.zip3_reference (zip3, primary_city, primary_state, total_population)
  SELECT lpad((5 + s)::text, 3, '0'), left(c, -3) || CASE WHEN s %% 7 = 0 THEN '' ELSE ' ' || (s %% 7) END,
         right(c, 2), ((s * 7919) %% 900000) + 1000
  FROM generate_series(0, 917) s,
       LATERAL (SELECT (%(cities)s::text[])[1 + (s * 36 / 918)] AS c) city;
INSERT INTO reference.delivery_matrix
  SELECT '100', z.zip3, v.carrier_code, v.code, d.days, NULL,
         CASE WHEN d.days <= 1 THEN 100 WHEN d.days = 2 THEN 95 WHEN d.days = 3 THEN 60
              WHEN d.days = 4 THEN 20 ELSE 0 END, 'test'
  FROM reference.zip3_reference z
  CROSS JOIN reference.services v
  CROSS JOIN LATERAL (SELECT greatest(1, 1 + abs(z.zip3::int - 60) / 130
                      - CASE WHEN v.code IN ('NDA', 'NDS', '2AM') THEN 3 WHEN v.code IN ('2DA', 'PRI') THEN 2
                             WHEN v.code IN ('3DS', 'FCM') THEN 1 ELSE 0 END
                      + (z.zip3::int %% 3 = 0)::int + (z.zip3::int %% 5 = 0 AND v.carrier_code = 'USPS')::int) AS days) d
  WHERE (z.zip3::int * 7 + ascii(v.code) + ascii(right(v.code, 1))) %% 53 <> 0;
"""


def test_coverage_header_stays_visible_while_the_table_scrolls(live_server, browser):
    app, base = live_server
    with app.app_context():
        data_db.execute_sql(FILL, {"cities": CITIES})
        Facility.create(code="EWR1", name="Newark", zip="10001", timezone="America/New_York")
        Facility.create(code="RNO1", name="Reno", zip="89501", timezone="America/Los_Angeles", active=False)
    viewer = make_user(app, permissions=["view_customers"], email="lead@example.test", name="Lead")
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    sign_in(page, base, viewer.email, TEST_PASSWORD)

    page.goto(f"{base}/coverage/")             # nothing pressed: the first active facility is shown
    assert page.locator("h2").inner_text() == "From Newark, origin ZIP3 100"
    assert page.locator("table.coverage tbody tr").count() == 918
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
