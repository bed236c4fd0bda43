"""`flask backup verify FILE`: does a backup give back what its manifest says it holds?

A database backup is restored into a scratch database of its own on the server
BACKUP_VERIFY_URL names (default: DATA's, whose direct role then needs CREATEDB),
named ``<the backed-up database>_verify_<8 hex>``; every table is checksummed there and
compared with the manifest (row count and content checksum per table, taken at
create time on the dump's own snapshot). The scratch database is dropped whatever
happens (a failed restore, a difference, an error, SIGTERM: the CLI turns it into an
exception); one left by a process killed outright is dropped by the next verify,
if nobody is connected to it. An archive backup is checked file by file instead
(ops/archive_backup.py: every file's sha256, across the backups its manifest names).
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg2
from psycopg2 import sql

from handled.context import Context
from handled.db import ConnectionProblem, direct_connection
from handled.ops import OpsError
from handled.ops import archive_backup
from handled.ops.backup import (TARGETS, checksums_of, database_dump_side, dump_side, list_backups, manifest_path,
                                manifest_sums, read_manifest, restore_into)
from handled.ops.move import TableComparison
from handled.settings import DatabaseConfig, Settings

log = logging.getLogger("handled.ops")
MAX_NAME = 63   # PostgreSQL's identifier length


@dataclass
class VerifyReport:
    path: Path
    target: str                       # primary | data | archive
    scratch: str | None = None        # the scratch database (dropped), for a database backup
    tables: list[TableComparison] = field(default_factory=list)
    files: int = 0                    # archive files checked


def verify_backup(ctx: Context, path: Path) -> VerifyReport:
    """Check one backup file; raise OpsError with one sentence naming the first difference."""
    path = Path(path)
    if not path.is_file():
        raise OpsError(f"There is no backup file {path}.")
    target = dump_side(path)
    if target == "archive":
        return VerifyReport(path, target, files=archive_backup.verify_archive(ctx, path))
    side = database_dump_side(path)
    manifest = read_manifest(path)
    if manifest is None:
        raise OpsError(f"{manifest_path(path).name} (the manifest written with {path.name}) is missing; verify "
                       "compares the restored tables with it, so copy it back beside the backup.")
    server = scratch_server(ctx.settings)
    base = ctx.settings.database(side).dbname[:MAX_NAME - len("_verify_") - 8]
    drop_leftovers(server, base)
    scratch = replace(server, dbname=f"{base}_verify_{secrets.token_hex(4)}")
    report = VerifyReport(path, side, scratch=scratch.display())
    _create(server, scratch)
    try:
        ctx.progress("verify", message=f"restoring {path.name} into {scratch.dbname}")
        restore_into(ctx, path, scratch, side)
        restored = checksums_of(scratch, side)
    finally:
        _drop(server, scratch.dbname)
    expected = manifest_sums(manifest)
    report.tables = [TableComparison(name, total, restored.get(name)) for name, total in expected.items()]
    problem = first_difference(expected, restored)
    if problem:
        raise VerificationFailed(f"{path.name} does not match its manifest: {problem}.", report)
    return report


class VerificationFailed(OpsError):
    """A backup restored to something else than its manifest says; the report shows every table."""

    def __init__(self, message: str, report: VerifyReport):
        super().__init__(message)
        self.report = report


def first_difference(expected: dict, restored: dict) -> str | None:
    """The first table (in the manifest's order) whose restored rows differ, in words; None if none."""
    for name, want in expected.items():
        got = restored.get(name)
        if got is None:
            return f"{name} is missing from the restored copy (the manifest says {want.rows} rows)"
        if got != want:
            return (f"{name} has {got.rows} rows (checksum {got.digest}) once restored, the manifest says "
                    f"{want.rows} rows (checksum {want.digest})")
    extra = sorted(set(restored) - set(expected))
    if extra:
        return f"the restored copy holds {extra[0]}, which the manifest does not list"
    return None


def scratch_server(settings: Settings) -> DatabaseConfig:
    """Where scratch databases are made: BACKUP_VERIFY_URL, else DATA's direct URL's server and role."""
    if settings.backup_verify is not None:
        return settings.backup_verify
    data = settings.direct_database("data")
    return replace(data, dbname="postgres", variable=f"{data.variable} (BACKUP_VERIFY_URL unset)")


def _create(server: DatabaseConfig, scratch: DatabaseConfig) -> None:
    with direct_connection(server, "verify") as conn, conn.cursor() as cur:
        try:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch.dbname)))
        except psycopg2.errors.InsufficientPrivilege:
            raise OpsError(f"The role {server.user or 'in use'} of {server.variable} may not create the scratch "
                           f"database a verify restores into ({server.host or 'localhost'}:{server.port or 5432}); "
                           "set BACKUP_VERIFY_URL to a role with CREATEDB there.") from None


def _drop(server: DatabaseConfig, name: str) -> None:
    """Drop a scratch database, ending any session still in it; logged, not raised, when the
    server cannot be reached (the next verify drops it)."""
    try:
        with direct_connection(server, "verify") as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    except (ConnectionProblem, psycopg2.Error) as exc:
        log.warning("could not drop the scratch database %s: %s; the next verify drops it", name,
                    str(exc).strip().splitlines()[0])


def drop_leftovers(server: DatabaseConfig, base: str) -> list[str]:
    """Drop scratch databases of this kind that a killed verify left: owned by this role and
    without a session (a running verify's is in use, and DROP without FORCE refuses it)."""
    pattern = re.compile(rf"^{re.escape(base)}_verify_[0-9a-f]{{8}}$")
    dropped = []
    with direct_connection(server, "verify") as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles "
                    "WHERE rolname = current_user) AND starts_with(datname, %s)", (f"{base}_verify_",))
        for (name,) in cur.fetchall():
            if not pattern.match(name):
                continue
            try:
                cur.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
                dropped.append(name)
            except psycopg2.errors.ObjectInUse:
                continue
    for name in dropped:
        log.warning("dropped %s, a scratch database a verify that was killed left behind", name)
    return dropped


def newest_backup(folder: Path, target: str) -> Path:
    """The newest backup of ``target`` in BACKUP_DIR; refuses when there is none."""
    if target not in TARGETS:
        raise OpsError(f"Unknown backup target {target!r}; use one of {', '.join(TARGETS)}.")
    found = list_backups(Path(folder), target)
    if not found:
        raise OpsError(f"There is no {target} backup in {folder}; make one with "
                       f"'flask backup create --target {target}'.")
    return found[0][0]
