"""Build-then-swap: readers never see an empty table, failures leave the old rows, one run at a time."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import psycopg2
import psycopg2.errors
import pytest

from handled import heartbeat
from handled.db import data_db
from handled.models import DATA_MODELS, SCHEMAS, TransformationRun
from handled.schema.names import is_scratch
from handled.schema.catalog import compare_models
from handled.transformations import history
from handled.transformations.registry import Transformation, get_transformation
from handled.context import system_context
from handled.transformations.service import TransformationFailed, run_transformation
from handled.transformations.build_plan import BuildBusy, BuildCancelled, BuildFailed
from handled.transformations.build_control import BuildControl
from handled.transformations.build_runner import build_and_swap
from tests.support.builds import build_waiting_on_lock, cancel_a_build_waiting_on_a_lock
from tests.support.databases import connect, superuser_config
from tests.support.reference_data import add_usps, add_zip, build_backends, load_delivery_sources, load_zip_sources
from tests.support.waiting import wait_until


def matrix_count() -> int:
    return data_db.execute_sql("SELECT count(*) FROM reference.delivery_matrix").fetchone()[0]


def scratch_tables() -> list[str]:
    """Build or old tables left in reference, and their slices (a live table's own partitions are not scratch)."""
    rows = data_db.execute_sql(
        "SELECT c.relname, parent.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class parent ON parent.oid = i.inhparent "
        "WHERE n.nspname = 'reference' AND c.relkind IN ('r', 'p')").fetchall()
    return [name for name, parent in rows if is_scratch(parent or name)]


def test_rebuild_replaces_rows_and_models_still_match_catalog(app, settings):
    load_delivery_sources()
    first = run_transformation(system_context(settings), "delivery-matrix")
    add_usps("100", "900", pri=2)
    second = run_transformation(system_context(settings), "delivery-matrix")
    assert second.rows == first.rows + 1 == matrix_count()
    assert scratch_tables() == []
    conn = connect(settings.data)
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
    assert set(run.phase_timings) == {"prepare", "insert", "index", "derive", "check", "swap"}


def test_reader_in_a_loop_never_sees_an_empty_table_during_rebuilds(app, settings):
    load_delivery_sources()
    old_count = run_transformation(system_context(settings), "delivery-matrix").rows
    add_usps("100", "900", pri=2)
    seen, stop = [], threading.Event()

    def reader():
        conn = connect(settings.data)
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("SELECT count(*) FROM reference.delivery_matrix")
                seen.append(cur.fetchone()[0])
        conn.close()

    blocker = connect(settings.data)
    blocker.autocommit = False
    watcher = connect(superuser_config(settings.data))   # sees the builder's sessions' queries
    thread = threading.Thread(target=reader)
    outcome = {}
    build = threading.Thread(target=lambda: outcome.update(r=run_transformation(system_context(settings), "delivery-matrix")))
    try:
        with blocker.cursor() as cur:  # hold the build in its insert phase while the reader reads
            cur.execute("LOCK TABLE workspace.usps_3d_base_service IN ACCESS EXCLUSIVE MODE")
        thread.start()
        build.start()
        wait_until(lambda: build_waiting_on_lock(watcher), message="the build to wait in its insert phase")
        reads_during_build = len(seen)
        wait_until(lambda: len(seen) > reads_during_build,   # the live table stayed readable during the build
                   message="the reader to read while the build waits")
        blocker.rollback()
        build.join(timeout=30)
        for _ in range(3):
            run_transformation(system_context(settings), "delivery-matrix")
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
    old = run_transformation(system_context(settings), "delivery-matrix").rows
    add_usps("100", "900", pri=2)
    errors = cancel_a_build_waiting_on_a_lock(settings)
    assert errors and "cancelled" in errors[0] and "left unchanged" in errors[0], errors
    assert matrix_count() == old
    assert scratch_tables() == []
    last = history.last_run("delivery-matrix")
    assert last.status == "failed" and "cancelled" in last.message


def test_swap_waits_for_a_long_reader_then_gives_up_keeping_old_rows(app, settings):
    load_delivery_sources()
    old = run_transformation(system_context(settings), "delivery-matrix").rows
    add_usps("100", "900", pri=2)
    reader = connect(settings.data)
    reader.autocommit = False
    with reader.cursor() as cur:  # a long transaction that has read the live table
        cur.execute("SELECT count(*) FROM reference.delivery_matrix")
    try:
        with pytest.raises(BuildFailed, match="old table is still serving"):
            build_and_swap(get_transformation("delivery-matrix"), settings, parallelism=settings.transform_parallelism, swap_patience=0.5)
        assert matrix_count() == old and scratch_tables() == []
        threading.Timer(0.4, reader.rollback).start()   # the reader finishes soon: the retry succeeds
        result = build_and_swap(get_transformation("delivery-matrix"), settings, parallelism=settings.transform_parallelism, swap_patience=10)
        assert result.rows == old + 1 == matrix_count()
    finally:
        reader.close()


def test_duplicate_keys_and_empty_result_are_refused(app, settings):
    load_zip_sources()
    run_transformation(system_context(settings), "zip3-reference")
    before = data_db.execute_sql("SELECT count(*) FROM reference.zip3_reference").fetchone()[0]
    duplicated = Transformation(
        id="duplicated", name="dup", target="zip3_reference", source_tables=("workspace.us_zips",),
        source_integrations=(), sql_file="zip3_reference.sql")
    duplicated.__dict__["select_sql"] = (
        "SELECT '999', 1, 1, 'NY', 'X', 0.0, 0.0, 0.0, 0.0, 0.0, 0.0 FROM workspace.us_zips")
    with pytest.raises(Exception) as caught:
        build_and_swap(duplicated, settings, parallelism=settings.transform_parallelism)
    assert "23505" == getattr(caught.value.args[0], "pgcode", None) or "duplicate" in str(caught.value)
    empty = Transformation(
        id="empty", name="empty", target="zip3_reference", source_tables=("workspace.us_zips",),
        source_integrations=(), sql_file="zip3_reference.sql")
    empty.__dict__["select_sql"] = (
        "SELECT zip, 1, 1, 'NY', 'X', 0.0, 0.0, 0.0, 0.0, 0.0, 0.0 FROM workspace.us_zips WHERE false")
    with pytest.raises(BuildFailed, match="0 rows although its sources have rows"):
        build_and_swap(empty, settings, parallelism=settings.transform_parallelism)
    assert data_db.execute_sql("SELECT count(*) FROM reference.zip3_reference").fetchone()[0] == before
    assert scratch_tables() == []


def test_empty_sources_build_an_empty_table(app, settings):
    outcome = run_transformation(system_context(settings), "delivery-matrix")
    assert outcome.rows == 0 and matrix_count() == 0


def test_second_run_is_refused_naming_the_run_that_is_going(app, settings):
    with heartbeat.Heartbeat():  # the run below belongs to this live process
        going = history.start_run("delivery-matrix", user_email="lead@example.test")
        with pytest.raises(history.AlreadyRunning) as caught:
            run_transformation(system_context(settings), "delivery-matrix")
    assert f"run #{going.id}" in str(caught.value) and "lead@example.test" in str(caught.value)
    history.finish_run(going.id, "failed", message="test")


def hold_the_build_lock(settings):
    """Another process's build of delivery-matrix, as far as the advisory lock can tell."""
    holder = connect(settings.data)
    holder.autocommit = False
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('handled.transformation'), hashtext('delivery-matrix'))")
    return holder


