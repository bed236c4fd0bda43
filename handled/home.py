"""The home page: mode, both databases' migration status; where they are (host, user,
database) and their server versions only for holders of view_system."""

from flask import Blueprint, render_template

from handled.context import app_settings, web_context
from handled.auth.permissions import login_required
from handled.health import health_report
from handled.schema.checks import migration_summary

bp = Blueprint("home", __name__)


@bp.get("/")
@login_required
def index():
    settings = app_settings()
    return render_template("home/index.html", mode=settings.mode, databases=migration_summary(settings),
                           health=health_report(), infrastructure=web_context().actor.can("view_system"))


def init_app(app) -> None:
    """Register the home page."""
    app.register_blueprint(bp)
