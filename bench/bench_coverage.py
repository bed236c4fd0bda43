"""Benchmark: the coverage page at full scale (918 destination ZIP3s x 14 services).

Creates a database of its own (default handled_bench_cov, dropped at the end;
loopback PostgreSQL and Redis only), migrates it, and fills ``reference`` directly
with realistic synthetic rows: 918 ZIP3s in ``zip3_reference`` (city, state,
population) and, for a few origins, every destination x the 14 seeded services in
``delivery_matrix`` (days 1-8, a few pairs with no service), so the page has the
real number of rows and cells. Then it times, best of N requests each:

* the page through the Flask test client, signed in (everything a request costs
  in the app: session check, PRIMARY for the facility, DATA for the rows, Jinja),
  plain, filtered by state, sorted by a service column, the CSV and the compare page;
* beside it, the bare rows: the same delivery_matrix rows for the origin read by
  psycopg2 (execute + fetchall), and by ``psql`` (a process start included);

and prints each time and its ratio to the bare psycopg2 query. Target: the page
under 200 ms. ``--profile`` prints the top of a cProfile of one page request.

Usage: .venv/bin/python bench/bench_coverage.py [--requests 7] [--profile] [--keep]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER = os.environ.get("HANDLED_BENCH_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
REDIS = os.environ.get("HANDLED_BENCH_REDIS", "redis://127.0.0.1:6379/6")
DESTINATIONS = 918
ORIGINS = ("100", "606", "900")     # the facilities' origins; the page reads one at a time

GENERATE = """
SELECT setseed(0.14);
INSERT INTO reference.zip3_reference (zip3, zip_count, total_population, primary_state, primary_city,
                                      pop_lat, pop_lng)
  SELECT lpad((5 + s)::text, 3, '0'), 1 + (random() * 60)::int,
         CASE WHEN random() < 0.03 THEN NULL ELSE (random() * 900000)::bigint END,
         (ARRAY['NY','NJ','PA','CA','TX','FL','IL','OH','GA','WA','MA','AZ'])[1 + (s %% 12)],
         'City ' || s, 25 + random() * 20, -120 + random() * 50
  FROM generate_series(0, %(n)s - 1) s;
INSERT INTO reference.delivery_matrix (origin_zip3, dest_zip3, carrier, service, transit_days, zone,
                                       delivery_score, source)
  SELECT o.origin, z.zip3, s.carrier_code, s.code, d.days, NULL,
         CASE WHEN d.days <= 1 THEN 100 WHEN d.days = 2 THEN 95 WHEN d.days = 3 THEN 60
              WHEN d.days = 4 THEN 20 ELSE 0 END, 'bench'
  FROM unnest(%(origins)s::text[]) AS o(origin)
  CROSS JOIN reference.zip3_reference z
  CROSS JOIN reference.services s
  CROSS JOIN LATERAL (SELECT 1 + (random() * 7)::int + 0 * length(z.zip3 || s.code) AS days) d
  WHERE random() > 0.03;
