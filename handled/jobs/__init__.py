"""Background jobs: RQ on the one Redis client of handled/cache.py.

- queue.py: ``enqueue`` (records who queued the job), ``job_status``, ``JobNotFound``;
- worker.py: ``flask jobs worker`` runs each job as ``func(job_ctx, *args)`` in a
  forked work horse, and sweeps what dead workers left behind;
- progress.py: the job's Progress (its meta, shown live on ``/jobs/<id>``);
- views.py: ``/jobs/<id>`` and its JSON; cli.py: ``flask jobs worker|status``.

Importing this package imports neither Flask nor click: services may use it.
"""

from handled.jobs.progress import current_job_id
from handled.jobs.queue import KIND_PERMISSIONS, JobNotFound, enqueue, get_queue, job_status
from handled.jobs.worker import run_worker, sweep_dead_workers

__all__ = ["KIND_PERMISSIONS", "JobNotFound", "current_job_id", "enqueue", "get_queue", "job_status",
           "run_worker", "sweep_dead_workers"]


def init_app(app) -> None:
    """Register the job pages and `flask jobs` (imported here: the package itself stays free of Flask)."""
    from handled.jobs.cli import jobs_cli
    from handled.jobs.views import bp

    app.register_blueprint(bp)
    app.cli.add_command(jobs_cli)
