"""Where the tests find PostgreSQL and Redis, and the names they may use (all from the environment).

  HANDLED_TEST_PG            server URL without database (default postgresql://postgres@127.0.0.1:5432)
  HANDLED_TEST_REDIS         Redis URL of a database the tests may flush (default redis://127.0.0.1:6379/15)
  HANDLED_TEST_DB_PREFIX     prefix of every database the tests create (default handled_test)
  PYTEST_XDIST_WORKER        set by pytest-xdist in each worker (gw0, gw1, ...): the worker's databases
                             are PREFIX_gw<n>... and its Redis database is the one below HANDLED_TEST_REDIS's
                             by n (15, 14, 13 ... by default), so workers never see each other's rows or keys
                             (the benchmarks in bench/ default to databases 5-7, the app to 0 and 1)
  HANDLED_TEST_VIA_PGBOUNCER 1: every test's PRIMARY goes through a real PgBouncer (see fixtures/databases.py)
  HANDLED_TEST_AXE           npm's axe-core (axe.min.js) that scripts/test installs in var/tools/axe
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent.parent
PG_SERVER = os.environ.get("HANDLED_TEST_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
PG_HOST = urlsplit(PG_SERVER).hostname or "127.0.0.1"   # where HANDLED_TEST_PG's server listens, for
PG_PORT = urlsplit(PG_SERVER).port or 5432               # what must point at it directly (a PgBouncer)
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")   # "" when the suite runs in one process
WORKER_INDEX = int(WORKER.removeprefix("gw")) if WORKER else 0


def _redis_of_this_worker(url: str) -> str:
    """HANDLED_TEST_REDIS for worker 0 (or no xdist); the database n below it for worker n."""
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    index = WORKER_INDEX
    if index > base:
        raise RuntimeError(f"HANDLED_TEST_REDIS {url} leaves no Redis database for xdist worker {WORKER}: "
                           f"point it at a database numbered {index} or higher")
    return urlunsplit(parts._replace(path=f"/{base - index}"))


TEST_REDIS = _redis_of_this_worker(os.environ.get("HANDLED_TEST_REDIS", "redis://127.0.0.1:6379/15"))
PREFIX = os.environ.get("HANDLED_TEST_DB_PREFIX", "handled_test") + (f"_{WORKER}" if WORKER else "")
VIA_PGBOUNCER = os.environ.get("HANDLED_TEST_VIA_PGBOUNCER", "") == "1"
AXE = Path(os.environ.get("HANDLED_TEST_AXE", ROOT / "var/tools/axe/node_modules/axe-core/axe.min.js"))
SECRET = "test-secret-key-0123456789abcdef"
MODES = ["single", "split"]
