"""flask backup verify: a good backup passes, a tampered or damaged one fails with one sentence
naming the first difference, the scratch database is dropped every time (also on SIGTERM),
and each verify is a run that /metrics dates."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from handled import create_app
from handled.models import BackupRun
from handled.settings import parse_database_url
from tests.support.accounts import make_user, sign_in
from tests.support.databases import Databases, connect, db_url, mode_env
from tests.support.environment import ROOT
from tests.support.operations import populate_primary
from tests.support.processes import start_flask
from tests.support.waiting import wait_until
from tests.test_backup_archive import import_zips, written
from tests.test_metrics_system import metric_value


def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def verify_settings(settings, tmp_path, **more):
    return replace(settings, backup_dir=str(tmp_path / "backups"), import_archive_dir=str(tmp_path / "archive"),
                   import_upload_dir=str(tmp_path / "uploads"),
                   backup_verify=parse_database_url("BACKUP_VERIFY_URL", db_url("postgres")), **more)


@pytest.fixture
def verify_app(settings, tmp_path):
    app = create_app(verify_settings(settings, tmp_path))
    app.config.update(TESTING=True)
    return app


@pytest.fixture
def dbs():
    databases = Databases("verify")
    yield databases
    databases.drop_all()


def on_server(statement: str, params=None) -> list[tuple]:
    """One statement on the test server's maintenance database (autocommit: CREATE/DROP DATABASE)."""
    conn = connect("postgres")
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def scratch_databases(settings, side: str = "primary") -> list[str]:
    """Databases named like a verify's scratch ones for this side's database."""
    return sorted(row[0] for row in on_server("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                                              (f"{settings.database(side).dbname}_verify_",)))


def verify_runs(app) -> list[BackupRun]:
    with app.app_context():
        return list(BackupRun.select().where(BackupRun.operation == "verify").order_by(BackupRun.id))


@pytest.mark.flow("Backups")
@pytest.mark.flow("Restore")
def test_a_good_backup_passes_and_its_scratch_database_is_gone(verify_app, settings):
    populate_primary(verify_app)
    dump = written(cli(verify_app, "backup", "create", "--target", "primary").output)[0]
    on_server(f'CREATE DATABASE "{settings.primary.dbname}_verify_deadbeef"')   # left by a killed verify
    on_server(f'CREATE DATABASE "{settings.primary.dbname}_verify_keep_me"')    # not named like a scratch one
    try:
        result = cli(verify_app, "backup", "verify", str(dump))
        assert result.exit_code == 0, result.output
        assert f"verified {dump}: restored into a scratch database (dropped), all " in result.output
        assert "customer.organizations" in result.output and "DIFFERENT" not in result.output
        assert scratch_databases(settings) == [f"{settings.primary.dbname}_verify_keep_me"]
    finally:
        on_server(f'DROP DATABASE IF EXISTS "{settings.primary.dbname}_verify_keep_me"')
    run = verify_runs(verify_app)[-1]
    assert (run.target, run.status, run.file_name) == ("primary", "succeeded", dump.name)
    text = sign_in(verify_app, make_user(verify_app, permissions=["view_system"]).email).get("/metrics").get_data(
        as_text=True)
    assert metric_value(text, "handled_backup_last_verified_timestamp_seconds", target="primary") == \
        pytest.approx(run.finished_at.timestamp(), abs=0.001)


def redump(dump: Path, database: str) -> None:
    """Write ``database``'s PRIMARY side over ``dump``, as pg_dump made it (the manifest is left as it was)."""
    subprocess.run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", "--schema", "config",
                    "--schema", "customer", "--schema", "_yoyo_primary", "--file", str(dump), db_url(database)],
                   check=True, capture_output=True)


