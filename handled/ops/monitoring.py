"""What /metrics and the System page show, gathered at request time.

Everything here is read live when asked: reachability of each database and
Redis, this process's pool, server-side connections per database (from
pg_stat_activity, by application_name), job queue depth (RQ), and the age of
each reference table (last successful run in config.transformation_runs) and of
each workspace table (last successful import), and of each backup target (last
successful backup and verify, from config.backup_runs: a backup runs in a process of
its own, so only the run history can tell the web process about it). Each part fails
on its own: a database that does not answer gives ``up 0`` and empty rows, never an error.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from prometheus_client.core import GaugeMetricFamily
from rq.registry import FailedJobRegistry, StartedJobRegistry

from handled.cache import redis_available
from handled.db import data_db, primary_db, probe
from handled.errors import first_line
from handled.jobs import get_queue
from handled.ops.backup_runs import backup_status
from handled.settings import Settings

log = logging.getLogger("handled.ops")

SERVER_CONNECTIONS_SQL = """
    SELECT coalesce(nullif(application_name, ''), '(none)'), coalesce(state, '(unknown)'), count(*)
    FROM pg_stat_activity
    WHERE datname = current_database() AND backend_type = 'client backend'
    GROUP BY 1, 2 ORDER BY 1, 2"""

LAST_SUCCESS_SQL = {
    "transformation": """SELECT transformation, max(finished_at) FROM config.transformation_runs
                         WHERE status = 'succeeded' GROUP BY transformation ORDER BY transformation""",
    "integration": """SELECT integration, max(finished_at) FROM config.import_runs
                      WHERE status = 'succeeded' GROUP BY integration ORDER BY integration""",
}


def databases(settings: Settings) -> list[tuple[str, object]]:
    """(label, proxy) of each distinct database: one in single mode, two in split mode."""
    if settings.split_db_mode:
        return [("primary", primary_db), ("data", data_db)]
    return [("primary+data", primary_db)]


def _rows(proxy, query: str) -> list[tuple]:
    with proxy.atomic():  # one transaction: one pooled connection, fine behind PgBouncer
        return list(proxy.execute_sql(query).fetchall())


def server_connections(proxy) -> list[dict]:
    return [{"application_name": app, "state": state, "count": count}
            for app, state, count in _rows(proxy, SERVER_CONNECTIONS_SQL)]


def last_successes(kind: str) -> list[dict]:
    now = datetime.now(timezone.utc)
    return [{"name": name, "finished_at": finished, "age_seconds": (now - finished).total_seconds()}
            for name, finished in _rows(primary_db, LAST_SUCCESS_SQL[kind]) if finished is not None]


def job_queue() -> dict:
    """Jobs waiting, running and failed in the RQ queue."""
    queue = get_queue()
    return {"queue": queue.name, "queued": queue.count, "started": StartedJobRegistry(queue=queue).count,
            "failed": FailedJobRegistry(queue=queue).count}


def _safely(what: str, fn, default):
    try:
        return fn()
    except Exception as exc:  # a part that cannot be read must not hide the others
        log.warning("monitoring: %s unavailable: %s", what, first_line(exc))
        return default


def snapshot(settings: Settings) -> dict:
    """Everything the System page and /metrics show, as plain values."""
    report = {"mode": settings.mode, "databases": [], "redis_up": redis_available()}
    for label, proxy in databases(settings):
        reason = probe(proxy)
        entry = {"label": label, "display": proxy.obj.config.display(), "up": reason is None, "reason": reason,
                 "pool": proxy.obj.pool_stats(), "connections": []}
        if reason is None:
            entry["connections"] = _safely(f"{label} connections", lambda p=proxy: server_connections(p), [])
        report["databases"].append(entry)
    primary_up = report["databases"][0]["up"]
    report["reference_ages"] = _safely("transformation runs", lambda: last_successes("transformation"), []) \
        if primary_up else []
    report["import_ages"] = _safely("import runs", lambda: last_successes("integration"), []) if primary_up else []
    report["backups"] = _safely("backup runs", backup_status, []) if primary_up else []
    report["jobs"] = _safely("job queue", job_queue, None) if report["redis_up"] else None
    return report


class LiveCollector:
    """Gauges computed at scrape time from ``snapshot``."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def collect(self):
        data = snapshot(self.settings)
        up = GaugeMetricFamily("handled_database_up", "1 when the database answers SELECT 1.", labels=["database"])
        pool = GaugeMetricFamily("handled_pool_connections", "This process's pool: in_use, idle and max.",
                                 labels=["database", "state"])
        server = GaugeMetricFamily("handled_server_connections",
                                   "Server-side connections to the database (pg_stat_activity), every client.",
                                   labels=["database", "application_name", "state"])
        for entry in data["databases"]:
            up.add_metric([entry["label"]], 1 if entry["up"] else 0)
            for state in ("in_use", "idle", "max"):
                pool.add_metric([entry["label"], state], entry["pool"][state])
            for row in entry["connections"]:
                server.add_metric([entry["label"], row["application_name"], row["state"]], row["count"])
        yield from (up, pool, server)
        yield GaugeMetricFamily("handled_redis_up", "1 when Redis answers PING.", value=1 if data["redis_up"] else 0)
        yield from self._ages(data)
        yield from self._backups(data)
        if data["jobs"] is not None:
            depth = GaugeMetricFamily("handled_job_queue_jobs", "Jobs in the RQ queue by state.",
                                      labels=["queue", "state"])
            for state in ("queued", "started", "failed"):
                depth.add_metric([data["jobs"]["queue"], state], data["jobs"][state])
            yield depth

    def _ages(self, data):
        reference = GaugeMetricFamily("handled_reference_table_age_seconds",
                                      "Seconds since the last successful build of each transformation.",
                                      labels=["transformation"])
        for row in data["reference_ages"]:
            reference.add_metric([row["name"]], row["age_seconds"])
        imports = GaugeMetricFamily("handled_import_age_seconds",
                                    "Seconds since the last successful import of each integration.",
                                    labels=["integration"])
        for row in data["import_ages"]:
            imports.add_metric([row["name"]], row["age_seconds"])
        return reference, imports

    def _backups(self, data):
        """Per target with any run: when its last backup (verify) succeeded, 0 if none ever did, so
        ``time() - handled_backup_last_success_timestamp_seconds > 86400`` alerts on both."""
        made = GaugeMetricFamily("handled_backup_last_success_timestamp_seconds",
                                 "Unix time the last backup of each target succeeded (written and copied off the "
                                 "host when BACKUP_COPY_COMMAND is set); 0 if none has.", labels=["target"])
        verified = GaugeMetricFamily("handled_backup_last_verified_timestamp_seconds",
                                     "Unix time a backup of each target last passed flask backup verify; 0 if none "
                                     "has.", labels=["target"])
        for row in data["backups"]:
            if row["last"] is not None:
                made.add_metric([row["target"]], row["success"]["finished_at"].timestamp() if row["success"] else 0)
            if row["verify"] is not None:
                verified.add_metric([row["target"]],
                                    row["verified"]["finished_at"].timestamp() if row["verified"] else 0)
        return made, verified
