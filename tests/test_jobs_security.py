"""Someone who can write to Redis cannot make the worker run anything (security review F1).

The worker reads jobs as JSON (never pickle), runs only ``handled.jobs.worker.run_job``, and
``run_job`` runs only a job whose payload (target, actor, arguments, job id) carries a valid
HMAC keyed from SECRET_KEY and whose target is in ``JOB_TARGETS``. Real Redis, PostgreSQL
and (where it matters) a real `flask jobs worker` subprocess.
"""

from __future__ import annotations

import json
import logging
import pickle
import uuid
import zlib
from pathlib import Path

import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from handled import jobs
from handled.auth import users
from handled.cache import get_jobs_redis
from handled.context import Actor, system_context
from handled.jobs.signing import JobRefused
from tests.support.workers import start_worker

QUEUE = "handled"
RUN_JOB = "handled.jobs.worker.run_job"


def touch_marker(ctx, path):
    """A job body whose only effect is a file: proof that it ran, and as whom."""
    Path(path).write_text(ctx.actor.label)
    return {"outcome": "finished", "message": "touched"}


@pytest.fixture
def marker_target(monkeypatch):
    """Put touch_marker on the allow-list of this (in-process) worker only."""
    from handled.jobs import signing
    monkeypatch.setitem(signing.JOB_TARGETS, "test-marker", f"{__name__}.touch_marker")


def _redis(app):
    with app.app_context():
        return get_jobs_redis()


def queue_marker_job(app, settings, marker) -> str:
    """Queue, as the CLI operator, the job that writes who ran it into ``marker``; its id."""
    with app.app_context():
        return jobs.enqueue("export", touch_marker, str(marker), ctx=system_context(settings),
                            description="touch a file")


def _run_in_process(app, job_id):
    """What the work horse does with one job, in this process (as under `flask jobs worker`)."""
    with app.app_context():
        job = jobs.get_queue().fetch_job(job_id)
        try:
            job.perform()
        except Exception as exc:    # the worker fails the job on it
            return exc
    return None


# --- the review's PoC, as it was reported -----------------------------------------------------

def test_forged_job_cannot_create_an_admin(app, settings, tmp_path):
    r = _redis(app)
    Queue(QUEUE, connection=r).enqueue(     # RQ's default (pickle) serializer, no signature
        RUN_JOB,
        args=("handled.auth.users.create_user", {"id": None, "email": None, "permissions": [], "system": True},
              ("mallory@evil.example", "Mallory", ["admin"]), {"password": "Owned by a queue writer 9"}),
        meta={"kind": "system"})
    # the same forgery in JSON, as the worker reads jobs now, with and without a made-up signature
    for signature in (None, "0" * 64):
        args = ["handled.auth.users.create_user", {"id": None, "email": None, "permissions": [], "system": True},
                ["mallory@evil.example", "Mallory", ["admin"]], {"password": "Owned by a queue writer 9"}]
        Queue(QUEUE, connection=r, serializer=JSONSerializer).enqueue(
            RUN_JOB, args=tuple(args + ([signature] if signature else [])), meta={"kind": "system"})
    start_worker(settings, tmp_path, "--burst").wait(timeout=120)
    with app.app_context():
        created = users.find_user_by_email("mallory@evil.example")
        roles = users.role_codes_of(created.id) if created else []
    assert created is None, f"a job forged in Redis created the account {created.email} with roles {roles}"


# --- a signed job altered in Redis ------------------------------------------------------------

def test_a_job_with_a_tampered_argument_is_refused(app, settings, tmp_path, marker_target, caplog):
    meant, tampered = tmp_path / "meant", tmp_path / "tampered"
    job_id = queue_marker_job(app, settings, meant)
    r = _redis(app)
    key = f"rq:job:{job_id}"
    func, instance, args, kwargs = json.loads(zlib.decompress(r.hget(key, "data")))   # RQ stores it zlib'ed
    args[2] = [str(tampered)]           # (target, actor, args, kwargs, signature): the job's own arguments
    r.hset(key, "data", zlib.compress(json.dumps([func, instance, args, kwargs]).encode()))
    with caplog.at_level(logging.WARNING, logger="handled.jobs"):
        raised = _run_in_process(app, job_id)
    assert not meant.exists() and not tampered.exists(), "a job altered in Redis ran"
    assert raised is not None
    with app.app_context():
        status = jobs.job_status(job_id)
    assert "signature" in status["message"] and "nothing was run" in status["message"], status["message"]
    assert any(job_id in rec.getMessage() and rec.levelno == logging.WARNING for rec in caplog.records)


def test_a_signed_job_runs_and_keeps_its_cli_operator(app, settings, tmp_path, marker_target):
    """The normal path: a job queued by `flask ...` runs, as the named CLI operator."""
    marker = tmp_path / "ran"
    job_id = queue_marker_job(app, settings, marker)
    assert _run_in_process(app, job_id) is None
    assert marker.read_text() == system_context(settings).actor.label
    with app.app_context():
        assert jobs.job_status(job_id)["status"] == "finished"


