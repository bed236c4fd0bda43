"""Build a reference table beside the live one, check it, swap it in.

1. **lock**: a transaction-scoped advisory lock, held by an open transaction on
   a connection of its own for the whole build, so two builds of one table never
   overlap (PostgreSQL releases it if the process or its connection dies);
2. **prepare**: drop what a killed build may have left (``_build_<target>``,
   ``_old_<target>``) and create ``reference._build_<target>`` like the live
   table. A transformation with a split column (delivery-matrix: origin ZIP3)
   gets a build table partitioned by range of that column, one partition per
   slice, the slices cut so each holds about as many of the sources' values;
3. **insert** and **index**, one connection per slice, side by side:
   ``INSERT INTO <slice> SELECT ...`` (the transformation's .sql file, bounded
   to the slice), then the live table's keys and indexes built on the slice,
   then commit. PostgreSQL runs an INSERT ... SELECT on one core; slices let a
   rebuild use every core the DATA server has. Then the keys and indexes of the
   partitioned build table itself, which only attach the slices' ones (no
   second build), and ANALYZE;
4. **check**: rows > 0 unless every source is empty. The key is unique because
   the primary key was built on every slice and the split column is part of
   it, so no two slices can hold the same key;
5. **swap**: one short transaction under a ``lock_timeout``: take the live
   table's ACCESS EXCLUSIVE lock, rename it to ``_old_<target>``, rename the
   build table and its indexes to the live names, commit. A timeout waits and
   tries again, so a long reader never makes everyone else queue behind us.
   Afterwards, in a transaction of its own, the old table is dropped: new
   queries already resolve the name to the new table, so the drop (which
   unlinks a gigabyte of files) blocks no reader. If a long reader still holds
   the old table, the next build drops it.

Readers never see the build table (it has another name) and wait at most one
``lock_timeout`` plus a few catalog updates for the swap. A failure or cancel at
any point before the swap drops the build tables and leaves the live table
serving; a killed process leaves them for the next build to drop. All scratch
names start with ``_``, which the drift check, the backups and the split/unsplit
copies skip.

The build tables are plain (logged) tables: an UNLOGGED table would be emptied
by crash recovery after it became the live one, and ``SET LOGGED`` rewrites all
11M rows again.
"""

from __future__ import annotations

import logging
import random
import re
import secrets
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from flask import has_app_context

from handled.db import data_db, direct_connection
from handled.settings import default_transform_parallelism
from handled.transformations.registry import SCHEMA, Transformation

log = logging.getLogger("handled.transformations")

LOCK_TIMEOUT_MS = 40          # the longest a reader queues behind one swap attempt
SWAP_PATIENCE_SECONDS = 120   # how long to keep retrying the swap before giving up
DROP_PATIENCE_SECONDS = 5     # how long to try dropping the old table after the swap
LEFTOVER_LOCK_TIMEOUT = "5s"  # waiting for a leftover old table before a build gives up
MAINTENANCE_WORK_MEM_MB = 1024  # shared by the slices: each key sorts in memory
PHASES = ("prepare", "insert", "index", "check", "swap")
NAME_LIMIT = 63               # PostgreSQL's identifier length

Reporter = Callable[[str, int, int], None]


class BuildFailed(Exception):
    """The new table could not be built or swapped in; the live table is unchanged."""


class BuildBusy(BuildFailed):
    """Another process is building the same table in the DATA database."""


class BuildCancelled(BuildFailed):
    """Someone cancelled the build; the live table is unchanged."""


class _Stopped(Exception):
    """A slice was stopped because a sibling failed (never the error a run reports)."""


@dataclass
class BuildResult:
    rows: int
    sources_empty: bool
    timings: dict = field(default_factory=dict)
    slices: int = 1


class BuildControl:
    """Lets another thread cancel a running build: every connection it uses is cancelled."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()   # someone asked: the run fails as cancelled
        self.stopping = threading.Event()    # no statement may start any more (cancel, or a slice failed)
        self._connections: set = set()
        self._lock = threading.Lock()

    def register(self, conn) -> None:
        with self._lock:
            self._connections.add(conn)

    def forget(self, conn) -> None:
        with self._lock:
            self._connections.discard(conn)

    def cancel(self) -> None:
        """Stop the build: cancel what each connection is running and refuse what comes next."""
        self.cancelled.set()
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self.interrupt()

    def interrupt(self) -> None:
        """Cancel the statements running now."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.cancel()
            except psycopg2.Error as exc:  # already closed or never busy
                log.debug("could not cancel a build connection: %s", exc)