@pytest.mark.one_mode   # a PRIMARY backup into a scratch database: the mode changes nothing
@pytest.mark.flow("Backups")
def test_a_tampered_or_damaged_backup_fails_naming_the_first_difference(verify_app, settings, dbs):
    populate_primary(verify_app)
    dump = written(cli(verify_app, "backup", "create", "--target", "primary").output)[0]
    copy = dbs.name("tamper")
    assert cli(verify_app, "backup", "restore", str(dump), "--to", db_url(copy)).exit_code == 0
    with connect(copy) as conn, conn.cursor() as cur:
        cur.execute("UPDATE customer.organizations SET name = name || '!' WHERE code = 'ORG2'")
    redump(dump, copy)
    manifest = json.loads(dump.with_suffix(".json").read_text())
    want = manifest["tables"]["customer.organizations"]

    tampered = cli(verify_app, "backup", "verify", str(dump))
    assert tampered.exit_code == 1 and "Traceback" not in tampered.output
    error = tampered.output.strip().splitlines()[-1]
    assert error.startswith(f"Error: {dump.name} does not match its manifest: customer.organizations has "
                            f"{want['rows']} rows (checksum ")
    assert error.endswith(f"once restored, the manifest says {want['rows']} rows (checksum {want['checksum']}).")
    assert "DIFFERENT" in tampered.output   # the comparison of every table is printed above it
    assert scratch_databases(settings) == []
    run = verify_runs(verify_app)[-1]
    assert run.status == "failed" and run.message == error.removeprefix("Error: ")

    with connect(copy) as conn, conn.cursor() as cur:   # a table with fewer rows is named just the same
        cur.execute("DELETE FROM customer.facility_organizations WHERE (facility_id, organization_id) IN "
                    "(SELECT facility_id, organization_id FROM customer.facility_organizations LIMIT 1)")
        cur.execute("UPDATE customer.organizations SET name = rtrim(name, '!')")
    redump(dump, copy)
    fewer = cli(verify_app, "backup", "verify", str(dump))
    rows = manifest["tables"]["customer.facility_organizations"]["rows"]
    assert f"does not match its manifest: customer.facility_organizations has {rows - 1} rows" in fewer.output

    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])   # cut short: pg_restore fails
    damaged = cli(verify_app, "backup", "verify", str(dump))
    assert damaged.exit_code == 1 and "Traceback" not in damaged.output
    assert "pg_restore into postgresql://" in damaged.output and "_verify_" in damaged.output
    assert scratch_databases(settings) == []

    dump.with_suffix(".json").unlink()
    no_manifest = cli(verify_app, "backup", "verify", str(dump))
    assert no_manifest.exit_code == 1 and f"{dump.with_suffix('.json').name} (the manifest written with" in \
        no_manifest.output
    text = sign_in(verify_app, make_user(verify_app, permissions=["view_system"]).email).get("/metrics").get_data(
        as_text=True)
    assert metric_value(text, "handled_backup_last_verified_timestamp_seconds", target="primary") == 0


def retar(path: Path, change) -> None:
    """Rewrite an archive backup, each member's bytes passed through ``change(name, data)``."""
    with tarfile.open(path, "r:gz") as tar:
        items = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member, data in items:
            data = change(member.name, data)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    path.write_bytes(gzip.compress(buffer.getvalue()))


