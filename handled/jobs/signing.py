"""What makes a job in Redis trustworthy: JSON, one entry function, a signature, an allow-list.

Anyone who can write to the jobs Redis can add or alter a job, so the worker trusts
nothing it reads there unless handled itself put it there:

* **JSON, never pickle.** Every Queue, Job and Worker uses ``SERIALIZER`` (RQ's
  JSONSerializer): reading a job can no longer run code.
* **One entry function.** ``HandledJob`` (the job class of every queue and worker) only
  ever calls ``handled.jobs.worker.run_job`` and no RQ callback; any other function name,
  an instance, or a callback name makes the job fail with nothing called.
* **A signature.** ``enqueue`` signs (HMAC-SHA256, with a key derived from SECRET_KEY and
  used for nothing else) the canonical JSON of the job id, the target's name, the actor and
  the arguments. ``run_job`` recomputes it and refuses a job whose signature is missing or
  wrong: a job forged or altered in Redis fails with one sentence, logged at warning.
* **An allow-list.** ``JOB_TARGETS`` names the functions handled queues; ``run_job`` runs
  only those, whatever the (signed) payload says.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from functools import lru_cache

from rq.job import Job
from rq.serializers import JSONSerializer

from handled.errors import HandledError

SERIALIZER = JSONSerializer
RUN_JOB = "handled.jobs.worker.run_job"
SIGNING_CONTEXT = b"handled job v1"

# the only functions a worker runs: name on the queue -> the function's dotted path
JOB_TARGETS: dict[str, str] = {
    "import": "handled.integrations.submit.import_job",
    "transformation": "handled.transformations.service.transformation_job",
}


class JobRefused(HandledError):
    """A job in Redis that handled did not queue (or that was altered there): nothing of it runs."""


def target_name(func) -> str:
    """The allow-list name of ``func`` (a function, its dotted path, or a name in JOB_TARGETS)."""
    if isinstance(func, str) and func in JOB_TARGETS:
        return func
    path = func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"
    for name, target in JOB_TARGETS.items():
        if target == path:
            return name
    raise ValueError(f"{path} is not in JOB_TARGETS (handled/jobs/signing.py): add it there to run it as a job.")


def target_path(name: str) -> str:
    """The dotted path of an allowed target; JobRefused for anything else."""
    if not isinstance(name, str) or name not in JOB_TARGETS:
        raise JobRefused(f"This job names {str(name)[:80]!r}, which is not a job handled runs "
                         "(JOB_TARGETS); it was refused and nothing was run.")
    return JOB_TARGETS[name]


@lru_cache(maxsize=8)
def signing_key(secret_key: str) -> bytes:
    """The jobs' HMAC key: derived from SECRET_KEY, used for nothing else."""
    return hmac.new(secret_key.encode(), SIGNING_CONTEXT, hashlib.sha256).digest()


def canonical(job_id: str, target: str, actor_data: dict, args, kwargs: dict) -> bytes:
    """The signed bytes: one JSON text for the same values before and after the trip through
    Redis (tuples become lists in JSON either way; keys sorted)."""
    return json.dumps([job_id, target, actor_data, list(args), kwargs], sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def sign(secret_key: str, job_id: str, target: str, actor_data: dict, args, kwargs: dict) -> str:
    return hmac.new(signing_key(secret_key), canonical(job_id, target, actor_data, args, kwargs),
                    hashlib.sha256).hexdigest()


def verify(secret_key: str, job_id: str | None, target, actor_data, args, kwargs, signature) -> None:
    """Nothing if ``signature`` holds for these values; JobRefused (one sentence) otherwise."""
    refused = JobRefused(f"Job {job_id} was refused: its signature is missing or wrong, so it was not "
                         "queued by handled or was altered in Redis; nothing was run.")
    if not (isinstance(signature, str) and job_id and isinstance(target, str) and isinstance(actor_data, dict)
            and isinstance(args, (list, tuple)) and isinstance(kwargs, dict)):
        raise refused
    try:
        expected = sign(secret_key, job_id, target, actor_data, args, kwargs)
    except (TypeError, ValueError):
        raise refused from None
    if not hmac.compare_digest(expected, signature):
        raise refused


class HandledJob(Job):
    """An RQ job that only ever calls ``run_job``, and no callback named in Redis."""

    @property
    def func(self):
        if self.func_name != RUN_JOB or self.instance is not None:
            raise JobRefused(f"Job {self.id} was refused: it does not call {RUN_JOB}, so handled did not "
                             "queue it; nothing was run.")
        return super().func

    @property
    def success_callback(self):
        return None     # handled sets no callbacks; one named in Redis is not imported

    @property
    def failure_callback(self):
        return None

    @property
    def stopped_callback(self):
        return None
