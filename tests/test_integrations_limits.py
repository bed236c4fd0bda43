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
from tests.support.import_files import (write_far_cell_xls, write_far_cell_xlsx, write_sheet_xlsx,
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
