"""Backups of the import archive: incremental by sha256, restored whole from the newest one, and
the end to end promise: back up, lose PRIMARY, DATA and the archive, restore, rebuild, every
table as before."""

from __future__ import annotations

import json
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from handled import create_app
from handled.integrations.service import import_file
from handled.models import SCHEMAS
from handled.ops.archive_backup import archive_files, file_sha256
from handled.schema.migrations import migrate, resolve_targets
from handled.settings import load_settings
from tests.support.databases import Databases, db_url, drop_database, mode_env, with_roles
from tests.support.environment import MODES
from handled.context import system_context
from tests.support.import_files import gaz_row, uszip_row, write_gaz, write_uszips, write_zone_chart, zone_row
from tests.support.operations import import_everything, populate_primary, rebuilt_alike, table_fingerprints
from tests.support.redis import flush_test_redis


def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def written(output: str) -> list[Path]:
    """The backup files a `flask backup create` says it wrote."""
    return [Path(line.split()[1]) for line in output.splitlines() if line.startswith("wrote ")]


def members(path: Path) -> list[str]:
    with tarfile.open(path, "r:gz") as tar:
        return sorted(m.name for m in tar.getmembers())


@pytest.fixture
def archive_app(imp_settings, tmp_path):
    app = create_app(replace(imp_settings, backup_dir=str(tmp_path / "backups")))
    app.config.update(TESTING=True)
    return app


def import_zips(app, files, name: str, zips: list[str]):
    settings = app.config["HANDLED_SETTINGS"]
    with app.app_context():
        path = write_uszips(files / name, [uszip_row(z) for z in zips])
        assert import_file(system_context(settings), "us-zips", path).status == "succeeded"


@pytest.mark.flow("Backups")
@pytest.mark.flow("Restore")
def test_archive_backups_store_only_new_files_and_the_newest_restores_them_all(archive_app, files):
    settings = archive_app.config["HANDLED_SETTINGS"]
    (files / "a").mkdir(), (files / "b").mkdir()
    import_zips(archive_app, files / "a", "uszips.csv", ["10001"])
    first = cli(archive_app, "backup", "create", "--target", "archive")
    assert first.exit_code == 0, first.output
    assert "1 files listed, 1 new stored" in first.output
    one = written(first.output)[0]
    assert one.name.startswith("handled-archive-") and one.suffix == ".tgz"

    import_zips(archive_app, files / "b", "uszips.csv", ["10001", "10002"])
    with archive_app.app_context():
        gaz = write_gaz(files / "2020_Gaz_zcta_national.txt", [gaz_row("10001")])
        assert import_file(system_context(settings), "gaz-zcta", gaz).status == "succeeded"
    archived = archive_files(settings.import_archive_dir)
    assert len(archived) == 3
    second = written(cli(archive_app, "backup", "create", "--target", "archive").output)[0]
    third_run = cli(archive_app, "backup", "create", "--target", "archive")
    assert "3 files listed, 0 new stored" in third_run.output
    third = written(third_run.output)[0]

    # Each backup holds only what no earlier one did; the newest's manifest lists every file.
    stored_first = {name.split("/")[1] for name in members(one)}
    stored_second = {name.split("/")[1] for name in members(second)}
    assert len(stored_first) == 1 and len(stored_second) == 2 and not stored_first & stored_second
    assert members(third) == []
    manifest = json.loads(third.with_suffix(".json").read_text())
    assert manifest["side"] == "archive" and set(manifest["files"]) == set(archived)
    assert {entry["backup"] for entry in manifest["files"].values()} == {one.name, second.name}
    originals = {sha: path.read_bytes() for sha, path in archived.items()}

    # The archive is lost; the newest backup gives all of it back, each file checked.
    shutil.rmtree(settings.import_archive_dir)
    restored = cli(archive_app, "backup", "restore", str(third))
    assert restored.exit_code == 0, restored.output
    assert "3 file(s) written, 0 already there" in restored.output
    back = archive_files(settings.import_archive_dir)
    assert {sha: path.read_bytes() for sha, path in back.items()} == originals
    assert all(file_sha256(path) == sha for sha, path in back.items())

    # Again: nothing to write. A file damaged in place is written again from the backup.
    again = cli(archive_app, "backup", "restore", str(third))
    assert "0 file(s) written, 3 already there" in again.output
    victim = next(iter(back.values()))
    victim.write_bytes(b"bit rot")
    healed = cli(archive_app, "backup", "restore", str(third))
    assert "1 file(s) written, 2 already there" in healed.output
    assert victim.read_bytes() == originals[victim.name]

    # Into another folder, and refusals in one sentence.
    elsewhere = cli(archive_app, "backup", "restore", str(third), "--to-dir", str(files / "elsewhere"))
    assert elsewhere.exit_code == 0 and len(archive_files(files / "elsewhere")) == 3
    to_db = cli(archive_app, "backup", "restore", str(third), "--to", db_url("whatever"))
    assert to_db.exit_code == 1 and "is an archive backup: it restores into a folder" in to_db.output
    one.unlink()
    shutil.rmtree(settings.import_archive_dir)
    lacking = cli(archive_app, "backup", "restore", str(third))
    assert lacking.exit_code == 1 and "Traceback" not in lacking.output
    assert f"needs earlier archive backups that are not in {third.parent}: {one.name} (1 file(s))" in lacking.output
    assert not Path(settings.import_archive_dir).exists() or not archive_files(settings.import_archive_dir)

    # A backup of an archive lacking files the run history names says so (and fails its run).
    short = cli(archive_app, "backup", "create", "--target", "archive")   # us-zips replaces: its latest file only
    assert short.exit_code == 1 and "0 files listed" in short.output
    assert "but the archive lacks 2 file(s) that 'flask data rebuild' needs (first: " in short.output
    # A backup made once they are back stores again the file whose only backup is gone.
    shutil.copytree(files / "elsewhere", settings.import_archive_dir)
    heal = cli(archive_app, "backup", "create", "--target", "archive")
    assert "3 files listed, 1 new stored" in heal.output


