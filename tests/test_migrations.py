"""Split migrations: migrate, status, rollback, check, repair, locking; both modes."""

import dataclasses
import os
import re
import subprocess

import psycopg2
import psycopg2.errors
import pytest

from handled import create_app
from handled.db import close_databases
from handled.schema import migrations
from handled.schema.checks import run_checks
from handled.schema.migrations import MigrationError, resolve_targets
from handled.settings import load_settings
from handled.settings_parsers import ServerVersion
from tests.support.accounts import csrf_token
from tests.support.databases import (Databases, connect, database_names, db_url, drop_database, mode_env,
                                     superuser_config)
from tests.support.environment import PREFIX, ROOT
from tests.support.processes import run_flask, start_flask

PRIMARY_IDS = ["0001_config_customer_schemas", "0002_seed_roles_permissions", "0003_run_worker_column",
               "0004_login_throttle", "0005_session_invalidation_queue", "0006_audit_log_append_only",
               "0007_backup_runs", "0008_run_status_cancelled"]
DATA_IDS = ["0001_workspace_reference_schemas", "0002_seed_carriers_services", "0003_delivery_matrix_partitioned",
            "0004_live_partition_names", "0005_run_ledger", "0006_ground_days"]


def sql(config, statement, params=None):
    """``statement`` as the server's superuser: these tests break the schema as someone at psql would."""
    conn = connect(superuser_config(config))
    with conn.cursor() as cur:
        cur.execute(statement, params)
        rows = cur.fetchall() if cur.description else None
    conn.close()
    return rows


def migrate_all(settings):
    return {t.name: migrations.migrate(t) for t in resolve_targets(settings)}


def cli(settings, *args):
    app = create_app(settings)
    return app.test_cli_runner().invoke(args=list(args))


def verdicts(settings, target):
    status = migrations.target_status(resolve_targets(settings, target)[0])
    return {s.id: s.verdict for s in status.states}


def test_migrate_applies_each_side_with_its_own_history(scratch):
    assert migrate_all(scratch) == {"primary": PRIMARY_IDS, "data": DATA_IDS}
    assert migrate_all(scratch) == {"primary": [], "data": []}  # nothing runs twice
    primary_hist = sql(scratch.primary, "SELECT migration_id FROM _yoyo_primary._yoyo_migration ORDER BY 1")
    data_hist = sql(scratch.data, "SELECT migration_id FROM _yoyo_data._yoyo_migration ORDER BY 1")
    assert [r[0] for r in primary_hist] == PRIMARY_IDS
    assert [r[0] for r in data_hist] == DATA_IDS
    assert sql(scratch.primary, "SELECT count(*) FROM config.roles WHERE is_system")[0][0] == 4
    assert sql(scratch.data, "SELECT count(*) FROM reference.services")[0][0] == 14


def test_status_is_exact_and_exits_non_zero_while_anything_is_pending(scratch):
    result = cli(scratch, "db", "status")
    assert result.exit_code == 1
    assert result.output.count("pending") == len(PRIMARY_IDS) + len(DATA_IDS)
    migrations.migrate(resolve_targets(scratch, "primary")[0])
    result = cli(scratch, "db", "status", "--target", "primary")
    assert result.exit_code == 0, result.output
    assert "applied         0001_config_customer_schemas" in result.output
    result = cli(scratch, "db", "status")
    assert result.exit_code == 1
    assert "pending         0001_workspace_reference_schemas" in result.output
    assert cli(scratch, "db", "migrate").exit_code == 0
    assert cli(scratch, "db", "status").exit_code == 0


def test_dry_run_lists_and_changes_nothing(scratch):
    result = cli(scratch, "db", "migrate", "--dry-run", "--target", "data")
    assert result.exit_code == 0
    assert "would apply 0001_workspace_reference_schemas" in result.output
    assert "would apply 0002_seed_carriers_services" in result.output
    assert verdicts(scratch, "data") == {i: "pending" for i in DATA_IDS}
    assert sql(scratch.data, "SELECT to_regclass('reference.carriers')")[0][0] is None


