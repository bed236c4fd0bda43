"""Run history: the one way imports, transformations and exports record their runs.

Each kind of run has its table in PRIMARY (config.import_runs,
config.transformation_runs, config.export_runs) with the columns of
``RunRecord``: status, message, who started it, when, and ``worker``, the
``<host>:<pid>`` of the process running it (handled/heartbeat.py). A feature
starts a run with ``start_run``, may record its phase, and ends it with
``finish_run`` (or ``fail_run``), and reads it back with ``last_success`` and
``recent_runs``; its own history module keeps only the queries that are its own
(staleness, the run going now, ...).

A process can die mid-run (killed, host restarted) and leave its row
'running' forever. ``sweep_dead_runs`` marks failed the running rows whose
worker no longer beats; a job worker sweeps every kind when it starts and every
few seconds while idle (jobs/worker.py), and pages sweep their own kind before
they show it. ``RUN_KINDS`` below is the one list
of what is swept, with the sentence each kind's dead runs are given.

Rows are written through ``primary_db`` only, never inside a DATA transaction:
in single-database mode both proxies share one connection.

Backups keep no run table: a backup is its dump and the manifest written
beside it (ops/backup.py), and a dump that did not finish is never renamed
into place.
"""

from __future__ import annotations

from dataclasses import dataclass

from handled import heartbeat
from handled.models import ExportRun, ImportRun, TransformationRun
from handled.models.config import RunRecord
from handled.timeutil import utcnow


@dataclass(frozen=True)
class RunKind:
    """One kind of run: its table, the column naming what ran, and what its runs say when their worker died."""

    name: str
    model: type[RunRecord]
    subject: str                        # integration, transformation or export
    dead_worker_message: str | None     # with {runner}; None: never swept (see RUN_KINDS)
    # Which success is the last: a transformation's is the build that finished last (the
    # live table's); the others', the one started last.
    last_success_by: str = "id"


RUN_KINDS: dict[str, RunKind] = {kind.name: kind for kind in (
    RunKind("import", ImportRun, "integration",
            "The process running this import ({runner}) stopped before it finished; "
            "its transaction was rolled back and nothing was written."),
    RunKind("transformation", TransformationRun, "transformation",
            "The worker running it ({runner}) stopped before it finished; the live table was left as it was.",
            last_success_by="finished_at"),
    # A download or export file keeps a heartbeat while it runs (exports/service.py), so a
    # web worker killed mid-download leaves a run the sweep can tell is dead.
    RunKind("export", ExportRun, "export",
            "The process writing this export ({runner}) stopped before it finished; the file it was "
            "sending is incomplete."),
)}


def run_model(kind: str) -> type[RunRecord]:
    return RUN_KINDS[kind].model


def start_run(kind: str, *, actor_id: int | None = None, actor_email: str | None = None,
              status: str = "running", **fields) -> RunRecord:
    """Record a new run of ``kind`` (``fields``: the columns of its own table), run by this process."""
    return run_model(kind).create(status=status, worker=heartbeat.runner_id(), created_by=actor_id,
                                  created_by_email=actor_email, **fields)


def record_phase(kind: str, run_id: int, phase: str) -> None:
    """Say which phase a running run is in (for kinds whose table has a ``phase``)."""
    model = run_model(kind)
    model.update(phase=phase).where(model.id == run_id).execute()


def finish_run(kind: str, run_id: int, status: str, *, message: str | None = None, **fields):
    """End a run with ``status`` and a sentence (``fields``: the kind's own totals); return when."""
    model, finished_at = run_model(kind), utcnow()
    model.update(status=status, message=message, finished_at=finished_at, **fields).where(
        model.id == run_id).execute()
    return finished_at


def fail_run(kind: str, run_id: int, message: str, **fields) -> None:
    finish_run(kind, run_id, "failed", message=message, **fields)


def last_success(kind: str, subject: str) -> RunRecord | None:
    """The last succeeded run of ``subject`` (an integration, transformation or export id)."""
    run_kind = RUN_KINDS[kind]
    model = run_kind.model
    return (model.select()
            .where((getattr(model, run_kind.subject) == subject) & (model.status == "succeeded"))
            .order_by(getattr(model, run_kind.last_success_by).desc()).first())


def recent_runs(kind: str, subject: str | None = None, limit: int = 50) -> list[RunRecord]:
    """The latest runs of ``kind`` (of one ``subject`` when given), newest first."""
    run_kind = RUN_KINDS[kind]
    model = run_kind.model
    query = model.select().order_by(model.id.desc()).limit(limit)
    if subject:
        query = query.where(getattr(model, run_kind.subject) == subject)
    return list(query)


def sweep_dead_runs(kind: str | None = None, **where) -> list[int]:
    """Mark failed the running runs (of ``kind``, or every kind) whose worker is gone; return their ids.

    ``where`` narrows by the kind's own columns (``transformation="..."``).
    """
    kinds = [RUN_KINDS[kind]] if kind else list(RUN_KINDS.values())
    failed = []
    for run_kind in kinds:
        if run_kind.dead_worker_message is not None:
            failed += _sweep(run_kind, where)
    return failed


def _sweep(kind: RunKind, where: dict) -> list[int]:
    model = kind.model
    query = model.select().where(model.status == "running")
    for column, value in where.items():
        query = query.where(getattr(model, column) == value)
    failed = []
    for run in query:
        if heartbeat.runner_alive(run.worker) is False:
            message = kind.dead_worker_message.format(runner=run.worker or "unknown")
            updated = model.update(status="failed", finished_at=utcnow(), message=message).where(
                (model.id == run.id) & (model.status == "running")).execute()
            if updated:
                failed.append(run.id)
    return failed
