"""flask backup create / restore: back up both sides, destroy the rows, restore into an
empty database, compare every table; retention by count and age; refusals."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from handled import create_app
from handled.models import SCHEMAS
from handled.ops import backup as backup_module
from handled.ops.backup import STAMP_FORMAT, list_backups
from handled.settings import load_settings
from tests.support.accounts import sign_in
from tests.support.databases import Databases, connect, db_url, mode_env, with_roles
from tests.support.environment import ROOT
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


def cli(app, *args, env=None):
    return app.test_cli_runner().invoke(args=list(args), env=env)


@pytest.mark.flow("Restore")
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


@pytest.mark.flow("Restore")
def test_restore_into_a_split_pair_runs_the_app_in_split_mode(backup_app, settings, dbs):
    """From either mode, PRIMARY's backup into one database and DATA's into another make a
    working split pair: the checks pass, old passwords sign in, DATA's rows are served."""
    people = populate_primary(backup_app)
    add_data_rows(settings)
    before = {side: table_fingerprints((settings.primary if side == "primary" else settings.data).dbname,
                                       SCHEMAS[side]) for side in ("primary", "data")}
    pair = {"primary": dbs.name("pair_primary"), "data": dbs.name("pair_data")}
    for side in ("primary", "data"):
        dump = cli(backup_app, "backup", "create", "--target", side).output.split()[1]
        result = cli(backup_app, "backup", "restore", dump, "--to", db_url(pair[side]))
        assert result.exit_code == 0 and "every table matches" in result.output, result.output
        assert table_fingerprints(pair[side], SCHEMAS[side]) == before[side]
        other = SCHEMAS["data" if side == "primary" else "primary"]
        assert table_fingerprints(pair[side], other) == {}   # each database holds its own side only

    app = create_app(with_roles(load_settings(mode_env("split", pair["primary"], pair["data"]))))
    app.config.update(TESTING=True)
    check = cli(app, "db", "check")
    assert check.exit_code == 0, check.output
    assert "up to date" in cli(app, "db", "migrate").output
    admin = sign_in(app, people["admin"].email)
    assert admin.get("/admin/users").status_code == 200
    page = admin.get("/integrations/")   # row counts read from the restored DATA
    assert page.status_code == 200 and '<td class="num">1,000</td>' in page.get_data(as_text=True)


@pytest.mark.flow("Restore")
def test_restore_refuses_a_database_holding_the_side_and_flags_a_mismatch(backup_app, settings, dbs):
    populate_primary(backup_app)
    dump = cli(backup_app, "backup", "create", "--target", "primary").output.split()[1]
    occupied = cli(backup_app, "backup", "restore", dump, "--to", db_url(settings.primary.dbname))
    assert occupied.exit_code == 1 and "already holds _yoyo_primary, config, customer" in occupied.output

    manifest_file = dump.replace(".dump", ".json")
    manifest = json.loads(open(manifest_file).read())
    manifest["tables"]["config.users"]["rows"] += 1  # the dump no longer matches what was recorded
    open(manifest_file, "w").write(json.dumps(manifest))
    copy = dbs.name("mismatch")
    mismatch = cli(backup_app, "backup", "restore", dump, "--to", db_url(copy))
    assert mismatch.exit_code == 1
    assert "differs from the backup in config.users" in mismatch.output and "DIFFERENT" in mismatch.output

    # Without a manifest: verify against a live database. Not the source itself: the backup's own
    # audit row was written there after the snapshot; the copy restored above holds the dump's rows.
    shutil.os.remove(manifest_file)
    no_manifest = cli(backup_app, "backup", "restore", dump, "--to", db_url(dbs.name("nomanifest")))
    assert no_manifest.exit_code == 1 and "--compare-with" in no_manifest.output
    live = cli(backup_app, "backup", "restore", dump, "--to-env", "RESTORE_URL", "--compare-with", db_url(copy),
               env={"RESTORE_URL": db_url(dbs.name("live"))})   # as OPS_RUNBOOK "Restore" writes it
    assert live.exit_code == 0 and "every table matches" in live.output, live.output


