"""The two databases never disagree after a crash (handled/ledger.py, handled/runs.py).

An import commits its rows in DATA and then finishes its run in PRIMARY; a transformation
swaps its table in DATA and then finishes its run. Each test kills a real `flask` process
(SIGKILL) at one boundary, held there by a lock the test takes (so the moment is exact, not
a timing guess), and checks that after the next sweep PRIMARY's history says what DATA holds.
Split mode: two databases, two commits. A statement the killed process had already sent to
PRIMARY is terminated with it (pg_terminate_backend), as a crashed host's would be.
"""

from __future__ import annotations

import socket
import subprocess
from contextlib import closing
from dataclasses import replace

import pytest

from handled import create_app, ledger, runs
from handled.context import system_context
from handled.integrations.service import import_file
from handled.models import ImportRun, TransformationRun
from handled.ops.rebuild import plan_rebuild
from handled.transformations import history
from handled.transformations.registry import get_transformation
from tests.support.databases import connect
from tests.support.environment import ROOT
from tests.support.import_files import uszip_row, write_uszips
from tests.support.processes import free_port, start_flask
from tests.support.reference_data import load_zip_sources
from tests.support.waiting import wait_until
from tests.support.workers import STARTED, worker_env

SPLIT = pytest.mark.parametrize("db_mode", ["split"], indirect=True)
ZIPS = 100


def hold(dbname: str, statement: str, params=None):
    """An open transaction (as the test server's superuser) that ran ``statement``: its locks are
    held until the caller rolls it back."""
    conn = connect(dbname, autocommit=False)
    with conn.cursor() as cur:
        cur.execute(statement, params)
    return conn


