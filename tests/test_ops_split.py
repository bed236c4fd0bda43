"""flask db split / unsplit: a populated single database moves to split mode and back,
every table verified, users sign in with their old passwords, reruns are safe."""

from __future__ import annotations

import pytest
import redis

from handled import create_app
from handled.context import system_context
from handled.models import SCHEMAS, User
from handled.ops import move
from handled.schema.migrations import migrate, resolve_targets
from handled.settings import load_settings
from tests.support.accounts import csrf_token, sign_in
from tests.support.databases import Databases, connect, db_url, mode_env, with_roles
from tests.support.environment import TEST_REDIS
from tests.support.operations import populate_primary, sequence_values, table_fingerprints

PRIMARY_SCHEMAS = SCHEMAS["primary"]


@pytest.fixture
def dbs():
    databases = Databases("opsplit")
    yield databases
    databases.drop_all()
    redis.Redis.from_url(TEST_REDIS).flushdb()


@pytest.fixture
def single(dbs, tmp_path):
    """A migrated, populated single database and its app."""
    name = dbs.name("single", create=True)
    settings = with_roles(load_settings(mode_env("single", name, BACKUP_DIR=tmp_path / "backups")))   # least privilege
    for target in resolve_targets(settings, "all"):
        migrate(target)
    app = create_app(settings)
    app.config.update(TESTING=True)
    people = populate_primary(app)
    return name, app, people


def cli(app, *args, env=None):
    """Run a flask command (with ``env`` added to the environment); ``output`` holds stdout and stderr."""
    return app.test_cli_runner().invoke(args=list(args), env=env)


@pytest.mark.flow("Moving between single and split mode")
@pytest.mark.flow("Roll back split mode")
@pytest.mark.flow("Moving an existing single database to split mode")
def test_split_then_unsplit_keeps_every_row_and_every_login(single, dbs):
    """DEPLOYMENT_CHECKLIST steps 7 and 10, command by command as written there."""
    name, app, people = single
    new_primary = dbs.name("newprimary")
    backup = cli(app, "backup", "create", "--target", "primary")
    assert backup.exit_code == 0 and "handled-primary-" in backup.output, backup.output
    before = table_fingerprints(name, PRIMARY_SCHEMAS)
    sequences_before = sequence_values(name, PRIMARY_SCHEMAS)
    url_in_env = {"NEW_PRIMARY_URL": db_url(new_primary)}
    dry = cli(app, "db", "split", "--to-primary-env", "NEW_PRIMARY_URL", "--dry-run", env=url_in_env)
    assert dry.exit_code == 0 and "dry run" in dry.output.lower(), dry.output
    assert table_fingerprints(name, PRIMARY_SCHEMAS) == before
    result = cli(app, "db", "split", "--to-primary-env", "NEW_PRIMARY_URL", env=url_in_env)
    assert result.exit_code == 0, result.output
    assert "copied" in result.output
    for table in before:
        line = next(line for line in result.output.splitlines() if line.strip().startswith(table + " "))
        assert line.rstrip().endswith("ok"), line
    assert table_fingerprints(new_primary, PRIMARY_SCHEMAS) == before
    after = sequence_values(new_primary, PRIMARY_SCHEMAS)
    for sequence, value in sequences_before.items():
        if sequence != "config.audit_log_id_seq":   # the split's own audit row, written to both after it
            assert after[sequence] == value, sequence  # ids continue where they stopped
    assert after == sequence_values(name, PRIMARY_SCHEMAS)

    split_app = create_app(with_roles(load_settings(mode_env("split", new_primary, name))))
    split_app.config.update(TESTING=True)
    for who in people.values():
        client = sign_in(split_app, who.email)
        me = client.get("/api/me").get_json()
        assert me["email"] == who.email
    lead_perms = sign_in(split_app, people["lead"].email).get("/api/me").get_json()["permissions"]
    assert lead_perms == ["run_imports", "view_customers"]
    admin = sign_in(split_app, people["admin"].email)
    assert admin.get("/admin/users").status_code == 200
    assert sign_in(split_app, people["seller"].email).get("/admin/users").status_code == 403
    response = admin.post("/admin/users/new", data={"email": "after@example.test", "name": "After Split",
                                                    "roles": ["salesperson"],
                                                    "password": "another long password",
                                                    "csrf_token": csrf_token(admin)})
    assert response.status_code in (200, 302)
    with split_app.app_context():
        newcomer = User.get(User.email == "after@example.test")
    assert newcomer.id == sequences_before["config.users_id_seq"] + 1  # the sequence moved with the data

    # Rollback: the old single database still holds the pre-split copy: refused without --force.
    refused = cli(split_app, "db", "unsplit", "--to", db_url(name))
    assert refused.exit_code == 1 and "already holds data" in refused.output
    check = cli(split_app, "db", "check")  # DATA still holds the pre-split copy (DEPLOYMENT_CHECKLIST step 7)
    assert check.exit_code == 1 and "[FAIL] data: no schemas of the other side" in check.output
    status = cli(split_app, "db", "status")
    assert status.exit_code == 0, status.output
    listed = cli(split_app, "db", "prune-leftovers")
    assert "would drop schema config" in listed.output and "Nothing dropped" in listed.output
    assert cli(split_app, "db", "prune-leftovers", "--yes").exit_code == 0
    assert cli(split_app, "db", "check").exit_code == 0
    dry = cli(split_app, "db", "unsplit", "--to", db_url(name), "--dry-run")
    assert dry.exit_code == 0, dry.output
    back = cli(split_app, "db", "unsplit", "--to", db_url(name))
    assert back.exit_code == 0, back.output
    assert table_fingerprints(name, PRIMARY_SCHEMAS) == table_fingerprints(new_primary, PRIMARY_SCHEMAS)

    single_again = create_app(with_roles(load_settings(mode_env("single", name))))
    single_again.config.update(TESTING=True)
    assert sign_in(single_again, "after@example.test", "another long password").get("/api/me").status_code == 200
    assert sign_in(single_again, people["lead"].email).get("/api/me").get_json()["permissions"] == lead_perms