def test_build_in_the_data_database_is_exclusive(app, settings):
    load_delivery_sources()
    holder = hold_the_build_lock(settings)
    try:
        with pytest.raises(BuildBusy, match="already building reference.delivery_matrix"):
            build_and_swap(get_transformation("delivery-matrix"), settings, parallelism=settings.transform_parallelism)
    finally:
        holder.rollback()
        holder.close()


def test_a_busy_build_fails_the_run_with_the_conflict_status(app, settings):
    load_delivery_sources()
    holder = hold_the_build_lock(settings)
    try:
        with pytest.raises(TransformationFailed, match="already building reference.delivery_matrix") as caught:
            run_transformation(system_context(settings), "delivery-matrix")
    finally:
        holder.rollback()
        holder.close()
    assert (caught.value.status, caught.value.exit_code) == (409, BuildBusy.exit_code)
    last = history.last_run("delivery-matrix")
    assert last.status == "failed" and str(caught.value) == last.message


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


# --- slices: delivery-matrix is built by origin range on several connections at once ---------

def parallelism(settings, slices: int):
    """The settings with TRANSFORM_PARALLELISM ``slices``."""
    return replace(settings, transform_parallelism=slices)


def load_more_origins() -> None:
    """The known-answer rows of origin 100 again for origins 050 and 900 (outside every
    ZIP3 of zip3_reference: the open ends of the ranges) and 200 and 300."""
    for origin in ("050", "200", "300", "900"):
        data_db.execute_sql(
            "INSERT INTO workspace.usps_3d_base_service SELECT %s, dest_zip3, pri_days, gal_days, mkt_days,"
            " per_days, pkg_days, fcm_days, gah_days, pfc_days FROM workspace.usps_3d_base_service"
            " WHERE origin_zip3 = '100'", (origin,))
        data_db.execute_sql(
            "INSERT INTO workspace.ups_zones SELECT %s, dest_zip3, ground, three_day_select, second_day_air,"
            " second_day_air_am, next_day_air_saver, next_day_air FROM workspace.ups_zones"
            " WHERE origin_zip3 = '100'", (origin,))
        data_db.execute_sql(
            "INSERT INTO workspace.ups_ground_service_zip5 SELECT %s || right(origin_zip, 2), dest_zip,"
            " dest_state, transit_days FROM workspace.ups_ground_service_zip5 WHERE origin_zip LIKE '100%%'",
            (origin,))


