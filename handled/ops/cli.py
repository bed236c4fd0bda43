"""CLI of the operations tools: ``flask db split|unsplit|prune-leftovers`` (added to the
``flask db`` group of handled.schema.cli by handled.ops.init_app), ``flask backup create|restore|verify|list``
and ``flask data rebuild``. Thin: parse, call, print; HandledGroup turns errors into one line."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from handled.cli_support import HandledGroup, echo_progress
from handled.context import cli_context
from handled.ops import OpsError, archive_backup, backup, backup_runs, backup_verify, move, rebuild
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


backup_cli = HandledGroup("backup", help="Backups of PRIMARY, DATA (pg_dump) and the import archive; verified "
                                          "restores.")
TARGET_CHOICE = click.Choice([*backup.TARGETS, "all"])


@backup_cli.command("create")
@click.option("--target", type=TARGET_CHOICE, required=True,
              help="primary or data (pg_dump of that side's schemas, also in single mode), archive (the import "
                   "archive, incremental by sha256), or all three in that order.")
def backup_create_command(target):
    """Back up into BACKUP_DIR with a JSON manifest, copy off the host (BACKUP_COPY_COMMAND); apply retention."""
    ctx = cli_context(echo_progress)
    outcomes = backup_runs.create_backups(ctx, target)
    for outcome in outcomes:
        made = outcome.result
        if made is None:
            continue
        size = made.path.stat().st_size
        if outcome.target == "archive":
            click.echo(f"wrote {made.path} ({size} bytes, {made.files} files listed, {made.stored} new stored)")
        else:
            rows = sum(t.rows for t in made.tables.values())
            click.echo(f"wrote {made.path} ({size} bytes, {len(made.tables)} tables, {rows} rows)")
        click.echo(f"manifest {made.manifest}")
        for path in made.deleted:
            click.echo(f"retention: deleted {path}")
        if outcome.succeeded and ctx.settings.backup_copy_command:
            click.echo(f"copied {made.path.name} and its manifest off this host (BACKUP_COPY_COMMAND)")
    _raise_first([o.message for o in outcomes if not o.succeeded])


def _raise_first(problems: list[str]) -> None:
    """Every failure but the first on stderr, then the first as the command's error (exit 1)."""
    for problem in problems[1:]:
        click.echo(f"Also failed: {problem}", err=True)
    if problems:
        raise OpsError(problems[0])


@backup_cli.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@url_option("--to", "Direct URL of an empty database (created if missing), for a PRIMARY or DATA backup.")
@click.option("--compare-with", metavar="URL", default=None,
              help="Verify against this live database instead of the backup's manifest.")
@click.option("--to-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="An archive backup: the folder to restore the files into (default IMPORT_ARCHIVE_DIR).")
def backup_restore_command(file, to, to_env, compare_with, to_dir):
    """Restore a backup, verified: a database backup into an empty database (every table compared),
    an archive backup into the archive folder (every file's sha256 checked).

    An encrypted backup is decrypted with BACKUP_ENCRYPTION_PASSPHRASE."""
    if file.is_file() and backup.dump_side(file) == "archive":
        if to or to_env or compare_with:
            raise OpsError(f"{file.name} is an archive backup: it restores into a folder (--to-dir DIR, by "
                           "default IMPORT_ARCHIVE_DIR), not a database.")
        done = archive_backup.restore_archive(cli_context(echo_progress), file, to_dir)
        click.echo(f"restored {file} into {done.target}: {done.restored} file(s) written, {done.present} already "
                   "there; every file's sha256 checked")
        return
    if to_dir is not None:
        raise OpsError("--to-dir is for archive backups; a database backup restores into --to URL.")
    target = given_url("--to", to, to_env)
    other = move.target_config("--compare-with", compare_with) if compare_with else None
    result = backup.restore_backup(cli_context(), file, target, other)
    click.echo(f"restored {file} into {result.target}; compared with {result.compared_with}:")
    for line in move.format_comparison(result.tables, left="backup", right="restored"):
        click.echo("  " + line)
    result.check_verified()
    click.echo("every table matches")


class Terminated(OpsError):
    """SIGTERM during a verify (systemd stopping it): raised so its scratch database is dropped."""


@contextmanager
def terminate_as_error(what: str):
    """SIGTERM raises Terminated in the main thread while the block runs, so `finally` blocks run."""
    def stop(signum, frame):
        raise Terminated(f"The {what} was stopped (SIGTERM) before it finished.")
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@backup_cli.command("verify")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--newest", type=TARGET_CHOICE, default=None,
              help="Verify the newest backup of this target in BACKUP_DIR (all: of each target) instead of FILE.")
def backup_verify_command(file, newest):
    """Restore a backup into a scratch database (always dropped) and compare every table with its manifest;
    an archive backup: check every file's sha256. Exit 1 naming the first difference."""
    if (file is None) == (newest is None):
        raise OpsError("Name the backup to verify: a FILE, or --newest primary|data|archive|all.")
    ctx = cli_context(echo_progress)
    folder = Path(ctx.settings.backup_dir)
    problems = []
    with terminate_as_error("verify"):
        for target in ([] if newest is None else backup.TARGETS if newest == "all" else [newest]):
            try:
                path = backup_verify.newest_backup(folder, target)
            except OpsError as exc:
                problems.append(str(exc))
                continue
            problems += _verify_one(ctx, path)
        if file is not None:
            problems += _verify_one(ctx, file)
    _raise_first(problems)


def _verify_one(ctx, path: Path) -> list[str]:
    """Verify one file and print what it found; the problem, if any, as a list of one."""
    try:
        report = backup_runs.verify_recorded(ctx, path)
    except backup_verify.VerificationFailed as exc:
        for line in move.format_comparison(exc.report.tables, left="manifest", right="restored"):
            click.echo("  " + line)
        return [str(exc)]
    except OpsError as exc:
        return [str(exc)]
    if report.target == "archive":
        click.echo(f"verified {path}: {report.files} archived file(s), every sha256 matches")
    else:
        for line in move.format_comparison(report.tables, left="manifest", right="restored"):
            click.echo("  " + line)
        click.echo(f"verified {path}: restored into a scratch database (dropped), all {len(report.tables)} "
                   "tables match the manifest")
    return []


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

