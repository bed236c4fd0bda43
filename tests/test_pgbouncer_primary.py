"""PRIMARY behind a real PgBouncer in transaction pooling mode: sign-in, the session
cache and the admin pages work through it; migrations refuse it (end to end, CLI)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time

import pytest
import redis

from handled import create_app
from tests.support.accounts import csrf_token, make_user, sign_in
from handled.schema.migrations import migrate, resolve_targets
from handled.settings import load_settings
from tests.support.databases import connect, db_url, mode_env, session_runtime_roles
from tests.support.environment import PG_HOST, PG_PORT, ROOT, SECRET, TEST_REDIS
from tests.support.processes import run_flask
from tests.support.servers import PrivatePgBouncer, PrivatePostgres, through_pgbouncer
from tests.support.waiting import wait_until



@pytest.fixture
def bouncer():
    server = PrivatePgBouncer(server_host=PG_HOST, server_port=PG_PORT, pool_size=3, users=("postgres", *session_runtime_roles())).start()
    yield server
    server.destroy()


def pooler_stats(bouncer, dbname: str) -> dict:
    conn = connect(bouncer.admin_url())
    with conn.cursor() as cur:
        cur.execute("SHOW STATS")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, row)) for row in cur.fetchall()]
    conn.close()
    return next(row for row in rows if row["database"] == dbname)


@pytest.mark.flow("Pooler (PgBouncer, transaction mode)")
def test_sign_in_session_cache_and_admin_pages_through_pgbouncer(settings, bouncer):
    app = create_app(through_pgbouncer(settings, bouncer, connection_limit=4))
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


def run_flask_cleanly(tmp_path, env: dict, *args) -> subprocess.CompletedProcess:
    """The real `flask` command in a clean environment (no .env file in the working folder)."""
    full_env = {"PATH": os.environ["PATH"], "FLASK_APP": str(ROOT / "app.py"), "PYTHONPATH": str(ROOT), **env}
    return run_flask(*args, env=full_env, cwd=tmp_path)


@pytest.mark.flow("Pooler (PgBouncer, transaction mode)")
def test_migrations_refuse_the_pooler_and_ask_for_a_direct_url(settings, tmp_path, bouncer):
    mode = settings.mode
    env = {"SPLIT_DB_MODE": "true" if mode == "split" else "false", "REDIS_URL": TEST_REDIS,
           "SECRET_KEY": SECRET,
           "PRIMARY_DATABASE_URL": bouncer.url(settings.primary.dbname)}
    if mode == "split":
        env["DATA_DATABASE_URL"] = db_url(settings.data.dbname)
    refused = run_flask_cleanly(tmp_path, env, "db", "migrate")
    assert refused.returncode == 1
    assert "PRIMARY_MIGRATION_URL" in refused.stderr and "PgBouncer" in refused.stderr
    assert "Traceback" not in refused.stderr

    env["PRIMARY_MIGRATION_URL"] = bouncer.url(settings.primary.dbname)
    invalid = run_flask_cleanly(tmp_path, env, "db", "status")
    assert invalid.returncode != 0 and "PRIMARY_MIGRATION_URL must be a direct connection" in invalid.stderr

    env["PRIMARY_MIGRATION_URL"] = db_url(settings.primary.dbname)
    direct = run_flask_cleanly(tmp_path, env, "db", "migrate")
    assert direct.returncode == 0, direct.stderr
    assert f"primary ({db_url(settings.primary.dbname)})" in direct.stdout and "up to date" in direct.stdout


def test_pages_answer_again_soon_after_primary_restarts_behind_pgbouncer(tmp_path):
    """After a login to PRIMARY failed, PgBouncer waits server_login_retry seconds (15 by default)
    before it tries again, and every query waits with it: a PRIMARY restart kept pages waiting or
    at 503 long after PRIMARY was back (bench/faults.py primary-restart: recovery "never" within
    10 s). With the checklist's server_login_retry = 1 they answer within seconds."""
    primary = PrivatePostgres().init().start()
    bouncer = None
    try:
        primary.createdb("handled")
        bouncer = PrivatePgBouncer(server_port=primary.port, pool_size=3).start()
        env = mode_env("single", "unused", PRIMARY_MIGRATION_URL=primary.url("handled"))
        env["PRIMARY_DATABASE_URL"] = bouncer.url("handled")
        settings = load_settings(env)
        for target in resolve_targets(settings, "all"):
            migrate(target)
        app = create_app(settings)
        app.config.update(TESTING=True)
        client = sign_in(app, make_user(app, role="admin").email)
        assert client.get("/admin/users").status_code == 200
        primary.stop()
        with contextlib.closing(connect(f"postgresql://postgres@127.0.0.1:{bouncer.port}/handled")) as waiting:   # PgBouncer's login now fails
            asked = threading.Thread(target=lambda: waiting.cursor().execute("SELECT 1"), daemon=True)
            asked.start()
            time.sleep(1.5)   # part of the scenario: PgBouncer tries PRIMARY while it is down
            primary.start()
            wait_until(lambda: client.get("/admin/users").status_code == 200, timeout=8,
                       message="the admin page through PgBouncer after PRIMARY restarted")
            asked.join(timeout=30)
    finally:
        if bouncer is not None:
            bouncer.destroy()
        primary.destroy()
