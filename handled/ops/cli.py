"""CLI of the operations tools: ``flask db split|unsplit|prune-leftovers`` (added to the
``flask db`` group of handled.schema.cli by handled.ops.init_app), ``flask backup create|restore|list``
and ``flask data rebuild``. Thin: parse, call, print; HandledGroup turns errors into one line."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from handled.cli_support import HandledGroup, echo_progress
from handled.context import cli_context
from handled.ops import OpsError, backup, move, rebuild
from handled.ops.leftovers import prune_leftovers

# split, unsplit and prune-leftovers belong on `flask db`, schema's group. They are gathered here,
# attached to nothing, and handled.ops.init_app adds them to it; this group is never registered itself.
db_commands = HandledGroup("db", help="The operations commands of `flask db`.")


@contextmanager
def report_failed_verification():
    """A failed verification still shows its per-table comparison before the error line."""
    try:
        yield
    except move.VerificationFailed as exc:
        _print_report(exc.report)
        raise


def _print_report(report: move.MoveReport) -> None:
    click.echo(f"{report.side}: {report.source} -> {report.target}: {report.outcome}")
    if report.created_database:
        click.echo(f"  {'would create' if report.dry_run else 'created'} the database")
    for line in move.format_comparison(report.tables):
        click.echo("  " + line)
    for note in report.notes:
        click.echo("  " + note)


DRY_RUN_OPTION = click.option("--dry-run", is_flag=True, help="Say what would be copied; write nothing.")


def url_option(option: str, help: str):
    """``option URL``, ``option -`` (one line from stdin) or ``option-env NAME`` (an environment
    variable): the last two keep a URL holding a password out of shell history and ``ps``."""
    env_option = f"{option}-env"

    def decorate(command):
        command = click.option(env_option, option.lstrip("-").replace("-", "_") + "_env", metavar="NAME",
                               default=None, help=f"Read the URL of {option} from environment variable NAME.")(command)
        return click.option(option, option.lstrip("-").replace("-", "_"), metavar="URL|-", default=None,
                            help=f"{help} '-' reads it from stdin.")(command)
    return decorate


def given_url(option: str, url: str | None, env_name: str | None):
    """The database named by ``option URL``, ``option -`` or ``option-env NAME`` (exactly one)."""
    env_option = f"{option}-env"
    if (url is None) == (env_name is None):
        raise OpsError(f"Name the database with exactly one of {option} URL, {option} - (a line on stdin) "
                       f"or {env_option} NAME (an environment variable).")
    if env_name is not None:
        url = os.environ.get(env_name, "").strip()
        if not url:
            raise OpsError(f"{env_name} is not set (named by {env_option}); export the URL in it first.")
    elif url == "-":
        url = sys.stdin.readline().strip()
        if not url:
            raise OpsError(f"{option} - reads the URL from stdin, but stdin held no line.")
    return move.target_config(option, url)


@db_commands.command("split")
@url_option("--to-primary", "Direct URL of the new PRIMARY database (created and migrated if needed).")
@DRY_RUN_OPTION
@click.option("--force", is_flag=True, help="Replace rows the target already holds.")
def split_command(to_primary, to_primary_env, dry_run, force):
    """Single → split: copy config + customer to a new PRIMARY, then verify every table."""
    target = given_url("--to-primary", to_primary, to_primary_env)
    _move(target, move.split, dry_run=dry_run, force=force, next_step=lambda target: (
        f"Next: set SPLIT_DB_MODE=true, PRIMARY_DATABASE_URL={target.display()} (or its pooler "
        f"address), DATA_DATABASE_URL=<this database>; restart; then 'flask db prune-leftovers'."))


@db_commands.command("unsplit")
@url_option("--to", "Direct URL of the database that will hold all four schemas (usually DATA's).")
@DRY_RUN_OPTION
@click.option("--force", is_flag=True, help="Replace rows the target already holds (e.g. the copy a split left).")
def unsplit_command(to, to_env, dry_run, force):
    """Split → single (rollback): copy PRIMARY (and DATA, if elsewhere) into one database, verified."""
    target = given_url("--to", to, to_env)
    _move(target, move.unsplit, dry_run=dry_run, force=force, next_step=lambda target: (
        f"Next: set SPLIT_DB_MODE=false, PRIMARY_DATABASE_URL={target.display()}, unset DATA_DATABASE_URL; restart."))


def _move(target, run, *, dry_run: bool, force: bool, next_step) -> None:
    """Split or unsplit: the copy, its per-table report (also when verification fails), the next step."""
    with report_failed_verification():
        reports = run(cli_context(echo_progress), target, force=force, dry_run=dry_run)
    for report in reports if isinstance(reports, list) else [reports]:
        _print_report(report)
    if not dry_run:
        click.echo(next_step(target))


@db_commands.command("prune-leftovers")
@click.option("--yes", is_flag=True, help="Really drop them (without it: only list them).")
def prune_command(yes):
    """Split mode: drop the other side's schemas left in each database by a split."""
    lines = prune_leftovers(cli_context(), dry_run=not yes)
    for line in lines or ["no leftover schemas"]:
        click.echo(line)
    if lines and not yes:
        click.echo("Nothing dropped; rerun with --yes to drop them.")


