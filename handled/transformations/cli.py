"""``flask transformations run|list``: thin wrappers over the service."""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import timezone

import click
from flask.cli import AppGroup

from handled import jobs
from handled.context import cli_context
from handled.transformations import history, service
from handled.transformations.registry import UnknownTransformation

transformations_cli = AppGroup("transformations", help="Build the reference tables from the workspace.")


def user_errors(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (UnknownTransformation, history.AlreadyRunning, service.TransformationFailed) as exc:
            raise click.ClickException(str(exc)) from None
    return run


def echo_progress(phase, done, total, message):
    step = f" ({done}/{total})" if done is not None and total else ""
    click.echo(f"  {message or phase}{step}", err=True)


def when(value) -> str:
    return f"{value.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC" if value else "never"


@transformations_cli.command("run")
@click.argument("ids", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Run every transformation.")
@click.option("--background", is_flag=True, help="Queue the run for `flask jobs worker` and print the job id.")
@click.option("--user-email", default=None, help="Who to record as having run it.")
@user_errors
def run_command(ids, run_all, background, user_email):
    """Run transformations ID... (plus their stale dependencies), or --all."""
    if not ids and not run_all:
        raise click.ClickException("Name at least one transformation (see `flask transformations list`) or use --all.")
    if background:
        plan = service.plan_runs(list(ids), run_all=run_all)
        ctx = cli_context()
        ctx = ctx.with_actor(replace(ctx.actor, email=user_email)) if user_email else ctx
        job_id = jobs.enqueue("transformation", service.transformation_job, plan, ctx=ctx,
                              description=f"Run transformations {', '.join(plan)}")
        click.echo(f"queued job {job_id}: {', '.join(plan)} (follow it with `flask jobs status {job_id} --follow`)")
        return
    with jobs.progress_listener(echo_progress):
        outcomes = service.run_transformations(list(ids), run_all=run_all, user_email=user_email)
    for o in outcomes:
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in o.timings.items())
        click.echo(f"{o.transformation}: run #{o.run_id} succeeded, {o.rows} rows ({phases})")


@transformations_cli.command("list")
def list_command():
    """Each transformation with its last run, row count and whether its sources changed since."""
    for row in service.describe_transformations():
        t, last = row["transformation"], row["last_run"]
        status = f"{last.status} (run #{last.id}, {when(last.started_at)})" if last else "never run"
        rows = "-" if row["rows"] is None else f"{row['rows']}"
        fresh = "up to date" if row["stale"] is None else f"stale: {row['stale']}"
        click.echo(f"{t.id:<16} last run: {status}; rows: {rows}; {fresh}")
        for integration, finished in row["sources"].items():
            click.echo(f"    source {integration:<20} last imported {when(finished)}")
