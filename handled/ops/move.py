"""Moving a side (primary or data) from one database to another: ``flask db split``
and ``flask db unsplit``.

One call of ``move_side``:

1. refuses when the source has pending migrations, or source and target are one database;
2. creates the target database if missing and migrates it to the same head;
3. reads the source inside one REPEATABLE READ, read-only transaction, so every
   table, checksum and sequence comes from one snapshot;
4. writes the target inside ONE transaction: truncate the side's tables, stream each
   table in foreign-key order, set the sequences, checksum every table on the
   target and compare with the snapshot's checksums; it commits only when all agree.

Why this is safe to rerun: an interrupted run (killed process, dropped connection,
failed verification) rolls its whole transaction back, so the target is left as
the migration made it and a rerun starts clean without --force. A run that
committed and was interrupted afterwards is recognised on rerun: the target equals
the source table for table, and the command only verifies and reports. A target
whose non-seed tables hold other rows is refused unless --force, which replaces
them. Tables filled by seed migrations (roles, permissions, carriers...) are
always replaced by the source's rows.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable

import psycopg2

from handled import audit
from handled.context import Context, Progress
from handled.db import ConnectionProblem, direct_connection
from handled.errors import first_line
from handled.ops import OpsError
from handled.ops.tables import Table, describe_table, prepare_session, row_counts, seeded_tables, tables_in_order
from handled.ops.transfer import (TableSum, checksums, restore_sequences, sequence_positions, stream_table,
                                  truncate_tables)
from handled.schema import migrations
from handled.schema.catalog import create_database_if_missing
from handled.settings import DatabaseConfig, SettingsError, parse_database_url

MOVE_LOCK_KEY = 7_320_101  # one writer per target database at a time

# Test seam: called with (table, target_connection) after each table is copied.
after_table_copied: list[Callable] = []


@dataclass
class TableComparison:
    table: str
    source: TableSum
    target: TableSum | None

    @property
    def ok(self) -> bool:
        return self.source.matches(self.target)


@dataclass
class MoveReport:
    side: str
    source: str
    target: str
    dry_run: bool = False
    outcome: str = ""
    created_database: bool = False
    migrations: list[str] = field(default_factory=list)
    tables: list[TableComparison] = field(default_factory=list)
    sequences: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return bool(self.tables) and all(t.ok for t in self.tables)


def target_config(option: str, url: str) -> DatabaseConfig:
    """Parse a URL given on the command line; the option name appears in errors."""
    try:
        config = parse_database_url(option, url)
    except SettingsError as exc:
        raise OpsError(str(exc)) from None
    if config.pgbouncer:
        raise OpsError(f"{option} goes through PgBouncer (pgbouncer=true); copying and migrating need a "
                       "direct connection: give the server's own address.")
    return config


def _target(side: str, config: DatabaseConfig) -> migrations.Target:
    return migrations.Target(side, config, migrations.MIGRATIONS_DIR / side, migrations.TRACKING_SCHEMAS[side])


def _check_source(side: str, source: DatabaseConfig) -> None:
    status = migrations.target_status(_target(side, source))
    if status.pending or status.problems:
        raise OpsError(f"The source {source.display()} is not fully migrated on the {side} side; "
                       f"run 'flask db migrate --target {side}' (and 'flask db check') first.")


def _prepare_target(side: str, config: DatabaseConfig, report: MoveReport, dry_run: bool) -> bool:
    """Create and migrate the target (or say what that would do); True when it exists now."""
    exists = _database_exists(config)
    if dry_run:
        report.created_database = not exists
        pending = [state.id for state in migrations.target_status(_target(side, config)).pending] if exists \
            else [m.id for m in migrations.load_migrations(_target(side, config))]  # read-only either way
        report.migrations = pending
        return exists
    report.created_database = create_database_if_missing(config)
    report.migrations = migrations.migrate(_target(side, config))
    return True


def _database_exists(config: DatabaseConfig) -> bool:
    try:
        with direct_connection(config, "copy"):
            return True
    except ConnectionProblem as exc:
        if "does not exist" in str(exc) and repr(config.dbname) in str(exc):
            return False
        raise OpsError(str(exc)) from None


def _open(connections: ExitStack, config: DatabaseConfig, snapshot: bool = False):
    """A transaction-mode copy connection, closed when ``connections`` closes."""
    conn = connections.enter_context(direct_connection(config, "copy", autocommit=False))
    if snapshot:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    prepare_session(conn)
    return conn


def _match_target_tables(target, tables: list[Table]) -> list[Table]:
    """The target's description of each source table; refuse if any differs."""
    mirrored = []
    for table in tables:
        twin = describe_table(target, Table(table.schema, table.name))
        if not twin.columns:
            raise OpsError(f"The target has no table {table.qualified}; both sides must be migrated to the same head.")
        missing = [c for c in table.columns if c not in twin.columns]
        if missing:
            raise OpsError(f"The target's {table.qualified} lacks the columns {', '.join(missing)}; "
                           "both sides must be migrated to the same head.")
        mirrored.append(twin)
    return mirrored


