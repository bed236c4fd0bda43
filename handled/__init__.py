"""handled: the back-office of a third-party logistics warehouse operator."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask
from markupsafe import Markup

from handled.errors import redact_url
from handled.timeutil import time_element
from handled.wording import short_duration

if TYPE_CHECKING:  # imported lazily so that `python -m handled.settings` runs the module only once
    from handled.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

# Every feature, in the order its init_app runs: each registers its own blueprint(s),
# `flask` command group(s) and request hooks. request_limits comes first: every request's
# body limit is in force before any hook reads a body. The sign-in guard (auth) is registered
# before the pages it guards; the operations hooks time the guard too; schema registers
# `flask db` before ops adds split/unsplit/prune-leftovers to it.
FEATURES = ("handled.request_limits", "handled.health", "handled.home", "handled.auth", "handled.admin", "handled.customers",
            "handled.schema", "handled.ops", "handled.integrations", "handled.transformations",
            "handled.exports", "handled.jobs", "handled.error_pages")


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app: settings, lazy database proxies, Redis, then every feature's init_app."""
    from handled import cache, db
    from handled.settings import get_settings

    settings = settings or get_settings()
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.config.update(SECRET_KEY=settings.secret_key, HANDLED_SETTINGS=settings)
    if settings.trusted_proxy_hops:  # the client address from X-Forwarded-For, only that many hops deep
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_hops, x_proto=0, x_host=0)
    configure_logging(settings)
    db.init_databases(settings)
    cache.init_redis(settings)
    app.teardown_appcontext(lambda exc: db.release_connections())
    app.add_template_filter(lambda value: Markup(time_element(value)), "when")
    app.add_template_filter(short_duration, "duration")
    for feature in FEATURES:
        importlib.import_module(feature).init_app(app)
    return app


class RedactingFormatter(logging.Formatter):
    """Log lines (tracebacks included) with the password of any URL in them replaced by ***."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_url(super().format(record))


def log_handler() -> logging.Handler:
    """Where handled's log lines go (stderr), one format for all: time, level, logger, message."""
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def configure_logging(settings: Settings) -> None:
    """Warnings and errors by default; every statement when LOG_DB_QUERIES=true."""
    logger = logging.getLogger("handled")
    if not logger.handlers:
        logger.addHandler(log_handler())
        logger.propagate = False
    logging.getLogger("handled.db").setLevel(logging.INFO if settings.log_db_queries else logging.WARNING)
    logger.setLevel(logging.INFO)
