"""Wiring of accounts into the Flask app: flask-login, CSRF, the session cookie,
the request guard and security headers."""

from __future__ import annotations

from flask import Flask, flash, g, request
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from handled.auth import session_cache, sessions
from handled.auth.permissions import AnonymousUser, SignedInUser, guard_request, public
from handled.context import app_settings, settings_of

COOKIE_NAME = "handled_session"
csrf = CSRFProtect()

CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; object-src 'none'; base-uri 'self'; "
                           "form-action 'self'; frame-ancestors 'none'")


def init_auth(app: Flask) -> None:
    settings = settings_of(app)
    app.config.update(SESSION_COOKIE_SECURE=settings.session_cookie_secure, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", WTF_CSRF_TIME_LIMIT=None)
    csrf.init_app(app)
    session_cache.reset_process_state()  # a new app may point at another Redis
    manager = LoginManager()
    manager.session_protection = None  # identity lives in our own token cookie, not Flask's session
    manager.anonymous_user = AnonymousUser
    manager.request_loader(lambda req: _user_from_cookie(app, req))
    manager.init_app(app)
    for endpoint in ("health.healthz",):
        if endpoint in app.view_functions:
            public(app.view_functions[endpoint])
    app.before_request(_forget_pending_notice)
    app.before_request(lambda: guard_request(app))
    app.after_request(_flash_pending_invalidation)
    app.after_request(_security_headers)
    app.after_request(_write_session_cookie)


def _user_from_cookie(app: Flask, req):
    token = req.cookies.get(COOKIE_NAME)
    entry = sessions.authenticate(settings_of(app), token)
    if entry is None:
        if token:
            g.clear_session_cookie = True
        return None
    return SignedInUser(entry, sessions.hash_token(token))


def set_session_cookie(token: str) -> None:
    """Ask the response to carry a new session token (after sign-in)."""
    g.new_session_token = token


def clear_session_cookie() -> None:
    g.clear_session_cookie = True


def _write_session_cookie(response):
    settings = app_settings()
    token = g.pop("new_session_token", None)
    if token:
        response.set_cookie(COOKIE_NAME, token, max_age=settings.session_max_age, httponly=True,
                            samesite="Lax", secure=settings.session_cookie_secure, path="/")
    elif g.pop("clear_session_cookie", False):
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="Lax",
                               secure=settings.session_cookie_secure)
    return response


PENDING_FLASH = ("Redis could not be reached, so the session cache is not yet invalidated: the change is "
                 "recorded as pending and applied by the next process that reaches Redis (within "
                 "SESSION_CACHE_TTL seconds at worst); the System page counts pending invalidations.")


def _forget_pending_notice() -> None:
    session_cache.take_pending_notice()  # what an earlier request on this thread left is not ours


def _flash_pending_invalidation(response):
    """The page that made a change whose cache invalidation could not reach Redis says so."""
    if session_cache.take_pending_notice():
        flash(PENDING_FLASH, "error")
    return response


def _security_headers(response):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if request.cookies.get(COOKIE_NAME) or g.get("new_session_token"):
        headers.setdefault("Cache-Control", "no-store")
    return response