backup_cli = HandledGroup("backup", help="pg_dump backups of PRIMARY or DATA, and verified restores.")


@backup_cli.command("create")
@click.option("--target", type=click.Choice(["primary", "data"]), required=True,
              help="Which side to back up (its schemas only, also in single mode).")
def backup_create_command(target):
    """Dump one side (pg_dump custom format) into BACKUP_DIR with a JSON manifest; apply retention."""
    result = backup.create_backup(cli_context(), target)
    rows = sum(t.rows for t in result.tables.values())
    click.echo(f"wrote {result.path} ({result.path.stat().st_size} bytes, {len(result.tables)} tables, {rows} rows)")
    click.echo(f"manifest {result.manifest}")
    for path in result.deleted:
        click.echo(f"retention: deleted {path}")


@backup_cli.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@url_option("--to", "Direct URL of an empty database (created if missing).")
@click.option("--compare-with", metavar="URL", default=None,
              help="Verify against this live database instead of the backup's manifest.")
def backup_restore_command(file, to, to_env, compare_with):
    """pg_restore a backup into an empty database, then compare every table's rows and checksum.

    An encrypted backup is decrypted with BACKUP_ENCRYPTION_PASSPHRASE."""
    target = given_url("--to", to, to_env)
    other = move.target_config("--compare-with", compare_with) if compare_with else None
    result = backup.restore_backup(cli_context(), file, target, other)
    click.echo(f"restored {file} into {result.target}; compared with {result.compared_with}:")
    for line in move.format_comparison(result.tables, left="backup", right="restored"):
        click.echo("  " + line)
    result.check_verified()
    click.echo("every table matches")


@backup_cli.command("list")
def backup_list_command():
    """The backups in BACKUP_DIR, newest first."""
    folder = cli_context().settings.backup_dir
    found = backup.list_backups(Path(folder))
    for path, side, taken in found:
        click.echo(f"{taken:%Y-%m-%d %H:%M:%S} UTC  {side:<7}  {path.stat().st_size:>12}  {path}")
    if not found:
        click.echo(f"no backups in {folder}")


data_cli = HandledGroup("data", help="The DATA database as a whole.")


@data_cli.command("rebuild")
@click.option("--dry-run", is_flag=True, help="Show which archived files would be re-imported; change nothing "
              "(but the run history, which is first brought in line with DATA's run ledger).")
@click.option("--force", is_flag=True, help="Re-import even though DATA's workspace tables hold rows.")
def data_rebuild_command(dry_run, force):
    """Rebuild DATA: migrate, re-import the archived files of every succeeded import, run every transformation."""
    ctx = cli_context(echo_progress)
    report = rebuild.rebuild_data(ctx, force=force, dry_run=dry_run)
    for migration_id in report.migrations:
        click.echo(f"data: {'would apply' if dry_run else 'applied'} {migration_id}")
    for run_id in report.reconciled:
        click.echo(f"history: run {run_id} ended as DATA's run ledger says")
    for integration_id, files in report.plan.items():
        for planned in files:
            click.echo(f"{integration_id}: {'would re-import' if dry_run else 're-imported'} {planned.file_name} "
                       f"(run {planned.run_id}, sha256 {planned.sha256[:12]})")
    for outcome in report.imported:
        click.echo(f"  run {outcome.run_id}: {outcome.file_name}: {outcome.status}, {outcome.rows_written} rows")
    for outcome in report.transformed:
        click.echo(f"built {outcome.transformation}: {outcome.rows} rows (run {outcome.run_id})")
    for table, rows in report.reference_rows.items():
        click.echo(f"{table}: {rows} rows")

