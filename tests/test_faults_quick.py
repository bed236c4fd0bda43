"""The short form of the fault-injection run: `bench/faults.py --quick` as a subprocess.

It starts its own world (private PostgreSQL clusters, PgBouncer, Redis, two gunicorn
instances and a job worker) on loopback, injects each fault once under load and writes
its table as JSON; every must-be-0 figure (docs/FAULTS.md) has to be 0 and every
recovery under 5 s. It needs root (the disk-full fault mounts a tmpfs; PostgreSQL and
PgBouncer run as the postgres user) and about a minute and a half.

LIMITED to the faults that pass today (PASSING below). The others still fail, for the
reasons listed in docs/FAULTS.md ("Still failing"): the DATA stops and the worker kills
leave scratch tables and log tracebacks, a killed or interrupted export stream leaves its
run "running", and the job worker logs a traceback when Redis goes away (redis-empty and
redis-kept pass only on the runs where the worker was not talking to Redis at that moment). Add each to PASSING as it is fixed; the full list is
`bench/faults.py --quick` without --only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.environment import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the fault-injection run needs root (tmpfs, postgres user)")

PASSING = ("primary-pause", "disk-full-upload")

MUST_BE_ZERO = ("5xx", "tb", "revoked", "imports", "refs", "scratch", "stuck", "noreason", "short")


def test_quick_fault_run_loses_nothing_and_recovers(tmp_path):
    out = tmp_path / "faults.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "faults.py"), "--quick", "--only", ",".join(PASSING),
                           "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    table = json.loads(out.read_text())
    header = table["header"]
    failures = []
    for row in table["rows"]:
        cells = dict(zip(header, row))
        for figure in MUST_BE_ZERO:
            if cells[figure]:
                failures.append(f"{cells['fault']}: {figure} = {cells[figure]}")
        for instance in ("rec A", "rec B"):
            if cells[instance] not in ("-",) and (cells[instance] == "never" or float(cells[instance]) >= 5):
                failures.append(f"{cells['fault']}: {instance} = {cells[instance]}")
    assert not failures, "\n".join(failures) + "\n\n" + done.stdout[-4000:]
    assert [row[0] for row in table["rows"] if row[0] in PASSING] == list(PASSING), table["rows"]
    assert done.returncode == 0, done.stdout[-4000:]
