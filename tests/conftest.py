"""Test databases, Redis and both database modes.

Every test that takes ``settings`` (or ``app``/``client``) runs twice: once in
single-database mode (one database holds all four schemas) and once in split
mode (PRIMARY and DATA are two databases). The databases are created and
migrated once per mode per session; after each test every table is emptied,
the seed migrations are replayed and the test Redis database is flushed, so
tests never see each other's rows.

Environment (all optional):
  HANDLED_TEST_PG        server URL without database (default postgresql://postgres@127.0.0.1:5432)
  HANDLED_TEST_REDIS     Redis URL of a database the tests may flush (default redis://127.0.0.1:6379/15)
  HANDLED_TEST_DB_PREFIX prefix of every database the tests create (default handled_test)
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg2
import pytest
import redis

from handled import create_app
from handled.models import SCHEMAS
from handled.schema.names import SCRATCH_LIKE_PATTERNS
from handled.schema.migrations import MIGRATIONS_DIR, migrate, resolve_targets
from handled.settings import load_settings
from tests.auth_helpers import csrf_token_fixture, login_client  # noqa: F401  (fixtures, issue 4)

PG_SERVER = os.environ.get("HANDLED_TEST_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
TEST_REDIS = os.environ.get("HANDLED_TEST_REDIS", "redis://127.0.0.1:6379/15")
PREFIX = os.environ.get("HANDLED_TEST_DB_PREFIX", "handled_test")
SECRET = "test-secret-key-0123456789abcdef"
MODES = ["single", "split"]
SEED_FILES = sorted(MIGRATIONS_DIR.glob("*/*seed*.sql"))
SEED_FILES = [p for p in SEED_FILES if not p.name.endswith(".rollback.sql")]


def db_url(name: str) -> str:
    return f"{PG_SERVER}/{name}"


def admin_connection():
    conn = psycopg2.connect(db_url("postgres"))
    conn.autocommit = True
    return conn


def recreate_database(name: str) -> None:
    """Drop (if present) and create one of the tests' own databases."""
    assert name.startswith(PREFIX), "tests only ever drop databases they created"
    conn = admin_connection()
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def drop_database(name: str) -> None:
    assert name.startswith(PREFIX)
    conn = admin_connection()
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def mode_env(mode: str, primary: str, data: str | None = None, **extra) -> dict:
    env = {
        "PRIMARY_DATABASE_URL": db_url(primary),
        "SPLIT_DB_MODE": "true" if mode == "split" else "false",
        "REDIS_URL": TEST_REDIS,
        "SECRET_KEY": SECRET,
        # accounts (issue 4): plain-http test servers, and cheap password hashing
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


def reset_tables(settings) -> None:
    """Empty every table of the four schemas and replay the seed migrations."""
    for target in ("primary", "data"):
        config = settings.primary if target == "primary" else settings.data
        conn = psycopg2.connect(dbname=config.dbname, **config.connect_kwargs())
        conn.autocommit = True
        with conn.cursor() as cur:
            if target == "data":   # what a killed or failed build left (dropping them drops their slices)
                cur.execute("SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables "
                            "WHERE schemaname = 'reference' AND tablename LIKE ANY(%s)", (list(SCRATCH_LIKE_PATTERNS),))
                for (leftover,) in cur.fetchall():
                    cur.execute(f"DROP TABLE IF EXISTS {leftover}")
            cur.execute(
                "SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables WHERE schemaname = ANY(%s)",
                (list(SCHEMAS[target]),))
            tables = [row[0] for row in cur.fetchall()]
            if tables:
                cur.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
            for seed in SEED_FILES:
                if seed.parent.name == target:
                    cur.execute(seed.read_text())
        conn.close()


@pytest.fixture(scope="session", params=MODES)
def db_mode(request):
    return request.param


# issue 7: HANDLED_TEST_VIA_PGBOUNCER=1 runs every test's PRIMARY through a real PgBouncer
# (transaction pooling, TLS from the app to the pooler), e.g. for the sign-in and admin tests.
VIA_PGBOUNCER = os.environ.get("HANDLED_TEST_VIA_PGBOUNCER", "") == "1"


@pytest.fixture(scope="session")
def pgbouncer_in_front():
    if not VIA_PGBOUNCER:
        yield None
        return
    from urllib.parse import urlsplit

    from tests.servers import PrivatePgBouncer, self_signed_certificate
    server = PrivatePgBouncer(server_port=urlsplit(PG_SERVER).port or 5432, pool_size=10,
                              client_tls=self_signed_certificate()).start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def migrated_settings(db_mode, pgbouncer_in_front):
    settings = fresh_settings(db_mode)
    for target in resolve_targets(settings, "all"):
        migrate(target)
    if pgbouncer_in_front is not None:
        from tests.servers import through_pgbouncer
        return through_pgbouncer(settings, pgbouncer_in_front, sslmode="require")
    return settings


@pytest.fixture
def settings(migrated_settings):
    """Migrated databases of the current mode, emptied again after the test."""
    yield migrated_settings
    reset_tables(migrated_settings)
    redis.Redis.from_url(TEST_REDIS).flushdb()


@pytest.fixture(params=MODES)
def scratch(request):
    """Empty, unmigrated databases of one mode that the test may break; dropped after it."""
    settings = fresh_settings(request.param, tag="_scratch")
    yield settings
    for name in database_names(request.param, "_scratch"):
        if name:
            drop_database(name)


@pytest.fixture
def app(settings):
    application = create_app(settings)
    application.config.update(TESTING=True)
    yield application


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(TEST_REDIS)
    yield client
    client.flushdb()


@pytest.fixture
def artifacts_dir(request) -> Path:
    """A folder for a test's screenshots and logs, kept after the run."""
    root = Path(os.environ.get("HANDLED_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))
    path = root / request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_terminal_summary(terminalreporter):
    """Say how many tests ran in each database mode, so both modes show in CI output."""
    counts = {mode: {"passed": 0, "failed": 0} for mode in MODES}
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") not in ("call", "setup"):
                continue
            for mode in MODES:
                if f"[{mode}" in report.nodeid or f"-{mode}]" in report.nodeid or f"-{mode}-" in report.nodeid:
                    counts[mode]["passed" if outcome == "passed" else "failed"] += 1
    terminalreporter.write_sep("-", "database modes")
    for mode in MODES:
        terminalreporter.write_line(f"{mode:>6} mode: {counts[mode]['passed']} passed, "
                                    f"{counts[mode]['failed']} failed or errored")
