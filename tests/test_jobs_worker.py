"""Background jobs with a real `flask jobs worker` subprocess: enqueue, progress, failure, killed worker."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg2
import pytest
import redis
from rq import SimpleWorker

from handled import cache, heartbeat, jobs
from handled.cache import get_jobs_redis
from handled.context import Actor, Context
from handled.jobs.signing import SERIALIZER, HandledJob
from handled.models import TransformationRun
from handled.schema.names import is_scratch
from handled.transformations import history
from handled.transformations.service import enqueue_transformation
from tests.support.databases import connect
from tests.support.servers import PrivateRedis
from tests.support.reference_data import build_backends, load_delivery_sources, load_zip_sources, reference_tables
from tests.support.waiting import wait_until
from tests.support.workers import start_worker, worker_env, worker_log


def queued_by(settings, email=None) -> Context:
    """The context a job is queued in: who to record as having run it."""
    return Context(settings, Actor(id=None, email=email, channel="cli", system=True))


def lock_source(settings, table="workspace.usps_3d_base_service"):
    conn = connect(settings.data, autocommit=False)
    with conn.cursor() as cur:
        cur.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    return conn


@pytest.fixture
def data(app):
    load_zip_sources()
    load_delivery_sources()


def test_enqueued_run_is_done_by_a_worker_with_progress(data, settings, tmp_path):
    blocker = lock_source(settings)   # keeps the build in its insert phase until released
    worker = start_worker(settings, tmp_path)
    try:
        job_id = enqueue_transformation(queued_by(settings, "lead@example.test"), "zip3-reference",
                                        result_url="/transformations")
        assert jobs.job_status(job_id)["status"] in ("queued", "started")
        # zip3-reference does not read the locked table: it finishes
        wait_until(lambda: jobs.job_status(job_id)["finished"], message="zip3-reference job")
        job_id = enqueue_transformation(queued_by(settings, "lead@example.test"), "delivery-matrix")
        status = wait_until(lambda: (s := jobs.job_status(job_id))["phase"] == "insert" and s,
                            message="the insert phase")
        # the plan is delivery-matrix alone now (zip3-reference is fresh): insert starts at 4% of it
        assert status["status"] == "started" and status["total"] == 1000 and status["done"] == 40
        assert status["percent"] == 4 and "delivery-matrix: insert" in status["message"]
        assert history.running_run("delivery-matrix").phase == "insert"
        blocker.rollback()
        status = wait_until(lambda: (s := jobs.job_status(job_id))["finished"] and s, message="job end")
        assert status["status"] == "finished" and status["percent"] == 100
    finally:
        blocker.close()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    run = history.last_run("delivery-matrix")
    assert (run.status, run.job_id, run.created_by_email) == ("succeeded", job_id, "lead@example.test")
    assert run.rows_written == 18
    # the worker's audit row names the user who queued the job, not the worker
    from handled.models import AuditLog
    row = AuditLog.get((AuditLog.action == "transformation.run") & (AuditLog.target_id == "delivery-matrix"))
    assert (row.actor_email, row.details["job_id"], row.details["run_id"]) == ("lead@example.test", job_id, run.id)


def test_failed_job_shows_the_reason(data, settings, tmp_path):
    job_id = jobs.enqueue("transformation", "handled.transformations.service.transformation_job",
                          ["delivery-matrix"], ctx=queued_by(settings), description="Run delivery-matrix")
    with heartbeat.Heartbeat():
        going = history.start_run("delivery-matrix")
        worker = start_worker(settings, tmp_path, "--burst")
        assert worker.wait(timeout=60) == 0
    status = jobs.job_status(job_id)
    assert status["status"] == "failed"
    assert f"run #{going.id}" in status["message"] and "already running" in status["message"]
    history.finish_run(going.id, "failed", message="test over")
    # a failure that says why is one line in the worker's log, not a traceback (RQ's default)
    log = worker_log(tmp_path)
    assert f"job {job_id} failed: " in log and "Traceback" not in log, log


@pytest.mark.one_mode   # what it proves does not depend on the database mode
def test_a_worker_waits_for_redis_and_carries_on(data, settings, tmp_path):
    """Redis goes away while a job runs and comes back empty (bench/faults.py redis-empty and
    redis-kept): RQ's loop quit on the first Redis error after the job, with a traceback; the
    worker must wait for Redis and run the next job without a restart."""
    private = PrivateRedis(tmp_path / "redis").start()
    cache.init_redis(dataclasses.replace(settings, redis_url=private.url))   # this process queues there too
    blocker = lock_source(settings)   # keeps the build in its insert phase until released
    worker = start_worker(settings, tmp_path, redis_url=private.url)
    try:
        enqueue_transformation(queued_by(settings), "delivery-matrix")
        wait_until(lambda: (r := history.running_run("delivery-matrix")) and r.phase == "insert",
                   message="delivery-matrix's insert phase")
        private.stop()
        blocker.rollback()   # the job ends while Redis is away: its end cannot be written there
        wait_until(lambda: history.running_run("delivery-matrix") is None, message="the build to end")
        time.sleep(2)        # the worker meets Redis gone (part of the scenario, not a wait for a result)
        assert worker.poll() is None, worker_log(tmp_path)
        private.start()      # back, empty
        job_id = enqueue_transformation(queued_by(settings), "zip3-reference")
        status = wait_until(lambda: (s := jobs.job_status(job_id))["finished"] and s, message="the next job")
        assert status["status"] == "finished" and worker.poll() is None, (status["message"], worker_log(tmp_path))
    finally:
        blocker.close()
        worker.kill()
        worker.wait(timeout=30)
        private.stop()
        cache.init_redis(settings)
    log = worker_log(tmp_path)
    assert "Redis is not answering" in log and "Redis answers again" in log and "Traceback" not in log, log
    # in handled's format, with their level, so the runbook's grep for WARNING finds them
    assert " WARNING rq.worker: Worker " in log and ": Redis is not answering" in log, log


@pytest.mark.one_mode    # Redis and the worker's order of steps; no database crossing
@pytest.mark.parametrize("busy, ended", [(False, "finished"), (True, "failed")])
def test_a_job_says_how_it_ended_before_its_heartbeat_stops(data, app, settings, monkeypatch, busy, ended):
    """A started job whose runner no longer beats reads as a dead worker's ("failed"). The job
    must record how it ended before its heartbeat stops, or a page polling at that moment reads
    "failed" for a job about to say "finished" or "cancelled" (the import-cancel test's old race);
    and just started, before its beat, it is starting, not dead. Run in this process (RQ's
    SimpleWorker) to look at the job at the very moments the beat starts and stops."""
    job_id = jobs.enqueue("transformation", "handled.transformations.service.transformation_job",
                          ["zip3-reference"], ctx=queued_by(settings), description="Run zip3-reference")
    seen, at_start, start_beating, stop_beating = [], [], heartbeat.Heartbeat.__enter__, heartbeat.Heartbeat.__exit__

    def look_then_start(self):
        at_start.append(jobs.job_status(job_id)["status"])
        return start_beating(self)

    def look_then_stop(self, *exc):
        seen.append(jobs.job_status(job_id)["status"])
        return stop_beating(self, *exc)

    monkeypatch.setattr(heartbeat.Heartbeat, "__enter__", look_then_start)
    monkeypatch.setattr(heartbeat.Heartbeat, "__exit__", look_then_stop)
    with app.app_context(), heartbeat.Heartbeat():
        going = history.start_run("zip3-reference") if busy else None   # the job's run is then refused
        worker = SimpleWorker([jobs.get_queue()], connection=get_jobs_redis(), job_class=HandledJob,
                              serializer=SERIALIZER)
        worker.work(burst=True)
        if going is not None:
            history.finish_run(going.id, "failed", message="test over")
    assert at_start[1] == "started", at_start       # the job's own beat (the first is this test's)
    assert len(seen) >= 2 and seen[-2] == ended, seen    # the job's own beat (the last is this test's)
    assert jobs.job_status(job_id)["status"] == ended


@pytest.mark.one_mode    # Redis and the order of reads; no database crossing
def test_a_job_that_ended_while_its_status_was_read_is_not_a_dead_workers(data, app, settings):
    """A page reads the job (RQ says "started"), then its runner's heartbeat: in between the work
    horse ended the job and exited, so the runner is gone. That is a finished job, not a dead
    worker's: the job is read again once the runner is found gone (a CI run saw "failed" here
    for a job RQ had logged as "Successfully completed")."""
    from handled.jobs.progress import update_meta
    from handled.jobs.queue import _status, fetch_job
    from rq.job import JobStatus

    job_id = jobs.enqueue("transformation", "handled.transformations.service.transformation_job",
                          ["zip3-reference"], ctx=queued_by(settings), description="Run zip3-reference")
    gone = f"{__import__('socket').gethostname()}:999999999"   # this host, no such process
    fetch_job(job_id).set_status(JobStatus.STARTED)
    update_meta(fetch_job(job_id), runner=gone)
    read_first = fetch_job(job_id)                     # what the page read: started
    fetch_job(job_id).set_status(JobStatus.FINISHED)   # the horse ends the job, then exits

    assert _status(read_first)["status"] == "finished"

    fetch_job(job_id).set_status(JobStatus.STARTED)    # a horse that died without ending it
    assert _status(fetch_job(job_id))["status"] == "failed"


@pytest.mark.one_mode    # who writes which field of the meta in Redis; no database crossing
def test_a_cancel_and_the_work_horse_keep_each_others_fields_of_the_meta(data, settings, tmp_path):
    """The job's meta is written by two processes: the work horse (its progress, how it ended)
    and whoever cancels it. Each writes only its own fields, so the horse's later writes, from
    the copy it read when it started, keep who asked to cancel (a whole-meta save dropped it)."""
    blocker = lock_source(settings)   # holds delivery-matrix in its insert phase
    worker = start_worker(settings, tmp_path)
    try:
        job_id = enqueue_transformation(queued_by(settings, "lead@example.test"), "delivery-matrix")
        wait_until(lambda: jobs.job_status(job_id)["phase"] == "insert", message="the insert phase")
        jobs.cancel_job(queued_by(settings, "boss@example.test"), job_id)
        status = wait_until(lambda: (s := jobs.job_status(job_id))["finished"] and s, message="the cancel")
    finally:
        blocker.rollback()
        blocker.close()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert status["status"] == "cancelled" and "Cancelled by boss@example.test" in status["message"], status
    assert status["cancel_requested_by"] == "boss@example.test", status    # the canceller's field
    assert status["kind"] == "transformation" and status["by"] == "lead@example.test"   # enqueue's fields


META_WRITER = """
import sys
from handled.jobs.progress import update_meta
from handled.jobs.queue import fetch_job
job = fetch_job(sys.argv[1])               # each writer's copy, read before either writes
print("ready", flush=True)
sys.stdin.readline()                       # both writers go at once
for i in range(int(sys.argv[3])):
    update_meta(job, **{f"{sys.argv[2]}{i}": i})
