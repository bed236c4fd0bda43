"""The web edge of errors: no traceback ever reaches a user.

- a ``HandledError`` becomes an error page (or JSON) with its own status and sentence;
- a database that does not answer becomes a 503 page that says which one and what still works
  (also when it stops answering while another error page is drawn: that page asks who is
  signed in, which reads PRIMARY);
- Redis not answering on a page that needs the job queue becomes a 503 page naming Redis;
- anything else is a bug: logged with its traceback, a generic 500 page.
"""

from __future__ import annotations

import logging

import psycopg2
from flask import jsonify, render_template, request
from peewee import InterfaceError, OperationalError
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from handled.db import connection_lost
from handled.errors import HandledError, first_line

log = logging.getLogger("handled.errors")

GENERIC_TITLE = "Something went wrong"
REDIS_DOWN_MESSAGE = ("The job queue (Redis) is not answering, so job lists and queued runs cannot be shown "
                      "or started right now. Sign-in, users, customers and inline imports keep working; "
                      "see 'Redis down' in docs/OPS_RUNBOOK.md.")
GENERIC_MESSAGE = "The error has been logged. Try again, and tell an administrator if it persists."


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def render_error(status: int, title: str, message: str, *, outage_fallback: bool = True):
    if wants_json():
        return jsonify({"error": title, "message": message}), status
    try:
        return render_template("error.html", status=status, title=title, message=message), status
    except (OperationalError, InterfaceError, psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        if not outage_fallback:
            raise
        # the page's header asks who is signed in, and PRIMARY stopped answering meanwhile:
        # the outage page instead (it draws the header for nobody)
        return _outage_page(exc)


def _outage_page(exc: Exception):
    from handled.ops.degraded import outage_text

    log.error("database unavailable: %s", first_line(exc))
    title, message = outage_text(exc)
    return render_error(503, title, message, outage_fallback=False)


def init_app(app) -> None:
    """Register the error handlers (HandledError, database down, anything else)."""
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return render_error(exc.code or 500, exc.name, exc.description or "")

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge):
        from handled.request_limits import too_large_message

        return render_error(413, "Too large", too_large_message())

    @app.errorhandler(HandledError)
    def handled_error(exc: HandledError):
        return render_error(exc.status, _title(exc.status), exc.full_text())

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(psycopg2.OperationalError)   # raised outside peewee's wrapping (a pool's own
    @app.errorhandler(psycopg2.InterfaceError)     # checks, a raw COPY)
    def database_unavailable(exc):
        return _outage_page(exc)

    @app.errorhandler(RedisError)
    def redis_unavailable(exc):
        # a page that needs the job queue (job lists, queueing a run) while Redis is down:
        # the same kind of 503 as a database outage, naming Redis, with no traceback
        log.error("Redis unavailable on %s %s: %s", request.method, request.path, exc)
        return render_error(503, "Job queue unavailable", REDIS_DOWN_MESSAGE)

    @app.errorhandler(Exception)
    def unexpected(exc):
        if connection_lost(exc):   # a lost connection in another guise (psycopg2's DatabaseError mid-COPY)
            return _outage_page(exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return render_error(500, GENERIC_TITLE, GENERIC_MESSAGE)


def _title(status: int) -> str:
    return {403: "Not allowed", 404: "Not found", 409: "Conflict", 429: "Too many at once",
            503: "Service unavailable"}.get(
        status, "Cannot do that")
