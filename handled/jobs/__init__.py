"""Background jobs: RQ on the one Redis client of handled/cache.py.

- queue.py: ``enqueue`` (records who queued the job; exclusive keys refuse a second request for
  the same work), ``job_status`` (state, progress, elapsed, files), ``recent_jobs``, ``cancel_job``;
- worker.py: ``flask jobs worker`` runs each job as ``func(job_ctx, *args)`` in a
  forked work horse, and sweeps what dead workers left behind;
- signing.py: what makes a job trustworthy (JSON, only ``run_job``, HMAC, ``JOB_TARGETS``);
- progress.py: the job's Progress (its meta, shown live on ``/jobs/<id>``);
- views.py: ``/jobs``, ``/jobs/<id>``, its JSON and Cancel; cli.py: ``flask jobs worker|status``.

Importing this package imports neither Flask nor click: services may use it.
"""

from handled.jobs.progress import JobCancelled, current_job_id
from handled.jobs.queue import (KIND_PERMISSIONS, JobAlreadyQueued, JobNotFound, cancel_job, enqueue, get_queue,
                                holder, job_status, may_cancel, may_see, recent_jobs)
from handled.jobs.worker import run_worker, sweep_dead_workers

__all__ = ["KIND_PERMISSIONS", "JobAlreadyQueued", "JobCancelled", "JobNotFound", "cancel_job", "current_job_id",
           "enqueue", "get_queue", "holder", "job_status", "may_cancel", "may_see", "recent_jobs", "run_worker",
           "sweep_dead_workers"]


def init_app(app) -> None:
    """Register the job pages and `flask jobs` (imported here: the package itself stays free of Flask)."""
    from handled.jobs.cli import jobs_cli
    from handled.jobs.views import bp

    app.register_blueprint(bp)
    app.cli.add_command(jobs_cli)