ANALYZE reference.zip3_reference;
ANALYZE reference.delivery_matrix;
"""

BARE_SQL = ("SELECT dest_zip3, carrier, service, transit_days, delivery_score FROM reference.delivery_matrix "
            "WHERE origin_zip3 = %s ORDER BY dest_zip3")


def admin(sql: str) -> None:
    conn = psycopg2.connect(f"{SERVER}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def best_of(count: int, func) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="handled_bench_cov")
    parser.add_argument("--requests", type=int, default=7, help="requests per measurement (the best is kept)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one page request")
    parser.add_argument("--only-page", action="store_true", help="time the plain page only")
    parser.add_argument("--browser", action="store_true",
                        help="also time the page loaded in Debian's chromium (served, parsed, laid out)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    args = parser.parse_args()
    if not args.database.startswith("handled_bench_"):
        sys.exit("--database must start with handled_bench_ (it is dropped).")
    admin(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{args.database}"')
    try:
        run(args)
    finally:
        if not args.keep:
            admin(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')


def run(args) -> None:
    from handled import create_app
    from handled.models import Facility
    from handled.schema.migrations import migrate, resolve_targets
    from handled.settings import load_settings
    from tests.support.accounts import make_user, sign_in_client

    dsn = f"{SERVER}/{args.database}"
    settings = load_settings({"PRIMARY_DATABASE_URL": dsn, "SPLIT_DB_MODE": "false", "REDIS_URL": REDIS,
                              "SECRET_KEY": "bench-secret-key-0123456789abcdef",
                              "SESSION_COOKIE_SECURE": "false"})
    for target in resolve_targets(settings, "all"):
        migrate(target)
    app = create_app(settings)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(GENERATE, {"n": DESTINATIONS, "origins": list(ORIGINS)})
        cur.execute("SELECT count(*) FROM reference.delivery_matrix WHERE origin_zip3 = %s", (ORIGINS[0],))
        cells = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM reference.services")
        services = cur.fetchone()[0]
    with app.app_context():
        facilities = [Facility.create(code=f"F{origin}", name=f"Facility {origin}", zip=f"{origin}01",
                                      timezone="America/New_York") for origin in ORIGINS]
    viewer = sign_in_client(app, make_user(app, permissions=["view_customers"]))
    first, second = facilities[0].id, facilities[1].id
    print(f"dataset: {DESTINATIONS} destination ZIP3s x {services} services; {cells:,} cells for origin {ORIGINS[0]}")

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()

    def bare():
        cur.execute(BARE_SQL, (ORIGINS[0],))
        cur.fetchall()

    bare()
    baseline = best_of(args.requests, bare)
    psql = best_of(3, lambda: subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", dsn, "-c", BARE_SQL.replace("%s", f"'{ORIGINS[0]}'")],
        check=True, stdout=subprocess.DEVNULL))
    print(f"bare query, psycopg2 execute+fetchall: {baseline * 1000:.1f} ms "
          f"(psql process, start included: {psql * 1000:.1f} ms)")

    sizes = {}

    def page(url: str, expect: bytes | None = None):
        def get():
            response = viewer.get(url)
            assert response.status_code == 200, (url, response.status_code)
            body = response.get_data()
            sizes[url] = len(body)
            if expect is not None:
                assert expect in body, (url, expect)
        return get

    scenarios = [
        ("page, all rows and services", f"/coverage/?facility={first}", b"<td"),
        ("page, filtered: state TX", f"/coverage/?facility={first}&state=TX", None),
        ("page, sorted by UPS GND descending", f"/coverage/?facility={first}&sort=UPS-GND&order=desc", None),
        ("page, no facility chosen (first shown)", "/coverage/", None),
        ("CSV of the facility", f"/coverage/facility/{first}.csv", None),
        ("compare two facilities", f"/coverage/compare?facility={first}&other={second}", None),
    ]
    for label, url, expect in scenarios[:1] if args.only_page else scenarios:
        get = page(url, expect)
        get()   # warm: connections, template compile
        seconds = best_of(args.requests, get)
        verdict = " (target < 200 ms)" if label.startswith("page, all") else ""
        print(f"{label}: {seconds * 1000:.1f} ms, {sizes[url] / 1000:.0f} kB; "
              f"ratio to the bare query {seconds / baseline:.1f}x{verdict}")
    if args.browser:
        browser_load(app, viewer, f"/coverage/?facility={first}", args.requests)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        page(f"/coverage/?facility={first}")()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    conn.close()


def browser_load(app, viewer, path: str, count: int) -> None:
    """The page in chromium through a loopback werkzeug server: navigation start to the load event."""
    import threading

    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from handled.auth.web import COOKIE_NAME
    from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    token = viewer.get_cookie(COOKIE_NAME).value
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            context = chromium.new_context(viewport={"width": 1400, "height": 1000})
            context.add_cookies([{"name": COOKIE_NAME, "value": token, "url": base}])
            page = context.new_page()
            loads = []
            for _ in range(count):
                page.goto(base + path, wait_until="load")
                loads.append(page.evaluate("() => { const t = performance.getEntriesByType('navigation')[0];"
                                           " return [t.responseStart - t.requestStart, t.responseEnd - t.requestStart,"
                                           " t.loadEventEnd - t.requestStart]; }"))
            chromium.close()
    finally:
        server.shutdown()
        thread.join(10)
    first_byte, last_byte, loaded = (min(values) for values in zip(*loads))
    print(f"page in chromium (werkzeug, loopback): first byte {first_byte:.0f} ms, last byte {last_byte:.0f} ms, "
          f"load event {loaded:.0f} ms")


if __name__ == "__main__":
    main()