@pytest.mark.flow("Backups")
def test_retention_keeps_every_archive_backup_a_kept_one_needs(imp_settings, files, tmp_path):
    app = create_app(replace(imp_settings, backup_dir=str(tmp_path / "backups"), backup_keep=1))
    app.config.update(TESTING=True)
    import_zips(app, files, "uszips.csv", ["10001"])
    holder = written(cli(app, "backup", "create", "--target", "archive").output)[0]
    empty = written(cli(app, "backup", "create", "--target", "archive").output)[0]   # nothing new: holds nothing
    third = cli(app, "backup", "create", "--target", "archive")
    assert f"retention: deleted {empty}" in third.output       # beyond BACKUP_KEEP=1, needed by nobody
    assert f"retention: deleted {holder}" not in third.output  # beyond it too, but holds the file the newest lists
    assert holder.exists() and holder.with_suffix(".json").exists() and not empty.exists()
    shutil.rmtree(imp_settings.import_archive_dir)
    restored = cli(app, "backup", "restore", str(written(third.output)[0]))
    assert restored.exit_code == 0 and "1 file(s) written" in restored.output


PASSPHRASE = "a long passphrase nobody guesses 42"


def test_an_encrypted_archive_backup_restores_only_with_the_key(imp_settings, files, tmp_path):
    keyed = replace(imp_settings, backup_dir=str(tmp_path / "backups"), backup_encryption_passphrase=PASSPHRASE)
    app = create_app(keyed)
    app.config.update(TESTING=True)
    import_zips(app, files, "uszips.csv", ["10001", "99999"])
    made = cli(app, "backup", "create", "--target", "archive")
    assert made.exit_code == 0, made.output
    path = written(made.output)[0]
    body = path.read_bytes()
    assert not body.startswith(b"\x1f\x8b") and b"99999" not in body
    assert json.loads(path.with_suffix(".json").read_text())["encrypted"] is True
    shutil.rmtree(imp_settings.import_archive_dir)

    plain = create_app(replace(keyed, backup_encryption_passphrase=None))
    refused = cli(plain, "backup", "restore", str(path))
    assert refused.exit_code == 1 and f"{path.name} is encrypted" in refused.output
    wrong = create_app(replace(keyed, backup_encryption_passphrase="not the passphrase it was made with"))
    undecryptable = cli(wrong, "backup", "restore", str(path))
    assert undecryptable.exit_code == 1 and "could not be decrypted with BACKUP_ENCRYPTION_PASSPHRASE" in \
        undecryptable.output and "Traceback" not in undecryptable.output
    assert not archive_files(imp_settings.import_archive_dir)
    restored = cli(app, "backup", "restore", str(path))
    assert restored.exit_code == 0 and "1 file(s) written" in restored.output
    assert b"99999" in next(iter(archive_files(imp_settings.import_archive_dir).values())).read_bytes()