def test_rollback_undoes_the_latest_migration_of_one_side_only(scratch):
    migrate_all(scratch)
    since_0002 = DATA_IDS[1:]
    result = cli(scratch, "db", "rollback", "--target", "data", "--count", str(len(since_0002)))
    assert result.exit_code == 0, result.output
    assert "rolled back 0003_delivery_matrix_partitioned" in result.output
    assert "rolled back 0002_seed_carriers_services" in result.output
    assert sql(scratch.data, "SELECT count(*) FROM reference.carriers")[0][0] == 0
    assert verdicts(scratch, "data") == {DATA_IDS[0]: "applied", **{i: "pending" for i in since_0002}}
    assert verdicts(scratch, "primary") == {i: "applied" for i in PRIMARY_IDS}
    result = cli(scratch, "db", "rollback", "--target", "primary", "--count", str(len(PRIMARY_IDS)))
    assert result.exit_code == 0
    assert sql(scratch.primary, "SELECT to_regnamespace('config')")[0][0] is None
    assert cli(scratch, "db", "migrate").exit_code == 0
    assert cli(scratch, "db", "check").exit_code == 0


def test_delivery_matrix_turns_partitioned_and_back_keeping_its_rows(scratch):
    migrate_all(scratch)
    data = resolve_targets(scratch, "data")[0]
    since_0003 = DATA_IDS[2:]
    assert migrations.rollback(data, count=len(since_0003)) == since_0003[::-1]     # back to one plain table
    relkind = "SELECT relkind FROM pg_class WHERE oid = 'reference.delivery_matrix'::regclass"
    assert sql(scratch.data, relkind) == [("r",)]
    assert verdicts(scratch, "data")[DATA_IDS[2]] == "pending"
    sql(scratch.data, "INSERT INTO reference.delivery_matrix VALUES ('100', '200', 'UPS', 'GND', 2, NULL, 95, 'x'),"
                      " ('900', '200', 'USPS', 'PRI', 1, NULL, 100, 'x')")
    assert migrations.migrate(data) == since_0003      # the rows stay, in one partition
    assert sql(scratch.data, relkind) == [("p",)]
    assert sql(scratch.data, "SELECT count(*), count(DISTINCT tableoid) FROM reference.delivery_matrix") == [(2, 1)]
    assert sql(scratch.data, "SELECT conname FROM pg_constraint WHERE contype = 'p' "
                             "AND conrelid = 'reference.delivery_matrix'::regclass") == [("delivery_matrix_pkey",)]
    with pytest.raises(psycopg2.errors.UniqueViolation):
        sql(scratch.data, "INSERT INTO reference.delivery_matrix VALUES ('100', '200', 'UPS', 'GND', 3, NULL, 60, 'x')")
    assert verdicts(scratch, "data")[DATA_IDS[2]] == "applied"
    assert migrations.rollback(data, count=len(since_0003)) == since_0003[::-1]
    assert sql(scratch.data, "SELECT count(*) FROM reference.delivery_matrix") == [(2,)]
    assert cli(scratch, "db", "migrate").exit_code == 0
    assert cli(scratch, "db", "check").exit_code == 0


def test_running_imports_move_their_worker_out_of_the_message_and_back(scratch):
    migrate_all(scratch)
    primary = resolve_targets(scratch, "primary")[0]
    since_0003 = PRIMARY_IDS[2:]  # 0003 and every later migration
    assert migrations.rollback(primary, count=len(since_0003)) == since_0003[::-1]
    insert = ("INSERT INTO config.import_runs (integration, file_name, file_sha256, file_size, status, message) "
              "VALUES ('us-zips', 'a.csv', 'ab', 1, %s, %s)")
    sql(scratch.primary, insert, ("running", "Running in process host-a:42."))
    sql(scratch.primary, insert, ("failed", "Refused: wrong header. Nothing was written."))
    runs = "SELECT status, worker, message FROM config.import_runs ORDER BY id"
    assert migrations.migrate(primary) == since_0003
    assert sql(scratch.primary, runs) == [("running", "host-a:42", None),
                                          ("failed", None, "Refused: wrong header. Nothing was written.")]
    assert migrations.rollback(primary, count=len(since_0003)) == since_0003[::-1]
    assert sql(scratch.primary, "SELECT status, message FROM config.import_runs ORDER BY id") == [
        ("running", "Running in process host-a:42."), ("failed", "Refused: wrong header. Nothing was written.")]
    assert cli(scratch, "db", "migrate").exit_code == 0


