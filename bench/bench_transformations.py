"""Benchmark: delivery-matrix rebuild, reader stalls, every export's first request, CSV export at full scale.

Fills ``workspace`` of a database of its own (default handled_bench_tr, dropped
at the end) with realistic synthetic values: N origins x N destination ZIP3s
(default 900 x 900), USPS standards for every pair, UPS zone rows for every
pair, UPS ZIP5 ground times for 10 origins x ~41k destination ZIP5s, plus
us_zips / gazetteer rows for zip3-reference. Then prints, from one run:

* the project's delivery-matrix rebuild (build + keys + ground_days + checks +
  swap) against the same SELECT run by psql into a plain table (target <= 1.2x),
  at the default TRANSFORM_PARALLELISM (cores - 1) and, beside it, with every
  core (the default before issue 14): what leaving readers a core costs;
* the longest stall of a reader querying the live table in a loop during
  three more rebuilds (target < 100 ms), and the phase it fell in; then the
  same beside ``--baseline-reader-rebuilds`` rebuilds on every core;
* the first request of every export after the last of those rebuilds (Flask
  test client, signed in; the big CSV: its first 256 KB chunk) beside psql
  reading the same rows (``\\copy (SELECT ...) TO /dev/null``, process start
  included) (target < 1 s each), and the zone matrices aggregated from the
  11.3M-row matrix as before ground_days (the same bytes?);
* the 11.3M-row CSV export (`flask exports write` path, in a child process)
  against ``psql \\copy (SELECT ...) TO`` (target >= 0.8x), with the child's peak RSS
  (target < 150 MB), and the streamed HTTP path's throughput.

Run ``uptime`` beside it: the machine is shared, and the figures move with its load.

Usage: .venv/bin/python bench/bench_transformations.py [--origins 900] [--parallelism N] [--reader-rebuilds 3]
       [--baseline-reader-rebuilds 1] [--reader-pause-ms 2] [--database handled_bench_tr] [--keep]
Loopback only; needs a PostgreSQL superuser on 127.0.0.1:5432 and Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER = os.environ.get("HANDLED_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("HANDLED_BENCH_REDIS", "redis://127.0.0.1:6379/7")


def env_for(dbname: str, parallelism: int | None = None) -> dict:
    env = {"PRIMARY_DATABASE_URL": f"{SERVER}/{dbname}", "SPLIT_DB_MODE": "false",
           "REDIS_URL": REDIS, "SECRET_KEY": "bench-secret-key-0123456789abcdef",
           "SESSION_COOKIE_SECURE": "false"}
    if parallelism:
        env["TRANSFORM_PARALLELISM"] = str(parallelism)
    return env


def admin(sql: str) -> None:
    conn = psycopg2.connect(f"{SERVER}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


GENERATE = """
SELECT setseed(0.42);
CREATE TEMP TABLE z3 AS
  SELECT lpad((100 + (s * 899 / greatest(%(n)s - 1, 1)))::text, 3, '0') AS zip3
  FROM generate_series(0, %(n)s - 1) s;
INSERT INTO workspace.us_zips
  SELECT z.zip3 || lpad(k::text, 2, '0'), 25 + random() * 20, -120 + random() * 50, 'City ' || z.zip3 || k,
         (ARRAY['NY','NJ','PA','CA','TX'])[1 + (random() * 4)::int], 'State', true, NULL,
         CASE WHEN random() < 0.1 THEN NULL ELSE (random() * 40000)::int END, NULL,
         '00000', 'County', '{}', 'County', '00000', false, false, 'America/New_York'
  FROM z3 z, generate_series(0, 45) k;
INSERT INTO workspace.gaz_zcta_national
  SELECT zip, (random() * 1e8)::bigint, (random() * 1e7)::bigint, random() * 40, random() * 4, lat, lng
  FROM workspace.us_zips WHERE random() < 0.8;