@pytest.mark.flow("Backups")
@pytest.mark.flow("Restore")
@pytest.mark.flow("Verify")
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


# --- files at rest: modes and encryption -------------------------------------------------------

def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_backups_are_0600_in_a_0700_folder_also_ones_made_before(backup_app):
    folder = Path(backup_app.config["HANDLED_SETTINGS"].backup_dir)
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    stamp = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime(STAMP_FORMAT)
    older = folder / f"handled-primary-x-{stamp}.dump"
    older.write_bytes(b"PGDMP from an older version of handled")
    os.chmod(older, 0o644)
    old_umask = os.umask(0o022)     # what an interactive shell usually has
    try:
        result = cli(backup_app, "backup", "create", "--target", "primary")
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.output
    dump = Path(result.output.split()[1])
    assert mode_of(folder) == 0o700
    assert mode_of(dump) == 0o600 and mode_of(dump.with_suffix(".json")) == 0o600
    assert mode_of(older) == 0o600


def test_the_systemd_units_set_a_private_umask():
    units = sorted((ROOT / "deploy").glob("handled-*.service"))
    assert len(units) == 6
    for unit in units:
        assert "UMask=0077" in unit.read_text(), unit.name


PASSPHRASE = "a long passphrase nobody guesses 42"


def test_an_encrypted_backup_is_not_a_dump_and_restores_only_with_the_key(settings, tmp_path, dbs):
    encrypted = replace(settings, backup_dir=str(tmp_path / "backups"), backup_encryption_passphrase=PASSPHRASE)
    app = create_app(encrypted)
    app.config.update(TESTING=True)
    people = populate_primary(app)
    before = table_fingerprints(settings.primary.dbname, SCHEMAS["primary"])
    result = cli(app, "backup", "create", "--target", "primary")
    assert result.exit_code == 0, result.output
    dump = Path(result.output.split()[1])
    body = dump.read_bytes()
    assert not body.startswith(b"PGDMP") and people["admin"].email.encode() not in body
    assert json.loads(dump.with_suffix(".json").read_text())["encrypted"] is True
    assert mode_of(dump) == 0o600

    plain = create_app(replace(settings, backup_dir=str(tmp_path / "backups")))
    without_key = cli(plain, "backup", "restore", str(dump), "--to", db_url(dbs.name("nokey")))
    assert without_key.exit_code == 1 and "Traceback" not in without_key.output
    assert f"{dump.name} is encrypted" in without_key.output and "BACKUP_ENCRYPTION_PASSPHRASE" in without_key.output

    wrong = create_app(replace(encrypted, backup_encryption_passphrase="not the passphrase it was made with"))
    wrong_key = cli(wrong, "backup", "restore", str(dump), "--to", db_url(dbs.name("wrongkey")))
    assert wrong_key.exit_code == 1 and "could not be decrypted" in wrong_key.output
    assert "Traceback" not in wrong_key.output

    restored = dbs.name("withkey")
    with_key = cli(app, "backup", "restore", str(dump), "--to", db_url(restored))
    assert with_key.exit_code == 0, with_key.output
    assert "every table matches" in with_key.output
    assert table_fingerprints(restored, SCHEMAS["primary"]) == before


# --- no password on a command line; URLs from the environment or stdin -------------------------

@pytest.fixture
def tool_calls(monkeypatch):
    """Every argv the backup code hands to a subprocess, and its environment."""
    calls = []
    real_popen = subprocess.Popen

    def recording_popen(args, *rest, **kwargs):
        calls.append((list(args), dict(kwargs.get("env") or {})))
        return real_popen(args, *rest, **kwargs)

    monkeypatch.setattr(backup_module.subprocess, "Popen", recording_popen)
    return calls


