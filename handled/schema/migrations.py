"""Split migrations with yoyo: one migration set, tracking schema and lock per database.

``migrations/primary`` holds the SQL for ``config`` + ``customer`` and is tracked
in the schema ``_yoyo_primary`` of the PRIMARY database; ``migrations/data``
holds ``workspace`` + ``reference`` and is tracked in ``_yoyo_data`` of the DATA
database. In single-database mode both tracking schemas live in one database,
side by side, so neither set ever sees the other's history.

Migrations run over their own direct connection (never a transaction pooler):
yoyo needs session state (its search_path, our advisory lock).
"""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg2
import psycopg2.errors
from yoyo import get_backend, read_migrations

from handled.db import direct_connection
from handled.errors import HandledError, first_line
from handled.schema.objects import MigrationState, classify_migrations
from handled.settings import DatabaseConfig, Settings

ROOT = Path(__file__).resolve().parent.parent.parent
MIGRATIONS_DIR = ROOT / "migrations"
TARGETS = ("primary", "data")
TRACKING_SCHEMAS = {"primary": "_yoyo_primary", "data": "_yoyo_data"}
LOCK_KEYS = {"primary": 7_320_001, "data": 7_320_002}


class MigrationError(HandledError):
    """A migration command cannot go on; the message says why and what to do."""


@dataclass
class Target:
    name: str
    config: DatabaseConfig
    directory: Path
    tracking_schema: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.config.display()})"


@dataclass
class TargetStatus:
    target: Target
    states: list[MigrationState] = field(default_factory=list)
    unknown_applied: list[str] = field(default_factory=list)

    @property
    def pending(self) -> list[MigrationState]:
        return [s for s in self.states if s.verdict == "pending"]

    @property
    def problems(self) -> list[str]:
        found = [s.describe() for s in self.states if s.verdict not in ("applied", "pending")]
        found += [f"tracking lists {m}, which has no file in {self.target.directory}" for m in self.unknown_applied]
        return found


def resolve_targets(settings: Settings, selection: str = "all") -> list[Target]:
    """The migration targets for 'primary', 'data' or 'all'."""
    if selection not in (*TARGETS, "all"):
        raise MigrationError(f"Unknown target {selection!r}; use primary, data or all.")
    names = TARGETS if selection == "all" else (selection,)
    targets = []
    for name in names:
        # In single mode DATA is PRIMARY's database, so it migrates over the same direct URL.
        side = name if settings.split_db_mode else "primary"
        config = settings.direct_database(side)
        if config.pgbouncer:
            raise MigrationError(
                f"{config.variable} goes through PgBouncer (pgbouncer=true) and migrations need a "
                "direct connection; set PRIMARY_MIGRATION_URL to the server's own address."
            )
        targets.append(Target(name, config, MIGRATIONS_DIR / name, TRACKING_SCHEMAS[name]))
    return targets


def yoyo_uri(target: Target) -> str:
    config = target.config
    auth = ""
    if config.user:
        auth = quote(config.user, safe="")
        if config.password:
            auth += ":" + quote(config.password, safe="")
        auth += "@"
    host = config.host or ""
    port = f":{config.port}" if config.port else ""
    params = {**config.libpq_params, "schema": target.tracking_schema}
    return f"postgresql://{auth}{host}{port}/{quote(config.dbname)}?{urlencode(params)}"


def open_backend(target: Target):
    """A yoyo backend whose tracking tables live in the target's own schema."""
    with direct_connection(target.config, "migrate") as conn, conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{target.tracking_schema}"')
    return get_backend(yoyo_uri(target), migration_table="_yoyo_migration")


def load_migrations(target: Target):
    """The target's migrations, read (and their SQL split into statements by yoyo) once per content
    of the directory (names and sha256 of its files: reading is cheap, parsing is not), so a process
    that migrates, checks and reports many times parses them once."""
    directory = target.directory
    state = tuple(sorted((p.name, hashlib.sha256(p.read_bytes()).hexdigest())
                         for p in directory.iterdir() if p.is_file()))
    return _read_migrations(str(directory), state)


@lru_cache(maxsize=16)
def _read_migrations(directory: str, state: tuple):
    migrations = read_migrations(directory)
    for migration in migrations:
        migration.load()
    return migrations


def applied_ids(conn, target: Target) -> dict[str, object]:
    """Migration id -> applied time, read from the target's tracking table (if any)."""
    table = f'"{target.tracking_schema}"._yoyo_migration'
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (table,))
        if cur.fetchone()[0] is None:
            return {}
        try:
            cur.execute(f"SELECT migration_id, applied_at_utc FROM {table} ORDER BY applied_at_utc")
        except psycopg2.errors.InsufficientPrivilege:
            conn.rollback()
            raise MigrationError(
                f"The role {target.config.user or conn.info.user} of {target.config.variable} may not read "
                f"{target.tracking_schema}._yoyo_migration, where the {target.name} migrations are tracked; "
                "use the owner's URL (the one `flask db create-roles` printed).") from None
        return {row[0]: row[1] for row in cur.fetchall()}


