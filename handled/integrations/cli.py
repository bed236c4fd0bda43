"""``flask integrations ...``: list, import, history, rebuild. Thin: parse, call the service, print."""

from __future__ import annotations

import functools
import sys
from dataclasses import replace
from datetime import timezone
from pathlib import Path

import click
import peewee
import psycopg2
from flask.cli import AppGroup

from handled import runs as run_history
from handled.context import cli_context
from handled.integrations import history
from handled.integrations.history import Actor
from handled.integrations.registry import UnknownIntegration, all_integrations
from handled.integrations.service import ImportRequestError, import_paths, rebuild_from_archive
from handled.integrations.status import table_row_counts

integrations_cli = AppGroup("integrations", help="Import carrier and census files into the DATA database.")


def database_errors(command):
    """A database that does not answer is one line on stderr and exit 1, not a traceback."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (peewee.OperationalError, peewee.InterfaceError, psycopg2.OperationalError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise click.ClickException(f"A database is not answering ({first}); see docs/OPS_RUNBOOK.md.") from None
    return run


@integrations_cli.command("list")
@database_errors
def list_command():
    """Each integration: id, accepted files, target table, rows, last successful import."""
    counts = table_row_counts()
    for integration in all_integrations():
        last = history.last_success(integration.id)
        when = (f"last import {last.finished_at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC ({last.file_name})"
                if last else "never imported")
        click.echo(f"{integration.id:<20} {integration.table:<36} {counts.get(integration.id, 0):>10,} rows  "
                   f"{integration.mode:<8} {when}")
        click.echo(f"{'':<20} files: {integration.file_hint}")


@integrations_cli.command("import")
@click.argument("integration_id", metavar="ID")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--partial", is_flag=True, help="Load the good rows of a file that has bad ones "
              "(every rejected row is still recorded).")
@click.option("--force", is_flag=True, help="Import a file even if the same content was imported before.")
@click.option("--user-email", default=None, help="Record this email as who ran the import.")
@database_errors
def import_command(integration_id, files, partial, force, user_email):
    """Import FILE... (or .zip archives of them) with integration ID.

    Exits with status 1 when any file was refused or any row rejected.
    """
    actor = Actor(email=user_email)
    outcomes = []
    show_bar = sys.stderr.isatty()
    try:
        if show_bar:
            with click.progressbar(length=len(files), label=f"Importing {integration_id}",
                                   file=sys.stderr) as bar:
                outcomes = _run(integration_id, files, partial, force, actor, bar)
        else:
            outcomes = _run(integration_id, files, partial, force, actor, None)
    except (UnknownIntegration, ImportRequestError) as problem:
        raise click.ClickException(str(problem)) from None
    _print_summary(outcomes)
    if not all(o.clean for o in outcomes):
        raise SystemExit(1)


def _run(integration_id, files, partial, force, actor, bar):
    """Import the files in order; the bar (if any) advances per file given (a .zip counts once)."""
    def report(outcome):
        start = "\n" if bar is not None else ""  # leave the bar's line before printing
        click.echo(f"{start}{outcome.file_name}: {outcome.status} (run {outcome.run_id}). {outcome.message}",
                   err=not outcome.clean)
        if outcome.rows_rejected:
            _echo_rejected_rows(outcome)

    def rows_read(name, rows):
        bar.label = f"{name}: {rows:,} rows read"
        bar.update(0)

    outcomes = []
    for path in files:
        outcomes += import_paths(integration_id, [path], partial=partial, force=force, actor=actor,
                                 on_file=report, on_rows=rows_read if bar is not None else None)
        if bar is not None:
            bar.update(1)
    return outcomes


SHOWN_REJECTED_ROWS = 20


def _echo_rejected_rows(outcome) -> None:
    """Name each rejected line on stderr (the first ones; the rest are in the history)."""
    run = history.get_run(outcome.run_id)
    kept = run.rejected_rows if run else []
    for row in kept[:SHOWN_REJECTED_ROWS]:
        click.echo(f"  {outcome.file_name} {_rejected_row_text(row)}", err=True)
    if outcome.rows_rejected > SHOWN_REJECTED_ROWS:
        click.echo(f"  ... {outcome.rows_rejected - SHOWN_REJECTED_ROWS:,} more rejected rows; "
                   f"'flask integrations history {outcome.integration} --rejected' lists the "
                   f"{len(kept):,} kept in the run history, and the run page offers them as CSV.", err=True)


def _rejected_row_text(row: dict) -> str:
    return f"line {row['line']}, {row['column']} = {row['value']!r}: {row['reason']}"


def _print_summary(outcomes) -> None:
    if len(outcomes) < 2:
        return
    by_status: dict[str, int] = {}
    for outcome in outcomes:
        by_status[outcome.status] = by_status.get(outcome.status, 0) + 1
    written = sum(o.rows_written for o in outcomes)
    rejected = sum(o.rows_rejected for o in outcomes)
    parts = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    click.echo(f"{len(outcomes)} files: {parts}; {written:,} rows written, {rejected:,} rejected.")


@integrations_cli.command("history")
@database_errors
@click.argument("integration_id", metavar="[ID]", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--rejected", "show_rejected", is_flag=True, help="Also print each run's kept rejected rows.")
def history_command(integration_id, limit, show_rejected):
    """Recent import runs, newest first (of one integration if ID is given)."""
    if integration_id:
        try:
            from handled.integrations.registry import get_integration
            get_integration(integration_id)
        except UnknownIntegration as problem:
            raise click.ClickException(str(problem)) from None
    run_history.sweep_dead_runs("import")
    runs = history.recent_runs(integration_id, limit)
    if not runs:
        click.echo("No imports yet.")
    for run in runs:
        took = history.duration_seconds(run)
        took = f"{took:.1f}s" if took is not None else "-"
        who = run.created_by_email or "cli"
        click.echo(f"#{run.id} {run.started_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} {run.integration} "
                   f"{run.file_name} "
                   f"{run.status} read={run.rows_read:,} written={run.rows_written:,} "
                   f"rejected={run.rows_rejected:,} {took} by {who} sha256={run.file_sha256[:12]}")
        if run.message:
            click.echo(f"    {run.message}")
        if show_rejected:
            for row in run.rejected_rows:
                click.echo(f"    {_rejected_row_text(row)}")


@integrations_cli.command("rebuild")
@database_errors
@click.argument("integration_id", metavar="ID")
@click.option("--user-email", default=None, help="Record this email as who ran the imports.")
def rebuild_command(integration_id, user_email):
    """Re-import ID's table from the source archive, following the run history.

    Replace mode: the latest successful file. Upsert mode: every file that
    succeeded, each content once at its last place in the order.
    """
    def report(outcome):
        click.echo(f"{outcome.file_name}: {outcome.status} (run {outcome.run_id}). {outcome.message}",
                   err=not outcome.clean)

    ctx = cli_context()
    ctx = ctx.with_actor(replace(ctx.actor, email=user_email)) if user_email else ctx
    try:
        outcomes = rebuild_from_archive(ctx, integration_id, on_file=report)
    except (UnknownIntegration, ImportRequestError) as problem:
        raise click.ClickException(str(problem)) from None
    if not outcomes:
        click.echo(f"No successful import of {integration_id} to rebuild from.")
    _print_summary(outcomes)
    if not all(o.clean for o in outcomes):
        raise SystemExit(1)