@dataclass(frozen=True)
class Slice:
    """One part of a build: the table its rows go into and the split range it covers."""

    table: str                  # bare name in the reference schema
    split_from: str | None = None
    split_to: str | None = None
    split: bool = False         # False: the whole SELECT, no bounds to pass

    @property
    def params(self) -> dict | None:
        return {"split_from": self.split_from, "split_to": self.split_to} if self.split else None


def pg_code(exc: BaseException) -> str | None:
    """SQLSTATE of a psycopg2 error, also when Peewee wrapped it."""
    seen = exc
    while seen is not None:
        code = getattr(seen, "pgcode", None)
        if code:
            return code
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = nested or seen.__cause__ or seen.__context__
    return None


def build_and_swap(t: Transformation, report: Reporter | None = None, *,
                   lock_timeout_ms: int = LOCK_TIMEOUT_MS,
                   swap_patience: float = SWAP_PATIENCE_SECONDS,
                   parallelism: int | None = None,
                   control: BuildControl | None = None) -> BuildResult:
    """Rebuild ``t.target`` from its SELECT and swap it in; see the module docstring."""
    control = control or BuildControl()
    parallelism = parallelism or configured_parallelism()
    timings: dict[str, float] = {}
    build = _Build(t, control)

    def announce(name: str) -> None:
        if report:
            report(name, PHASES.index(name), len(PHASES))

    def phase(name: str):
        announce(name)
        return _Timer(timings, name)

    with build.connection(autocommit=False) as lock_conn:
        _lock_build(lock_conn, t)   # held until lock_conn's transaction ends
        with build.connection() as conn:
            try:
                with phase("prepare"):
                    build.drop_leftovers(conn)
                    slices = build.plan_slices(conn, parallelism)
                    indexes = build.live_indexes(conn)
                    build.create_tables(conn, slices)
                rows = build.fill(slices, indexes, announce, timings)
                with _Timer(timings, "index", add=True):
                    build.finish_indexes(conn, slices, indexes)
                with phase("check"):
                    sources_empty = build.sources_empty(conn)
                    if rows == 0 and not sources_empty:
                        raise BuildFailed(f"{t.id} built 0 rows although its sources have rows; "
                                          f"{t.qualified_target} was left unchanged.")
                with phase("swap"):
                    build.swap(conn, indexes, lock_timeout_ms, swap_patience)
            except BaseException:
                build.drop_quietly(conn, build.build_table)
                raise
            build.drop_old(conn, lock_timeout_ms)
        lock_conn.rollback()
    if report:
        report("done", len(PHASES), len(PHASES))
    return BuildResult(rows=rows, sources_empty=sources_empty, timings=timings, slices=len(slices))


def configured_parallelism() -> int:
    """TRANSFORM_PARALLELISM of the running app; the settings' default outside one."""
    if has_app_context():
        from handled import current_settings
        return current_settings().transform_parallelism
    return default_transform_parallelism()


class _Timer:
    def __init__(self, timings: dict, name: str, add: bool = False):
        self.timings, self.name, self.add = timings, name, add

    def __enter__(self):
        self.started = time.monotonic()

    def __exit__(self, *exc):
        spent = time.monotonic() - self.started
        self.timings[self.name] = round((self.timings.get(self.name, 0) if self.add else 0) + spent, 3)


def _lock_build(conn, t: Transformation) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(hashtext('handled.transformation'), hashtext(%s))", (t.id,))
        if not cur.fetchone()[0]:
            raise BuildBusy(f"Another process is already building {t.qualified_target} for {t.id}; "
                            "wait for it to finish.")


