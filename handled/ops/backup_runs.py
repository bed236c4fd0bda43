"""Backups as runs: each target made and each file verified is a row of config.backup_runs.

``create_backups`` makes one target or all three (PRIMARY, then DATA, then the import
archive: taken after PRIMARY, the archive holds every file PRIMARY's history names),
each recorded as its own run and each file it wrote copied off the host with
BACKUP_COPY_COMMAND. A target that fails does not stop the next one; the run says why.
A backup whose copy failed is written but counts as failed: what an alert on
``handled_backup_last_success_timestamp_seconds`` must catch is a host whose backups
no longer leave it.

The copy command gets the file's path as one argument of its own (``{file}``, or
appended), never through a shell, and an environment without handled's variables
(database URLs, SECRET_KEY, the backup passphrase). Its words are never printed or
recorded: they may hold a credential. A failure names the program, its exit status
and the last line it printed, with the command's other words masked.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from handled import audit, heartbeat, runs
from handled.context import Context
from handled.db import primary_db
from handled.errors import HandledError, first_line, redact_url
from handled.models import BackupRun
from handled.ops.archive_backup import create_archive_backup
from handled.ops.backup import TARGETS, create_backup, dump_side
from handled.ops.backup_verify import VerifyReport, verify_backup
from handled.settings import Settings, variables
from handled.timeutil import utcnow

log = logging.getLogger("handled.ops")
FILE_WORD = "{file}"
MASK_FROM = 6          # command words this long or longer are masked in what the command printed
EXCERPT = 300          # characters of the command's last line kept in a message


@dataclass
class BackupOutcome:
    target: str
    run_id: int
    succeeded: bool
    message: str                 # the run's message: a summary, or why it failed
    path: Path | None = None     # the backup written (also when only its copy failed)
    result: object = None        # BackupResult | ArchiveBackupResult


def create_backups(ctx: Context, target: str) -> list[BackupOutcome]:
    """Back up ``target`` (primary, data, archive) or ``all`` of them in that order."""
    return [create_one(ctx, name) for name in (TARGETS if target == "all" else (target,))]


def create_one(ctx: Context, target: str) -> BackupOutcome:
    """One target, recorded as a run: the backup, then its copy off the host.

    A database backup's run starts once its snapshot is taken, so PRIMARY's dump never holds
    its own run (restored, it would show a backup that never finished)."""
    run_ids: list[int] = []

    def start() -> None:
        if not run_ids:
            run_ids.append(_start(ctx, "create", target).id)

    with heartbeat.Heartbeat():   # beating before the row exists, so no sweep takes it for dead
        try:
            if target == "archive":
                start()
                made = create_archive_backup(ctx)
            else:
                made = create_backup(ctx, target, on_snapshot=start)
        except HandledError as exc:
            start()
            runs.fail_run("backup", run_ids[0], str(exc))
            return BackupOutcome(target, run_ids[0], False, str(exc))
        except BaseException as exc:
            if run_ids:   # else it failed before its snapshot, maybe for want of PRIMARY: nothing to record in
                runs.fail_run("backup", run_ids[0], f"The backup failed unexpectedly ({first_line(exc)}); "
                              "see the log.")
            raise
        return _finish(ctx, target, run_ids[0], made)


def _finish(ctx: Context, target: str, run_id: int, made) -> BackupOutcome:
    """Copy a written backup off the host and end its run: failed when the copy failed or when an
    archive backup lacks files the history needs (the backup stays written either way)."""
    fields = {"file_name": made.path.name, "file_size": made.path.stat().st_size,
              "rows_written": sum(t.rows for t in made.tables.values()) if target != "archive" else 0}
    summary = _summary(target, made)
    problems = [_incomplete(made)] if target == "archive" and made.lacking else []
    if ctx.settings.backup_copy_command:
        failed_copy = copy_off_host(ctx.settings, [made.path, made.manifest])
        fields["copy_status"] = "failed" if failed_copy else "copied"
        if failed_copy:
            problems.append(f"copying it off this host failed: {failed_copy}")
        else:
            summary += "; copied off this host"
    if problems:
        message = f"{made.path.name} was written, but " + "; and ".join(problems)
        runs.fail_run("backup", run_id, message, **fields)
        return BackupOutcome(target, run_id, False, message, made.path, made)
    runs.finish_run("backup", run_id, "succeeded", message=summary, **fields)
    return BackupOutcome(target, run_id, True, summary, made.path, made)


def _incomplete(made) -> str:
    """Why an archive backup cannot rebuild DATA: files the history needs are not in the archive."""
    return (f"the archive lacks {len(made.lacking)} file(s) that 'flask data rebuild' needs (first: {made.lacking[0]}); "
            "restore them from an earlier archive backup or import them again, then back up again.")


def _start(ctx: Context, operation: str, target: str) -> BackupRun:
    return runs.start_run("backup", actor_id=ctx.actor.id, actor_email=audit.actor_text(ctx.actor),
                          operation=operation, target=target)


def _summary(target: str, made) -> str:
    if target == "archive":
        return (f"{made.files} archived file(s) listed, {made.stored} new stored "
                f"({made.stored_bytes} bytes) in {made.path.name}")
    return f"{len(made.tables)} tables, {sum(t.rows for t in made.tables.values())} rows in {made.path.name}"


# --- BACKUP_COPY_COMMAND -------------------------------------------------------------------------

def copy_argv(command: tuple[str, ...], path: Path) -> list[str]:
    """The command's words with the path as one word of its own: in place of {file}, else last."""
    if FILE_WORD in command:
        return [str(path) if word == FILE_WORD else word for word in command]
    return [*command, str(path)]


