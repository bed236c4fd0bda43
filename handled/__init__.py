"""handled: the back-office of a third-party logistics warehouse operator."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, current_app

if TYPE_CHECKING:  # imported lazily so that `python -m handled.settings` runs the module only once
    from handled.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app: settings, lazy database proxies, Redis, blueprints, CLI."""
    from handled import cache, db, error_pages, health, home
    from handled.cli import register_cli
    from handled.settings import get_settings

    settings = settings or get_settings()
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.config.update(SECRET_KEY=settings.secret_key, HANDLED_SETTINGS=settings)
    configure_logging(settings)
    db.init_databases(settings)
    cache.init_redis(settings)

    app.teardown_appcontext(lambda exc: db.release_connections())
    app.register_blueprint(health.bp)
    app.register_blueprint(home.bp)
    register_accounts(app)  # sign-in, CSRF, guards, admin and customer pages
    register_operations(app)  # DATA-down banner, System page, /metrics
    register_data_pages(app)  # imports, transformations, coverage, exports, jobs
    error_pages.register(app)
    register_cli(app)
    return app


def register_accounts(app: Flask) -> None:
    """Accounts (issue 4): sign-in, CSRF, the request guard, admin and customer pages."""
    from handled import admin, auth, customers

    auth.init_app(app)
    app.register_blueprint(admin.bp)
    app.register_blueprint(customers.bp)


def register_operations(app: Flask) -> None:
    """Operations (issue 7): the DATA-down banner, the System page and /metrics."""
    from handled.ops import web

    web.init_app(app)


def register_data_pages(app: Flask) -> None:
    """Pages over the DATA database: imports, transformations, coverage, exports, jobs."""
    from handled.exports import views as export_views
    from handled.integrations import views as integration_views
    from handled.jobs import views as job_views
    from handled.transformations import coverage, views as transformation_views

    for blueprint in (integration_views.bp, transformation_views.bp, coverage.bp, export_views.bp,
                      job_views.bp):
        app.register_blueprint(blueprint)


def current_settings() -> Settings:
    """The settings of the running app (inside a request or CLI command)."""
    return current_app.config["HANDLED_SETTINGS"]


def configure_logging(settings: Settings) -> None:
    """Warnings and errors by default; every statement when LOG_DB_QUERIES=true."""
    logger = logging.getLogger("handled")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logging.getLogger("handled.db").setLevel(logging.INFO if settings.log_db_queries else logging.WARNING)
    logger.setLevel(logging.INFO)
