"""Backups of one side (primary or data) with pg_dump, and verified restores.

``create_backup`` opens a REPEATABLE READ transaction on the side's database,
exports its snapshot, checksums every table inside it, and runs
``pg_dump -Fc --snapshot=...`` on that same snapshot: the JSON manifest written
beside the dump therefore describes exactly the rows in the dump. Only the
side's schemas and its migration tracking schema are dumped, so in single mode
the two sides are still backed up (and restored) separately.

``restore_backup`` runs pg_restore into a database that does not yet hold the
side's schemas, then checksums every restored table and compares it with the
manifest (or with a live database given by the operator when there is none).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from handled import audit
from handled.context import Context
from handled.db import direct_connection
from handled.ops import OpsError
from handled.ops.move import TableComparison, compare
from handled.ops.tables import prepare_session, side_schemas, tables_in_order
from handled.ops.transfer import TableSum, checksums
from handled.schema import migrations
from handled.schema.catalog import create_database_if_missing, existing_schemas
from handled.settings import DatabaseConfig, Settings

STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"
NAME_PATTERN = re.compile(r"^handled-(primary|data)-.+-(\d{8}T\d{12}Z)\.dump$")


@dataclass
class BackupResult:
    path: Path
    manifest: Path
    tables: dict[str, TableSum]
    deleted: list[Path] = field(default_factory=list)


@dataclass
class RestoreResult:
    target: str
    compared_with: str
    tables: list[TableComparison]

    @property
    def verified(self) -> bool:
        return bool(self.tables) and all(t.ok for t in self.tables)

    def check_verified(self) -> None:
        """Raise the error a restore that differs from its backup ends with.

        Not raised by ``restore_backup`` itself, so the caller can first show the
        per-table comparison that says where the difference is.
        """
        if not self.verified:
            bad = ", ".join(t.table for t in self.tables if not t.ok)
            raise OpsError(f"The restored database differs from the backup in {bad}.")


def side_config(settings: Settings, side: str) -> DatabaseConfig:
    """The direct connection for a side (pg_dump cannot run through a transaction pooler)."""
    config = settings.direct_database(side)
    if config.pgbouncer:
        raise OpsError(f"{config.variable} goes through PgBouncer; set PRIMARY_MIGRATION_URL to PRIMARY's own "
                       "address so pg_dump can use a direct connection.")
    return config


def libpq_command_args(config: DatabaseConfig) -> tuple[str, dict]:
    """A connection string without the password (which goes in PGPASSWORD, out of ps)."""
    dsn = " ".join(part for part in config.dsn().split(" ") if not part.startswith("password="))
    env = dict(os.environ)
    if config.password:
        env["PGPASSWORD"] = config.password
    return dsn, env


def _schema_args(side: str) -> list[str]:
    args = []
    for schema in (*side_schemas(side), migrations.TRACKING_SCHEMAS[side]):
        args += ["--schema", schema]
    return args


def create_backup(ctx: Context, side: str, now: datetime | None = None) -> BackupResult:
    """Dump one side on one snapshot into BACKUP_DIR with its manifest, then apply retention."""
    settings = ctx.settings
    config = side_config(settings, side)
    folder = Path(settings.backup_dir)
    folder.mkdir(parents=True, exist_ok=True)
    now = now or datetime.now(timezone.utc)
    path = folder / f"handled-{side}-{config.dbname}-{now.strftime(STAMP_FORMAT)}.dump"
    partial = path.with_suffix(".dump.partial")
    with direct_connection(config, "backup", autocommit=False) as conn:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        prepare_session(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_export_snapshot()")
            snapshot = cur.fetchone()[0]
        tables = tables_in_order(conn, side)
        sums = checksums(conn, tables)
        dsn, env = libpq_command_args(config)
        done = subprocess.run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                               f"--snapshot={snapshot}", *_schema_args(side), "--file", str(partial), dsn],
                              env=env, capture_output=True, text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise OpsError(f"pg_dump of {config.display()} failed: {done.stderr.strip() or done.returncode}")
    partial.rename(path)
    manifest = write_manifest(path, side, config, now, sums)
    deleted = apply_retention(folder, side, settings.backup_keep, settings.backup_max_age_days, keep=path)
    audit.record(ctx, "backup.create", "database", side, config.display(), {
        "file": path.name, "bytes": path.stat().st_size, "tables": len(sums),
        "rows": sum(s.rows for s in sums.values()), "retention_deleted": [p.name for p in deleted]})
    return BackupResult(path, manifest, sums, deleted)


def manifest_path(dump: Path) -> Path:
    return dump.with_suffix(".json")


def write_manifest(dump: Path, side: str, config: DatabaseConfig, now: datetime, sums: dict) -> Path:
    manifest = {"side": side, "database": config.display(), "created_at": now.isoformat(),
                "file": dump.name, "bytes": dump.stat().st_size,
                "tables": {name: {"rows": s.rows, "checksum": s.digest} for name, s in sums.items()}}
    path = manifest_path(dump)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def read_manifest(dump: Path) -> dict | None:
    path = manifest_path(dump)
    return json.loads(path.read_text()) if path.exists() else None


def list_backups(folder: Path, side: str | None = None) -> list[tuple[Path, str, datetime]]:
    """(path, side, taken at) of every backup in the folder, newest first."""
    found = []
    for path in Path(folder).glob("handled-*.dump"):
        match = NAME_PATTERN.match(path.name)
        if match and (side is None or match.group(1) == side):
            taken = datetime.strptime(match.group(2), STAMP_FORMAT).replace(tzinfo=timezone.utc)
            found.append((path, match.group(1), taken))
    return sorted(found, key=lambda item: item[2], reverse=True)


def apply_retention(folder: Path, side: str, keep_count: int, max_age_days: int, keep: Path) -> list[Path]:
    """Delete this side's backups beyond the newest ``keep_count`` or older than
    ``max_age_days`` (0: no age limit); ``keep`` (the one just made) always stays."""
    cutoff = datetime.now(timezone.utc) - timedelta(days=max_age_days) if max_age_days else None
    deleted = []
    for index, (path, _, taken) in enumerate(list_backups(folder, side)):
        if path == keep:
            continue
        if index >= keep_count or (cutoff and taken < cutoff):
            path.unlink(missing_ok=True)
            manifest_path(path).unlink(missing_ok=True)
            deleted.append(path)
    return deleted


def dump_side(dump: Path) -> str:
    match = NAME_PATTERN.match(dump.name)
    manifest = read_manifest(dump)
    if manifest:
        return manifest["side"]
    if match:
        return match.group(1)
    raise OpsError(f"{dump.name} is not named like a handled backup and has no manifest; cannot tell its side.")


def restore_backup(ctx: Context, dump: Path, target: DatabaseConfig,
                   compare_with: DatabaseConfig | None = None) -> RestoreResult:
    """Restore a dump into a database without this side's schemas and compare every table.

    The audit row goes to the running PRIMARY after pg_restore succeeded (skipped, with a
    log line, while that PRIMARY is down or has no audit log: a restore is often done then)."""
    dump = Path(dump)
    if not dump.is_file():
        raise OpsError(f"There is no backup file {dump}.")
    side = dump_side(dump)
    manifest = read_manifest(dump)
    if manifest is None and compare_with is None:
        raise OpsError(f"{manifest_path(dump).name} (the manifest written with the backup) is missing; give "
                       "--compare-with URL of the database the backup came from to verify against it.")
    create_database_if_missing(target)
    with direct_connection(target, "restore") as conn:
        present = sorted(existing_schemas(conn) & {*side_schemas(side), migrations.TRACKING_SCHEMAS[side]})
    if present:
        raise OpsError(f"{target.display()} already holds {', '.join(present)}; restore into an empty database "
                       "(or one without this side's schemas).")
    dsn, env = libpq_command_args(target)
    done = subprocess.run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--dbname", dsn,
                           str(dump)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise OpsError(f"pg_restore into {target.display()} failed: {done.stderr.strip() or done.returncode}")
    restored = _checksums_of(target, side)
    if manifest is not None:
        expected = {name: TableSum(t["rows"], t["checksum"]) for name, t in manifest["tables"].items()}
        source = f"the manifest {manifest_path(dump).name}"
    else:
        expected, source = _checksums_of(compare_with, side), compare_with.display()
    result = RestoreResult(target.display(), source, compare(expected, restored))
    audit.record_in(ctx.settings.direct_database("primary"), ctx, "backup.restore", "database", side,
                    target.display(), {"file": dump.name, "compared_with": source, "verified": result.verified})
    return result


def _checksums_of(config: DatabaseConfig, side: str) -> dict[str, TableSum]:
    with direct_connection(config, "restore", autocommit=False) as conn:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        prepare_session(conn)
        return checksums(conn, tables_in_order(conn, side))
