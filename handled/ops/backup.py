"""Backups of one side (primary or data) with pg_dump, and verified restores; what every
kind of backup shares (names, manifests, the folder, retention, gpg).

``create_backup`` opens a REPEATABLE READ transaction on the side's database,
exports its snapshot, checksums every table inside it, and runs
``pg_dump -Fc --snapshot=...`` on that same snapshot: the JSON manifest written
beside the dump therefore describes exactly the rows in the dump. Only the
side's schemas and its migration tracking schema are dumped, so in single mode
the two sides are still backed up (and restored) separately.

``restore_backup`` runs pg_restore into a database that does not yet hold the
side's schemas, then checksums every restored table and compares it with the
manifest (or with a live database given by the operator when there is none).
The import archive has its own kind of backup (ops/archive_backup.py), the
verification of a backup file its module (ops/backup_verify.py), and a backup's
run history and off-host copy theirs (ops/backup_runs.py).

At rest: BACKUP_DIR is kept 0700 and every backup and manifest 0600, whatever the
umask. With BACKUP_ENCRYPTION_PASSPHRASE set, pg_dump's output goes through
``gpg --symmetric`` (AES256) before it touches the disk, and a restore pipes it
back through ``gpg --decrypt``; the passphrase reaches gpg through a pipe, and
the database password reaches pg_dump/pg_restore through PGPASSWORD: neither is
ever on a command line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from contextlib import contextmanager
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
from handled.settings import DatabaseConfig, Settings, redact_url

STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"
# handled-<side>-<database>-<stamp>.dump, and handled-archive-<stamp>.tgz (ops/archive_backup.py)
NAME_PATTERN = re.compile(r"^handled-(?:(?P<side>primary|data)-.+-(?P<dumped>\d{8}T\d{12}Z)\.dump"
                          r"|(?P<archive>archive)-(?P<archived>\d{8}T\d{12}Z)\.tgz)$")
TARGETS = ("primary", "data", "archive")


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
    """A connection string without the password for the command line, and the environment
    carrying it (PGPASSWORD): a process's environment is readable only by its own user and
    root, its command line by every local user (ps, /proc/<pid>/cmdline)."""
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    if config.password:
        env["PGPASSWORD"] = config.password
    return config.dsn(password=False), env


def private_folder(folder: Path) -> Path:
    """BACKUP_DIR, created 0700 if missing and tightened to 0700 (with every backup and
    manifest in it to 0600) if it was made more open, e.g. by an older handled."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for path in folder.glob("handled-*"):
        if path.is_file() and stat.S_IMODE(path.stat().st_mode) != 0o600:
            os.chmod(path, 0o600)
    return folder


