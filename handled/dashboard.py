"""The home page's operations dashboard: what needs attention, for the signed-in user.

Each section is read only when the actor holds its permission:

- sources (``run_imports``): per integration, its last successful import and how old
  that is, flagged when older than ``integrations.registry.REFRESH_EVERY``;
- reference tables (``run_transformations``): last successful build, its rows (from
  the run history, never a count of the table), and whether it is stale (the rule of
  ``transformations.history.stale_reason``);
- failed runs (each kind by ``jobs.KIND_PERMISSIONS``): the newest failures of the
  last ``FAILED_RUNS_DAYS`` days, each with the page that tells its story;
- facilities without coverage (``view_customers``): active facilities whose origin
  ZIP3 has no row in the delivery matrix.

Everything but the last lives in PRIMARY's run history: one grouped query per
section. The coverage check is one facilities query on PRIMARY and one probe of
the matrix's index on DATA for all their ZIP3s at once; when DATA is down (or the
caller says it is) that section carries a sentence instead. Nothing here is Flask:
the view (home.py) turns run ids into links.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from handled.context import Context
from handled.db import data_db, primary_db
from handled.errors import first_line
from handled.integrations.registry import all_integrations, refresh_every
from handled.jobs.queue import KIND_PERMISSIONS
from handled.models import Facility
from handled.timeutil import utcnow
from handled.transformations.history import last_builds, stale_reason
from handled.transformations.registry import TRANSFORMATIONS

log = logging.getLogger("handled.dashboard")

FAILED_RUNS_DAYS = 14
FAILED_RUNS_LIMIT = 10
COVERAGE_UNAVAILABLE = ("Facility coverage cannot be checked while the DATA database is not answering; "
                        "it shows again when DATA is back.")
COVERAGE_FAILED = ("Facility coverage could not be read from the delivery matrix just now; "
                   "the coverage page shows each facility in full.")

# Per integration: its latest successful import, and over the file names it has
# succeeded with, the oldest one's latest success (a per-origin file kind is only
# as fresh as its most forgotten origin).
SOURCES_SQL = """
WITH ok AS (
    SELECT id, integration, file_name, finished_at, rows_written
    FROM config.import_runs WHERE status = 'succeeded' AND finished_at IS NOT NULL),
per_file AS (
    SELECT integration, file_name, max(finished_at) AS finished_at FROM ok GROUP BY integration, file_name),
spread AS (
    SELECT integration, min(finished_at) AS oldest, count(*) AS files FROM per_file GROUP BY integration),
latest AS (
    SELECT DISTINCT ON (integration) integration, id, file_name, finished_at, rows_written
    FROM ok ORDER BY integration, finished_at DESC)
SELECT latest.integration, latest.id, latest.file_name, latest.finished_at, latest.rows_written,
       spread.oldest, spread.files
FROM latest JOIN spread USING (integration)
"""

# One SELECT per kind of run, joined by UNION ALL; ``resolved``: a later run of the
# same subject succeeded.
FAILED_SQL = {
    "import": """
        SELECT 'import', r.id, r.integration, r.file_name, r.message, r.finished_at, r.created_by_email,
               NULL::text, EXISTS (SELECT 1 FROM config.import_runs s WHERE s.integration = r.integration
                                   AND s.status = 'succeeded' AND s.id > r.id)
        FROM config.import_runs r WHERE r.status = 'failed' AND r.started_at > %s""",
    "transformation": """
        SELECT 'transformation', r.id, r.transformation, NULL::text, r.message, r.finished_at,
               r.created_by_email, r.job_id,
               EXISTS (SELECT 1 FROM config.transformation_runs s WHERE s.transformation = r.transformation
                       AND s.status = 'succeeded' AND s.id > r.id)
        FROM config.transformation_runs r WHERE r.status = 'failed' AND r.started_at > %s""",
    "export": """
        SELECT 'export', r.id, r.export, NULL::text, r.message, r.finished_at, r.created_by_email, NULL::text,
               EXISTS (SELECT 1 FROM config.export_runs s WHERE s.export = r.export
                       AND s.status = 'succeeded' AND s.id > r.id)
        FROM config.export_runs r WHERE r.status = 'failed' AND r.started_at > %s""",
}

# Which of the given ZIP3s are no origin in the matrix: one primary-key probe each, in one
# round trip. LATERAL ... LIMIT 1 keeps it a probe per ZIP3 at any size (an anti-join
# could be planned as a hash join over all 11M rows).
UNCOVERED_SQL = """
SELECT z.zip3 FROM unnest(%s::text[]) AS z(zip3)
LEFT JOIN LATERAL (SELECT 1 AS hit FROM reference.delivery_matrix m WHERE m.origin_zip3 = z.zip3 LIMIT 1) AS found
       ON true
