"""Benchmark: the table copy behind `flask db split/unsplit` against psql's \\copy pipe.

Fills workspace.usps_3d_base_service in a source database with --rows rows
(default 1,000,000: every origin/destination ZIP3 pair), then, in the same run,
into the same emptied table of a target database:

  baseline  psql -c "\\copy ... to stdout" | psql -c "\\copy ... from stdin"
  project   handled.ops.transfer.stream_table (COPY out -> OS pipe -> COPY in,
            one thread each, no table held in memory), committed
  checksum  handled.ops.transfer.table_checksum (what split/backup verify with)
            against a baseline of SELECT count(*) over the same table

It prints seconds, rows/s, the ratio project/baseline, and the process's peak RSS
beside the table's size. Both databases (handled_bench_split_src/_dst) are made
here and dropped at the end; nothing leaves 127.0.0.1. Usage:

  .venv/bin/python bench/bench_split.py [--rows 1000000] [--pg postgresql://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from handled.ops.tables import Table, describe_table, prepare_session  # noqa: E402
from handled.ops.transfer import stream_table, table_checksum  # noqa: E402
from handled.schema.migrations import migrate, resolve_targets  # noqa: E402
from handled.settings import load_settings  # noqa: E402

NAMES = ("handled_bench_split_src", "handled_bench_split_dst")
TABLE = "workspace.usps_3d_base_service"


def admin(pg: str):
    conn = psycopg2.connect(f"{pg}/postgres")
    conn.autocommit = True
    return conn


def prepare(pg: str, rows: int) -> None:
    with admin(pg).cursor() as cur:
        for name in NAMES:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
    for name in NAMES:
        settings = load_settings({"PRIMARY_DATABASE_URL": f"{pg}/{name}", "REDIS_URL": "redis://127.0.0.1:6379/0",
                                  "SECRET_KEY": "bench-secret-key-0123456789"})
        migrate(resolve_targets(settings, "data")[0])
    with psycopg2.connect(f"{pg}/{NAMES[0]}") as conn, conn.cursor() as cur:
        cur.execute(f"""INSERT INTO {TABLE}
            SELECT lpad((g / 1000 %% 1000)::text, 3, '0'), lpad((g %% 1000)::text, 3, '0'),
                   (g %% 5)::smallint, (g %% 7)::smallint, (g %% 9)::smallint, NULL, (g %% 4)::smallint,
                   (g %% 3)::smallint, NULL, (g %% 6)::smallint
            FROM generate_series(0, %s - 1) g""", (rows,))


def truncate_target(pg: str) -> None:
    with psycopg2.connect(f"{pg}/{NAMES[1]}") as conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLE}")


def baseline_copy(pg: str) -> float:
    truncate_target(pg)
    started = time.perf_counter()
    subprocess.run(f'psql -qAt "{pg}/{NAMES[0]}" -c "\\copy {TABLE} to stdout" | '
                   f'psql -qAt "{pg}/{NAMES[1]}" -c "\\copy {TABLE} from stdin"',
                   shell=True, check=True)
    return time.perf_counter() - started


def project_copy(pg: str) -> float:
    truncate_target(pg)
    source, target = psycopg2.connect(f"{pg}/{NAMES[0]}"), psycopg2.connect(f"{pg}/{NAMES[1]}")
    prepare_session(source)
    prepare_session(target)
    table = describe_table(source, Table("workspace", "usps_3d_base_service"))
    started = time.perf_counter()
    stream_table(source, target, table)
    target.commit()
    elapsed = time.perf_counter() - started
    source.close()
    target.close()
    return elapsed


def checksum_pair(pg: str) -> tuple[float, float, int]:
    conn = psycopg2.connect(f"{pg}/{NAMES[1]}")
    prepare_session(conn)
    table = describe_table(conn, Table("workspace", "usps_3d_base_service"))
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {TABLE}")
        count = cur.fetchone()[0]
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    summed = table_checksum(conn, table)
    project = time.perf_counter() - started
    assert summed.rows == count
    with conn.cursor() as cur:
        cur.execute("SELECT pg_total_relation_size(%s)", (TABLE,))
        size = cur.fetchone()[0]
    conn.close()
    return baseline, project, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    prepare(args.pg, args.rows)
    try:
        base = baseline_copy(args.pg)
        mine = project_copy(args.pg)
        count_s, sum_s, size = checksum_pair(args.pg)
    finally:
        with admin(args.pg).cursor() as cur:
            for name in NAMES:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows: {args.rows:,}, table size {size / 2**20:.0f} MiB")
    print(f"copy  baseline psql \\copy pipe: {base:7.2f} s  {args.rows / base:12,.0f} rows/s")
    print(f"copy  project stream_table:     {mine:7.2f} s  {args.rows / mine:12,.0f} rows/s  "
          f"ratio project/baseline {mine / base:.2f}")
    print(f"check baseline count(*):        {count_s:7.2f} s")
    print(f"check project table_checksum:   {sum_s:7.2f} s  ratio checksum/count {sum_s / count_s:.1f}")
    print(f"peak RSS of this process: {rss_mib:.0f} MiB (the table is {size / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
