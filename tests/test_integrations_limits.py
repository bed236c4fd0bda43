"""Hostile files: spreadsheet bombs and archive bombs are refused, each as a failed run with its reason.

A sheet that declares (or spreads its cells over) millions of cells made the
reader allocate the whole range: python-calamine aborts the process (SIGABRT,
which Python cannot catch), so the tests that feed such a file to the code run
it in a subprocess, through the real CLI and through the upload page, and then
read the run history from PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import zipfile

import pytest

from handled.integrations.service import import_paths
from handled.models import ImportRun
from tests.support.databases import mode_env
from tests.support.environment import ROOT
from handled.integrations.base import FileRefused
from handled.integrations.limits import FileLimits, check_spreadsheet
from tests.support.import_files import (SPREADSHEETML, patch_xls_records, shared_strings_xml, sheet_xml, write_far_cell_xls,
                                        write_far_cell_xlsx, write_sheet_xlsx, write_xlsx_parts,
                                        write_zone_chart, zone_rows)
from tests.support.imports import table_digest
from tests.support.processes import run_flask

BOMBS = {
    # name: (writer, the range the refusal names)
    "openpyxl A1 and XFD1048576": (write_far_cell_xlsx, "A1:XFD1048576"),
    "dimension says A1:B2, cells at A1 and XFD1048576": (
        lambda p: write_sheet_xlsx(p, {"A1": "a", "XFD1048576": "b"}, dimension="A1:B2"), "A1:XFD1048576"),
    "dimension says A1:XFD1048576, two cells": (
        lambda p: write_sheet_xlsx(p, {"A1": "a", "B2": "b"}, dimension="A1:XFD1048576"), "A1:XFD1048576"),
    "xls A1 and IV65536": (write_far_cell_xls, "A1:IV65536"),
}


def app_env(settings, tmp_path) -> dict:
    env = mode_env(settings.mode, settings.primary.dbname,
                   settings.data.dbname if settings.split_db_mode else None,
                   IMPORT_ARCHIVE_DIR=tmp_path / "archive", IMPORT_UPLOAD_DIR=tmp_path / "uploads")
    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "FLASK_APP": str(ROOT / "app.py"), **env}


def bomb(tmp_path, label: str):
    writer, declared = BOMBS[label]
    suffix = ".xls" if "xls " in label else ".xlsx"
    path = tmp_path / "files" / f"007{suffix}"
    path.parent.mkdir(exist_ok=True)
    writer(path)
    assert path.stat().st_size < 10_000  # a few KB declare billions of cells
    return path, declared


def assert_failed_run(name: str, declared: str) -> ImportRun:
    assert ImportRun.select().where(ImportRun.status == "running").count() == 0
    run = ImportRun.select().order_by(ImportRun.id.desc()).first()
    assert run is not None, "no run was recorded"
    assert run.file_name == name and run.status == "failed" and run.finished_at is not None, (run.status, run.message)
    assert declared in run.message and "IMPORT_SHEET_MAX_CELLS" in run.message, run.message
    assert name in run.message, run.message
    return run


@pytest.mark.parametrize("label", list(BOMBS))
def test_cli_refuses_a_spreadsheet_bomb_as_a_failed_run(imp_app, settings, tmp_path, label):
    path, declared = bomb(tmp_path, label)
    before = table_digest("ups_zones")
    result = run_flask("integrations", "import", "ups-zones", str(path), env=app_env(settings, tmp_path),
                       cwd=tmp_path, timeout=300)
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])  # not -6 (SIGABRT)
    assert f"{path.name}: failed" in result.stderr and declared in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert_failed_run(path.name, declared)
    assert table_digest("ups_zones") == before


UPLOAD_SCRIPT = textwrap.dedent("""
    import os, sys
    from handled import create_app
    from handled.settings import load_settings
    from tests.support.accounts import make_user, sign_in_client

    app = create_app(load_settings(dict(os.environ)))
    app.config.update(TESTING=True)
    client = sign_in_client(app, make_user(app, ["run_imports"]))
    path = sys.argv[1]
    with open(path, "rb") as handle:
        response = client.post("/integrations/ups-zones/import", content_type="multipart/form-data",
                               data={"files": [(handle, os.path.basename(path))]})
    print(response.status_code, response.headers.get("Location"))
    with client.session_transaction() as session:
        for category, message in session.get("_flashes", []):
            print(category, message)