@dataclass(frozen=True)
class _Index:
    """One key or index of the live table, as SQL for a slice and for the build table."""

    live_name: str
    constraint: str | None      # e.g. "PRIMARY KEY (a, b)" when the index backs a constraint
    unique: bool
    method: str                 # "USING btree (a, b)" for a plain index

    @property
    def build_name(self) -> str:
        return f"_build_{self.live_name}"

    @property
    def old_name(self) -> str:
        return f"_old_{self.live_name}"

    def create_on(self, table: str, name: str | None) -> str:
        """SQL creating this index on ``table`` (PostgreSQL picks the name when ``name`` is None)."""
        if self.constraint:
            named = f'CONSTRAINT "{name}" ' if name else ""
            return f"ALTER TABLE {SCHEMA}.{table} ADD {named}{self.constraint}"
        unique = "UNIQUE " if self.unique else ""
        named = f'"{name}" ' if name else ""
        return f"CREATE {unique}INDEX {named}ON {SCHEMA}.{table} {self.method}"


INDEX_SQL = """
SELECT ic.relname, pg_get_indexdef(ic.oid), pg_get_constraintdef(con.oid), x.indisunique
FROM pg_index x
JOIN pg_class ic ON ic.oid = x.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid
                            AND con.contype IN ('p', 'u', 'x')
WHERE x.indrelid = %s::regclass
ORDER BY x.indisprimary DESC, ic.relname
"""
INDEXDEF = re.compile(r"^CREATE (UNIQUE )?INDEX (\S+) ON (ONLY )?(\S+) (USING .*)$", re.S)


