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

from rq.timeouts import JobTimeoutException

from handled import audit, heartbeat, jobs, ledger
from handled.context import Context
from handled.db import connection_lost
from handled.errors import HandledError, first_line
from handled.jobs.progress import JobCancelled
from handled.transformations import history
from handled.transformations.build_plan import PHASES, BuildFailed
from handled.transformations.build_control import pg_code
from handled.transformations.build_runner import build_and_swap
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


def run_transformation(ctx: Context, transformation_id: str, *, job_id: str | None = None,
                       part: tuple[int, int] = (0, 1)) -> RunOutcome:
    """Build and swap in one transformation as ``ctx.actor``, recording the run in PRIMARY.

    ``part`` = (index, count) places this build within a plan of ``count`` builds, so the
    progress reported moves through the whole plan once."""
    t = get_transformation(transformation_id)
    index, count = part
    with heartbeat.Heartbeat():  # beating before the row exists, so no sweep takes it for dead
        run = history.start_run(t.id, ctx.actor.id, audit.actor_text(ctx.actor), job_id)
        last_phase = [None]

        def record(phase: str, done: int | None = None, total: int | None = None, message: str | None = None):
            if phase != last_phase[0]:   # from the build thread: its own PRIMARY connection
                history.record_phase(run.id, phase)
                last_phase[0] = phase
            if done is not None and total:
                done, total = index * total + done, count * total
            if count > 1 and message:
                message = f"{message} (build {index + 1} of {count})"
            ctx.progress(phase, done, total, message)

        try:
            result = build_and_swap(t, ctx.settings, parallelism=ctx.settings.transform_parallelism, progress=record,
                                    run=ledger.RunRef.of(run))
        except BaseException as exc:
            message = _failure_message(t, exc)
            # stopped by a user (Cancel on the job page, Ctrl-C at the CLI): not a failure
            status = "cancelled" if isinstance(exc, (JobCancelled, KeyboardInterrupt)) else "failed"
            history.finish_run(run.id, status, message=message)
            _audit(ctx, t, run.id, job_id, status=status, message=message)
            if isinstance(exc, Exception):
                raise _failed(message, exc) from exc
            raise
    history.finish_run(run.id, "succeeded", rows=result.rows, timings=result.timings)
    _audit(ctx, t, run.id, job_id, status="succeeded", rows=result.rows)
    return RunOutcome(t.id, run.id, result.rows, result.timings)


def _audit(ctx: Context, t: Transformation, run_id: int, job_id: str | None, **details) -> None:
    """One audit row per run, written when it ends (whoever ran it: page, CLI or job)."""
    audit.record(ctx, "transformation.run", "transformation", t.id, t.name,
                 {"run_id": run_id, "job_id": job_id, **details})


def _failed(message: str, exc: Exception) -> TransformationFailed:
    """The run's sentence as the error to raise; a HandledError's status and exit code stay (a busy build: 409)."""
    if isinstance(exc, HandledError):
        return TransformationFailed(message, hint=exc.hint, status=exc.status, exit_code=exc.exit_code)
    return TransformationFailed(message)


def _failure_message(t: Transformation, exc: BaseException) -> str:
    unchanged = f"{t.qualified_target} was left unchanged."
    if isinstance(exc, BuildFailed):
        return str(exc)
    if isinstance(exc, JobCancelled):
        return f"{t.id} was cancelled by {exc.by or 'someone'}; {unchanged}"
    if isinstance(exc, (KeyboardInterrupt, SystemExit)) or pg_code(exc) == "57014":
        return f"{t.id} was cancelled; {unchanged}"
    if pg_code(exc) == "23505":
        return f"{t.id} produced duplicate keys for {t.qualified_target}; {unchanged}"
    if isinstance(exc, JobTimeoutException):
        return f"{t.id} took longer than the job time limit and was stopped; {unchanged}"
    if not isinstance(exc, HandledError) and connection_lost(exc):   # an outage, not a bug: one line
        log.warning("transformation %s stopped: a database stopped answering (%s)", t.id, first_line(exc))
        return f"{t.id} failed: a database stopped answering ({first_line(exc)}); {unchanged}"
    if not isinstance(exc, HandledError):   # a bug: its traceback goes to the log
        log.error("transformation %s failed", t.id, exc_info=exc)
    return f"{t.id} failed: {first_line(exc)}; {unchanged}"


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


def run_transformations(ctx: Context, ids: list[str], *, run_all: bool = False,
                        job_id: str | None = None) -> list[RunOutcome]:
    """Run ``ids`` (or all) with their stale dependencies first; stop at the first failure."""
    plan = plan_runs(ids, run_all=run_all)
    outcomes = []
    for i, tid in enumerate(plan):
        by = jobs.queue.cancel_requested(job_id) if job_id and i else None
        if by:   # a cancel that came as the previous build swapped in: the rest is not started
            raise JobCancelled(by)
        outcomes.append(run_transformation(ctx, tid, job_id=job_id, part=(i, len(plan))))
    return outcomes


def transformation_job(ctx: Context, ids: list[str]) -> dict:
    """The background-job entry point: run as the user who queued it; plain values for the job record."""
    outcomes = run_transformations(ctx, ids, job_id=jobs.current_job_id())
    return {"outcome": "finished", "runs": [outcome.__dict__ for outcome in outcomes],
            "message": "; ".join(f"{o.transformation}: {o.rows:,} rows" for o in outcomes) + "."}


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


def enqueue_transformations(ctx: Context, ids: list[str], *, run_all: bool = False,
                            result_url: str | None = None) -> tuple[str, list[str]]:
    """Queue a run of ``ids`` (or all) for a worker, as ``ctx.actor``; return the job id and the plan.

    Refuses early when any transformation of the plan (the asked ones and their stale
    dependencies) is already running. The worker plans again when it starts, so a
    dependency that became fresh while the job waited is not rebuilt.
    """
    asked = list(TRANSFORMATIONS) if run_all else list(ids)
    plan = plan_runs(asked)
    for tid in plan:
        history.sweep_dead_runs(tid)
        going = history.running_run(tid)
        if going is not None:
            raise history.AlreadyRunning(going)
    noun = "transformation" if len(asked) == 1 else "transformations"
    # one Redis key per transformation of the plan, held from now until the job ends: a second
    # request (a double click, another user, the CLI) is refused while this one is queued or running
    job_id = jobs.enqueue("transformation", transformation_job, asked, ctx=ctx,
                          description=f"Run {noun} {', '.join(asked)}", result_url=result_url,
                          exclusive=[exclusive_name(tid) for tid in plan],
                          exclusive_label=f"A run of {', '.join(plan)}")
    return job_id, plan


def exclusive_name(transformation_id: str) -> str:
    """The exclusive key a queued or running job of this transformation holds (jobs.enqueue)."""
    return f"transformation:{transformation_id}"


def queued_job(transformation_id: str) -> str | None:
    """The id of the job that has this transformation queued or running, if any."""
    return jobs.holder(exclusive_name(transformation_id))


def enqueue_transformation(ctx: Context, transformation_id: str, *, result_url: str | None = None) -> str:
    """Queue a run of one transformation (and its stale dependencies); return the job id."""
    job_id, _ = enqueue_transformations(ctx, [transformation_id], result_url=result_url)
    return job_id


__all__ = ["PHASES", "RunOutcome", "TransformationFailed", "run_transformation", "run_transformations",
           "plan_runs", "describe_transformations", "enqueue_transformation", "enqueue_transformations",
           "exclusive_name", "queued_job", "transformation_job"]
