"""Each degraded mode shown by stopping the real server the test started:
PRIMARY down → a clear 503 (session cache warm or cold), DATA down → sign-in and
admin pages work with a banner, data pages say DATA is down; Redis down → sessions
are checked against PRIMARY."""

from __future__ import annotations

import logging
from dataclasses import replace

import psycopg2
import pytest
import redis
from flask import Blueprint

from handled import create_app
from handled.auth.permissions import login_required
from handled.db import data_db
from handled.models import ExportRun
from handled.dashboard import COVERAGE_UNAVAILABLE
from handled.ops import degraded
from handled.ops.degraded import DATA_BANNER
from handled.schema.migrations import migrate, resolve_targets
from handled.settings import load_settings
from tests.support.accounts import make_user, sign_in
from tests.support.databases import Databases, mode_env
from tests.support.environment import TEST_REDIS
from tests.support.servers import PrivatePostgres, PrivateRedis


@pytest.fixture
def private_pg():
    server = PrivatePostgres().init().start()
    server.createdb("handled")
    yield server
    server.destroy()


@pytest.fixture
def dbs():
    databases = Databases("degraded")
    yield databases
    databases.drop_all()
    redis.Redis.from_url(TEST_REDIS).flushdb()


def migrated_app(env: dict, **overrides):
    settings = load_settings(env)
    for target in resolve_targets(settings, "all"):
        migrate(target)
    app = create_app(replace(settings, **overrides) if overrides else settings)
    app.config.update(TESTING=True)
    return app


def add_data_page(app):
    """A page of a data blueprint (imports, transformations... are built elsewhere): reads DATA."""
    bp = Blueprint("ops_test_data_page", __name__)

    @bp.get("/test-data-page")
    @login_required
    def carriers():
        return ", ".join(row[0] for row in data_db.execute_sql("SELECT code FROM reference.carriers ORDER BY code"))

    app.register_blueprint(bp)


# A page that reads DATA is a 503 while DATA is down (the integrations overview counts rows);
# one that shows only PRIMARY's run history or lists (an integration's page, transformations,
# exports, the coverage pickers, the job list) is served, with the banner saying what cannot run.
DATA_PAGE_STATUS_WHEN_DATA_IS_DOWN = {"/integrations/": 503, "/integrations/us-zips": 200,
                                      "/transformations/": 200, "/exports/": 200, "/coverage/": 200,
                                      "/coverage/compare": 200, "/jobs/": 200}


def real_data_pages(app) -> list[str]:
    """GET pages of the data blueprints that need no row to exist (an integration id is filled in)."""
    urls = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in degraded.DATA_BLUEPRINTS or "GET" not in rule.methods:
            continue
        if set(rule.arguments) <= {"integration_id"}:
            urls.append(rule.rule.replace("<integration_id>", "us-zips"))
    return urls


@pytest.mark.flow("PRIMARY down")
def test_primary_down_gives_a_clear_503_with_warm_and_cold_session_cache(private_pg, dbs):
    env = mode_env("single", "unused")
    env["PRIMARY_DATABASE_URL"] = private_pg.url("handled")
    app = migrated_app(env)
    admin = make_user(app, role="admin")
    client = sign_in(app, admin.email)
    assert client.get("/api/me").status_code == 200  # session now cached in Redis

    private_pg.stop()
    warm = client.get("/admin/users")  # the session is cached, the page needs PRIMARY
    assert warm.status_code == 503
    body = warm.get_data(as_text=True)
    assert "The PRIMARY database (accounts and customers) is not answering" in body
    assert "OPS_RUNBOOK" in body and "Traceback" not in body
    redis.Redis.from_url(TEST_REDIS).flushdb()  # cold cache: the session itself must be read from PRIMARY
    cold = client.get("/admin/users")
    assert cold.status_code == 503 and "PRIMARY database" in cold.get_data(as_text=True)
    cold_json = client.get("/api/me", headers={"Accept": "application/json"})
    assert cold_json.status_code == 503 and cold_json.get_json()["error"] == "Database unavailable"
    login = sign_in_attempt(app, admin.email)
    assert login.status_code == 503
    health = app.test_client().get("/healthz")
    assert health.status_code == 503 and health.get_json()["status"] == "down"
    assert "error" not in health.get_json()["primary"]   # the cause names hosts: `flask health` on the server
    local = app.test_cli_runner().invoke(args=["health"])
    assert local.exit_code == 1
    assert f"Cannot reach PostgreSQL at 127.0.0.1:{private_pg.port} (PRIMARY_DATABASE_URL)" in local.output

    private_pg.start()  # back: the same app recovers without a restart
    assert client.get("/admin/users").status_code == 200


