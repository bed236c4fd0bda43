"""Who the CLI and jobs act as, and the audit rows the operations write (backups, restores,
split/unsplit, migrate/rollback, imports, transformation runs, exports)."""

from __future__ import annotations

import logging
import os
import pwd
from dataclasses import replace

import pytest
import redis
from peewee import fn

from handled import create_app
from handled.context import NO_PROGRESS, Actor, job_context
from handled.models import AuditLog
from handled.schema.migrations import migrate, resolve_targets
from handled.settings import load_settings
from handled.transformations.service import run_transformation
from tests.support.accounts import make_user
from tests.support.databases import Databases, connect, db_url, mode_env
from tests.support.environment import TEST_REDIS
from tests.support.import_files import USPS_NAME, usps_row, write_usps
from tests.support.reference_data import build_reference_tables, load_zip_sources

OS_USER = pwd.getpwuid(os.geteuid()).pw_name
CLI_LABEL = f"cli:{OS_USER}"


def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def audit_rows(action, after: int = 0):
    """The audit rows of ``action`` written after row ``after`` (the log is append-only: a test
    reads what it caused, it cannot empty the table first)."""
    return list(AuditLog.select().where((AuditLog.action == action) & (AuditLog.id > after)).order_by(AuditLog.id))


def last_audit_id() -> int:
    return AuditLog.select(fn.max(AuditLog.id)).scalar() or 0


def audit_rows_in(dbname, action):
    with connect(dbname) as conn, conn.cursor() as cur:
        cur.execute("SELECT actor_id, actor_email, target_type, target_id, details FROM config.audit_log "
                    "WHERE action = %s ORDER BY id", (action,))
        return cur.fetchall()


# --- item 3: a named CLI actor, no --user-email, jobs as the user who queued them ----------------

@pytest.mark.flow("Who the audit log names")
def test_cli_operator_is_named_after_the_os_user_not_the_environment(monkeypatch):
    for variable in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.setenv(variable, "someone-else")
    actor = Actor.cli_operator()
    assert (actor.email, actor.channel, actor.system) == (None, "cli", True)
    assert actor.label == CLI_LABEL
    # a job queued from the CLI still names the operator
    queued = Actor.from_job(actor.to_job(), signed=True)     # the worker checked its signature
    assert (queued.label, queued.system, queued.channel) == (CLI_LABEL, True, "job")
    assert Actor.from_job(actor.to_job()).system is False      # unsigned: never a system actor


@pytest.mark.parametrize("args", [
    ["integrations", "import", "usps-3d-base", "missing.csv"],
    ["integrations", "rebuild", "us-zips"],
    ["transformations", "run", "--all"],
    ["exports", "write", "zip3-reference.json"],
    ["data", "rebuild"],
], ids=lambda args: " ".join(args[:2]))
def test_no_command_lets_the_operator_pick_who_is_recorded(runner, args):
    result = runner.invoke(args=[*args, "--user-email", "boss@example.test"])
    assert result.exit_code != 0
    assert "No such option '--user-email'" in result.output


def test_cli_audit_rows_name_the_os_user(app, runner, tmp_path):
    path = write_usps(tmp_path / USPS_NAME, [usps_row("005", "006")])
    result = runner.invoke(args=["integrations", "import", "usps-3d-base", str(path)])
    assert result.exit_code == 0, result.output
    [row] = audit_rows("integration.import")
    assert (row.actor_id, row.actor_email, row.target_id) == (None, CLI_LABEL, "usps-3d-base")
    assert row.details["file"] == USPS_NAME and row.details["status"] == "succeeded"


@pytest.mark.flow("Who the audit log names")
def test_a_job_runs_and_is_audited_as_the_user_who_queued_it(app, settings):
    load_zip_sources()
    lead = make_user(app, ["run_transformations"])
    queued = Actor(id=lead.id, email=lead.email, permissions=frozenset({"run_transformations"}),
                   address="10.0.0.7", channel="web")
    ctx = job_context(queued.to_job(), NO_PROGRESS, settings)
    assert (ctx.actor.id, ctx.actor.email, ctx.actor.system, ctx.actor.channel) == (lead.id, lead.email, False, "job")
    assert not ctx.actor.can("manage_users")
    outcome = run_transformation(ctx, "zip3-reference")
    [row] = audit_rows("transformation.run")
    assert (row.actor_id, row.actor_email, row.ip, row.target_id) == (lead.id, lead.email, "10.0.0.7",
                                                                     "zip3-reference")
    assert row.details["run_id"] == outcome.run_id and row.details["status"] == "succeeded"


# --- item 20: every operation writes one audit row ---------------------------------------------