def test_an_archive_backup_is_checked_file_by_file(verify_app, files):
    import_zips(verify_app, files, "uszips.csv", ["10001", "10002"])
    (files / "b").mkdir()
    import_zips(verify_app, files / "b", "uszips.csv", ["10003"])
    path = written(cli(verify_app, "backup", "create", "--target", "archive").output)[0]
    good = cli(verify_app, "backup", "verify", str(path))
    assert good.exit_code == 0 and f"verified {path}: 2 archived file(s), every sha256 matches" in good.output

    victim = sorted(json.loads(path.with_suffix(".json").read_text())["files"])[0]
    retar(path, lambda name, data: data + b"10004,extra\n" if name.endswith(victim) else data)
    tampered = cli(verify_app, "backup", "verify", str(path))
    assert tampered.exit_code == 1 and "Traceback" not in tampered.output
    assert f"Error: {path.name} is damaged: its file {victim[:12]}… hashes to " in tampered.output
    assert verify_runs(verify_app)[-1].status == "failed"

    retar(path, lambda name, data: data[:-len(b"10004,extra\n")] if name.endswith(victim) else data)
    assert cli(verify_app, "backup", "verify", str(path)).exit_code == 0   # put right again
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 20])   # cut short: gzip itself says so
    cut = cli(verify_app, "backup", "verify", str(path))
    assert cut.exit_code == 1 and "Traceback" not in cut.output
    assert f"Error: {path.name} is damaged: Compressed file ended before the end-of-stream marker was reached " \
           "(reading it as a gzip'd tar)." in cut.output
    body = bytearray(whole)
    body[len(body) // 2] ^= 0xFF   # a flipped bit: a file no longer matches its sha256, or the stream breaks
    path.write_bytes(bytes(body))
    flipped = cli(verify_app, "backup", "verify", str(path))
    assert flipped.exit_code == 1 and f"Error: {path.name} is damaged: " in flipped.output
    assert "Traceback" not in flipped.output


@pytest.mark.flow("Backups")
@pytest.mark.flow("Verify")
def test_newest_all_verifies_the_newest_backup_of_each_target(verify_app, settings, files):
    import_zips(verify_app, files, "uszips.csv", ["10001"])
    missing = cli(verify_app, "backup", "verify", "--newest", "all")
    assert missing.exit_code == 1 and "There is no primary backup in" in missing.output
    assert cli(verify_app, "backup", "create", "--target", "all").exit_code == 0
    newest = written(cli(verify_app, "backup", "create", "--target", "all").output)
    result = cli(verify_app, "backup", "verify", "--newest", "all")
    assert result.exit_code == 0, result.output
    assert [line.split()[1].rstrip(":") for line in result.output.splitlines() if line.startswith("verified ")] == \
        [str(path) for path in newest]
    assert [(r.target, r.status) for r in verify_runs(verify_app)] == [
        ("primary", "succeeded"), ("data", "succeeded"), ("archive", "succeeded")]
    neither = cli(verify_app, "backup", "verify")
    assert neither.exit_code == 1 and "Name the backup to verify" in neither.output


def test_a_role_that_may_not_create_databases_gets_one_sentence(settings, tmp_path):
    app = create_app(replace(verify_settings(settings, tmp_path), backup_verify=None))   # DATA's owner: NOCREATEDB
    app.config.update(TESTING=True)
    dump = written(cli(app, "backup", "create", "--target", "data").output)[0]
    result = cli(app, "backup", "verify", str(dump))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "may not create the scratch database a verify restores into" in result.output
    assert "set BACKUP_VERIFY_URL to a role with CREATEDB there." in result.output


@pytest.mark.one_mode   # a PRIMARY backup into a scratch database: the mode changes nothing
def test_sigterm_during_the_restore_still_drops_the_scratch_database(settings, tmp_path):
    """systemd stops a verify with SIGTERM (a timeout, a shutdown). A stand-in pg_restore that
    says it started and then waits holds the verify inside its restore for as long as the test
    needs: the databases created and dropped are real."""
    app = create_app(verify_settings(settings, tmp_path))
    app.config.update(TESTING=True)
    dump = written(cli(app, "backup", "create", "--target", "primary").output)[0]
    shims, started = tmp_path / "bin", tmp_path / "pg_restore started"
    shims.mkdir()
    (shims / "pg_restore").write_text(f'#!/bin/sh\ntouch "{started}"\nexec sleep 600\n')
    (shims / "pg_restore").chmod(0o755)
    env = {**os.environ, **mode_env(settings.mode, settings.primary.dbname,
                                    settings.data.dbname if settings.split_db_mode else None,
                                    BACKUP_DIR=str(tmp_path / "backups"), BACKUP_VERIFY_URL=db_url("postgres"))}
    env.pop("FLASK_APP", None)
    env["PATH"] = f"{shims}:{os.environ['PATH']}"
    verify = start_flask("backup", "verify", str(dump), env=env, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        wait_until(started.exists, 60, "the verify to start its restore")
        assert len(scratch_databases(settings)) == 1
        verify.send_signal(signal.SIGTERM)
        _, stderr = verify.communicate(timeout=60)
    finally:
        verify.kill()
    assert verify.returncode == 1 and "Traceback" not in stderr
    assert "The verify was stopped (SIGTERM) before it finished." in stderr
    assert scratch_databases(settings) == []
    assert verify_runs(app)[-1].status == "failed"
