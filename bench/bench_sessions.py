"""Benchmark: what the session check costs under gunicorn, and how hard it hits PRIMARY.

Runs the app under gunicorn (several sync workers, 127.0.0.1 only) against its own
database and a private redis-server, and sends a bounded number of requests from
a few client threads for three scenarios, each on a fresh server:

  anonymous   GET /login                (baseline of the pages: a form, no sign-in check)
  warm        GET /account/password     signed in, shared session cache on
  no-cache    GET /account/password     signed in, SESSION_CACHE_ENABLED=false
  anon-json   GET /api/me               anonymous, answered 401 (baseline of the JSON pair)
  warm-json   GET /api/me               signed in, cache on: the same route, so the
                                        difference is the session check alone

It prints requests/s, the ratio of each to the anonymous baseline, and the number
of PRIMARY statements per 1000 requests, counted inside the workers (a gunicorn
hook attaches a counter to the PRIMARY database object and writes it out when the
worker exits). Usage:

  .venv/bin/python bench/bench_sessions.py [--requests 3000] [--workers 4] [--clients 8]
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.processes import free_port  # noqa: E402
from tests.support.servers import PrivateRedis  # noqa: E402

PG_SERVER = os.environ.get("HANDLED_TEST_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
DATABASE = "handled_bench_sessions"
PASSWORD = "load test passphrase 1"

GUNICORN_HOOKS = '''
import os

def post_worker_init(worker):
    from handled.db import primary_db
    counter = {"statements": 0, "pending_checks": 0}

    def count(event):
        # the once-a-second check for invalidations recorded while Redis was unreachable
        kind = "pending_checks" if '"pending_invalidations"' in event.sql else "statements"
        counter[kind] += 1
    primary_db._target().query_hooks.append(count)
    worker._handled_counter = counter

def worker_exit(server, worker):
    counter = getattr(worker, "_handled_counter", {"statements": 0, "pending_checks": 0})
    with open(os.path.join(os.environ["BENCH_COUNT_DIR"], str(os.getpid())), "w") as handle:
        handle.write(f"{counter['statements']} {counter['pending_checks']}")
'''


def prepare_database() -> str:
    conn = psycopg2.connect(f"{PG_SERVER}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{DATABASE}"')
    conn.close()
    return f"{PG_SERVER}/{DATABASE}"


def drop_database() -> None:
    """The bench's own database goes at the end, as the other benchmarks' do."""
    conn = psycopg2.connect(f"{PG_SERVER}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    conn.close()


def app_environment(database_url: str, redis_url: str, cache: bool) -> dict:
    return {**os.environ, "PRIMARY_DATABASE_URL": database_url, "SPLIT_DB_MODE": "false",
            "REDIS_URL": redis_url, "SECRET_KEY": "bench-secret-key-0123456789abcdef",
            "SESSION_COOKIE_SECURE": "false", "SESSION_CACHE_ENABLED": "true" if cache else "false",
            "LOG_DB_QUERIES": "false"}


def setup_schema_and_session(env: dict) -> str:
    """Migrate, create a user and return a session token for it (through the services)."""
    flask = [str(ROOT / ".venv/bin/flask")]
    subprocess.run(flask + ["db", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
    code = ("from handled import create_app\n"
            "from handled.auth import users, sessions\n"
            "from handled.context import Actor, Context\n"
            "app = create_app()\n"
            "ctx = Context(app.config['HANDLED_SETTINGS'], Actor.cli_operator())\n"
            "with app.test_request_context():\n"
            f"    user, _ = users.create_user(ctx, 'bench@example.test', 'Bench', ['salesperson'], password={PASSWORD!r}, must_change_password=False)\n"
            "    print(sessions.create_session(app.config['HANDLED_SETTINGS'], user.id, '127.0.0.1', 'bench'))\n")
    out = subprocess.run([str(ROOT / ".venv/bin/python"), "-c", code], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


class Server:
    """gunicorn on a free loopback port, with the statement counter hooks."""

    def __init__(self, env: dict, workers: int, workdir: Path):
        self.port = free_port()
        self.count_dir = Path(tempfile.mkdtemp(dir=workdir))
        hooks = workdir / "gunicorn_hooks.py"
        hooks.write_text(GUNICORN_HOOKS)
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers),
             "--config", str(hooks), "--log-level", "warning", "app:app"],
            env={**env, "BENCH_COUNT_DIR": str(self.count_dir)}, cwd=ROOT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/login")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not start")

    def stop(self) -> tuple[int, float, int]:
        """Stop gracefully; returns (PRIMARY statements all workers ran, seconds the server was up,
        pending-invalidation checks among them, counted apart)."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        counts = [(p.read_text() or "0 0").split() for p in self.count_dir.iterdir()]
        return (sum(int(c[0]) for c in counts), time.monotonic() - self.started,
                sum(int(c[1]) for c in counts if len(c) > 1))