INSERT INTO workspace.usps_3d_base_service
  SELECT o.zip3, d.zip3, 1 + (random() * 3)::int, 2 + (random() * 3)::int, 3 + (random() * 6)::int,
         3 + (random() * 6)::int, 2 + (random() * 6)::int, 1 + (random() * 4)::int,
         2 + (random() * 3)::int, 1 + (random() * 3)::int
  FROM z3 o, z3 d;
INSERT INTO workspace.ups_zones
  SELECT o.zip3, d.zip3,
         CASE WHEN random() < 0.02 THEN '045' ELSE '00' || (2 + (random() * 6)::int) END,
         '30' || (2 + (random() * 6)::int), '20' || (2 + (random() * 6)::int),
         '20' || (2 + (random() * 6)::int), '10' || (2 + (random() * 6)::int), '10' || (2 + (random() * 6)::int)
  FROM z3 o, z3 d;
INSERT INTO workspace.ups_ground_service_zip5
  SELECT o.zip, u.zip, 'XX', 1 + (random() * 5)::int
  FROM (SELECT DISTINCT ON (left(zip, 3)) zip FROM workspace.us_zips ORDER BY left(zip, 3), zip LIMIT 10) o,
       workspace.us_zips u;
ANALYZE;
"""


def psql_seconds(dbname: str, command: str) -> float:
    started = time.monotonic()
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", f"{SERVER}/{dbname}", "-c", command],
                   check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def reader_loop(dsn: str, keys, stop: threading.Event, stalls: list, counts: list, pause: float) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        while not stop.is_set():
            origin, dest = random.choice(keys)
            started = time.monotonic()
            cur.execute("SELECT count(*) FROM reference.delivery_matrix WHERE origin_zip3 = %s AND dest_zip3 = %s",
                        (origin, dest))
            found = cur.fetchone()[0]
            stalls.append((time.monotonic() - started, started))
            counts.append(found)
            time.sleep(pause)   # default 2 ms: a busy page's worth of queries, not a CPU hog
    conn.close()


def phase_at(timings: dict, offset: float) -> str:
    """Which build phase ``offset`` seconds after the run started fell in (from the phase timings)."""
    end = 0.0
    for name, seconds in timings.items():
        end += seconds
        if offset <= end:
            return name
    return "after the run"


def peak_rss_kb() -> int:
    """This process's own peak RSS. Not ru_maxrss: Linux carries that over from the parent across
    fork and exec, so a child started by a big bench process reported the parent's size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def export_child(dbname: str, target: str) -> None:
    """Runs in a child process: the CLI's export path, then the streamed path; prints JSON."""
    from handled import create_app
    from handled.context import system_context
    from handled.exports import service
    from handled.settings import load_settings

    settings = load_settings(env_for(dbname))
    create_app(settings)
    ctx = system_context(settings)
    started = time.monotonic()
    with open(target, "wb") as handle:
        result = service.write_export(ctx, "delivery_matrix.csv", handle)
    file_seconds = time.monotonic() - started
    started, size = time.monotonic(), 0
    for chunk in service.stream_export(ctx, "delivery_matrix.csv"):
        size += len(chunk)
    stream_seconds = time.monotonic() - started
    peak_kb = peak_rss_kb()
    print(json.dumps({"rows": result["rows"], "bytes": result["bytes"], "file_seconds": file_seconds,
                      "stream_seconds": stream_seconds, "stream_bytes": size, "peak_rss_mb": peak_kb / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--origins", type=int, default=900, help="origin (and destination) ZIP3 count")
    parser.add_argument("--database", default="handled_bench_tr")
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    parser.add_argument("--reader-rebuilds", type=int, default=3,
                        help="rebuilds timed beside the stall reader (the longest stall of all is reported)")
    parser.add_argument("--reader-pause-ms", type=float, default=2.0,
                        help="pause between the stall reader's queries (0: back to back)")
    parser.add_argument("--baseline-reader-rebuilds", type=int, default=1,
                        help="rebuilds on every core timed beside the stall reader, for comparison (0: none)")
    parser.add_argument("--parallelism", type=int,
                        help="TRANSFORM_PARALLELISM (default: the app's, the cores less one)")
    parser.add_argument("--export-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        export_child(*args.export_child)
        return
    admin(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{args.database}"')
    try:
        run(args)
    finally:
        if not args.keep:
            admin(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')


def rebuild_beside_reader(settings, dsn: str, keys, pause: float) -> tuple:
    """One delivery-matrix rebuild while a reader queries the live table in a loop: (result, stalls, counts, started)."""
    from handled.context import system_context
    from handled.transformations.service import run_transformation

    stop, stalls, counts = threading.Event(), [], []
    reader = threading.Thread(target=reader_loop, args=(dsn, keys, stop, stalls, counts, pause))
    reader.start()
    time.sleep(0.5)
    rebuild_started = time.monotonic()
    result = run_transformation(system_context(settings), "delivery-matrix")
    time.sleep(0.5)
    stop.set()
    reader.join()
    return result, stalls, counts, rebuild_started


def print_stalls(label: str, under_reader: list) -> float:
    """Each rebuild's longest reader stall and its phase; returns the longest of all (seconds)."""
    for number, (result, stalls, counts, rebuild_started) in enumerate(under_reader, start=1):
        longest, at = max(stalls)
        in_swap = [d for d, when in stalls if phase_at(result.timings, when - rebuild_started) == "swap"]
        print(f"  {label} rebuild {number} beside a reader querying the live table in a loop: "
              f"{sum(result.timings.values()):.1f} s of phases, {len(stalls):,} queries, "
              f"longest {longest * 1000:.1f} ms (in the {phase_at(result.timings, at - rebuild_started)} phase"
              + (f"; longest while the swap ran {max(in_swap) * 1000:.1f} ms" if in_swap else "")
              + f"), empty answers: {sum(1 for c in counts if c == 0)}")
    return max(max(stalls)[0] for _, stalls, _, _ in under_reader)


def export_baseline_sql(export) -> str:
    """The rows an export reads, for psql to read beside it."""
    from handled.transformations.registry import ground_bit, ground_column

    if export.kind == "zone-matrix":
        bits = sum(ground_bit(*service) for service in export.services)
        columns = ", ".join(ground_column(*service) for service in export.services)
        return (f"SELECT origin_zip3, dest_zip3, {columns} FROM reference.ground_days WHERE origin_services & {bits} "
                f"<> 0 AND dest_services & {bits} <> 0 ORDER BY origin_zip3, dest_zip3")
    if export.kind == "zip3-json":
        return ("SELECT zip3, pop_lat, pop_lng, primary_city, primary_state, total_population "
                "FROM reference.zip3_reference WHERE pop_lat IS NOT NULL ORDER BY zip3")
    order = f" ORDER BY {', '.join(export.key)}" if export.key else ""
    return f"SELECT * FROM reference.{export.table}{order}"


def first_requests(app, database: str) -> dict:
    """Every export's first request after a rebuild, through the app signed in, beside psql; prints a
    table and returns the bodies of the JSON files. The 11M-row CSV: time to its first chunk."""
    from handled.exports.registry import EXPORTS
    from tests.support.accounts import make_user, sign_in_client

    client = sign_in_client(app, make_user(app, permissions=["download_exports"]))
    bodies, worst = {}, 0.0
    print("first request of each export after the rebuild (Flask test client, signed in) beside psql "
          "reading the same rows (\\copy ... TO /dev/null, process start included):")
    for export in EXPORTS.values():
        started = time.monotonic()
        response = client.get(f"/exports/{export.id}")
        assert response.status_code == 200, (export.id, response.status_code)
        if export.id == "delivery_matrix.csv":
            first = next(iter(response.response))
            seconds = time.monotonic() - started
            response.close()
            rows = first.count(b"\n") - 1
            baseline = psql_seconds(database, f"\\copy (SELECT * FROM reference.delivery_matrix LIMIT {rows}) "
                                              "TO '/dev/null'")
            what = f"first chunk, {len(first) / 1000:.0f} kB ({rows:,} rows)"
        else:
            body = response.get_data()
            seconds = time.monotonic() - started
            bodies[export.id] = body
            baseline = psql_seconds(database, f"\\copy ({export_baseline_sql(export)}) TO '/dev/null'")
            what = f"{len(body) / 1000:,.0f} kB"
        worst = max(worst, seconds)
        print(f"  {export.id:24s} {seconds * 1000:7.0f} ms ({what}); psql {baseline * 1000:5.0f} ms; "
              f"ratio {seconds / baseline:.1f}x")
    print(f"  slowest first request: {worst * 1000:.0f} ms (target < 1 s)")
    return bodies


def zone_matrices_as_before(bodies: dict) -> None:
    """The zone matrices aggregated from the 11.3M-row matrix (every export did so before ground_days)."""
    from handled.db import data_db
    from handled.exports import builders
    from handled.exports.registry import EXPORTS

    for export in (e for e in EXPORTS.values() if e.kind == "zone-matrix"):
        started = time.monotonic()
        with data_db.atomic():
            body, cells = builders.zone_matrix_body(*builders.zone_matrix_from_matrix(export))
        print(f"  {export.id} aggregated from the matrix as before: {cells:,} cells, {len(body) / 1e6:.1f} MB in "
              f"{time.monotonic() - started:.1f} s; same bytes as the first request: {body == bodies[export.id]}")


def run(args) -> None:
    from dataclasses import replace

    from handled import create_app
    from handled.context import system_context
    from handled.db import data_db
    from handled.schema.migrations import migrate, resolve_targets
    from handled.settings import load_settings
    from handled.transformations.registry import get_transformation
    from handled.transformations.service import run_transformation

    settings = load_settings(env_for(args.database, args.parallelism))
    every_core = replace(settings, transform_parallelism=max(1, min(8, os.cpu_count() or 1)))
    for target in resolve_targets(settings, "all"):
        migrate(target)
    app = create_app(settings)
    app.app_context().push()
    dsn = f"{SERVER}/{args.database}"
    started = time.monotonic()
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(GENERATE, {"n": args.origins})
    conn.close()
    print(f"generated workspace in {time.monotonic() - started:.1f} s "
          f"({args.origins} x {args.origins} ZIP3 pairs); {os.cpu_count()} cores")
    run_transformation(system_context(settings), "zip3-reference")
    first = run_transformation(system_context(settings), "delivery-matrix")
    print(f"first delivery-matrix build: {first.rows:,} rows")
    started = time.monotonic()
    rebuild = run_transformation(system_context(settings), "delivery-matrix")     # timed alone, like the psql baseline
    project_seconds = time.monotonic() - started
    slices = data_db.execute_sql("SELECT count(*) FROM pg_inherits "
                                 "WHERE inhparent = 'reference.delivery_matrix'::regclass").fetchone()[0]
    started = time.monotonic()
    on_every_core = run_transformation(system_context(every_core), "delivery-matrix")
    every_core_seconds = time.monotonic() - started

    keys = data_db.execute_sql("SELECT origin_zip3, dest_zip3 FROM workspace.usps_3d_base_service "
                               "ORDER BY random() LIMIT 5000").fetchall()
    pause = args.reader_pause_ms / 1000
    baseline_readers = [rebuild_beside_reader(every_core, dsn, keys, pause)
                        for _ in range(args.baseline_reader_rebuilds)]
    under_reader = [rebuild_beside_reader(settings, dsn, keys, pause) for _ in range(args.reader_rebuilds)]
    bodies = first_requests(app, args.database)       # right after the last rebuild: nothing cached
    zone_matrices_as_before(bodies)

    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:   # every origin: the whole SELECT
        select = get_transformation("delivery-matrix").render_select(cur).strip().rstrip(";")
    psql_seconds(args.database, "CREATE TABLE public.bench_plain (LIKE reference.delivery_matrix)")
    baseline = psql_seconds(args.database, f"INSERT INTO public.bench_plain {select}")
    keyed = psql_seconds(args.database, "SET maintenance_work_mem = '1GB'; ALTER TABLE public.bench_plain "
                         "ADD PRIMARY KEY (origin_zip3, dest_zip3, carrier, service)")
    psql_seconds(args.database, "DROP TABLE public.bench_plain")

    def phases(result) -> str:
        return ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())

    print(f"delivery-matrix rebuild: {rebuild.rows:,} rows in {project_seconds:.1f} s, {slices} slice(s) "
          f"(TRANSFORM_PARALLELISM {settings.transform_parallelism}; phases: {phases(rebuild)})")
    print(f"  of which deriving reference.ground_days: {rebuild.timings.get('derive', 0):.1f} s "
          f"({rebuild.timings.get('derive', 0) / project_seconds:.0%} of the rebuild)")
    print(f"  same on every core (TRANSFORM_PARALLELISM {every_core.transform_parallelism}): {every_core_seconds:.1f} s "
          f"(phases: {phases(on_every_core)}); leaving readers a core costs {project_seconds / every_core_seconds:.2f}x")
    print(f"  psql INSERT ... SELECT into a plain table: {baseline:.1f} s; ratio {project_seconds / baseline:.2f}x "
          "(target <= 1.2x)")
    print(f"  psql INSERT ... SELECT then ADD PRIMARY KEY (what the live table needs): {baseline + keyed:.1f} s; "
          f"ratio {project_seconds / (baseline + keyed):.2f}x")
    worst = print_stalls(f"TRANSFORM_PARALLELISM {settings.transform_parallelism}:", under_reader)
    print(f"  longest reader stall over {len(under_reader)} rebuilds: {worst * 1000:.1f} ms (target < 100 ms)")
    if baseline_readers:
        before = print_stalls(f"every core ({every_core.transform_parallelism}):", baseline_readers)
        print(f"  longest reader stall over {len(baseline_readers)} rebuild(s) on every core: {before * 1000:.1f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        ours_file, psql_file = Path(tmp) / "ours.csv", Path(tmp) / "psql.csv"
        runs, psql_runs = [], []
        for _ in range(2):   # alternate, best of two each: neither side gets the warmer cache
            psql_runs.append(psql_seconds(args.database, "\\copy (SELECT * FROM reference.delivery_matrix) TO "
                                          f"'{psql_file}' WITH (FORMAT csv, HEADER)"))
            child = subprocess.run([sys.executable, __file__, "--export-child", args.database, str(ours_file)],
                                   check=True, capture_output=True, text=True)
            runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        ours = min(runs, key=lambda r: r["file_seconds"])
        ours["stream_seconds"] = min(r["stream_seconds"] for r in runs)
        ours["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        psql_copy = min(psql_runs)
        same_size = ours_file.stat().st_size == psql_file.stat().st_size
    print(f"CSV export of {ours['rows']:,} rows ({ours['bytes'] / 1e6:.0f} MB): {ours['file_seconds']:.1f} s; "
          f"psql \\copy {psql_copy:.1f} s; throughput ratio {psql_copy / ours['file_seconds']:.2f}x "
          f"(target >= 0.8x); same size as psql's: {same_size}")
    print(f"  streamed (HTTP path): {ours['stream_seconds']:.1f} s, ratio {psql_copy / ours['stream_seconds']:.2f}x; "
          f"peak RSS of the exporting process {ours['peak_rss_mb']:.0f} MB (target < 150 MB)")


if __name__ == "__main__":
    main()