def build_with_five_origins(settings) -> int:
    """Sources for five origins, zip3-reference (where slices are cut) and a first matrix; its rows."""
    load_zip_sources()
    load_delivery_sources()
    load_more_origins()
    run_transformation(system_context(settings), "zip3-reference")
    return run_transformation(system_context(settings), "delivery-matrix").rows


def matrix_rows() -> set:
    return set(data_db.execute_sql("SELECT * FROM reference.delivery_matrix").fetchall())


def live_partitions() -> list[tuple[str, str]]:
    return data_db.execute_sql(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'reference.delivery_matrix'::regclass "
        "ORDER BY c.relname").fetchall()   # <target>__p<build>_<slice number>


def test_slices_build_the_same_rows_as_one_build(app, settings):
    load_zip_sources()
    load_delivery_sources()
    load_more_origins()
    run_transformation(system_context(settings), "zip3-reference")       # ZIP3s 100..400: where the slices are cut
    one = run_transformation(system_context(parallelism(settings, 1)), "delivery-matrix")
    serial = matrix_rows()
    assert len(live_partitions()) == 1
    three = run_transformation(system_context(parallelism(settings, 3)), "delivery-matrix")
    assert one.rows == three.rows == len(serial) == 5 * 18
    assert matrix_rows() == serial
    partitions = live_partitions()
    assert [bound for _, bound in partitions] == [
        "FOR VALUES FROM (MINVALUE) TO ('200')", "FOR VALUES FROM ('200') TO ('300')",
        "FOR VALUES FROM ('300') TO (MAXVALUE)"]
    origins = {name: {r[0] for r in data_db.execute_sql(f"SELECT DISTINCT origin_zip3 FROM reference.{name}")}
               for name, _ in partitions}
    assert sorted(map(sorted, origins.values())) == [["050", "100"], ["200"], ["300", "900"]]
    assert scratch_tables() == []
    conn = connect(settings.data)
    try:
        assert compare_models(conn, DATA_MODELS, SCHEMAS["data"]) == []
    finally:
        conn.close()


