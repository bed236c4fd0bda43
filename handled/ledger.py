"""The run ledger: what each import and transformation committed in DATA, kept in DATA.

An import commits its rows in DATA, then finishes its run in PRIMARY's history; a
transformation swaps its table in DATA, then finishes its run. Two databases, two
commits: a process killed between them used to leave a run the sweep called "nothing
was written" while its rows were live. So the DATA transaction that writes the rows (or
swaps the table) also writes one row here, ``workspace.run_ledger``, and commits it with
them. The invariant: **a run has a ledger row exactly when its DATA work committed.**
PRIMARY's history is then completed from the ledger: ``runs.sweep_dead_runs`` (a dead
run found here succeeded, with these counts; one not found wrote nothing) and
``flask data rebuild`` (``runs.reconcile_with_ledger``) read it.

A dead process's DATA transaction may still be ending when the sweep looks (its COMMIT
sent, the server not done). The ledger row is written under a transaction-scoped
advisory lock on the run (``RECORD_SQL``), just before COMMIT: a sweep that can take
that lock knows the transaction is over (committed, rolled back, or never to commit:
its client is dead and the row not yet written), so what it then reads is final. One
that cannot take it leaves the run for the next sweep.

A run is named by its id and its start time (``RunRef``): a PRIMARY restored from a backup
hands its run ids out again, and a new run with an id DATA recorded before the restore must
neither collide with that entry nor be taken for it.

The ledger is bookkeeping, not data: it is left out of "does DATA hold workspace rows"
(``LEDGER_TABLE``) and of comparisons of a rebuilt DATA with the one it replaces.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from handled.db import data_db

log = logging.getLogger("handled.runs")

LEDGER_TABLE = "run_ledger"          # in schema workspace (migrations/data/0005_run_ledger.sql)
LOCK_CLASS = {"import": 4_005_001, "transformation": 4_005_002}   # first key of the per-run advisory lock
OUTCOMES = {"import": "imported", "transformation": "swapped"}
_RUN_KEY = "(%(run_id)s::bigint %% 2147483648)::integer"   # run ids are bigint; the lock's second key is int4

RECORD_SQL = (
    "INSERT INTO workspace.run_ledger (kind, run_id, run_started_at, subject, outcome, file_sha256, rows_read,"
    " rows_written, rows_rejected, rejected_rows)"
    " SELECT %(kind)s, %(run_id)s, %(run_started_at)s, %(subject)s, %(outcome)s, %(file_sha256)s, %(rows_read)s,"
    " %(rows_written)s, %(rows_rejected)s, %(rejected_rows)s::jsonb"
    f" FROM (SELECT pg_advisory_xact_lock(%(lock_class)s, {_RUN_KEY})) AS held")


@dataclass(frozen=True)
class RunRef:
    """Which run: its id in PRIMARY's history and when it started there."""
    id: int
    started_at: datetime

    @classmethod
    def of(cls, run) -> "RunRef":
        """The reference of a run record (config.import_runs / config.transformation_runs row)."""
        return cls(run.id, run.started_at)


@dataclass(frozen=True)
class LedgerEntry:
    kind: str
    run_id: int
    run_started_at: datetime
    subject: str
    outcome: str
    file_sha256: str | None
    rows_read: int
    rows_written: int
    rows_rejected: int
    rejected_rows: list
    committed_at: datetime


def record(kind: str, run: RunRef, subject: str, *, rows_written: int, rows_read: int = 0,
           rows_rejected: int = 0, rejected_rows: list | None = None,
           file_sha256: str | None = None) -> tuple[str, dict]:
    """The statement (SQL and parameters) that records ``run``'s commit; run it last in the
    DATA transaction that writes the rows or swaps the table, on that transaction's connection."""
    return RECORD_SQL, {"kind": kind, "run_id": run.id, "run_started_at": run.started_at, "subject": subject,
                        "outcome": OUTCOMES[kind],
                        "file_sha256": file_sha256, "rows_read": rows_read, "rows_written": rows_written,
                        "rows_rejected": rows_rejected, "rejected_rows": json.dumps(rejected_rows or []),
                        "lock_class": LOCK_CLASS[kind]}


class LedgerUnreadable(Exception):
    """DATA did not answer: the ledger cannot tell what committed (the caller decides nothing)."""


def settled(kind: str, runs: list[RunRef]) -> dict[int, LedgerEntry | None]:
    """For each run whose DATA transaction is over: its ledger entry, or None (nothing committed).

    A run whose transaction still holds its lock is left out (ask again later). Raises
    LedgerUnreadable when DATA does not answer. One short DATA transaction, on the pooled
    connection; the locks it takes end with it, before the caller writes PRIMARY (which, in
    single-database mode, is the same connection).
    """
    if not runs:
        return {}
    run_ids = [run.id for run in runs]
    try:
        with data_db.atomic():
            cursor = data_db.execute_sql(
                f"SELECT r.run_id FROM unnest(%(ids)s::bigint[]) AS r(run_id)"
                f" WHERE pg_try_advisory_xact_lock(%(lock_class)s, {_RUN_KEY.replace('%(run_id)s', 'r.run_id')})",
                {"ids": list(run_ids), "lock_class": LOCK_CLASS[kind]})
            over = [row[0] for row in cursor.fetchall()]
            found = _entries(kind, [run for run in runs if run.id in over])   # after the locks: sees what they waited for
    except Exception as exc:   # DATA down, or a pool that cannot connect: nothing can be told
        raise LedgerUnreadable(str(exc).strip()) from exc
    return {run_id: found.get(run_id) for run_id in over}


def committed_run_ids(kind: str) -> list[int]:
    """The ids of every run of ``kind`` the ledger holds (its DATA work committed); empty before
    migration 0005. An id may name an earlier run than PRIMARY's run of that id (a restored
    PRIMARY): ``entries`` tells them apart."""
    with data_db.atomic():
        if not _ledger_exists():
            return []
        cursor = data_db.execute_sql("SELECT DISTINCT run_id FROM workspace.run_ledger WHERE kind = %s ORDER BY run_id",
                                     (kind,))
        return [row[0] for row in cursor.fetchall()]


def entries(kind: str, runs: list[RunRef]) -> dict[int, LedgerEntry]:
    """The ledger entries of these runs of ``kind``, by run id (a run that committed nothing has none)."""
    with data_db.atomic():
        return _entries(kind, list(runs))


_COLUMNS = ("kind, run_id, run_started_at, subject, outcome, file_sha256, rows_read, rows_written, rows_rejected,"
            " rejected_rows, committed_at")


def _ledger_exists() -> bool:
    """False before DATA's migration 0005 (or in a DATA not migrated yet): then nothing is recorded."""
    return data_db.execute_sql("SELECT to_regclass('workspace.run_ledger') IS NOT NULL").fetchone()[0]


def _entries(kind: str, runs: list[RunRef]) -> dict[int, LedgerEntry]:
    if not runs or not _ledger_exists():
        return {}
    cursor = data_db.execute_sql(
        f"SELECT {_COLUMNS} FROM workspace.run_ledger"
        " WHERE kind = %s AND (run_id, run_started_at) IN (SELECT * FROM unnest(%s::bigint[], %s::timestamptz[]))",
        (kind, [run.id for run in runs], [run.started_at for run in runs]))
    return {entry.run_id: entry for entry in (LedgerEntry(*row) for row in cursor.fetchall())}
