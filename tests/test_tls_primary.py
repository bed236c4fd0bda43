"""TLS to PRIMARY: a private PostgreSQL with a self-signed certificate accepts
sslmode=require (pg_stat_ssl shows the app's connections encrypted), also through a
PgBouncer that speaks TLS on both sides; sslmode=verify-full with sslrootcert checks a
certificate a test CA issued (and refuses another CA's, a wrong host name, a missing CA
file, each with a sentence); a server without TLS gives a clear error in the CLI,
/healthz and the web pages."""

from __future__ import annotations

import pytest

from handled import create_app
from handled.db import primary_db
from handled.schema.migrations import migrate, resolve_targets
from handled.settings import load_settings
from tests.support.accounts import csrf_token, make_user, sign_in
from tests.support.databases import connect, mode_env
from tests.support.servers import CertificateAuthority, PrivatePgBouncer, PrivatePostgres, self_signed_certificate


@pytest.fixture(scope="module")
def certificate():
    return self_signed_certificate()


@pytest.fixture
def tls_pg(certificate):
    server = PrivatePostgres(ssl_files=certificate).init().start()
    server.createdb("handled")
    yield server
    server.destroy()


@pytest.fixture
def plain_pg():
    server = PrivatePostgres().init().start()
    server.createdb("handled")
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def authority():
    """A test CA, and a server certificate it issued for 127.0.0.1 and localhost."""
    ca = CertificateAuthority()
    ca.server = ca.issue("127.0.0.1", ["IP:127.0.0.1", "DNS:localhost"])
    yield ca
    ca.destroy()


@pytest.fixture
def verified_pg(authority):
    server = PrivatePostgres(ssl_files=authority.server).init().start()
    server.createdb("handled")
    yield server
    server.destroy()


def app_for(primary_url: str, migration_url: str | None = None):
    env = mode_env("single", "unused")
    env["PRIMARY_DATABASE_URL"] = primary_url
    if migration_url:
        env["PRIMARY_MIGRATION_URL"] = migration_url
    settings = load_settings(env)
    for target in resolve_targets(settings, "all"):
        migrate(target)
    app = create_app(settings)
    app.config.update(TESTING=True)
    return app


def ssl_of_server_connections(server: PrivatePostgres) -> list[tuple]:
    """(application_name, ssl) of every other client connection to the 'handled' database."""
    conn = connect(server.url("postgres"), autocommit=False)
    with conn.cursor() as cur:
        cur.execute("""SELECT a.application_name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                       WHERE a.datname = 'handled' AND a.backend_type = 'client backend'""")
        rows = cur.fetchall()
    conn.close()
    return rows


def exercise_sign_in_and_admin_pages(app):
    admin = make_user(app, role="admin")
    client = sign_in(app, admin.email)
    assert client.get("/api/me").get_json()["email"] == admin.email
    for page in ("/admin/users", "/admin/roles", "/admin/audit", "/customers/organizations"):
        assert client.get(page).status_code == 200, page
    response = client.post("/admin/users/new", data={"email": "tls@example.test", "name": "Over TLS",
                                                     "roles": ["salesperson"], "password": "a long password 123",
                                                     "csrf_token": csrf_token(client)})
    assert response.status_code in (200, 302)
    assert sign_in(app, "tls@example.test", "a long password 123").get("/api/me").status_code == 200


def assert_encrypted_sign_in_and_admin_pages(app, server: PrivatePostgres):
    """Sign-in and the admin pages work, and every connection of the app's to ``server`` uses TLS."""
    exercise_sign_in_and_admin_pages(app)
    with app.app_context():
        assert primary_db.connection().info.ssl_in_use
    rows = ssl_of_server_connections(server)
    apps = [ssl for name, ssl in rows if name.startswith("handled-")]
    assert apps and all(apps), rows


@pytest.mark.flow("TLS")
def test_sslmode_require_encrypts_the_apps_connections(tls_pg):
    app = app_for(tls_pg.url("handled", sslmode="require"))
    assert_encrypted_sign_in_and_admin_pages(app, tls_pg)


