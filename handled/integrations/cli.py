"""``flask integrations ...``: list, import, history, rebuild. Thin: parse, call the service, print."""

from __future__ import annotations

import sys
from datetime import timezone
from pathlib import Path

import click

from handled import runs as run_history
from handled.cli_support import HandledGroup, echo_progress
from handled.context import NO_PROGRESS, Context, cli_context
from handled.integrations import history
from handled.integrations.registry import all_integrations, get_integration
from handled.integrations.service import import_paths, rebuild_from_archive
from handled.integrations.status import table_row_counts
from handled.wording import how_many

integrations_cli = HandledGroup("integrations", help="Import carrier and census files into the DATA database.")


@integrations_cli.command("list")
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


class RowsReadLabel:
    """The CLI's progress sink on a terminal: the bar's label follows the rows read of the current file."""

    def __init__(self, bar):
        self.bar = bar

    def __call__(self, phase: str, done: int | None = None, total: int | None = None,
                 message: str | None = None) -> None:
        if phase == "importing" and message:
            self.bar.label = message
            self.bar.update(0)


@integrations_cli.command("import")
@click.argument("integration_id", metavar="ID")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--partial", is_flag=True, help="Load the good rows of a file that has bad ones "
              "(every rejected row is still recorded).")
@click.option("--force", is_flag=True, help="Import a file even if the same content was imported before.")
def import_command(integration_id, files, partial, force):
    """Import FILE... (or .zip archives of them) with integration ID.

    Exits with status 1 when any file was refused or any row rejected.
    """
    get_integration(integration_id)  # an unknown id is one line, before any bar is drawn
    if sys.stderr.isatty():
        with click.progressbar(length=len(files), label=f"Importing {integration_id}",
                               file=sys.stderr) as bar:
            ctx = cli_context(RowsReadLabel(bar))
            outcomes = _run(ctx, integration_id, files, partial, force, bar)
    else:
        outcomes = _run(cli_context(), integration_id, files, partial, force, None)
    _print_summary(outcomes)
    if not all(o.clean for o in outcomes):
        raise SystemExit(1)


def _run(ctx: Context, integration_id, files, partial, force, bar):
    """Import the files in order; the bar (if any) advances per file given (a .zip counts once)."""
    outcomes = []
    for path in files:
        done = import_paths(ctx, integration_id, [path], partial=partial, force=force)
        for outcome in done:
            _echo_outcome(outcome, leave_bar=bar is not None)
        outcomes += done
        if bar is not None:
            bar.update(1)
    return outcomes


def _echo_outcome(outcome, leave_bar: bool = False) -> None:
    """One line per file (stdout when clean, else stderr), then its rejected lines."""
    start = "\n" if leave_bar else ""  # leave the bar's line before printing
    click.echo(start + _outcome_line(outcome), err=not outcome.clean)
    if outcome.rows_rejected:
        _echo_rejected_rows(outcome)


def _outcome_line(outcome) -> str:
    run = f" (run {outcome.run_id})" if outcome.run_id is not None else ""
    return f"{outcome.file_name}: {outcome.status}{run}. {outcome.message}"


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
    if not row["column"]:   # the whole line is wrong (too few or too many fields), not one column
        return f"line {row['line']}: {row['reason']} ({row['value']!r})"
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
    click.echo(f"{len(outcomes)} files: {parts}; {how_many(written, 'row')} written, {rejected:,} rejected.")


@integrations_cli.command("history")
@click.argument("integration_id", metavar="[ID]", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--rejected", "show_rejected", is_flag=True, help="Also print each run's kept rejected rows.")
def history_command(integration_id, limit, show_rejected):
    """Recent import runs, newest first (of one integration if ID is given)."""
    if integration_id:
        get_integration(integration_id)
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
@click.argument("integration_id", metavar="ID")
def rebuild_command(integration_id):
    """Re-import ID's table from the source archive, following the run history.

    Replace mode: the latest successful file. Upsert mode: every file that
    succeeded, each content once at its last place in the order.
    """
    progress = echo_progress if sys.stderr.isatty() else NO_PROGRESS
    outcomes = rebuild_from_archive(cli_context(progress), integration_id)
    for outcome in outcomes:
        click.echo(_outcome_line(outcome), err=not outcome.clean)
    if not outcomes:
        click.echo(f"No successful import of {integration_id} to rebuild from.")
    _print_summary(outcomes)
    if not all(o.clean for o in outcomes):
        raise SystemExit(1)
