"""Build a reference table beside the live one, check it, swap it in.

Everything happens in ONE transaction on the DATA database:

1. a transaction-scoped advisory lock, so two builds of one table never overlap
   (released by PostgreSQL itself if the process dies);
2. ``CREATE TABLE reference._build_<target> (LIKE <target>)`` without indexes,
   then ``INSERT INTO ... SELECT`` (the transformation's .sql file);
3. the live table's primary key and indexes recreated on the build table under
   ``_build_`` names, then ANALYZE;
4. checks: rows > 0 unless every source is empty (uniqueness of the key is
   enforced by building the primary key);
5. the swap, under a SAVEPOINT with a short ``lock_timeout``: take the live
   table's ACCESS EXCLUSIVE lock, drop it, rename the build table and its
   indexes to the live names; a timeout rolls back to the savepoint, waits and
   tries again, so a long reader never makes everyone else queue behind us.

The build table is a plain (logged) table: an UNLOGGED table would be emptied
by crash recovery after it became the live one, and ``SET LOGGED`` rewrites
all 11M rows again. Because nothing is committed before the swap, a failure,
cancel or killed worker at any point leaves the old table serving and no
scratch table behind. Readers never see the build table (it is invisible until
commit) and wait at most one ``lock_timeout`` plus the rename for the swap.
"""

from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from handled.db import data_db, quiet_queries
from handled.transformations.registry import SCHEMA, Transformation

log = logging.getLogger("handled.transformations")

LOCK_TIMEOUT_MS = 40          # the longest a reader queues behind one swap attempt
SWAP_PATIENCE_SECONDS = 120   # how long to keep retrying the swap before giving up
MAINTENANCE_WORK_MEM = "1GB"  # the 11M-row key sorts in memory (with parallel workers: ~2x faster)
PHASES = ("prepare", "insert", "index", "check", "swap")

Reporter = Callable[[str, int, int], None]


class BuildFailed(Exception):
    """The new table could not be built or swapped in; the live table is unchanged."""


class BuildBusy(BuildFailed):
    """Another process is building the same table in the DATA database."""


@dataclass
class BuildResult:
    rows: int
    sources_empty: bool
    timings: dict = field(default_factory=dict)


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
                   swap_patience: float = SWAP_PATIENCE_SECONDS) -> BuildResult:
    """Rebuild ``t.target`` from its SELECT and swap it in; see the module docstring."""
    timings: dict[str, float] = {}
    build = f"_build_{t.target}"

    def phase(name: str):
        if report:
            report(name, PHASES.index(name), len(PHASES))
        return _Timer(timings, name)

    with quiet_queries(), data_db.atomic():
        with phase("prepare"):
            _lock_build(t)
            data_db.execute_sql("SET LOCAL statement_timeout = 0")
            data_db.execute_sql(f"SET LOCAL maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
            data_db.execute_sql(f"DROP TABLE IF EXISTS {SCHEMA}.{build}")
            data_db.execute_sql(f"CREATE TABLE {SCHEMA}.{build} (LIKE {t.qualified_target} "
                                "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)")
        with phase("insert"):
            rows = data_db.execute_sql(f"INSERT INTO {SCHEMA}.{build} {t.select_sql}").rowcount
        with phase("index"):
            renames = _copy_indexes(t, build)
            data_db.execute_sql(f"ANALYZE {SCHEMA}.{build}")
        with phase("check"):
            sources_empty = _sources_empty(t)
            if rows == 0 and not sources_empty:
                raise BuildFailed(f"{t.id} built 0 rows although its sources have rows; "
                                  f"{t.qualified_target} was left unchanged.")
        with phase("swap"):
            _swap(t, build, renames, lock_timeout_ms, swap_patience)
    if report:
        report("done", len(PHASES), len(PHASES))
    return BuildResult(rows=rows, sources_empty=sources_empty, timings=timings)


class _Timer:
    def __init__(self, timings: dict, name: str):
        self.timings, self.name = timings, name

    def __enter__(self):
        self.started = time.monotonic()

    def __exit__(self, *exc):
        self.timings[self.name] = round(time.monotonic() - self.started, 3)


def _lock_build(t: Transformation) -> None:
    got = data_db.execute_sql(
        "SELECT pg_try_advisory_xact_lock(hashtext('handled.transformation'), hashtext(%s))",
        (t.id,)).fetchone()[0]
    if not got:
        raise BuildBusy(f"Another process is already building {t.qualified_target} for {t.id}; "
                        "wait for it to finish.")


def _sources_empty(t: Transformation) -> bool:
    probes = " AND ".join(f"NOT EXISTS (SELECT 1 FROM {table})" for table in t.source_tables)
    return bool(data_db.execute_sql(f"SELECT {probes}").fetchone()[0])


INDEX_SQL = """
SELECT ic.relname, pg_get_indexdef(ic.oid), con.conname, pg_get_constraintdef(con.oid)
FROM pg_index x
JOIN pg_class ic ON ic.oid = x.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid
                            AND con.contype IN ('p', 'u', 'x')
WHERE x.indrelid = %s::regclass
ORDER BY x.indisprimary DESC, ic.relname
"""
INDEXDEF = re.compile(r"^CREATE (UNIQUE )?INDEX (\S+) ON (ONLY )?(\S+) (USING .*)$", re.S)


def _copy_indexes(t: Transformation, build: str) -> list[tuple[str, str]]:
    """Give the build table the live table's keys and indexes; return (build name, live name) pairs."""
    renames = []
    for index_name, indexdef, conname, condef in data_db.execute_sql(INDEX_SQL, (t.qualified_target,)).fetchall():
        scratch = f"_build_{index_name}"
        if len(scratch) > 63:
            raise BuildFailed(f"index name {index_name} is too long to build beside the live table.")
        if conname:
            # constraint and index share a name; renaming the index later renames both
            data_db.execute_sql(f'ALTER TABLE {SCHEMA}.{build} ADD CONSTRAINT "{scratch}" {condef}')
        else:
            match = INDEXDEF.match(indexdef)
            if not match:
                raise BuildFailed(f"cannot recreate index {index_name} of {t.qualified_target}: {indexdef}")
            unique, _, _, rest = match.groups()
            data_db.execute_sql(f'CREATE {unique or ""}INDEX "{scratch}" ON {SCHEMA}.{build} {rest}')
        renames.append((scratch, index_name))
    return renames


def _swap(t: Transformation, build: str, renames, lock_timeout_ms: int, patience: float) -> None:
    deadline = time.monotonic() + patience
    attempts = 0
    while True:
        attempts += 1
        try:
            with data_db.atomic():  # a savepoint: a lock timeout keeps the finished build
                data_db.execute_sql(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'")
                data_db.execute_sql(f"LOCK TABLE {t.qualified_target} IN ACCESS EXCLUSIVE MODE")
                data_db.execute_sql(f"DROP TABLE {t.qualified_target}")
                data_db.execute_sql(f"ALTER TABLE {SCHEMA}.{build} RENAME TO {t.target}")
                for scratch, live in renames:
                    data_db.execute_sql(f'ALTER INDEX {SCHEMA}."{scratch}" RENAME TO "{live}"')
            return
        except Exception as exc:
            if pg_code(exc) != "55P03":  # lock_not_available
                raise
            if time.monotonic() >= deadline:
                raise BuildFailed(
                    f"Could not swap in the new {t.qualified_target}: readers kept it busy for "
                    f"{patience:.0f} s ({attempts} attempts); the old table is still serving. "
                    "Try again when the long-running queries have finished.") from None
            time.sleep(random.uniform(0.05, 0.25))
