"""The coverage page at full scale (both modes): city and state, filters, stable sort, the summary,
the CSV (formulas neutralised), two facilities compared, inactive facilities, 404 and 403."""

from __future__ import annotations

import csv
import io
import re

import pytest

from handled.models import Facility
from handled.transformations.coverage import csv_safe
from tests.support.reference_data import write_reference

# zip3 -> (city, state, population); 400's city is a formula, 600 has nobody
DESTINATIONS = {
    "200": ("Albany", "NY", 1000),
    "300": ("Boston", "MA", 3000),
    "400": ("=HYPERLINK(\"x\")", "NY", None),
    "500": ("Camden", "NJ", 6000),
    "600": ("Dover", "DE", 0),
}
# (origin, dest, carrier, service) -> days
MATRIX = {
    ("100", "200", "UPS", "GND"): 2, ("100", "200", "USPS", "PRI"): 1,
    ("100", "300", "UPS", "GND"): 5, ("100", "300", "USPS", "PRI"): 3,
    ("100", "400", "UPS", "GND"): 1,
    ("100", "500", "USPS", "PRI"): 4,
    ("100", "600", "UPS", "GND"): 2,
    ("700", "200", "UPS", "GND"): 2,        # a tie with 100
    ("700", "300", "UPS", "GND"): 3,        # better than 100's 5
    ("700", "500", "UPS", "GND"): 1,        # only 700 serves it
}


def score(days: int) -> int:
    return 100 if days <= 1 else {2: 95, 3: 60, 4: 20}.get(days, 0)


@pytest.fixture
def facilities(app):
    for zip3, (city, state, population) in DESTINATIONS.items():
        write_reference("INSERT INTO reference.zip3_reference (zip3, primary_city, primary_state, total_population)"
                            " VALUES (%s, %s, %s, %s)", (zip3, city, state, population))
    for (origin, dest, carrier, service), days in MATRIX.items():
        write_reference("INSERT INTO reference.delivery_matrix VALUES (%s, %s, %s, %s, %s, NULL, %s, 'test')",
                            (origin, dest, carrier, service, days, score(days)))
    newark = Facility.create(code="EWR1", name="Newark", zip="10001", timezone="America/New_York")
    reno = Facility.create(code="AAA-RNO", name="Reno", zip="70012", timezone="America/Los_Angeles", active=False)
    return newark, reno


def rows_in(page: str) -> list[str]:
    return re.findall(r'<th scope="row">(\d{3})</th>', page)


def summary_cell(page: str, key: str, kind: str, bucket: str) -> str:
    return re.search(rf'data-summary="{re.escape(key)} {kind} {re.escape(bucket)}">([^<]*)<', page).group(1)


def test_rows_show_city_and_state_and_the_first_active_facility_without_pressing_show(facilities, login_client):
    newark, _ = facilities
    viewer = login_client(permissions=["view_customers"])
    page = viewer.get("/coverage/").get_data(as_text=True)       # no facility named: the first active one
    assert "From Newark, origin ZIP3 100" in page
    assert rows_in(page) == ["200", "300", "400", "500", "600"]
    assert '<th scope="row">200</th><td>Albany</td><td>NY</td><td class="num">1,000</td>' in page
    assert "&#34;" in page or "&quot;" in page                      # the formula city is escaped, not markup


def test_the_page_remembers_the_users_last_facility(facilities, login_client):
    _, reno = facilities
    viewer = login_client(permissions=["view_customers"])
    assert "From Reno" in viewer.get(f"/coverage/?facility={reno.id}").get_data(as_text=True)
    assert "From Reno" in viewer.get("/coverage/").get_data(as_text=True)
    other = login_client(permissions=["view_customers"])           # someone else starts at the first
    assert "From Newark" in other.get("/coverage/").get_data(as_text=True)


