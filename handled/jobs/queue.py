"""The job queue: RQ on the jobs Redis client of handled/cache.py (JOBS_REDIS_URL, default REDIS_URL).

``enqueue`` puts a call on the queue with the actor of the context that queued
it: the worker (worker.py) runs the call as that user. ``job_status`` is what
``/jobs/<id>`` and ``flask jobs status`` show.
"""

from __future__ import annotations

from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from handled import heartbeat
from handled.cache import get_jobs_redis
from handled.context import Context
from handled.errors import NotFound
from handled.timeutil import utcnow

QUEUE_NAME = "handled"
JOB_TIMEOUT = 4 * 3600          # seconds; an 11M-row rebuild takes minutes, not hours
RESULT_TTL = 7 * 24 * 3600      # keep finished jobs' status for a week
FAILURE_TTL = 30 * 24 * 3600
DEAD_WORKER_MESSAGE = "The worker running this job ({runner}) stopped before it finished."

# which permission lets a user see a job of each kind (its page and JSON)
KIND_PERMISSIONS = {"transformation": "run_transformations", "import": "run_imports",
                    "export": "download_exports"}


class JobNotFound(NotFound):
    """No job has this id (or it expired)."""


def get_queue() -> Queue:
    return Queue(QUEUE_NAME, connection=get_jobs_redis())


def enqueue(kind: str, func, *args, ctx: Context, description: str, result_url: str | None = None,
            **kwargs) -> str:
    """Queue ``func(job_ctx, *args, **kwargs)`` as a job of ``kind`` run for ``ctx.actor``; return its id.

    ``func`` (a function or its dotted path) takes the job's context first; the
    other arguments must be plain values (they travel through Redis).
    """
    target = func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"
    job = get_queue().enqueue(
        "handled.jobs.worker.run_job", args=(target, ctx.actor.to_job(), args, kwargs), description=description,
        job_timeout=JOB_TIMEOUT, result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
        meta={"kind": kind, "phase": "queued", "done": None, "total": None, "message": None,
              "result_url": result_url, "enqueued_at": utcnow().isoformat()})
    return job.id


def fetch_job(job_id: str) -> Job:
    try:
        return Job.fetch(job_id, connection=get_jobs_redis())
    except NoSuchJobError:
        raise JobNotFound(f"There is no job {job_id!r}; it may have finished more than a week ago.") from None


def job_status(job_id: str) -> dict:
    """Status, phase, progress, message and result link of one job."""
    job = fetch_job(job_id)
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