def test_dry_run_writes_nothing(single, dbs):
    name, app, _ = single
    target = dbs.name("dry")
    result = cli(app, "db", "split", "--to-primary", db_url(target), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would create the database" in result.output
    assert "would apply 0001_config_customer_schemas" in result.output
    assert "config.users" in result.output and "not copied" in result.output
    admin = connect("postgres")
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,))
        assert cur.fetchone() is None
    admin.close()

    created = dbs.name("dry_empty", create=True)  # exists, not migrated yet
    second = cli(app, "db", "split", "--to-primary", db_url(created), "--dry-run")
    assert second.exit_code == 0, second.output
    assert "would apply 0002_seed_roles_permissions" in second.output
    with connect(created) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname IN ('config', 'customer', '_yoyo_primary')")
        assert cur.fetchone()[0] == 0  # not even the tracking schema: a dry run only reads


@pytest.mark.flow("Moving an existing single database to split mode")
def test_interrupted_split_leaves_target_clean_and_rerun_finishes(single, dbs):
    name, app, _ = single
    target = dbs.name("interrupted")
    copied = []

    def kill_connection_after_three_tables(table, target_conn):
        copied.append(table.qualified)
        if len(copied) == 3:
            killer = connect(target)
            with killer.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(%s)", (target_conn.get_backend_pid(),))
            killer.close()

    move.after_table_copied.append(kill_connection_after_three_tables)
    try:
        failed = cli(app, "db", "split", "--to-primary", db_url(target))
    finally:
        move.after_table_copied.remove(kill_connection_after_three_tables)
    assert failed.exit_code == 1
    assert "nothing was committed" in failed.output and "Traceback" not in failed.output
    with connect(target) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM config.users")
        assert cur.fetchone()[0] == 0  # nothing of the interrupted run was kept

    rerun = cli(app, "db", "split", "--to-primary", db_url(target))
    assert rerun.exit_code == 0, rerun.output
    assert table_fingerprints(target, PRIMARY_SCHEMAS) == table_fingerprints(name, PRIMARY_SCHEMAS)

    again = cli(app, "db", "split", "--to-primary", db_url(target))  # e.g. after a crash past the commit
    assert again.exit_code == 0 and "already identical" in again.output


