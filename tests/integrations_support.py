"""Helpers for the integrations tests: files written in each real format, and fixtures.

Each writer produces the file the way its publisher does: uszips.csv with every
field quoted, the Gazetteer tab-separated with trailing spaces after the last
header, UPS zone charts as real .xlsx (openpyxl) or .xls (xlwt) workbooks with
eight title rows, UPS ground files without a header, USPS with its header.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest
from psycopg2 import sql

from handled import create_app
from handled.db import data_db
from handled.integrations.service import import_file
from handled.models import ImportRun

USZIPS_HEADER = ["zip", "lat", "lng", "city", "state_id", "state_name", "zcta", "parent_zcta",
                 "population", "density", "county_fips", "county_name", "county_weights",
                 "county_names_all", "county_fips_all", "imprecise", "military", "timezone"]
GAZ_HEADER = ["GEOID", "ALAND", "AWATER", "ALAND_SQMI", "AWATER_SQMI", "INTPTLAT", "INTPTLONG"]
ZONE_HEADER = ["Dest. ZIP", "Ground", "3 Day Select", "2nd Day Air", "2nd Day Air A.M.",
               "Next Day Air Saver", "Next Day Air"]
USPS_HEADER = ["Origin_ZIP_Code", "Destination_ZIP_Code"] + [
    f"{s}_Service_Standard" for s in ("PRI", "GAL", "MKT", "PER", "PKG", "FCM", "GAH", "PFC")]
USPS_NAME = "3D_Base_Service_Standard_Directory_01152025.csv"


# ---- writers


def uszip_row(zip_code="00501", **changes) -> list[str]:
    values = {"zip": zip_code, "lat": "40.81308", "lng": "-73.04639", "city": "Holtsville",
              "state_id": "NY", "state_name": "New York", "zcta": "FALSE", "parent_zcta": "11742",
              "population": "", "density": "", "county_fips": "36103", "county_name": "Suffolk",
              "county_weights": '{"36103": 100}', "county_names_all": "Suffolk",
              "county_fips_all": "36103", "imprecise": "FALSE", "military": "FALSE",
              "timezone": "America/New_York"}
    values.update(changes)
    return [values[c] for c in USZIPS_HEADER]


def write_uszips(path: Path, rows, header=USZIPS_HEADER) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\n")
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def gaz_row(geoid="00601", aland="166847909", awater="799292", aland_sqmi="64.42",
            awater_sqmi="0.309", lat="18.180555", lng="-66.749961") -> list[str]:
    return [geoid, aland, awater, aland_sqmi, awater_sqmi, lat, lng]


def write_gaz(path: Path, rows, header=GAZ_HEADER, header_tail="                    ") -> Path:
    lines = ["\t".join(header) + header_tail] if header is not None else []
    lines += ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def zone_row(dest="008", *zones) -> list[str]:
    return [dest, *(zones or ("002", "302", "202", "242", "132", "102"))]


def write_zone_chart(path: Path, rows, header=ZONE_HEADER, footnotes=None, title_rows=8,
                     number_format: str | None = None) -> Path:
    """A UPS zone chart: titles, header in row 9, data, blank row, footnotes.

    Numbers are written as numeric cells, with ``number_format`` (e.g. "000") if given.
    """
    titles = [["UPS Zone Chart"], ["Ground, 3 Day Select, 2nd Day Air, Next Day Air"],
              ["For shipments originating in ZIP codes " + path.stem + "-xx"], [], ["Notes:"],
              ["Zones apply to UPS services listed below"], [], ["Effective January 2025"]][:title_rows]
    footnotes = footnotes if footnotes is not None else [
        [], ["* For Hawaii and Alaska see the separate zone charts."],
        ["Zones marked - are not served."]]
    table = titles + ([header] if header is not None else []) + list(rows) + footnotes
    if path.suffix.lower() == ".xls":
        import xlwt

        book = xlwt.Workbook()
        sheet = book.add_sheet("Zones")
        padded = xlwt.easyxf(num_format_str=number_format) if number_format else None
        for r, cells in enumerate(table):
            for c, value in enumerate(cells):
                if padded is not None and isinstance(value, int):
                    sheet.write(r, c, value, padded)
                else:
                    sheet.write(r, c, value)
        book.save(str(path))
    else:
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        for r, cells in enumerate(table, start=1):
            for c, value in enumerate(cells, start=1):
                cell = sheet.cell(row=r, column=c, value=value)
                if number_format and isinstance(value, int):
                    cell.number_format = number_format
        book.save(path)
    return path


def ground_row(origin="10001", dest="00501", state="NY", days="1") -> list[str]:
    return [origin, dest, state, days]


def write_ground(path: Path, rows, trailing_empty=False) -> Path:
    tail = "," if trailing_empty else ""
    path.write_text("".join(",".join(r) + tail + "\r\n" for r in rows), encoding="utf-8")
    return path


def usps_row(origin="005", dest="006", *days) -> list[str]:
    return [origin, dest, *(days or ("1", "2", "3", "2", "2", "2", "2", "2"))]


def write_usps(path: Path, rows, header=USPS_HEADER) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return path


# ---- database helpers


def table_rows(target: str, order_by: str = "1, 2") -> list[tuple]:
    with data_db.connection().cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM {} ORDER BY " + order_by).format(
            sql.Identifier("workspace", target)))
        return cur.fetchall()


def table_digest(target: str) -> tuple[int, str]:
    """Row count and md5 of every row's text in order: equal digests, equal tables."""
    with data_db.connection().cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                            "FROM {} t").format(sql.Identifier("workspace", target)))
        return cur.fetchone()


def last_run() -> ImportRun:
    return ImportRun.select().order_by(ImportRun.id.desc()).first()


def assert_refused(integration_id: str, path: Path, target: str, *, message: str | None = None,
                   rejected: list[tuple[int, str]] | None = None, file_name: str | None = None,
                   partial: bool = False):
    """Import ``path`` expecting a refusal: table byte-for-byte unchanged, history says why."""
    before = table_digest(target)
    outcome = import_file(integration_id, path, file_name=file_name, partial=partial)
    assert outcome.status == "failed", outcome
    assert table_digest(target) == before
    run = ImportRun.get_by_id(outcome.run_id)
    assert run.status == "failed" and run.finished_at is not None
    if message is not None:
        assert message in run.message, run.message
    if rejected is not None:
        found = [(r["line"], r["column"]) for r in run.rejected_rows]
        assert found == rejected, run.rejected_rows
        assert run.rows_rejected == len(rejected)
    return run


@pytest.fixture
def imp_settings(settings, tmp_path):
    return dataclasses.replace(settings, import_archive_dir=str(tmp_path / "archive"),
                               import_upload_dir=str(tmp_path / "uploads"))


@pytest.fixture
def imp_app(imp_settings):
    application = create_app(imp_settings)
    application.config.update(TESTING=True)
    with application.app_context():
        yield application


@pytest.fixture
def files(tmp_path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    return folder