def test_live_partitions_are_renamed_out_of_the_scratch_names_and_back(scratch):
    migrate_all(scratch)
    data = resolve_targets(scratch, "data")[0]
    names = ("SELECT c.relname, ic.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
             "JOIN pg_index x ON x.indrelid = c.oid JOIN pg_class ic ON ic.oid = x.indexrelid "
             "WHERE i.inhparent = 'reference.delivery_matrix'::regclass")
    assert sql(scratch.data, names) == [("delivery_matrix__p0", "delivery_matrix__p0_pkey")]
    since_0004 = DATA_IDS[3:]
    assert migrations.rollback(data, count=len(since_0004)) == since_0004[::-1]
    assert sql(scratch.data, names) == [("_delivery_matrix_0", "_delivery_matrix_0_pkey")]
    assert verdicts(scratch, "data")[DATA_IDS[3]] == "pending"
    assert migrations.migrate(data) == since_0004
    assert sql(scratch.data, names) == [("delivery_matrix__p0", "delivery_matrix__p0_pkey")]
    assert cli(scratch, "db", "check").exit_code == 0


def test_ground_days_comes_and_goes_with_its_migration(scratch):
    migrate_all(scratch)
    data = resolve_targets(scratch, "data")[0]
    exists = "SELECT to_regclass('reference.ground_days') IS NOT NULL"
    assert sql(scratch.data, exists) == [(True,)]
    assert migrations.rollback(data) == ["0006_ground_days"]
    assert sql(scratch.data, exists) == [(False,)]
    assert migrations.migrate(data) == ["0006_ground_days"]
    assert sql(scratch.data, exists) == [(True,)]
    assert cli(scratch, "db", "check").exit_code == 0


def test_check_passes_on_a_migrated_database(scratch):
    migrate_all(scratch)
    results = run_checks(scratch)
    assert results and all(r.ok for r in results), [r for r in results if not r.ok]
    names = {r.name for r in results}
    assert {"reachable", "server version", "rights to create", "tracking matches catalog",
            "models match catalog"} <= names
    assert ("no schemas of the other side" in names) == scratch.split_db_mode


@pytest.mark.flow("Provision PRIMARY")
def test_check_fails_on_a_server_older_than_the_minimum(scratch):
    """The server's real version (server_version_num over the connection) against DB_MIN_SERVER_VERSION:
    a minimum one minor release above this server fails the check, naming both; its own version passes."""
    migrate_all(scratch)
    real = int(sql(scratch.primary, "SHOW server_version_num")[0][0])
    here, next_release = ServerVersion(real), ServerVersion(real + 1)
    newer = replace_minimum(scratch, str(next_release))
    result = cli(newer, "db", "check")
    assert result.exit_code == 1, result.output
    for side in ("primary", "data"):
        assert (f"[FAIL] {side}: server version: PostgreSQL {here}; DB_MIN_SERVER_VERSION asks for "
                f"{next_release} or newer") in result.output
    same = cli(replace_minimum(scratch, str(here)), "db", "check")
    assert same.exit_code == 0 and f"[ok] primary: server version: PostgreSQL {here}" in same.output


def replace_minimum(settings, release: str):
    """``settings`` with DB_MIN_SERVER_VERSION read from ``release`` as the environment gives it."""
    parsed = load_settings({**mode_env("single", "unused"), "DB_MIN_SERVER_VERSION": release})
    return dataclasses.replace(settings, db_min_server_version=parsed.db_min_server_version)