def run_load(port: int, path: str, cookie: str | None, total: int, clients: int,
             expected: int = 200) -> tuple[float, int]:
    """Send ``total`` GETs from ``clients`` threads; returns (seconds taken, unexpected answers)."""
    remaining = iter(range(total))
    lock = threading.Lock()
    failures = [0]

    def worker():
        headers = {"Cookie": cookie} if cookie else {}
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status != expected:
                with lock:
                    failures[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, failures[0]


SCENARIOS = [  # name, path, signed in, cache on, expected status
    ("anonymous", "/login", False, True, 200),
    ("warm", "/account/password", True, True, 200),
    ("no-cache", "/account/password", True, False, 200),
    ("anon-json", "/api/me", False, True, 401),
    ("warm-json", "/api/me", True, True, 200),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="per scenario")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds, to even out a busy machine")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench_sessions_"))
    redis_server = PrivateRedis(workdir / "redis").start()
    servers = {}
    try:
        database_url = prepare_database()
        token = setup_schema_and_session(app_environment(database_url, redis_server.url, True))
        cookie = f"handled_session={token}"
        for name, _, _, cache, _ in SCENARIOS:  # one server per scenario, so statements are counted apart
            servers[name] = Server(app_environment(database_url, redis_server.url, cache), args.workers, workdir)
        seconds = dict.fromkeys(servers, 0.0)
        failures = dict.fromkeys(servers, 0)
        per_round = max(args.requests // args.rounds, 1)
        for _ in range(args.rounds):
            for name, path, signed_in, _, expected in SCENARIOS:
                took, failed = run_load(servers[name].port, path, cookie if signed_in else None, per_round,
                                        args.clients, expected)
                seconds[name] += took
                failures[name] += failed
        total = per_round * args.rounds
        results = {name: (total / seconds[name], failures[name], servers.pop(name).stop()) for name in seconds}
        report(results, args, total)
    finally:
        for server in servers.values():
            server.stop()
        redis_server.stop()
        drop_database()


def report(results: dict, args, total: int) -> None:
    baselines = {"anon-json": "anon-json", "warm-json": "anon-json"}
    print(f"bench_sessions: {total} requests per scenario in {args.rounds} interleaved rounds, "
          f"gunicorn {args.workers} sync workers per scenario, {args.clients} client threads, 127.0.0.1")
    print(f"{'scenario':<10} {'req/s':>8} {'vs baseline':>12} {'baseline':>10} {'PRIMARY stmts/1000 req':>24} {'unexpected':>10}")
    for name, (rate, failures, (statements, _, _)) in results.items():
        base = baselines.get(name, "anonymous")
        print(f"{name:<10} {rate:>8.0f} {rate / results[base][0]:>11.2f}x {base:>10} "
              f"{statements * 1000 / total:>24.1f} {failures:>10}")
    ttl = 30  # SESSION_CACHE_TTL default, which the servers use
    for name in ("warm", "warm-json"):
        statements, up, checks = results[name][2]
        print(f"{name}: {statements} PRIMARY statement(s) (session lookups) in {up:.0f} s up; "
              f"once per TTL allows {math.ceil(up / ttl)}; plus {checks} pending-invalidation check(s), "
              f"at most {math.ceil(up) * args.workers} (once a second per worker)")


if __name__ == "__main__":
    main()
