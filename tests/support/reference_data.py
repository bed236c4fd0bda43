"""Small hand-made workspace rows with known answers (transformation, export and job tests)."""

from __future__ import annotations

from handled.db import data_db


def add_zip(zip5, lat, lng, city, state, population):
    data_db.execute_sql(
        "INSERT INTO workspace.us_zips (zip, lat, lng, city, state_id, state_name, zcta, parent_zcta,"
        " population, density, county_fips, county_name, county_weights, county_names_all,"
        " county_fips_all, imprecise, military, timezone)"
        " VALUES (%s, %s, %s, %s, %s, %s, true, NULL, %s, NULL, '00000', 'County', '{}', 'County',"
        " '00000', false, false, 'America/New_York')",
        (zip5, lat, lng, city, state, state, population))


def add_gazetteer(geoid, aland, awater, lat, lng):
    data_db.execute_sql(
        "INSERT INTO workspace.gaz_zcta_national VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (geoid, aland, awater, aland / 100.0, awater / 100.0, lat, lng))


def add_zone(origin, dest, ground=None, three_day=None, second_day=None, second_day_am=None,
             next_day_saver=None, next_day=None):
    data_db.execute_sql("INSERT INTO workspace.ups_zones VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        (origin, dest, ground, three_day, second_day, second_day_am, next_day_saver, next_day))


def add_ground_zip5(origin, dest, days):
    data_db.execute_sql("INSERT INTO workspace.ups_ground_service_zip5 VALUES (%s, %s, 'XX', %s)",
                        (origin, dest, days))


def add_usps(origin, dest, pri=None, gal=None, mkt=None, per=None, pkg=None, fcm=None, gah=None, pfc=None):
    data_db.execute_sql("INSERT INTO workspace.usps_3d_base_service VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (origin, dest, pri, gal, mkt, per, pkg, fcm, gah, pfc))


def load_zip_sources():
    """us_zips and gazetteer rows for ZIP3s 100 (weighted), 200 (no population, state tie),
    300 (city tie) and 400 (gazetteer only, no land area)."""
    add_zip("10001", 40.0, -70.0, "Alpha", "NY", 100)
    add_zip("10002", 44.0, -74.0, "Beta", "NY", 300)
    add_zip("10003", 50.0, -80.0, "Gamma", "NJ", None)
    add_zip("20005", 10.0, 20.0, "Zed", "VA", None)
    add_zip("20001", 12.0, 24.0, "Yew", "MD", 0)
    add_zip("30002", 33.0, -84.0, "Late", "GA", 50)
    add_zip("30001", 31.0, -82.0, "Early", "FL", 50)
    add_zip("30003", 30.0, -81.0, "Small", "FL", 10)
    add_gazetteer("10001", 100, 50, 40.0, -70.0)
    add_gazetteer("10002", 300, 150, 44.0, -74.0)
    add_gazetteer("40001", 0, 1000, 30.0, -90.0)
    add_gazetteer("40002", 0, 0, 32.0, -92.0)


def load_delivery_sources():
    """Carrier rows for origin 100 with one known answer per rule (see the tests)."""
    # (100, 200): ZIP5 days 2,2,3,3 -> tie -> 2; the zone chart's 001 (1 day) loses on priority
    for dest, days in (("20001", 2), ("20002", 2), ("20003", 3), ("20004", 3)):
        add_ground_zip5("10001", dest, days)
    # (100, 300): days 1,0,0,0 and NULL -> non-positive days are not candidates -> 1
    for dest, days in (("30001", 1), ("30002", 0), ("30003", 0), ("30004", 0), ("30005", None)):
        add_ground_zip5("10002", dest, days)
    # (100, 400): only non-candidates from ZIP5, so the zone chart's 045 wins -> 5 days
    add_ground_zip5("10001", "40001", None)
    add_zone("100", "200", ground="001", three_day="303")
    add_zone("100", "400", ground="045")
    # (100, 500): express services take their zone's first digit; '-' was imported as NULL
    add_zone("100", "500", ground="003", three_day="303", second_day="202", second_day_am=None,
             next_day_saver="101", next_day="001")
    add_zone("100", "600", ground="044")
    # USPS days 1..6 for the score boundaries; GAH missing and PFC 0 are not candidates
    add_usps("100", "200", pri=1, gal=2, mkt=3, per=4, pkg=5, fcm=6, gah=None, pfc=0)
    add_usps("100", "300", gal=3, gah=2, pkg=4)


def load_random_delivery_sources(origins: int = 12, destinations: int = 15, seed: float = 0.3) -> None:
    """USPS and UPS zone rows for ``origins`` x ``destinations`` ZIP3s with gaps everywhere: pairs
    no source has, services with no, zero or unreadable days, and origins and destinations that
    only one carrier reaches (the zone matrices' origin and destination lists differ per export)."""
    data_db.execute_sql(
        """SELECT setseed(%(seed)s);
        CREATE TEMPORARY TABLE _pairs ON COMMIT DROP AS
          SELECT lpad((100 + o * 7)::text, 3, '0') AS origin, lpad((100 + d * 5)::text, 3, '0') AS dest,
                 o, d, random() AS r
          FROM generate_series(0, %(origins)s - 1) o, generate_series(0, %(destinations)s - 1) d;
        INSERT INTO workspace.usps_3d_base_service (origin_zip3, dest_zip3, pri_days, gal_days, pkg_days, gah_days)
          SELECT origin, dest, 1 + (random() * 3)::int,
                 CASE WHEN random() < 0.3 THEN NULL ELSE (random() * 6)::int END,
                 CASE WHEN random() < 0.3 THEN NULL ELSE 1 + (random() * 6)::int END,
                 CASE WHEN random() < 0.5 THEN NULL ELSE 1 + (random() * 6)::int END
          FROM _pairs WHERE r < 0.75 AND o %% 5 <> 4 AND d %% 7 <> 6;
        INSERT INTO workspace.ups_zones (origin_zip3, dest_zip3, ground, three_day_select)
          SELECT origin, dest,
                 (ARRAY['002', '003', '004', '005', '045', '008', NULL, 'x1'])[1 + (random() * 7)::int], '303'
          FROM _pairs WHERE r > 0.2 AND o %% 5 <> 3 AND d %% 7 <> 5;""",
        {"seed": seed, "origins": origins, "destinations": destinations})


def build_reference_tables(settings):
    """The hand-made sources plus one USPS pair, transformed: what export and page tests read."""
    from handled.context import system_context
    from handled.transformations.service import run_transformations

    load_zip_sources()
    load_delivery_sources()
    add_usps("700", "200", gal=3)
    run_transformations(system_context(settings), [], run_all=True)


def build_backends() -> int:
    """DATA connections a transformation build holds open (its application name), on this test
    database only: other suites sharing the server run builds of their own."""
    return data_db.execute_sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                               "AND application_name LIKE 'handled-build-%%'").fetchone()[0]


def reference_tables() -> list[str]:
    return [row[0] for row in data_db.execute_sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'reference'").fetchall()]


def write_reference(statement: str, params=None) -> None:
    """Write test rows straight into a ``reference`` table. The app's runtime role may only read
    them (the builder owns them), so this goes as the test server's superuser to the same DATA
    database: the tests stand in for a build."""
    from tests.support.databases import connect

    conn = connect(data_db.database)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
    finally:
        conn.close()