""")


@pytest.mark.parametrize("label", ["openpyxl A1 and XFD1048576", "xls A1 and IV65536"])
def test_upload_page_refuses_a_spreadsheet_bomb_as_a_failed_run(imp_app, settings, tmp_path, label):
    path, declared = bomb(tmp_path, label)
    result = subprocess.run([sys.executable, "-c", UPLOAD_SCRIPT, str(path)], env=app_env(settings, tmp_path),
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])  # the worker survives
    status, location = result.stdout.splitlines()[0].split(" ", 1)
    assert status == "302" and "/integrations/runs/" in location, result.stdout
    assert f"error {path.name}: failed." in result.stdout and declared in result.stdout, result.stdout
    assert_failed_run(path.name, declared)


# ---- ways round the check (security review F3): each one made calamine abort the process


def _xls_with_a_zero_record_before_a_far_cell(path):
    """A zero-length record of opcode 0 (which looks like the stream's padding) where DIMENSIONS was,
    then a text cell moved to row 65536, column 65536: 4.3 billion cells for calamine."""
    import struct

    import xlwt

    path.parent.mkdir(parents=True, exist_ok=True)
    book = xlwt.Workbook()
    sheet = book.add_sheet("Zones")
    sheet.write(0, 0, "UPS Zone Chart")
    sheet.write(2, 3, "x")
    book.save(str(path))

    def patch(opcode, body):
        if opcode == 0x0200:   # DIMENSIONS -> an empty record 0, then an unknown record filling the rest
            return struct.pack("<HHHH", 0, 0, 0x0FFF, len(body) - 4) + bytes(len(body) - 4)
        if opcode == 0x00FD and struct.unpack_from("<HH", body) == (2, 3):   # LABELSST at D3
            return struct.pack("<HHHH", 0x00FD, len(body), 65535, 65535) + bytes(body[4:])
        return None

    return patch_xls_records(path, patch)


def _opendocument_bomb(path):
    """650 bytes of OpenDocument: 50,000 rows of 1,000 cells by repeat counts (calamine expands them)."""
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    content = ('<?xml version="1.0" encoding="UTF-8"?><office:document-content '
               'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
               'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
               'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:spreadsheet>'
               '<table:table table:name="s"><table:table-row table:number-rows-repeated="50000">'
               '<table:table-cell table:number-columns-repeated="1000" office:value-type="string">'
               '<text:p>x</text:p></table:table-cell></table:table-row></table:table>'
               '</office:spreadsheet></office:body></office:document-content>')
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("META-INF/manifest.xml", "<manifest/>")
        archive.writestr("content.xml", content)
    return path


BYPASSES = {
    # name: (writer, what the refusal names)
    "sheet part not named .xml": (
        lambda p: write_xlsx_parts(p, sheet_xml(), "xl/worksheets/sheet1.bin"), "A1:XFD1048576"),
    "sheet part under xl/media named .png": (
        lambda p: write_xlsx_parts(p, sheet_xml(), "xl/media/image1.png"), "A1:XFD1048576"),
    "root element is not <worksheet>": (
        lambda p: write_xlsx_parts(p, sheet_xml(root="chartsheet")), "A1:XFD1048576"),
    "row number of 10 digits": (lambda p: write_xlsx_parts(p, sheet_xml("B4000000000")), "B4000000000"),
    "column of 8 letters": (lambda p: write_xlsx_parts(p, sheet_xml("AAAAAAAA1")), "AAAAAAAA1"),
    "shared strings declaring 4 billion": (
        lambda p: write_xlsx_parts(p, sheet_xml(None), extra={
            "xl/sharedStrings.xml": ("sharedStrings", shared_strings_xml("4000000000"))}),
        "4,000,000,000 shared strings"),
    "xls: a zero record hides a far cell": (_xls_with_a_zero_record_before_a_far_cell, "A1:CRXP65536"),
    "an OpenDocument sheet with repeated rows and cells, named .xlsx": (
        lambda p: _opendocument_bomb(p), "is not an Excel .xlsx workbook"),
}


@pytest.mark.parametrize("label", list(BYPASSES))
@pytest.mark.one_mode   # refused before anything is written: the same in both modes
def test_spreadsheet_bomb_variants_are_refused_not_aborting(imp_app, settings, tmp_path, label):
    writer, named = BYPASSES[label]
    path = writer(tmp_path / "files" / ("007.xls" if label.startswith("xls") else "007.xlsx"))
    assert path.stat().st_size < 10_000
    before = table_digest("ups_zones")
    result = run_flask("integrations", "import", "ups-zones", str(path), env=app_env(settings, tmp_path),
                       cwd=tmp_path, timeout=300)
    assert result.returncode == 1, (label, "process died", result.returncode, result.stderr[-600:])
    assert f"{path.name}: failed" in result.stderr and named in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert ImportRun.select().where(ImportRun.status == "running").count() == 0
    run = ImportRun.select().order_by(ImportRun.id.desc()).first()
    assert (run.file_name, run.status) == (path.name, "failed") and named in run.message, run.message
    assert table_digest("ups_zones") == before


def test_upload_page_survives_a_sheet_part_not_named_xml(imp_app, settings, tmp_path):
    path = write_xlsx_parts(tmp_path / "files" / "007.xlsx", sheet_xml(), "xl/worksheets/sheet1.bin")
    result = subprocess.run([sys.executable, "-c", UPLOAD_SCRIPT, str(path)], env=app_env(settings, tmp_path),
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, ("the web worker died", result.returncode, result.stderr[-300:])
    assert "error 007.xlsx: failed." in result.stdout and "A1:XFD1048576" in result.stdout, result.stdout
    assert_failed_run(path.name, "A1:XFD1048576")


# The guard alone (no reader runs, so nothing here can abort the test process): each sheet below
# makes calamine or openpyxl read a size the cells do not justify, or names a cell outside Excel's grid.
LIMITS = FileLimits(sheet_max_cells=200_000, zip_max_files=2000, zip_max_bytes=4 << 30)
REFUSED_SHEETS = {
    "a lowercase reference (calamine reads xfd as column 38,000)": (sheet_xml("xfd1048576"), "'xfd1048576'"),
    "a row of 10 digits holding a cell without a reference": (
        sheet_xml(None, rows='<row r="4000000000"><c t="inlineStr"><is><t>b</t></is></c></row>'), "'4000000000'"),
    "a row number 0": (sheet_xml("B0"), "'B0'"),
    "a row past 1,048,576": (sheet_xml("A1048577"), "'A1048577'"),
    "a column past XFD": (sheet_xml("XFE1"), "'XFE1'"),
    "a reference with junk after it": (sheet_xml("A1B2"), "'A1B2'"),
    "a row r= that is not a number": (sheet_xml(None, rows='<row r="+2"/>'), "'+2'"),
    "a row r=1048576 and no cells": (sheet_xml(None, rows='<row r="1048576"/>'), "A1:A1048576"),
    "a <dimension> alone": (sheet_xml(None, head='<dimension ref="A1:XFD1048576"/>'), "A1:XFD1048576"),
    "a <dimension> past the grid": (sheet_xml(None, head='<dimension ref="A1:B4000000000"/>'), "'A1:B4000000000'"),
    "a merged range past the grid": (
        sheet_xml(None).replace("</sheetData>", '</sheetData><mergeCells count="1">'
                                '<mergeCell ref="A1:XFD1048577"/></mergeCells>'), "'A1:XFD1048577'"),
}


@pytest.mark.parametrize("label", list(REFUSED_SHEETS))
def test_sheets_that_name_a_size_their_cells_do_not_hold_are_refused(tmp_path, label):
    sheet, named = REFUSED_SHEETS[label]
    path = write_xlsx_parts(tmp_path / "007.xlsx", sheet)
    with pytest.raises(FileRefused) as refused:
        check_spreadsheet(path, "007.xlsx", "xlsx", LIMITS)
    assert str(refused.value).startswith("007.xlsx ") and named in str(refused.value), str(refused.value)


def test_a_sheet_hidden_at_a_literal_dot_path_is_scanned(tmp_path):
    # calamine joins "xl/" and the target as written: "./worksheets/s.bin" is the member "xl/./worksheets/s.bin"
    path = write_xlsx_parts(tmp_path / "007.xlsx", sheet_xml(), "xl/./worksheets/s.bin")
    with pytest.raises(FileRefused, match="A1:XFD1048576"):
        check_spreadsheet(path, "007.xlsx", "xlsx", LIMITS)


def test_binary_parts_and_honest_shared_strings_are_not_refused(tmp_path):
    png = "\x89PNG\r\n\x1a\n" + "\x00" * 64
    path = write_xlsx_parts(tmp_path / "007.xlsx", sheet_xml("G1000"), extra={
        "xl/sharedStrings.xml": ("sharedStrings", shared_strings_xml("3", ["a", "b", "c"])),
        "xl/media/image1.png": ("image", png),
        "xl/printerSettings/printerSettings1.bin": ("printerSettings", "\x00\x01binary"),
        "xl/custom/blob.bin": ("customData", "\x00\x01 not xml"),
        # the formula cells of every sheet in one list: A50000 of one sheet and Z1 of another are no sheet's size
        "xl/calcChain.xml": ("calcChain", f'<calcChain xmlns="{SPREADSHEETML}"><c r="A50000" i="1"/>'
                                          '<c r="Z1" i="2"/></calcChain>')})
    check_spreadsheet(path, "007.xlsx", "xlsx", LIMITS)   # 1,000 x 7 cells: a zone chart's size


def test_a_real_zone_chart_is_well_inside_the_cell_budget(imp_app, imp_ctx, files):
    rows = zone_rows(999)  # a UPS chart: about 1,000 destinations x 7 columns
    for ext in ("xlsx", "xls"):
        (files / ext).mkdir()
        path = write_zone_chart(files / ext / f"007.{ext}", rows)
        [outcome] = import_paths(imp_ctx, "ups-zones", [path], force=True)
        assert outcome.status == "succeeded", outcome.message


# ---- archives


def runs_named(name: str) -> list[ImportRun]:
    return list(ImportRun.select().where(ImportRun.file_name == name))


def test_an_archive_with_too_many_members_is_one_failed_run(imp_app, imp_ctx, files):
    bundle = files / "charts.zip"
    count = imp_ctx.settings.import_zip_max_files + 1 if hasattr(imp_ctx.settings, "import_zip_max_files") else 2001
    with zipfile.ZipFile(bundle, "w") as archive:
        for n in range(count):
            archive.writestr(f"zones/{n:04d}.txt", b"x")
    outcomes = import_paths(imp_ctx, "ups-zones", [bundle])
    assert [(o.file_name, o.status) for o in outcomes] == [("charts.zip", "failed")]
    assert f"charts.zip holds {count:,} files" in outcomes[0].message
    assert "IMPORT_ZIP_MAX_FILES" in outcomes[0].message
    assert ImportRun.select().count() == 1


def test_a_zip_bomb_is_one_failed_run_and_nothing_is_extracted(imp_app, imp_ctx, files):
    bundle = files / "grounds.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("10001.csv", b"0" * (64 << 20))   # 64 MiB that deflate to ~64 KB
    assert bundle.stat().st_size < 200_000
    outcomes = import_paths(imp_ctx, "ups-ground-service", [bundle])
    assert [(o.file_name, o.status) for o in outcomes] == [("grounds.zip", "failed")]
    assert "grounds.zip expands" in outcomes[0].message and "times its size" in outcomes[0].message
    assert runs_named("10001.csv") == []


def test_an_archive_over_the_total_size_is_one_failed_run(imp_app, imp_settings, files):
    from handled.context import system_context

    charts = [write_zone_chart(files / f"{o}.xlsx", zone_rows(3)) for o in ("007", "010")]
    bundle = files / "charts.zip"
    with zipfile.ZipFile(bundle, "w") as archive:   # stored: ratio 1, only the total is over
        for chart in charts:
            archive.write(chart, chart.name)
    total = sum(chart.stat().st_size for chart in charts)
    ctx = system_context(dataclasses.replace(imp_settings, import_zip_max_bytes=total - 1))
    outcomes = import_paths(ctx, "ups-zones", [bundle])
    assert [(o.file_name, o.status) for o in outcomes] == [("charts.zip", "failed")]
    assert f"{total:,} bytes" in outcomes[0].message and "IMPORT_ZIP_MAX_BYTES" in outcomes[0].message


def test_a_broken_zip_is_a_failed_run(imp_app, imp_ctx, files):
    bundle = files / "charts.zip"
    bundle.write_bytes(b"not a zip")
    outcomes = import_paths(imp_ctx, "ups-zones", [bundle])
    assert [(o.file_name, o.status) for o in outcomes] == [("charts.zip", "failed")]
    assert "charts.zip is not a valid .zip archive" in outcomes[0].message
