"""The short form of the fault-injection run: `bench/faults.py --quick` as a subprocess.

It starts its own world (private PostgreSQL clusters, PgBouncer, Redis, two gunicorn
instances and a job worker) on loopback, injects every fault once under load and writes
its table as JSON. Every fault must be in the table with every must-be-0 figure at 0
(docs/FAULTS.md: no other 5xx, no traceback, no revoked session let in, imports whole or
absent, reference tables complete, no scratch table left, no run stuck or failed without a
reason, no short download, the job worker never gone) and every instance answering within
5 s of each heal. It needs root (the disk-full fault mounts a tmpfs; PostgreSQL and
PgBouncer run as the postgres user).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.environment import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the fault-injection run needs root (tmpfs, postgres user)")

FAULTS = ("redis-empty", "redis-kept", "primary-restart", "pgbouncer-restart", "primary-pause", "data-stop-import",
          "data-stop-rebuild", "data-stop-export", "worker-kill-import", "worker-kill-rebuild", "gunicorn-kill-upload",
          "gunicorn-kill-download", "disk-full-upload")

MUST_BE_ZERO = ("5xx", "tb", "revoked", "imports", "refs", "scratch", "stuck", "noreason", "short", "wexit")


@pytest.mark.flow("Faults under load")
@pytest.mark.runs_long(65)
def test_quick_fault_run_loses_nothing_and_recovers(tmp_path):
    out = tmp_path / "faults.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "faults.py"), "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    table = json.loads(out.read_text())
    rows = {row[0]: dict(zip(table["header"], row)) for row in table["rows"]}
    assert [name for name in rows if name in FAULTS] == list(FAULTS), list(rows)
    failures = []
    for name, cells in rows.items():
        failures += [f"{name}: {figure} = {cells[figure]}" for figure in MUST_BE_ZERO if cells[figure]]
        for instance in ("rec A", "rec B"):
            recovered = cells[instance]
            if name in FAULTS and (recovered in ("-", "never") or float(recovered) >= 5):
                failures.append(f"{name}: {instance} = {recovered}")
    assert not failures, "\n".join(failures) + "\n\n" + done.stdout[-4000:]
    assert done.returncode == 0, done.stdout[-4000:]
