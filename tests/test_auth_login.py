"""Sign-in, sign-out, the session cookie, CSRF, throttling and next= handling."""

from __future__ import annotations

import re

from handled.auth.web import COOKIE_NAME
from handled.models import AuditLog, Session
from tests.support.accounts import TEST_PASSWORD, csrf_token, make_user, setup_context


def login_form_token(client) -> str:
    page = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def post_login(client, email, password, **extra):
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": login_form_token(client), **extra})


def test_sign_in_sets_a_secure_token_cookie_and_stores_only_its_hash(app, client):
    user = make_user(app, role="salesperson")
    response = post_login(client, user.email.upper(), TEST_PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith(COOKIE_NAME + "="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) >= 43  # 32 random bytes, urlsafe base64
    with app.app_context():
        stored = [s.id for s in Session.select()]
        assert token not in stored and len(stored) == 1 and len(stored[0]) == 64
        assert AuditLog.select().where(AuditLog.action == "auth.sign_in").count() == 1
    assert client.get("/api/me").get_json()["email"] == user.email


def test_secure_flag_is_on_unless_turned_off(settings):
    from dataclasses import replace

    from handled import create_app
    app = create_app(replace(settings, session_cookie_secure=True))
    user = make_user(app, role="salesperson")
    client = app.test_client()
    response = post_login(client, user.email, TEST_PASSWORD)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith(COOKIE_NAME + "="))
    assert "Secure" in cookie


def test_unknown_email_and_wrong_password_get_the_same_answer(app, client):
    user = make_user(app, role="salesperson")
    wrong = post_login(client, user.email, "not the password at all")
    unknown = post_login(client, "nobody@example.test", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    message = "The email or password is not correct."
    assert message in wrong.get_data(as_text=True) and message in unknown.get_data(as_text=True)
    with app.app_context():
        assert AuditLog.select().where(AuditLog.action == "auth.sign_in_failed").count() == 2


def test_disabled_user_cannot_sign_in_and_gets_the_same_answer(app, client):
    from handled.auth import users
    user = make_user(app, role="salesperson")
    make_user(app, role="admin")
    with app.test_request_context():
        users.set_disabled(setup_context(app.config["HANDLED_SETTINGS"]), user.id, True)
    response = post_login(client, user.email, TEST_PASSWORD)
    assert response.status_code == 401
    assert "The email or password is not correct." in response.get_data(as_text=True)


def test_login_form_without_csrf_token_is_refused(app, client):
    user = make_user(app, role="salesperson")
    assert app.config["TESTING"] is True
    response = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD})
    assert response.status_code == 400
    assert COOKIE_NAME not in (response.headers.get("Set-Cookie") or "")


def test_signed_in_form_posts_need_csrf_too(app, login_client):
    client = login_client(role="admin")
    client.send_csrf = False
    assert client.post("/logout").status_code == 400
    assert client.get("/api/me").status_code == 200
    client.send_csrf = True
    assert client.post("/logout").status_code == 302
    assert client.get("/api/me").status_code == 401


def test_logout_ends_the_session_server_side(app, login_client):
    client = login_client(role="salesperson")
    token = client.session_token
    assert client.post("/logout").status_code == 302
    other = app.test_client()
    other.set_cookie(COOKIE_NAME, token)
    assert other.get("/api/me").status_code == 401
    with app.app_context():
        assert Session.select().count() == 0


def test_next_only_follows_local_paths(app, client):
    user = make_user(app, role="salesperson")
    for target, expected in [("/account", "/account"), ("https://evil.example/", "/"), ("//evil.example/x", "/"),
                             ("/\\evil.example", "/"), ("javascript:alert(1)", "/")]:
        client.delete_cookie(COOKIE_NAME)
        response = post_login(client, user.email, TEST_PASSWORD, next=target)
        assert response.headers["Location"] == expected, target


def test_anonymous_page_redirects_to_login_with_next(client):
    response = client.get("/account?tab=1")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")
    assert client.get("/api/me").status_code == 401


def test_throttling_per_account_and_address_with_a_clear_message_and_no_lockout_of_others(app, client, settings):
    victim = make_user(app, role="salesperson")
    bystander = make_user(app, role="salesperson")
    for _ in range(settings.login_max_failures_per_account):
        post_login(client, victim.email, "wrong password here")
    refused = post_login(client, victim.email, TEST_PASSWORD)
    assert refused.status_code == 401 and "Too many failed sign-ins for this account" in refused.get_data(as_text=True)
    other = app.test_client()
    assert post_login(other, bystander.email, TEST_PASSWORD).status_code == 302


def test_throttling_per_address(app, client, settings):
    user = make_user(app, role="salesperson")
    for n in range(settings.login_max_failures_per_ip):
        post_login(client, f"guess{n}@example.test", "wrong password here")
    refused = post_login(client, user.email, TEST_PASSWORD)
    assert "Too many failed sign-ins from your network address" in refused.get_data(as_text=True)
    elsewhere = app.test_client()
    response = elsewhere.post("/login", data={"email": user.email, "password": TEST_PASSWORD,
                                              "csrf_token": csrf_token(elsewhere)},
                              environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert response.status_code == 302


def test_security_headers_on_every_page(client):
    response = client.get("/login")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_signing_in_again_replaces_this_browsers_session(app, client):
    user = make_user(app, role="salesperson")
    post_login(client, user.email, TEST_PASSWORD)
    again = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD,
                                        "csrf_token": csrf_token(client)})
    assert again.status_code == 302
    with app.app_context():
        assert Session.select().count() == 1
    assert client.get("/api/me").status_code == 200