@pytest.mark.flow("TLS")
def test_verify_full_with_sslrootcert_checks_the_servers_certificate(verified_pg, authority):
    """The DEPLOYMENT_CHECKLIST's `sslmode=verify-full` with `sslrootcert=<the CA>`: migrate, check,
    sign in and the admin pages over it, by IP and by host name; then what it refuses."""
    def url(host="127.0.0.1", root=authority.cert, **more):
        return verified_pg.url("handled", sslmode="verify-full", sslrootcert=root, **more).replace(
            "@127.0.0.1:", f"@{host}:")

    app = app_for(url())
    assert_encrypted_sign_in_and_admin_pages(app, verified_pg)
    for host in ("127.0.0.1", "localhost"):
        check = app_for(url(host=host)).test_cli_runner().invoke(args=["db", "check"])
        assert f"[ok] primary: reachable: postgresql://postgres@{host}:" in check.output, check.output
        assert "[ok] primary: tracking matches catalog" in check.output, check.output
        # the private server has only its superuser, which the least-privilege line rightly flags
        assert all("runtime role least privilege" in line for line in check.output.splitlines()
                   if line.startswith("[FAIL]")), check.output

    other = CertificateAuthority()
    try:
        refusals = {
            url(root=other.cert): f"is not signed by the CA in sslrootcert={other.cert}",
            url(host="db.example", hostaddr="127.0.0.1"): "is not issued for the host 'db.example'",
            url(root="/nonexistent/primary-ca.pem"): "sslrootcert=/nonexistent/primary-ca.pem, which does not exist",
        }
        for refused_url, expected in refusals.items():
            env = mode_env("single", "unused")
            env["PRIMARY_DATABASE_URL"] = refused_url
            refused = create_app(load_settings(env))
            refused.config.update(TESTING=True)
            check = refused.test_cli_runner().invoke(args=["db", "check"])
            assert check.exit_code == 1 and expected in check.output, check.output
            assert "Traceback" not in check.output and "PRIMARY_DATABASE_URL" in check.output
            health = refused.test_client().get("/healthz")
            assert health.status_code == 503 and health.get_json()["primary"] == {"ok": False}
            assert expected in refused.test_cli_runner().invoke(args=["health"]).output
    finally:
        other.destroy()


@pytest.mark.flow("TLS")
def test_sign_in_and_admin_pages_through_pgbouncer_with_tls_on_both_sides(tls_pg, certificate):
    bouncer = PrivatePgBouncer(server_port=tls_pg.port, pool_size=3, client_tls=certificate, server_tls=True).start()
    try:
        app = app_for(bouncer.url("handled", sslmode="require"), tls_pg.url("handled", sslmode="require"))
        exercise_sign_in_and_admin_pages(app)
        with app.app_context():
            assert primary_db.connection().info.ssl_in_use  # app -> PgBouncer
        rows = ssl_of_server_connections(tls_pg)  # PgBouncer -> PostgreSQL
        assert rows and all(ssl for _, ssl in rows), rows
    finally:
        bouncer.destroy()


@pytest.mark.flow("TLS")
def test_a_server_without_tls_gives_a_clear_error(plain_pg):
    url = plain_pg.url("handled", sslmode="require")
    env = mode_env("single", "unused")
    env["PRIMARY_DATABASE_URL"] = url
    app = create_app(load_settings(env))
    app.config.update(TESTING=True)
    expected = "PRIMARY_DATABASE_URL asks for TLS (sslmode=require) but the server at 127.0.0.1"

    result = app.test_cli_runner().invoke(args=["db", "migrate"])
    assert result.exit_code == 1 and expected in result.output and "Traceback" not in result.output
    check = app.test_cli_runner().invoke(args=["db", "check"])
    assert check.exit_code == 1 and expected in check.output

    health = app.test_client().get("/healthz")
    assert health.status_code == 503 and health.get_json()["primary"] == {"ok": False}
    assert expected in app.test_cli_runner().invoke(args=["health"]).output   # the details, on the server
    page = app.test_client().get("/login")
    assert page.status_code == 200  # the login form itself needs no database
    attempt = app.test_client()
    response = attempt.post("/login", data={"email": "a@example.test", "password": "whatever long",
                                            "csrf_token": csrf_token(attempt)})
    assert response.status_code == 503
    assert "The PRIMARY database (accounts and customers) is not answering" in response.get_data(as_text=True)
