"""Background jobs: RQ on the one Redis client of handled/cache.py.

``enqueue`` puts a call on the queue; ``flask jobs worker`` (``run_worker``)
runs them, each in a forked work horse. A job reports what it is doing with
``report_progress`` (kept in ``job.meta`` and shown live on ``/jobs/<id>``);
the same call prints progress in the CLI through ``progress_listener``.
Several workers on several hosts may share one Redis: RQ hands each job to one
worker, and the services themselves refuse to run one transformation twice.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable

from rq import Queue, Worker, get_current_job  # noqa: F401 (re-exported)
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.utils import import_attribute

from handled import db, heartbeat
from handled.cache import get_redis
from handled.timeutil import utcnow

log = logging.getLogger("handled.jobs")

QUEUE_NAME = "handled"
JOB_TIMEOUT = 4 * 3600          # seconds; an 11M-row rebuild takes minutes, not hours
RESULT_TTL = 7 * 24 * 3600      # keep finished jobs' status for a week
FAILURE_TTL = 30 * 24 * 3600
DEAD_WORKER_MESSAGE = "The worker running this job ({runner}) stopped before it finished."

# which permission lets a user see a job of each kind (its page and JSON)
KIND_PERMISSIONS = {"transformation": "run_transformations", "import": "run_imports",
                    "export": "download_exports"}

ProgressListener = Callable[[str, int | None, int | None, str | None], None]
_listeners: ContextVar[tuple[ProgressListener, ...]] = ContextVar("handled_progress_listeners", default=())
_dead_run_sweepers: list[Callable[[], list]] = []


class JobNotFound(Exception):
    """No job has this id (or it expired)."""


def get_queue() -> Queue:
    return Queue(QUEUE_NAME, connection=get_redis())


def enqueue(kind: str, func, *args, description: str, result_url: str | None = None, **kwargs) -> str:
    """Queue ``func(*args, **kwargs)`` as a background job of ``kind``; return its id."""
    target = func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"
    job = get_queue().enqueue(
        run_job, args=(target, args, kwargs), description=description, job_timeout=JOB_TIMEOUT,
        result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
        meta={"kind": kind, "phase": "queued", "done": None, "total": None, "message": None,
              "result_url": result_url, "enqueued_at": utcnow().isoformat()})
    return job.id


def run_job(target: str, args: tuple, kwargs: dict):
    """What the work horse executes: the job's function, with its failure told in words."""
    job = get_current_job()
    if job is not None:
        job.meta.update(runner=heartbeat.runner_id(), phase="started")
        job.save_meta()
    try:
        with heartbeat.Heartbeat():
            return import_attribute(target)(*args, **kwargs)
    except Exception as exc:
        if job is not None:
            job.meta.update(phase="failed", message=_failure_sentence(exc))
            job.save_meta()
        raise
    finally:
        db.release_connections()


def _failure_sentence(exc: Exception) -> str:
    """A domain error's own sentence; anything else is logged and summarised."""
    if getattr(exc, "user_message", None) or type(exc).__module__.startswith("handled"):
        return str(exc)
    log.exception("background job failed")
    return f"The job failed unexpectedly ({type(exc).__name__}); the error was logged."


def report_progress(phase: str, done: int | None = None, total: int | None = None,
                    message: str | None = None) -> None:
    """Tell whoever watches (the job page, the CLI) what the current job is doing."""
    job = get_current_job()
    if job is not None:
        job.meta.update(phase=phase, done=done, total=total, message=message,
                        updated_at=utcnow().isoformat())
        job.save_meta()
    for listener in _listeners.get():
        listener(phase, done, total, message)


@contextmanager
def progress_listener(listener: ProgressListener):
    """Call ``listener`` for every report_progress inside the block (CLI output)."""
    token = _listeners.set(_listeners.get() + (listener,))
    try:
        yield
    finally:
        _listeners.reset(token)


def job_status(job_id: str) -> dict:
    """Status, phase, progress, message and result link of one job."""
    try:
        job = Job.fetch(job_id, connection=get_redis())
    except NoSuchJobError:
        raise JobNotFound(f"There is no job {job_id!r}; it may have finished more than a week ago.") from None
    meta = job.get_meta()
    status = job.get_status(refresh=False)
    status = status.value if isinstance(status, JobStatus) else str(status)
    message = meta.get("message")
    if status == "started" and heartbeat.runner_alive(meta.get("runner")) is False:
        status, message = "failed", DEAD_WORKER_MESSAGE.format(runner=meta.get("runner"))
    if status == "failed" and not message:
        message = _rq_failure_line(job)
    done, total = meta.get("done"), meta.get("total")
    percent = round(100 * done / total) if done is not None and total else None
    if status == "finished":
        percent = 100
    return {
        "id": job.id, "kind": meta.get("kind"), "description": job.description, "status": status,
        "phase": meta.get("phase"), "done": done, "total": total, "percent": percent,
        "message": message, "result_url": meta.get("result_url"),
        "enqueued_at": _iso(job.enqueued_at), "started_at": _iso(job.started_at),
        "ended_at": _iso(job.ended_at), "finished": status in ("finished", "failed", "stopped", "canceled"),
    }


def _rq_failure_line(job: Job) -> str:
    result = job.latest_result()
    text = (result.exc_string or "") if result is not None else ""
    last = text.strip().splitlines()[-1] if text.strip() else "unknown error"
    if "terminated unexpectedly" in text or "AbandonedJobError" in text:
        return "The worker running this job stopped before it finished."
    return f"The job failed: {last}"


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def register_dead_run_sweeper(sweeper: Callable[[], list]) -> None:
    """Run ``sweeper`` when a worker starts: it marks failed the runs of dead workers."""
    if sweeper not in _dead_run_sweepers:
        _dead_run_sweepers.append(sweeper)


def sweep_dead_jobs() -> dict:
    """Mark failed the started jobs and run rows whose worker process is gone."""
    from handled.transformations.history import sweep_dead_runs

    register_dead_run_sweeper(sweep_dead_runs)
    failed_runs = []
    for sweeper in _dead_run_sweepers:
        failed_runs += sweeper()
    failed_jobs = []
    registry = StartedJobRegistry(queue=get_queue())
    for job_id in registry.get_job_ids(cleanup=False):
        job_id = job_id.split(":", 1)[0]
        try:
            job = Job.fetch(job_id, connection=get_redis())
        except NoSuchJobError:
            continue
        runner = job.meta.get("runner")
        if runner and heartbeat.runner_alive(runner) is False:
            job.meta.update(phase="failed", message=DEAD_WORKER_MESSAGE.format(runner=runner))
            job.save_meta()
            job.set_status(JobStatus.FAILED)
            failed_jobs.append(job.id)
    return {"runs": failed_runs, "jobs": failed_jobs}


class HandledWorker(Worker):
    """An RQ worker that never lets a pooled database connection cross its fork."""

    def execute_job(self, job, queue):
        db.close_databases()
        return super().execute_job(job, queue)


def run_worker(*, burst: bool = False, name: str | None = None, max_jobs: int | None = None) -> bool:
    """Sweep runs of dead workers, then work the queue until stopped (or empty, with burst)."""
    swept = sweep_dead_jobs()
    if swept["runs"] or swept["jobs"]:
        log.warning("marked failed after their worker died: runs %s, jobs %s", swept["runs"], swept["jobs"])
    connection = get_redis()
    worker = HandledWorker([get_queue()], connection=connection, name=name)
    connection.connection_pool.disconnect()  # RQ raised the socket timeout; reconnect with it
    db.close_databases()
    return worker.work(burst=burst, max_jobs=max_jobs, logging_level="INFO")
