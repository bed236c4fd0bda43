"""The tests' own databases: names, creating and dropping them, connecting, and the per-test reset.

Every database a test creates starts with PREFIX, and only such databases are ever dropped.
"""

from __future__ import annotations

import json
from dataclasses import replace

import psycopg2

from handled.schema.migrations import MIGRATIONS_DIR
from handled.models import SCHEMAS
from handled.schema.names import SCRATCH_LIKE_PATTERNS
from handled.schema.roles import RoleNames, create_roles
from handled.settings import load_settings, parse_database_url
from tests.support.environment import PG_SERVER, PREFIX, SECRET, TEST_REDIS

SEED_FILES = [p for p in sorted(MIGRATIONS_DIR.glob("*/*seed*.sql")) if not p.name.endswith(".rollback.sql")]


def db_url(name: str) -> str:
    return f"{PG_SERVER}/{name}"


def connect(where, autocommit: bool = True):
    """A psycopg2 connection to ``where``: a DatabaseConfig (``settings.primary``), a URL, or the
    name of a database on the test server."""
    if hasattr(where, "connect_kwargs"):
        conn = psycopg2.connect(dbname=where.dbname, **where.connect_kwargs())
    else:
        conn = psycopg2.connect(where if "://" in where else db_url(where))
    conn.autocommit = autocommit
    return conn


def recreate_database(name: str) -> None:
    """Drop (if present) and create one of the tests' own databases."""
    assert name.startswith(PREFIX), "tests only ever drop databases they created"
    conn = connect("postgres")
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def drop_database(name: str) -> None:
    """Drop one of the tests' databases, and the roles create-roles named after it (roles are
    cluster-wide: named after a database under PREFIX, they are only ever the tests' own)."""
    assert name.startswith(PREFIX), "tests only ever drop databases they created"
    conn = connect("postgres")
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in RoleNames.for_database(name, builder=True).all():
            assert role.startswith(PREFIX)
            cur.execute(f'DROP ROLE IF EXISTS "{role}"')
    conn.close()


def superuser_config(config):
    """The same database as ``config``, as the test server's superuser (fixtures and resets only)."""
    return parse_database_url(config.variable, db_url(config.dbname))


def with_roles(settings):
    """Run create-roles on ``settings``' databases (as the superuser) and return settings whose URLs
    use its roles: runtime for PRIMARY/DATA_DATABASE_URL, owner for the *_MIGRATION_URLs, the
    builder for DATA_BUILD_URL. Trust authentication: no passwords needed."""
    admin = parse_database_url("DB_ADMIN_URL", db_url("postgres"))
    plans = create_roles(replace(settings, db_admin=admin))
    by_side = {side: plan.names for plan in plans for side in plan.sides}

    def as_role(config, variable, role):
        return replace(config, variable=variable, user=role, password=None)

    primary, data = by_side["primary"], by_side["data"]
    return replace(
        settings, db_admin=admin,
        primary=as_role(settings.primary, "PRIMARY_DATABASE_URL", primary.runtime),
        data=as_role(settings.data, "DATA_DATABASE_URL", data.runtime),
        primary_migration=as_role(settings.primary, "PRIMARY_MIGRATION_URL", primary.owner),
        data_migration=as_role(settings.data, "DATA_MIGRATION_URL", data.owner) if settings.split_db_mode else None,
        data_build=as_role(settings.data, "DATA_BUILD_URL", data.builder))


def mode_env(mode: str, primary: str, data: str | None = None, **extra) -> dict:
    env = {
        "PRIMARY_DATABASE_URL": db_url(primary),
        "SPLIT_DB_MODE": "true" if mode == "split" else "false",
        "REDIS_URL": TEST_REDIS,
        "SECRET_KEY": SECRET,
        # plain-http test servers, and cheap password hashing
        "SESSION_COOKIE_SECURE": "false",
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "1024",
    }
    if data:
        env["DATA_DATABASE_URL"] = db_url(data)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def database_names(mode: str, tag: str = "") -> tuple[str, str | None]:
    base = f"{PREFIX}{tag}_{mode}"
    return (base, None) if mode == "single" else (f"{base}_primary", f"{base}_data")


def fresh_settings(mode: str, tag: str = "", **extra):
    """Settings over newly created, empty databases for ``mode`` (not migrated)."""
    primary, data = database_names(mode, tag)
    recreate_database(primary)
    if data:
        recreate_database(data)
    return load_settings(mode_env(mode, primary, data, **extra))


