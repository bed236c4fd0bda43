"""The job queue: RQ on the jobs Redis client of handled/cache.py (JOBS_REDIS_URL, default REDIS_URL).

``enqueue`` puts a call on the queue with the actor of the context that queued
it: the worker (worker.py) runs the call as that user. A job may hold
*exclusive* keys (e.g. one per transformation of its plan): a Redis ``SET NX``
per key, taken before the job is queued and given back when it ends, fails or
is cancelled (with a TTL as the safety net), so a second request for the same
work is refused on the server whatever the buttons showed.

``job_status`` is what ``/jobs/<id>``, ``/jobs`` and ``flask jobs status`` show:
its state is RQ's status read together with the outcome the job recorded
(a job whose work failed ends *failed* even though its function returned).
``cancel_job`` cancels a queued job at once and asks a started one to stop
(the worker notices within a second, see worker.py).
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime, timezone

from rq import Queue
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import (CanceledJobRegistry, FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry)

from handled import heartbeat
from handled.cache import get_jobs_redis
from handled.context import Context
from handled.errors import Conflict, Forbidden, NotFound
from handled.jobs.progress import update_meta
from handled.jobs.signing import RUN_JOB, SERIALIZER, HandledJob, sign, target_name
from handled.timeutil import utcnow

QUEUE_NAME = "handled"
JOB_TIMEOUT = 4 * 3600          # seconds; an 11M-row rebuild takes minutes, not hours
RESULT_TTL = 7 * 24 * 3600      # keep finished jobs' status for a week
FAILURE_TTL = 30 * 24 * 3600
EXCLUSIVE_TTL = JOB_TIMEOUT + 3600   # an exclusive key outlives its job by at most this
CLAIM_GRACE_SECONDS = 60            # a claimed key whose job is not queued yet still holds this long
CANCEL_TTL = 24 * 3600
DEAD_WORKER_MESSAGE = "The worker running this job ({runner}) stopped before it finished."

# which permission lets a user see a job of each kind (its page and JSON)
KIND_PERMISSIONS = {"transformation": "run_transformations", "import": "run_imports",
                    "export": "download_exports"}
# who may cancel any job they can see (besides the user who queued it)
CANCEL_ANY_PERMISSION = "manage_users"

# state -> what a person reads
STATE_LABELS = {"queued": "queued", "started": "running", "finished": "finished",
                "problems": "finished with problems", "failed": "failed", "cancelled": "cancelled"}
ENDED = ("finished", "problems", "failed", "cancelled")


class JobNotFound(NotFound):
    """No job has this id (or it expired)."""


class JobAlreadyQueued(Conflict):
    """The same work is already queued or running as another job; ``job_id`` names it."""

    def __init__(self, message: str, job_id: str):
        super().__init__(message)
        self.job_id = job_id


def get_queue() -> Queue:
    """The queue, read and written as JSON with HandledJob (signing.py): never pickle."""
    return Queue(QUEUE_NAME, connection=get_jobs_redis(), job_class=HandledJob, serializer=SERIALIZER)


def _exclusive_key(name: str) -> str:
    return f"handled:exclusive:{name}"


def _cancel_key(job_id: str) -> str:
    return f"handled:job-cancel:{job_id}"


# compare-and-delete: give a key back only if this job still holds it
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


def holder(name: str) -> str | None:
    """The id of the job holding the exclusive key ``name`` while it is queued or running, else None."""
    key = _exclusive_key(name)
    value = get_jobs_redis().get(key)
    if value is None:
        return None
    job_id = value.decode() if isinstance(value, bytes) else value
    if _ended_or_gone(key, job_id):
        return None
    return job_id


def _ended_or_gone(key: str, job_id: str) -> bool:
    """Whether the job holding ``key`` has ended. A holder with no job record yet was claimed a
    moment ago and is being queued now (enqueue claims first): it holds, unless the claim is
    older than CLAIM_GRACE_SECONDS (its job record expired, or enqueue died in between)."""
    try:
        return job_status(job_id)["finished"]
    except JobNotFound:
        return get_jobs_redis().ttl(key) < EXCLUSIVE_TTL - CLAIM_GRACE_SECONDS


def _claim(names: list[str], job_id: str, what: str) -> None:
    """Take every exclusive key or none; refuse naming the job that holds one."""
    redis = get_jobs_redis()
    taken = []
    for name in sorted(names):     # one order for every request: two overlapping ones cannot both lose
        key = _exclusive_key(name)
        if not redis.set(key, job_id, nx=True, ex=EXCLUSIVE_TTL):
            current = redis.get(key)
            current = current.decode() if isinstance(current, bytes) else current
            # a holder that ended without giving the key back (killed worker): take it over
            if current is None or _ended_or_gone(key, current):
                redis.eval(_RELEASE, 1, key, current or "")
                if redis.set(key, job_id, nx=True, ex=EXCLUSIVE_TTL):
                    taken.append(name)
                    continue
                current = redis.get(key)
                current = current.decode() if isinstance(current, bytes) else current
            for held in taken:
                redis.eval(_RELEASE, 1, _exclusive_key(held), job_id)
            raise JobAlreadyQueued(f"{what} is already queued or running as job {current}; "
                                   "wait for it to finish (or cancel it) before starting it again.",
                                   current or "")
        taken.append(name)


def release_exclusive(job: Job) -> None:
    """Give back the exclusive keys ``job`` holds (idempotent)."""
    redis = get_jobs_redis()
    for name in job.meta.get("exclusive") or ():
        redis.eval(_RELEASE, 1, _exclusive_key(name), job.id)


def enqueue(kind: str, func, *args, ctx: Context, description: str, result_url: str | None = None,
            exclusive: list[str] | None = None, exclusive_label: str | None = None, **kwargs) -> str:
    """Queue ``func(job_ctx, *args, **kwargs)`` as a job of ``kind`` run for ``ctx.actor``; return its id.

    ``func`` (a function, its dotted path or its name in ``signing.JOB_TARGETS``;
    anything else is a ValueError) takes the job's context first; the other arguments
    must be JSON values (they travel through Redis as JSON: a Path is a str, a tuple
    arrives as a list). The payload is signed with a key derived from SECRET_KEY, so
    the worker runs it only as queued here (signing.py). With
    ``exclusive`` names, the job is refused (``JobAlreadyQueued``) while another
    queued or running job holds any of them.
    """
    target = target_name(func)
    job_id = uuid.uuid4().hex
    actor_data = ctx.actor.to_job()
    signature = sign(ctx.settings.secret_key, job_id, target, actor_data, args, kwargs)  # TypeError: not JSON
    exclusive = list(exclusive or ())
    if exclusive:
        _claim(exclusive, job_id, exclusive_label or description)
    try:
        job = get_queue().enqueue(
            RUN_JOB, args=(target, actor_data, list(args), kwargs, signature), description=description,
            job_id=job_id, job_timeout=JOB_TIMEOUT, result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
            meta={"kind": kind, "phase": "queued", "done": None, "total": None, "message": None,
                  "result_url": result_url, "enqueued_at": utcnow().isoformat(),
                  "actor_id": ctx.actor.id, "by": ctx.actor.label, "exclusive": exclusive})
    except BaseException:
        redis = get_jobs_redis()
        for name in exclusive:
            redis.eval(_RELEASE, 1, _exclusive_key(name), job_id)
        raise
    return job.id


def fetch_job(job_id: str) -> Job:
    try:
        return HandledJob.fetch(job_id, connection=get_jobs_redis(), serializer=SERIALIZER)
    except NoSuchJobError:
        raise JobNotFound(f"There is no job {job_id!r}: no job ever had this id, or it ended "
                          "more than a week ago and its record was removed.") from None
    except (DeserializationError, ValueError):     # not JSON: handled did not write it
        raise JobNotFound(f"Job {job_id!r} cannot be read: its record in Redis was not written "
                          "by handled.") from None


def job_status(job_id: str) -> dict:
    """State, phase, progress, times, outcome and files of one job."""
    return _status(fetch_job(job_id))


def _status(job: Job, runner_gone: bool = False) -> dict:
    """``runner_gone``: ``job`` was read again after its runner was found gone; still "started"
    now, it failed with its worker."""
    meta = job.get_meta() if job.id else {}
    rq_status = job.get_status(refresh=False)
    rq_status = rq_status.value if isinstance(rq_status, JobStatus) else str(rq_status)
    message = meta.get("message")
    state = {"queued": "queued", "deferred": "queued", "scheduled": "queued", "started": "started",
             "finished": "finished", "failed": "failed", "stopped": "cancelled",
             "canceled": "cancelled"}.get(rq_status, rq_status)
    if meta.get("outcome") in ENDED:     # what the job's work came to, said by the job itself
        state = meta["outcome"]
    # dead: its runner stopped beating (a job RQ just started has not named its runner yet: not dead)
    if state == "started" and runner_gone:
        state, message = "failed", DEAD_WORKER_MESSAGE.format(runner=meta.get("runner"))
    elif state == "started" and meta.get("runner") and heartbeat.runner_alive(meta["runner"]) is False:
        # The status above was read before the liveness: a work horse that ended the job and exited
        # in between left "started" behind in what we read. Read the job again, now that it is gone.
        with contextlib.suppress(NoSuchJobError):   # removed meanwhile: what was read stands
            job.refresh()
        return _status(job, runner_gone=True)
    if state == "failed" and not message:
        message = _rq_failure_line(job)
    done, total = meta.get("done"), meta.get("total")
    percent = min(100, round(100 * done / total)) if done is not None and total else None
    if state in ("finished", "problems"):
        percent = 100
    elif state == "queued":
        percent = 0
    enqueued = _aware(job.enqueued_at) or _parse(meta.get("enqueued_at"))
    started, ended = _aware(job.started_at), _aware(job.ended_at)
    if state in ENDED and ended is None:
        ended = _parse(meta.get("ended_at"))
    elapsed = None
    if started is not None:
        elapsed = max(0.0, ((ended if state in ENDED and ended else utcnow()) - started).total_seconds())
    return {
        "id": job.id, "kind": meta.get("kind"), "description": job.description, "status": state,
        "label": STATE_LABELS.get(state, state), "phase": meta.get("phase"), "done": done, "total": total,
        "percent": percent, "message": message, "result_url": meta.get("result_url"),
        "by": meta.get("by"), "actor_id": meta.get("actor_id"), "files": meta.get("files") or [],
        "runs": meta.get("runs") or [], "cancel_requested_by": meta.get("cancel_requested_by"),
        "enqueued_at": _iso(enqueued), "started_at": _iso(started), "ended_at": _iso(ended if state in ENDED else None),
        "elapsed_seconds": None if elapsed is None else round(elapsed, 1),
        "finished": state in ENDED,
    }


def recent_jobs(limit: int = 50) -> list[dict]:
    """The newest jobs in every state (queued, running, ended), newest first."""
    queue = get_queue()
    redis = get_jobs_redis()
    ids = set(queue.get_job_ids())
    for registry in (StartedJobRegistry, FinishedJobRegistry, FailedJobRegistry, CanceledJobRegistry):
        ids.update(i.split(":", 1)[0] if registry is StartedJobRegistry else i
                   for i in registry(queue=queue).get_job_ids(cleanup=False))
    jobs = [job for job in _fetch_readable(sorted(ids), redis) if job is not None]
    statuses = [_status(job) for job in jobs]
    statuses.sort(key=lambda s: s["enqueued_at"] or "", reverse=True)
    return statuses[:limit]


def _fetch_readable(ids: list[str], redis) -> list[Job | None]:
    """The jobs of ``ids``; one whose record is not JSON (not written by handled) is left out."""
    try:
        return HandledJob.fetch_many(ids, connection=redis, serializer=SERIALIZER)
    except Exception:
        jobs = []
        for job_id in ids:
            try:
                jobs.append(HandledJob.fetch(job_id, connection=redis, serializer=SERIALIZER))
            except Exception:
                continue
        return jobs


def may_see(actor, status: dict) -> bool:
    """Whether ``actor`` may see this job (its kind's permission, see KIND_PERMISSIONS)."""
    return actor.can(KIND_PERMISSIONS.get(status["kind"], "view_system"))


def _owner_or_canceller(actor, status: dict) -> bool:
    """The user who queued it, or one who may cancel any job (and sees jobs of its kind)."""
    own = actor.id is not None and actor.id == status.get("actor_id")
    return may_see(actor, status) and (own or actor.can(CANCEL_ANY_PERMISSION))


def may_cancel(actor, status: dict) -> bool:
    """Whether the page offers ``actor`` a Cancel button: allowed, and the job has not ended."""
    return not status["finished"] and _owner_or_canceller(actor, status)


def cancel_job(ctx: Context, job_id: str) -> dict:
    """Cancel a queued job now, or ask a started one to stop; return its status."""
    job = fetch_job(job_id)
    status = _status(job)
    if not _owner_or_canceller(ctx.actor, status):
        raise Forbidden("Only the user who started this job, or an administrator, may cancel it.")
    if status["finished"]:
        raise Conflict(f"This job has already ended ({status['label']}); there is nothing to cancel.")
    who = ctx.actor.label
    update_meta(job, cancel_requested_by=who)     # only its fields: the horse may be writing its own
    if status["status"] == "queued":
        update_meta(job, outcome="cancelled", phase="cancelled", ended_at=utcnow().isoformat(),
                    message=f"Cancelled by {who} before it started; nothing was done.")
        job.cancel()
        release_exclusive(job)
    else:
        get_jobs_redis().set(_cancel_key(job.id), who, ex=CANCEL_TTL)
    return _status(job)


def cancel_requested(job_id: str) -> str | None:
    """Who asked to cancel this started job, if anyone did."""
    value = get_jobs_redis().get(_cancel_key(job_id))
    return value.decode() if isinstance(value, bytes) else value


def _rq_failure_line(job: Job) -> str:
    result = job.latest_result()
    text = (result.exc_string or "") if result is not None else ""
    last = text.strip().splitlines()[-1] if text.strip() else "unknown error"
    if "terminated unexpectedly" in text or "AbandonedJobError" in text:
        return "The worker running this job stopped before it finished."
    return f"The job failed: {last}"


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _parse(value: str | None) -> datetime | None:
    return _aware(datetime.fromisoformat(value)) if value else None


def _iso(value: datetime | None) -> str | None:
    """Whole seconds, UTC, with a Z: what <time datetime> and scripts read."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None
