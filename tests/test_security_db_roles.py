"""Least privilege in PostgreSQL (issue 12, item 19): the runtime role, the owner, the builder.

The whole suite runs as these roles (tests/fixtures/databases.py runs ``create-roles`` on every
test database); these tests say what each role may and may not do.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import replace
from datetime import datetime, timezone

import psycopg2
import psycopg2.errors
import pytest

from handled import create_app
from handled.ledger import RunRef
from handled.schema.checks import run_checks
from handled.transformations.build_runner import build_and_swap
from handled.transformations.registry import get_transformation
from tests.support.databases import connect, db_url
from tests.support.reference_data import load_zip_sources

HANDLED_SCHEMAS = {"primary": ("config", "customer"), "data": ("workspace", "reference")}
A_TABLE = {"config": "config.users", "customer": "customer.organizations", "workspace": "workspace.us_zips",
           "reference": "reference.zip3_reference"}


def refused(conn, statement: str, params=None) -> str:
    """Run ``statement`` and return PostgreSQL's refusal; fail the test if it was allowed."""
    with conn.cursor() as cur:
        try:
            cur.execute(statement, params)
        except psycopg2.Error as exc:
            if not conn.autocommit:
                conn.rollback()
            return str(exc)
    pytest.fail(f"{statement!r} was allowed as {conn.info.user}")


def runtime_connections(settings):
    return [(side, connect(settings.database(side))) for side in ("primary", "data")]


@pytest.mark.flow("Provision PRIMARY")
def test_runtime_role_cannot_create_alter_or_drop(settings):
    for side, conn in runtime_connections(settings):
        with closing(conn):
            with conn.cursor() as cur:
                cur.execute("SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles "
                            "WHERE rolname = current_user")
                assert cur.fetchone() == (False, False, False, False)
            for schema in HANDLED_SCHEMAS[side]:
                assert "permission denied" in refused(conn, f"CREATE TABLE {schema}.intruder (x int)")
                assert "must be owner" in refused(conn, f"ALTER TABLE {A_TABLE[schema]} ADD COLUMN intruder int")
                assert "must be owner" in refused(conn, f"DROP TABLE {A_TABLE[schema]}")
            assert "permission denied" in refused(conn, "CREATE SCHEMA intruder")


def test_runtime_role_cannot_change_the_audit_log(settings):
    conn = connect(settings.primary)
    with closing(conn), conn.cursor() as cur:
        cur.execute("INSERT INTO config.audit_log (action, actor_email) VALUES ('test.kept', 'a@b.test') RETURNING id")
        row_id = cur.fetchone()[0]
        for statement in ("UPDATE config.audit_log SET action = 'test.changed' WHERE id = %s",
                          "DELETE FROM config.audit_log WHERE id = %s"):
            assert "permission denied" in refused(conn, statement, (row_id,))
        assert "permission denied" in refused(conn, "TRUNCATE config.audit_log")
        cur.execute("SELECT action FROM config.audit_log WHERE id = %s", (row_id,))
        assert cur.fetchone() == ("test.kept",)


@pytest.mark.flow("Provision PRIMARY")
def test_audit_trigger_refuses_even_the_owner(settings):
    owner = connect(settings.direct_database("primary"))
    superuser = connect(db_url(settings.primary.dbname))
    with closing(owner), closing(superuser), owner.cursor() as cur:
        cur.execute("INSERT INTO config.audit_log (action) VALUES ('test.kept') RETURNING id")
        row_id = cur.fetchone()[0]
        for conn in (owner, superuser):
            for statement in ("UPDATE config.audit_log SET action = 'test.changed' WHERE id = %s",
                              "DELETE FROM config.audit_log WHERE id = %s"):
                assert "append-only" in refused(conn, statement, (row_id,))
            assert "append-only" in refused(conn, "TRUNCATE config.audit_log")
        cur.execute("SELECT action FROM config.audit_log WHERE id = %s", (row_id,))
        assert cur.fetchone() == ("test.kept",)


def test_deleting_a_user_keeps_their_audit_rows(settings):
    conn = connect(settings.primary)
    with closing(conn), conn.cursor() as cur:
        cur.execute("INSERT INTO config.users (email, name, password_hash) VALUES ('gone@b.test', 'Gone', 'x') RETURNING id")
        user_id = cur.fetchone()[0]
        cur.execute("INSERT INTO config.audit_log (action, actor_id, actor_email) VALUES ('test.did', %s, "
                    "'gone@b.test')", (user_id,))
        cur.execute("DELETE FROM config.users WHERE id = %s", (user_id,))
        cur.execute("SELECT actor_id, actor_email FROM config.audit_log WHERE action = 'test.did'")
        assert cur.fetchone() == (user_id, "gone@b.test")


