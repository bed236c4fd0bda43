"""Run a build-and-swap (its names and SQL: build_plan.py; the story: docs/TRANSFORMATIONS.md).

Phases: **lock** (an advisory lock held for the whole build), **prepare** (drop
what a killed build left, create ``reference._build_<target>``, partitioned into
slices when the transformation has a split column, and its companions' build
tables), **insert** and **index** (one connection per slice, side by side, since
PostgreSQL runs an INSERT ... SELECT on one core), **derive** (each companion from
the build table), **check** (rows > 0 unless every source is empty) and **swap**
(one short transaction under a ``lock_timeout``, retried while a long reader holds
a live table, which also writes the run's row in DATA's ledger, handled/ledger.py;
the old tables are dropped afterwards, blocking no reader).

A failure or cancel before the swap drops the build tables and leaves the live
tables serving; a killed process (or DATA gone, so the DROP cannot reach it) leaves
them for the sweep (leftovers.py) or the next build to drop.

The build runs in a thread of its own (its slices in a pool), so the calling
thread stays free to notice Ctrl-C or a job timeout: it is the one loop that
waits for the build, and it cancels every connection of the build through its
``BuildControl`` (build_control.py). Progress goes straight from the build thread to the sink.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from handled import ledger
from handled.context import NO_PROGRESS, Progress
from handled.db import direct_connection, release_connections
from handled.db import transaction_on as _transaction
from handled.settings import DatabaseConfig, Settings
from handled.transformations.build_control import BuildControl, Stopped, pg_code
from handled.transformations.build_plan import (INDEX_SQL, LEFTOVER_LOCK_TIMEOUT, PROGRESS_TOTAL, SCHEMA, BuildBusy,
                                                BuildCancelled, BuildFailed, BuildPlan, LiveIndex, Slice, Statement,
                                                parse_index, progress_point)
from handled.transformations.leftovers import drop_abandoned
from handled.transformations.registry import Companion, Transformation

log = logging.getLogger("handled.transformations")

LOCK_TIMEOUT_MS = 40          # the longest a reader queues behind one swap attempt
SWAP_PATIENCE_SECONDS = 120   # how long to keep retrying the swap before giving up
DROP_PATIENCE_SECONDS = 5     # how long to try dropping the old table after the swap
LOCK_PATIENCE_SECONDS = 1.0   # how long a build asks for its lock while a sweep may hold it
POLL_SECONDS = 0.2            # how often the waiting thread re-cancels a stopping build


@dataclass
class BuildResult:
    rows: int
    sources_empty: bool
    timings: dict = field(default_factory=dict)
    slices: int = 1


def build_and_swap(t: Transformation, settings: Settings, *, parallelism: int, progress: Progress = NO_PROGRESS,
                   lock_timeout_ms: int = LOCK_TIMEOUT_MS, swap_patience: float = SWAP_PATIENCE_SECONDS,
                   control: BuildControl | None = None, run: ledger.RunRef | None = None) -> BuildResult:
    """Rebuild ``t.target`` from its SELECT in up to ``parallelism`` slices and swap it in,
    over direct connections to ``settings``' DATA database as the builder (DATA_BUILD_URL).
    With ``run`` (its run in PRIMARY's history) the swap's transaction also writes the
    run's row in DATA's ledger (handled/ledger.py), so the swap and its record commit together.

    The build runs in a thread; this thread waits, and anything that interrupts it
    (Ctrl-C, a job timeout) cancels the build before it propagates."""
    control = control or BuildControl()
    outcome: dict = {}

    def build() -> None:
        try:
            outcome["result"] = _Build(t, settings.build_database(), control, progress, run).run(
                parallelism, lock_timeout_ms, swap_patience)
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc
        finally:
            release_connections()   # whatever the progress sink opened in this thread

    worker = threading.Thread(target=build, name=f"build-{t.id}", daemon=True)
    worker.start()
    try:
        _wait_for(worker, control)
    except BaseException:
        control.cancel()   # every connection of the build stops; its tables are dropped
        _wait_for(worker, control)
        if "result" in outcome:   # the swap had committed before the cancel: the new table is live
            log.warning("%s: interrupted after its swap had committed; the new table stays", t.id)
            return outcome["result"]
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _wait_for(worker: threading.Thread, control: BuildControl) -> None:
    while worker.is_alive():
        if control.stopping.is_set():
            control.interrupt()   # again until all are out: one may have been between statements
        worker.join(timeout=POLL_SECONDS)


class _Timer:
    def __init__(self, timings: dict, name: str, add: bool = False):
        self.timings, self.name, self.add = timings, name, add

    def __enter__(self):
        self.started = time.monotonic()

    def __exit__(self, *exc):
        spent = time.monotonic() - self.started
        self.timings[self.name] = round((self.timings.get(self.name, 0) if self.add else 0) + spent, 3)


class _Build:
    """One build of one transformation: runs its plan's statements on connections of its own."""

    def __init__(self, t: Transformation, data: DatabaseConfig, control: BuildControl, progress: Progress,
                 run: ledger.RunRef | None = None):
        self.t, self.data, self.control, self.progress, self.run_ref = t, data, control, progress, run
        self.plan = BuildPlan(t)
        self.timings: dict[str, float] = {}
        self.parallelism = 1

    def run(self, parallelism: int, lock_timeout_ms: int, swap_patience: float) -> BuildResult:
        t, plan = self.t, self.plan
        self.parallelism = parallelism
        with self.connection(autocommit=False) as lock_conn:
            self.lock(lock_conn)   # held until lock_conn's transaction ends
            with self.connection() as conn:
                try:
                    with self.phase("prepare"):
                        self.drop_leftovers(conn)
                        slices = self.plan_slices(conn, parallelism)
                        indexes = self.live_indexes(conn, t)
                        companion_indexes = {c.target: self.live_indexes(conn, c.companion) for c in plan.companions}
                        with _transaction(conn) as cur:   # all or none of the tables
                            self.execute(cur, *plan.create_tables(slices))
                    rows = self.fill(slices, indexes)
                    with _Timer(self.timings, "index", add=True), conn.cursor() as cur:
                        self.execute(cur, *plan.finish_indexes(slices, indexes))
                    if plan.companions:
                        with self.phase("derive"):
                            self.derive(conn, companion_indexes)
                    with self.phase("check"):
                        sources_empty = self.sources_empty(conn)
                        if rows == 0 and not sources_empty:
                            raise BuildFailed(f"{t.id} built 0 rows although its sources have rows; "
                                              f"{t.qualified_target} was left unchanged.")
                    with self.phase("swap"):
                        self.swap(conn, indexes, companion_indexes, lock_timeout_ms, swap_patience, rows)
                except BaseException as exc:
                    self.drop_quietly(conn, plan.drop_builds())
                    if self.control.cancelled.is_set() and pg_code(exc) == "57014":
                        raise self.cancelled() from None   # a statement of this connection was cancelled
                    raise
                self.drop_old(conn, lock_timeout_ms)
            lock_conn.rollback()
        self.announce("done")
        return BuildResult(rows=rows, sources_empty=sources_empty, timings=self.timings, slices=len(slices))

    def announce(self, phase: str, fraction: float = 0.0, detail: str = "") -> None:
        """Report ``phase`` (``fraction`` of it done) on the PROGRESS_TOTAL scale of build_plan."""
        self.progress(phase, progress_point(phase, fraction), PROGRESS_TOTAL, f"{self.t.id}: {phase}{detail}")

    def phase(self, name: str) -> _Timer:
        self.announce(name)
        return _Timer(self.timings, name)

    @contextmanager
    def connection(self, autocommit: bool = True):
        """A DATA connection of the build's own (not from the pool, which the build would
        drain for minutes), cancellable through the build's control."""
        with direct_connection(self.data, f"build-{self.t.id}") as conn:
            # PostgreSQL 14+: a killed worker's statements stop within a second instead of
            # running on (a session setting: not through a transaction pooler)
            if conn.server_version >= 140000 and not self.data.pgbouncer:
                with conn.cursor() as cur:
                    cur.execute("SET client_connection_check_interval = '1s'")
            conn.autocommit = autocommit
            self.control.register(conn)
            try:
                yield conn
            finally:
                self.control.forget(conn)

    def execute(self, cur, *statements: str | Statement) -> None:
        """Run statements in order, refusing to start one once the build is stopping."""
        for statement in statements:
            sql, params = (statement, None) if isinstance(statement, str) else statement
            if self.control.cancelled.is_set():
                raise self.cancelled()
            if self.control.stopping.is_set():
                raise Stopped()
            cur.execute(sql, params)

    def cancelled(self) -> BuildCancelled:
        return BuildCancelled(f"{self.t.id} was cancelled; {self.t.qualified_target} was left unchanged.")

    # -- prepare -----------------------------------------------------------------------------

    def lock(self, conn) -> None:
        """The build lock; held a moment by a sweep (leftovers.py), it is asked again for a while."""
        deadline = time.monotonic() + LOCK_PATIENCE_SECONDS
        with conn.cursor() as cur:
            while True:
                self.execute(cur, self.plan.lock())
                if cur.fetchone()[0]:
                    return
                if time.monotonic() >= deadline:
                    raise BuildBusy(f"Another process is already building {self.t.qualified_target} for "
                                    f"{self.t.id}; wait for it to finish.")
                time.sleep(0.05)

    def drop_leftovers(self, conn) -> None:
        """Its own scratch tables a killed build left, then any other transformation's that no build
        is running (leftovers.py: DATA gone under a build leaves them; a new build is a good moment)."""
        drop_abandoned(conn, skip=self.t.id)
        for table in self.plan.scratch_tables():
            try:
                with _transaction(conn) as cur:
                    self.execute(cur, *self.plan.drop_leftover(table))
            except psycopg2.errors.LockNotAvailable:
                raise BuildFailed(
                    f"{SCHEMA}.{table}, left by an earlier build, is still in use by another session; "
                    f"{self.t.qualified_target} was left unchanged. Try again when that session has "
                    "finished.") from None

    def plan_slices(self, conn, parallelism: int) -> list[Slice]:
        values = None
        if self.plan.split_values() and parallelism >= 1:
            with conn.cursor() as cur:
                self.execute(cur, self.plan.split_values())
                values = [row[0] for row in cur.fetchall()]
        return self.plan.slices(values, parallelism)

    def live_indexes(self, conn, table: Transformation | Companion) -> list[LiveIndex]:
        """The keys and indexes of ``table``'s live table (the transformation's or a companion's)."""
        with conn.cursor() as cur:
            self.execute(cur, Statement(INDEX_SQL, (table.qualified_target,)))
            return [parse_index(table, *row) for row in cur.fetchall()]

    # -- insert and index --------------------------------------------------------------------

    def fill(self, slices: list[Slice], indexes: list[LiveIndex]) -> int:
        """Fill and index every slice, side by side; return the rows written.

        Timings: ``insert`` until every slice holds its rows, ``index`` from
        then until every slice has its keys."""
        lock, inserted, indexed = threading.Lock(), [], []
        changed = threading.Event()
        started = time.monotonic()
        count = len(slices)
        self.announce("insert", 0, f" (0 of {count} slices)" if count > 1 else "")

        def on_inserted() -> None:
            with lock:
                inserted.append(time.monotonic())
            changed.set()

        def fill_one(s: Slice) -> int:
            try:
                rows = self.fill_slice(s, slices, indexes, on_inserted)
                with lock:
                    indexed.append(s)
                changed.set()
                return rows
            except BaseException:
                self.control.stop()        # a slice failed: the others are pointless
                changed.set()
                raise

        with ThreadPoolExecutor(max_workers=count, thread_name_prefix=f"build-{self.t.id}") as pool:
            futures = [pool.submit(fill_one, s) for s in slices]
            # progress is reported from this thread, not the pool's: one report per slice inserted or indexed
            said = (0, 0)
            while not all(f.done() for f in futures):
                changed.wait(POLL_SECONDS)
                changed.clear()
                with lock:
                    now = (len(inserted), len(indexed))
                if now == said or self.control.stopping.is_set():
                    continue
                said = now
                if now[0] < count:
                    self.announce("insert", now[0] / count, f" ({now[0]} of {count} slices)")
                else:
                    self.announce("index", 0.9 * now[1] / count,
                                  f" ({now[1]} of {count} slices)" if count > 1 else "")
            wait(futures)
        if any(f.exception() for f in futures):
            raise self.first_error(futures)
        self.announce("index", 0.9, " (the whole table's keys and statistics)")
        self.timings["insert"] = round(max(inserted) - started, 3)
        self.timings["index"] = round(time.monotonic() - max(inserted), 3)
        return sum(f.result() for f in futures)

    def fill_slice(self, s: Slice, slices: list[Slice], indexes: list[LiveIndex], on_inserted) -> int:
        with self.connection(autocommit=False) as conn, conn.cursor() as cur:
            self.execute(cur, *self.plan.slice_session(slices, self.parallelism), self.plan.insert(s))
            rows = cur.rowcount
            on_inserted()
            self.execute(cur, *self.plan.slice_indexes(s, indexes))
            conn.commit()
        return rows

    def first_error(self, futures) -> BaseException:
        errors = [f.exception() for f in futures if f.exception() is not None]
        if self.control.cancelled.is_set():
            return self.cancelled()
        # the slice that failed, not a sibling stopped because of it
        return next((e for e in errors if not isinstance(e, Stopped) and pg_code(e) != "57014"), errors[0])

    # -- derive, check, swap, clean up -------------------------------------------------------

    def derive(self, conn, companion_indexes: dict[str, list[LiveIndex]]) -> None:
        """Build each companion from the build table (keyed and analysed): one transaction each,
        on one core when the build may use only one."""
        for c in self.plan.companions:
            with _transaction(conn) as cur:
                self.execute(cur, *self.plan.derive_session(self.parallelism),
                             *self.plan.derive(c, companion_indexes[c.target]))

    def sources_empty(self, conn) -> bool:
        with conn.cursor() as cur:
            self.execute(cur, self.plan.sources_empty())
            return bool(cur.fetchone()[0])

    def swap(self, conn, indexes: list[LiveIndex], companion_indexes: dict[str, list[LiveIndex]],
             lock_timeout_ms: int, patience: float, rows: int) -> None:
        t = self.t
        deadline = time.monotonic() + patience
        attempts = 0
        recorded = [Statement(*ledger.record("transformation", self.run_ref, t.id, rows_written=rows))
                    ] if self.run_ref is not None else []
        while True:
            attempts += 1
            try:
                with _transaction(conn) as cur:   # one short transaction: the swap and its ledger row
                    self.execute(cur, *self.plan.swap(indexes, lock_timeout_ms, companion_indexes), *recorded)
                return
            except psycopg2.errors.LockNotAvailable:
                if time.monotonic() >= deadline:
                    raise BuildFailed(
                        f"Could not swap in the new {t.qualified_target}: readers kept it busy for "
                        f"{patience:.0f} s ({attempts} attempts); the old table is still serving. "
                        "Try again when the long-running queries have finished.") from None
                if self.control.cancelled.wait(random.uniform(0.05, 0.25)):
                    raise self.cancelled() from None

    def drop_old(self, conn, lock_timeout_ms: int) -> None:
        """Drop the tables the swap replaced, each on its own. The swap has committed, so nothing here
        may fail the run: a reader still on an old table (or a cancel) leaves it for the next build."""
        deadline = time.monotonic() + DROP_PATIENCE_SECONDS
        for table in self.plan.old_tables():
            while True:
                try:
                    with _transaction(conn) as cur:
                        for statement in self.plan.drop_old(table, lock_timeout_ms):
                            cur.execute(statement)
                    break
                except psycopg2.errors.LockNotAvailable:
                    if time.monotonic() < deadline and not self.control.cancelled.is_set():
                        time.sleep(random.uniform(0.05, 0.25))
                        continue
                    reason = "is still in use by a reader"
                except psycopg2.Error as exc:
                    reason = f"could not be dropped ({str(exc).strip()})"
                log.warning("%s.%s %s; the next build of %s drops it", SCHEMA, table, reason, self.t.id)
                break

    def drop_quietly(self, conn, statements: list[str]) -> None:
        """After a failure: drop the build tables (the slices go with theirs); never raise over the real error.

        The connection is first taken out of the build's control, whose waiting thread keeps
        cancelling every statement of a stopping build; a cancel already on its way is retried."""
        self.control.forget(conn)
        for attempt in range(3):
            try:
                if conn.closed:
                    return
                if conn.status != psycopg2.extensions.STATUS_READY:
                    conn.rollback()
                with _transaction(conn) as cur:
                    cur.execute(f"SET LOCAL lock_timeout = '{LEFTOVER_LOCK_TIMEOUT}'")
                    for statement in statements:
                        cur.execute(statement)
                return
            except psycopg2.Error as exc:
                if pg_code(exc) == "57014" and attempt < 2:
                    continue
                log.warning("could not drop the build tables of %s after a failed build (the worker's sweep "
                            "or the next build drops them): %s", self.t.id, exc)
                return