def private_file(path: Path) -> int:
    """A new file only its owner may read or write (0600 whatever the umask), opened for writing."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)


# --- gpg: symmetric encryption with BACKUP_ENCRYPTION_PASSPHRASE ------------------------------------

@contextmanager
def gpg_command(passphrase: str, *operation: str):
    """The gpg command for ``operation``, its passphrase given through a pipe (``--passphrase-fd``),
    never the command line or the environment; a throw-away GnuPG home, its agent stopped after."""
    home = tempfile.mkdtemp(prefix="handled-gpg-")
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, passphrase.encode() + b"\n")
        os.close(write_end)
        yield (["gpg", "--homedir", home, "--batch", "--quiet", "--no-symkey-cache", "--pinentry-mode", "loopback",
                "--passphrase-fd", str(read_end), *operation, "--output", "-"], read_end)
    finally:
        os.close(read_end)
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _pipe(first: list[str], second: list[str], *, stdin=None, stdout, env: dict, pass_fds=()) -> tuple:
    """Run ``first | second``; return both (returncode, stderr) pairs."""
    one = subprocess.Popen(first, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           pass_fds=pass_fds if first[0] == "gpg" else ())
    try:
        two = subprocess.Popen(second, stdin=one.stdout, stdout=stdout, stderr=subprocess.PIPE, env=env,
                               pass_fds=pass_fds if second[0] == "gpg" else ())
    finally:
        one.stdout.close()
    two_err = two.communicate()[1]
    one_err = one.stderr.read()
    one.stderr.close()
    one.wait()
    return (one.returncode, one_err.decode(errors="replace").strip()), (two.returncode,
                                                                         two_err.decode(errors="replace").strip())


def _schema_args(side: str) -> list[str]:
    args = []
    for schema in (*side_schemas(side), migrations.TRACKING_SCHEMAS[side]):
        args += ["--schema", schema]
    return args


def create_backup(ctx: Context, side: str, now: datetime | None = None, on_snapshot=None) -> BackupResult:
    """Dump one side on one snapshot into BACKUP_DIR with its manifest, then apply retention.

    ``on_snapshot()`` is called once the snapshot is taken: a row PRIMARY commits then (the
    backup's own run) is not in the dump, so a restored PRIMARY never shows it running."""
    settings = ctx.settings
    config = side_config(settings, side)
    folder = private_folder(Path(settings.backup_dir))
    now = now or datetime.now(timezone.utc)
    path = folder / f"handled-{side}-{config.dbname}-{now.strftime(STAMP_FORMAT)}.dump"
    partial = path.with_suffix(".dump.partial")
    with direct_connection(config, "backup", autocommit=False) as conn:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        prepare_session(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_export_snapshot()")
            snapshot = cur.fetchone()[0]
        if on_snapshot is not None:
            on_snapshot()
        tables = tables_in_order(conn, side)
        sums = checksums(conn, tables)
        dsn, env = libpq_command_args(config)
        dump = ["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}",
                *_schema_args(side), dsn]
        error = _dump_into(partial, dump, env, settings.backup_encryption_passphrase)
    if error:
        partial.unlink(missing_ok=True)
        raise OpsError(f"{error[0]} of {config.display()} failed: {redact_url(error[1])}")
    partial.rename(path)
    manifest = write_manifest(path, side, config, now, sums, encrypted=bool(settings.backup_encryption_passphrase))
    deleted = apply_retention(folder, side, settings.backup_keep, settings.backup_max_age_days, keep=path)
    audit.record(ctx, "backup.create", "database", side, config.display(), {
        "file": path.name, "bytes": path.stat().st_size, "tables": len(sums),
        "rows": sum(s.rows for s in sums.values()), "retention_deleted": [p.name for p in deleted]})
    return BackupResult(path, manifest, sums, deleted)


def _dump_into(partial: Path, dump: list[str], env: dict, passphrase: str | None) -> tuple[str, str] | None:
    """pg_dump into ``partial`` (0600), through ``gpg --symmetric`` when a passphrase is set, so no
    clear copy touches the disk; None, or (which tool, its words) when one failed."""
    out = private_file(partial)
    try:
        if not passphrase:
            done = subprocess.run(dump, stdout=out, stderr=subprocess.PIPE, env=env, text=True)
            return None if done.returncode == 0 else ("pg_dump", done.stderr.strip() or str(done.returncode))
        with gpg_command(passphrase, "--symmetric", "--cipher-algo", "AES256") as (gpg, fd):
            (dump_rc, dump_err), (gpg_rc, gpg_err) = _pipe(dump, gpg, stdout=out, env=env, pass_fds=(fd,))
        if dump_rc != 0:
            return "pg_dump", dump_err or str(dump_rc)
        return None if gpg_rc == 0 else ("gpg encryption", gpg_err or str(gpg_rc))
    finally:
        os.close(out)


def manifest_path(dump: Path) -> Path:
    return dump.with_suffix(".json")


def write_manifest(dump: Path, side: str, config: DatabaseConfig, now: datetime, sums: dict, *,
                   encrypted: bool = False) -> Path:
    manifest = {"side": side, "database": config.display(), "created_at": now.isoformat(),
                "file": dump.name, "bytes": dump.stat().st_size, "encrypted": encrypted,
                "tables": {name: {"rows": s.rows, "checksum": s.digest} for name, s in sums.items()}}
    return save_manifest(dump, manifest)


def save_manifest(backup: Path, manifest: dict) -> Path:
    """The manifest beside ``backup`` (same name, .json), 0600."""
    path = manifest_path(backup)
    with os.fdopen(private_file(path), "w") as handle:
        handle.write(json.dumps(manifest, indent=2) + "\n")
    return path


def read_manifest(dump: Path) -> dict | None:
    path = manifest_path(dump)
    return json.loads(path.read_text()) if path.exists() else None


def parse_name(name: str) -> tuple[str, datetime] | None:
    """(target, taken at) of a backup file's name; None for any other name."""
    match = NAME_PATTERN.match(name)
    if not match:
        return None
    stamp = match.group("dumped") or match.group("archived")
    taken = datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=timezone.utc)
    return match.group("side") or match.group("archive"), taken


def list_backups(folder: Path, side: str | None = None) -> list[tuple[Path, str, datetime]]:
    """(path, target, taken at) of every backup in the folder (of one target when given), newest first."""
    found = []
    for path in Path(folder).glob("handled-*"):
        parsed = parse_name(path.name)
        if parsed and (side is None or parsed[0] == side):
            found.append((path, *parsed))
    return sorted(found, key=lambda item: item[2], reverse=True)


def apply_retention(folder: Path, side: str, keep_count: int, max_age_days: int, keep: Path,
                    needed_by=None) -> list[Path]:
    """Delete this target's backups beyond the newest ``keep_count`` or older than
    ``max_age_days`` (0: no age limit); ``keep`` (the one just made) always stays, and so does
    every backup ``needed_by(the kept ones)`` names (an archive backup holding files a kept
    one lists)."""
    cutoff = datetime.now(timezone.utc) - timedelta(days=max_age_days) if max_age_days else None
    found = list_backups(folder, side)
    victims = [path for index, (path, _, taken) in enumerate(found)
               if path != keep and (index >= keep_count or (cutoff and taken < cutoff))]
    if needed_by is not None:
        spared = needed_by([path for path, _, _ in found if path not in victims])
        victims = [path for path in victims if path not in spared]
    for path in victims:
        path.unlink(missing_ok=True)
        manifest_path(path).unlink(missing_ok=True)
    return victims


def dump_side(dump: Path) -> str:
    """The target a backup file belongs to (primary, data or archive), from its manifest or name."""
    manifest = read_manifest(dump)
    if manifest:
        return manifest["side"]
    parsed = parse_name(dump.name)
    if parsed:
        return parsed[0]
    raise OpsError(f"{dump.name} is not named like a handled backup and has no manifest; cannot tell its side.")


def restore_backup(ctx: Context, dump: Path, target: DatabaseConfig,
                   compare_with: DatabaseConfig | None = None) -> RestoreResult:
    """Restore a dump into a database without this side's schemas and compare every table.

    The audit row goes to the running PRIMARY after pg_restore succeeded (skipped, with a
    log line, while that PRIMARY is down or has no audit log: a restore is often done then)."""
    dump = Path(dump)
    side = database_dump_side(dump)
    manifest = read_manifest(dump)
    if manifest is None and compare_with is None:
        raise OpsError(f"{manifest_path(dump).name} (the manifest written with the backup) is missing; give "
                       "--compare-with URL of the database the backup came from to verify against it.")
    create_database_if_missing(target)
    restore_into(ctx, dump, target, side)
    restored = checksums_of(target, side)
    if manifest is not None:
        expected, source = manifest_sums(manifest), f"the manifest {manifest_path(dump).name}"
    else:
        expected, source = checksums_of(compare_with, side), compare_with.display()
    result = RestoreResult(target.display(), source, compare(expected, restored))
    audit.record_in(ctx.settings.direct_database("primary"), ctx, "backup.restore", "database", side,
                    target.display(), {"file": dump.name, "compared_with": source, "verified": result.verified})
    return result


def database_dump_side(dump: Path) -> str:
    """The side of a pg_dump backup (primary or data); refuses a missing file and an archive backup."""
    if not dump.is_file():
        raise OpsError(f"There is no backup file {dump}.")
    side = dump_side(dump)
    if side not in ("primary", "data"):
        raise OpsError(f"{dump.name} is a backup of the {side}, not of a database.")
    return side


def manifest_sums(manifest: dict) -> dict[str, TableSum]:
    """The per-table row counts and checksums a manifest recorded, in its order."""
    return {name: TableSum(t["rows"], t["checksum"]) for name, t in manifest["tables"].items()}


def restore_into(ctx: Context, dump: Path, target: DatabaseConfig, side: str) -> None:
    """pg_restore ``dump`` (decrypted on the way when it is encrypted) into ``target``, an existing
    database without the side's schemas; raise OpsError with the tool's words when it fails."""
    encrypted = is_encrypted(dump)
    passphrase = ctx.settings.backup_encryption_passphrase
    if encrypted and not passphrase:
        raise OpsError(f"{dump.name} is encrypted (it is not a pg_dump file); set BACKUP_ENCRYPTION_PASSPHRASE "
                       "to the passphrase it was made with to restore it.")
    with direct_connection(target, "restore") as conn:
        present = sorted(existing_schemas(conn) & {*side_schemas(side), migrations.TRACKING_SCHEMAS[side]})
    if present:
        raise OpsError(f"{target.display()} already holds {', '.join(present)}; restore into an empty database "
                       "(or one without this side's schemas).")
    dsn, env = libpq_command_args(target)
    restore = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--dbname", dsn]
    if not encrypted:
        done = subprocess.run([*restore, str(dump)], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise OpsError(f"pg_restore into {target.display()} failed: "
                           f"{redact_url(done.stderr.strip()) or done.returncode}")
        return
    with open(dump, "rb") as source, gpg_command(passphrase, "--decrypt") as (gpg, fd):
        (gpg_rc, gpg_err), (rc, err) = _pipe(gpg, restore, stdin=source, stdout=subprocess.DEVNULL, env=env,
                                              pass_fds=(fd,))
    if gpg_rc != 0:
        raise OpsError(f"{dump.name} could not be decrypted with BACKUP_ENCRYPTION_PASSPHRASE "
                       f"({gpg_err.splitlines()[-1] if gpg_err else gpg_rc}); nothing usable was restored "
                       f"into {target.display()}: drop it and retry with the passphrase the backup was made with.")
    if rc != 0:
        raise OpsError(f"pg_restore into {target.display()} failed: {redact_url(err) or rc}")


PLAIN_MAGIC = {".dump": b"PGDMP", ".tgz": b"\x1f\x8b"}   # pg_dump's custom format; gzip


def is_encrypted(path: Path) -> bool:
    """A backup starts with its format's magic (pg_dump's PGDMP, gzip's); anything else must be
    gpg's output (an OpenPGP packet: its first byte has the high bit set)."""
    magic = PLAIN_MAGIC.get(path.suffix, b"PGDMP")
    with open(path, "rb") as handle:
        head = handle.read(len(magic))
    if head == magic:
        return False
    if not head or not head[0] & 0x80:
        kind = "a gzip'd tar" if path.suffix == ".tgz" else "a pg_dump custom-format file"
        raise OpsError(f"{path.name} is neither {kind} nor an encrypted backup.")
    return True


def checksums_of(config: DatabaseConfig, side: str) -> dict[str, TableSum]:
    with direct_connection(config, "restore", autocommit=False) as conn:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        prepare_session(conn)
        return checksums(conn, tables_in_order(conn, side))