"""


@pytest.mark.one_mode    # Redis only
def test_two_processes_writing_the_meta_at_once_lose_nothing(app, settings, tmp_path):
    """Two processes (a work horse reporting, a cancel or the sweep) writing one job's meta at the
    same moment: every field either of them wrote is there afterwards, and enqueue's too."""
    job_id = jobs.enqueue("transformation", "handled.transformations.service.transformation_job",
                          ["zip3-reference"], ctx=queued_by(settings), description="Run zip3-reference")
    writes = 200
    writers = [subprocess.Popen([sys.executable, "-c", META_WRITER, job_id, tag, str(writes)], cwd=tmp_path,
                                env=worker_env(settings), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for tag in "ab"]
    assert [writer.stdout.readline() for writer in writers] == ["ready\n", "ready\n"]
    for writer in writers:
        writer.stdin.write("go\n")
        writer.stdin.flush()
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    meta = jobs.queue.fetch_job(job_id).meta
    lost = [f"{tag}{i}" for tag in "ab" for i in range(writes) if meta.get(f"{tag}{i}") != i]
    assert not lost, f"{len(lost)} fields lost, e.g. {lost[:5]}"
    assert meta["kind"] == "transformation" and meta["enqueued_at"], meta


def test_cli_background_run_refuses_when_part_of_its_plan_is_running(data, runner):
    with heartbeat.Heartbeat():
        going = history.start_run("zip3-reference")    # a stale dependency of delivery-matrix
        refused = runner.invoke(args=["transformations", "run", "delivery-matrix", "--background"])
        history.finish_run(going.id, "failed", message="test over")
    assert refused.exit_code == 1 and f"run #{going.id}" in refused.output, refused.output
    assert jobs.get_queue().count == 0
    try:
        queued = runner.invoke(args=["transformations", "run", "delivery-matrix", "--background"])
        assert queued.exit_code == 0 and "zip3-reference, delivery-matrix" in queued.output, queued.output
        assert jobs.get_queue().count == 1
    finally:
        jobs.get_queue().empty()


@pytest.mark.flow("A stuck job")
def test_worker_killed_mid_run_is_marked_failed_by_the_next_worker(data, settings, tmp_path, runner):
    """The runbook's "A stuck job": the next worker marks the dead worker's run failed, `jobs status`
    (and `--follow`, which ends at once) names the reason and exits 1, and `transformations run
    --all` builds again and clears what the killed build left."""
    blocker = lock_source(settings)
    worker = start_worker(settings, tmp_path)
    try:
        job_id = enqueue_transformation(queued_by(settings), "delivery-matrix")
        # the job builds the stale zip3-reference first: wait for delivery-matrix's own insert phase
        run = wait_until(lambda: (r := history.running_run("delivery-matrix")) and r.phase == "insert" and r,
                         message="delivery-matrix's insert phase")
        horse_pid = int(run.worker.rpartition(":")[2])
        assert horse_pid != worker.pid
        os.kill(worker.pid, signal.SIGKILL)
        os.kill(horse_pid, signal.SIGKILL)
        worker.wait(timeout=10)
        wait_until(lambda: not heartbeat._pid_exists(horse_pid), message="the work horse to exit")
        # its slices' statements, still waiting on the locked source, notice the client is gone
        wait_until(lambda: build_backends() == 0, timeout=15, message="the killed build's statements to stop")
    finally:
        blocker.rollback()
        blocker.close()
    assert "_build_delivery_matrix" in reference_tables()     # left by the killed build
    assert TransformationRun.get_by_id(run.id).status == "running"    # nobody has looked yet
    next_worker = start_worker(settings, tmp_path, "--burst")
    assert next_worker.wait(timeout=60) == 0
    dead = TransformationRun.get_by_id(run.id)
    assert dead.status == "failed" and "stopped before it finished" in dead.message
    shown = runner.invoke(args=["jobs", "status", job_id])
    followed = runner.invoke(args=["jobs", "status", job_id, "--follow", "--interval", "0.1"])   # ends at once
    for result in (shown, followed):
        assert result.exit_code == 1 and "stopped before it finished" in result.output, result.output
    again = runner.invoke(args=["transformations", "run", "--all"])    # the next build clears up
    assert again.exit_code == 0, again.output
    assert history.last_run("delivery-matrix").rows_written == 18
    assert not [t for t in reference_tables() if is_scratch(t)]


def test_unknown_job_is_a_sentence(app):
    with pytest.raises(jobs.JobNotFound, match="There is no job 'nope'"):
        jobs.job_status("nope")


def report_from_a_thread(ctx, total):
    """A job body: reports from a thread of its own, says whom it runs for."""
    reporter = threading.Thread(target=ctx.progress, args=("counting", 2, total, "from a thread"))
    reporter.start()
    reporter.join()
    return {"email": ctx.actor.email, "channel": ctx.actor.channel}


def fail_on_a_bug(ctx):
    raise ValueError("an internal detail")


@pytest.fixture
def test_targets(monkeypatch):
    """This module's job bodies on the allow-list of this (in-process) worker."""
    from handled.jobs import signing
    for function in (report_from_a_thread, fail_on_a_bug):
        monkeypatch.setitem(signing.JOB_TARGETS, function.__name__, f"{__name__}.{function.__name__}")


def test_a_job_runs_as_who_queued_it_and_reports_from_any_thread(app, settings, test_targets):
    job_id = jobs.enqueue("transformation", report_from_a_thread, 4, ctx=queued_by(settings, "lead@example.test"),
                          description="report from a thread")
    try:
        with app.app_context():   # as under `flask jobs worker`
            result = jobs.get_queue().fetch_job(job_id).perform()
        assert result == {"email": "lead@example.test", "channel": "job"}
        status = jobs.job_status(job_id)
        assert (status["phase"], status["done"], status["total"], status["message"]) == (
            "counting", 2, 4, "from a thread")
    finally:
        jobs.get_queue().empty()


def test_a_bug_in_a_job_is_summarised_not_shown(app, settings, test_targets):
    job_id = jobs.enqueue("transformation", fail_on_a_bug, ctx=queued_by(settings), description="a bug")
    try:
        with app.app_context(), pytest.raises(ValueError):
            jobs.get_queue().fetch_job(job_id).perform()
        assert jobs.job_status(job_id)["message"] == (
            "The job failed unexpectedly (ValueError); the error was logged.")
    finally:
        jobs.get_queue().empty()


def test_a_job_stopped_by_an_outage_says_what_stopped_in_one_log_line(caplog):
    from handled.jobs.worker import failure_sentence

    lost = psycopg2.OperationalError("server closed the connection unexpectedly\n\tThis probably means...")
    assert failure_sentence(lost) == (
        "A database stopped answering while the job ran (server closed the connection unexpectedly); what it "
        "was writing was rolled back. Run it again when it answers.")
    assert failure_sentence(redis.exceptions.ConnectionError("Connection refused")).startswith(
        "Redis (the job queue) stopped answering while the job ran (Connection refused)")
    assert "background job stopped: A database stopped answering" in caplog.text
    assert not [r for r in caplog.records if r.exc_info], "an outage is logged in one line, not a traceback"
