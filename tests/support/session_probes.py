"""Helpers for the session cache tests: counting PRIMARY statements (in this process, or in
the SQL an instance process logged, tests/support/instances.py)."""

from __future__ import annotations

from contextlib import contextmanager

from handled.db import primary_db


@contextmanager
def count_primary_statements():
    """Collect the SQL every statement run on the PRIMARY database object."""
    statements: list[str] = []
    database = primary_db._target()

    def hook(event):
        statements.append(event.sql)

    database.query_hooks.append(hook)
    try:
        yield statements
    finally:
        database.query_hooks.remove(hook)


def session_lookups(statements) -> int:
    return sum("config.sessions" in sql and "WITH touched" in sql for sql in statements)


def pending_checks(statements) -> int:
    """Reads of config.pending_invalidations (each process at most once per PENDING_CHECK_INTERVAL)."""
    return sum('"pending_invalidations"' in sql and sql.lstrip().startswith("SELECT") for sql in statements)