# --- the end to end promise ------------------------------------------------------------------

@pytest.fixture
def own_databases():
    databases = Databases("bk_e2e")
    yield databases
    databases.drop_all()
    flush_test_redis()


def deployment(mode: str, primary: str, data: str | None, tmp_path: Path, migrated: bool = True):
    """Settings over databases of the test's own (their roles made), with this deployment's folders."""
    settings = with_roles(load_settings(mode_env(mode, primary, data)))
    if migrated:
        for target in resolve_targets(settings, "all"):
            migrate(target)
    return replace(settings, import_archive_dir=str(tmp_path / "archive"), import_upload_dir=str(tmp_path / "up"),
                   backup_dir=str(tmp_path / "backups"))


def app_over(settings):
    app = create_app(settings)
    app.config.update(TESTING=True)
    return app


@pytest.mark.flow("Backups")
@pytest.mark.flow("Restore")
@pytest.mark.parametrize("mode", MODES)
def test_back_up_lose_primary_data_and_archive_restore_rebuild_every_table_as_before(mode, tmp_path,
                                                                                    own_databases):
    live_primary = own_databases.name(f"{mode}_live", create=True)
    live_data = own_databases.name(f"{mode}_live_data", create=True) if mode == "split" else None
    app = app_over(deployment(mode, live_primary, live_data, tmp_path))
    populate_primary(app)
    early = tmp_path / "early"
    early.mkdir()
    with app.app_context():   # an upsert-mode file whose only archive backup is an earlier one
        chart = write_zone_chart(early / "300.xlsx", [zone_row("100")])
        assert import_file(system_context(app.config["HANDLED_SETTINGS"]), "ups-zones", chart).status == "succeeded"
    assert cli(app, "backup", "create", "--target", "archive").exit_code == 0
    import_everything(app, tmp_path / "files")
    before = {"primary": table_fingerprints(live_primary, SCHEMAS["primary"]),
              "data": table_fingerprints(live_data or live_primary, SCHEMAS["data"])}
    assert before["data"]["reference.delivery_matrix"] and before["primary"]["config.import_runs"]

    made = cli(app, "backup", "create", "--target", "all")
    assert made.exit_code == 0, made.output
    primary_dump, data_dump, archive = written(made.output)
    assert "primary" in primary_dump.name and "data" in data_dump.name and archive.suffix == ".tgz"
    manifest = json.loads(archive.with_suffix(".json").read_text())
    assert manifest["stored"] == 7 and len(manifest["files"]) == 8   # the early chart is in the earlier backup

    # The disaster: both databases and the archive are gone (the backups survive, e.g. copied off).
    for name in filter(None, (live_primary, live_data)):
        drop_database(name)
    shutil.rmtree(tmp_path / "archive")

    new_primary = own_databases.name(f"{mode}_new")
    new_data = own_databases.name(f"{mode}_new_data", create=True) if mode == "split" else None
    restored = cli(app, "backup", "restore", str(primary_dump), "--to", db_url(new_primary))
    assert restored.exit_code == 0 and "every table matches" in restored.output, restored.output
    assert table_fingerprints(new_primary, SCHEMAS["primary"]) == before["primary"]
    files = cli(app, "backup", "restore", str(archive))
    assert files.exit_code == 0 and "8 file(s) written" in files.output, files.output

    # DATA is not restored from its dump: it is rebuilt from the archive and PRIMARY's history.
    rebuilt_app = app_over(deployment(mode, new_primary, new_data, tmp_path, migrated=False))
    assert cli(rebuilt_app, "db", "migrate", "--target", "primary").exit_code == 0   # up to date: nothing to do
    rebuild = cli(rebuilt_app, "data", "rebuild")
    assert rebuild.exit_code == 0, rebuild.output
    after = table_fingerprints(new_data or new_primary, SCHEMAS["data"])
    assert set(after) == set(before["data"]) and rebuilt_alike(after, before["data"]) == []
    # PRIMARY kept every row it had; the rebuild only added its own runs and audit rows.
    now = table_fingerprints(new_primary, SCHEMAS["primary"])
    for table, rows in before["primary"].items():
        if table in ("config.import_runs", "config.transformation_runs", "config.audit_log",
                     "config.backup_runs"):
            assert set(rows) <= set(now[table]), table
        else:
            assert now[table] == rows, table
    assert cli(rebuilt_app, "db", "check").exit_code == 0