def test_filter_by_state_and_by_service(facilities, login_client):
    newark, _ = facilities
    viewer = login_client(permissions=["view_customers"])
    page = viewer.get(f"/coverage/?facility={newark.id}&state=NY").get_data(as_text=True)
    assert rows_in(page) == ["200", "400"]
    page = viewer.get(f"/coverage/?facility={newark.id}&state=NY&state=nj").get_data(as_text=True)
    assert rows_in(page) == ["200", "400", "500"]
    page = viewer.get(f"/coverage/?facility={newark.id}&service=UPS-GND").get_data(as_text=True)
    headers = re.findall(r'<th scope="col"[^>]*><a [^>]*>(.*?)</a>', page)
    assert [re.sub("<[^>]+>", " ", h).strip(" ▲▼") for h in headers] == ["ZIP3", "City", "State", "Population",
                                                                          "UPS GND"]
    assert ('<th scope="row">500</th><td>Camden</td><td>NJ</td><td class="num">6,000</td>'
            '<td class="n">–</td></tr>') in page
    response = viewer.get(f"/coverage/?facility={newark.id}&service=UPS-XYZ")
    assert response.status_code == 400 and "There is no service &#39;UPS-XYZ&#39;" in response.get_data(as_text=True)


def test_sort_by_any_column_is_stable_and_puts_missing_values_last(facilities, login_client):
    newark, _ = facilities
    viewer = login_client(permissions=["view_customers"])
    url = f"/coverage/?facility={newark.id}"
    # UPS GND days: 200->2, 300->5, 400->1, 500 none, 600->2 (200 and 600 tie: ZIP3 order kept, both ways)
    assert rows_in(viewer.get(url + "&sort=UPS-GND").get_data(as_text=True)) == ["400", "200", "600", "300", "500"]
    assert rows_in(viewer.get(url + "&sort=UPS-GND&order=desc").get_data(as_text=True)) == \
        ["300", "200", "600", "400", "500"]
    assert rows_in(viewer.get(url + "&sort=city").get_data(as_text=True)) == ["400", "200", "300", "500", "600"]
    assert rows_in(viewer.get(url + "&sort=population&order=desc").get_data(as_text=True)) == \
        ["500", "300", "200", "600", "400"]
    page = viewer.get(url + "&sort=UPS-GND").get_data(as_text=True)
    # each header links to its sort; the sorted one links to the other order
    assert f'href="/coverage/?facility={newark.id}&amp;sort=UPS-GND&amp;order=desc"' in page
    assert f'href="/coverage/?facility={newark.id}&amp;sort=state&amp;order=asc"' in page
    assert viewer.get(url + "&sort=nonsense").status_code == 400
    assert viewer.get(url + "&order=sideways").status_code == 400


def test_summary_shares_of_zip3s_and_population_per_service(facilities, login_client):
    newark, _ = facilities
    viewer = login_client(permissions=["view_customers"])
    page = viewer.get(f"/coverage/?facility={newark.id}").get_data(as_text=True)
    total_population = sum(p or 0 for _, _, p in DESTINATIONS.values())
    for carrier, service in (("UPS", "GND"), ("USPS", "PRI"), ("USPS", "PFC")):
        zip3s, people = {}, {}
        for zip3, (_, _, population) in DESTINATIONS.items():
            days = MATRIX.get(("100", zip3, carrier, service))
            bucket = "none" if days is None else ("5+" if days >= 5 else str(days))
            zip3s[bucket] = zip3s.get(bucket, 0) + 1
            people[bucket] = people.get(bucket, 0) + (population or 0)
        for bucket in ("1", "2", "3", "4", "5+", "none"):
            expected = f"{100 * zip3s.get(bucket, 0) / len(DESTINATIONS):.1f} %"
            assert summary_cell(page, f"{carrier}-{service}", "zip3", bucket) == expected, (service, bucket)
            expected = f"{100 * people.get(bucket, 0) / total_population:.1f} %"
            assert summary_cell(page, f"{carrier}-{service}", "population", bucket) == expected, (service, bucket)
    # spot-check by hand: UPS GND reaches 2 of 5 ZIP3s in 2 days (200, 600), holding 1,000 of 10,000 people
    assert summary_cell(page, "UPS-GND", "zip3", "2") == "40.0 %"
    assert summary_cell(page, "UPS-GND", "population", "2") == "10.0 %"
    assert summary_cell(page, "UPS-GND", "population", "none") == "60.0 %"
    assert '<svg class="chart coverage-chart"' in page and "<title>UPS GND ZIP3s: 40.0 % 2 days</title>" in page
    # the summary follows the filter: NY only is 200 (2 days) and 400 (1 day)
    page = viewer.get(f"/coverage/?facility={newark.id}&state=NY").get_data(as_text=True)
    assert summary_cell(page, "UPS-GND", "zip3", "1") == "50.0 %"
    assert summary_cell(page, "UPS-GND", "population", "2") == "100.0 %"