# --- a correctly signed job whose target is not one handled queues ----------------------------

def test_a_target_outside_the_allow_list_is_refused_even_when_signed(app, settings, tmp_path):
    from handled.jobs import signing
    marker = tmp_path / "ran"
    actor = system_context(settings).actor.to_job()
    for target in (f"{__name__}.touch_marker", "test-marker"):     # neither a path nor a name it knows
        job_id = uuid.uuid4().hex
        payload = (target, actor, [str(marker)], {})
        signature = signing.sign(settings.secret_key, job_id, *payload)
        with app.app_context():
            jobs.get_queue().enqueue(RUN_JOB, args=(*payload, signature), job_id=job_id, meta={"kind": "export"})
        assert _run_in_process(app, job_id) is not None
        assert not marker.exists(), f"the worker ran {target}, which handled never queues"
        with app.app_context():
            message = jobs.job_status(job_id)["message"]
        assert "not a job handled runs" in message and "nothing was run" in message, message


def test_enqueue_refuses_a_function_that_is_not_a_job_target(app, settings, tmp_path):
    with app.app_context(), pytest.raises(ValueError, match="not in JOB_TARGETS"):
        jobs.enqueue("export", touch_marker, str(tmp_path / "x"), ctx=system_context(settings), description="no")


# --- nothing from Redis is unpickled, and only run_job is ever called -----------------------

class _Touch:
    """Unpickling this creates ``path``: proof that a payload was unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_pickle_payload_is_not_unpickled_and_only_run_job_is_called(app, settings, tmp_path):
    unpickled, called = tmp_path / "unpickled", tmp_path / "called"
    r = _redis(app)
    pickled = uuid.uuid4().hex
    r.hset(f"rq:job:{pickled}", mapping={
        "data": pickle.dumps(("handled.jobs.worker.run_job", None, (_Touch(unpickled),), {})),
        "created_at": "2026-01-01T00:00:00.000000Z", "origin": QUEUE, "status": "queued",
        "description": "a pickle", "timeout": 60})
    r.rpush(f"rq:queue:{QUEUE}", pickled)
    # a JSON job calling another function (os.mkdir) directly
    other = Queue(QUEUE, connection=r, serializer=JSONSerializer).enqueue("os.mkdir", args=(str(called),)).id
    worker = start_worker(settings, tmp_path, "--burst")
    assert worker.wait(timeout=120) == 0
    assert not unpickled.exists(), "the worker unpickled a payload from Redis"
    assert not called.exists(), "the worker called a function other than run_job"
    with app.app_context():
        for job_id in (pickled, other):
            assert jobs.job_status(job_id)["status"] == "failed", job_id


def test_no_callback_named_in_redis_is_imported(app):
    """RQ imports and calls a job's success/failure/stopped callback by the name stored in Redis."""
    from handled.jobs.signing import SERIALIZER, HandledJob
    job = HandledJob("forged", connection=_redis(app), serializer=SERIALIZER)
    job._success_callback_name = job._failure_callback_name = job._stopped_callback_name = "os.abort"
    assert (job.success_callback, job.failure_callback, job.stopped_callback) == (None, None, None)


def test_webhooks_retries_and_repeats_written_into_redis_are_ignored(app, settings, tmp_path, marker_target):
    """Second review: RQ 2 fires a job's webhooks (any URL, any headers) when it ends, and re-queues
    it by its retries_left / repeats_left: all read from the job's Redis record."""
    job_id = queue_marker_job(app, settings, tmp_path / "ran")
    redis_client = _redis(app)
    redis_client.hset(f"rq:job:{job_id}", mapping={
        "webhooks": json.dumps([{"url": "http://127.0.0.1:9/steal", "job_status": "failed", "method": "POST"}]),
        "retries_left": "5", "retry_intervals": "[0]", "repeats_left": "100000", "repeat_intervals": "[0]"})
    with app.app_context():
        job = jobs.get_queue().fetch_job(job_id)
    assert (job.webhooks, job.retries_left, job.repeats_left) == ([], None, None)


def test_a_signed_job_put_back_on_the_queue_does_not_run_again(app, settings, tmp_path, marker_target):
    """Second review: a Redis writer could push a finished signed job's id onto the queue again."""
    marker = tmp_path / "ran"
    job_id = queue_marker_job(app, settings, marker)
    assert _run_in_process(app, job_id) is None
    marker.unlink()
    refused = _run_in_process(app, job_id)
    assert isinstance(refused, JobRefused) and "it has run before" in str(refused), refused
    assert not marker.exists()


# --- the actor of a job -----------------------------------------------------------------------

def test_system_is_kept_only_for_a_signed_cli_job():
    operator = Actor.cli_operator().to_job()
    assert Actor.from_job(operator, signed=True).system is True
    assert Actor.from_job(operator).system is False             # unsigned: never
    forged = dict(operator, name="mallory")                    # signed, but not a CLI operator
    assert Actor.from_job(forged, signed=True).system is False
    assert Actor.from_job(operator, signed=True).channel == "job"
