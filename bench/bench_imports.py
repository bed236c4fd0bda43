"""Benchmark: imports through the project against ``psql \\copy`` of the same rows.

For each file kind it writes large files in the real format, then, in the same
run and into the same (emptied) table, times ``psql -c "\\copy ..."`` and the
project's import (``import_file``: whole-file checks, sha256, history, archive,
streaming validation and COPY, one transaction), each in a child process whose
peak RSS (ru_maxrss) is read. It prints rows/s, the ratio project/\\copy and
the import's peak RSS.

Cases
  usps-3d-base        one CSV, every (origin, destination) ZIP3 pair: 1,000,000 rows
  ups-ground-service  CSV files of 100,000 rows (a ZIP5 has 100,000 values), one per origin
  us-zips, gaz-zcta   a ZIP5 key allows only 100,000 distinct rows, so these run on a twin
                      table (same columns, key widened by one column) with the integration's
                      own parser, validators and loader: --rows rows, and --big-rows for RSS
  ups-zones           --charts .xlsx zone charts (ranges expanded), imported in one call

Everything lives in its own database (handled_bench_imp, dropped at the end)
and a temporary folder; nothing leaves 127.0.0.1. Usage:

  .venv/bin/python bench/bench_imports.py [--rows 1000000] [--big-rows 5000000] [--charts 900]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_SERVER = os.environ.get("HANDLED_TEST_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
DATABASE = os.environ.get("HANDLED_BENCH_DB", "handled_bench_imp")
TWINS = {  # twin table -> (integration, key) for the ZIP5-keyed kinds
    "bench_us_zips": ("us-zips", ("zip", "city")),
    "bench_gaz_zcta": ("gaz-zcta", ("geoid", "aland")),
}


def bench_env(workdir: Path) -> dict:
    return {**os.environ, "PRIMARY_DATABASE_URL": f"{PG_SERVER}/{DATABASE}", "SPLIT_DB_MODE": "false",
            "REDIS_URL": os.environ.get("HANDLED_BENCH_REDIS", "redis://127.0.0.1:6379/5"),
            "SECRET_KEY": "bench-secret-key-0123456789abcdef",
            "IMPORT_ARCHIVE_DIR": str(workdir / "archive"), "IMPORT_MAX_BYTES": str(8 << 30)}


def admin(sql: str) -> None:
    conn = psycopg2.connect(f"{PG_SERVER}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def run_sql(sql: str, fetch: bool = False):
    conn = psycopg2.connect(f"{PG_SERVER}/{DATABASE}")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
        result = cur.fetchall() if fetch else None
    conn.close()
    return result


def prepare_database(env: dict) -> None:
    admin(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{DATABASE}"')
    subprocess.run([sys.executable, "-m", "flask", "db", "migrate"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    for twin, (integration_id, key) in TWINS.items():
        source = {"us-zips": "us_zips", "gaz-zcta": "gaz_zcta_national"}[integration_id]
        run_sql(f"CREATE TABLE workspace.{twin} (LIKE workspace.{source} INCLUDING CONSTRAINTS);"
                f"ALTER TABLE workspace.{twin} ADD PRIMARY KEY ({', '.join(key)})")


# ---- file writers (the real formats)


def write_usps(folder: Path) -> tuple[list[Path], int]:
    path = folder / "3D_Base_Service_Standard_Directory_01152025.csv"
    services = ("PRI", "GAL", "MKT", "PER", "PKG", "FCM", "GAH", "PFC")
    rng = random.Random(3)
    days = [str(d) for d in range(1, 6)] + [""]
    with open(path, "w") as out:
        out.write("Origin_ZIP_Code,Destination_ZIP_Code," + ",".join(f"{s}_Service_Standard" for s in services) + "\n")
        for origin in range(1000):
            for dest in range(1000):
                out.write(f"{origin:03d},{dest:03d},{','.join(rng.choice(days) for _ in services)}\n")
    return [path], 1_000_000


def write_ground(folder: Path, rows: int) -> tuple[list[Path], int]:
    files, states = [], ["NY", "NJ", "PA", "CA", "TX", "PR", "AK"]
    for n in range((rows + 99_999) // 100_000):
        path = folder / f"{10001 + n:05d}.csv"
        with open(path, "w") as out:
            for dest in range(100_000):
                out.write(f"{10001 + n:05d},{dest:05d},{states[dest % 7]},{1 + dest % 5}\r\n")
        files.append(path)
    return files, len(files) * 100_000


def write_us_zips(folder: Path, rows: int) -> tuple[list[Path], int]:
    path = folder / "uszips.csv"
    header = ("zip lat lng city state_id state_name zcta parent_zcta population density county_fips "
              "county_name county_weights county_names_all county_fips_all imprecise military timezone").split()
    with open(path, "w") as out:
        out.write(",".join(f'"{h}"' for h in header) + "\n")
        for i in range(rows):
            population = "" if i % 10 == 0 else str(i % 90_000)
            density = "" if i % 10 == 0 else f"{(i % 5000) / 7:.1f}"
            values = (f"{i % 100_000:05d}", f"{18 + (i % 4000) / 100:.5f}", f"{-66 - (i % 9000) / 100:.5f}",
                      f"City {i}", "NY", "New York", "TRUE" if i % 3 else "FALSE", "" if i % 4 else f"{i % 100_000:05d}",
                      population, density, "36103", "Suffolk", '{""36103"": 100}', "Suffolk", "36103",
                      "FALSE", "FALSE", "America/New_York")
            out.write(",".join(f'"{v}"' for v in values) + "\n")
    return [path], rows


def write_gaz(folder: Path, rows: int) -> tuple[list[Path], int]:
    path = folder / "2020_Gaz_zcta_national.txt"
    with open(path, "w") as out:
        out.write("GEOID\tALAND\tAWATER\tALAND_SQMI\tAWATER_SQMI\tINTPTLAT\tINTPTLONG                 \n")
        for i in range(rows):
            out.write(f"{i % 100_000:05d}\t{i}\t{i % 7919}\t{i / 2589988:.3f}\t{(i % 7919) / 2589988:.3f}"
                      f"\t{18 + (i % 4000) / 100:.6f}\t{-66 - (i % 9000) / 100:.6f}\n")
    return [path], rows


def write_zone_charts(folder: Path, charts: int) -> tuple[list[Path], int]:
    """Charts of ~500 rows each: single ZIP3s and 3-wide ranges covering 000-999."""
    from openpyxl import Workbook

    header = ["Dest. ZIP", "Ground", "3 Day Select", "2nd Day Air", "2nd Day Air A.M.", "Next Day Air Saver",
              "Next Day Air"]
    files, total = [], 0
    for origin in range(charts):
        book = Workbook(write_only=True)
        sheet = book.create_sheet("Zones")
        for title in ["UPS Zone Chart", "", f"Origin {origin:03d}", "", "", "", "", "Effective 2025"]:
            sheet.append([title])
        sheet.append(header)
        dest = 0
        while dest < 1000:
            width = 1 if dest % 4 else 3
            last = min(dest + width - 1, 999)
            label = f"{dest:03d}" if last == dest else f"{dest:03d}-{last:03d}"
            ground = f"00{2 + dest % 6}"
            sheet.append([label, ground, "302", "202", "-" if dest % 5 == 0 else "242", "132", "102"])
            total += last - dest + 1
            dest = last + 1
        sheet.append([])
        sheet.append(["* Zones marked - are not served."])
        path = folder / f"{origin:03d}.xlsx"
        book.save(path)
        files.append(path)
    return files, total


def expanded_zone_rows(files: list[Path], out_path: Path) -> Path:
    """The charts' rows as CSV, the way \\copy gets them (ranges already expanded)."""
    from openpyxl import load_workbook

    with open(out_path, "w") as out:
        for path in files:
            book = load_workbook(path, read_only=True)
            for row in list(book.worksheets[0].iter_rows(values_only=True))[9:]:
                if not row or not row[0] or not str(row[0])[0].isdigit():
                    continue
                first, _, last = str(row[0]).partition("-")
                zones = ["" if v == "-" else v for v in row[1:7]]
                for dest in range(int(first), int(last or first) + 1):
                    out.write(f"{path.stem},{dest:03d},{','.join(zones)}\n")
            book.close()
    return out_path


