"""Builds that lose DATA: one log line, a run that says why, and scratch tables no build will
finish (transformations/leftovers.py) swept, never a running build's.

bench/faults.py (data-stop-rebuild, data-stop-export) left reference._build_delivery_matrix
behind: the build failed because DATA went away, so its DROP never reached the server, and
nothing dropped the table once DATA was back; and the failure was logged as a bug.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import pytest

from handled.context import system_context
from handled.transformations import history
from handled.transformations.build_runner import build_and_swap
from handled.transformations.leftovers import sweep_abandoned_tables
from handled.transformations.registry import get_transformation
from handled.transformations.service import TransformationFailed, run_transformation
from tests.support.databases import connect
from tests.support.reference_data import load_delivery_sources, load_zip_sources
from tests.support.waiting import wait_until
from tests.support.workers import start_worker, worker_log


def leave_tables(settings, *names: str) -> None:
    """What a build that died (or lost DATA) leaves: its tables, owned by the builder."""
    with connect(settings.build_database()) as conn, conn.cursor() as cur:
        for name in names:
            live = name.removeprefix("_build_").removeprefix("_old_")
            cur.execute(f"CREATE TABLE reference.{name} (LIKE reference.{live})")


def scratch(settings) -> list[str]:
    with connect(settings.data) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'reference' "
                    "AND (tablename LIKE '\\_build\\_%' OR tablename LIKE '\\_old\\_%') ORDER BY 1")
        return [row[0] for row in cur.fetchall()]


def hold_build_lock(settings, transformation_id: str):
    """A build of ``transformation_id`` running elsewhere, as far as its advisory lock tells."""
    holder = connect(settings.data, autocommit=False)
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('handled.transformation'), hashtext(%s))",
                    (transformation_id,))
    return holder


def test_the_sweep_drops_abandoned_tables_and_leaves_a_running_builds(app, settings):
    leave_tables(settings, "_build_zip3_reference", "_build_delivery_matrix", "_old_delivery_matrix",
                 "_build_ground_days")   # the last: delivery-matrix's companion
    building = hold_build_lock(settings, "delivery-matrix")
    try:
        assert sweep_abandoned_tables(settings) == ["reference._build_zip3_reference"]
        assert scratch(settings) == ["_build_delivery_matrix", "_build_ground_days", "_old_delivery_matrix"]
    finally:
        building.rollback()
        building.close()
    assert sorted(sweep_abandoned_tables(settings)) == ["reference._build_delivery_matrix",
                                                        "reference._build_ground_days",
                                                        "reference._old_delivery_matrix"]
    assert scratch(settings) == [] and sweep_abandoned_tables(settings) == []


def test_a_build_drops_what_other_transformations_left(app, settings):
    load_zip_sources()
    leave_tables(settings, "_build_delivery_matrix")
    build_and_swap(get_transformation("zip3-reference"), settings, parallelism=1)
    assert scratch(settings) == []


def test_a_build_waits_for_a_sweep_holding_its_lock_for_a_moment(app, settings):
    """The sweep holds a transformation's build lock while it drops; a build starting then is not
    told that another build runs."""
    load_zip_sources()
    sweep = hold_build_lock(settings, "zip3-reference")
    released = threading.Timer(0.3, sweep.rollback)
    released.start()
    try:
        result = build_and_swap(get_transformation("zip3-reference"), settings, parallelism=1)
    finally:
        released.join()
        sweep.close()
    assert result.rows > 0


def test_an_idle_job_worker_drops_tables_left_after_it_started(app, settings, tmp_path):
    worker = start_worker(settings, tmp_path)
    try:
        wait_until(lambda: "Listening on" in worker_log(tmp_path), message="the worker to listen")
        # left after the worker's start-up sweep: only its sweeps while idle can see it
        leave_tables(settings, "_build_delivery_matrix")
        wait_until(lambda: scratch(settings) == [], timeout=30, message="the worker to drop the build table")
        assert worker.poll() is None
    finally:
        worker.kill()
        worker.wait(timeout=30)
    log = worker_log(tmp_path)
    assert "reference._build_delivery_matrix" in log and "Traceback" not in log


def test_a_build_whose_connection_is_lost_fails_with_its_reason_in_one_log_line(app, settings, caplog):
    load_delivery_sources()
    run_transformation(system_context(settings), "zip3-reference")
    blocker = connect(settings.data.dbname, autocommit=False)   # the superuser: locks, ends backends
    with blocker.cursor() as cur:   # the build's insert waits on its source
        cur.execute("LOCK TABLE workspace.usps_3d_base_service IN ACCESS EXCLUSIVE MODE")

    def end_a_waiting_slice():
        def ended():
            with contextlib.closing(connect(settings.data.dbname)) as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND datname = current_database() AND query LIKE 'INSERT INTO reference.%%'")
                return cur.fetchall()
        wait_until(ended, message="a slice to wait for the locked source")

    ender = threading.Thread(target=end_a_waiting_slice)
    ender.start()
    try:
        with caplog.at_level(logging.WARNING, logger="handled"), pytest.raises(TransformationFailed) as raised:
            run_transformation(system_context(settings), "delivery-matrix")
    finally:
        ender.join()
        blocker.rollback()
        blocker.close()
    assert "delivery-matrix failed: a database stopped answering" in str(raised.value)
    assert history.last_run("delivery-matrix").message == str(raised.value)
    assert "transformation delivery-matrix stopped: a database stopped answering" in caplog.text
    assert not [r for r in caplog.records if r.exc_info], "an outage is logged in one line, not a traceback"
    assert scratch(settings) == []   # its other connections still answered: it dropped its tables