def _holding_data(target, side: str, tables: list[Table]) -> list[str]:
    seeded = seeded_tables(side)
    counts = row_counts(target, tables)
    return [f"{name} ({count} rows)" for name, count in counts.items() if count and name not in seeded]


def compare(source_sums: dict[str, TableSum], target_sums: dict[str, TableSum]) -> list[TableComparison]:
    return [TableComparison(name, total, target_sums.get(name)) for name, total in source_sums.items()]


def move_side(ctx: Context, side: str, source_config: DatabaseConfig, target: DatabaseConfig, *,
              force: bool = False, dry_run: bool = False) -> MoveReport:
    """Copy one side's schemas from source to target, verified; see the module docstring.

    Progress phases: ``migrate`` (one report per migration), ``snapshot``, then ``copy``
    (one report per table, counted)."""
    if source_config.identity == target.identity:
        raise OpsError(f"The source and the target are the same database ({target.display()}).")
    report = MoveReport(side, source_config.display(), target.display(), dry_run=dry_run)
    _check_source(side, source_config)
    exists = _prepare_target(side, target, report, dry_run)
    for migration_id in report.migrations:
        ctx.progress("migrate", message=f"target: {'would apply' if dry_run else 'applied'} {migration_id}")
    with ExitStack() as connections:  # closes the target's connection, then the source's
        source = _open(connections, source_config, snapshot=True)
        try:
            tables = tables_in_order(source, side)
            ctx.progress("snapshot", message=f"source snapshot taken; checksumming {len(tables)} tables")
            source_sums = checksums(source, tables)
            positions = sequence_positions(source, tables)
            if not exists or (dry_run and report.migrations):
                report.outcome = "dry run"  # nothing to inspect before the target is migrated
                report.tables = compare(source_sums, {})
                return report
            _write_target(side, source, tables, source_sums, positions, _open(connections, target), report,
                          force, ctx.progress)
        except psycopg2.Error as exc:
            raise OpsError(f"The copy into {report.target} stopped ({first_line(exc)}); nothing was committed "
                           "there, so running the same command again starts clean.") from None
    if report.outcome == "copied":
        _warn_if_source_moved(side, source_config, tables, source_sums, report)
    return report


def _write_target(side, source, tables, source_sums, positions, target, report, force, progress: Progress):
    """Copy into the target in one transaction; commit only when every checksum agrees."""
    with target.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (MOVE_LOCK_KEY,))
        if not cur.fetchone()[0]:
            raise OpsError(f"Another split or unsplit is writing into {report.target}; let it finish first.")
    target_tables = _match_target_tables(target, tables)
    held = _holding_data(target, side, target_tables)
    if held:
        existing = compare(source_sums, checksums(target, target_tables))
        if all(row.ok for row in existing):
            report.outcome, report.tables = "already identical", existing
            report.notes.append("The target already holds exactly the source's rows (an earlier run "
                                "finished); nothing was copied.")
            return
        if not force:
            raise OpsError(f"The target {report.target} already holds data: {', '.join(held[:5])}"
                           + (" ..." if len(held) > 5 else "")
                           + "; use --force to replace it with the source's rows.")
        report.notes.append(f"--force: replaced rows in {', '.join(held)}")
    if report.dry_run:
        report.outcome, report.tables = "dry run", compare(source_sums, {})
        return
    _copy_all(source, target, tables, target_tables, progress)
    report.sequences = restore_sequences(target, target_tables, positions)
    report.tables = compare(source_sums, checksums(target, target_tables))
    if not report.verified:
        target.rollback()
        bad = ", ".join(t.table for t in report.tables if not t.ok)
        report.outcome = "verification failed"
        raise VerificationFailed(report, f"Verification failed for {bad}; the target was left unchanged "
                                         "(the copy was rolled back).")
    target.commit()
    report.outcome = "copied"