class Databases:
    """Databases a test creates under the test prefix; all dropped at the end."""

    def __init__(self, tag: str):
        self.tag = tag
        self.names: list[str] = []

    def name(self, suffix: str, create: bool = False) -> str:
        name = f"{PREFIX}_{self.tag}_{suffix}"
        assert name.startswith(PREFIX)
        if name not in self.names:
            self.names.append(name)
        drop_database(name)
        if create:
            recreate_database(name)
        return name

    def drop_all(self) -> None:
        for name in self.names:
            drop_database(name)


# --- the reset after every test -------------------------------------------------------------
# One round trip per database: a DO block drops what a killed or failed build left (data side,
# handled.schema.names), TRUNCATEs in one statement every table of the side's schemas that holds a
# row (an empty table has nothing to empty, and TRUNCATE of a table costs new files whether or not
# it had rows), restarts every sequence a table owns that has been used since its last restart
# (what RESTART IDENTITY did), and replays the seed migrations.
#
# Only what the test touched: the seeded tables (roles, permissions, carriers, services) are left
# as they are when, after the other tables were emptied (a TRUNCATE ... CASCADE reaches whatever
# references them), each still has the fingerprint it had after a full reset: its rows where they
# lie (ctid, so even an edit undone shows) and its sequences' positions. Any difference and the
# seeded tables are emptied, their sequences restarted and the seeds replayed.

FINGERPRINT_SQL = r"""
SELECT md5(coalesce((SELECT string_agg(t.ctid::text || t::text, chr(10) ORDER BY t.ctid) FROM {table} t), ''))
    || ':' || coalesce((SELECT string_agg(coalesce(s.last_value::text, '-'), ',' ORDER BY s.sequencename)
                        FROM pg_depend d
                        JOIN pg_class c ON c.oid = d.objid AND c.relkind = 'S'
                        JOIN pg_namespace n ON n.oid = c.relnamespace
                        JOIN pg_sequences s ON s.schemaname = n.nspname AND s.sequencename = c.relname
                        WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                          AND d.refobjid = '{table}'::regclass AND d.deptype IN ('a', 'i')), '')
"""

RESET_SQL = r"""
DO $reset$
DECLARE
    item record;
    holds_rows boolean;
    fingerprint text;
    seeded_table text;
    written text[] := '{}';
    seeded text[] := '{}';
    expected jsonb := %(expected)s::jsonb;          -- NULL until a full reset of this side took them
    seeds_as_left boolean := %(expected)s::jsonb IS NOT NULL;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);   -- no wait for the disk: only a reset is at stake
    PERFORM set_config('session_replication_role', 'replica', true);   -- audit_log's trigger stays out of it
    IF %(drop_leftovers)s THEN
        FOR item IN SELECT format('%%I.%%I', schemaname, tablename) AS name FROM pg_tables
                    WHERE schemaname = 'reference' AND tablename LIKE ANY(%(scratch)s)
        LOOP
            EXECUTE 'DROP TABLE IF EXISTS ' || item.name;
        END LOOP;
    END IF;
    -- 1. every table that holds a row, but the seeded ones: emptied
    FOR item IN SELECT format('%%I.%%I', schemaname, tablename) AS name FROM pg_tables
                WHERE schemaname = ANY(%(schemas)s)
    LOOP
        IF coalesce(expected ? item.name, false) THEN
            seeded := seeded || item.name;
        ELSE
            EXECUTE 'SELECT EXISTS (SELECT FROM ' || item.name || ')' INTO holds_rows;
            IF holds_rows THEN
                written := written || item.name;
            END IF;
        END IF;
    END LOOP;
    IF cardinality(written) > 0 THEN
        EXECUTE 'TRUNCATE ' || array_to_string(written, ', ') || ' CASCADE';
    END IF;
    -- 2. the seeded tables, as they are now: each as the last full reset left it, or all seeded again
    IF seeds_as_left AND cardinality(seeded) <> (SELECT count(*) FROM jsonb_object_keys(expected)) THEN
        seeds_as_left := false;   -- a seeded table is gone
    END IF;
    FOREACH seeded_table IN ARRAY CASE WHEN seeds_as_left THEN seeded ELSE '{}'::text[] END LOOP
        EXECUTE replace(%(fingerprint)s, '{table}', seeded_table) INTO fingerprint;
        IF fingerprint IS DISTINCT FROM expected ->> seeded_table THEN
            seeds_as_left := false;
            EXIT;
        END IF;
    END LOOP;
    IF NOT seeds_as_left AND cardinality(seeded) > 0 THEN   -- every other table is empty by now
        EXECUTE 'TRUNCATE ' || array_to_string(seeded, ', ') || ' CASCADE';
    END IF;
    -- 3. sequences used since their last restart start over (the seeded tables' only when reseeded)
    FOR item IN SELECT format('%%I.%%I', s.schemaname, s.sequencename) AS name, s.start_value
                FROM pg_sequences s
                JOIN pg_class c ON c.relname = s.sequencename
                JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = s.schemaname
                JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                WHERE s.schemaname = ANY(%(schemas)s) AND s.last_value IS NOT NULL
                  AND NOT (seeds_as_left AND d.refobjid::regclass::text = ANY(seeded))
    LOOP
        PERFORM setval(item.name, item.start_value, false);
    END LOOP;
    IF NOT seeds_as_left THEN
        EXECUTE %(seeds)s;
    END IF;
END
$reset$;
"""

