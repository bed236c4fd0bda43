"""``/healthz``: is each database and Redis reachable, and in which mode."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify

from handled.context import app_settings
from handled.cache import describe_error, get_redis
from handled.db import data_db, primary_db, probe

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


@bp.get("/healthz")
def healthz():
    report = health_report()
    return jsonify(report), 503 if report["status"] == "down" else 200


def init_app(app) -> None:
    """Register /healthz."""
    app.register_blueprint(bp)