class _Build:
    """The names and statements of one build of one transformation."""

    def __init__(self, t: Transformation, control: BuildControl):
        self.t, self.control = t, control
        self.build_table = f"_build_{t.target}"
        self.old_table = f"_old_{t.target}"
        self.generation = secrets.token_hex(3)   # keeps slice names unique across builds
        for name in (self.build_table, self.old_table):
            _check_length(name)

    @contextmanager
    def connection(self, autocommit: bool = True):
        """A DATA connection of the build's own (not from the pool, which the build would
        drain for minutes), cancellable through the build's control."""
        with direct_connection(data_db.config, f"build-{self.t.id}") as conn:
            # PostgreSQL 14+: a killed worker's statements stop within a second instead of
            # running on (a session setting: not through a transaction pooler)
            if conn.server_version >= 140000 and not data_db.config.pgbouncer:
                with conn.cursor() as cur:
                    cur.execute("SET client_connection_check_interval = '1s'")
            conn.autocommit = autocommit
            self.control.register(conn)
            try:
                yield conn
            finally:
                self.control.forget(conn)

    def run(self, cur, statement: str, params=None) -> None:
        if self.control.cancelled.is_set():
            raise BuildCancelled(f"{self.t.id} was cancelled; {self.t.qualified_target} was left unchanged.")
        if self.control.stopping.is_set():
            raise _Stopped()
        cur.execute(statement, params)

    # -- prepare -----------------------------------------------------------------------------

    def drop_leftovers(self, conn) -> None:
        for table in (self.build_table, self.old_table):
            try:
                with _transaction(conn) as cur:
                    self.run(cur, f"SET LOCAL lock_timeout = '{LEFTOVER_LOCK_TIMEOUT}'")
                    self.run(cur, f"DROP TABLE IF EXISTS {SCHEMA}.{table}")
            except psycopg2.errors.LockNotAvailable:
                raise BuildFailed(
                    f"{SCHEMA}.{table}, left by an earlier build, is still in use by another session; "
                    f"{self.t.qualified_target} was left unchanged. Try again when that session has "
                    "finished.") from None

    def plan_slices(self, conn, parallelism: int) -> list[Slice]:
        """One slice without a split column; else up to ``parallelism`` ranges of similar size."""
        t = self.t
        if not t.split_column or parallelism < 1:
            return [Slice(self.build_table)]
        with conn.cursor() as cur:
            self.run(cur, f"SELECT v FROM ({t.split_values_sql}) AS s (v) WHERE v IS NOT NULL ORDER BY 1")
            values = [row[0] for row in cur.fetchall()]
        count = max(1, min(parallelism, len(values)))
        cuts = sorted({values[len(values) * i // count] for i in range(1, count)})
        bounds = [None, *cuts, None]
        slices = []
        for i in range(len(bounds) - 1):
            name = f"_{t.target}_{self.generation}_{i}"
            _check_length(name)
            slices.append(Slice(name, bounds[i], bounds[i + 1], split=True))
        return slices

    def live_indexes(self, conn) -> list[_Index]:
        with conn.cursor() as cur:
            self.run(cur, INDEX_SQL, (self.t.qualified_target,))
            found = cur.fetchall()
        indexes = []
        for name, indexdef, condef, unique in found:
            match = INDEXDEF.match(indexdef)
            if not match:
                raise BuildFailed(f"cannot recreate index {name} of {self.t.qualified_target}: {indexdef}")
            index = _Index(name, condef, bool(unique), match.group(5))
            for scratch in (index.build_name, index.old_name):
                _check_length(scratch)
            indexes.append(index)
        return indexes

    def create_tables(self, conn, slices: list[Slice]) -> None:
        t, like = self.t, "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE"
        with _transaction(conn) as cur:   # all or none of the tables
            partitioned = f" PARTITION BY RANGE ({t.split_column})" if slices[0].split else ""
            self.run(cur, f"CREATE TABLE {SCHEMA}.{self.build_table} (LIKE {t.qualified_target} {like})"
                          f"{partitioned}")
            for s in slices:
                if s.split:
                    low = cur.mogrify("%s", (s.split_from,)).decode() if s.split_from is not None else "MINVALUE"
                    high = cur.mogrify("%s", (s.split_to,)).decode() if s.split_to is not None else "MAXVALUE"
                    self.run(cur, f"CREATE TABLE {SCHEMA}.{s.table} PARTITION OF {SCHEMA}.{self.build_table} "
                                  f"FOR VALUES FROM ({low}) TO ({high})")

    # -- insert and index --------------------------------------------------------------------

    def fill(self, slices: list[Slice], indexes: list[_Index], announce, timings: dict) -> int:
        """Fill and index every slice, side by side; return the rows written.

        Timings: ``insert`` until every slice holds its rows, ``index`` from
        then until every slice has its keys."""
        split, lock, inserted = slices[0].split, threading.Lock(), []
        started = time.monotonic()
        announce("insert")

        def on_inserted() -> None:
            with lock:
                inserted.append(time.monotonic())
                if len(inserted) == len(slices):
                    announce("index")

        memory = max(64, MAINTENANCE_WORK_MEM_MB // len(slices))
        with ThreadPoolExecutor(max_workers=len(slices), thread_name_prefix=f"build-{self.t.id}") as pool:
            futures = [pool.submit(self.fill_slice, s,
                                   [index.create_on(s.table, None if split else index.build_name)
                                    for index in indexes],
                                   memory, len(slices) > 1, on_inserted)
                       for s in slices]
            while True:
                done, pending = wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION)
                if any(f.exception() for f in done):
                    self.control.stop()        # a slice failed: the others are pointless
                if self.control.stopping.is_set():
                    self.control.interrupt()   # again until all are out: one may be between statements
                if not pending:
                    break
            if any(f.exception() for f in futures):
                raise self.first_error(futures)
        timings["insert"] = round(max(inserted) - started, 3)
        timings["index"] = round(time.monotonic() - max(inserted), 3)
        return sum(f.result() for f in futures)

    def fill_slice(self, s: Slice, index_sql: list[str], memory_mb: int, parallel: bool,
                   on_inserted: Callable[[], None]) -> int:
        with self.connection(autocommit=False) as conn, conn.cursor() as cur:
            self.run(cur, "SET LOCAL statement_timeout = 0")
            self.run(cur, f"SET LOCAL maintenance_work_mem = '{memory_mb}MB'")
            if parallel:   # the slices already keep the cores busy
                self.run(cur, "SET LOCAL max_parallel_maintenance_workers = 0")
            self.run(cur, f"INSERT INTO {SCHEMA}.{s.table} {self.t.select_sql}", s.params)
            rows = cur.rowcount
            on_inserted()
            for statement in index_sql:
                self.run(cur, statement)
            conn.commit()
        return rows

    def first_error(self, futures) -> BaseException:
        errors = [f.exception() for f in futures if f.exception() is not None]
        if self.control.cancelled.is_set():
            return BuildCancelled(f"{self.t.id} was cancelled; {self.t.qualified_target} was left unchanged.")
        # the slice that failed, not a sibling stopped because of it
        return next((e for e in errors if not isinstance(e, _Stopped) and pg_code(e) != "57014"), errors[0])

    def finish_indexes(self, conn, slices: list[Slice], indexes: list[_Index]) -> None:
        """Keys on the partitioned build table (attaching the slices' ones), then statistics."""
        with conn.cursor() as cur:
            if slices[0].split:
                for index in indexes:
                    self.run(cur, index.create_on(self.build_table, index.build_name))
            self.run(cur, f"ANALYZE {SCHEMA}.{self.build_table}")

    # -- check, swap, clean up ---------------------------------------------------------------

    def sources_empty(self, conn) -> bool:
        probes = " AND ".join(f"NOT EXISTS (SELECT 1 FROM {table})" for table in self.t.source_tables)
        with conn.cursor() as cur:
            self.run(cur, f"SELECT {probes}")
            return bool(cur.fetchone()[0])

    def swap(self, conn, indexes: list[_Index], lock_timeout_ms: int, patience: float) -> None:
        t = self.t
        deadline = time.monotonic() + patience
        attempts = 0
        while True:
            attempts += 1
            try:
                with _transaction(conn) as cur:   # one short transaction
                    self.run(cur, f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'")
                    self.run(cur, f"LOCK TABLE ONLY {t.qualified_target} IN ACCESS EXCLUSIVE MODE")
                    self.run(cur, f"ALTER TABLE {t.qualified_target} RENAME TO {self.old_table}")
                    for index in indexes:
                        self.run(cur, f'ALTER INDEX {SCHEMA}."{index.live_name}" RENAME TO "{index.old_name}"')
                    self.run(cur, f"ALTER TABLE {SCHEMA}.{self.build_table} RENAME TO {t.target}")
                    for index in indexes:
                        self.run(cur, f'ALTER INDEX {SCHEMA}."{index.build_name}" RENAME TO "{index.live_name}"')
                return
            except psycopg2.errors.LockNotAvailable:
                if time.monotonic() >= deadline:
                    raise BuildFailed(
                        f"Could not swap in the new {t.qualified_target}: readers kept it busy for "
                        f"{patience:.0f} s ({attempts} attempts); the old table is still serving. "
                        "Try again when the long-running queries have finished.") from None
                if self.control.cancelled.wait(random.uniform(0.05, 0.25)):
                    raise BuildCancelled(f"{t.id} was cancelled; {t.qualified_target} was left unchanged.") from None

    def drop_old(self, conn, lock_timeout_ms: int) -> None:
        """Drop the table the swap replaced. The swap has committed, so nothing here may fail
        the run: a reader still on the old table (or a cancel) leaves it for the next build."""
        deadline = time.monotonic() + DROP_PATIENCE_SECONDS
        while True:
            try:
                with _transaction(conn) as cur:
                    cur.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'")
                    cur.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{self.old_table}")
                return
            except psycopg2.errors.LockNotAvailable:
                if time.monotonic() < deadline and not self.control.cancelled.is_set():
                    time.sleep(random.uniform(0.05, 0.25))
                    continue
                reason = "is still in use by a reader"
            except psycopg2.Error as exc:
                reason = f"could not be dropped ({str(exc).strip()})"
            log.warning("%s.%s %s; the next build of %s drops it", SCHEMA, self.old_table, reason, self.t.id)
            return

    def drop_quietly(self, conn, table: str) -> None:
        """After a failure: drop the build table (and its slices); never raise over the real error."""
        try:
            if conn.closed:
                return
            if conn.status != psycopg2.extensions.STATUS_READY:
                conn.rollback()
            with conn.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{table}")
        except psycopg2.Error as exc:
            log.warning("could not drop %s.%s after a failed build (the next build drops it): %s",
                        SCHEMA, table, exc)


@contextmanager
def _transaction(conn):
    """One explicit transaction on an autocommit connection: committed, or rolled back on error."""
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            yield cur
        conn.commit()
    except BaseException:
        if not conn.closed:
            conn.rollback()
        raise
    finally:
        if not conn.closed:
            conn.autocommit = True


def _check_length(name: str) -> None:
    if len(name) > NAME_LIMIT:
        raise BuildFailed(f"{name} is longer than PostgreSQL's {NAME_LIMIT}-character limit; "
                          "use a shorter table or index name.")
