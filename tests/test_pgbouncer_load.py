"""Several gunicorn workers (deploy/gunicorn.conf.py) under concurrent requests: the
number of server-side connections on PRIMARY, read from pg_stat_activity while the
load runs, stays within the budget: PgBouncer's pool size when PRIMARY is behind it,
workers x connection_limit when the app connects directly."""

from __future__ import annotations

import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from handled.auth.web import COOKIE_NAME
from tests.support.databases import connect, db_url, session_runtime_roles
from tests.support.environment import PG_HOST, PG_PORT
from tests.support.gunicorn import LIMIT, WORKERS, Gunicorn, admin_token, app_env
from tests.support.servers import PrivatePgBouncer


class Sampler(threading.Thread):
    """Peak server-side connections to one database (and pooler clients, if given)."""

    def __init__(self, dbname: str, bouncer: PrivatePgBouncer | None = None):
        super().__init__(daemon=True)
        self.dbname, self.bouncer = dbname, bouncer
        self.peak_server = self.peak_clients = 0
        self.samples = 0
        self.done = threading.Event()

    def run(self):
        conn = connect("postgres")
        admin = None
        if self.bouncer:
            admin = connect(self.bouncer.admin_url())
        while not self.done.is_set():
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
                            (self.dbname,))
                self.peak_server = max(self.peak_server, cur.fetchone()[0])
            if admin:
                with admin.cursor() as cur:
                    cur.execute("SHOW POOLS")
                    names = [d[0] for d in cur.description]
                    for row in cur.fetchall():
                        row = dict(zip(names, row))
                        if row["database"] == self.dbname:
                            self.peak_clients = max(self.peak_clients, row["cl_active"] + row["cl_waiting"])
            self.samples += 1
            time.sleep(0.01)
        conn.close()
        if admin:
            admin.close()


def hammer(server: Gunicorn, token: str, requests: int = 240) -> list[int]:
    def one(i):
        path = "/api/me" if i % 2 else "/admin/users"
        req = urllib.request.Request(server.url(path), headers={"Cookie": f"{COOKIE_NAME}={token}",
                                                                "Accept": "application/json" if i % 2 else "text/html"})
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status
    with ThreadPoolExecutor(max_workers=12) as pool:
        return list(pool.map(one, range(requests)))


@pytest.mark.flow("Pooler (PgBouncer, transaction mode)")
def test_through_pgbouncer_server_connections_stay_within_its_pool(settings, tmp_path):
    token = admin_token(settings)
    bouncer = PrivatePgBouncer(server_host=PG_HOST, server_port=PG_PORT, pool_size=LIMIT, users=("postgres", *session_runtime_roles())).start()
    server = None
    try:
        server = Gunicorn(tmp_path, app_env(settings, bouncer.url(settings.primary.dbname, connection_limit=LIMIT)))
        sampler = Sampler(settings.primary.dbname, bouncer)
        sampler.start()
        statuses = hammer(server, token)
        sampler.done.set()
        sampler.join(10)
    finally:
        if server:
            server.stop()
        bouncer.destroy()
    print(f"through PgBouncer: {len(statuses)} requests, peak PRIMARY server connections {sampler.peak_server}, "
          f"peak pooler clients {sampler.peak_clients}, pool size {LIMIT}")
    assert statuses == [200] * len(statuses)
    assert sampler.samples > 10
    assert 1 <= sampler.peak_server <= LIMIT  # PRIMARY never saw more than the pool
    assert sampler.peak_clients > LIMIT  # while more app connections than that were open


def test_direct_server_connections_stay_within_workers_times_connection_limit(settings, tmp_path):
    token = admin_token(settings)
    server = Gunicorn(tmp_path, app_env(settings, db_url(settings.primary.dbname) + f"?connection_limit={LIMIT}"))
    try:
        sampler = Sampler(settings.primary.dbname)
        sampler.start()
        statuses = hammer(server, token)
        sampler.done.set()
        sampler.join(10)
    finally:
        server.stop()
    print(f"direct: {len(statuses)} requests, peak PRIMARY server connections {sampler.peak_server}, "
          f"budget {WORKERS} workers x connection_limit {LIMIT}")
    assert statuses == [200] * len(statuses)
    assert 1 <= sampler.peak_server <= WORKERS * LIMIT
