"""Run history of transformations in PRIMARY (config.transformation_runs).

Only PRIMARY is read or written here; what a run builds lives in DATA (build_runner.py).
"""

from __future__ import annotations

from datetime import timezone

from handled import runs
from handled.db import primary_db
from handled.errors import Conflict
from handled.models import ImportRun, TransformationRun
from handled.transformations.registry import Transformation



class AlreadyRunning(Conflict):
    """A run of this transformation is going; the message says which."""

    def __init__(self, run: TransformationRun):
        self.run = run
        who = f" by {run.created_by_email}" if run.created_by_email else ""
        job = f", job {run.job_id}" if run.job_id else ""
        super().__init__(
            f"{run.transformation} is already running: run #{run.id} started "
            f"{run.started_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC{who} (phase {run.phase or 'starting'}{job}); "
            "wait for it to finish.")


def sweep_dead_runs(transformation_id: str | None = None) -> list[int]:
    """Mark failed the running runs (of one transformation) whose worker is gone (runs.py)."""
    where = {"transformation": transformation_id} if transformation_id else {}
    return runs.sweep_dead_runs("transformation", **where)


def start_run(transformation_id: str, user_id: int | None = None, user_email: str | None = None,
              job_id: str | None = None) -> TransformationRun:
    """Record a new running run, or raise AlreadyRunning naming the one that is going."""
    sweep_dead_runs(transformation_id)
    with primary_db.atomic():
        # serialise check-and-insert per transformation across processes and hosts
        primary_db.execute_sql(
            "SELECT pg_advisory_xact_lock(hashtext('handled.transformation_runs'), hashtext(%s))",
            (transformation_id,))
        going = running_run(transformation_id)
        if going is not None:
            raise AlreadyRunning(going)
        return runs.start_run("transformation", actor_id=user_id, actor_email=user_email,
                              transformation=transformation_id, phase="queued", job_id=job_id)


def running_run(transformation_id: str) -> TransformationRun | None:
    return (TransformationRun.select()
            .where((TransformationRun.transformation == transformation_id)
                   & (TransformationRun.status == "running"))
            .order_by(TransformationRun.id.desc()).first())


def record_phase(run_id: int, phase: str) -> None:
    runs.record_phase("transformation", run_id, phase)


def finish_run(run_id: int, status: str, *, rows: int = 0, timings: dict | None = None,
               message: str | None = None) -> None:
    values = dict(phase=status)
    if status == "succeeded":
        values["rows_written"] = rows
    if timings is not None:
        values["phase_timings"] = timings
    runs.finish_run("transformation", run_id, status, message=message, **values)


def last_run(transformation_id: str) -> TransformationRun | None:
    return (TransformationRun.select().where(TransformationRun.transformation == transformation_id)
            .order_by(TransformationRun.id.desc()).first())


def last_success(transformation_id: str) -> TransformationRun | None:
    return runs.last_success("transformation", transformation_id)


def recent_runs(transformation_id: str | None = None, limit: int = 20) -> list[TransformationRun]:
    return runs.recent_runs("transformation", transformation_id, limit)


def source_freshness(t: Transformation) -> dict[str, object]:
    """Per source integration: when its last successful import finished (None: never)."""
    fresh = {}
    for integration in t.source_integrations:
        latest = (ImportRun.select(ImportRun.finished_at)
                  .where((ImportRun.integration == integration) & (ImportRun.status == "succeeded"))
                  .order_by(ImportRun.finished_at.desc()).first())
        fresh[integration] = latest.finished_at if latest else None
    return fresh


def staleness(t: Transformation) -> str | None:
    """Why ``t`` needs a rebuild (a sentence), or None when it is up to date."""
    builds = {tid: last_success(tid) for tid in (t.id, *t.depends_on)}
    return stale_reason(t, builds, source_freshness(t))


def stale_reason(t: Transformation, builds: dict, imports: dict) -> str | None:
    """The one staleness rule, over facts already read: ``builds`` maps transformation ids to
    their last successful run (anything with ``started_at`` and ``finished_at``; missing or
    None: never built), ``imports`` integration ids to their last successful import's end."""
    done = builds.get(t.id)
    if done is None:
        return "never built"
    for integration in t.source_integrations:
        finished = imports.get(integration)
        if finished is not None and finished > done.started_at:
            return f"{integration} was imported since the last build"
    for dep in t.depends_on:
        dep_done = builds.get(dep)
        if dep_done is None:
            return f"{dep} has never been built"
        if dep_done.finished_at > done.started_at:
            return f"{dep} was rebuilt since"
    return None


def last_builds() -> dict[str, TransformationRun]:
    """Every transformation's last successful run, in one query (the home page)."""
    return {run.transformation: run for run in (
        TransformationRun.select()
        .where(TransformationRun.status == "succeeded")
        .order_by(TransformationRun.transformation, TransformationRun.finished_at.desc())
        .distinct(TransformationRun.transformation))}
