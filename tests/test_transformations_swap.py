"""Build-then-swap: readers never see an empty table, failures leave the old rows, one run at a time."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest

from handled import heartbeat
from handled.catalog import compare_models
from handled.db import data_db
from handled.models import DATA_MODELS, SCHEMAS, TransformationRun
from handled.transformations import history
from handled.transformations.registry import Transformation, get_transformation
from handled.transformations.service import TransformationFailed, run_transformation
from handled.transformations.swap import BuildBusy, BuildFailed, build_and_swap
from tests.transform_data import add_usps, add_zip, load_delivery_sources, load_zip_sources


def connect(settings):
    conn = psycopg2.connect(dbname=settings.data.dbname, **settings.data.connect_kwargs())
    conn.autocommit = True
    return conn


def matrix_count() -> int:
    return data_db.execute_sql("SELECT count(*) FROM reference.delivery_matrix").fetchone()[0]


def scratch_tables() -> list[str]:
    return [r[0] for r in data_db.execute_sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'reference' AND tablename LIKE '\\_%%'").fetchall()]


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def build_waiting_on_lock(conn) -> int | None:
    with conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'INSERT INTO reference._build_%%'")
        row = cur.fetchone()
    return row[0] if row else None


def test_rebuild_replaces_rows_and_models_still_match_catalog(app, settings):
    load_delivery_sources()
    first = run_transformation("delivery-matrix")
    add_usps("100", "900", pri=2)
    second = run_transformation("delivery-matrix")
    assert second.rows == first.rows + 1 == matrix_count()
    assert scratch_tables() == []
    conn = connect(settings)
    try:
        assert compare_models(conn, DATA_MODELS, SCHEMAS["data"]) == []
        with conn.cursor() as cur:
            cur.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'reference' "
                        "AND tablename = 'delivery_matrix'")
            assert [r[0] for r in cur.fetchall()] == ["delivery_matrix_pkey"]
    finally:
        conn.close()
    run = TransformationRun.get_by_id(second.run_id)
    assert run.status == "succeeded" and run.rows_written == second.rows
    assert set(run.phase_timings) == {"prepare", "insert", "index", "check", "swap"}


def test_reader_in_a_loop_never_sees_an_empty_table_during_rebuilds(app, settings):
    load_delivery_sources()
    old_count = run_transformation("delivery-matrix").rows
    add_usps("100", "900", pri=2)
    seen, stop = [], threading.Event()

    def reader():
        conn = connect(settings)
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("SELECT count(*) FROM reference.delivery_matrix")
                seen.append(cur.fetchone()[0])
        conn.close()

    blocker = connect(settings)
    blocker.autocommit = False
    watcher = connect(settings)
    thread = threading.Thread(target=reader)
    outcome = {}
    build = threading.Thread(target=lambda: outcome.update(r=run_transformation("delivery-matrix")))
    try:
        with blocker.cursor() as cur:  # hold the build in its insert phase while the reader reads
            cur.execute("LOCK TABLE workspace.usps_3d_base_service IN ACCESS EXCLUSIVE MODE")
        thread.start()
        build.start()
        wait_for(lambda: build_waiting_on_lock(watcher), what="the build to wait in its insert phase")
        reads_during_build = len(seen)
        time.sleep(0.3)
        assert len(seen) > reads_during_build    # the live table stayed readable during the build
        blocker.rollback()
        build.join(timeout=30)
        for _ in range(3):
            run_transformation("delivery-matrix")
    finally:
        stop.set()
        blocker.close()
        watcher.close()
        thread.join(timeout=10)
        build.join(timeout=30)
    assert outcome["r"].rows == old_count + 1
    assert seen and min(seen) > 0
    assert set(seen) <= {old_count, old_count + 1}


def test_cancelled_build_leaves_old_rows_serving(app, settings):
    load_delivery_sources()
    old = run_transformation("delivery-matrix").rows
    add_usps("100", "900", pri=2)
    blocker = connect(settings)
    blocker.autocommit = False
    watcher = connect(settings)
    errors = []

    def run():
        try:
            run_transformation("delivery-matrix")
        except TransformationFailed as exc:
            errors.append(str(exc))

    build = threading.Thread(target=run)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE workspace.ups_zones IN ACCESS EXCLUSIVE MODE")
        build.start()
        wait_for(lambda: build_waiting_on_lock(watcher), what="the build to wait in its insert phase")
        with watcher.cursor() as cur:
            cur.execute("SELECT pg_cancel_backend(%s)", (build_waiting_on_lock(watcher),))
        build.join(timeout=30)
    finally:
        blocker.close()
        watcher.close()
        build.join(timeout=30)
    assert errors and "cancelled" in errors[0] and "left unchanged" in errors[0]
    assert matrix_count() == old
    assert scratch_tables() == []
    last = history.last_run("delivery-matrix")
    assert last.status == "failed" and "cancelled" in last.message


def test_swap_waits_for_a_long_reader_then_gives_up_keeping_old_rows(app, settings):
    load_delivery_sources()
    old = run_transformation("delivery-matrix").rows
    add_usps("100", "900", pri=2)
    reader = connect(settings)
    reader.autocommit = False
    with reader.cursor() as cur:  # a long transaction that has read the live table
        cur.execute("SELECT count(*) FROM reference.delivery_matrix")
    try:
        with pytest.raises(BuildFailed, match="old table is still serving"):
            build_and_swap(get_transformation("delivery-matrix"), swap_patience=0.5)
        assert matrix_count() == old and scratch_tables() == []
        threading.Timer(0.4, reader.rollback).start()   # the reader finishes soon: the retry succeeds
        result = build_and_swap(get_transformation("delivery-matrix"), swap_patience=10)
        assert result.rows == old + 1 == matrix_count()
    finally:
        reader.close()


def test_duplicate_keys_and_empty_result_are_refused(app):
    load_zip_sources()
    run_transformation("zip3-reference")
    before = data_db.execute_sql("SELECT count(*) FROM reference.zip3_reference").fetchone()[0]
    duplicated = Transformation(
        id="duplicated", name="dup", target="zip3_reference", source_tables=("workspace.us_zips",),
        source_integrations=(), sql_file="zip3_reference.sql")
    duplicated.__dict__["select_sql"] = (
        "SELECT '999', 1, 1, 'NY', 'X', 0.0, 0.0, 0.0, 0.0, 0.0, 0.0 FROM workspace.us_zips")
    with pytest.raises(Exception) as caught:
        build_and_swap(duplicated)
    assert "23505" == getattr(caught.value.args[0], "pgcode", None) or "duplicate" in str(caught.value)
    empty = Transformation(
        id="empty", name="empty", target="zip3_reference", source_tables=("workspace.us_zips",),
        source_integrations=(), sql_file="zip3_reference.sql")
    empty.__dict__["select_sql"] = (
        "SELECT zip, 1, 1, 'NY', 'X', 0.0, 0.0, 0.0, 0.0, 0.0, 0.0 FROM workspace.us_zips WHERE false")
    with pytest.raises(BuildFailed, match="0 rows although its sources have rows"):
        build_and_swap(empty)
    assert data_db.execute_sql("SELECT count(*) FROM reference.zip3_reference").fetchone()[0] == before
    assert scratch_tables() == []


def test_empty_sources_build_an_empty_table(app):
    outcome = run_transformation("delivery-matrix")
    assert outcome.rows == 0 and matrix_count() == 0


def test_second_run_is_refused_naming_the_run_that_is_going(app):
    with heartbeat.Heartbeat():  # the run below belongs to this live process
        going = history.start_run("delivery-matrix", user_email="lead@example.test")
        with pytest.raises(history.AlreadyRunning) as caught:
            run_transformation("delivery-matrix")
    assert f"run #{going.id}" in str(caught.value) and "lead@example.test" in str(caught.value)
    history.finish_run(going.id, "failed", message="test")


def test_build_in_the_data_database_is_exclusive(app, settings):
    load_delivery_sources()
    holder = connect(settings)
    holder.autocommit = False
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('handled.transformation'), hashtext('delivery-matrix'))")
    try:
        with pytest.raises(BuildBusy, match="already building reference.delivery_matrix"):
            build_and_swap(get_transformation("delivery-matrix"))
    finally:
        holder.rollback()
        holder.close()


def test_runs_of_dead_workers_are_marked_failed(app, redis_client):
    dead_local = TransformationRun.create(transformation="zip3-reference", status="running",
                                          worker=f"{__import__('socket').gethostname()}:999999999")
    silent_remote = TransformationRun.create(transformation="delivery-matrix", status="running",
                                             worker="elsewhere.example:4242")
    failed = history.sweep_dead_runs()
    assert sorted(failed) == sorted([dead_local.id, silent_remote.id])
    dead = TransformationRun.get_by_id(dead_local.id)
    assert dead.status == "failed" and "stopped before it finished" in dead.message
    redis_client.set("handled:runner:elsewhere.example:4343", "1", ex=30)
    alive_remote = TransformationRun.create(transformation="delivery-matrix", status="running",
                                            worker="elsewhere.example:4343")
    assert history.sweep_dead_runs() == []
    assert TransformationRun.get_by_id(alive_remote.id).status == "running"


def test_dependencies_run_first_when_stale_and_list_shows_state(app, runner):
    load_zip_sources()
    load_delivery_sources()
    result = runner.invoke(args=["transformations", "run", "delivery-matrix"])
    assert result.exit_code == 0, result.output
    assert result.output.index("zip3-reference: run #") < result.output.index("delivery-matrix: run #")
    again = runner.invoke(args=["transformations", "run", "delivery-matrix"])
    assert "zip3-reference: run" not in again.output       # up to date: not rebuilt
    listed = runner.invoke(args=["transformations", "list"])
    assert "delivery-matrix" in listed.output and "up to date" in listed.output
    assert "rows: 18" in listed.output
    from handled.models import ImportRun
    from handled.timeutil import utcnow
    ImportRun.create(integration="us-zips", file_name="uszips.csv", file_sha256="x", file_size=1,
                     status="succeeded", finished_at=utcnow())
    listed = runner.invoke(args=["transformations", "list"])
    assert "stale: us-zips was imported since the last build" in listed.output


def test_cli_errors_are_one_sentence(app, runner):
    result = runner.invoke(args=["transformations", "run", "nope"])
    assert result.exit_code == 1 and "There is no transformation 'nope'" in result.output
    result = runner.invoke(args=["transformations", "run"])
    assert result.exit_code == 1 and "--all" in result.output
    add_zip("10001", 1.0, 1.0, "A", "NY", 1)
    result = runner.invoke(args=["transformations", "run", "--all"])
    assert result.exit_code == 0 and "delivery-matrix: run #" in result.output