def copy_environment() -> dict:
    """This process's environment without handled's own variables (URLs with passwords, SECRET_KEY,
    the backup passphrase) and libpq's password: the copy tool needs its own credentials only."""
    own = {var.name for var in variables()} | {"PGPASSWORD"}
    return {name: value for name, value in os.environ.items() if name not in own}


def copy_off_host(settings: Settings, paths: list[Path]) -> str | None:
    """Run BACKUP_COPY_COMMAND once per file; None when every copy succeeded, else why (one sentence)."""
    command = settings.backup_copy_command
    program = os.path.basename(command[0])
    for path in paths:
        try:
            process = subprocess.Popen(copy_argv(command, path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, env=copy_environment(), start_new_session=True)
        except OSError as exc:
            return f"BACKUP_COPY_COMMAND's program {program} could not be started ({exc.strerror})"
        try:
            output, _ = process.communicate(timeout=settings.backup_copy_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)   # its own session: the program and anything it started
            process.communicate()
            return (f"BACKUP_COPY_COMMAND ({program}) did not finish copying {path.name} within "
                    f"BACKUP_COPY_TIMEOUT ({settings.backup_copy_timeout} s) and was stopped")
        if process.returncode != 0:
            said = _last_line(output, command)
            return (f"BACKUP_COPY_COMMAND ({program}) exited with status {process.returncode} copying "
                    f"{path.name}" + (f": {said}" if said else ""))
        log.info("copied %s off this host with BACKUP_COPY_COMMAND (%s)", path.name, program)
    return None


def _last_line(output: bytes, command: tuple[str, ...]) -> str:
    """The last line the command printed, with URL passwords and the command's own words masked."""
    lines = [line.strip() for line in output.decode(errors="replace").splitlines() if line.strip()]
    if not lines:
        return ""
    line = redact_url(lines[-1])
    for word in sorted(command[1:], key=len, reverse=True):
        if len(word) >= MASK_FROM and word != FILE_WORD:
            line = line.replace(word, "***")
    return line[:EXCERPT]


# --- verify, as a run ----------------------------------------------------------------------------

def verify_recorded(ctx: Context, path: Path) -> VerifyReport:
    """Verify one backup file (backup_verify.verify_backup), recorded as a run of its target."""
    with heartbeat.Heartbeat():
        run = _start(ctx, "verify", dump_side(Path(path)))
        try:
            report = verify_backup(ctx, path)
        except HandledError as exc:
            runs.fail_run("backup", run.id, str(exc), file_name=Path(path).name)
            raise
        except BaseException as exc:
            runs.fail_run("backup", run.id, f"The verify failed unexpectedly ({first_line(exc)}); see the log.",
                          file_name=Path(path).name)
            raise
        what = f"{report.files} file(s)" if report.target == "archive" else f"{len(report.tables)} tables"
        runs.finish_run("backup", run.id, "succeeded", message=f"{Path(path).name}: {what} match the manifest",
                        file_name=Path(path).name, file_size=Path(path).stat().st_size)
        return report


# --- what /system and /metrics show --------------------------------------------------------------

LAST_RUNS_SQL = """
    SELECT DISTINCT ON (operation, target) operation, target, status, message, file_name, started_at, finished_at
    FROM config.backup_runs ORDER BY operation, target, id DESC"""
LAST_SUCCESS_SQL = """
    SELECT DISTINCT ON (operation, target) operation, target, file_name, finished_at
    FROM config.backup_runs WHERE status = 'succeeded' ORDER BY operation, target, finished_at DESC"""


def backup_status() -> list[dict]:
    """Per target that has any run: its last backup run and last successful one, the same for
    verifies (dead runs are swept first, so a killed backup does not show as running)."""
    runs.sweep_dead_runs("backup")
    with primary_db.atomic():
        last = {(op, target): {"status": status, "message": message, "file_name": name, "started_at": started,
                               "finished_at": finished}
                for op, target, status, message, name, started, finished in primary_db.execute_sql(LAST_RUNS_SQL)}
        now = utcnow()
        good = {(op, target): {"file_name": name, "finished_at": finished,
                               "age_seconds": (now - finished).total_seconds()}
                for op, target, name, finished in primary_db.execute_sql(LAST_SUCCESS_SQL)}
    return [{"target": target, "last": last.get(("create", target)), "success": good.get(("create", target)),
             "verify": last.get(("verify", target)), "verified": good.get(("verify", target))}
            for target in TARGETS if ("create", target) in last or ("verify", target) in last]
