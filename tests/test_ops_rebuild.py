"""flask data rebuild: DATA rebuilt into an empty database from the source archive and
PRIMARY's run history gives the same workspace and reference tables."""

from __future__ import annotations

from dataclasses import replace

import pytest

from handled import create_app
from handled.models import SCHEMAS
from handled.settings import load_settings
from tests.support.databases import Databases, connect, mode_env
from tests.support.operations import RUN_LEDGER, import_everything, rebuilt_alike, table_fingerprints


@pytest.fixture
def dbs():
    databases = Databases("rebuild")
    yield databases
    databases.drop_all()


@pytest.mark.flow("Restore")
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
    assert set(after) == set(before) and rebuilt_alike(after, before) == []   # reference and workspace tables
    assert len(after[RUN_LEDGER]) == len(before[RUN_LEDGER]) - 1     # the rebuild's own runs; one us-zips replaced

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