def test_transformation_and_exports_from_the_cli_and_the_web_are_audited(app, settings, runner, login_client,
                                                                         tmp_path):
    build_reference_tables(settings)
    start = last_audit_id()
    result = runner.invoke(args=["transformations", "run", "zip3-reference"])
    assert result.exit_code == 0, result.output
    [run] = audit_rows("transformation.run", after=start)
    assert (run.actor_email, run.target_id, run.details["status"]) == (CLI_LABEL, "zip3-reference", "succeeded")

    target = tmp_path / "zip3.json"
    result = runner.invoke(args=["exports", "write", "zip3-reference.json", "-o", str(target)])
    assert result.exit_code == 0, result.output
    [written] = audit_rows("export.write", after=start)
    assert (written.actor_email, written.target_id) == (CLI_LABEL, "zip3-reference.json")
    assert written.details["run_id"]

    client = login_client(["download_exports"])
    response = client.get("/exports/zip3-reference.json")
    assert response.status_code == 200 and response.get_data()
    [downloaded] = audit_rows("export.download", after=start)
    assert downloaded.actor_email == client.user.email and downloaded.target_id == "zip3-reference.json"


@pytest.fixture
def backup_app(settings, tmp_path):
    app = create_app(replace(settings, backup_dir=str(tmp_path / "backups")))
    app.config.update(TESTING=True)
    return app


def test_backup_and_restore_are_audited(backup_app, settings):
    databases = Databases("opsaudit")
    try:
        result = cli(backup_app, "backup", "create", "--target", "primary")
        assert result.exit_code == 0, result.output
        dump = result.output.split()[1]
        [made] = audit_rows("backup.create")
        assert (made.actor_email, made.target_type, made.target_id) == (CLI_LABEL, "database", "primary")
        assert made.details["file"] == os.path.basename(dump) and "tables" in made.details

        restored = databases.name("restored")
        result = cli(backup_app, "backup", "restore", dump, "--to", db_url(restored))
        assert result.exit_code == 0, result.output
        [back] = audit_rows("backup.restore")      # written to the running PRIMARY, after success
        assert back.actor_email == CLI_LABEL and back.details["file"] == os.path.basename(dump)
        assert restored in back.target_label and back.details["verified"] is True
    finally:
        databases.drop_all()


def test_migrate_and_rollback_are_audited_once_primary_has_its_audit_table(scratch, caplog):
    app = create_app(scratch)
    app.config.update(TESTING=True)
    # DATA first: PRIMARY has no config.audit_log yet, so the row is skipped with a log line
    with caplog.at_level(logging.WARNING, logger="handled.audit"):
        result = cli(app, "db", "migrate", "--target", "data")
    assert result.exit_code == 0, result.output
    assert "not recorded" in caplog.text and "config.audit_log" in caplog.text

    result = cli(app, "db", "migrate", "--target", "primary")
    assert result.exit_code == 0, result.output
    [row] = audit_rows_in(scratch.primary.dbname, "db.migrate")
    assert row[1] == CLI_LABEL and row[3] == "primary" and row[4]["applied"]

    result = cli(app, "db", "rollback", "--target", "data")
    assert result.exit_code == 0, result.output
    [row] = audit_rows_in(scratch.primary.dbname, "db.rollback")
    assert row[1] == CLI_LABEL and row[3] == "data" and len(row[4]["rolled_back"]) == 1
    # nothing applied, nothing recorded
    assert cli(app, "db", "migrate", "--target", "primary").exit_code == 0
    assert len(audit_rows_in(scratch.primary.dbname, "db.migrate")) == 1


@pytest.mark.flow("Who the audit log names")
def test_split_and_unsplit_are_audited_in_the_primary_that_follows():
    """Builds its own single database, splits and unsplits it: runs once, in no fixture mode."""
    databases = Databases("opsaudsplit")
    try:
        name = databases.name("single", create=True)
        single = load_settings(mode_env("single", name))
        for target in resolve_targets(single, "all"):
            migrate(target)
        new_primary = databases.name("newprimary")
        result = cli(create_app(single), "db", "split", "--to-primary", db_url(new_primary))
        assert result.exit_code == 0, result.output
        [row] = audit_rows_in(new_primary, "db.split")
        assert row[1] == CLI_LABEL and new_primary in row[4]["to"]

        third = databases.name("third")
        split_app = create_app(load_settings(mode_env("split", new_primary, name)))
        result = cli(split_app, "db", "unsplit", "--to", db_url(third))
        assert result.exit_code == 0, result.output
        [row] = audit_rows_in(third, "db.unsplit")
        assert row[1] == CLI_LABEL and third in row[4]["to"]
    finally:
        databases.drop_all()
        redis.Redis.from_url(TEST_REDIS).flushdb()
