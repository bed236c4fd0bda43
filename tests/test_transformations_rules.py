"""Known answers for every rule of zip3-reference and delivery-matrix (DATASETS.md), both modes."""

from __future__ import annotations

import pytest

from handled.db import data_db
from handled.context import system_context
from handled.transformations.service import run_transformation
from tests.support.reference_data import load_delivery_sources, load_zip_sources


@pytest.fixture
def zip3_rows(app, settings):
    load_zip_sources()
    outcome = run_transformation(system_context(settings), "zip3-reference")
    cursor = data_db.execute_sql("SELECT * FROM reference.zip3_reference ORDER BY zip3")
    names = [c[0] for c in cursor.description]
    rows = {r[0]: dict(zip(names, r)) for r in cursor.fetchall()}
    return outcome, rows


def test_zip3_reference_one_row_per_prefix_from_either_source(zip3_rows):
    outcome, rows = zip3_rows
    assert sorted(rows) == ["100", "200", "300", "400"]
    assert outcome.rows == 4


def test_population_weighted_centroid_and_totals(zip3_rows):
    row = zip3_rows[1]["100"]
    assert row["zip_count"] == 3
    assert row["total_population"] == 400          # the missing population counts as 0
    assert row["pop_lat"] == pytest.approx(43.0)    # (40*100 + 44*300) / 400
    assert row["pop_lng"] == pytest.approx(-73.0)
    assert row["primary_state"] == "NY"             # two NY ZIPs against one NJ
    assert row["primary_city"] == "Beta"            # the most populous ZIP


def test_no_population_gives_plain_mean_state_tie_and_lowest_zip_city(zip3_rows):
    row = zip3_rows[1]["200"]
    assert row["total_population"] == 0
    assert row["pop_lat"] == pytest.approx(11.0)
    assert row["pop_lng"] == pytest.approx(22.0)
    assert row["primary_state"] == "MD"             # MD and VA tie: alphabetically first
    assert row["primary_city"] == "Yew"             # no population: lowest ZIP (20001)


def test_city_tie_goes_to_lowest_zip(zip3_rows):
    row = zip3_rows[1]["300"]
    assert row["primary_state"] == "FL"
    assert row["primary_city"] == "Early"           # 30001 and 30002 both have 50 people


def test_gazetteer_sums_and_land_weighted_centroid(zip3_rows):
    row = zip3_rows[1]["100"]
    assert row["land_sqmi"] == pytest.approx(4.0)
    assert row["water_sqmi"] == pytest.approx(2.0)
    assert row["geo_lat"] == pytest.approx(43.0)    # (40*100 + 44*300) / 400 by land area
    assert row["geo_lng"] == pytest.approx(-73.0)


def test_zip3_in_one_source_only_keeps_the_other_side_null(zip3_rows):
    rows = zip3_rows[1]
    gaz_only, zips_only = rows["400"], rows["200"]
    assert gaz_only["zip_count"] is None and gaz_only["primary_city"] is None and gaz_only["pop_lat"] is None
    assert gaz_only["geo_lat"] == pytest.approx(31.0)   # no land area: plain mean
    assert gaz_only["geo_lng"] == pytest.approx(-91.0)
    assert gaz_only["water_sqmi"] == pytest.approx(10.0)
    assert zips_only["land_sqmi"] is None and zips_only["geo_lat"] is None


@pytest.fixture
def matrix(app, settings):
    load_delivery_sources()
    run_transformation(system_context(settings), "delivery-matrix")
    rows = data_db.execute_sql(
        "SELECT origin_zip3, dest_zip3, carrier, service, transit_days, zone, delivery_score, source "
        "FROM reference.delivery_matrix").fetchall()
    return {(o, d, c, s): (days, zone, score, source) for o, d, c, s, days, zone, score, source in rows}


def test_zip5_mode_with_tie_to_fewer_days_beats_zone_chart(matrix):
    # days 2,2,3,3 tie -> 2; the zone chart's 001 would be 1 day but has priority 2
    assert matrix[("100", "200", "UPS", "GND")] == (2, None, 95, "ups-ground-service")


def test_non_positive_and_missing_days_are_not_candidates(matrix):
    assert matrix[("100", "300", "UPS", "GND")] == (1, None, 100, "ups-ground-service")
    assert ("100", "200", "USPS", "GAH") not in matrix   # missing
    assert ("100", "200", "USPS", "PFC") not in matrix   # 0 days
    assert ("100", "500", "UPS", "NDA") not in matrix    # zone 001: first digit 0
    assert ("100", "500", "UPS", "2AM") not in matrix    # '-' (NULL): no service


def test_zone_chart_ground_and_zone_045(matrix):
    assert matrix[("100", "400", "UPS", "GND")] == (5, "045", 0, "ups-zones")
    assert matrix[("100", "500", "UPS", "GND")] == (3, "003", 60, "ups-zones")
    assert matrix[("100", "600", "UPS", "GND")] == (4, "044", 20, "ups-zones")


def test_express_services_take_first_digit_of_their_zone(matrix):
    assert matrix[("100", "500", "UPS", "3DS")] == (3, "303", 60, "ups-zones")
    assert matrix[("100", "500", "UPS", "2DA")] == (2, "202", 95, "ups-zones")
    assert matrix[("100", "500", "UPS", "NDS")] == (1, "101", 100, "ups-zones")
    assert matrix[("100", "200", "UPS", "3DS")] == (3, "303", 60, "ups-zones")


def test_usps_services_and_score_at_each_boundary(matrix):
    usps = {s: matrix[("100", "200", "USPS", s)] for s in ("PRI", "GAL", "MKT", "PER", "PKG", "FCM")}
    assert {s: v[0] for s, v in usps.items()} == {"PRI": 1, "GAL": 2, "MKT": 3, "PER": 4, "PKG": 5, "FCM": 6}
    assert {s: v[2] for s, v in usps.items()} == {"PRI": 100, "GAL": 95, "MKT": 60, "PER": 20, "PKG": 0, "FCM": 0}
    assert all(v[1] is None and v[3] == "usps-3d-base" for v in usps.values())


def test_matrix_has_exactly_the_expected_rows(matrix):
    assert len(matrix) == (
        4      # UPS GND to 200, 300, 400, 500 ... and 600 below
        + 1    # UPS GND to 600
        + 1    # UPS 3DS to 200
        + 3    # UPS 3DS, 2DA, NDS to 500
        + 6    # USPS to 200
        + 3)   # USPS GAL, GAH, PKG to 300
