"""``flask jobs worker``: runs queued jobs, each in a forked work horse, as the user who queued it.

Several workers on several hosts may share one Redis: RQ hands each job to one
worker, and the services themselves refuse to run one transformation twice.
A worker sweeps what dead workers and failed builds left behind when it starts and
every ``SWEEP_SECONDS`` while it waits for jobs: runs whose process is gone
(handled/runs.py), their started jobs, and scratch tables no build will finish
(transformations/leftovers.py). Jobs are read as JSON and run only if handled
queued them (signed, allow-listed target: signing.py); anything else fails with one
sentence and nothing of it runs.

Outages are expected, not bugs: a job that fails because a database or Redis stopped
answering fails with a sentence saying so, logged in one line; and when Redis goes
away the worker waits for it and carries on (RQ's own loop would quit), so the queue
runs again as soon as Redis is back, without a restart.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

import redis
from rq import Worker, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import JobStatus
from rq.registry import StartedJobRegistry
from rq.utils import import_attribute

from handled import db, heartbeat, log_handler, runs
from handled.cache import get_jobs_redis
from handled.context import job_context, job_settings
from handled.errors import HandledError, first_line, redact_url
from handled.jobs.progress import (JobCancelled, bound_job, cancel_raised, mark_cancel_raised,
                                   run_cancel_hooks, update_meta)
from handled.jobs.queue import DEAD_WORKER_MESSAGE, ENDED, cancel_requested, get_queue, release_exclusive
from handled.jobs.signing import SERIALIZER, HandledJob, JobRefused, target_path, verify
from handled.timeutil import utcnow
from handled.transformations.leftovers import sweep_abandoned_tables

log = logging.getLogger("handled.jobs")
CANCEL_POLL_SECONDS = 0.3
HOOK_AFTER_SECONDS = 1.0     # a cancel not acted on by then runs the job's cancel hooks
SWEEP_SECONDS = 5            # how often an idle worker sweeps (and so how long it blocks on Redis at once)
REDIS_RETRY_SECONDS = 0.5    # how often a worker asks again for a Redis that does not answer
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def run_job(target: str, actor_data: dict, args: list, kwargs: dict, signature: str | None = None):
    """What the work horse executes: ``target(job_ctx, *args, **kwargs)``, its failure told in words.

    First the job must be one handled queued: its ``signature`` must hold for the job id,
    target, actor and arguments (signing.verify), and ``target`` must be a name in
    JOB_TARGETS; otherwise it fails with one sentence, logged at warning, and nothing runs.
    Only then is the actor trusted (a CLI operator keeps ``system``, see Actor.from_job).

    A job function may return a dict with ``outcome`` ("finished", "problems" or
    "failed"), ``message`` (one sentence), ``files`` and ``runs``: the job then
    ends in that state, whatever RQ says about the function returning. While it
    runs, a cancel request (queue.cancel_job) raises ``JobCancelled`` in this
    thread: services roll back on it like on Ctrl-C, and the job ends cancelled.
    """
    job = get_current_job()
    with bound_job(job) as progress:
        settings = job_settings()
        try:
            verify(settings.secret_key, job.id if job is not None else None, target, actor_data, args, kwargs,
                   signature)
            function = import_attribute(target_path(target))
            if job is not None:
                claim_first_run(job)
        except JobRefused as refused:
            log.warning("%s", refused)
            progress.update(phase="failed", message=str(refused), ended_at=utcnow().isoformat())
            if job is not None:
                release_exclusive(job)
            raise

        def ended(**values) -> None:
            """Give the job's exclusive keys back, then say how it ended: whoever sees it ended
            may start the same work again at once."""
            if job is not None:
                release_exclusive(job)
            progress.update(ended_at=utcnow().isoformat(), **values)

        # The heartbeat spans the job from before it names its runner until after it has said how
        # it ended: a started job whose runner does not beat reads as a dead worker's (queue._status),
        # so stopping the beat first let a page (or the cancel test) read "failed" for a job about
        # to say "cancelled".
        try:
            with heartbeat.Heartbeat():
                progress.update(runner=heartbeat.runner_id(), phase="started", done=None, total=None, message=None)
                return _run_and_say_how_it_ended(job, lambda: function(
                    job_context(actor_data, progress, settings, signed=True), *args, **kwargs), ended)
        finally:
            if job is not None:
                release_exclusive(job)
            db.release_connections()


def _run_and_say_how_it_ended(job, work, ended):
    """Run ``work`` (the job's function) and say how the job ended through ``ended`` (its meta),
    whatever happened; the caller keeps beating meanwhile."""
    try:
        with _cancellable(job):
            result = work()
        by = _cancelled_by(job) if isinstance(result, dict) and result.get("outcome") == "failed" else None
        if by is not None:   # its work failed because the cancel stopped it: the job was cancelled
            cancel = JobCancelled(by)
            cancel.files, cancel.runs = result.get("files") or [], result.get("runs") or []
            raise cancel
        if isinstance(result, dict) and result.get("outcome") in ("finished", "problems", "failed"):
            ended(outcome=result["outcome"], phase=result["outcome"], message=result.get("message"),
                  files=result.get("files") or [], runs=result.get("runs") or [])
        else:   # a plain result: finished, its last report left as it was
            ended(outcome="finished")
        return result
    except JobCancelled as cancel:   # the files and runs it had done stay on the job page
        ended(outcome="cancelled", phase="cancelled", message=cancel.sentence(), files=cancel.files,
              runs=cancel.runs)
        return {"outcome": "cancelled"}
    except Exception as exc:
        by = _cancelled_by(job)
        if by is not None:   # an error the cancel caused (a statement it stopped): cancelled
            ended(outcome="cancelled", phase="cancelled", message=JobCancelled(by).sentence())
            return {"outcome": "cancelled"}
        ended(outcome="failed", phase="failed", message=failure_sentence(exc))
        raise


def _cancelled_by(job) -> str | None:
    """Who cancelled this running job, if anyone did (a failure after a cancel is the cancel)."""
    if job is None:
        return None
    try:
        return cancel_requested(job.id)
    except Exception:   # Redis away: the failure stands as it is
        return None


class _cancellable:
    """While the block runs, a thread watches for a cancel request and raises JobCancelled in
    the calling (main) thread through SIGUSR1, whose handler is installed for the block."""

    def __init__(self, job):
        self.job = job
        self.stop = threading.Event()
        self.raised = False

    def __enter__(self):
        if self.job is None or threading.current_thread() is not threading.main_thread():
            return self
        self.previous = signal.signal(signal.SIGUSR1, self._handler)
        self.watcher = threading.Thread(target=self._watch, name=f"cancel-{self.job.id}", daemon=True)
        self.watcher.start()
        return self

    def _handler(self, signum, frame):
        if self.raised or cancel_raised():
            return
        self.raised = True
        mark_cancel_raised()
        raise JobCancelled(self.by)

    def _watch(self) -> None:
        main = threading.main_thread().ident
        while not self.stop.wait(CANCEL_POLL_SECONDS):
            try:
                by = cancel_requested(self.job.id)
            except Exception:   # Redis away for a moment: ask again next time
                log.debug("could not read the cancel flag of job %s", self.job.id, exc_info=True)
                continue
            if by:
                self.by = by
                signal.pthread_kill(main, signal.SIGUSR1)
                if not self.stop.wait(HOOK_AFTER_SECONDS):   # still going: stuck in a statement
                    run_cancel_hooks(by)
                return

    def __exit__(self, *exc):
        self.raised = True      # the work is over: a late signal changes nothing
        if getattr(self, "watcher", None) is not None:
            self.stop.set()
            self.watcher.join()
            signal.signal(signal.SIGUSR1, self.previous)
        return False


RAN_KEY = "handled:job-ran:{id}"
RAN_KEY_SECONDS = 30 * 24 * 3600     # longer than RQ keeps a job's record


def claim_first_run(job) -> None:
    """A job runs once: a signed job put back on the queue (by a Redis writer, or an RQ retry or
    repeat) is refused, so it cannot redo its work in its user's name."""
    if not get_jobs_redis().set(RAN_KEY.format(id=job.id), "1", nx=True, ex=RAN_KEY_SECONDS):
        raise JobRefused(f"Job {job.id} was refused: it has run before, and a job runs once; nothing was run.")


def failure_sentence(exc: Exception) -> str:
    """A HandledError's own sentence; an outage's in one log line; anything else is a bug, logged
    with its traceback and summarised."""
    if isinstance(exc, HandledError):
        return redact_url(str(exc))
    outage = _outage(exc)
    if outage is not None:
        log.warning("background job stopped: %s stopped answering (%s)", outage, first_line(exc))
        return (f"{outage} stopped answering while the job ran ({first_line(exc)}); what it was writing was "
                "rolled back. Run it again when it answers.")
    log.error("background job failed", exc_info=exc)
    return f"The job failed unexpectedly ({type(exc).__name__}); the error was logged."


def _outage(exc: BaseException) -> str | None:
    """What stopped answering, when that is why ``exc`` was raised (not a bug)."""
    if isinstance(exc, redis.RedisError):
        return "Redis (the job queue)"
    return "A database" if db.connection_lost(exc) else None


def sweep_dead_workers() -> dict:
    """Mark failed the runs and started jobs whose worker process is gone."""
    failed_runs = runs.sweep_dead_runs()
    failed_jobs = []
    registry = StartedJobRegistry(queue=get_queue())
    for job_id in registry.get_job_ids(cleanup=False):
        job_id = job_id.split(":", 1)[0]
        try:
            job = HandledJob.fetch(job_id, connection=get_jobs_redis(), serializer=SERIALIZER)
        except NoSuchJobError:
            continue
        except Exception:      # not JSON: not written by handled, nothing to sweep
            log.warning("job %s in the started registry cannot be read; left alone", job_id)
            continue
        runner = job.meta.get("runner")
        if job.meta.get("outcome") in ENDED:   # it said how it ended; RQ has not filed it yet
            continue
        if runner and heartbeat.runner_alive(runner) is False:
            update_meta(job, phase="failed", message=DEAD_WORKER_MESSAGE.format(runner=runner))
            job.set_status(JobStatus.FAILED)
            release_exclusive(job)
            failed_jobs.append(job.id)
    return {"runs": failed_runs, "jobs": failed_jobs}


def sweep(settings) -> None:
    """Everything a worker sweeps (see the module's docstring); a database or Redis that does not
    answer now is one log line, and the next sweep tries again."""
    try:
        swept = sweep_dead_workers()
        if swept["runs"] or swept["jobs"]:
            log.warning("marked failed after their worker died: runs %s, jobs %s", swept["runs"], swept["jobs"])
        sweep_abandoned_tables(settings)
    except Exception as exc:   # never the end of the worker: the next sweep tries again
        if _outage(exc) is None:
            log.exception("sweep failed")
        else:
            log.warning("sweep skipped: %s is not answering (%s)", _outage(exc).lower(), first_line(exc))
    finally:
        db.release_connections()


class HandledWorker(Worker):
    """An RQ worker that reads jobs as JSON into HandledJob (signing.py), never lets a pooled
    database connection cross its fork, sweeps while idle, and outlasts a Redis outage."""

    job_class = HandledJob
    max_connection_wait_time = REDIS_RETRY_SECONDS * 4   # RQ's back-off while its BLPOP cannot connect

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._next_sweep = time.monotonic() + SWEEP_SECONDS

    @property
    def dequeue_timeout(self) -> int:
        return SWEEP_SECONDS   # wake up this often to sweep (RQ's default blocks ~7 minutes)

    def execute_job(self, job, queue):
        db.close_databases()
        try:
            return super().execute_job(job, queue)
        except REDIS_DOWN as exc:   # before the fork or after the horse ended: its record waits for Redis
            self._wait_for_redis(exc)
            if self.horse_pid:
                self.wait_for_horse()

    # RQ quits its work loop on any Redis error outside its BLPOP; each step of the loop (and of
    # the watch over a running job) that talks to Redis waits for it instead.
    def check_for_suspension(self, burst: bool) -> None:
        return self._through_redis_outage(super().check_for_suspension, burst)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        return self._through_redis_outage(super().dequeue_job_and_maintain_ttl, timeout, max_idle_time)

    def heartbeat(self, timeout=None, pipeline=None):
        if pipeline is not None:   # queued on the caller's pipeline: no Redis call here
            return super().heartbeat(timeout, pipeline=pipeline)
        return self._through_redis_outage(super().heartbeat, timeout)

    def maintain_heartbeats(self, job) -> None:
        return self._through_redis_outage(super().maintain_heartbeats, job)

    def set_current_job_working_time(self, seconds, pipeline=None):
        return self._through_redis_outage(super().set_current_job_working_time, seconds, pipeline)

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return time.monotonic() >= self._next_sweep or super().should_run_maintenance_tasks

    def run_maintenance_tasks(self) -> None:
        if time.monotonic() >= self._next_sweep:
            sweep(job_settings())
            self._next_sweep = time.monotonic() + SWEEP_SECONDS
        if super().should_run_maintenance_tasks:
            self._through_redis_outage(super().run_maintenance_tasks)

    def handle_exception(self, job, *exc_info) -> None:
        """A job that failed for a reason it states (a HandledError, an outage) is one line here:
        its record says the rest. Anything else is a bug, and RQ logs its traceback."""
        exc = exc_info[1]
        if isinstance(exc, HandledError) or _outage(exc) is not None:
            self.log.warning("Worker %s: job %s failed: %s", self.name, job.id, first_line(exc))
            return
        super().handle_exception(job, *exc_info)

    def _through_redis_outage(self, step, *args):
        while True:
            try:
                return step(*args)
            except REDIS_DOWN as exc:
                self._wait_for_redis(exc)

    def _wait_for_redis(self, exc: Exception) -> None:
        """Ask Redis again every REDIS_RETRY_SECONDS until it answers; say so once each way."""
        self.log.warning("Worker %s: Redis is not answering (%s); waiting for it", self.name, first_line(exc))
        while True:
            time.sleep(REDIS_RETRY_SECONDS)
            try:
                self.connection.ping()
                if not self.connection.exists(self.key):   # it came back empty: be listed again
                    self.register_birth()
                break
            except REDIS_DOWN:
                continue
        self.log.warning("Worker %s: Redis answers again; carrying on", self.name)


def run_worker(*, burst: bool = False, name: str | None = None, max_jobs: int | None = None) -> bool:
    """Sweep, then work the queue until stopped (or empty, with burst)."""
    sweep(job_settings())
    connection = get_jobs_redis()
    worker = HandledWorker([get_queue()], connection=connection, name=name, job_class=HandledJob,
                           serializer=SERIALIZER)
    connection.connection_pool.disconnect()  # RQ raised the socket timeout; reconnect with it
    db.close_databases()
    rq_log = logging.getLogger("rq.worker")   # RQ's own lines in handled's format (with their level), not RQ's
    if not rq_log.handlers:
        rq_log.addHandler(log_handler())
        rq_log.propagate = False
    return worker.work(burst=burst, max_jobs=max_jobs, logging_level="INFO")
