"""Scratch tables no build will finish: the sweep that drops them.

A build makes ``reference._build_<target>`` (and its companions' build tables) and,
at its swap, ``_old_<target>`` (build_plan.py ``scratch_tables``), and drops them
itself, unless it cannot: its process was killed, or DATA stopped answering under
it, so its DROP never reached the server. Such a table
is *abandoned* exactly when no build of its transformation runs, that is when the
transformation's build lock (the advisory lock of ``BuildPlan.lock``) is free. So the
sweep takes that lock the way a build does, drops the tables under it and lets go:
it never drops a table a build is using, and a build starting in that moment waits
for the lock (build_runner retries it for ``LOCK_PATIENCE_SECONDS``) instead of
being told another build runs.

Who sweeps: the job worker when it starts and every few seconds while it waits for
jobs (jobs/worker.py), and every build before it creates its own tables, so a table
left by a failure is gone seconds after DATA answers again.
"""

from __future__ import annotations

import logging

import psycopg2.errors

from handled.db import data_db, direct_connection, transaction_on
from handled.schema.names import SCRATCH_LIKE_PATTERNS
from handled.settings import Settings
from handled.transformations.build_plan import LEFTOVER_LOCK_TIMEOUT, BuildPlan
from handled.transformations.registry import SCHEMA, TRANSFORMATIONS

log = logging.getLogger("handled.transformations")

_SCRATCH_SQL = ("SELECT tablename FROM pg_tables WHERE schemaname = %s AND ("
                + " OR ".join("tablename LIKE %s" for _ in SCRATCH_LIKE_PATTERNS) + ")")


def scratch_tables(cur) -> set[str]:
    """The scratch tables (``_build_*``, ``_old_*``) in the reference schema now."""
    cur.execute(_SCRATCH_SQL, (SCHEMA, *SCRATCH_LIKE_PATTERNS))
    return {row[0] for row in cur.fetchall()}


def drop_abandoned(conn, *, present: set[str] | None = None, skip: str | None = None) -> list[str]:
    """Drop, on the builder's autocommit connection ``conn``, the scratch tables of every
    transformation (but ``skip``) that no build is running; return the tables dropped.

    A table a reader still holds stays for the next sweep (its DROP waits at most
    LEFTOVER_LOCK_TIMEOUT)."""
    if present is None:
        with conn.cursor() as cur:
            present = scratch_tables(cur)
    dropped = []
    for t in TRANSFORMATIONS.values():
        plan = BuildPlan(t)
        tables = [name for name in plan.scratch_tables() if name in present]   # its companions' too
        if t.id == skip or not tables:
            continue
        try:
            with transaction_on(conn) as cur:
                cur.execute(*plan.lock())
                if not cur.fetchone()[0]:
                    continue   # a build of it runs: the tables are its own
                cur.execute(f"SET LOCAL lock_timeout = '{LEFTOVER_LOCK_TIMEOUT}'")
                for table in tables:
                    cur.execute(plan.drop(table))
        except psycopg2.errors.LockNotAvailable:
            log.info("%s.%s is still read by another session; the next sweep drops it", SCHEMA, tables[0])
            continue
        dropped += [f"{SCHEMA}.{table}" for table in tables]
    return dropped


def sweep_abandoned_tables(settings: Settings) -> list[str]:
    """The worker's sweep: look through the pool (any role may read pg_tables), and connect as the
    builder, who owns the tables, only when there is something to drop."""
    cursor = data_db.execute_sql(_SCRATCH_SQL, (SCHEMA, *SCRATCH_LIKE_PATTERNS))
    present = {row[0] for row in cursor.fetchall()}
    if not present:
        return []
    with direct_connection(settings.build_database(), "scratch-sweep") as conn:
        dropped = drop_abandoned(conn, present=present)
    if dropped:
        log.warning("dropped scratch tables that no build will finish: %s", ", ".join(dropped))
    return dropped
