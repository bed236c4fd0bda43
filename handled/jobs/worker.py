"""``flask jobs worker``: runs queued jobs, each in a forked work horse, as the user who queued it.

Several workers on several hosts may share one Redis: RQ hands each job to one
worker, and the services themselves refuse to run one transformation twice.
A starting worker first sweeps what dead workers left behind: their runs
(handled/runs.py) and their started jobs.
"""

from __future__ import annotations

import logging

from rq import Worker, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.utils import import_attribute

from handled import db, heartbeat, runs
from handled.cache import get_redis
from handled.context import job_context
from handled.errors import HandledError, redact_url
from handled.jobs.progress import bound_job
from handled.jobs.queue import DEAD_WORKER_MESSAGE, get_queue

log = logging.getLogger("handled.jobs")


def run_job(target: str, actor_data: dict, args: tuple, kwargs: dict):
    """What the work horse executes: ``target(job_ctx, *args, **kwargs)``, its failure told in words."""
    with bound_job(get_current_job()) as progress:
        progress.update(runner=heartbeat.runner_id(), phase="started")
        try:
            with heartbeat.Heartbeat():
                return import_attribute(target)(job_context(actor_data, progress), *args, **kwargs)
        except Exception as exc:
            progress.update(phase="failed", message=failure_sentence(exc))
            raise
        finally:
            db.release_connections()


def failure_sentence(exc: Exception) -> str:
    """A HandledError's own sentence; anything else is a bug, logged and summarised."""
    if isinstance(exc, HandledError):
        return redact_url(str(exc))
    log.error("background job failed", exc_info=exc)
    return f"The job failed unexpectedly ({type(exc).__name__}); the error was logged."


def sweep_dead_workers() -> dict:
    """Mark failed the runs and started jobs whose worker process is gone."""
    failed_runs = runs.sweep_dead_runs()
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
    swept = sweep_dead_workers()
    if swept["runs"] or swept["jobs"]:
        log.warning("marked failed after their worker died: runs %s, jobs %s", swept["runs"], swept["jobs"])
    connection = get_redis()
    worker = HandledWorker([get_queue()], connection=connection, name=name)
    connection.connection_pool.disconnect()  # RQ raised the socket timeout; reconnect with it
    db.close_databases()
    return worker.work(burst=burst, max_jobs=max_jobs, logging_level="INFO")
