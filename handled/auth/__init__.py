"""Accounts, roles and sessions.

``current_user`` is flask-login's proxy: ``.id``, ``.email``, ``.name``,
``.has_permission(code)``; anonymous visitors have ``is_authenticated`` False.
"""

from flask_login import current_user

from handled.auth.permissions import login_required, permission_required, public

__all__ = ["current_user", "login_required", "permission_required", "public", "init_app"]


def init_app(app) -> None:
    """Register sign-in, CSRF, the request guard and the account pages on ``app``."""
    from handled.auth import cli
    from handled.auth.views import bp
    from handled.auth.web import init_auth

    app.register_blueprint(bp)
    init_auth(app)
    for group in (cli.users_cli, cli.roles_cli, cli.sessions_cli):
        app.cli.add_command(group)
