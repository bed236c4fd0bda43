"""``flask jobs worker|status``."""

from __future__ import annotations

import time

import click

from handled import jobs
from handled.cli_support import HandledGroup

jobs_cli = HandledGroup("jobs", help="Background jobs (RQ on Redis).")


@jobs_cli.command("worker")
@click.option("--burst", is_flag=True, help="Quit when the queue is empty.")
@click.option("--name", default=None, help="Worker name (default: RQ's host.pid based name).")
@click.option("--max-jobs", type=click.IntRange(min=1), default=None, help="Quit after this many jobs.")
def worker_command(burst, name, max_jobs):
    """Run queued jobs (Run buttons, large imports). Start one or more beside the web server."""
    jobs.run_worker(burst=burst, name=name, max_jobs=max_jobs)


def _line(status: dict) -> str:
    progress = f" {status['percent']}%" if status["percent"] is not None else ""
    message = f": {status['message']}" if status["message"] else ""
    return f"{status['id']} [{status['label']}] {status['phase'] or ''}{progress}{message}"


@jobs_cli.command("status")
@click.argument("job_id")
@click.option("--follow", is_flag=True, help="Print progress until the job ends.")
@click.option("--interval", type=float, default=1.0, show_default=True)
def status_command(job_id, follow, interval):
    """Status, phase and progress of one job; exit 1 if it failed or was cancelled."""
    last = None
    while True:
        status = jobs.job_status(job_id)
        line = _line(status)
        if line != last:
            click.echo(line)
            last = line
        if not follow or status["finished"]:
            break
        time.sleep(interval)
    if status["status"] in ("failed", "cancelled"):
        raise SystemExit(1)