# ---- the two contestants, each in a child process


def copy_baseline(table: str, columns: list[str], files: list[Path], options: str) -> float:
    run_sql(f"TRUNCATE workspace.{table}")
    started = time.perf_counter()
    for path in files:
        subprocess.run(["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", f"{PG_SERVER}/{DATABASE}", "-c",
                        f"\\copy workspace.{table} ({', '.join(columns)}) from '{path}' with ({options})"],
                       check=True)
    return time.perf_counter() - started


def project_import(env: dict, integration: str, table: str, files: list[Path], twin_key=None) -> dict:
    run_sql(f"TRUNCATE workspace.{table}")
    spec = Path(env["IMPORT_ARCHIVE_DIR"]).parent / "child-spec.json"
    spec.write_text(json.dumps({"integration": integration, "table": table, "key": twin_key,
                                "files": [str(f) for f in files]}))
    done = subprocess.run([sys.executable, __file__, "--child", str(spec)], cwd=ROOT, env=env,
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(spec: dict) -> None:
    """Runs in the child process: the project's import, then its own peak RSS."""
    from handled import create_app
    from handled.context import system_context
    from handled.integrations import get_integration
    from handled.integrations.service import import_file

    app = create_app()
    ctx = system_context(app.config["HANDLED_SETTINGS"])
    integration = get_integration(spec["integration"])
    if spec["key"]:
        integration = dataclasses.replace(integration, target=spec["table"], key=tuple(spec["key"]))
    with app.app_context():
        started = time.perf_counter()
        outcomes = [import_file(ctx, integration, path, force=True) for path in spec["files"]]
        seconds = time.perf_counter() - started
    bad = [o for o in outcomes if o.status != "succeeded"]
    if bad:
        raise SystemExit(f"import failed: {bad[0].message}")
    print(json.dumps({"seconds": seconds, "rows": sum(o.rows_written for o in outcomes),
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(env, label, integration, table, columns, files, rows, options, twin_key=None, baseline_files=None):
    copy_seconds = copy_baseline(table, columns, baseline_files or files, options)
    result = project_import(env, integration, table, files, twin_key)
    assert result["rows"] == rows, (label, result, rows)
    ratio = (rows / result["seconds"]) / (rows / copy_seconds)
    print(f"{label:<34} {rows:>10,} rows  \\copy {rows / copy_seconds:>10,.0f} rows/s  "
          f"project {rows / result['seconds']:>10,.0f} rows/s  ratio {ratio:4.2f}  "
          f"peak RSS {result['rss_mb']:6.1f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=5_000_000)
    parser.add_argument("--charts", type=int, default=900)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # a spec file: run one import, print JSON
    args = parser.parse_args()
    if args.child:
        return child(json.loads(Path(args.child).read_text()))
    with tempfile.TemporaryDirectory(prefix="handled-bench-imp-") as tmp:
        workdir = Path(tmp)
        env = bench_env(workdir)
        prepare_database(env)
        try:
            run_cases(env, workdir, args)
        finally:
            admin(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def run_cases(env: dict, workdir: Path, args) -> None:
    from handled.integrations import get_integration

    def folder(name):
        path = workdir / name
        path.mkdir()
        return path

    columns = {i: list(get_integration(i).columns) for i in
               ("usps-3d-base", "ups-ground-service", "us-zips", "gaz-zcta", "ups-zones")}
    csv_header, tsv_header = "format csv, header true, null ''", "format csv, delimiter E'\\t', header true, null ''"
    print(f"handled import benchmark: database {DATABASE}, {os.cpu_count()} CPUs", flush=True)

    files, rows = write_usps(folder("usps"))
    measure(env, "usps-3d-base (CSV, 1 file)", "usps-3d-base", "usps_3d_base_service", columns["usps-3d-base"],
            files, rows, csv_header)
    files, rows = write_ground(folder("ground"), args.rows)
    measure(env, f"ups-ground-service (CSV, {len(files)} files)", "ups-ground-service", "ups_ground_service_zip5",
            columns["ups-ground-service"], files, rows, "format csv, null ''")
    quoted_nulls = "format csv, header true, force_null (parent_zcta, population, density)"
    for name, writer, options in (("us-zips", write_us_zips, quoted_nulls), ("gaz-zcta", write_gaz, tsv_header)):
        twin = next(t for t, (i, _) in TWINS.items() if i == name)
        for size in (args.rows, args.big_rows):
            files, rows = writer(folder(f"{name}-{size}"), size)
            fmt = "TSV" if name == "gaz-zcta" else "CSV"
            measure(env, f"{name} twin ({fmt}, 1 file)", name, twin, columns[name], files, rows, options,
                    twin_key=TWINS[twin][1])
            for path in files:
                path.unlink()
    charts, rows = write_zone_charts(folder("zones"), args.charts)
    expanded = expanded_zone_rows(charts, workdir / "zones-expanded.csv")
    measure(env, f"ups-zones (.xlsx, {len(charts)} charts)", "ups-zones", "ups_zones", columns["ups-zones"],
            charts, rows, "format csv, null ''", baseline_files=[expanded])


if __name__ == "__main__":
    main()
