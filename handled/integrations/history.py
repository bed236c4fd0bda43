"""Run history of imports, in the PRIMARY database (config.import_runs).

Written through ``primary_db`` only, and never inside the DATA transaction of
a load: in single-database mode both proxies share one connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from handled.models import ImportRun
from handled.timeutil import utcnow

# While a run is 'running' its message names the process (the history has no
# column for it), so a run whose process died can be told apart and marked failed.
RUNNING_MESSAGE = "Running in process {runner}."
_RUNNING = re.compile(r"Running in process (\S+)\.")
DEAD_RUNNER_MESSAGE = ("The process running this import ({runner}) stopped before it finished; "
                       "its transaction was rolled back and nothing was written.")


@dataclass(frozen=True)
class Actor:
    """Who started an import (None for the CLI unless given)."""

    id: int | None = None
    email: str | None = None


SYSTEM = Actor()


def start_run(integration_id: str, file_name: str, sha256: str, size: int, partial: bool,
              actor: Actor, status: str = "running") -> ImportRun:
    return ImportRun.create(integration=integration_id, file_name=file_name, file_sha256=sha256,
                            file_size=size, partial=partial, status=status,
                            created_by=actor.id, created_by_email=actor.email,
                            message=_running_message() if status == "running" else None)


def _running_message() -> str | None:
    heartbeat = heartbeat_module()
    return RUNNING_MESSAGE.format(runner=heartbeat.runner_id()) if heartbeat else None


def heartbeat_module():
    """handled.heartbeat (it arrives with the job queue), or None without it."""
    try:
        from handled import heartbeat
    except ImportError:
        return None
    return heartbeat


def sweep_dead_runs() -> list[int]:
    """Mark failed every 'running' import whose process is gone (killed, host restarted).

    Its DATA transaction was rolled back by PostgreSQL when the connection
    dropped, so nothing of it was written.
    """
    heartbeat = heartbeat_module()
    if heartbeat is None:
        return []
    failed = []
    for run in ImportRun.select().where(ImportRun.status == "running"):
        runner = running_in(run)
        if heartbeat.runner_alive(runner) is False:
            ImportRun.update(status="failed", finished_at=utcnow(), message=DEAD_RUNNER_MESSAGE.format(
                runner=runner or "unknown")).where(
                (ImportRun.id == run.id) & (ImportRun.status == "running")).execute()
            failed.append(run.id)
    return failed


def running_in(run: ImportRun) -> str | None:
    """The <host>:<pid> a running import named in its message when it started."""
    match = _RUNNING.fullmatch(run.message or "")
    return match.group(1) if match else None


def finish_run(run: ImportRun, status: str, message: str, rows_read: int = 0,
               rows_written: int = 0, rows_rejected: int = 0, rejected_rows: list | None = None) -> ImportRun:
    run.status = status
    run.message = message
    run.rows_read = rows_read
    run.rows_written = rows_written
    run.rows_rejected = rows_rejected
    run.rejected_rows = rejected_rows or []
    run.finished_at = utcnow()
    run.save()
    return run


def succeeded_before(integration_id: str, sha256: str) -> ImportRun | None:
    """The latest successful import of the same content, if any."""
    return (ImportRun.select()
            .where((ImportRun.integration == integration_id) & (ImportRun.file_sha256 == sha256)
                   & (ImportRun.status == "succeeded"))
            .order_by(ImportRun.id.desc()).first())


def last_success(integration_id: str) -> ImportRun | None:
    return (ImportRun.select()
            .where((ImportRun.integration == integration_id) & (ImportRun.status == "succeeded"))
            .order_by(ImportRun.id.desc()).first())


def recent_runs(integration_id: str | None = None, limit: int = 50) -> list[ImportRun]:
    query = ImportRun.select().order_by(ImportRun.id.desc()).limit(limit)
    if integration_id:
        query = query.where(ImportRun.integration == integration_id)
    return list(query)


def get_run(run_id: int) -> ImportRun | None:
    return ImportRun.get_or_none(ImportRun.id == run_id)


def duration_seconds(run: ImportRun) -> float | None:
    if run.finished_at is None or run.started_at is None:
        return None
    return (run.finished_at - run.started_at).total_seconds()