def waiting(dbname: str, query_like: str) -> list[int]:
    """Backends of ``dbname`` waiting on a lock while running a statement like ``query_like``."""
    with closing(connect(dbname)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND wait_event_type = 'Lock' AND query ILIKE %s", (query_like,))
        return [row[0] for row in cur.fetchall()]


def alive(dbname: str, pids: list[int]) -> bool:
    with closing(connect(dbname)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
        return cur.fetchone()[0] > 0


def kill(process: subprocess.Popen, dbname: str | None = None, backends: list[int] = ()) -> None:
    """SIGKILL ``process``; then terminate the statements it had sent to ``dbname`` that wait
    on a lock (in autocommit they would commit by themselves once the lock is given)."""
    process.kill()
    process.wait(timeout=30)
    if backends:
        with closing(connect(dbname)) as conn, conn.cursor() as cur:
            for pid in backends:
                cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(lambda: not alive(dbname, list(backends)), message="the killed process's backends to end")


def flask_process(settings, tmp_path, *args) -> subprocess.Popen:
    env = dict(worker_env(settings), IMPORT_ARCHIVE_DIR=str(tmp_path / "archive"),
               IMPORT_UPLOAD_DIR=str(tmp_path / "uploads"))
    log = open(tmp_path / "process.log", "ab")
    process = start_flask("--app", str(ROOT / "app.py"), *args, env=env, cwd=tmp_path, stdout=log,
                          stderr=subprocess.STDOUT)
    STARTED.append(process)    # killed after the test even if it fails half way (fixtures/workers.py)
    return process


def start_import(settings, tmp_path):
    path = write_uszips(tmp_path / "uszips.csv", [uszip_row(f"{n:05d}") for n in range(1, ZIPS + 1)])
    return flask_process(settings, tmp_path, "integrations", "import", "us-zips", str(path))


def ledger_rows(settings) -> list[tuple]:
    with closing(connect(settings.data.dbname)) as conn, conn.cursor() as cur:
        cur.execute("SELECT kind, run_id, rows_written FROM workspace.run_ledger ORDER BY kind, run_id")
        return cur.fetchall()


def count(settings, table: str) -> int:
    with closing(connect(settings.data.dbname)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]


def running_import() -> ImportRun:
    return wait_until(lambda: ImportRun.get_or_none(ImportRun.status == "running"), message="the import's run")


def sweep(app, kind: str) -> list[int]:
    with app.app_context():
        return runs.sweep_dead_runs(kind)


# ---- imports ---------------------------------------------------------------------------------


@SPLIT
def test_an_import_killed_after_its_rows_committed_is_completed_from_the_ledger(app, settings, tmp_path):
    table = hold(settings.data.dbname, "LOCK TABLE workspace.us_zips IN ACCESS EXCLUSIVE MODE")
    process = start_import(settings, tmp_path)
    run = running_import()
    row = hold(settings.primary.dbname, "SELECT 1 FROM config.import_runs WHERE id = %s FOR UPDATE", (run.id,))
    try:
        table.rollback()    # the import writes its rows and commits them, with its ledger row ...
        finishing = wait_until(lambda: waiting(settings.primary.dbname, "UPDATE%import_runs%"),
                               message="the import to wait to finish its run")    # ... then waits on PRIMARY
        assert ledger_rows(settings) == [("import", run.id, ZIPS)] and count(settings, "workspace.us_zips") == ZIPS
        kill(process, settings.primary.dbname, finishing)
    finally:
        row.rollback()
    assert ImportRun.get_by_id(run.id).status == "running"     # the history does not know yet
    assert sweep(app, "import") == [run.id]
    done = ImportRun.get_by_id(run.id)
    assert (done.status, done.rows_read, done.rows_written, done.rows_rejected) == ("succeeded", ZIPS, ZIPS, 0)
    assert "after DATA had committed its rows" in done.message and "from DATA's run ledger" in done.message
    assert done.finished_at is not None
    # `flask data rebuild` replays the file whose rows were live
    assert [planned.run_id for planned in plan_rebuild(settings)["us-zips"]] == [run.id]


@SPLIT
def test_an_import_killed_before_its_commit_wrote_nothing_and_says_so(app, settings, tmp_path):
    table = hold(settings.data.dbname, "LOCK TABLE workspace.us_zips IN ACCESS EXCLUSIVE MODE")
    try:
        process = start_import(settings, tmp_path)
        run = running_import()
        loading = wait_until(lambda: waiting(settings.data.dbname, "TRUNCATE%us_zips%"),
                             message="the import to wait on the table")
        kill(process)
        assert sweep(app, "import") == [run.id]     # its transaction cannot commit: its client is dead
    finally:
        table.rollback()
    wait_until(lambda: not alive(settings.data.dbname, loading), message="the dead import's backend to end")
    failed = ImportRun.get_by_id(run.id)
    assert failed.status == "failed" and "nothing was written" in failed.message
    assert count(settings, "workspace.us_zips") == 0 and ledger_rows(settings) == []


@SPLIT
def test_the_sweep_decides_nothing_while_a_dead_imports_transaction_may_still_commit(app, settings, tmp_path):
    table = hold(settings.data.dbname, "LOCK TABLE workspace.us_zips IN ACCESS EXCLUSIVE MODE")
    process = start_import(settings, tmp_path)
    run = running_import()
    entry = hold(settings.data.dbname, "SELECT pg_advisory_xact_lock(%s, %s)", (ledger.LOCK_CLASS["import"], run.id))
    try:
        table.rollback()    # the rows are written; the ledger row waits on the run's lock
        recording = wait_until(lambda: waiting(settings.data.dbname, "INSERT INTO workspace.run_ledger%"),
                               message="the import to wait to record its commit")
        kill(process)
        assert sweep(app, "import") == []       # its transaction is not over: nothing is decided
        assert ImportRun.get_by_id(run.id).status == "running"
    finally:
        entry.rollback()
    wait_until(lambda: not alive(settings.data.dbname, recording), message="the dead import's backend to end")
    assert sweep(app, "import") == [run.id]
    failed = ImportRun.get_by_id(run.id)
    assert failed.status == "failed" and "nothing was written" in failed.message
    assert count(settings, "workspace.us_zips") == 0 and ledger_rows(settings) == []


# ---- transformations -------------------------------------------------------------------------


def start_build(app, settings, tmp_path):
    """`flask transformations run zip3-reference`, held at its swap by a reader of the live table."""
    with app.app_context():
        load_zip_sources()
    reader = hold(settings.data.dbname, "SELECT count(*) FROM reference.zip3_reference")
    process = flask_process(settings, tmp_path, "transformations", "run", "zip3-reference")
    run = wait_until(lambda: (r := history.running_run("zip3-reference")) and r.phase == "swap" and r,
                     message="the build to reach its swap")
    return process, run, reader


@SPLIT
def test_a_transformation_killed_after_its_swap_is_completed_from_the_ledger(app, settings, tmp_path):
    process, run, reader = start_build(app, settings, tmp_path)
    row = hold(settings.primary.dbname, "SELECT 1 FROM config.transformation_runs WHERE id = %s FOR UPDATE",
               (run.id,))
    try:
        reader.rollback()   # the swap commits, with its ledger row; then the run waits on PRIMARY
        finishing = wait_until(lambda: waiting(settings.primary.dbname, "UPDATE%transformation_runs%"),
                               message="the build to wait to record its end")
        built = count(settings, "reference.zip3_reference")
        assert built > 0 and ledger_rows(settings) == [("transformation", run.id, built)]
        kill(process, settings.primary.dbname, finishing)
    finally:
        row.rollback()
    assert TransformationRun.get_by_id(run.id).status == "running"
    assert sweep(app, "transformation") == [run.id]
    done = TransformationRun.get_by_id(run.id)
    assert (done.status, done.rows_written, done.phase) == ("succeeded", built, "succeeded")
    assert "after the new table had been swapped in" in done.message
    with app.app_context():   # the live table's build: the last success, and nothing stale
        assert history.last_success("zip3-reference").id == run.id
        assert history.staleness(get_transformation("zip3-reference")) is None


@SPLIT
def test_a_transformation_killed_before_its_swap_left_the_live_table_and_says_so(app, settings, tmp_path):
    process, run, reader = start_build(app, settings, tmp_path)
    try:
        kill(process)
        assert sweep(app, "transformation") == [run.id]
    finally:
        reader.rollback()
    failed = TransformationRun.get_by_id(run.id)
    assert failed.status == "failed" and "the live table was left as it was" in failed.message
    assert count(settings, "reference.zip3_reference") == 0 and ledger_rows(settings) == []


# ---- what reads the ledger -------------------------------------------------------------------


@SPLIT
def test_rebuild_corrects_a_run_recorded_failed_whose_rows_committed(settings, tmp_path):
    """A process that lost its connection during COMMIT took it for a failure, though DATA had
    committed: `flask data rebuild` first corrects the history from the ledger, then replays the file."""
    own = replace(settings, import_archive_dir=str(tmp_path / "archive"), import_upload_dir=str(tmp_path / "up"))
    app = create_app(own)
    with app.app_context():
        path = write_uszips(tmp_path / "uszips.csv", [uszip_row(f"{n:05d}") for n in range(1, ZIPS + 1)])
        run_id = import_file(system_context(own), "us-zips", path).run_id
    ImportRun.update(status="failed", message="The DATA database refused the rows: server closed the connection. "
                     "Nothing was written.").where(ImportRun.id == run_id).execute()
    result = app.test_cli_runner().invoke(args=["data", "rebuild", "--dry-run", "--force"])
    assert result.exit_code == 0, result.output
    assert f"history: run {run_id} ended as DATA's run ledger says" in result.output
    assert f"us-zips: would re-import uszips.csv (run {run_id}," in result.output
    corrected = ImportRun.get_by_id(run_id)
    assert corrected.status == "succeeded" and corrected.rows_written == ZIPS
    assert "corrected to succeeded from the ledger" in corrected.message


@SPLIT
def test_while_data_does_not_answer_a_dead_run_is_left_running(settings):
    dead = ImportRun.create(integration="us-zips", file_name="uszips.csv", file_sha256="ab" * 32, file_size=1,
                            status="running", worker=f"{socket.gethostname()}:999999999")
    gone = create_app(replace(settings, data=replace(settings.data, port=free_port())))
    with gone.app_context():
        assert runs.sweep_dead_runs("import") == []     # DATA may hold its rows: nothing is decided
    assert ImportRun.get_by_id(dead.id).status == "running"
    back = create_app(settings)
    with back.app_context():
        assert runs.sweep_dead_runs("import") == [dead.id]
    assert ImportRun.get_by_id(dead.id).status == "failed"


def test_a_run_id_handed_out_again_after_a_primary_restore_is_not_the_ledgers_earlier_run(app, settings, tmp_path):
    """A PRIMARY restored from a backup hands out run ids DATA's ledger already holds. The new
    run with an old id must neither collide with the earlier entry (its commit would fail on
    the key) nor be taken for it (a dead new run would be 'completed' from the old one's counts)."""
    own = replace(settings, import_archive_dir=str(tmp_path / "archive"), import_upload_dir=str(tmp_path / "up"))

    def restore_primary_to_before(run_id: int) -> None:
        ImportRun.delete().where(ImportRun.id >= run_id).execute()
        ImportRun._meta.database.execute_sql(
            "SELECT setval(pg_get_serial_sequence('config.import_runs', 'id'), %s, false)", (run_id,))

    def uszips(folder: str, count: int):
        (tmp_path / folder).mkdir()
        return write_uszips(tmp_path / folder / "uszips.csv", [uszip_row(f"{n:05d}") for n in range(1, count + 1)])

    with create_app(own).app_context():
        first = import_file(system_context(own), "us-zips", uszips("a", ZIPS)).run_id
        restore_primary_to_before(first)
        again = import_file(system_context(own), "us-zips", uszips("b", 10), force=True)
        assert again.run_id == first and ImportRun.get_by_id(first).status == "succeeded", again
        restore_primary_to_before(first)
        dead = ImportRun.create(integration="us-zips", file_name="uszips.csv", file_sha256="ab" * 32, file_size=1,
                                status="running", worker=f"{socket.gethostname()}:999999999")
        assert dead.id == first
        assert runs.sweep_dead_runs("import") == [dead.id]
        swept = ImportRun.get_by_id(dead.id)
        assert swept.status == "failed" and swept.rows_written == 0, swept.message   # not an earlier run's rows
    with closing(connect(settings.data.dbname)) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, rows_written FROM workspace.run_ledger WHERE kind = 'import' ORDER BY committed_at")
        assert cur.fetchall() == [(first, ZIPS), (first, 10)]
