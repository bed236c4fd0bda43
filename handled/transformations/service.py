"""Run transformations (from the CLI, a page or a background job) and describe them.

The build itself runs in a thread of its own, on direct DATA connections of
its own (swap.py), so it never shares a connection with the run history
written to PRIMARY. The calling thread records phases, refreshes the heartbeat
and, if it is interrupted (Ctrl-C, job timeout), cancels every statement of
the build, which then drops its scratch tables and leaves the live one serving.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from handled import heartbeat, jobs
from handled.context import Context
from handled.db import release_connections
from handled.errors import HandledError
from handled.transformations import history
from handled.transformations.registry import (TRANSFORMATIONS, Transformation, dependency_order,
                                              get_transformation)
from handled.transformations.swap import (PHASES, BuildControl, BuildFailed, BuildResult, build_and_swap,
                                          configured_parallelism, pg_code)

log = logging.getLogger("handled.transformations")


@dataclass
class RunOutcome:
    transformation: str
    run_id: int
    rows: int
    timings: dict


class TransformationFailed(HandledError):
    """A run failed; the message says why and that the live table is unchanged."""


def run_transformation(transformation_id: str, *, user_id: int | None = None, user_email: str | None = None,
                       job_id: str | None = None) -> RunOutcome:
    """Build and swap in one transformation, recording the run in PRIMARY."""
    t = get_transformation(transformation_id)
    with heartbeat.Heartbeat():  # beating before the row exists, so no sweep takes it for dead
        run = history.start_run(t.id, user_id, user_email, job_id)
        try:
            result = _build_in_thread(t, run.id)
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


def _build_in_thread(t: Transformation, run_id: int) -> BuildResult:
    events: queue.Queue = queue.Queue()
    outcome: dict = {}
    control = BuildControl()
    parallelism = configured_parallelism()   # read here: the build thread has no app context

    def build():
        try:
            outcome["result"] = build_and_swap(t, lambda phase, step, total: events.put((phase, step, total)),
                                               control=control, parallelism=parallelism)
        except BaseException as exc:  # handed to the calling thread
            outcome["error"] = exc
        finally:
            release_connections()

    worker = threading.Thread(target=build, name=f"build-{t.id}", daemon=True)
    worker.start()
    try:
        while worker.is_alive() or not events.empty():
            _relay_progress(events, run_id, t)
            worker.join(timeout=0.25)
    except BaseException:
        control.cancel()   # every connection of the build stops; its tables are dropped
        worker.join()
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _relay_progress(events: queue.Queue, run_id: int, t: Transformation) -> None:
    while True:
        try:
            phase, step, total = events.get_nowait()
        except queue.Empty:
            return
        history.record_phase(run_id, phase)
        jobs.report_progress(phase, step, total, f"{t.id}: {phase}")


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


def run_transformations(ids: list[str], *, run_all: bool = False, user_id: int | None = None,
                        user_email: str | None = None, job_id: str | None = None) -> list[RunOutcome]:
    """Run ``ids`` (or all) with their stale dependencies first; stop at the first failure."""
    return [run_transformation(tid, user_id=user_id, user_email=user_email, job_id=job_id)
            for tid in plan_runs(ids, run_all=run_all)]


def transformation_job(ctx: Context, ids: list[str]) -> list[dict]:
    """The background-job entry point: run as the user who queued it; plain values for the job record."""
    outcomes = run_transformations(ids, user_id=ctx.actor.id, user_email=ctx.actor.email,
                                   job_id=jobs.current_job_id())
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


def enqueue_transformation(ctx: Context, transformation_id: str, *, result_url: str | None = None) -> str:
    """Queue a run for a worker (run as ``ctx.actor``), refusing early when one is already going."""
    t = get_transformation(transformation_id)
    history.sweep_dead_runs(t.id)
    going = history.running_run(t.id)
    if going is not None:
        raise history.AlreadyRunning(going)
    return jobs.enqueue("transformation", transformation_job, [t.id], ctx=ctx,
                        description=f"Run transformation {t.id}", result_url=result_url)


__all__ = ["PHASES", "RunOutcome", "TransformationFailed", "run_transformation", "run_transformations",
           "plan_runs", "describe_transformations", "enqueue_transformation", "transformation_job"]