def test_check_fails_for_a_migration_role_without_create(scratch):
    """A real role that may connect and use the schemas but lacks CREATE in one of them (migrated
    database), or in the database itself (schemas not made yet): `db check` names what it may not
    create in and exits 1."""
    migrate_all(scratch)
    role = f"{scratch.primary.dbname}_nocreate"
    assert role.startswith(PREFIX)
    empty = Databases("nocreate")
    fresh = empty.name("fresh", create=True)
    for database in (scratch.primary.dbname, fresh):
        sql(superuser_config(dataclasses.replace(scratch.primary, dbname=database)),
            f'DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s) THEN '
            f'CREATE ROLE "{role}" LOGIN; END IF; END $$;', (role,))
    grants = [f'GRANT CONNECT ON DATABASE "{scratch.primary.dbname}" TO "{role}"',
              f'REVOKE CREATE ON DATABASE "{scratch.primary.dbname}" FROM PUBLIC',
              f'GRANT USAGE, CREATE ON SCHEMA config, _yoyo_primary TO "{role}"',
              f'GRANT USAGE ON SCHEMA customer TO "{role}"']
    try:
        for statement in grants:
            sql(scratch.primary, statement)
        as_role = dataclasses.replace(scratch, primary_migration=dataclasses.replace(
            scratch.direct_database("primary"), variable="PRIMARY_MIGRATION_URL", user=role, password=None))
        result = cli(as_role, "db", "check", "--target", "primary")
        assert result.exit_code == 1, result.output
        assert f"[FAIL] primary: rights to create: the role {role} may not create in: customer\n" in result.output
        assert (f"[FAIL] primary: tracking matches catalog: The role {role} of PRIMARY_MIGRATION_URL may not read "
                "_yoyo_primary._yoyo_migration") in result.output and "Traceback" not in result.output

        sql(superuser_config(dataclasses.replace(scratch.primary, dbname=fresh)),
            f'REVOKE CREATE ON DATABASE "{fresh}" FROM PUBLIC')
        in_fresh = dataclasses.replace(as_role, primary_migration=dataclasses.replace(
            as_role.primary_migration, dbname=fresh))
        result = cli(in_fresh, "db", "check", "--target", "primary")
        assert result.exit_code == 1, result.output
        assert (f"the role {role} may not create in: config (cannot create schemas in this database), "
                "customer (cannot create schemas in this database)") in result.output
    finally:
        for database in (scratch.primary.dbname, fresh):
            sql(superuser_config(dataclasses.replace(scratch.primary, dbname=database)), f'DROP OWNED BY "{role}"')
        empty.drop_all()
        sql(scratch.primary, f'DROP ROLE IF EXISTS "{role}"')


def test_check_finds_a_schema_of_the_other_side_in_split_mode(scratch):
    migrate_all(scratch)
    if scratch.split_db_mode:
        sql(scratch.data, "CREATE SCHEMA config")
        result = cli(scratch, "db", "check")
        assert result.exit_code == 1
        assert "[FAIL] data: no schemas of the other side: this is the data database but it holds " \
               "primary's schemas config" in result.output
    else:
        # In single mode all four schemas belong together in one database.
        assert cli(scratch, "db", "check").exit_code == 0


def test_tracking_row_lost_is_found_by_check_and_marked_by_repair(scratch):
    migrate_all(scratch)
    sql(scratch.primary, "DELETE FROM _yoyo_primary._yoyo_migration WHERE migration_id = %s", (PRIMARY_IDS[0],))
    result = cli(scratch, "db", "check")
    assert result.exit_code == 1
    assert "0001_config_customer_schemas is not tracked but all of its" in result.output
    assert cli(scratch, "db", "status").exit_code == 1
    refused = cli(scratch, "db", "migrate")
    assert refused.exit_code == 1 and "tracking and the database disagree" in refused.output
    result = cli(scratch, "db", "migrate", "--repair")
    assert result.exit_code == 0, result.output
    assert "changed: primary: marked 0001_config_customer_schemas as applied (all its objects exist)" in result.output
    assert cli(scratch, "db", "check").exit_code == 0
    assert cli(scratch, "db", "migrate", "--repair").output.count("tracking already agrees") == 2


