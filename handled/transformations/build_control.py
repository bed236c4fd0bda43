"""Stopping a running build from another thread (build_runner.py's waiting thread, a job's cancel).

``BuildControl`` holds every connection a build uses; cancelling it cancels what each runs
now and makes the build refuse the next statement. ``pg_code`` reads the SQLSTATE that tells a
cancelled statement (57014) or a duplicate key (23505) from other failures.
"""

from __future__ import annotations

import logging
import threading

import psycopg2

log = logging.getLogger("handled.transformations")


class Stopped(Exception):
    """A slice was stopped because a sibling failed (never the error a run reports)."""


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
