"""Run history of imports, in the PRIMARY database (config.import_runs).

Written through ``primary_db`` only, and never inside the DATA transaction of
a load: in single-database mode both proxies share one connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handled import audit, runs
from handled.models import ImportRun

if TYPE_CHECKING:
    from handled.context import Actor


def start_run(integration_id: str, file_name: str, sha256: str, size: int, partial: bool,
              actor: Actor, status: str = "running") -> ImportRun:
    """Record a new import run by ``actor`` (the history keeps its id and email)."""
    return runs.start_run("import", actor_id=actor.id, actor_email=audit.actor_text(actor), status=status,
                          integration=integration_id, file_name=file_name, file_sha256=sha256,
                          file_size=size, partial=partial)


def finish_run(run: ImportRun, status: str, message: str, rows_read: int = 0,
               rows_written: int = 0, rows_rejected: int = 0, rejected_rows: list | None = None) -> ImportRun:
    """End ``run`` in the history, and in the row object the caller holds."""
    totals = dict(rows_read=rows_read, rows_written=rows_written, rows_rejected=rows_rejected,
                  rejected_rows=rejected_rows or [])
    finished_at = runs.finish_run("import", run.id, status, message=message, **totals)
    for column, value in dict(status=status, message=message, finished_at=finished_at, **totals).items():
        setattr(run, column, value)
    return run


def succeeded_with(integration_id: str, sha256: str) -> list[ImportRun]:
    """Every successful import of this content, the one that committed last first."""
    return list(ImportRun.select()
                .where((ImportRun.integration == integration_id) & (ImportRun.file_sha256 == sha256)
                       & (ImportRun.status == "succeeded"))
                .order_by(ImportRun.finished_at.desc(), ImportRun.id.desc()))


def succeeded_after(integration_id: str, run: ImportRun) -> list[ImportRun]:
    """The successful imports that committed after ``run`` did (finished_at is set after the
    DATA commit, so its order is the order in which they changed the table)."""
    return list(ImportRun.select()
                .where((ImportRun.integration == integration_id) & (ImportRun.status == "succeeded")
                       & (ImportRun.finished_at > run.finished_at) & (ImportRun.id != run.id))
                .order_by(ImportRun.finished_at))


def last_success(integration_id: str) -> ImportRun | None:
    return runs.last_success("import", integration_id)


def recent_runs(integration_id: str | None = None, limit: int = 50) -> list[ImportRun]:
    return runs.recent_runs("import", integration_id, limit)


def get_run(run_id: int) -> ImportRun | None:
    return ImportRun.get_or_none(ImportRun.id == run_id)


def duration_seconds(run: ImportRun) -> float | None:
    if run.finished_at is None or run.started_at is None:
        return None
    return (run.finished_at - run.started_at).total_seconds()