SECRET_PASSWORD = "pa ss'word with spaces"   # the trust-authenticated test server ignores it


def with_password(config):
    return replace(config, password=SECRET_PASSWORD)


def test_pg_dump_and_pg_restore_get_the_password_from_the_environment_only(settings, tmp_path, dbs, tool_calls):
    keyed = replace(settings, backup_dir=str(tmp_path / "backups"), primary=with_password(settings.primary),
                    primary_migration=None)
    app = create_app(keyed)
    app.config.update(TESTING=True)
    result = cli(app, "backup", "create", "--target", "primary")
    assert result.exit_code == 0, result.output
    url = db_url(dbs.name("pwrestore")).replace("postgresql://postgres@",
                                                "postgresql://postgres:pa%20ss%27word%20with%20spaces@")
    result = cli(app, "backup", "restore", result.output.split()[1], "--to", url)
    assert result.exit_code == 0, result.output
    tools = [argv[0] for argv, _ in tool_calls]
    assert "pg_dump" in tools and "pg_restore" in tools
    for argv, env in tool_calls:
        joined = " ".join(argv)
        for fragment in ("pa ss", "ss'word", "word with", "spaces", "password="):
            assert fragment not in joined, (fragment, argv)
        if argv[0] in ("pg_dump", "pg_restore"):
            assert env.get("PGPASSWORD") == SECRET_PASSWORD
    assert SECRET_PASSWORD not in result.output and "pa%20ss" not in result.output


@pytest.mark.flow("Moving between single and split mode")
@pytest.mark.flow("Restore")
def test_restore_split_and_unsplit_take_the_url_from_the_environment_or_stdin(backup_app, settings, dbs,
                                                                                monkeypatch):
    dump = cli(backup_app, "backup", "create", "--target", "primary").output.split()[1]
    runner = backup_app.test_cli_runner()
    from_env = dbs.name("fromenv")
    monkeypatch.setenv("HANDLED_RESTORE_URL", db_url(from_env).replace("postgres@", "postgres:s3cret@"))
    result = runner.invoke(args=["backup", "restore", dump, "--to-env", "HANDLED_RESTORE_URL"])
    assert result.exit_code == 0, result.output
    assert f"into postgresql://postgres:***@" in result.output and "s3cret" not in result.output

    from_stdin = dbs.name("fromstdin")
    result = runner.invoke(args=["backup", "restore", dump, "--to", "-"], input=db_url(from_stdin) + "\n")
    assert result.exit_code == 0, result.output
    assert "every table matches" in result.output and from_stdin in result.output

    unset = runner.invoke(args=["backup", "restore", dump, "--to-env", "HANDLED_NOT_SET"])
    assert unset.exit_code != 0 and "HANDLED_NOT_SET is not set" in unset.output
    both = runner.invoke(args=["backup", "restore", dump])
    assert both.exit_code != 0 and "--to" in both.output and "Traceback" not in both.output

    if settings.mode == "single":
        split = runner.invoke(args=["db", "split", "--to-primary", "-", "--dry-run"],
                              input=db_url(dbs.name("s")) + "\n")
        assert split.exit_code == 0, split.output
        monkeypatch.setenv("HANDLED_SPLIT_URL", db_url(dbs.name("s2")))
        split = runner.invoke(args=["db", "split", "--to-primary-env", "HANDLED_SPLIT_URL", "--dry-run"])
        assert split.exit_code == 0, split.output
    else:
        unsplit = runner.invoke(args=["db", "unsplit", "--to", "-", "--dry-run"], input=db_url(dbs.name("u")) + "\n")
        assert unsplit.exit_code == 0, unsplit.output
        monkeypatch.setenv("HANDLED_UNSPLIT_URL", db_url(dbs.name("u2")))
        unsplit = runner.invoke(args=["db", "unsplit", "--to-env", "HANDLED_UNSPLIT_URL", "--dry-run"])
        assert unsplit.exit_code == 0, unsplit.output