def test_map_draws_lower_48_destinations_coloured_by_the_sorted_service(facilities, login_client):
    newark, _ = facilities
    write_reference("UPDATE reference.zip3_reference SET pop_lat = 42.65, pop_lng = -73.75 WHERE zip3 = '200'")
    write_reference("UPDATE reference.zip3_reference SET geo_lat = 42.36, geo_lng = -71.06 WHERE zip3 = '300'")
    write_reference("UPDATE reference.zip3_reference SET pop_lat = 61.2, pop_lng = -149.9 WHERE zip3 = '500'")
    viewer = login_client(permissions=["view_customers"])
    page = viewer.get(f"/coverage/?facility={newark.id}").get_data(as_text=True)
    assert "<h3>Map: UPS GND days</h3>" in page
    dots = re.findall(r'<g fill="([^"]+)"[^>]*>((?:<circle .*?</circle>)+)</g>', page)
    titles = {t: fill for fill, circles in dots for t in re.findall(r"<title>([^<]*)</title>", circles)}
    # 200 by its population centre, 300 by its land-area centre; 500 is in Alaska: counted, not drawn
    assert titles == {"200 Albany, NY: 2 days": "#91cf60", "300 Boston, MA: 5 days": "#d73027"}
    assert "1 ZIP3s outside the lower 48" in page
    page = viewer.get(f"/coverage/?facility={newark.id}&sort=USPS-PRI").get_data(as_text=True)
    assert "<h3>Map: USPS PRI days</h3>" in page and "<title>200 Albany, NY: 1 day</title>" in page
    # Boston lies east of Albany and a little south: the projection keeps that
    x200, y200 = map(float, re.search(r'cx="([\d.]+)" cy="([\d.]+)" r="[\d.]+"><title>200 ', page).groups())
    x300, y300 = map(float, re.search(r'cx="([\d.]+)" cy="([\d.]+)" r="[\d.]+"><title>300 ', page).groups())
    assert x300 > x200 and y300 > y200 - 5


def test_csv_of_the_coverage_neutralises_formulas(facilities, login_client):
    newark, _ = facilities
    viewer = login_client(permissions=["view_customers"])
    page = viewer.get(f"/coverage/?facility={newark.id}&state=NY").get_data(as_text=True)
    assert f'href="/coverage/facility/{newark.id}.csv?state=NY' in page
    response = viewer.get(f"/coverage/facility/{newark.id}.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == f'attachment; filename="coverage-{newark.id}.csv"'
    table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["zip3"] for r in table] == ["200", "300", "400", "500", "600"]
    by_zip3 = {r["zip3"]: r for r in table}
    assert by_zip3["400"]["city"] == "'=HYPERLINK(\"x\")"
    assert by_zip3["300"]["UPS GND days"] == "5" and by_zip3["500"]["UPS GND days"] == ""
    assert by_zip3["200"]["population"] == "1000" and by_zip3["400"]["population"] == ""
    assert len(table[0]) == 4 + 14
    filtered = viewer.get(f"/coverage/facility/{newark.id}.csv?state=NY&service=USPS-PRI&sort=USPS-PRI&order=desc")
    lines = filtered.get_data(as_text=True).splitlines()
    assert lines == ["zip3,city,state,population,USPS PRI days", "200,Albany,NY,1000,1",
                     '400,"\'=HYPERLINK(""x"")",NY,,']      # no USPS PRI to 400: last, even descending


