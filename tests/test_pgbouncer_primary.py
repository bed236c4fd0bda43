"""PRIMARY behind a real PgBouncer in transaction pooling mode: sign-in, the session
cache and the admin pages work through it; migrations refuse it (end to end, CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import psycopg2
import pytest
import redis

from handled import create_app
from handled.settings import DatabaseConfig, parse_database_url
from tests.auth_helpers import csrf_token, make_user
from tests.conftest import TEST_REDIS, db_url
from tests.ops_support import sign_in
from tests.servers import PrivatePgBouncer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def bouncer():
    server = PrivatePgBouncer(server_port=5432, pool_size=3).start()
    yield server
    server.destroy()


def bounced(settings, bouncer, **params) -> object:
    """The same databases, PRIMARY (and DATA in single mode, one URL) through PgBouncer."""
    primary = parse_database_url("PRIMARY_DATABASE_URL", bouncer.url(settings.primary.dbname, **params))
    data = settings.data if settings.split_db_mode else DatabaseConfig(**{**primary.__dict__,
                                                                          "variable": "DATA_DATABASE_URL"})
    direct = parse_database_url("PRIMARY_MIGRATION_URL", db_url(settings.primary.dbname))
    return replace(settings, primary=primary, data=data, primary_migration=direct)


def pooler_stats(bouncer, dbname: str) -> dict:
    conn = psycopg2.connect(bouncer.admin_url())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SHOW STATS")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, row)) for row in cur.fetchall()]
    conn.close()
    return next(row for row in rows if row["database"] == dbname)


def test_sign_in_session_cache_and_admin_pages_through_pgbouncer(settings, bouncer):
    app = create_app(bounced(settings, bouncer, connection_limit=4))
    app.config.update(TESTING=True)
    assert app.config["HANDLED_SETTINGS"].primary.pgbouncer
    admin = make_user(app, role="admin")
    before = pooler_stats(bouncer, settings.primary.dbname)["total_xact_count"]

    client = sign_in(app, admin.email)  # the real login form
    me = client.get("/api/me")
    assert me.status_code == 200 and me.get_json()["email"] == admin.email
    cache = redis.Redis.from_url(TEST_REDIS)
    assert any(key.startswith(b"sess:") for key in cache.keys("sess:*"))  # cached after the PRIMARY lookup
    assert client.get("/api/me").status_code == 200  # served from the cache

    for page in ("/admin/users", "/admin/roles", "/admin/audit", "/customers/organizations", "/account"):
        assert client.get(page).status_code == 200, page
    created = client.post("/admin/users/new", data={"email": "bounced@example.test", "name": "Bounced",
                                                    "roles": ["salesperson"], "password": "a long password 123",
                                                    "csrf_token": csrf_token(client)})
    assert created.status_code in (200, 302)
    newcomer = sign_in(app, "bounced@example.test", "a long password 123")
    assert newcomer.get("/api/me").get_json()["permissions"] == ["download_exports", "view_customers"]
    assert newcomer.get("/admin/users").status_code == 403
    assert client.post("/logout", data={"csrf_token": csrf_token(client)}).status_code == 302
    assert client.get("/api/me", headers={"Accept": "application/json"}).status_code == 401

    after = pooler_stats(bouncer, settings.primary.dbname)["total_xact_count"]
    assert after > before  # the traffic really went through the pooler


def run_flask(tmp_path, env: dict, *args) -> subprocess.CompletedProcess:
    """The real `flask` command in a clean environment (no .env file in the working folder)."""
    full_env = {"PATH": os.environ["PATH"], "FLASK_APP": str(ROOT / "app.py"), "PYTHONPATH": str(ROOT), **env}
    flask = Path(sys.executable).parent / "flask"
    return subprocess.run([str(flask), *args], cwd=tmp_path, env=full_env, capture_output=True, text=True,
                          timeout=120)


def test_migrations_refuse_the_pooler_and_ask_for_a_direct_url(settings, tmp_path, bouncer):
    mode = settings.mode
    env = {"SPLIT_DB_MODE": "true" if mode == "split" else "false", "REDIS_URL": TEST_REDIS,
           "SECRET_KEY": "test-secret-key-0123456789abcdef",
           "PRIMARY_DATABASE_URL": bouncer.url(settings.primary.dbname)}
    if mode == "split":
        env["DATA_DATABASE_URL"] = db_url(settings.data.dbname)
    refused = run_flask(tmp_path, env, "db", "migrate")
    assert refused.returncode == 1
    assert "PRIMARY_MIGRATION_URL" in refused.stderr and "PgBouncer" in refused.stderr
    assert "Traceback" not in refused.stderr

    env["PRIMARY_MIGRATION_URL"] = bouncer.url(settings.primary.dbname)
    invalid = run_flask(tmp_path, env, "db", "status")
    assert invalid.returncode != 0 and "PRIMARY_MIGRATION_URL must be a direct connection" in invalid.stderr

    env["PRIMARY_MIGRATION_URL"] = db_url(settings.primary.dbname)
    direct = run_flask(tmp_path, env, "db", "migrate")
    assert direct.returncode == 0, direct.stderr
    assert "primary (postgresql://postgres@127.0.0.1:5432/" in direct.stdout and "up to date" in direct.stdout