def test_a_failing_slice_stops_the_others_and_leaves_the_old_rows(app, settings):
    old = build_with_five_origins(settings)
    broken = Transformation(
        id="broken-matrix", name="broken", target="delivery_matrix", source_tables=("workspace.usps_3d_base_service",),
        source_integrations=(), sql_file="delivery_matrix.sql", split_column="origin_zip3",
        split_values_sql="SELECT zip3 FROM reference.zip3_reference")
    # origins from 300 on: every row twice (duplicate keys); below 200: a slice that would take a minute
    broken.__dict__["select_sql"] = """
        SELECT origin_zip3, dest_zip3, 'UPS', 'GND', 1::smallint, NULL, 100::smallint, 'test'
        FROM workspace.usps_3d_base_service
        CROSS JOIN generate_series(1, CASE WHEN origin_zip3 >= '300' THEN 2 ELSE 1 END)
        CROSS JOIN LATERAL (SELECT pg_sleep(CASE WHEN origin_zip3 < '200' THEN 60 ELSE 0 END)) AS nap
        WHERE (%(split_from)s::text IS NULL OR origin_zip3 >= %(split_from)s)
          AND (%(split_to)s::text IS NULL OR origin_zip3 < %(split_to)s)"""
    started = time.monotonic()
    with pytest.raises(psycopg2.errors.UniqueViolation):
        build_and_swap(broken, settings, parallelism=3)
    assert time.monotonic() - started < 30          # the sleeping slice was cancelled, not waited for
    assert matrix_count() == old and scratch_tables() == []
    wait_until(lambda: build_backends() == 0,       # no build connection left behind (a closed one
               message="the build's connections to close")   # leaves pg_stat_activity a moment later)


def test_cancelling_a_sliced_build_stops_every_slice(app, settings):
    old = build_with_five_origins(settings)
    blocker = connect(settings.data)
    blocker.autocommit = False
    watcher = connect(superuser_config(settings.data))   # sees the builder's sessions' queries
    control, errors = BuildControl(), []

    def waiting_slices() -> int:
        with watcher.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database() AND query LIKE 'INSERT INTO reference.%%'")
            return cur.fetchone()[0]

    def run():
        try:
            build_and_swap(get_transformation("delivery-matrix"), settings, parallelism=3, control=control)
        except BuildFailed as exc:
            errors.append(exc)

    build = threading.Thread(target=run)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE workspace.ups_zones IN ACCESS EXCLUSIVE MODE")
        build.start()
        wait_until(lambda: waiting_slices() == 3, message="all three slices to wait on the locked source")
        control.cancel()
        build.join(timeout=30)
        assert not build.is_alive()
    finally:
        blocker.close()
        watcher.close()
        build.join(timeout=30)
    assert len(errors) == 1 and isinstance(errors[0], BuildCancelled)
    assert "cancelled" in str(errors[0]) and "left unchanged" in str(errors[0])
    assert matrix_count() == old and scratch_tables() == []


def test_old_table_still_read_after_the_swap_is_dropped_by_the_next_build(app, settings, monkeypatch, caplog):
    load_delivery_sources()
    run_transformation(system_context(settings), "delivery-matrix")
    old_partition = live_partitions()[0][0]
    add_usps("100", "900", pri=2)
    reader = connect(settings.data)
    reader.autocommit = False
    with reader.cursor() as cur:   # a long transaction on the live table's one slice
        cur.execute(f"SELECT count(*) FROM reference.{old_partition}")
    monkeypatch.setattr("handled.transformations.build_runner.DROP_PATIENCE_SECONDS", 0.5)
    try:
        result = build_and_swap(get_transformation("delivery-matrix"), settings, parallelism=settings.transform_parallelism)   # swaps: the parent is free
        assert matrix_count() == result.rows                           # the new rows serve at once
        assert sorted(scratch_tables()) == sorted(["_old_delivery_matrix", old_partition])
        assert "_old_delivery_matrix is still in use by a reader" in caplog.text
    finally:
        reader.rollback()
        reader.close()
    build_and_swap(get_transformation("delivery-matrix"), settings, parallelism=settings.transform_parallelism)
    assert scratch_tables() == []
