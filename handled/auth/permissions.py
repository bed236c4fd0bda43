"""Who may see what: the signed-in user object and the view guards.

Every endpoint carries a mark: ``permission_required(code)``, ``login_required``
or ``public``. ``guard_request`` (run before every request) refuses any endpoint
without a mark unless the user is signed in, so a view that forgot its decorator
is never open to the world; a test walks the URL map to keep every one marked.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from flask import redirect, request, url_for
from flask_login import AnonymousUserMixin, current_user

from handled.error_pages import render_error, wants_json

CHANGE_PASSWORD_ENDPOINTS = {"auth.change_password", "auth.logout", "static"}


class SignedInUser:
    """The user of the current request, as the session cache (or PRIMARY) knows them."""

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def __init__(self, entry: dict, token_hash: str):
        self.id = entry["user_id"]
        self.email = entry["email"]
        self.name = entry["name"]
        self.must_change_password = bool(entry["must_change_password"])
        self.permissions = frozenset(entry["permissions"])
        self.session_hash = token_hash

    def get_id(self) -> str:
        return str(self.id)

    def has_permission(self, code: str) -> bool:
        return code in self.permissions


class AnonymousUser(AnonymousUserMixin):
    id = None
    email = None
    name = None
    permissions = frozenset()
    must_change_password = False

    def has_permission(self, code: str) -> bool:
        return False


def not_signed_in():
    if wants_json():
        return render_error(401, "Sign-in required", "Sign in to use this.")
    return redirect(url_for("auth.login", next=local_next_target()))


# What a person calls each permission (the code is for the database and the CLI).
PERMISSION_NAMES = {
    "manage_users": "Manage users", "manage_roles": "Manage roles", "view_audit": "Read the audit log",
    "view_customers": "See customers", "manage_customers": "Manage customers", "run_imports": "Run imports",
    "run_transformations": "Run transformations", "download_exports": "Download exports",
    "view_system": "See the system page",
}


def permission_name(code: str) -> str:
    """``run_imports`` -> ``Run imports``; a code without a name here reads as words."""
    return PERMISSION_NAMES.get(code) or code.replace("_", " ").capitalize()


def forbidden(code: str | None = None):
    return render_error(403, "Not allowed", "Your account does not have the permission this page needs"
                        + (f" ({permission_name(code)}); an administrator can give it to one of your roles."
                           if code else "."))


def local_next_target() -> str:
    path = request.full_path if request.query_string else request.path
    return path if request.method == "GET" else "/"


def is_local_path(target: str | None) -> bool:
    """Only redirect to paths on this site: no scheme, no host, no '//' or backslash tricks."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc and not any(ord(c) < 32 for c in target)


def _mark(view, **marks):
    for key, value in marks.items():
        setattr(view, key, value)
    return view


def permission_required(code: str):
    """Require sign-in and the permission ``code`` (anonymous: login or 401; without it: 403)."""
    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            if not current_user.is_authenticated:
                return not_signed_in()
            if not current_user.has_permission(code):
                return forbidden(code)
            return view(*args, **kwargs)
        return _mark(guarded, required_permission=code, access="permission")
    return decorate


def login_required(view):
    """Any signed-in user."""
    @functools.wraps(view)
    def guarded(*args, **kwargs):
        if not current_user.is_authenticated:
            return not_signed_in()
        return view(*args, **kwargs)
    return _mark(guarded, access="login")


def public(view):
    """Open to anonymous visitors (the login page, /healthz)."""
    return _mark(view, access="public")


def endpoint_access(app, endpoint: str | None) -> str | None:
    if endpoint is None:
        return None
    if endpoint == "static":
        return "public"
    view = app.view_functions.get(endpoint)
    return getattr(view, "access", None)


def guard_request(app):
    """Before every request: default-deny for unmarked endpoints; force a password change."""
    endpoint = request.endpoint
    access = endpoint_access(app, endpoint)
    if endpoint is None or access == "public":
        return None
    if not current_user.is_authenticated:
        return not_signed_in()
    if current_user.must_change_password and endpoint not in CHANGE_PASSWORD_ENDPOINTS:
        if wants_json():
            return render_error(403, "Password change required", "Change your temporary password first.")
        return redirect(url_for("auth.change_password"))
    return None
