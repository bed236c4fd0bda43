"""Run history: the one way imports, transformations and exports record their runs.

Each kind of run has its table in PRIMARY (config.import_runs,
config.transformation_runs, config.export_runs) with the columns of
``RunRecord``: status, message, who started it, when, and ``worker``, the
``<host>:<pid>`` of the process running it (handled/heartbeat.py). A feature
starts a run with ``start_run``, may record its phase, and ends it with
``finish_run`` (or ``fail_run``; a run a user stopped ends 'cancelled', with who in its
message, and is not a failure: home's failed runs leave it out), and reads it back with ``last_success`` and
``recent_runs``; its own history module keeps only the queries that are its own
(staleness, the run going now, ...).

A process can die mid-run (killed, host restarted) and leave its row
'running' forever. ``sweep_dead_runs`` ends the running rows whose worker no
longer beats; a job worker sweeps every kind when it starts and every few seconds
while idle (jobs/worker.py), and pages sweep their own kind before they show it.
``RUN_KINDS`` below is the one list of what is swept, with the sentence each kind's
dead runs are given.

Imports and transformations commit their work in DATA before they finish their
run here, so a dead one may have written everything. DATA's run ledger
(handled/ledger.py) says which: the sweep finishes a dead run the ledger holds
as succeeded, with the ledger's counts and commit time, and fails one it does
not hold ("nothing was written"); while DATA cannot be read, or the run's DATA
transaction is still ending, it decides nothing. ``reconcile_with_ledger``
(``flask data rebuild``) also corrects a run recorded failed whose work the
ledger shows committed (a connection lost during its COMMIT).

Rows are written through ``primary_db`` only, never inside a DATA transaction:
in single-database mode both proxies share one connection.

Backups and their verifications (config.backup_runs, one row per target made or
file verified) are runs too: a timer starts them with nobody watching, so a
failure (of pg_dump, of the archive, of BACKUP_COPY_COMMAND) is kept here for
/system and /metrics (handled/ops/backup_runs.py). A dump that did not finish is
never renamed into place, whatever its row says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timezone
from typing import Callable

from handled import heartbeat, ledger
from handled.models import BackupRun, ExportRun, ImportRun, TransformationRun
from handled.models.config import RunRecord
from handled.timeutil import utcnow

log = logging.getLogger("handled.runs")


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
    # Kinds whose work commits in DATA: a dead run's sentence when DATA's ledger holds it (with
    # {runner}), and the run's own columns its ledger entry fills in. None: no ledger.
    committed_message: str | None = None
    from_ledger: Callable[[ledger.LedgerEntry], dict] | None = None


RUN_KINDS: dict[str, RunKind] = {kind.name: kind for kind in (
    RunKind("import", ImportRun, "integration",
            "The process running this import ({runner}) stopped before it finished; "
            "its transaction was rolled back and nothing was written.",
            committed_message="The process running this import ({runner}) stopped after DATA had committed its "
                              "rows but before it recorded them; this run was completed from DATA's run ledger.",
            from_ledger=lambda entry: dict(rows_read=entry.rows_read, rows_written=entry.rows_written,
                                           rows_rejected=entry.rows_rejected, rejected_rows=entry.rejected_rows)),
    RunKind("transformation", TransformationRun, "transformation",
            "The worker running it ({runner}) stopped before it finished; the live table was left as it was.",
            last_success_by="finished_at",
            committed_message="The worker running it ({runner}) stopped after the new table had been swapped in "
                              "but before it recorded it; this run was completed from DATA's run ledger.",
            from_ledger=lambda entry: dict(rows_written=entry.rows_written, phase="succeeded")),
    # A download or export file keeps a heartbeat while it runs (exports/service.py), so a
    # web worker killed mid-download leaves a run the sweep can tell is dead.
    RunKind("export", ExportRun, "export",
            "The process writing this export ({runner}) stopped before it finished; the file it was "
            "sending is incomplete."),
    # subject "target": a backup's last success is read per operation by ops/backup_runs.py
    RunKind("backup", BackupRun, "target",
            "The process running it ({runner}) stopped before it finished; a backup it was writing was never "
            "put in place, and a verify's scratch database is dropped by the next verify.",
            last_success_by="finished_at"),
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
    """End the running runs (of ``kind``, or every kind) whose worker is gone; return their ids.

    ``where`` narrows by the kind's own columns (``transformation="..."``). A kind with a
    ledger is ended as DATA's ledger says (succeeded or failed), or left for a later sweep.
    """
    kinds = [RUN_KINDS[kind]] if kind else list(RUN_KINDS.values())
    ended = []
    for run_kind in kinds:
        if run_kind.dead_worker_message is not None:
            ended += _sweep(run_kind, where)
    return ended


def _sweep(kind: RunKind, where: dict) -> list[int]:
    model = kind.model
    query = model.select().where(model.status == "running")
    for column, value in where.items():
        query = query.where(getattr(model, column) == value)
    dead = [run for run in query if heartbeat.runner_alive(run.worker) is False]
    if not dead:
        return []
    if kind.from_ledger is None:
        return [run.id for run in dead if _end(kind, run, None)]
    try:
        settled = ledger.settled(kind.name, [ledger.RunRef.of(run) for run in dead])
    except ledger.LedgerUnreadable as exc:
        log.warning("%s runs %s of dead workers are left running until DATA answers: %s",
                    kind.name, [run.id for run in dead], exc)
        return []
    # a run missing from ``settled`` is still ending in DATA: the next sweep decides it
    return [run.id for run in dead if run.id in settled and _end(kind, run, settled[run.id])]


def _end(kind: RunKind, run: RunRecord, entry: ledger.LedgerEntry | None, *, was: str = "running",
         message: str | None = None) -> bool:
    """End ``run`` (still in status ``was``) as DATA's ledger ``entry`` says: succeeded with its
    counts at its commit time, or failed when there is none. False when someone else ended it first."""
    model, runner = kind.model, run.worker or "unknown"
    if entry is None:
        values = dict(status="failed", finished_at=utcnow(), message=kind.dead_worker_message.format(runner=runner))
    else:
        values = dict(status="succeeded", finished_at=entry.committed_at,
                      message=message or kind.committed_message.format(runner=runner), **kind.from_ledger(entry))
    return bool(model.update(**values).where((model.id == run.id) & (model.status == was)).execute())


CORRECTED_MESSAGE = ("This run was recorded as failed, but DATA's run ledger shows its work committed at "
                     "{committed_at:%Y-%m-%d %H:%M:%S} UTC: it was corrected to succeeded from the ledger.")


def reconcile_with_ledger() -> list[int]:
    """Bring PRIMARY's history in line with DATA's run ledger; return the ids of the runs changed.

    First the dead-worker sweep; then every run recorded failed whose ledger entry says its work
    committed after all (its process lost the connection during COMMIT and took that for a
    failure) becomes succeeded. A run the ledger does not hold is left as it is: the ledger
    starts with DATA's migration 0005 and goes with a lost DATA database.
    """
    changed = sweep_dead_runs()
    for kind in RUN_KINDS.values():
        if kind.from_ledger is None:
            continue
        model = kind.model
        committed = ledger.committed_run_ids(kind.name)
        failed = list(model.select().where(model.id.in_(committed) & (model.status == "failed"))) if committed else []
        found = ledger.entries(kind.name, [ledger.RunRef.of(run) for run in failed])
        for run in failed:
            entry = found.get(run.id)
            if entry is None:   # the ledger's run of this id came before a PRIMARY restore: not this one
                continue
            said = CORRECTED_MESSAGE.format(committed_at=entry.committed_at.astimezone(timezone.utc))
            if _end(kind, run, entry, was="failed", message=said):
                changed.append(run.id)
    return changed