def sign_in_attempt(app, email):
    from tests.support.accounts import csrf_token, TEST_PASSWORD
    fresh = app.test_client()
    return fresh.post("/login", data={"email": email, "password": TEST_PASSWORD, "csrf_token": csrf_token(fresh)})


@pytest.mark.flow("DATA down")
def test_data_down_keeps_sign_in_and_admin_pages_and_shows_the_banner(private_pg, dbs):
    primary = dbs.name("primary", create=True)
    env = mode_env("split", primary, "unused")
    env["DATA_DATABASE_URL"] = private_pg.url("handled")
    app = migrated_app(env)
    add_data_page(app)
    admin = make_user(app, role="admin")
    client = sign_in(app, admin.email)
    assert client.get("/test-data-page").get_data(as_text=True) == "UPS, USPS"
    assert DATA_BANNER not in client.get("/admin/users").get_data(as_text=True)

    private_pg.stop()
    degraded.forget_data_status()
    for page in ("/admin/users", "/admin/roles", "/admin/audit", "/customers/organizations", "/account", "/"):
        response = client.get(page)
        assert response.status_code == 200, page
        assert DATA_BANNER in response.get_data(as_text=True), page
    home = client.get("/").get_data(as_text=True)  # PRIMARY's sections stay, coverage says why it is missing
    assert "Source files" in home and "Failed runs" in home and COVERAGE_UNAVAILABLE in home
    data_page = client.get("/test-data-page")
    assert data_page.status_code == 503
    assert "DATA database unavailable" in data_page.get_data(as_text=True)
    assert DATA_BANNER in data_page.get_data(as_text=True)
    pages = real_data_pages(app)
    assert "/integrations/" in pages
    statuses = {}
    for url in pages:  # the data blueprints built by the other areas
        response = client.get(url)
        statuses[url] = response.status_code
        assert DATA_BANNER in response.get_data(as_text=True), url
    assert statuses == DATA_PAGE_STATUS_WHEN_DATA_IS_DOWN
    other = sign_in(app, make_user(app, role="salesperson").email)  # a new sign-in works
    assert other.get("/api/me").status_code == 200
    health = app.test_client().get("/healthz").get_json()
    assert health["status"] == "degraded" and not health["data"]["ok"] and health["primary"]["ok"]
    assert "(DATA_DATABASE_URL)" in app.test_cli_runner().invoke(args=["health"]).output

    private_pg.start()
    degraded.forget_data_status()
    assert DATA_BANNER not in client.get("/admin/users").get_data(as_text=True)
    assert client.get("/test-data-page").status_code == 200


@pytest.mark.flow("Redis down")
def test_redis_down_checks_sessions_against_primary(settings, tmp_path):
    server = PrivateRedis(tmp_path / "redis").start()
    try:
        app = create_app(replace(settings, redis_url=server.url))
        app.config.update(TESTING=True)
        admin = make_user(app, role="admin")
        client = sign_in(app, admin.email)
        assert client.get("/api/me").status_code == 200
        assert redis.Redis.from_url(server.url).keys("sess:*")  # cached while Redis was up
        server.stop()
        for page in ("/api/me", "/admin/users", "/admin/roles"):
            assert client.get(page).status_code == 200, page  # each checked on PRIMARY
        assert sign_in(app, make_user(app, role="salesperson").email).get("/api/me").status_code == 200
        health = app.test_client().get("/healthz").get_json()
        assert health["status"] == "degraded" and not health["redis"]["ok"]
    finally:
        server.stop()


