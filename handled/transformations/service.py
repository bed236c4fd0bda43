"""Run transformations (from the CLI, a page or a background job) and describe them.

The build itself runs on direct DATA connections of its own (build_runner.py),
so it never shares a connection with the run history written to PRIMARY. Its
phases go straight from the build thread to the run history and the caller's
progress sink; if the calling thread is interrupted (Ctrl-C, job timeout), the
build is cancelled, drops its scratch tables and leaves the live one serving.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from handled import heartbeat, jobs
from handled.context import NO_PROGRESS, Progress
from handled.errors import HandledError
from handled.settings import Settings, get_settings
from handled.timeutil import utcnow
from handled.transformations import history
from handled.transformations.build_plan import PHASES, BuildFailed
from handled.transformations.build_runner import build_and_swap, pg_code
from handled.transformations.registry import TRANSFORMATIONS, Transformation, dependency_order, get_transformation

log = logging.getLogger("handled.transformations")


@dataclass
class RunOutcome:
    transformation: str
    run_id: int
    rows: int
    timings: dict


class TransformationFailed(HandledError):
    """A run failed; the message says why and that the live table is unchanged."""


def run_transformation(settings: Settings, transformation_id: str, *, progress: Progress = NO_PROGRESS,
                       user_id: int | None = None, user_email: str | None = None,
                       job_id: str | None = None) -> RunOutcome:
    """Build and swap in one transformation, recording the run in PRIMARY."""
    t = get_transformation(transformation_id)
    with heartbeat.Heartbeat():  # beating before the row exists, so no sweep takes it for dead
        run = history.start_run(t.id, user_id, user_email, job_id)

        def record(phase: str, done: int | None = None, total: int | None = None, message: str | None = None):
            history.record_phase(run.id, phase)   # from the build thread: its own PRIMARY connection
            progress(phase, done, total, message)

        try:
            result = build_and_swap(t, parallelism=settings.transform_parallelism, progress=record)
        except BaseException as exc:
            message = _failure_message(t, exc)
            history.finish_run(run.id, "failed", message=message)
            if isinstance(exc, Exception):
                raise TransformationFailed(message) from exc
            raise
    history.finish_run(run.id, "succeeded", rows=result.rows, timings=result.timings)
    return RunOutcome(t.id, run.id, result.rows, result.timings)


def _failure_message(t: Transformation, exc: BaseException) -> str:
    unchanged = f"{t.qualified_target} was left unchanged."
    if isinstance(exc, BuildFailed):
        return str(exc)
    if isinstance(exc, (KeyboardInterrupt, SystemExit)) or pg_code(exc) == "57014":
        return f"{t.id} was cancelled; {unchanged}"
    if pg_code(exc) == "23505":
        return f"{t.id} produced duplicate keys for {t.qualified_target}; {unchanged}"
    if type(exc).__name__ == "JobTimeoutException":
        return f"{t.id} took longer than the job time limit and was stopped; {unchanged}"
    log.error("transformation %s failed", t.id, exc_info=exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{t.id} failed: {first}; {unchanged}"


def job_meta_progress(job) -> Progress:
    """Progress into ``job``'s meta, from any thread (rq's get_current_job() is thread-local,
    so the job is looked up in the calling thread and handed over)."""
    def report(phase: str, done: int | None = None, total: int | None = None, message: str | None = None):
        job.meta.update(phase=phase, done=done, total=total, message=message, updated_at=utcnow().isoformat())
        job.save_meta()
    return report if job is not None else NO_PROGRESS


def plan_runs(ids: list[str], *, run_all: bool = False) -> list[str]:
    """What to run, in order: the asked ones plus their stale dependencies."""
    asked = list(TRANSFORMATIONS) if run_all else list(ids)
    for tid in asked:
        get_transformation(tid)
    plan = []
    for tid in dependency_order(asked):
        if tid in asked or history.staleness(get_transformation(tid)) is not None:
            plan.append(tid)
    return plan


def run_transformations(settings: Settings, ids: list[str], *, run_all: bool = False,
                        progress: Progress = NO_PROGRESS, user_id: int | None = None,
                        user_email: str | None = None, job_id: str | None = None) -> list[RunOutcome]:
    """Run ``ids`` (or all) with their stale dependencies first; stop at the first failure."""
    return [run_transformation(settings, tid, progress=progress, user_id=user_id, user_email=user_email,
                               job_id=job_id)
            for tid in plan_runs(ids, run_all=run_all)]


def transformation_job(ids: list[str], user_id: int | None = None, user_email: str | None = None) -> list[dict]:
    """The background-job entry point: run and return plain values for the job record."""
    current = jobs.get_current_job()
    outcomes = run_transformations(get_settings(), ids, progress=job_meta_progress(current), user_id=user_id,
                                   user_email=user_email, job_id=current.id if current else None)
    return [outcome.__dict__ for outcome in outcomes]


def describe_transformations() -> list[dict]:
    """Everything the list command and the page show, one dict per transformation."""
    history.sweep_dead_runs()
    rows = []
    for t in TRANSFORMATIONS.values():
        last = history.last_run(t.id)
        done = history.last_success(t.id)
        rows.append({
            "transformation": t, "last_run": last, "last_success": done,
            "running": history.running_run(t.id),
            "rows": done.rows_written if done else None,
            "stale": history.staleness(t),
            "sources": history.source_freshness(t),
        })
    return rows


def enqueue_transformation(transformation_id: str, *, user_id: int | None = None,
                           user_email: str | None = None, result_url: str | None = None) -> str:
    """Queue a run for a worker, refusing early when one is already going."""
    t = get_transformation(transformation_id)
    history.sweep_dead_runs(t.id)
    going = history.running_run(t.id)
    if going is not None:
        raise history.AlreadyRunning(going)
    return jobs.enqueue("transformation", transformation_job, [t.id], user_id, user_email,
                        description=f"Run transformation {t.id}", result_url=result_url)


__all__ = ["PHASES", "RunOutcome", "TransformationFailed", "run_transformation", "run_transformations",
           "plan_runs", "describe_transformations", "enqueue_transformation", "transformation_job"]