def test_objects_dropped_behind_trackings_back_are_unmarked_and_reapplied(scratch):
    migrate_all(scratch)
    sql(scratch.data, "DROP SCHEMA reference CASCADE; DROP SCHEMA workspace CASCADE")
    assert verdicts(scratch, "data") == {i: "missing" for i in DATA_IDS}
    dry = cli(scratch, "db", "migrate", "--repair", "--dry-run", "--target", "data")
    assert "would change: data: unmarked 0001_workspace_reference_schemas" in dry.output
    assert verdicts(scratch, "data")[DATA_IDS[0]] == "missing"
    result = cli(scratch, "db", "migrate", "--repair", "--target", "data")
    assert "changed: data: unmarked 0002_seed_carriers_services" in result.output
    assert cli(scratch, "db", "migrate").exit_code == 0
    assert sql(scratch.data, "SELECT count(*) FROM reference.services")[0][0] == 14
    assert cli(scratch, "db", "check").exit_code == 0


def test_repair_refuses_what_it_cannot_prove_and_changes_nothing(scratch):
    migrate_all(scratch)
    sql(scratch.primary, "DROP TABLE config.audit_log")
    before = sql(scratch.primary, "SELECT migration_id FROM _yoyo_primary._yoyo_migration ORDER BY 1")
    result = cli(scratch, "db", "migrate", "--repair", "--target", "primary")
    assert result.exit_code == 1
    assert "repair refuses to guess, nothing was changed" in result.output
    assert "tracked as applied but 4 of its" in result.output and "config.audit_log" in result.output
    assert "Traceback" not in result.output
    assert sql(scratch.primary, "SELECT migration_id FROM _yoyo_primary._yoyo_migration ORDER BY 1") == before


def test_a_second_migrator_waits_then_fails_clearly(scratch):
    target = resolve_targets(scratch, "primary")[0]
    holder = connect(scratch.primary)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (migrations.LOCK_KEYS["primary"],))
        with pytest.raises(MigrationError, match="Another migration of the primary database is running"):
            migrations.migrate(target, lock_timeout=0.5)
        assert verdicts(scratch, "primary") == {i: "pending" for i in PRIMARY_IDS}
    finally:
        holder.close()
    assert migrations.migrate(target) == PRIMARY_IDS


