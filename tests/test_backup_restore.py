"""flask backup create / restore: back up both sides, destroy the rows, restore into an
empty database, compare every table; retention by count and age; refusals."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from handled import create_app
from handled.models import SCHEMAS
from handled.ops.backup import STAMP_FORMAT, list_backups
from handled.settings import load_settings
from tests.support.accounts import sign_in
from tests.support.databases import Databases, connect, db_url, mode_env, with_roles
from tests.support.operations import populate_primary, table_fingerprints


@pytest.fixture
def dbs():
    databases = Databases("backup")
    yield databases
    databases.drop_all()


@pytest.fixture
def backup_app(settings, tmp_path):
    app = create_app(replace(settings, backup_dir=str(tmp_path / "backups"), backup_keep=2, backup_max_age_days=7))
    app.config.update(TESTING=True)
    return app


def add_data_rows(settings):
    with connect(settings.data.dbname) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO workspace.ups_zones (origin_zip3, dest_zip3, ground)
                       SELECT '100', lpad(g::text, 3, '0'), (g % 8)::text FROM generate_series(0, 999) g""")


def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_backup_destroy_restore_compares_every_table(backup_app, settings, dbs):
    people = populate_primary(backup_app)
    add_data_rows(settings)
    before = {side: table_fingerprints((settings.primary if side == "primary" else settings.data).dbname,
                                       SCHEMAS[side]) for side in ("primary", "data")}
    dumps = {}
    for side in ("primary", "data"):
        result = cli(backup_app, "backup", "create", "--target", side)
        assert result.exit_code == 0, result.output
        dumps[side] = result.output.split()[1]
        manifest = json.loads(open(dumps[side].replace(".dump", ".json")).read())
        assert manifest["side"] == side and set(manifest["tables"]) == set(before[side])

    # Disaster: every row of both sides is gone.
    for config in {settings.primary.dbname, settings.data.dbname}:
        with connect(config) as conn, conn.cursor() as cur:
            cur.execute("TRUNCATE config.users, customer.organizations, customer.facilities, config.roles "
                        "CASCADE" if config == settings.primary.dbname else "SELECT 1")
            if config == settings.data.dbname:
                cur.execute("TRUNCATE workspace.ups_zones, reference.carriers CASCADE")

    restored = dbs.name("restored")
    for side in ("primary", "data"):
        result = cli(backup_app, "backup", "restore", dumps[side], "--to", db_url(restored))
        assert result.exit_code == 0, result.output
        assert "every table matches" in result.output
        assert "DIFFERENT" not in result.output
        assert table_fingerprints(restored, SCHEMAS[side]) == before[side]

    # The restored database runs the app in single mode: migrations agree, old passwords work.
    app = create_app(with_roles(load_settings(mode_env("single", restored))))
    app.config.update(TESTING=True)
    assert "up to date" in cli(app, "db", "migrate").output
    assert cli(app, "db", "check").exit_code == 0
    assert sign_in(app, people["admin"].email).get("/admin/users").status_code == 200


def test_restore_refuses_a_database_holding_the_side_and_flags_a_mismatch(backup_app, settings, dbs):
    populate_primary(backup_app)
    dump = cli(backup_app, "backup", "create", "--target", "primary").output.split()[1]
    occupied = cli(backup_app, "backup", "restore", dump, "--to", db_url(settings.primary.dbname))
    assert occupied.exit_code == 1 and "already holds _yoyo_primary, config, customer" in occupied.output

    manifest_file = dump.replace(".dump", ".json")
    manifest = json.loads(open(manifest_file).read())
    manifest["tables"]["config.users"]["rows"] += 1  # the dump no longer matches what was recorded
    open(manifest_file, "w").write(json.dumps(manifest))
    mismatch = cli(backup_app, "backup", "restore", dump, "--to", db_url(dbs.name("mismatch")))
    assert mismatch.exit_code == 1
    assert "differs from the backup in config.users" in mismatch.output and "DIFFERENT" in mismatch.output

    # Without a manifest: verify against a live database (here the unchanged source).
    shutil.os.remove(manifest_file)
    no_manifest = cli(backup_app, "backup", "restore", dump, "--to", db_url(dbs.name("nomanifest")))
    assert no_manifest.exit_code == 1 and "--compare-with" in no_manifest.output
    live = cli(backup_app, "backup", "restore", dump, "--to", db_url(dbs.name("live")),
               "--compare-with", db_url(settings.primary.dbname))
    assert live.exit_code == 0 and "every table matches" in live.output


def test_retention_keeps_the_newest_and_drops_the_old(backup_app, settings):
    folder = backup_app.config["HANDLED_SETTINGS"].backup_dir
    first = cli(backup_app, "backup", "create", "--target", "primary").output.split()[1]
    old_stamp = (datetime.now(timezone.utc) - timedelta(days=30)).strftime(STAMP_FORMAT)
    ancient = first.rsplit("-", 1)[0] + f"-{old_stamp}.dump"
    shutil.copy(first, ancient)
    second = cli(backup_app, "backup", "create", "--target", "primary")
    assert f"retention: deleted {ancient}" in second.output  # older than BACKUP_MAX_AGE_DAYS=7
    cli(backup_app, "backup", "create", "--target", "data")
    third = cli(backup_app, "backup", "create", "--target", "primary")
    assert f"retention: deleted {first}" in third.output  # BACKUP_KEEP=2 per side
    kept = list_backups(folder)
    assert [side for _, side, _ in kept].count("primary") == 2
    assert [side for _, side, _ in kept].count("data") == 1
    listing = cli(backup_app, "backup", "list")
    assert listing.exit_code == 0 and listing.output.count("handled-primary-") == 2