@pytest.mark.parametrize("text", ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_csv_safe_neutralises_every_formula_start(text):
    assert csv_safe(text) == "'" + text
    assert csv_safe("Albany") == "Albany" and csv_safe(5) == 5 and csv_safe("a=b") == "a=b"


def test_compare_takes_the_best_day_of_either_and_names_the_facility(facilities, login_client):
    newark, reno = facilities
    viewer = login_client(permissions=["view_customers"])
    page = viewer.get(f"/coverage/compare?facility={newark.id}&other={reno.id}&service=UPS-GND").get_data(as_text=True)
    assert "Best of EWR1 (origin 100) and AAA-RNO (origin 700)" in page
    assert "<sup>A</sup> EWR1, <sup>B</sup> AAA-RNO, <sup>=</sup> both" in page
    cells = dict(re.findall(r'<th scope="row">(\d{3})</th>(?:<td[^>]*>[^<]*</td>){3}(<td.*?</td>)</tr>', page))
    assert cells == {"200": '<td class="s95">2<sup>=</sup></td>',      # a tie
                     "300": '<td class="s60">3<sup>B</sup></td>',      # Reno's 3 beats Newark's 5
                     "400": '<td class="s100">1<sup>A</sup></td>',     # only Newark
                     "500": '<td class="s100">1<sup>B</sup></td>',     # only Reno
                     "600": '<td class="s95">2<sup>A</sup></td>'}
    assert summary_cell(page, "UPS-GND", "zip3", "1") == "40.0 %"       # 400 and 500 now
    # the picker's "Compare with" on the main page gives the same table; the CSV names who gives each day
    same = viewer.get(f"/coverage/?facility={newark.id}&other={reno.id}&service=UPS-GND").get_data(as_text=True)
    assert '<td class="s60">3<sup>B</sup></td>' in same
    table = list(csv.DictReader(io.StringIO(viewer.get(
        f"/coverage/facility/{newark.id}.csv?other={reno.id}&service=UPS-GND").get_data(as_text=True))))
    assert [(r["zip3"], r["UPS GND days"], r["UPS GND from"]) for r in table] == [
        ("200", "2", "both"), ("300", "3", "AAA-RNO"), ("400", "1", "EWR1"), ("500", "1", "AAA-RNO"),
        ("600", "2", "EWR1")]


def test_inactive_facilities_are_marked_in_the_picker_and_on_the_page(facilities, login_client):
    newark, reno = facilities
    viewer = login_client(permissions=["view_customers"])
    page = viewer.get(f"/coverage/?facility={newark.id}").get_data(as_text=True)
    assert "AAA-RNO · Reno (70012) · inactive</option>" in page
    assert "EWR1 · Newark (10001)</option>" in page
    assert '<span class="badge-inactive">' not in page
    page = viewer.get(f"/coverage/?facility={reno.id}").get_data(as_text=True)
    assert '<span class="badge-inactive">inactive</span> AAA-RNO · Reno is marked inactive' in page


def test_unknown_or_malformed_facility_is_a_404_page_with_a_sentence(facilities, login_client):
    newark, _ = facilities
    viewer = login_client(permissions=["view_customers"])
    for url, sentence in ((f"/coverage/?facility=99999", "Facility 99999 does not exist."),
                          ("/coverage/?facility=abc", "There is no facility &#39;abc&#39;"),
                          ("/coverage/?facility=1%27%20OR%201=1", "There is no facility"),
                          ("/coverage/?facility=99999999999", "There is no facility &#39;99999999999&#39;"),
                          ("/coverage/?facility=%D9%A3", "There is no facility"),     # an Arabic-Indic 3
                          (f"/coverage/compare?facility={newark.id}&other=99999", "Facility 99999 does not exist."),
                          ("/coverage/facility/99999.csv", "Facility 99999 does not exist."),
                          (f"/coverage/facility/{newark.id}.csv?other=x", "There is no facility &#39;x&#39;")):
        response = viewer.get(url)
        assert response.status_code == 404, url
        assert sentence in response.get_data(as_text=True), url
    assert viewer.get("/coverage/facility/abc.csv").status_code == 404
    assert viewer.get("/coverage/facility/99999999999.csv").status_code == 404
    # compare without a second facility is the plain page, where the picker offers one
    alone = viewer.get(f"/coverage/compare?facility={newark.id}")
    assert alone.status_code == 200 and "From Newark, origin ZIP3 100" in alone.get_data(as_text=True)


def test_every_coverage_route_needs_the_coverage_permission(facilities, client, login_client):
    newark, reno = facilities
    urls = ("/coverage/", f"/coverage/?facility={newark.id}", f"/coverage/compare?facility={newark.id}&other={reno.id}",
            f"/coverage/facility/{newark.id}.csv")
    nobody = login_client(permissions=["run_imports", "download_exports"])
    for url in urls:
        assert client.get(url).status_code == 302, url            # to the sign-in page
        assert nobody.get(url).status_code == 403, url