def test_two_migrators_at_once_apply_each_migration_exactly_once(scratch):
    primary, data = database_names(scratch.mode, "_scratch")
    env = {**os.environ, **mode_env(scratch.mode, primary, data)}
    env.pop("FLASK_APP", None)
    procs = [start_flask("db", "migrate", env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    applies = sql(scratch.primary, "SELECT migration_id, count(*) FROM _yoyo_primary._yoyo_log "
                                   "WHERE operation = 'apply' GROUP BY 1 ORDER BY 1")
    assert applies == [(i, 1) for i in PRIMARY_IDS]
    applies = sql(scratch.data, "SELECT migration_id, count(*) FROM _yoyo_data._yoyo_log "
                                "WHERE operation = 'apply' GROUP BY 1 ORDER BY 1")
    assert applies == [(i, 1) for i in DATA_IDS]


def test_migrations_refuse_a_transaction_pooler():
    env = mode_env("single", "anything")
    env["PRIMARY_DATABASE_URL"] += "?pgbouncer=true"
    with pytest.raises(MigrationError, match="set PRIMARY_MIGRATION_URL"):
        resolve_targets(load_settings(env))
    env["PRIMARY_MIGRATION_URL"] = db_url("anything")
    target = resolve_targets(load_settings(env), "primary")[0]
    assert target.config.variable == "PRIMARY_MIGRATION_URL" and not target.config.pgbouncer


def test_status_on_an_unreachable_server_is_one_sentence(scratch):
    env = mode_env("single", "whatever")
    env["PRIMARY_DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/whatever"
    result = cli(load_settings(env), "db", "status")
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: Cannot reach PostgreSQL at 127.0.0.1:1 (PRIMARY_DATABASE_URL): "
                                     "the server is not running or the host/port is wrong.")


def test_a_missing_database_is_named_and_db_create_makes_it(scratch):
    primary, _ = database_names("single", "_mig_new")
    drop_database(primary)
    settings = load_settings(mode_env("single", primary))
    result = cli(settings, "db", "status")
    assert result.exit_code == 1 and f"The database '{primary}' named by PRIMARY_DATABASE_URL does not exist" in result.output
    try:
        assert "created" in cli(settings, "db", "create").output
        assert "exists" in cli(settings, "db", "create").output
        assert cli(settings, "db", "migrate").exit_code == 0
    finally:
        drop_database(primary)


def test_migration_ids_are_unique_across_both_sides():
    ids = [p.stem for p in (ROOT / "migrations").glob("*/*.sql") if not p.name.endswith(".rollback.sql")]
    assert len(ids) == len(set(ids))
    for path in (ROOT / "migrations").glob("*/*.sql"):
        if not path.name.endswith(".rollback.sql"):
            assert path.with_name(path.stem + ".rollback.sql").exists(), f"{path.name} has no rollback"


def with_a_failing_migration(folder, target):
    """A copy of ``target``'s migrations plus 0900 (adds a column) and 0901 (creates a table, fills
    it, then divides by zero)."""
    folder.mkdir()
    for path in target.directory.iterdir():
        (folder / path.name).write_text(path.read_text())
    (folder / "0900_adds_a_column.sql").write_text("ALTER TABLE config.roles ADD COLUMN half_way_ok integer;\n")
    (folder / "0901_fails_half_way.sql").write_text(
        "CREATE TABLE config.half_done (x integer);\nINSERT INTO config.half_done VALUES (1);\nSELECT 1 / 0;\n")
    return dataclasses.replace(target, directory=folder)


def test_a_migration_that_fails_part_way_is_rolled_back_and_named(scratch, tmp_path):
    """A new migration that creates a table and then fails: its transaction is rolled back
    (no table), tracking is unchanged, earlier ones stay applied, and the sentence names it."""
    migrate_all(scratch)
    target = resolve_targets(scratch, "primary")[0]
    broken = with_a_failing_migration(tmp_path / "primary", target)
    with pytest.raises(MigrationError) as refused:
        migrations.migrate(broken)
    message = str(refused.value)
    assert message.startswith("primary: migration 0901_fails_half_way failed and was rolled back")
    assert "division by zero" in message and "0900_adds_a_column applied before it" in message
    assert sql(scratch.primary, "SELECT to_regclass('config.half_done')")[0][0] is None
    tracked = [r[0] for r in sql(scratch.primary, "SELECT migration_id FROM _yoyo_primary._yoyo_migration ORDER BY 1")]
    assert tracked == PRIMARY_IDS + ["0900_adds_a_column"]
    assert {s.id: s.verdict for s in migrations.target_status(broken).states}["0901_fails_half_way"] == "pending"


@pytest.mark.one_mode    # the primary side's migrations only
def test_flask_db_migrate_stops_on_a_failing_migration_with_one_sentence_and_exit_1(scratch, tmp_path, monkeypatch):
    migrate_all(scratch)
    with_a_failing_migration(tmp_path / "primary", resolve_targets(scratch, "primary")[0])
    monkeypatch.setattr(migrations, "MIGRATIONS_DIR", tmp_path)      # what `flask db migrate` reads
    tracked = "SELECT migration_id FROM _yoyo_primary._yoyo_migration ORDER BY 1"
    result = cli(scratch, "db", "migrate", "--target", "primary")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: primary: migration 0901_fails_half_way failed and was rolled back, nothing of it "
                                "is applied (division by zero); 0900_adds_a_column applied before it"), result.output
    assert "Traceback" not in result.output and lines[-1].count(". ") <= 1, result.output   # one sentence (+ what to do)
    assert sql(scratch.primary, "SELECT to_regclass('config.half_done')")[0][0] is None
    assert [r[0] for r in sql(scratch.primary, tracked)] == PRIMARY_IDS + ["0900_adds_a_column"]
    again = cli(scratch, "db", "migrate", "--target", "primary")     # nothing half-applied to trip over
    assert again.exit_code == 1 and "0901_fails_half_way failed and was rolled back" in again.output
    assert [r[0] for r in sql(scratch.primary, tracked)] == PRIMARY_IDS + ["0900_adds_a_column"]


@pytest.mark.flow("Roles, then migrate each side")
@pytest.mark.flow("First administrator")
def test_deployment_steps_5_and_6_as_the_checklist_writes_them(tmp_path):
    """Two empty databases and an admin URL; then DEPLOYMENT_CHECKLIST steps 5 and 6, each a
    `flask` process in the environment the checklist builds: create-roles (admin URL in the
    environment only), the URLs it prints, check, migrate PRIMARY dry then for real, DATA, status,
    ensure-admin; the first administrator then signs in as the runtime role."""
    dbs = Databases("deploy")
    primary, data = dbs.name("primary", create=True), dbs.name("data", create=True)
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("PRIMARY_", "DATA_", "DB_", "SPLIT_", "REDIS_", "FLASK_", "HANDLED_"))}
    env = {**base, **mode_env("split", primary, data), "DB_ADMIN_URL": db_url("postgres")}

    def flask(*args):
        result = run_flask("--app", str(ROOT / "app.py"), *args, env=env, cwd=tmp_path)
        return result.returncode, result.stdout + result.stderr

    try:
        code, out = flask("db", "create-roles")
        assert code == 0, out
        printed = dict(line.split("=", 1) for line in out.splitlines() if re.match(r"^[A-Z_]+_URL=", line))
        assert set(printed) == {"PRIMARY_DATABASE_URL", "PRIMARY_MIGRATION_URL", "DATA_DATABASE_URL",
                                "DATA_MIGRATION_URL", "DATA_BUILD_URL"}, out
        del env["DB_ADMIN_URL"]          # used once, never kept in handled.env
        env.update(printed)

        code, out = flask("db", "check")
        assert code == 0 and "[FAIL]" not in out, out
        code, out = flask("db", "migrate", "--target", "primary", "--dry-run")
        assert code == 0 and f"would apply {PRIMARY_IDS[0]}" in out and "data" not in out.lower(), out
        assert flask("db", "status")[0] == 1                       # the dry run applied nothing
        code, out = flask("db", "migrate", "--target", "primary")
        assert code == 0 and f"applied {PRIMARY_IDS[-1]}" in out, out
        assert flask("db", "status")[0] == 1                       # DATA is still to do
        code, out = flask("db", "migrate", "--target", "data")
        assert code == 0 and f"applied {DATA_IDS[-1]}" in out, out
        code, out = flask("db", "status")
        assert code == 0, out
        code, out = flask("db", "check")
        assert code == 0 and "[FAIL]" not in out and "may only read and write rows" in out, out

        code, out = flask("users", "ensure-admin")
        assert code == 0, out
        password = re.search(r"generated password .*: (\S+)", out).group(1)
        app = create_app(load_settings({key: env[key] for key in env if key in printed or key in mode_env(
            "split", primary, data)}))
        client = app.test_client()
        signed_in = client.post("/login", data={"email": "admin@example.com", "password": password,
                                                "csrf_token": csrf_token(client)})
        assert signed_in.status_code == 302 and signed_in.headers["Location"].endswith("/account/password")
    finally:
        close_databases()
        dbs.drop_all()