def role_state(settings) -> list:
    """Everything create-roles decides, per database: role attributes, memberships, owners, grants."""
    state = []
    for config in {settings.primary.dbname: settings.primary, settings.data.dbname: settings.data}.values():
        conn = connect(db_url(config.dbname))
        with closing(conn), conn.cursor() as cur:
            cur.execute("SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolbypassrls,"
                        " rolpassword FROM pg_authid WHERE rolname LIKE %s ORDER BY 1", (config.dbname + "\\_%",))
            state.append(cur.fetchall())
            cur.execute("SELECT r.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid "
                        "JOIN pg_roles m ON m.oid = a.member WHERE r.rolname LIKE %s ORDER BY 1, 2",
                        (config.dbname + "\\_%",))
            state.append(cur.fetchall())
            cur.execute("SELECT nspname, nspowner::regrole::text, nspacl::text FROM pg_namespace ORDER BY 1")
            state.append(cur.fetchall())
            cur.execute("SELECT n.nspname, c.relname, c.relowner::regrole::text, c.relacl::text FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT LIKE 'pg\\_%' "
                        "AND n.nspname <> 'information_schema' ORDER BY 1, 2")
            state.append(cur.fetchall())
            cur.execute("SELECT defaclrole::regrole::text, defaclnamespace::regnamespace::text, defaclobjtype, "
                        "defaclacl::text FROM pg_default_acl ORDER BY 1, 2, 3")
            state.append(cur.fetchall())
    return state


def test_create_roles_twice_is_idempotent(settings, app):
    before = role_state(settings)
    runner = app.test_cli_runner()
    for _ in range(2):
        result = runner.invoke(args=["db", "create-roles"])
        assert result.exit_code == 0, result.output
        assert role_state(settings) == before
    assert "PRIMARY_DATABASE_URL=" in result.output and "PRIMARY_MIGRATION_URL=" in result.output
    assert "DATA_BUILD_URL=" in result.output


def test_create_roles_needs_the_admin_url_from_the_environment(settings):
    app = create_app(replace(settings, db_admin=None))
    result = app.test_cli_runner().invoke(args=["db", "create-roles"])
    assert result.exit_code != 0
    assert "DB_ADMIN_URL" in result.output and "Traceback" not in result.output


def check_lines(settings) -> dict:
    return {(r.target, r.name): r for r in run_checks(settings)}


def test_db_check_passes_for_the_least_privilege_runtime_role(settings):
    found = check_lines(settings)
    for side in ("primary", "data"):
        result = found[(side, "runtime role least privilege")]
        assert result.ok, result.detail


@pytest.mark.flow("Roles, then migrate each side")
@pytest.mark.parametrize("who", ["superuser", "owner"])
def test_db_check_flags_a_runtime_url_with_too_much_power(settings, who):
    if who == "superuser":
        primary = replace(settings.primary, user="postgres", password=None)
    else:
        primary = replace(settings.direct_database("primary"), variable="PRIMARY_DATABASE_URL")
    too_strong = replace(settings, primary=primary,
                         data=primary if not settings.split_db_mode else settings.data)
    result = check_lines(too_strong)[("primary", "runtime role least privilege")]
    assert not result.ok
    expected = "is a superuser" if who == "superuser" else "owns the schema config"
    assert expected in result.detail and primary.user in result.detail


def test_the_builder_builds_and_swaps_but_cannot_touch_other_tables(app, settings):
    load_zip_sources()
    run = RunRef(7, datetime(2026, 11, 30, tzinfo=timezone.utc))
    build_and_swap(get_transformation("zip3-reference"), settings, parallelism=1, run=run)   # + its ledger row
    builder = settings.build_database()
    runtime = connect(settings.data)
    with closing(runtime), runtime.cursor() as cur:
        cur.execute("SELECT count(*), pg_get_userbyid(c.relowner) FROM reference.zip3_reference, pg_class c "
                    "WHERE c.oid = 'reference.zip3_reference'::regclass GROUP BY 2")
        rows, owner = cur.fetchone()
        assert rows > 0 and owner == builder.user
        cur.execute("SELECT kind, run_id, run_started_at, rows_written FROM workspace.run_ledger")
        assert cur.fetchall() == [("transformation", 7, run.started_at, rows)]
    conn = connect(builder)
    with closing(conn):
        assert "must be owner" in refused(conn, "DROP TABLE workspace.us_zips")
        assert "permission denied" in refused(conn, "CREATE TABLE workspace.intruder (x int)")
        assert "permission denied" in refused(conn, "TRUNCATE workspace.us_zips")
        # the run ledger: the swap adds its row (INSERT), and that is all the builder may do there
        assert "permission denied" in refused(conn, "INSERT INTO workspace.us_zips (zip) VALUES ('x')")
        assert "permission denied" in refused(conn, "UPDATE workspace.run_ledger SET rows_written = 0")
        assert "permission denied" in refused(conn, "DELETE FROM workspace.run_ledger")
        if not settings.split_db_mode:   # one database: config sits beside reference
            assert "permission denied for schema config" in refused(conn, "DROP TABLE config.users")
            assert "permission denied" in refused(conn, "SELECT * FROM config.users")
            assert "permission denied" in refused(conn, "CREATE TABLE config.intruder (x int)")


def test_create_roles_never_prints_or_sends_a_password_it_was_given(settings):
    chosen = "a-runtime-password-chosen-by-ops"
    app = create_app(replace(settings, db_runtime_password=chosen))
    result = app.test_cli_runner().invoke(args=["db", "create-roles"])
    assert result.exit_code == 0, result.output
    assert chosen not in result.output and "${DB_RUNTIME_PASSWORD}" in result.output
    conn = connect(db_url("postgres"))
    with closing(conn), conn.cursor() as cur:   # hashed before it left: SCRAM, never the clear text
        cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (settings.primary.user,))
        stored = cur.fetchone()[0]
    assert stored.startswith("SCRAM-SHA-256$") and chosen not in stored
