"""Error pages: no traceback ever reaches a user."""

from __future__ import annotations

import logging

from flask import jsonify, render_template, request
from peewee import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("handled.errors")


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def render_error(status: int, title: str, message: str):
    if wants_json():
        return jsonify({"error": title, "message": message}), status
    return render_template("error.html", status=status, title=title, message=message), status


def register(app) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return render_error(exc.code or 500, exc.name, exc.description or "")

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def database_unavailable(exc):
        log.error("database unavailable: %s", exc)
        title, message = "Database unavailable", ("A database handled needs is not answering right now. "
                                                  "Try again in a minute; if it persists, see docs/OPS_RUNBOOK.md.")
        try:  # issue 7: say which database is down and what still works
            from handled.ops.degraded import outage_text
            title, message = outage_text(exc)
        except Exception:
            log.exception("could not tell which database is down")
        return render_error(503, title, message)

    @app.errorhandler(Exception)
    def unexpected(exc):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return render_error(500, "Something went wrong",
                            "The error has been logged. Try again, and tell an administrator if it persists.")
