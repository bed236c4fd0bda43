"""What one build-and-swap does, as names and SQL text: no connection, no thread.

The runner (build_runner.py) executes these statements; keeping them here lets a
test read every name and every statement without a database.

- The build table is ``reference._build_<target>`` and, at the swap, the live one
  becomes ``reference._old_<target>`` (handled.schema.names: the only scratch
  names, which drift checks, backups and test cleanups skip or drop).
- A transformation with a split column is built as a table partitioned by range
  of that column, one partition ("slice") per range. Slices become the live
  table's partitions at the swap, so they are named ``<target>__p<gen>_<i>``:
  no scratch prefix matches a live partition, and ``<gen>`` (random per build)
  keeps a new build's slices apart from the live ones.
- Slice bounds are cut from the sorted split values so that each slice holds
  about as many of them.
- Each companion of the transformation (registry.Companion) gets its own
  ``_build_<companion>``, filled from the build table once its keys are built
  (the *derive* phase), and is swapped in and dropped together with it. The build
  table and its companions carry one comment, ``handled build <gen>``, so a
  reader can tell that a companion describes the live table beside it
  (``current_together``).
- A build uses at most ``parallelism`` cores of the DATA server: its slices,
  and PostgreSQL's parallel workers only when slices leave cores unused.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import NamedTuple

from handled.errors import Conflict, HandledError
from handled.schema.names import build_name, old_name
from handled.transformations.registry import SCHEMA, Companion, Transformation

PHASES = ("prepare", "insert", "index", "derive", "check", "swap")
# Where each phase starts and ends on a progress scale of PROGRESS_TOTAL, by what it
# costs in a real rebuild: insert and index are most of it. Inside insert and index
# the position moves with the slices done (see progress_point).
PROGRESS_TOTAL = 1000
PHASE_SPANS = {"prepare": (0, 40), "insert": (40, 600), "index": (600, 900), "derive": (900, 950),
               "check": (950, 960), "swap": (960, 1000), "done": (1000, 1000)}
NAME_LIMIT = 63               # PostgreSQL's identifier length
LEFTOVER_LOCK_TIMEOUT = "5s"  # waiting for a leftover old table before a build gives up
MAINTENANCE_WORK_MEM_MB = 1024  # shared by the slices: each key sorts in memory
DERIVE_WORK_MEM_MB = 128        # a companion's aggregate (x2 for hashing): ~810k groups in memory
MARK = "handled build {generation}"   # the comment a build table and its companions share
LIKE_OPTIONS = "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE"


class BuildFailed(HandledError):
    """The new table could not be built or swapped in; the live table is unchanged."""


class BuildBusy(BuildFailed, Conflict):
    """Another process is building the same table in the DATA database."""


class BuildCancelled(BuildFailed):
    """Someone cancelled the build; the live table is unchanged."""


class Statement(NamedTuple):
    sql: str
    params: tuple | dict | None = None


def check_length(name: str) -> str:
    if len(name) > NAME_LIMIT:
        raise BuildFailed(f"{name} is longer than PostgreSQL's {NAME_LIMIT}-character limit; "
                          "use a shorter table or index name.")
    return name


def partition_name(target: str, generation: str, number: int) -> str:
    """A slice's name: a live partition after the swap, so never a scratch name."""
    return check_length(f"{target}__p{generation}_{number}")


def progress_point(phase: str, fraction: float = 0.0) -> int:
    """How far (out of PROGRESS_TOTAL) a build is when ``fraction`` of ``phase`` is done."""
    start, end = PHASE_SPANS.get(phase, (0, 0))
    return start + round((end - start) * min(1.0, max(0.0, fraction)))


