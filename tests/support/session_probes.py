"""Helpers for the session cache tests: query counting, two instances, the race seam."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from handled.auth import sessions
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


@contextmanager
def change_between_read_and_cache_write(change):
    """Run ``change()`` in another thread (its own connection) right after the next
    PRIMARY session lookup and before that request writes the cache."""
    fired = []

    def hook(token_hash, entry):
        if fired:
            return
        fired.append(entry)
        errors = []

        def run():
            try:
                change()
            except Exception as exc:  # surfaced in the test below
                errors.append(exc)
            finally:
                primary_db.close()
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)
        if errors:
            raise errors[0]

    sessions.after_primary_lookup.append(hook)
    try:
        yield fired
    finally:
        sessions.after_primary_lookup.remove(hook)
