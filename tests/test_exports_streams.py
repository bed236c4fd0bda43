"""Downloads running at once, per user: EXPORT_STREAMS_PER_USER, counted in Redis with a lease.

A download holds a DATA connection while it streams; without a limit one user
opening many downloads (or a slow reader) holds every connection of the pool.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from handled import create_app, runs
from handled.context import system_context
from handled.exports import service
from handled.auth.web import COOKIE_NAME
from handled.models import ExportRun
from tests.support.accounts import make_user, new_session
from tests.support.databases import connect, mode_env
from tests.support.environment import ROOT
from tests.support.waiting import wait_until

EXPORT = "/exports/services.csv"


@pytest.fixture
def app(settings):
    application = create_app(dataclasses.replace(settings, export_streams_per_user=2))
    application.config.update(TESTING=True)
    return application


BIG_EXPORT = "/exports/zip3_reference.csv"


def fill_zip3_reference(settings, rows: int = 60_000) -> None:
    """About 30 MB of CSV: far more than the loopback's socket buffers, so a download that is
    not read stays open in the server."""
    with connect(settings.data.dbname) as conn, conn.cursor() as cur:   # the superuser: the app may only read reference
        cur.execute("INSERT INTO reference.zip3_reference (zip3, primary_city, pop_lng) "
                    "SELECT lpad(g::text, 6, '0'), repeat('Springfield ', 40), -73.25 "
                    "FROM generate_series(1, %s) g", [rows])


class Downloads:
    """GETs whose status and headers are read, their bodies not (the client holds the stream open);
    every connection is closed at the end, whatever happened (an open one would hold a COPY)."""

    def __init__(self, base: str):
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port, self.opened = host, int(port), []

    def open(self, token: str, path: str = BIG_EXPORT) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        self.opened.append(conn)
        conn.request("GET", path, headers={"Cookie": f"{COOKIE_NAME}={token}"})
        response = conn.getresponse()
        response.conn = conn
        self.opened.append(response)   # the response holds the socket too: close both
        return response

    def status(self, token: str, path: str = BIG_EXPORT) -> int:
        """Open, read whole and close one download; its status."""
        response = self.open(token, path)
        response.read()
        response.close()
        response.conn.close()
        return response.status

    def close_all(self) -> None:
        for each in reversed(self.opened):
            each.close()


def test_a_user_may_hold_only_export_streams_per_user_downloads_at_once(live_server, settings):
    app, base = live_server
    fill_zip3_reference(settings)
    alice = new_session(app, make_user(app, ["download_exports"]))
    bob = new_session(app, make_user(app, ["download_exports"]))
    downloads = Downloads(base)
    try:
        first, second = downloads.open(alice), downloads.open(alice)
        assert (first.status, second.status) == (200, 200)

        third = downloads.open(alice)
        assert third.status == 429
        assert "You already have 2 downloads running; wait for one to finish" in third.read().decode()

        assert downloads.status(bob) == 200         # another user is not held up by alice

        assert first.read().startswith(b"zip3,")    # read to its end: its slot is free again
        wait_until(lambda: downloads.status(alice, "/exports/carriers.csv") == 200, 10,
                   "alice's finished download to free its slot")

        second.close()                              # the client goes away half-way: its slot is freed too
        second.conn.close()
        wait_until(lambda: downloads.status(alice, "/exports/carriers.csv") == 200, 15,
                   "alice's abandoned download to free its slot")
    finally:
        downloads.close_all()


CRASH_SCRIPT = textwrap.dedent("""
    import os, sys
    from handled import create_app
    from handled.settings import load_settings
    from tests.support.accounts import make_user, sign_in_client

    app = create_app(load_settings(dict(os.environ)))
    app.config.update(TESTING=True)
    try:
        import handled.exports.streams as streams
        streams.LEASE_SECONDS = 3   # a short lease, so the test waits seconds, not half a minute
    except ImportError:             # (the code before per-user limits)
        pass
    client = sign_in_client(app, make_user(app, ["download_exports"], email=sys.argv[1]))
    response = client.get("/exports/services.csv", buffered=False)
    print(response.status_code, flush=True)
    os._exit(0)   # the worker dies with the download open: no release, no heartbeat
""")


def test_a_crashed_worker_does_not_keep_a_slot_beyond_its_lease(app, settings, tmp_path):
    from handled.auth.users import find_user_by_email
    from tests.support.accounts import sign_in_client

    env = mode_env(settings.mode, settings.primary.dbname, settings.data.dbname if settings.split_db_mode else None,
                   EXPORT_STREAMS_PER_USER=1)
    env.update(PATH=os.environ["PATH"], PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, "crash@example.test"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "200", result.stderr[-2000:]
    crashed_at = time.monotonic()

    app.config["HANDLED_SETTINGS"] = dataclasses.replace(settings, export_streams_per_user=1)
    with app.app_context():
        user = find_user_by_email("crash@example.test")
    client = sign_in_client(app, user)
    refused = client.get(EXPORT)
    assert refused.status_code == 429 and "You already have 1 download running" in refused.get_data(as_text=True)

    def free() -> bool:
        response = client.get(EXPORT)
        return response.status_code == 200
    wait_until(free, timeout=15, message="the dead worker's slot to expire")
    assert time.monotonic() - crashed_at >= 2.5     # held for its lease, not forgotten at once
    assert ExportRun.select().count() >= 1


@pytest.mark.one_mode   # what it proves does not depend on the database mode
def test_an_export_run_is_swept_once_its_process_is_gone_never_while_it_streams(app, settings, login_client):
    """bench/faults.py gunicorn-kill-download: the web worker streaming a download was killed and
    its run stayed 'running' for good (export runs were never swept: a stream kept no heartbeat)."""
    fill_zip3_reference(settings, rows=20_000)
    chunks = service.stream_export(system_context(settings), "zip3_reference.csv")
    try:   # closed whatever happens: an open stream holds its COPY (and the table the reset empties)
        assert next(chunks)
        live = ExportRun.select().order_by(ExportRun.id.desc()).first()
        assert live.status == "running" and runs.sweep_dead_runs("export") == []   # this process streams it
    finally:
        chunks.close()
    assert ExportRun.get_by_id(live.id).status == "failed"   # closed before its end: interrupted
    killed = runs.start_run("export", export="zip3_reference.csv")
    ExportRun.update(worker=f"{socket.gethostname()}:999999999").where(ExportRun.id == killed.id).execute()
    page = login_client(permissions=["download_exports"]).get("/exports/")   # the page sweeps first
    assert page.status_code == 200
    swept = ExportRun.get_by_id(killed.id)
    assert swept.status == "failed" and "stopped before it finished" in swept.message
