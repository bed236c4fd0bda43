"""Driving a transformation build from a test: catch it waiting on a lock, and cancel it there."""

from __future__ import annotations

import threading

from handled.context import system_context
from handled.transformations.service import TransformationFailed, run_transformation
from tests.support.databases import connect, superuser_config
from tests.support.waiting import wait_until


def build_waiting_on_lock(conn) -> int | None:
    """The backend of this database's build that waits on a lock in its insert phase, if any."""
    with conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database() AND query LIKE 'INSERT INTO reference.%%'")
        row = cur.fetchone()
    return row[0] if row else None


def cancel_a_build_waiting_on_a_lock(settings, transformation_id: str = "delivery-matrix",
                                     locked: str = "workspace.ups_zones") -> list[str]:
    """Run ``transformation_id`` in a thread while ``locked`` is held, cancel its statement once it
    waits there, and return what the run came to: its error's sentence, or why there was none."""
    blocker = connect(settings.data, autocommit=False)
    watcher = connect(superuser_config(settings.data))   # sees the builder's sessions' queries
    outcomes: list[str] = []

    def run() -> None:
        try:
            outcome = run_transformation(system_context(settings), transformation_id)
            outcomes.append(f"not cancelled: the build finished with {outcome.rows} rows")
        except TransformationFailed as exc:
            outcomes.append(str(exc))
        except Exception as exc:   # reported by the caller's assertion, not lost in the thread
            outcomes.append(f"unexpected: {exc!r}")

    build = threading.Thread(target=run)
    try:
        with blocker.cursor() as cur:
            cur.execute(f"LOCK TABLE {locked} IN ACCESS EXCLUSIVE MODE")
        build.start()
        wait_until(lambda: build_waiting_on_lock(watcher), message="the build to wait in its insert phase")
        with watcher.cursor() as cur:
            cur.execute("SELECT pg_cancel_backend(%s)", (build_waiting_on_lock(watcher),))
        build.join(timeout=30)
    finally:
        blocker.close()
        watcher.close()
        build.join(timeout=30)
    return outcomes
