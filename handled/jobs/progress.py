"""A job's progress, kept in its RQ meta for ``/jobs/<id>``, reportable from any thread.

RQ's ``get_current_job()`` is thread-local, so a build thread started by a job
could not find its job. Instead the worker binds a ``JobProgress`` to the job
object when the job starts (``bound_job``); a work horse runs one job at a
time, so the binding is process-wide and every thread reports through it.
The worker hands it to ``handled.context.job_context``, so services get it as ``ctx.progress``.

Several processes write one job's meta: the work horse (progress, how it ended), a cancel
(queue.cancel_job) and the dead-worker sweep, each from a copy it read earlier. RQ keeps the meta
as one value, and ``Job.save_meta()`` writes the whole copy back, erasing whatever another writer
changed since. So every write goes through ``update_meta``, which writes only the fields given.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import redis
from redis.exceptions import WatchError

from handled.errors import first_line
from handled.timeutil import utcnow

log = logging.getLogger("handled.jobs")


class JobCancelled(BaseException):
    """Raised in a running job's thread when someone cancelled it (handled/jobs/worker.py).

    A BaseException, like KeyboardInterrupt: code that catches ``Exception`` to
    report a failure lets it through, and what was half-done is rolled back.
    """

    def __init__(self, by: str | None = None):
        super().__init__(by)
        self.by = by
        # what the job had done when it stopped (each file's outcome, the runs it recorded),
        # added by the service on the way out so the job page still shows them
        self.files: list[dict] = []
        self.runs: list = []
        _raised.set()   # one cancel per job: the worker's signal raises no second one (worker._cancellable)

    def sentence(self) -> str:
        return f"Cancelled by {self.by or 'someone'} while it ran; what it had started was rolled back."


def update_meta(job, **values) -> dict:
    """Set ``values`` in ``job``'s meta in Redis and leave every other field as it is there now;
    return the merged meta (also ``job.meta``). Read, merge and write happen in one WATCHed
    transaction, retried if anything changed the job's record in between, so two writers never
    lose each other's fields. A record that is gone (expired) is not written back as a stub."""
    with job.connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(job.key)
                raw = pipe.hget(job.key, "meta")
                if raw is None and not pipe.exists(job.key):
                    pipe.unwatch()
                    job.meta.update(values)
                    return job.meta
                meta = job.serializer.loads(raw) if raw else {}
                meta.update(values)
                pipe.multi()
                pipe.hset(job.key, "meta", job.serializer.dumps(meta))
                pipe.execute()
            except WatchError:
                continue
            job.meta = meta
            return meta


class JobProgress:
    """The Progress of one RQ job: each report updates its meta in Redis."""

    def __init__(self, job):
        self.job = job
        self._lock = threading.Lock()   # one report at a time, in the order the threads made them
        self._unsaved = False           # the last save failed (said once until one succeeds)

    def __call__(self, phase: str, done: int | None = None, total: int | None = None,
                 message: str | None = None) -> None:
        self.update(phase=phase, done=done, total=total, message=message, updated_at=utcnow().isoformat())

    def update(self, **values) -> None:
        if self.job is None:    # run outside a worker (synchronously): nobody watches
            return
        with self._lock:
            try:
                update_meta(self.job, **values)
            except redis.RedisError as exc:   # Redis away: the work goes on, its page catches up later
                self.job.meta.update(values)
                if not self._unsaved:
                    log.warning("job %s: progress not saved while Redis is not answering (%s)", self.job.id,
                                first_line(exc))
                self._unsaved = True
            else:
                self._unsaved = False


_bound: JobProgress | None = None


@contextmanager
def bound_job(job) -> Iterator[JobProgress]:
    """Make ``job`` (None: no job) the one this process reports progress to, for the block."""
    global _bound
    _bound = JobProgress(job)
    _hooks_ran_for.clear()
    _raised.clear()
    try:
        yield _bound
    finally:
        _bound = None


def cancel_from_hooks() -> JobCancelled | None:
    """The JobCancelled to raise for a statement the cancel hooks stopped (None: they did not run)."""
    if not _hooks_ran_for:
        return None
    _raised.set()
    return JobCancelled(_hooks_ran_for[0])


def cancel_raised() -> bool:
    """True once this job's cancel was raised in its thread (by the signal or a service)."""
    return _raised.is_set()


def mark_cancel_raised() -> None:
    _raised.set()


def current_job_id() -> str | None:
    """The id of the job this process is running, if any."""
    return _bound.job.id if _bound is not None and _bound.job is not None else None


# What a cancel also does when the job's thread does not notice it (a statement blocked on a
# lock only returns to Python when it ends): e.g. the import's DATA connection's cancel().
_cancel_hooks: list[Callable[[], None]] = []


@contextmanager
def on_cancel(hook: Callable[[], None]) -> Iterator[None]:
    """While the block runs, a cancel of this process's job that the job's thread has not
    acted on within a second calls ``hook`` from the watcher thread. Outside a job: nothing."""
    _cancel_hooks.append(hook)
    try:
        yield
    finally:
        _cancel_hooks.remove(hook)


# Who cancelled, once the hooks ran: a statement the hooks cancelled raises a driver error in the
# job's thread, which the service turns into JobCancelled (``cancel_from_hooks``); the worker's
# signal then raises nothing more (``cancel_raised``), so the run is finished once, as cancelled.
_hooks_ran_for: list[str | None] = []
_raised = threading.Event()


def run_cancel_hooks(by: str | None = None) -> None:
    _hooks_ran_for[:] = [by]
    for hook in list(_cancel_hooks):
        try:
            hook()
        except Exception as exc:    # already closed, not busy: the cancel goes on without it
            log.debug("a cancel hook failed: %s", exc)