@pytest.mark.flow("Roll back split mode")
def test_refuses_a_target_holding_other_data_unless_forced(single, dbs):
    name, app, _ = single
    target = dbs.name("occupied")
    assert cli(app, "db", "split", "--to-primary", db_url(target)).exit_code == 0
    with connect(target) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO customer.organizations (code, name) VALUES ('STRAY', 'Not from the source')")
    refused = cli(app, "db", "split", "--to-primary", db_url(target))
    assert refused.exit_code == 1
    assert "already holds data" in refused.output
    assert "--force" in refused.output
    forced = cli(app, "db", "split", "--to-primary", db_url(target), "--force")
    assert forced.exit_code == 0, forced.output
    assert table_fingerprints(target, PRIMARY_SCHEMAS) == table_fingerprints(name, PRIMARY_SCHEMAS)

    # Rolling back before the leftover copy was pruned (DEPLOYMENT_CHECKLIST step 10): the old
    # database still holds PRIMARY's rows of before; --force replaces them with today's.
    split_app = create_app(with_roles(load_settings(mode_env("split", target, name))))
    with connect(target) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO customer.organizations (code, name) VALUES ('AFTER', 'Added after the split')")
    refused = cli(split_app, "db", "unsplit", "--to", db_url(name))
    assert refused.exit_code == 1 and "already holds data" in refused.output
    forced = cli(split_app, "db", "unsplit", "--to", db_url(name), "--force")
    assert forced.exit_code == 0, forced.output
    assert table_fingerprints(name, PRIMARY_SCHEMAS) == table_fingerprints(target, PRIMARY_SCHEMAS)


def test_refuses_pgbouncer_target_same_database_and_wrong_mode(single, dbs):
    name, app, _ = single
    through_pooler = cli(app, "db", "split", "--to-primary", db_url(dbs.name("x")) + "?pgbouncer=true")
    assert through_pooler.exit_code == 1 and "direct connection" in (through_pooler.output)
    same = cli(app, "db", "split", "--to-primary", db_url(name))
    assert same.exit_code == 1 and "same database" in (same.output)
    not_split = cli(app, "db", "unsplit", "--to", db_url(dbs.name("y")))
    assert not_split.exit_code == 1 and "single mode" in (not_split.output)


def test_verification_catches_a_difference_and_rolls_back(single, dbs):
    """A row changed on the target mid-copy makes the checksums disagree: nothing is committed."""
    name, app, _ = single
    target = dbs.name("tampered")

    def tamper(table, target_conn):
        if table.qualified == "customer.organizations":
            with target_conn.cursor() as cur:
                cur.execute("UPDATE customer.organizations SET name = name || '!' WHERE code = 'ORG1'")

    move.after_table_copied.append(tamper)
    try:
        result = cli(app, "db", "split", "--to-primary", db_url(target))
    finally:
        move.after_table_copied.remove(tamper)
    assert result.exit_code == 1
    assert "Verification failed for customer.organizations" in result.output
    assert "DIFFERENT" in result.output
    with connect(target) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM customer.organizations")
        assert cur.fetchone()[0] == 0


def test_checksum_ignores_row_order_but_not_content(single):
    name, _, _ = single
    conn = connect(name, autocommit=False)
    from handled.ops.tables import prepare_session, tables_in_order
    from handled.ops.transfer import checksums
    prepare_session(conn)
    tables = {t.qualified: t for t in tables_in_order(conn, "primary")}
    order = list(tables)
    assert order.index("config.users") < order.index("config.sessions") < order.index("config.user_roles") or \
        order.index("config.users") < order.index("config.user_roles")
    assert order.index("customer.facilities") < order.index("customer.facility_organizations")
    first = checksums(conn, [tables["customer.organizations"]])
    with conn.cursor() as cur:
        cur.execute("CLUSTER customer.organizations USING organizations_code_key")  # rewrites in another order
    assert checksums(conn, [tables["customer.organizations"]]) == first
    with conn.cursor() as cur:
        cur.execute("UPDATE customer.organizations SET contact_email = 'x@y.z' WHERE code = 'ORG2'")
    assert checksums(conn, [tables["customer.organizations"]]) != first
    conn.rollback()
    conn.close()


