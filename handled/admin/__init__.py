"""Admin pages: users, roles and the audit log (server-rendered, no JavaScript needed)."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from handled.admin import audit_views, role_views, user_views  # noqa: E402,F401  (routes)


def init_app(app) -> None:
    """Register the admin pages (users, roles, audit log)."""
    app.register_blueprint(bp)