def test_data_stopping_as_an_export_starts_gives_the_data_503(private_pg, dbs):
    """DATA gone while this process still believes it answers (its probe is remembered for a
    few seconds): the download's first chunk fails inside the view, so the page is the DATA
    503, not an error raised from the stream (under gunicorn: a bare 500; bench/faults.py
    data-stop-* saw those)."""
    primary = dbs.name("primary", create=True)
    env = mode_env("split", primary, "unused")
    env["DATA_DATABASE_URL"] = private_pg.url("handled")
    app = migrated_app(env)
    client = sign_in(app, make_user(app, role="admin").email)
    assert client.get("/exports/carriers.csv").status_code == 200   # DATA probed: answering
    private_pg.stop()
    response = client.get("/exports/carriers.csv")
    assert response.status_code == 503
    assert "DATA database unavailable" in response.get_data(as_text=True)
    private_pg.start()


def test_an_error_page_drawn_while_primary_is_down_is_the_primary_503(private_pg, dbs):
    """bench/faults.py primary-restart: a form refused for its CSRF token while PRIMARY was down
    answered 500, because drawing the 400 page asks who is signed in, which reads PRIMARY."""
    env = mode_env("single", "unused")
    env["PRIMARY_DATABASE_URL"] = private_pg.url("handled")
    app = migrated_app(env)
    client = sign_in(app, make_user(app, role="admin").email)
    private_pg.stop()
    redis.Redis.from_url(TEST_REDIS).flushdb()   # a cold session cache: the page's header must ask PRIMARY
    response = client.post("/integrations/us-zips/import", data={})   # no CSRF token
    assert response.status_code == 503
    assert "The PRIMARY database (accounts and customers) is not answering" in response.get_data(as_text=True)
    private_pg.start()


@pytest.mark.one_mode   # what it proves does not depend on the database mode
@pytest.mark.parametrize("error", [
    psycopg2.OperationalError("server closed the connection unexpectedly"),
    psycopg2.DatabaseError("error with status PGRES_COPY_OUT and no message from the libpq")])
def test_a_lost_connection_raised_by_the_driver_itself_is_the_outage_503(app, error, caplog):
    """peewee words the errors of its own queries; the driver's, raised around it (a pool's checks,
    a COPY), reached the generic 500 handler (bench/faults.py: GET / at a PRIMARY restart)."""
    bp = Blueprint("ops_test_raw_error", __name__)

    @bp.get("/test-raw-error")
    @login_required
    def raw_error():
        raise error

    app.register_blueprint(bp)
    client = sign_in(app, make_user(app, role="salesperson").email)
    response = client.get("/test-raw-error")
    assert response.status_code == 503 and "is not answering" in response.get_data(as_text=True)
    assert not [r for r in caplog.records if r.exc_info], "an outage is logged in one line, not a traceback"


def test_data_stopping_in_the_middle_of_a_download_cuts_it_with_one_log_line(private_pg, dbs, caplog, monkeypatch):
    """The response has started, so no status can say it: the connection is cut (an incomplete
    download, never a short file that looks whole), the run fails with its reason, and the log
    has one line (bench/faults.py data-stop-export: "PGRES_COPY_OUT ... no message from the libpq"
    with gunicorn's traceback)."""
    primary = dbs.name("primary", create=True)
    env = mode_env("split", primary, "unused")
    env["DATA_DATABASE_URL"] = private_pg.url("handled")
    app = migrated_app(env)
    monkeypatch.setattr(logging.getLogger("handled"), "propagate", True)   # configured by the app just made
    with psycopg2.connect(private_pg.url("handled")) as conn, conn.cursor() as cur:   # ~30 MB of CSV
        cur.execute("INSERT INTO reference.zip3_reference (zip3, primary_city, pop_lng) "
                    "SELECT lpad(g::text, 6, '0'), repeat('Springfield ', 40), -73.25 "
                    "FROM generate_series(1, 60000) g")
    client = sign_in(app, make_user(app, role="admin").email)
    response = client.get("/exports/zip3_reference.csv", buffered=False)
    assert response.status_code == 200
    chunks = iter(response.response)
    assert next(chunks)
    private_pg.stop()
    with pytest.raises(ConnectionResetError):
        for _ in chunks:
            pass
    response.close()
    run = ExportRun.select().order_by(ExportRun.id.desc()).first()
    assert run.status == "failed" and run.message, run.message
    assert "download of zip3_reference.csv cut after it started" in caplog.text
    assert not [r for r in caplog.records if r.exc_info], "an outage is logged in one line, not a traceback"
    private_pg.start()