SIDE_TABLES_SQL = """
SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables WHERE schemaname = ANY(%(schemas)s)
"""

# (host, port, database, side) -> {seeded table: fingerprint after a full reset}. Taken once per test
# process, after its first reset of that database (always a full one): a full reset leaves the same
# state every time, so the fingerprints stay true for the session.
_seed_fingerprints: dict[tuple, dict[str, str]] = {}


SEEDS = {side: "\n".join(seed.read_text() for seed in SEED_FILES if seed.parent.name == side)
         for side in ("primary", "data")}


def _reset_params(side: str, expected: dict | None) -> dict:
    """RESET_SQL's parameters for ``side``, given its seeded tables' fingerprints (None: not taken yet)."""
    return {"drop_leftovers": side == "data", "schemas": list(SCHEMAS[side]),
            "scratch": list(SCRATCH_LIKE_PATTERNS), "fingerprint": FINGERPRINT_SQL, "seeds": SEEDS[side],
            "expected": json.dumps(expected) if expected is not None else None}


def _take_fingerprints(cur, side: str) -> dict[str, str]:
    """The fingerprint of every table of ``side`` that holds rows right after a full reset: the seeded ones."""
    cur.execute(SIDE_TABLES_SQL, {"schemas": list(SCHEMAS[side])})
    prints = {}
    for (table,) in cur.fetchall():
        cur.execute(f"SELECT EXISTS (SELECT FROM {table})")
        if cur.fetchone()[0]:
            cur.execute(FINGERPRINT_SQL.replace("{table}", table))
            prints[table] = cur.fetchone()[0]
    return prints


def reset_tables(settings) -> None:
    """Empty every table of the four schemas that the test wrote and put the seeds back.

    One query string per database (both sides at once in single mode), on a new connection
    closed at once: a kept one would show in the tests that count the connections to their
    database. After the first (full) reset of a side, its seeded tables' fingerprints are taken
    (a second round trip, once per test process)."""
    batches: dict[tuple, tuple] = {}
    for side, config in (("primary", settings.primary), ("data", settings.data)):
        db_key = (config.host, config.port, config.dbname)
        batches.setdefault(db_key, (config, []))[1].append(side)
    for db_key, (config, sides) in batches.items():
        conn = connect(superuser_config(config))   # TRUNCATE, and past the audit log's append-only trigger
        try:
            with conn.cursor() as cur:
                cur.execute(b"".join(cur.mogrify(RESET_SQL, _reset_params(side, _seed_fingerprints.get((*db_key, side))))
                                     for side in sides))
                for side in sides:
                    if (*db_key, side) not in _seed_fingerprints:
                        _seed_fingerprints[(*db_key, side)] = _take_fingerprints(cur, side)
        finally:
            conn.close()


def session_runtime_roles() -> list[str]:
    """The runtime (app) roles of the session's migrated databases, one per mode: what a private
    PgBouncer in front of them must list in its auth file."""
    from handled.schema.roles import RoleNames
    from tests.support.environment import MODES

    return [RoleNames.for_database(database_names(mode)[0], builder=False).runtime for mode in MODES]
