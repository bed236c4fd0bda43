"""flask data rebuild: DATA rebuilt into an empty database from the source archive and
PRIMARY's run history gives the same workspace and reference tables."""

from __future__ import annotations

from dataclasses import replace

import pytest

from handled import create_app
from handled.integrations.service import import_file
from handled.models import SCHEMAS
from handled.settings import load_settings
from handled.context import system_context
from handled.transformations.service import run_transformations
from tests.support.databases import Databases, connect, mode_env
from tests.support.import_files import (USPS_NAME, gaz_row, ground_row, usps_row, uszip_row, write_gaz,
                                        write_ground, write_usps, write_uszips, write_zone_chart, zone_row)
from tests.support.operations import table_fingerprints


@pytest.fixture
def dbs():
    databases = Databases("rebuild")
    yield databases
    databases.drop_all()


def import_everything(app, files):
    """Every integration, with history worth following: a replaced file and two upserted ones."""
    files.mkdir()
    ctx = system_context(app.config["HANDLED_SETTINGS"])
    with app.app_context():
        old = write_uszips(files / "uszips.csv", [uszip_row("10001", population="5")])
        assert import_file(ctx, "us-zips", old).status == "succeeded"
        (files / "v2").mkdir()
        zips = [uszip_row("10001", population="100", zcta="TRUE"), uszip_row("10002", population="300", zcta="TRUE"),
                uszip_row("20001", city="Yew", state_id="MD", state_name="Maryland", population="7", zcta="TRUE"),
                uszip_row("30001", city="Early", state_id="FL", state_name="Florida", population="50", zcta="TRUE")]
        assert import_file(ctx, "us-zips", write_uszips(files / "v2" / "uszips.csv", zips)).status == "succeeded"
        gaz = [gaz_row("10001"), gaz_row("10002", aland="300"), gaz_row("20001"), gaz_row("30001")]
        assert import_file(ctx, "gaz-zcta", write_gaz(files / "2020_Gaz_zcta_national.txt", gaz)).status == "succeeded"
        for origin, rows in (("100", [zone_row("200"), zone_row("300")]), ("200", [zone_row("100")])):
            assert import_file(ctx, "ups-zones", write_zone_chart(files / f"{origin}.xlsx", rows)).status == "succeeded"
        ground = [ground_row("10001", "20001", "MD", "2"), ground_row("10001", "30001", "FL", "3")]
        assert import_file(ctx, "ups-ground-service", write_ground(files / "10001.csv", ground)).status == "succeeded"
        usps = [usps_row("100", "200"), usps_row("100", "300"), usps_row("200", "100")]
        assert import_file(ctx, "usps-3d-base", write_usps(files / USPS_NAME, usps)).status == "succeeded"
        run_transformations(ctx, [], run_all=True)


@pytest.mark.flow("DATA down")
def test_rebuild_into_an_empty_data_database_gives_the_same_tables(settings, tmp_path, dbs):
    archive = tmp_path / "archive"
    app = create_app(replace(settings, import_archive_dir=str(archive), import_upload_dir=str(tmp_path / "up")))
    import_everything(app, tmp_path / "files")
    before = table_fingerprints(settings.data.dbname, SCHEMAS["data"])
    assert before["reference.zip3_reference"] and before["reference.delivery_matrix"]

    empty = dbs.name("data", create=True)
    split = load_settings(mode_env("split", settings.primary.dbname, empty))
    fresh = create_app(replace(split, import_archive_dir=str(archive), import_upload_dir=str(tmp_path / "up")))
    runner = fresh.test_cli_runner()

    dry = runner.invoke(args=["data", "rebuild", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would apply 0001_workspace_reference_schemas" in dry.output
    assert "us-zips: would re-import uszips.csv" in dry.output and dry.output.count("ups-zones: would") == 2
    with connect(empty) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname IN ('workspace', 'reference', '_yoyo_data')")
        assert cur.fetchone()[0] == 0  # the dry run changed nothing

    result = runner.invoke(args=["data", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "built zip3-reference" in result.output and "built delivery-matrix" in result.output
    after = table_fingerprints(empty, SCHEMAS["data"])
    for table in before:
        assert after[table] == before[table], table  # reference and workspace tables alike

    again = runner.invoke(args=["data", "rebuild"])
    assert again.exit_code == 1 and "already holds workspace rows" in again.output


@pytest.mark.flow("DATA down")
def test_rebuild_refuses_when_the_archive_lacks_a_file(settings, tmp_path, dbs):
    archive = tmp_path / "archive"
    app = create_app(replace(settings, import_archive_dir=str(archive), import_upload_dir=str(tmp_path / "up")))
    import_everything(app, tmp_path / "files")
    victim = next(p for p in archive.rglob("*") if p.is_file())
    victim.unlink()
    empty = dbs.name("data2", create=True)
    split = load_settings(mode_env("split", settings.primary.dbname, empty))
    fresh = create_app(replace(split, import_archive_dir=str(archive)))
    result = fresh.test_cli_runner().invoke(args=["data", "rebuild"])
    assert result.exit_code == 1
    assert "lacks 1 file(s) the history needs" in result.output and "Traceback" not in result.output