WHERE found.hit IS NULL
"""


@dataclass
class SourceRow:
    integration_id: str
    name: str
    file_hint: str
    refresh_every: timedelta
    last_run_id: int | None = None
    file_name: str | None = None
    finished_at: datetime | None = None
    rows: int | None = None
    files: int = 0
    measured_at: datetime | None = None   # what the age is taken from (the oldest file for per-origin kinds)
    age: str | None = None
    overdue: bool = False


@dataclass
class TableRow:
    transformation_id: str
    name: str
    target: str
    built_at: datetime | None
    age: str | None
    rows: int | None
    stale: str | None
    building: bool = False        # a run of it is going now


@dataclass
class FailedRun:
    kind: str
    run_id: int
    subject: str                 # integration, transformation or export id
    subject_name: str            # what a person calls it
    file_name: str | None
    message: str
    finished_at: datetime | None
    age: str | None
    by: str | None
    job_id: str | None
    resolved: bool


@dataclass
class Dashboard:
    sources: list[SourceRow] | None = None        # None: not for this actor
    tables: list[TableRow] | None = None
    failed: list[FailedRun] | None = None
    failed_kinds: list[str] = field(default_factory=list)
    uncovered: list[Facility] | None = None
    active_facilities: int = 0
    coverage_problem: str | None = None           # why the coverage section could not be read

    @property
    def empty(self) -> bool:
        return self.sources is None and self.tables is None and self.failed is None and self.uncovered is None


def ago(when: datetime | None, now: datetime) -> str | None:
    """'3 days ago' and the like: the age a person reads at a glance."""
    if when is None:
        return None
    seconds = max(0, int((now - when).total_seconds()))
    for limit, unit, size in ((3600, "minute", 60), (2 * 86400, "hour", 3600), (60 * 86400, "day", 86400),
                              (730 * 86400, "month", 30 * 86400), (None, "year", 365 * 86400)):
        if limit is None or seconds < limit:
            if seconds < 60:
                return "just now"
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return None  # unreachable


def home_dashboard(ctx: Context, *, data_available: bool = True) -> Dashboard:
    """The sections ``ctx.actor`` may see; ``data_available=False`` skips the DATA read."""
    can = ctx.actor.can
    now = utcnow()
    board = Dashboard()
    if can("run_imports") or can("run_transformations"):
        imports = {row[0]: row for row in primary_db.execute_sql(SOURCES_SQL).fetchall()}
        if can("run_imports"):
            board.sources = sources(imports, now)
        if can("run_transformations"):
            board.tables = reference_tables({key: row[3] for key, row in imports.items()}, now)
    board.failed_kinds = [kind for kind in FAILED_SQL if can(KIND_PERMISSIONS[kind])]
    if board.failed_kinds:
        board.failed = failed_runs(board.failed_kinds, now)
    if can("view_customers"):
        facilities = list(Facility.select().where(Facility.active).order_by(Facility.code))
        board.active_facilities = len(facilities)
        board.uncovered = []
        if not data_available:
            board.coverage_problem = COVERAGE_UNAVAILABLE
        elif facilities:
            try:
                missing = uncovered_zip3s({f.zip3 for f in facilities})
            except Exception as exc:  # DATA went away since the banner's probe, ...: say so, keep the page
                log.warning("home: coverage check failed: %s", first_line(exc))
                board.coverage_problem = COVERAGE_FAILED
            else:
                board.uncovered = [f for f in facilities if f.zip3 in missing]
    return board


def sources(facts: dict[str, tuple], now: datetime) -> list[SourceRow]:
    """One row per integration from SOURCES_SQL's rows (by integration id)."""
    rows = []
    for integration in all_integrations():
        row = SourceRow(integration.id, integration.name, integration.file_hint, refresh_every(integration.id))
        found = facts.get(integration.id)
        if found:
            _, row.last_run_id, row.file_name, row.finished_at, row.rows, oldest, row.files = found
            row.measured_at = oldest if integration.mode == "upsert" else row.finished_at
            row.age = ago(row.finished_at, now)
            row.overdue = now - row.measured_at > row.refresh_every
        rows.append(row)
    return rows


def reference_tables(imports: dict[str, datetime], now: datetime) -> list[TableRow]:
    """One row per transformation; ``imports``: each integration's last successful import's end."""
    builds = last_builds()
    building = {tid for (tid,) in primary_db.execute_sql(
        "SELECT DISTINCT transformation FROM config.transformation_runs WHERE status = 'running'").fetchall()}
    rows = []
    for t in TRANSFORMATIONS.values():
        done = builds.get(t.id)
        rows.append(TableRow(t.id, t.name, t.qualified_target, done.finished_at if done else None,
                             ago(done.finished_at, now) if done else None,
                             done.rows_written if done else None, stale_reason(t, builds, imports),
                             t.id in building))
    return rows


def failed_runs(kinds: list[str], now: datetime) -> list[FailedRun]:
    since = now - timedelta(days=FAILED_RUNS_DAYS)
    sql = " UNION ALL ".join(FAILED_SQL[kind] for kind in kinds)
    sql = f"SELECT * FROM ({sql}) AS failed ORDER BY 6 DESC NULLS FIRST, 2 DESC LIMIT {FAILED_RUNS_LIMIT}"
    rows = primary_db.execute_sql(sql, [since] * len(kinds)).fetchall()
    names = {("import", i.id): i.name for i in all_integrations()}
    names.update({("transformation", t.id): t.name for t in TRANSFORMATIONS.values()})
    return [FailedRun(kind, run_id, subject, names.get((kind, subject), subject), file_name, message or "No reason was recorded.", finished_at,
                      ago(finished_at, now), by, job_id, bool(resolved))
            for kind, run_id, subject, file_name, message, finished_at, by, job_id, resolved in rows]


def uncovered_zip3s(zip3s: set[str]) -> set[str]:
    """Those of ``zip3s`` that are no origin in the delivery matrix (DATA)."""
    return {row[0] for row in data_db.execute_sql(UNCOVERED_SQL, (sorted(zip3s),)).fetchall()}
