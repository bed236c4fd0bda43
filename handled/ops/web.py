"""Web side of operations: the DATA banner, request counting, the System page and /metrics.

/metrics answers two kinds of caller: a signed-in user holding ``view_system``
(an ordinary guarded view), and Prometheus presenting ``Authorization: Bearer
<METRICS_TOKEN>``. The bearer path is served by a small WSGI wrapper in front of
Flask, so no sign-in cookie is needed and the sign-in guard stays default-deny;
a wrong token gets 401 there and never reaches the app.
"""

from __future__ import annotations

import hmac
import time

from flask import Blueprint, Response, g, render_template, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client import multiprocess

from handled import metrics
from handled.auth.permissions import permission_required
from handled.context import app_settings, settings_of
from handled.ops import degraded
from handled.ops.chart import hour_chart
from handled.ops.monitoring import LiveCollector, snapshot
from handled.schema.checks import migration_summary

bp = Blueprint("system", __name__)


def counters_registry(settings):
    """Every worker's counters in multiprocess mode, else this process's."""
    if settings.prometheus_multiproc_dir:
        counters = CollectorRegistry()
        multiprocess.MultiProcessCollector(counters, path=settings.prometheus_multiproc_dir)
        return counters
    return REGISTRY


def render_metrics(settings) -> bytes:
    """Counters followed by the live gauges."""
    live = CollectorRegistry(auto_describe=False)
    live.register(LiveCollector(settings))
    return generate_latest(counters_registry(settings)) + generate_latest(live)


def counter_totals(settings, top: int = 15) -> dict:
    """For the System page: busiest endpoints by status, and session check totals."""
    requests, sessions = {}, {}
    for family in counters_registry(settings).collect():
        for sample in family.samples:
            if sample.name == "handled_requests_total":
                key = (sample.labels["endpoint"], sample.labels["status"])
                requests[key] = requests.get(key, 0) + sample.value
            elif sample.name == "handled_session_cache_total":
                sessions[sample.labels["result"]] = sessions.get(sample.labels["result"], 0) + sample.value
            elif sample.name == "handled_primary_session_lookups_total":
                sessions["primary"] = sessions.get("primary", 0) + sample.value
    busiest = sorted(requests.items(), key=lambda item: -item[1])[:top]
    return {"requests": [{"endpoint": e, "status": s, "count": int(c)} for (e, s), c in busiest],
            "sessions": {k: int(v) for k, v in sessions.items()},
            "all_workers": bool(settings.prometheus_multiproc_dir)}


@bp.get("/metrics")
@permission_required("view_system")
def metrics_page():
    return Response(render_metrics(app_settings()), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/system")
@permission_required("view_system")
def index():
    settings = app_settings()
    return render_template("ops/system.html", report=snapshot(settings), chart=hour_chart(metrics.last_hour()),
                           counters=counter_totals(settings), settings=settings,
                           migrations=migration_summary(settings),
                           pending_invalidations=_pending_invalidations())


def _pending_invalidations() -> int | None:
    """Session-cache invalidations still waiting for Redis (None when PRIMARY cannot say)."""
    from handled.auth import session_cache
    try:
        return session_cache.pending_count()
    except Exception:  # PRIMARY down: the databases table above already says so
        return None


class MetricsTokenMiddleware:
    """Serves GET /metrics to a caller presenting the METRICS_TOKEN bearer token."""

    def __init__(self, wsgi_app, app):
        self.wsgi_app, self.app = wsgi_app, app

    def __call__(self, environ, start_response):
        header = environ.get("HTTP_AUTHORIZATION", "")
        if environ.get("PATH_INFO") != "/metrics" or not header.startswith("Bearer "):
            return self.wsgi_app(environ, start_response)
        settings = settings_of(self.app)   # read per call: a test may swap the app's settings
        token = settings.metrics_token
        if not token or not hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode()):
            start_response("401 UNAUTHORIZED", [("Content-Type", "text/plain; charset=utf-8"),
                                                ("WWW-Authenticate", 'Bearer realm="handled metrics"')])
            return [b"A valid METRICS_TOKEN bearer token is required.\n"]
        with self.app.app_context():
            try:
                body = render_metrics(settings)
            finally:
                from handled.db import release_connections
                release_connections()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body]


def _start_timer():
    g.ops_started = time.perf_counter()


def _count_request(response):
    started = g.pop("ops_started", None)
    if started is not None:
        metrics.request_done(request.endpoint, request.method, response.status_code, time.perf_counter() - started)
    return response


def init_app(app) -> None:
    metrics.reset_process_state()  # a new app may point at another Redis ...
    degraded.forget_data_status()  # ... or another DATA database
    degraded.init_app(app)
    app.register_blueprint(bp)
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)  # time the guard too
    app.after_request(_count_request)
    app.wsgi_app = MetricsTokenMiddleware(app.wsgi_app, app)