def target_status(target: Target, conn=None) -> TargetStatus:
    """Applied, pending and inconsistent migrations of one target (read-only)."""
    if conn is None:
        with direct_connection(target.config, "migrate") as own:
            return target_status(target, own)
    migrations = load_migrations(target)
    applied = applied_ids(conn, target)
    states = classify_migrations(conn, migrations, applied)
    known = {m.id for m in migrations}
    return TargetStatus(target, states, [m for m in applied if m not in known])


@contextmanager
def migration_lock(target: Target, timeout: float):
    """Session advisory lock per target, held on its own connection for the whole
    command: a second migrator waits, then fails clearly. The lock dies with its
    connection, so a killed migrator never leaves it behind."""
    key = LOCK_KEYS[target.name]
    deadline = time.monotonic() + timeout
    with direct_connection(target.config, "migrate") as conn, conn.cursor() as cur:
        while True:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            if cur.fetchone()[0]:
                break
            if time.monotonic() >= deadline:
                cur.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND granted",
                            (key,))
                holder = cur.fetchone()
                who = f" (PostgreSQL backend pid {holder[0]})" if holder else ""
                raise MigrationError(
                    f"Another migration of the {target.name} database is running{who}; "
                    f"waited {timeout:g} s. Try again when it has finished.")
            time.sleep(0.2)
        yield  # closing the connection releases the lock


@contextmanager
def locked_backend(target: Target, timeout: float):
    """The target's yoyo backend, opened and used only while holding its lock."""
    with migration_lock(target, timeout):
        backend = open_backend(target)
        try:
            yield backend
        finally:
            backend.connection.close()


def migrate(target: Target, dry_run: bool = False, lock_timeout: float = 30) -> list[str]:
    """Apply the target's pending migrations; returns their ids (only lists them on dry run)."""
    with locked_backend(target, lock_timeout) as backend:
        status = target_status(target, backend.connection)
        if status.problems:
            raise MigrationError(
                f"{target.name}: tracking and the database disagree ({status.problems[0]}); "
                f"run 'flask db check --target {target.name}' and 'flask db migrate --repair'."
            )
        todo = backend.to_apply(load_migrations(target))
        if not dry_run:
            try:
                backend.apply_migrations(todo)
            except psycopg2.Error as exc:   # yoyo rolled the failing migration's transaction back
                raise MigrationError(_failed_migration(target, backend, todo, exc)) from None
            keep_grants(target)
        return [m.id for m in todo]


def _failed_migration(target: Target, backend, todo, exc: Exception) -> str:
    """The sentence for a migration that failed part way: which one, why, and what was kept."""
    backend.connection.rollback()
    applied = applied_ids(backend.connection, target)
    kept = [m.id for m in todo if m.id in applied]
    failed = next((m.id for m in todo if m.id not in applied), "?")
    before = f"; {', '.join(kept)} applied before it and stay applied" if kept else ""
    return (f"{target.name}: migration {failed} failed and was rolled back, nothing of it is applied "
            f"({first_line(exc)}){before}. Fix it and run 'flask db migrate' again.")


def keep_grants(target: Target) -> None:
    """Where ``flask db create-roles`` made roles, hand what the migrations created to them
    (reference tables to the builder, rights to the runtime role): handled/schema/roles.py."""
    from handled.schema.roles import after_migrate

    with direct_connection(target.config, "migrate", autocommit=False) as conn:
        after_migrate(conn, target.name)
        conn.commit()


def rollback(target: Target, count: int = 1, dry_run: bool = False, lock_timeout: float = 30) -> list[str]:
    """Roll back the last ``count`` applied migrations of the target, newest first."""
    with locked_backend(target, lock_timeout) as backend:
        todo = backend.to_rollback(load_migrations(target))
        todo = todo.__class__(list(todo)[:count], todo.post_apply)
        if not dry_run:
            backend.rollback_migrations(todo)
        return [m.id for m in todo]


def repair(target: Target, dry_run: bool = False, lock_timeout: float = 30) -> list[str]:
    """Bring tracking in line with the catalog where that is provably safe.

    Returns one sentence per change. Raises MigrationError, changing nothing,
    when any disagreement cannot be proven safe to fix.
    """
    with locked_backend(target, lock_timeout) as backend:
        status = target_status(target, backend.connection)
        unsafe = [s.describe() for s in status.states if s.verdict in ("partly-applied", "partly-present")]
        unsafe += [f"tracking lists {m}, which has no migration file" for m in status.unknown_applied]
        if unsafe:
            raise MigrationError(
                f"{target.name}: repair refuses to guess, nothing was changed: " + "; ".join(unsafe)
                + ". Restore from a backup or fix the schema by hand, then run repair again."
            )
        by_id = {m.id: m for m in load_migrations(target)}
        to_mark = [by_id[s.id] for s in status.states if s.verdict == "untracked"]
        to_unmark = [by_id[s.id] for s in status.states if s.verdict == "missing"]
        changes = [f"{target.name}: marked {m.id} as applied (all its objects exist)" for m in to_mark]
        changes += [f"{target.name}: unmarked {m.id} (tracked as applied but none of its objects exist); "
                    "'flask db migrate' will apply it again" for m in to_unmark]
        if not dry_run:
            backend.mark_migrations(to_mark)
            backend.unmark_migrations(to_unmark)
        return changes