def slice_bounds(values: list, parallelism: int) -> list[tuple]:
    """Up to ``parallelism`` half-open ranges [from, to) over sorted ``values``, each
    holding about as many of them; None is an open end."""
    count = max(1, min(parallelism, len(values)))
    cuts = sorted({values[len(values) * i // count] for i in range(1, count)})
    bounds = [None, *cuts, None]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


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


@dataclass(frozen=True)
class CompanionBuild:
    """One companion of a build: the table it is built in and the name its live table gets at the swap."""

    companion: Companion
    build_table: str
    old_table: str

    @property
    def target(self) -> str:
        return self.companion.target


@dataclass(frozen=True)
class LiveIndex:
    """One key or index of the live table, as SQL for a slice and for the build table."""

    live_name: str
    constraint: str | None      # e.g. "PRIMARY KEY (a, b)" when the index backs a constraint
    unique: bool
    method: str                 # "USING btree (a, b)" for a plain index

    @property
    def build_name(self) -> str:
        return build_name(self.live_name)

    @property
    def old_name(self) -> str:
        return old_name(self.live_name)

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


def parse_index(t: Transformation | Companion, name: str, indexdef: str, condef: str | None,
                unique: bool) -> LiveIndex:
    """One row of INDEX_SQL (for ``t``'s live table) as a LiveIndex whose scratch names fit PostgreSQL's limit."""
    match = INDEXDEF.match(indexdef)
    if not match:
        raise BuildFailed(f"cannot recreate index {name} of {t.qualified_target}: {indexdef}")
    index = LiveIndex(name, condef, bool(unique), match.group(5))
    check_length(index.build_name)
    check_length(index.old_name)
    return index


class BuildPlan:
    """The names and statements of one build of one transformation."""

    def __init__(self, t: Transformation, generation: str | None = None):
        self.t = t
        self.build_table = check_length(build_name(t.target))
        self.old_table = check_length(old_name(t.target))
        self.generation = generation or secrets.token_hex(3)   # keeps slice names unique across builds
        self.companions = [CompanionBuild(c, check_length(build_name(c.target)), check_length(old_name(c.target)))
                           for c in t.companions]
        self.mark = MARK.format(generation=self.generation)

    def scratch_tables(self) -> list[str]:
        """Every table this build creates or leaves: build and old tables, its own and its companions'."""
        return [self.build_table, self.old_table,
                *(name for c in self.companions for name in (c.build_table, c.old_table))]

    # -- prepare -----------------------------------------------------------------------------

    def lock(self) -> Statement:
        """A transaction-scoped advisory lock: one build of a transformation at a time."""
        return Statement("SELECT pg_try_advisory_xact_lock(hashtext('handled.transformation'), hashtext(%s))",
                         (self.t.id,))

    def drop_leftover(self, table: str) -> list[str]:
        return [f"SET LOCAL lock_timeout = '{LEFTOVER_LOCK_TIMEOUT}'", self.drop(table)]

    def split_values(self) -> str | None:
        """The SELECT of the sorted split values, or None when the build is not sliced."""
        if not self.t.split_column:
            return None
        return f"SELECT v FROM ({self.t.split_values_sql}) AS s (v) WHERE v IS NOT NULL ORDER BY 1"

    def slices(self, values: list | None, parallelism: int) -> list[Slice]:
        """One slice without a split column; else up to ``parallelism`` ranges of similar size."""
        if values is None or not self.t.split_column or parallelism < 1:
            return [Slice(self.build_table)]
        return [Slice(partition_name(self.t.target, self.generation, i), low, high, split=True)
                for i, (low, high) in enumerate(slice_bounds(values, parallelism))]

    def create_tables(self, slices: list[Slice]) -> list[Statement]:
        """The build table like the live one (partitioned when sliced), then each slice, then each
        companion's build table; with companions, the comment that ties them together."""
        t = self.t
        partitioned = f" PARTITION BY RANGE ({t.split_column})" if slices[0].split else ""
        statements = [Statement(f"CREATE TABLE {SCHEMA}.{self.build_table} "
                                f"(LIKE {t.qualified_target} {LIKE_OPTIONS}){partitioned}")]
        for s in slices:
            if s.split:
                low = "%s" if s.split_from is not None else "MINVALUE"
                high = "%s" if s.split_to is not None else "MAXVALUE"
                params = tuple(v for v in (s.split_from, s.split_to) if v is not None) or None
                statements.append(Statement(f"CREATE TABLE {SCHEMA}.{s.table} PARTITION OF {SCHEMA}."
                                            f"{self.build_table} FOR VALUES FROM ({low}) TO ({high})", params))
        for c in self.companions:
            statements.append(Statement(f"CREATE TABLE {SCHEMA}.{c.build_table} "
                                        f"(LIKE {c.companion.qualified_target} {LIKE_OPTIONS})"))
        if self.companions:
            statements += [Statement(f"COMMENT ON TABLE {SCHEMA}.{table} IS %s", (self.mark,))
                           for table in (self.build_table, *(c.build_table for c in self.companions))]
        return statements

    # -- insert and index --------------------------------------------------------------------

    def slice_session(self, slices: list[Slice], parallelism: int) -> list[str]:
        """Session settings of a slice's transaction: the memory is shared by the slices, and
        the key is built by this backend alone once the slices take the cores the build may use."""
        memory = max(64, MAINTENANCE_WORK_MEM_MB // len(slices))
        statements = ["SET LOCAL statement_timeout = 0", f"SET LOCAL maintenance_work_mem = '{memory}MB'"]
        if len(slices) >= parallelism:
            statements.append("SET LOCAL max_parallel_maintenance_workers = 0")
        return statements

    def insert(self, s: Slice) -> Statement:
        return Statement(f"INSERT INTO {SCHEMA}.{s.table} {self.t.select_sql}", s.params)

    def slice_indexes(self, s: Slice, indexes: list[LiveIndex]) -> list[str]:
        """Keys of one slice: named like the build's when unsliced, else named by PostgreSQL."""
        return [index.create_on(s.table, None if s.split else index.build_name) for index in indexes]

    def finish_indexes(self, slices: list[Slice], indexes: list[LiveIndex]) -> list[str]:
        """Keys on the partitioned build table (attaching the slices' ones), then statistics."""
        keys = [index.create_on(self.build_table, index.build_name) for index in indexes] if slices[0].split else []
        return [*keys, f"ANALYZE {SCHEMA}.{self.build_table}"]

    # -- derive: the companions, from the build table ------------------------------------------

    def derive_session(self, parallelism: int) -> list[str]:
        """Session settings of the derive transaction: memory for the aggregate, no JIT (compiling
        took ~0.5 s of a ~5 s derive and saved nothing); one core when the build may use only one."""
        statements = ["SET LOCAL statement_timeout = 0", f"SET LOCAL work_mem = '{DERIVE_WORK_MEM_MB}MB'",
                      f"SET LOCAL maintenance_work_mem = '{MAINTENANCE_WORK_MEM_MB}MB'", "SET LOCAL jit = off"]
        if parallelism <= 1:
            statements += ["SET LOCAL max_parallel_workers_per_gather = 0",
                           "SET LOCAL max_parallel_maintenance_workers = 0"]
        return statements

    def derive(self, c: CompanionBuild, indexes: list[LiveIndex]) -> list[str]:
        """Fill a companion's build table from the build table, then its keys and statistics."""
        return [f"INSERT INTO {SCHEMA}.{c.build_table} {c.companion.render_select(self.build_table)}",
                *(index.create_on(c.build_table, index.build_name) for index in indexes),
                f"ANALYZE {SCHEMA}.{c.build_table}"]

    # -- check, swap, clean up ---------------------------------------------------------------

    def sources_empty(self) -> str:
        probes = " AND ".join(f"NOT EXISTS (SELECT 1 FROM {table})" for table in self.t.source_tables)
        return f"SELECT {probes}"

    def swap(self, indexes: list[LiveIndex], lock_timeout_ms: int,
             companion_indexes: dict[str, list[LiveIndex]] | None = None) -> list[str]:
        """One short transaction: the live table, its companions and their indexes become old,
        the build ones live (``companion_indexes``: each companion's, by its target)."""
        tables = [(self.t.target, self.build_table, self.old_table, indexes)]
        tables += [(c.target, c.build_table, c.old_table, (companion_indexes or {}).get(c.target, []))
                   for c in self.companions]
        statements = [f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'"]
        statements += [f"LOCK TABLE ONLY {SCHEMA}.{target} IN ACCESS EXCLUSIVE MODE" for target, *_ in tables]
        for target, build, old, live_indexes in tables:
            statements += [f"ALTER TABLE {SCHEMA}.{target} RENAME TO {old}",
                           *(f'ALTER INDEX {SCHEMA}."{i.live_name}" RENAME TO "{i.old_name}"' for i in live_indexes),
                           f"ALTER TABLE {SCHEMA}.{build} RENAME TO {target}",
                           *(f'ALTER INDEX {SCHEMA}."{i.build_name}" RENAME TO "{i.live_name}"' for i in live_indexes)]
        return statements

    def old_tables(self) -> list[str]:
        """What the live tables are called after the swap: the transformation's, then its companions'."""
        return [self.old_table, *(c.old_table for c in self.companions)]

    def drop_old(self, table: str, lock_timeout_ms: int) -> list[str]:
        """One old table's drop (a transaction of its own: a reader on one keeps no other)."""
        return [f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'", self.drop(table)]

    def drop_builds(self) -> list[str]:
        """After a failure: the build table (and its slices) and the companions' build tables."""
        return [self.drop(self.build_table), *(self.drop(c.build_table) for c in self.companions)]

    def drop(self, table: str) -> str:
        """Dropping a partitioned table drops its slices too."""
        return f"DROP TABLE IF EXISTS {SCHEMA}.{table}"


def current_together(t: Transformation, companion: Companion) -> Statement:
    """A SELECT of one boolean: true when the live ``companion`` was swapped in with ``t``'s live table
    (both carry the same build's comment); false when either is missing or they come from different
    builds (a matrix built before the companion existed, rows written by hand)."""
    return Statement("SELECT coalesce(obj_description(to_regclass(%s), 'pg_class') "
                     "= obj_description(to_regclass(%s), 'pg_class'), false)",
                     (t.qualified_target, companion.qualified_target))
