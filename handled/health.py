"""``/healthz``: is each database and Redis reachable, and in which mode.

Anyone (a load balancer, a monitor) reads the status and ok/failing per component;
only a signed-in holder of ``view_system`` also reads latencies and why a component
fails, since those sentences name hosts, ports and users. On the server itself,
``flask health`` prints the whole report (the operator's way when PRIMARY is down
and nobody can sign in).
"""

from __future__ import annotations

import json
import sys
import time

import click
import redis
from flask import Blueprint, jsonify
from flask.cli import with_appcontext

from handled.context import app_settings, web_context
from handled.cache import describe_error, get_redis
from handled.db import NOT_ANSWERING, data_db, primary_db, probe

COMPONENTS = ("primary", "data", "redis")

bp = Blueprint("health", __name__)


def probe_database(proxy) -> dict:
    started = time.perf_counter()
    reason = probe(proxy, driver_words=True)   # what to do about it, then the driver's own words
    if reason is not None:
        return {"ok": False, "error": reason}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


def probe_redis() -> dict:
    started = time.perf_counter()
    try:
        get_redis().ping()
    except Exception as exc:
        return {"ok": False, "error": describe_error(exc)}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


def health_report() -> dict:
    settings = app_settings()
    report = {"mode": settings.mode, "primary": probe_database(primary_db)}
    report["data"] = probe_database(data_db) if settings.split_db_mode else dict(report["primary"])
    report["redis"] = probe_redis()
    if not report["primary"]["ok"]:
        report["status"] = "down"
    elif not (report["data"]["ok"] and report["redis"]["ok"]):
        report["status"] = "degraded"
    else:
        report["status"] = "ok"
    return report


def summary(report: dict) -> dict:
    """What anyone may read: the status, the mode, and ok or not per component."""
    return {"status": report["status"], "mode": report["mode"],
            **{name: {"ok": report[name]["ok"]} for name in COMPONENTS}}


def may_see_infrastructure() -> bool:
    """Does the current request's user hold view_system? No when the session cannot be read
    (PRIMARY or Redis not answering): /healthz must answer whatever is down."""
    try:
        return web_context().actor.can("view_system")
    except (*NOT_ANSWERING, redis.RedisError):
        return False


@bp.get("/healthz")
def healthz():
    report = health_report()
    body = report if may_see_infrastructure() else summary(report)
    return jsonify(body), 503 if report["status"] == "down" else 200


@click.command("health")
@with_appcontext
def health_command():
    """/healthz with every detail: each database and Redis, and why one fails; exit 1 when PRIMARY is down."""
    report = health_report()
    click.echo(json.dumps(report, indent=2))
    if report["status"] == "down":
        sys.exit(1)


def init_app(app) -> None:
    """Register /healthz and `flask health`."""
    app.register_blueprint(bp)
    app.cli.add_command(health_command)
