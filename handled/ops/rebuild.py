"""``flask data rebuild``: rebuild DATA from the source archive and PRIMARY's run history.

DATA holds nothing that cannot be made again: every workspace table is the
result of the imports recorded in config.import_runs (their files kept in
IMPORT_ARCHIVE_DIR by sha256), and every reference table is built from the
workspace by the transformations. So, into an empty (or lost) DATA database:

1. migrate the DATA side, and bring PRIMARY's run history in line with DATA's run
   ledger (handled/ledger.py: a run killed after its rows committed is counted as the
   success it was, so its file is replayed too);
2. for each integration, re-import the archived files of its succeeded runs
   (handled.integrations.service.rebuild_from_archive: the latest file for a
   replace-mode table, every content in import order for an upsert-mode one);
3. run every transformation in dependency order.

Nothing is started until every file the plan needs is found in the archive.
The re-imports and builds are recorded as new runs of the context's actor, so the
history shows the rebuild and who ran it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from handled import ledger, runs
from handled.context import Context
from handled.db import direct_connection
from handled.ops import OpsError
from handled.ops.tables import row_counts, tables_in_order
from handled.schema import migrations
from handled.settings import Settings


@dataclass
class PlannedFile:
    run_id: int
    file_name: str
    sha256: str
    archived: bool


@dataclass
class RebuildReport:
    dry_run: bool
    migrations: list[str] = field(default_factory=list)
    reconciled: list[int] = field(default_factory=list)   # runs whose history the ledger corrected
    plan: dict[str, list[PlannedFile]] = field(default_factory=dict)
    imported: list = field(default_factory=list)       # ImportOutcome
    transformed: list = field(default_factory=list)    # RunOutcome
    reference_rows: dict[str, int] = field(default_factory=dict)


def plan_rebuild(settings: Settings) -> dict[str, list[PlannedFile]]:
    """Per integration, the archived files that rebuild its table (from PRIMARY's history)."""
    from handled.integrations.archive import archived_path
    from handled.integrations.registry import all_integrations
    from handled.integrations.service import runs_to_rebuild

    plan = {}
    for integration in all_integrations():
        runs = runs_to_rebuild(integration)
        if runs:
            plan[integration.id] = [
                PlannedFile(r.id, r.file_name, r.file_sha256,
                            archived_path(settings.import_archive_dir, r.file_sha256).is_file()) for r in runs]
    return plan


def _data_target(settings: Settings) -> migrations.Target:
    return migrations.resolve_targets(settings, "data")[0]


def _workspace_rows(settings: Settings) -> dict[str, int]:
    with direct_connection(_data_target(settings).config, "rebuild") as conn:
        tables = [t for t in tables_in_order(conn, "data")
                  if t.schema == "workspace" and t.name != ledger.LEDGER_TABLE]   # bookkeeping, not rows
        return {name: count for name, count in row_counts(conn, tables).items() if count}


def rebuild_data(ctx: Context, *, force: bool = False, dry_run: bool = False) -> RebuildReport:
    """Migrate DATA, re-import every archived file the history names, run every transformation.

    Progress phases: ``reimport`` (one report per integration, counted), then ``transform``."""
    settings = ctx.settings
    report = RebuildReport(dry_run=dry_run)
    target = _data_target(settings)
    report.migrations = [state.id for state in migrations.target_status(target).pending] if dry_run \
        else migrations.migrate(target)
    report.reconciled = runs.reconcile_with_ledger()   # a correction of the record: done in a dry run too
    report.plan = plan_rebuild(settings)
    missing = [f"{name}: {f.file_name} (run {f.run_id}, sha256 {f.sha256[:12]}…)"
               for name, files in report.plan.items() for f in files if not f.archived]
    if missing:
        raise OpsError(f"The archive {settings.import_archive_dir} lacks {len(missing)} file(s) the history needs: "
                       + "; ".join(missing[:5]) + ". Restore the archive folder from its backup first.")
    if not report.plan:
        raise OpsError("config.import_runs has no succeeded import to rebuild from; import the source files "
                       "with 'flask integrations import' instead.")
    held = _workspace_rows(settings)
    if held and not force:
        raise OpsError(f"DATA already holds workspace rows ({', '.join(f'{k}: {v}' for k, v in held.items())}); "
                       "rebuild into an empty DATA database, or use --force to re-import over them.")
    if dry_run:
        return report
    _reimport(ctx, report)
    _transform(ctx, report)
    with direct_connection(target.config, "rebuild") as conn:
        tables = [t for t in tables_in_order(conn, "data") if t.schema == "reference"]
        report.reference_rows = row_counts(conn, tables)
    return report


def _reimport(ctx: Context, report: RebuildReport) -> None:
    from handled.integrations.service import ImportRequestError, rebuild_from_archive

    for done, integration_id in enumerate(report.plan, 1):
        ctx.progress("reimport", done, len(report.plan),
                     f"re-importing {integration_id} ({len(report.plan[integration_id])} file(s))")
        try:
            outcomes = rebuild_from_archive(ctx, integration_id)
        except ImportRequestError as exc:
            raise OpsError(str(exc)) from None
        report.imported += outcomes
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:
            raise OpsError(f"Re-importing {failed[0].file_name} into {integration_id} failed: {failed[0].message} "
                           f"(run {failed[0].run_id}); nothing after it was run.")


def _transform(ctx: Context, report: RebuildReport) -> None:
    from handled.transformations.service import TransformationFailed, run_transformations

    ctx.progress("transform", message="running every transformation")
    try:
        report.transformed = run_transformations(ctx, [], run_all=True)
    except TransformationFailed as exc:
        raise OpsError(str(exc)) from None
