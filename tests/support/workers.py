"""A real `flask jobs worker` subprocess over the current test databases."""

from __future__ import annotations

import os
import subprocess
import time
from urllib.parse import urlencode

from tests.support.environment import ROOT, SECRET, TEST_REDIS
from tests.support.processes import start_flask


def url(config) -> str:
    """The URL of ``config`` for a subprocess's environment: its libpq parameters (sslmode, ...)
    and pgbouncer=true kept, so a process behind the tests' PgBouncer connects as the tests do."""
    who = f"{config.user}@" if config.user else ""
    params = {**config.libpq_params, **({"pgbouncer": "true"} if config.pgbouncer else {})}
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{who}{config.host or '127.0.0.1'}:{config.port or 5432}/{config.dbname}{query}"


def worker_env(settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRIMARY_", "DATA_", "SPLIT_", "REDIS_"))}
    env.update(PRIMARY_DATABASE_URL=url(settings.primary), REDIS_URL=TEST_REDIS,
               SPLIT_DB_MODE="true" if settings.split_db_mode else "false",
               SECRET_KEY=SECRET, PYTHONUNBUFFERED="1")
    if settings.split_db_mode:
        env["DATA_DATABASE_URL"] = url(settings.data)
    for variable, config in (("PRIMARY_MIGRATION_URL", settings.primary_migration),
                             ("DATA_MIGRATION_URL", settings.data_migration), ("DATA_BUILD_URL", settings.data_build)):
        if config is not None:   # the owner's and the builder's roles (tests/support/databases.with_roles)
            env[variable] = url(config)
    return env


# Every worker a test started; tests/fixtures/workers.py kills those still running after each
# test, so a test that fails half way never leaves a worker taking the next tests' jobs.
STARTED: list[subprocess.Popen] = []


def stop_started_workers() -> None:
    while STARTED:
        worker = STARTED.pop()
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)


def start_worker(settings, tmp_path, *extra, redis_url: str | None = None) -> subprocess.Popen:
    """``redis_url``: another Redis than the tests' (a private server the test stops)."""
    # run from an empty folder so the repository's .env is not read
    log = open(tmp_path / f"worker-{time.monotonic_ns()}.log", "wb")
    env = worker_env(settings)
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    worker = start_flask("--app", str(ROOT / "app.py"), "jobs", "worker", *extra, env=env,
                         cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    STARTED.append(worker)
    return worker


def worker_log(folder) -> str:
    """Everything the workers ``start_worker`` started in ``folder`` wrote."""
    return "\n".join(path.read_text() for path in sorted(folder.glob("worker-*.log")))
