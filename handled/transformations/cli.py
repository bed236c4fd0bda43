"""``flask transformations run|list``: thin wrappers over the service."""

from __future__ import annotations

from datetime import timezone

import click

from handled.cli_support import HandledGroup, echo_progress
from handled.context import cli_context
from handled.errors import HandledError
from handled.transformations import service

transformations_cli = HandledGroup("transformations", help="Build the reference tables from the workspace.")


def when(value) -> str:
    return f"{value.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC" if value else "never"


@transformations_cli.command("run")
@click.argument("ids", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Run every transformation.")
@click.option("--background", is_flag=True, help="Queue the run for `flask jobs worker` and print the job id.")
def run_command(ids, run_all, background):
    """Run transformations ID... (plus their stale dependencies), or --all."""
    if not ids and not run_all:
        # a HandledError, not a click.UsageError: the sentence and exit code 1 stay what they were
        raise HandledError("Name at least one transformation (see `flask transformations list`) or use --all.")
    ctx = cli_context(echo_progress)
    if background:
        job_id, plan = service.enqueue_transformations(ctx, list(ids), run_all=run_all)
        click.echo(f"queued job {job_id}: {', '.join(plan)} (follow it with `flask jobs status {job_id} --follow`)")
        return
    outcomes = service.run_transformations(ctx, list(ids), run_all=run_all)
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
