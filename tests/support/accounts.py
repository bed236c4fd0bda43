"""Test users, signed-in test clients and CSRF tokens (fixtures in tests/fixtures/accounts.py).

``login_client(permissions=[...])`` or ``login_client(role="admin")`` returns a Flask
test client signed in as a fresh user. It sends a valid CSRF token (header
X-CSRFToken) with every POST/PUT/PATCH/DELETE by itself, so tests post forms and
uploads as usual. ``csrf_token(client)`` gives the token for a plain client.
The user is on ``client.user`` (id, email, password) for assertions.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from types import SimpleNamespace

from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
TEST_PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


def csrf_token(client: FlaskClient, url: str | None = None) -> str:
    """A valid CSRF token for ``client``'s Flask session (``url`` is accepted and ignored)."""
    with client.session_transaction() as session:
        raw = session.get("csrf_token")
        if not raw:
            raw = session["csrf_token"] = hashlib.sha1(os.urandom(64)).hexdigest()
    app = client.application
    secret = app.config.get("WTF_CSRF_SECRET_KEY") or app.secret_key
    return URLSafeTimedSerializer(secret, salt="wtf-csrf-token").dumps(raw)


class CsrfClient(FlaskClient):
    """A test client that adds the CSRF header to unsafe requests unless told not to."""

    send_csrf = True

    def open(self, *args, **kwargs):
        method = (kwargs.get("method") or "GET").upper()
        if self.send_csrf and method in UNSAFE_METHODS:
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRFToken", csrf_token(self))
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)


def setup_context(settings):
    """The context test set-up acts in: a nameless page visitor holding every permission,
    so it may grant any role while the audit trail names no actor (as set-up always recorded)."""
    from handled.auth.roles import all_permissions
    from handled.context import Actor, Context

    everything = frozenset(p.code for p in all_permissions())
    return Context(settings, Actor(id=None, email=None, permissions=everything, address="127.0.0.1"))


def make_user(app, permissions=None, role: str | None = None, email: str | None = None,
              password: str = TEST_PASSWORD, name: str | None = None):
    """A user holding ``role`` (seeded code) or a fresh role with exactly ``permissions``."""
    from handled.auth import roles as role_service
    from handled.auth import users

    settings = app.config["HANDLED_SETTINGS"]
    n = next(_counter)
    with app.test_request_context():
        ctx = setup_context(settings)
        role_codes = []
        if role:
            role_codes.append(role)
        if permissions is not None:
            code = f"test_role_{n}_{os.getpid()}"
            role_service.create_role(ctx, code, f"Test role {n}", permission_codes=permissions)
            role_codes.append(code)
        email = email or f"user{n}-{os.getpid()}@example.test"
        user, _ = users.create_user(ctx, email, name or f"Test User {n}", role_codes, password=password,
                                    must_change_password=False)
    return SimpleNamespace(id=user.id, email=user.email, password=password, roles=role_codes)


def sign_in_client(app, user, client: FlaskClient | None = None) -> FlaskClient:
    """A client holding a new session of ``user`` (made by the session service, as the login page does)."""
    from handled.auth import sessions
    from handled.auth.web import COOKIE_NAME

    app.test_client_class = CsrfClient
    client = client or app.test_client()
    with app.app_context():
        token = sessions.create_session(app.config["HANDLED_SETTINGS"], user.id, "127.0.0.1", "pytest")
    client.set_cookie(COOKIE_NAME, token)
    client.user = user
    client.session_token = token
    return client


def client_with_token(app, token: str) -> FlaskClient:
    """A plain test client carrying a session token cookie (no sign-in form)."""
    from handled.auth.web import COOKIE_NAME

    client = app.test_client()
    client.set_cookie(COOKIE_NAME, token)
    return client


def new_session(app, user) -> str:
    """A new session token for ``user``, made through the session service."""
    from handled.auth import sessions

    with app.app_context():
        return sessions.create_session(app.config["HANDLED_SETTINGS"], user.id, "127.0.0.1", "pytest")


def sign_in(app, email: str, password: str = TEST_PASSWORD):
    """A test client signed in through the login form, as a person would."""
    client = app.test_client()
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_token(client)})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return client