def _copy_all(source, target, tables, target_tables, progress: Progress) -> None:
    truncate_tables(target, target_tables)
    for done, table in enumerate(tables, 1):
        stream_table(source, target, table)
        progress("copy", done, len(tables), f"copied {table.qualified}")
        for hook in after_table_copied:
            hook(table, target)


def _warn_if_source_moved(side, source_config, tables, source_sums, report) -> None:
    """Rows written to the source after the snapshot are not in the target: say so."""
    with direct_connection(source_config, "copy") as conn:
        prepare_session(conn)
        now = checksums(conn, tables)
    moved = [name for name, total in source_sums.items() if now.get(name) != total]
    if moved:
        report.notes.append(f"WARNING: the source changed during the copy ({', '.join(moved)}); stop the app "
                            "and rerun with --force so those rows are not lost.")


class VerificationFailed(OpsError):
    def __init__(self, report: MoveReport, message: str):
        super().__init__(message)
        self.report = report


def split(ctx: Context, to_primary: DatabaseConfig, **options) -> MoveReport:
    """Single → split: copy config + customer to a new PRIMARY database."""
    if ctx.settings.split_db_mode:
        raise OpsError("handled is already in split mode (SPLIT_DB_MODE=true); split starts from one database.")
    report = move_side(ctx, "primary", ctx.settings.direct_database("primary"), to_primary, **options)
    _record(ctx, "db.split", [to_primary, ctx.settings.direct_database("primary")], [report])
    return report


def unsplit(ctx: Context, to: DatabaseConfig, **options) -> list[MoveReport]:
    """Split → single: bring both sides into one database (the rollback of split)."""
    settings = ctx.settings
    if not settings.split_db_mode:
        raise OpsError("handled is in single mode (SPLIT_DB_MODE=false); there is nothing to unsplit.")
    sources = {"primary": settings.direct_database("primary"), "data": settings.direct_database("data")}
    if sources["primary"].pgbouncer:
        raise OpsError("PRIMARY_DATABASE_URL goes through PgBouncer; set PRIMARY_MIGRATION_URL to a direct "
                       "address so the copy can read PRIMARY in one snapshot.")
    reports = [move_side(ctx, side, source, to, **options)
               for side, source in sources.items() if source.identity != to.identity]
    _record(ctx, "db.unsplit", [to, sources["primary"]], reports)
    return reports


def _record(ctx: Context, action: str, databases: list[DatabaseConfig], reports: list[MoveReport]) -> None:
    """One audit row for a verified split or unsplit, written after it into the target (the
    PRIMARY that follows) and the source PRIMARY alike, so the two stay identical."""
    if not reports or any(report.dry_run for report in reports):
        return
    target = databases[0]
    audit.record_in(databases, ctx, action, "database", "primary", target.display(), {
        "to": target.display(),
        "sides": {r.side: {"from": r.source, "outcome": r.outcome, "tables": len(r.tables)} for r in reports}})


def format_comparison(rows: list[TableComparison], left: str = "source", right: str = "target") -> list[str]:
    """A per-table comparison as aligned text lines."""
    width = max([len(t.table) for t in rows] + [5])
    lines = [f"{'table':<{width}}  {left + ' rows':>11}  {right + ' rows':>11}  {left + ' sum':<16}  "
             f"{right + ' sum':<16}  result"]
    for row in rows:
        target_rows = "-" if row.target is None else str(row.target.rows)
        target_sum = "-" if row.target is None else row.target.digest
        result = "ok" if row.ok else ("not copied" if row.target is None else "DIFFERENT")
        lines.append(f"{row.table:<{width}}  {row.source.rows:>11}  {target_rows:>11}  {row.source.digest:<16}  "
                     f"{target_sum:<16}  {result}")
    return lines
