"""/healthz, in both modes (the home page and /system: tests/test_home_page.py)."""


def test_healthz_reports_each_database_redis_and_mode(client, settings):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["mode"] == settings.mode
    assert body["primary"]["ok"] and body["data"]["ok"] and body["redis"]["ok"]


def test_healthz_says_only_ok_per_component_to_anyone_without_view_system(client, login_client):
    body = client.get("/healthz").get_json()
    assert body == {"status": "ok", "mode": body["mode"], "primary": {"ok": True}, "data": {"ok": True},
                    "redis": {"ok": True}}
    assert login_client(role="warehouse_lead").get("/healthz").get_json() == body
    detailed = login_client(["view_system"]).get("/healthz").get_json()
    assert "latency_ms" in detailed["primary"] and "latency_ms" in detailed["redis"]


# --- with a server stopped: private servers the test starts and stops itself ---

import pytest  # noqa: E402

from handled import create_app  # noqa: E402
from handled.settings import load_settings  # noqa: E402
from tests.support.accounts import make_user, sign_in_client  # noqa: E402
from tests.support.databases import db_url
from tests.support.environment import SECRET, TEST_REDIS
from tests.support.servers import PrivatePostgres, PrivateRedis


@pytest.fixture
def private_pg():
    server = PrivatePostgres().init().start()
    server.createdb("handled_private")
    yield server
    server.destroy()


def app_for(env):
    app = create_app(load_settings({"SECRET_KEY": SECRET, "REDIS_URL": TEST_REDIS, **env}))
    app.config.update(TESTING=True)
    return app


def test_healthz_is_503_when_primary_is_down(private_pg, migrated_settings):
    app = app_for({"PRIMARY_DATABASE_URL": private_pg.url("handled_private"),
                   "SPLIT_DB_MODE": "true", "DATA_DATABASE_URL": db_url(migrated_settings.data.dbname)})
    client = app.test_client()
    assert client.get("/healthz").get_json()["status"] == "ok"  # a pooled connection is now open
    private_pg.stop()
    response = client.get("/healthz")
    body = response.get_json()
    assert response.status_code == 503
    assert body["status"] == "down" and body["primary"]["ok"] is False
    assert body["data"]["ok"] is True and body["redis"]["ok"] is True
    private_pg.start()
    assert client.get("/healthz").status_code == 200  # the broken connection was discarded


def test_healthz_is_degraded_when_data_is_down(private_pg, migrated_settings):
    app = app_for({"PRIMARY_DATABASE_URL": db_url(migrated_settings.primary.dbname),
                   "SPLIT_DB_MODE": "true", "DATA_DATABASE_URL": private_pg.url("handled_private")})
    private_pg.stop()
    response = app.test_client().get("/healthz")
    body = response.get_json()
    assert response.status_code == 200
    assert body["status"] == "degraded" and body["data"] == {"ok": False} and body["primary"] == {"ok": True}
    assert private_pg.url("handled_private").split("@")[-1].split("/")[0] not in response.get_data(as_text=True)
    # a holder of view_system reads why (the same user without it: only ok/failing)
    viewer = sign_in_client(app, make_user(app, ["view_system"]))
    error = viewer.get("/healthz").get_json()["data"]["error"]
    assert "Connection refused" in error or "connection" in error.lower()
    lead = sign_in_client(app, make_user(app, role="warehouse_lead"))
    assert lead.get("/healthz").get_json()["data"] == {"ok": False}
    with app.app_context():   # the users live in the shared PRIMARY: leave it as it was
        from handled.models import Role, User
        User.delete().where(User.email.endswith("@example.test")).execute()
        Role.delete().where(Role.code.startswith("test_role_")).execute()


def test_healthz_is_degraded_when_redis_is_down(tmp_path, migrated_settings):
    server = PrivateRedis(tmp_path / "redis").start()
    env = {"PRIMARY_DATABASE_URL": db_url(migrated_settings.primary.dbname), "REDIS_URL": server.url,
           "SPLIT_DB_MODE": str(migrated_settings.split_db_mode).lower()}
    if migrated_settings.split_db_mode:
        env["DATA_DATABASE_URL"] = db_url(migrated_settings.data.dbname)
    app = create_app(load_settings({"SECRET_KEY": SECRET, **env}))
    client = app.test_client()
    assert client.get("/healthz").get_json()["redis"]["ok"] is True
    server.stop()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "degraded" and response.get_json()["redis"]["ok"] is False