@pytest.mark.flow("Roll back split mode")
def test_unsplit_into_a_third_database_moves_both_sides(single, dbs):
    """Rollback to a database other than DATA: PRIMARY and DATA both stream into it."""
    name, app, people = single
    with connect(name) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO workspace.usps_3d_base_service (origin_zip3, dest_zip3, pri_days)
                       SELECT lpad((g / 1000)::text, 3, '0'), lpad((g % 1000)::text, 3, '0'), (g % 5)::smallint
                       FROM generate_series(0, 49999) g""")
        cur.execute("""INSERT INTO workspace.gaz_zcta_national VALUES
                       ('00601', 166659789, 799296, 64.348, 0.309, 18.180555, -66.749961)""")
    new_primary = dbs.name("p2")
    assert cli(app, "db", "split", "--to-primary", db_url(new_primary)).exit_code == 0
    split_app = create_app(with_roles(load_settings(mode_env("split", new_primary, name))))
    third = dbs.name("third")
    result = cli(split_app, "db", "unsplit", "--to", db_url(third))
    assert result.exit_code == 0, result.output
    assert "primary:" in result.output and "data:" in result.output
    assert "DIFFERENT" not in result.output
    for side in ("primary", "data"):
        source = new_primary if side == "primary" else name
        assert table_fingerprints(third, SCHEMAS[side]) == table_fingerprints(source, SCHEMAS[side])
    single_again = create_app(with_roles(load_settings(mode_env("single", third))))
    single_again.config.update(TESTING=True)
    assert sign_in(single_again, people["admin"].email).get("/admin/users").status_code == 200


def test_rows_written_to_the_source_during_the_copy_are_reported(single, dbs):
    """The copy reads one snapshot; a write after it is not copied, and the command says so."""
    name, app, _ = single
    target = dbs.name("moving")

    def write_to_source(table, target_conn):
        if table.qualified == "config.audit_log":
            with connect(name) as conn, conn.cursor() as cur:
                cur.execute("INSERT INTO customer.organizations (code, name) VALUES ('LATE', 'Written mid-copy')")

    move.after_table_copied.append(write_to_source)
    try:
        result = cli(app, "db", "split", "--to-primary", db_url(target))
    finally:
        move.after_table_copied.remove(write_to_source)
    assert result.exit_code == 0, result.output  # the snapshot itself was copied and verified
    assert "WARNING: the source changed during the copy (customer.organizations)" in result.output
    with connect(target) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM customer.organizations WHERE code = 'LATE'")
        assert cur.fetchone()[0] == 0
    forced = cli(app, "db", "split", "--to-primary", db_url(target), "--force")
    assert forced.exit_code == 0 and "WARNING" not in forced.output
    assert table_fingerprints(target, PRIMARY_SCHEMAS) == table_fingerprints(name, PRIMARY_SCHEMAS)


def test_a_partitioned_table_is_copied_once_through_its_parent_whatever_its_partitions_are_named(single, dbs):
    """Live partitions carry no scratch prefix (<table>__p<gen>_<i>): the copy, the checksums
    and the backups' table lists still see one table, and a scratch parent's partitions not at all."""
    name, _, _ = single
    with connect(name) as conn, conn.cursor() as cur:
        cur.execute("""
            ALTER TABLE reference.delivery_matrix DETACH PARTITION reference.delivery_matrix__p0;
            DROP TABLE reference.delivery_matrix__p0;
            CREATE TABLE reference.delivery_matrix__p1a2b3_0 PARTITION OF reference.delivery_matrix
                FOR VALUES FROM (MINVALUE) TO ('500');
            CREATE TABLE reference.any_name_at_all PARTITION OF reference.delivery_matrix
                FOR VALUES FROM ('500') TO (MAXVALUE);
            INSERT INTO reference.delivery_matrix
                SELECT lpad(g::text, 3, '0'), '100', 'UPS', 'GND', 3, '2', 50, 'test'
                FROM generate_series(0, 999) g;
            CREATE TABLE reference._build_delivery_matrix (LIKE reference.delivery_matrix)
                PARTITION BY RANGE (origin_zip3);
            CREATE TABLE reference.delivery_matrix__p9f8e7_0 PARTITION OF reference._build_delivery_matrix
                FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
            INSERT INTO reference._build_delivery_matrix SELECT * FROM reference.delivery_matrix""")
    from handled.ops.tables import tables_in_order
    with connect(name) as conn:
        listed = [t.qualified for t in tables_in_order(conn, "data") if t.schema == "reference"]
    assert listed.count("reference.delivery_matrix") == 1
    assert not [t for t in listed if "__p" in t or "any_name" in t or "_build_" in t]
    copy = dbs.name("partitions")
    source = load_settings(mode_env("single", name))
    report = move.move_side(system_context(source), "data", source.direct_database("data"),
                            load_settings(mode_env("single", copy)).primary)
    assert report.verified and report.outcome == "copied"
    assert [t.source.rows for t in report.tables if t.table == "reference.delivery_matrix"] == [1000]
    assert table_fingerprints(copy, ["reference"]) == table_fingerprints(name, ["reference"])
    with connect(copy) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('reference._build_delivery_matrix')")
        assert cur.fetchone()[0] is None
