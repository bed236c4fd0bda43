"""Fault injection under load: what breaks when a part of handled's world fails while it is busy.

Starts its own world on 127.0.0.1 (never the shared servers): a private PostgreSQL
cluster for PRIMARY and one for DATA (split mode; ``--single``: one cluster), PRIMARY
behind a private PgBouncer, a private redis-server that keeps its data on disk, two
gunicorn instances (2 workers each) and one ``flask jobs worker``. The import folders
(IMPORT_UPLOAD_DIR, IMPORT_ARCHIVE_DIR) live on a small tmpfs mounted for the run when
this runs as root (else on an ordinary folder, and the disk-full fault is skipped).

Load, all the time, from a few client threads: signed-in page views on both instances by
several staff users; CSV export downloads; import uploads (a good small file, re-imported
with "force", and a bad one that must be refused); transformation runs queued as jobs; an
admin disabling and re-enabling users and changing their roles.

Faults, one at a time, each held a few seconds and then healed (``--quick``: each once;
the full run repeats the list until its time budget says stop):

  redis-empty        redis-server killed, started again with its data removed
  redis-kept         redis-server shut down saving, started again from its dump
  primary-restart    PRIMARY's cluster stopped (immediate) and started
  pgbouncer-restart  PgBouncer killed and started on the same port
  primary-pause      PRIMARY's postmaster and backends SIGSTOPped ~10 s, then SIGCONT
  data-stop-import   DATA stopped while a large import runs in the job worker
  data-stop-rebuild  DATA stopped while a transformation builds
  data-stop-export   DATA stopped while a CSV export is streaming
  worker-kill-import the job worker SIGKILLed mid-import (a new one started after the hold)
  worker-kill-rebuild the job worker SIGKILLed mid-build
  gunicorn-kill-upload   both workers of instance A SIGKILLed while an upload is being sent
  gunicorn-kill-download both workers of instance A SIGKILLed while an export streams
  disk-full-upload   the uploads/archive tmpfs filled up, then a small (inline) upload and a
                     large (queued) one

Figures per fault (rows) - see docs/FAULTS.md for what each means:

  served / 503 / 5xx / conn   requests answered <500; 503 pages naming the outage ("not
                              answering"); any other 5xx (must be 0); connection errors
  tb       "Traceback" lines written to the gunicorn and worker logs (must be 0)
  revoked  requests of a disabled user's session answered 200 after the disable returned (0)
  rev.checks  how many such requests were made (so "revoked 0" is not "never looked")
  imports  workspace tables not equal to their file (the same file's calm import) (0)
  refs     reference tables whose count+checksum differ from the calm build (0)
  scratch  _build_/_old_ tables still in DATA 20 s after healing, while no build runs (0)
  stuck    runs still "running" more than 60 s after the fault healed (0)
  noreason failed runs without a message (0)
  short    export downloads that ended cleanly but short (0)
  wexit    the job worker exited by itself (0)
  cut      downloads that ended in an error (expected under the stream faults; not a must-be-0)
  rec A/B  seconds from healing to the first good answer per instance (goal < 5)

Usage (as root for the tmpfs; the run stops everything it started, also on Ctrl-C):

  .venv/bin/python bench/faults.py [--quick] [--single] [--minutes 8.5] [--only NAME,...]
      [--hold S] [--pause S] [--settle S] [--origins N] [--json FILE] [--keep]

Holds: 2 s in --quick, 4 s otherwise (a gunicorn kill is held 1 s); --quick caps --minutes
at 6. The full run ends by itself within --minutes and a minute (a watchdog interrupts it
past that). Exit status 0 when every must-be-0 figure is 0 and every recovery is under 5 s,
1 otherwise, 2 when the world could not start or --only names no fault, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import _thread
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2
import redis as redis_lib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from handled.schema.names import is_scratch  # noqa: E402
from tests.support import import_files as files  # noqa: E402
from tests.support.gunicorn import Gunicorn  # noqa: E402
from tests.support.processes import free_port, start_flask  # noqa: E402
from tests.support.servers import PrivatePgBouncer, PrivatePostgres  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

SECRET = "faults-bench-secret-key-0123456789abcdef"
COOKIE = "handled_session"
DBNAME = "handled"
TABLES = ("us_zips", "gaz_zcta_national", "usps_3d_base_service")
REFERENCES = ("zip3_reference", "delivery_matrix")
BANNER_WORDS = "not answering"
STUCK_AFTER = 60.0
RECOVERY_LIMIT = 10.0  # "never": no good answer within this many seconds of healing
SCRATCH_GRACE = 20.0   # a scratch table still there this long after healing (nothing building) is left behind
FINISH_RESERVE = 170.0  # seconds of the budget kept for the last fault and the end of the run
# Each fault, in the order a round injects them: the Bench method that injects it, and its argument.
FAULTS = {"redis-empty": ("f_redis", False), "redis-kept": ("f_redis", True),
          "primary-restart": ("f_primary_restart",), "pgbouncer-restart": ("f_pgbouncer_restart",),
          "primary-pause": ("f_primary_pause",),
          "data-stop-import": ("f_data_stop", "import"), "data-stop-rebuild": ("f_data_stop", "rebuild"),
          "data-stop-export": ("f_data_stop", "export"),
          "worker-kill-import": ("f_worker_kill", "import"), "worker-kill-rebuild": ("f_worker_kill", "rebuild"),
          "gunicorn-kill-upload": ("f_gunicorn_kill", "upload"),
          "gunicorn-kill-download": ("f_gunicorn_kill", "download"),
          "disk-full-upload": ("f_disk_full",)}
WATCHDOG_EXTRA = 50.0   # past the budget by this much, the run is interrupted (then cleans up): the hard stop
PERMISSIONS = ["run_imports", "run_transformations", "download_exports", "view_customers", "view_system"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- the world's servers

class DiskRedis:
    """redis-server on a fixed free port that saves to its folder, so it can come back with
    its data (SHUTDOWN SAVE, then start) or without it (kill, remove the dump, start)."""

    def __init__(self, base: Path):
        self.base = base
        self.base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "3600 1",
             "--appendonly", "no", "--dir", str(self.base), "--dbfilename", "dump.rdb"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(self._answers, timeout=10, message="redis-server to start")
        return self

    def _answers(self):
        try:
            return redis_lib.Redis(port=self.port, socket_connect_timeout=0.2).ping()
        except redis_lib.RedisError:
            return False

    def stop(self, keep: bool):
        if not self.process or self.process.poll() is not None:
            return
        if keep:
            with contextlib.suppress(redis_lib.RedisError):
                redis_lib.Redis(port=self.port).shutdown(save=True)
        else:
            self.process.kill()
        self.process.wait(15)
        if not keep:
            (self.base / "dump.rdb").unlink(missing_ok=True)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def exception_lines(text: str) -> dict[str, int]:
    """The closing line of each traceback in a log (the exception and its message), counted."""
    found: dict[str, int] = {}
    inside = False
    for line in text.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            inside = True
        elif inside and line and not line[0].isspace():
            key = line[:160]
            found[key] = found.get(key, 0) + 1
            inside = False
    return found


def postmaster_pid(pg: PrivatePostgres) -> int:
    return int((pg.datadir / "postmaster.pid").read_text().split()[0])


class World:
    """Everything the run starts, and the one place that stops it all."""

    def __init__(self, single: bool, base: Path):
        self.single = single
        self.base = base
        self.logs = base / "logs"
        self.logs.mkdir(parents=True)
        self.primary_pg: PrivatePostgres | None = None
        self.data_pg: PrivatePostgres | None = None
        self.bouncer: PrivatePgBouncer | None = None
        self.redis: DiskRedis | None = None
        self.instances: list[Gunicorn] = []
        self.worker = None
        self.worker_logs: list = []
        self.mount: Path | None = None
        self.disk_kind = "folder"

    # --- set up
    def start_servers(self):
        """Both clusters side by side (initdb and start are most of the set-up), Redis meanwhile."""
        self.primary_pg = PrivatePostgres()   # named before they start: stop() destroys whatever began
        self.data_pg = None if self.single else PrivatePostgres()
        clusters = [pg for pg in (self.primary_pg, self.data_pg) if pg is not None]
        with ThreadPoolExecutor(max_workers=2) as pool:
            started = [pool.submit(lambda pg=pg: pg.init().start().createdb(DBNAME)) for pg in clusters]
            self.redis = DiskRedis(self.base / "redis").start()
            for future in started:
                future.result()
        self.bouncer = PrivatePgBouncer(server_port=self.primary_pg.port, pool_size=8).start()
        self.mount = self.base / "disk"
        self.mount.mkdir()
        if os.geteuid() == 0:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(self.mount)],
                                  capture_output=True, text=True)
            if done.returncode == 0:
                self.disk_kind = "tmpfs 48 MiB"
        (self.mount / "uploads").mkdir()
        (self.mount / "archive").mkdir()

    def env(self, direct: bool = False) -> dict:
        primary_direct = self.primary_pg.url(DBNAME)
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
               "HOME": str(self.base), "SECRET_KEY": SECRET, "SESSION_COOKIE_SECURE": "false",
               "REDIS_URL": self.redis.url, "SPLIT_DB_MODE": "false" if self.single else "true",
               "PRIMARY_DATABASE_URL": primary_direct if direct else self.bouncer.url(DBNAME),
               "PRIMARY_MIGRATION_URL": primary_direct,
               "IMPORT_UPLOAD_DIR": str(self.mount / "uploads"),
               "IMPORT_ARCHIVE_DIR": str(self.mount / "archive"),
               "IMPORT_BACKGROUND_BYTES": str(256 * 1024), "BACKUP_DIR": str(self.base / "backups"),
               "HANDLED_WORKERS": "2", "HANDLED_THREADS": "2"}
        if not self.single:
            env["DATA_DATABASE_URL"] = self.data_pg.url(DBNAME)
        return env

    def start_instances(self):
        for name in ("A", "B"):
            folder = self.logs / name
            folder.mkdir()
            self.instances.append(Gunicorn(folder, self.env()))

    def start_worker(self):
        handle = open(self.logs / f"worker-{len(self.worker_logs)}.log", "wb")
        self.worker_logs.append(handle)
        self.worker = start_flask("--app", str(ROOT / "app.py"), "jobs", "worker", env=self.env(),
                                  cwd=self.base, stdout=handle, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def log_files(self) -> list[Path]:
        return [self.logs / n / "gunicorn.log" for n in ("A", "B")] + \
               [Path(h.name) for h in self.worker_logs]

    def gunicorn_workers(self, instance: Gunicorn) -> list[int]:
        return children_of(instance.process.pid)

    # --- tear down: each step on its own, so one failure never leaves the rest running
    def stop(self):
        steps = [lambda: self.worker and self.worker.poll() is None and (self.worker.kill(), self.worker.wait(10))]
        steps += [(lambda i=i: i.process.poll() is None and i.stop()) for i in self.instances]
        steps += [lambda: self.bouncer and self.bouncer.destroy(),
                  lambda: self.redis and self.redis.stop(keep=False),
                  lambda: self.primary_pg and self._resume(self.primary_pg),
                  lambda: self.primary_pg and self.primary_pg.destroy(),
                  lambda: self.data_pg and self.data_pg.destroy(),
                  lambda: self.disk_kind.startswith("tmpfs") and subprocess.run(["umount", "-l", str(self.mount)]),
                  lambda: [h.close() for h in self.worker_logs]]
        for step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                log(f"cleanup step failed: {exc}")

    @staticmethod
    def _resume(pg):
        with contextlib.suppress(Exception):
            pid = postmaster_pid(pg)
            for child in [pid, *children_of(pid)]:
                os.kill(child, signal.SIGCONT)


# ---------------------------------------------------------------- HTTP clients

class Answer:
    def __init__(self, status, body=b"", headers=None, error=None):
        self.status, self.body, self.headers, self.error = status, body, headers or {}, error


class Client:
    """One signed-in person on one instance: its session cookie, the Flask session cookie
    (CSRF) it is given, and the CSRF token read from the last page."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.cookies = {COOKIE: token}
        self.csrf = None

    def _headers(self, extra=None):
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        headers = {"Cookie": cookie, "Accept": "text/html"}
        if self.csrf:
            headers["X-CSRFToken"] = self.csrf
        headers.update(extra or {})
        return headers

    def _keep(self, response):
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                if "=" in pair:
                    key, val = pair.split("=", 1)
                    if key in ("session",):
                        self.cookies[key] = val

    def request(self, method, path, body=None, headers=None, timeout=20, reader=None) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=self._headers(headers))
            response = conn.getresponse()
            self._keep(response)
            if reader is not None:
                return reader(response)
            data = response.read()
            found = re.search(rb'name="csrf_token" value="([^"]+)"', data)
            if found:
                self.csrf = found.group(1).decode()
            return Answer(response.status, data, dict(response.getheaders()))
        except (OSError, http.client.HTTPException) as exc:
            return Answer(None, error=f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def ensure_csrf(self):
        if not self.csrf:
            self.request("GET", "/account")
        return self.csrf is not None

    def post_form(self, path, fields: list[tuple[str, str]]) -> Answer:
        from urllib.parse import urlencode
        self.ensure_csrf()
        return self.request("POST", path, body=urlencode(fields),
                            headers={"Content-Type": "application/x-www-form-urlencoded"})

    def upload(self, path, file_name, data: bytes, fields=(), pause_after=None, slow=None, timeout=60) -> Answer:
        """multipart upload; ``slow``=(chunk, seconds) sends it in pieces, and ``pause_after`` (an
        Event set once the first piece is out) lets a fault strike mid-upload."""
        self.ensure_csrf()
        boundary = "faultsbenchboundary7391"
        head = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                       for k, v in [("csrf_token", self.csrf or ""), *fields])
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{file_name}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n")
        body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.putrequest("POST", path)
            for k, v in self._headers({"Content-Type": f"multipart/form-data; boundary={boundary}",
                                       "Content-Length": str(len(body))}).items():
                conn.putheader(k, v)
            conn.endheaders()
            chunk, wait = slow or (len(body), 0)
            for start in range(0, len(body), chunk):
                conn.send(body[start:start + chunk])
                if pause_after is not None and start == 0:
                    pause_after.set()
                if wait:
                    time.sleep(wait)
            response = conn.getresponse()
            self._keep(response)
            return Answer(response.status, response.read(), dict(response.getheaders()))
        except (OSError, http.client.HTTPException) as exc:
            return Answer(None, error=f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()


# ---------------------------------------------------------------- recording

class Window:
    def __init__(self, name: str):
        self.name = name
        self.started = time.time()
        self.healed: float | None = None
        self.counts = {"served": 0, "503": 0, "5xx": 0, "conn": 0}
        self.other_5xx: dict[str, int] = {}
        self.tracebacks = 0
        self.revoked = 0
        self.revoke_checks = 0
        self.imports_bad: list[str] = []
        self.refs_bad: list[str] = []
        self.scratch: list[str] = []
        self.stuck: list[str] = []
        self.noreason = 0
        self.short = 0
        self.worker_exits = 0
        self.cut = 0
        self.recovery: dict[str, float | None] = {}
        self.notes: list[str] = []


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.windows = [Window("warm-up")]

    @property
    def current(self) -> Window:
        return self.windows[-1]

    def answer(self, what: str, answer: Answer):
        with self.lock:
            w = self.current
            if answer.status is None:
                w.counts["conn"] += 1
            elif answer.status < 500:
                w.counts["served"] += 1
            elif answer.status == 503 and BANNER_WORDS.encode() in answer.body:
                w.counts["503"] += 1
            else:
                w.counts["5xx"] += 1
                key = f"{what} -> {answer.status}"
                w.other_5xx[key] = w.other_5xx.get(key, 0) + 1

    def note(self, text: str):
        with self.lock:
            self.current.notes.append(text)


# ---------------------------------------------------------------- the bench itself

class Bench:
    def __init__(self, args):
        self.args = args
        self.base = Path(tempfile.mkdtemp(prefix="handled-faults-"))
        os.chmod(self.base, 0o755)
        self.world = World(args.single, self.base)
        self.rec = Recorder()
        self.stop_load = threading.Event()
        self.threads: list[threading.Thread] = []
        self.fault_threads: list[threading.Thread] = []
        self.hurry = threading.Event()   # set at a heal: a download read slowly for a fault reads on at full speed
        self.baseline: dict[str, tuple] = {}
        self.export_lines = 0
        self.runs_seen: dict[tuple, dict] = {}
        self.log_offsets: dict[Path, int] = {}
        self.data_lock = threading.Lock()

    # --- direct database access (the bench's own checks, never through the app)
    def primary(self):
        return psycopg2.connect(self.world.primary_pg.url(DBNAME), connect_timeout=3)

    def data(self):
        pg = self.world.primary_pg if self.args.single else self.world.data_pg
        return psycopg2.connect(pg.url(DBNAME), connect_timeout=3)

    def digest(self, schema: str, table: str):
        with contextlib.closing(self.data()) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                        f"FROM {schema}.{table} t")
            return cur.fetchone()

    # --- setup
    def write_files(self):
        folder = self.base / "files"
        folder.mkdir()
        self.f_zips = files.write_uszips(folder / "uszips.csv", [
            files.uszip_row(f"{z:05d}", city=f"Town {z}") for z in range(501, 1501, 10)])
        self.f_zips_bad = files.write_uszips(folder / "uszips_bad.csv", [
            files.uszip_row("00501"), files.uszip_row("00601", lat="north")])
        self.f_gaz = files.write_gaz(folder / "2020_Gaz_zcta_national.txt", [files.gaz_row(f"{z:05d}") for z in range(601, 1601, 10)])
        rows = [files.usps_row(f"{o:03d}", f"{d:03d}") for o in range(5, 5 + self.args.origins)
                for d in range(1, 1000)]
        self.f_usps = files.write_usps(folder / files.USPS_NAME, rows)
        self.usps_bytes = self.f_usps.read_bytes()
        self.zips_bytes = self.f_zips.read_bytes()
        self.zips_bad_bytes = self.f_zips_bad.read_bytes()

    def setup(self):
        w = self.world
        log(f"world in {self.base} ({'single' if self.args.single else 'split'} mode)")
        w.start_servers()
        log(f"servers up; uploads and archive on: {w.disk_kind}")
        self.write_files()
        self.seed()
        for table in TABLES:
            self.baseline[f"workspace.{table}"] = self.digest("workspace", table)
        for table in REFERENCES:
            self.baseline[f"reference.{table}"] = self.digest("reference", table)
        self.export_lines = self.baseline["reference.delivery_matrix"][0] + 1
        log("baseline: " + ", ".join(f"{k}={v[0]}" for k, v in self.baseline.items()))
        w.start_instances()
        w.start_worker()
        self.ports = [i.port for i in w.instances]
        for path in w.log_files():
            self.log_offsets[path] = 0

    def seed(self):
        """Migrate, import the three files, build every transformation and make the people, in one
        process through the same services as `flask db migrate`, `flask integrations import` and
        `flask transformations run --all` (one interpreter start instead of five)."""
        imports = [("us-zips", str(self.f_zips)), ("gaz-zcta", str(self.f_gaz)), ("usps-3d-base", str(self.f_usps))]
        code = f"""
import json
from handled import create_app
from handled.auth import sessions
from handled.context import system_context
from handled.integrations.service import import_file
from handled.schema.migrations import migrate, resolve_targets
from handled.settings import load_settings
from handled.transformations.service import run_transformations
from tests.support.accounts import make_user
settings = load_settings()
for target in resolve_targets(settings, "all"):
    migrate(target)
app = create_app(settings)
with app.app_context():
    ctx = system_context(settings)
    for integration, path in {imports!r}:
        outcome = import_file(ctx, integration, path)
        assert outcome.status == "succeeded", (integration, outcome.message)
    run_transformations(ctx, [], run_all=True)
admin = make_user(app, role='admin', email='admin@faults.test')
staff = [make_user(app, permissions={PERMISSIONS!r}, email=f'staff{{n}}@faults.test') for n in range(3)]
victims = [make_user(app, role='salesperson', email=f'victim{{n}}@faults.test') for n in range(2)]
with app.app_context():
    out = {{'admin': [admin.id, sessions.create_session(settings, admin.id, '127.0.0.1', 'faults')],
           'staff': [[u.id, sessions.create_session(settings, u.id, '127.0.0.1', 'faults')] for u in staff],
           'victims': [u.id for u in victims]}}
print(json.dumps(out))
"""
        done = subprocess.run([sys.executable, "-c", code], env=self.world.env(direct=True), cwd=self.base,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"could not seed the world: {done.stderr[-2000:]}")
        people = json.loads(done.stdout.strip().splitlines()[-1])
        self.admin_id, self.admin_token = people["admin"]
        self.staff = people["staff"]
        self.victims = people["victims"]
        log("seeded: migrated, 3 files imported, every transformation built, people made")

    def new_session(self, user_id: int) -> str | None:
        """A session token made the way the login page makes one (the session service, PRIMARY direct)."""
        from handled.auth import sessions
        from handled.db import close_databases

        if not hasattr(self, "app"):
            from handled import create_app
            from handled.settings import load_settings
            self.app = create_app(load_settings(self.world.env(direct=True)))
        try:
            with self.app.app_context():
                return sessions.create_session(self.app.config["HANDLED_SETTINGS"], user_id, "127.0.0.1", "f")
        except Exception:  # noqa: BLE001 - PRIMARY down now: no new session this round
            return None
        finally:
            with contextlib.suppress(Exception):
                close_databases()

    # --- load threads
    def strike(self, target, *args):
        """A fault's own request (an upload, a download) in a thread the end of the run waits for,
        so what it saw (a cut or a short download) is counted."""
        thread = threading.Thread(target=self._guard, args=(target, *args), daemon=True)
        thread.start()
        self.fault_threads.append(thread)

    def spawn(self, target, *args):
        thread = threading.Thread(target=self._guard, args=(target, *args), daemon=True)
        thread.start()
        if target != self.monitor:
            self.threads.append(thread)

    def _guard(self, target, *args):
        try:
            target(*args)
        except Exception:  # noqa: BLE001 - a load thread's own bug is reported, not hidden
            self.rec.note("load thread crashed: " + traceback.format_exc(limit=3).replace("\n", " | "))

    def viewer(self, index: int):
        pages = ["/", "/integrations/", "/transformations/", "/exports/", "/customers/organizations",
                 "/jobs/", "/api/me", "/account"]
        n = 0
        while not self.stop_load.is_set():
            user_id, token = self.staff[n % len(self.staff)]
            port = self.ports[(n + index) % 2]
            path = pages[n % len(pages)]
            self.rec.answer(f"GET {path}", Client(port, token).request("GET", path))
            n += 1
            self.stop_load.wait(0.15)

    def uploader(self):
        n = 0
        while not self.stop_load.is_set():
            client = Client(self.ports[n % 2], self.staff[n % len(self.staff)][1])
            if n % 2 == 0:
                answer = client.upload("/integrations/us-zips/import", "uszips.csv", self.zips_bytes,
                                       fields=[("force", "on")])
            else:
                answer = client.upload("/integrations/us-zips/import", "uszips_bad.csv", self.zips_bad_bytes)
            self.rec.answer("upload us-zips", answer)
            n += 1
            self.stop_load.wait(1.5)

    def transformer(self):
        n = 0
        while not self.stop_load.is_set():
            client = Client(self.ports[n % 2], self.staff[0][1])
            which = ("zip3-reference", "delivery-matrix")[n % 2]
            self.rec.answer(f"POST run {which}", client.post_form(f"/transformations/{which}/run", []))
            n += 1
            self.stop_load.wait(6)

    def downloader(self):
        n = 0
        while not self.stop_load.is_set():
            self.download(self.ports[n % 2], self.staff[1][1])
            n += 1
            self.stop_load.wait(4)

    def download(self, port, token, started: threading.Event | None = None, pace: float = 0.0):
        """Stream delivery_matrix.csv; cut (an error) or complete, never silently short."""
        def read(response):
            if response.status != 200:
                return Answer(response.status, response.read())
            lines, tail, first = 0, b"", True
            try:
                while True:
                    block = response.read(16384)
                    if not block:
                        break
                    lines += block.count(b"\n")
                    tail = block[-1:]
                    if first and started is not None:
                        started.set()
                    first = False
                    if pace and not self.hurry.is_set():
                        time.sleep(pace)
            except (OSError, http.client.HTTPException):
                with self.rec.lock:
                    self.rec.current.cut += 1
                return Answer(200)
            if lines != self.export_lines or tail != b"\n":
                with self.rec.lock:
                    self.rec.current.short += 1
                    self.rec.current.notes.append(f"export ended cleanly with {lines} of {self.export_lines} lines")
            return Answer(200)
        answer = Client(port, token).request("GET", "/exports/delivery_matrix.csv", reader=read, timeout=60)
        if started is not None:
            started.set()
        self.rec.answer("GET export", answer)

    def admin_loop(self):
        n = 0
        admin = [Client(p, self.admin_token) for p in self.ports]
        while not self.stop_load.is_set():
            victim = self.victims[n % 2]
            a = admin[n % 2]
            token = self.new_session(victim)
            if token:
                self.revocation_cycle(a, victim, token)
            role = ("salesperson", "warehouse_lead")[n % 2]
            self.rec.answer("POST roles", a.post_form(f"/admin/users/{victim}/roles", [("roles", role)]))
            n += 1
            self.stop_load.wait(0.5)

    def user_disabled(self, user_id) -> bool | None:
        try:
            with contextlib.closing(self.primary()) as conn, conn.cursor() as cur:
                cur.execute("SELECT disabled FROM config.users WHERE id = %s", (user_id,))
                return cur.fetchone()[0]
        except psycopg2.Error:
            return None

    def revocation_cycle(self, admin: Client, victim: int, token: str):
        answer = admin.post_form(f"/admin/users/{victim}/disable", [])
        self.rec.answer("POST disable", answer)
        if answer.status in (302, 303) and self.user_disabled(victim):
            # the disable returned and PRIMARY says so: from now on the token must be refused everywhere
            for _ in range(4):
                for port in self.ports:
                    probe = Client(port, token).request("GET", "/api/me", headers={"Accept": "application/json"})
                    self.rec.answer("GET /api/me revoked", probe)
                    with self.rec.lock:
                        self.rec.current.revoke_checks += 1
                    if probe.status == 200:
                        with self.rec.lock:
                            self.rec.current.revoked += 1
                time.sleep(0.2)
        for _ in range(20):
            if self.stop_load.is_set() and _ > 3:
                break
            answer = admin.post_form(f"/admin/users/{victim}/enable", [])
            self.rec.answer("POST enable", answer)
            if self.user_disabled(victim) is False:
                break
            time.sleep(0.5)

    def monitor(self):
        """Every second: which runs are 'running' (PRIMARY direct; skipped while it is down)."""
        query = " UNION ALL ".join(
            f"SELECT '{k}', id, started_at FROM config.{k}_runs WHERE status = 'running'"
            for k in ("import", "transformation", "export"))
        while not self.stop_load.is_set() or getattr(self, "monitor_until", 0) > time.time():
            try:
                with contextlib.closing(self.primary()) as conn, conn.cursor() as cur:
                    cur.execute(query)
                    now = time.time()
                    for kind, run_id, started in cur.fetchall():
                        seen = self.runs_seen.setdefault((kind, run_id), {"started": started.timestamp(),
                                                                          "last": now})
                        seen["last"] = now
            except psycopg2.Error:
                pass
            time.sleep(1)

    def running_now(self) -> list[tuple]:
        with contextlib.closing(self.primary()) as conn, conn.cursor() as cur:
            cur.execute(" UNION ALL ".join(
                f"SELECT '{k}', id, started_at FROM config.{k}_runs WHERE status = 'running'"
                for k in ("import", "transformation", "export")))
            return cur.fetchall()

    # --- windows
    def open_window(self, name: str) -> Window:
        self.close_logs()
        self.hurry.clear()
        with self.rec.lock:
            self.rec.windows.append(Window(name))
        log(f"fault {name}")
        return self.rec.current

    def close_logs(self):
        """Count the tracebacks written since the last look into the current window."""
        for path in self.world.log_files():
            start = self.log_offsets.get(path, 0)
            with contextlib.suppress(OSError):
                with open(path, "rb") as handle:
                    handle.seek(start)
                    text = handle.read()
                self.log_offsets[path] = start + len(text)
                count = text.count(b"Traceback (most recent call last)")
                if count:
                    self.rec.current.tracebacks += count
                    for kind, n in exception_lines(text.decode(errors="replace")).items():
                        self.rec.note(f"{n} x {kind} ({path.parent.name}/{path.name})")

    def recovery(self, window: Window, path: str = "/api/me"):
        window.healed = time.time()
        self.hurry.set()
        for name, port in zip("AB", self.ports):
            deadline = time.monotonic() + RECOVERY_LIMIT
            started = time.monotonic()
            window.recovery[name] = None
            while time.monotonic() < deadline:
                answer = Client(port, self.admin_token).request("GET", path, timeout=5)
                if answer.status == 200:
                    window.recovery[name] = round(time.time() - window.healed, 1)
                    break
                time.sleep(0.1)
            del started

    def wait_for_run(self, kind: str, since: float, timeout: float = 30) -> bool:
        """Wait until a run of ``kind`` that started after ``since`` is 'running'."""
        def running():
            try:
                with contextlib.closing(self.primary()) as conn, conn.cursor() as cur:
                    # one queued a moment before (the load's own) is as good a target as ours
                    cur.execute(f"SELECT count(*) FROM config.{kind}_runs WHERE status = 'running' "
                                f"AND started_at >= to_timestamp(%s)", (since - 15,))
                    return cur.fetchone()[0] > 0
            except psycopg2.Error:
                return False
        try:
            wait_until(running, timeout=timeout, message=f"a {kind} run", interval=0.05)
            return True
        except AssertionError:
            self.rec.note(f"no {kind} run started within {timeout:.0f} s: the fault hit no run")
            return False

    def check_worker(self, window: Window):
        """A job worker that ended by itself is noted (and, as systemd's Restart= would, started again)."""
        code = self.world.worker.poll()
        if code is not None:
            window.worker_exits += 1
            window.notes.append(f"the job worker exited by itself (exit status {code}); started a new one")
            self.world.start_worker()

    def quiet(self) -> tuple | None:
        """The newest import/transformation run ids when none runs, else None."""
        with contextlib.closing(self.primary()) as conn, conn.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM config.import_runs WHERE status = 'running') + "
                        "(SELECT count(*) FROM config.transformation_runs WHERE status = 'running'), "
                        "(SELECT max(id) FROM config.import_runs), (SELECT max(id) FROM config.transformation_runs)")
            running, *newest = cur.fetchone()
            return None if running else tuple(newest)

    def check_data(self, window: Window):
        """Rows always; scratch tables only in a moment when no build or import ran before and
        after the look. The job worker drops tables no build will finish every few seconds, so a
        table counts as left behind when it is still there after SCRATCH_GRACE seconds."""
        try:
            for table in TABLES:
                got = self.digest("workspace", table)
                if got != self.baseline[f"workspace.{table}"]:
                    window.imports_bad.append(f"{table} {got[0]} rows (file {self.baseline['workspace.' + table][0]})")
            for table in REFERENCES:
                got = self.digest("reference", table)
                if got != self.baseline[f"reference.{table}"]:
                    window.refs_bad.append(f"{table} {got[0]} rows (build {self.baseline['reference.' + table][0]})")
        except psycopg2.Error as exc:
            window.notes.append(f"row checks could not read DATA: {str(exc).strip()[:120]}")
        deadline = time.monotonic() + SCRATCH_GRACE
        seen = None
        while time.monotonic() < deadline:
            try:
                before = self.quiet()
                if before is not None:
                    with contextlib.closing(self.data()) as conn, conn.cursor() as cur:
                        cur.execute("SELECT schemaname || '.' || tablename, tablename FROM pg_tables")
                        found = [full for full, name in cur.fetchall() if is_scratch(name)]
                    if self.quiet() == before:
                        seen = found
                        if not found:
                            break
            except psycopg2.Error:
                pass
            time.sleep(0.3)
        if seen is None:
            window.notes.append(f"scratch not checked: builds or imports kept running for {SCRATCH_GRACE:.0f} s")
        else:
            window.scratch = seen

    # --- the faults: each returns after healing
    def hold(self, seconds=None):
        time.sleep(seconds if seconds is not None else self.args.hold)

    def f_redis(self, keep: bool):
        w = self.open_window("redis-kept" if keep else "redis-empty")
        self.world.redis.stop(keep=keep)
        self.hold()
        self.world.redis.start()
        self.recovery(w, "/jobs/")
        return w

    def f_primary_restart(self):
        w = self.open_window("primary-restart")
        self.world.primary_pg.stop()
        self.hold()
        self.world.primary_pg.start()
        self.recovery(w)
        return w

    def f_pgbouncer_restart(self):
        w = self.open_window("pgbouncer-restart")
        self.world.bouncer.stop()
        self.hold()
        self.world.bouncer.start()
        self.recovery(w)
        return w

    def f_primary_pause(self):
        w = self.open_window("primary-pause")
        pid = postmaster_pid(self.world.primary_pg)
        stopped = [pid, *children_of(pid)]
        for p in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)
        time.sleep(self.args.pause)
        for p in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
        self.recovery(w)
        return w

    def big_upload(self, port_index=1):
        """The large usps file to the job worker (IMPORT_BACKGROUND_BYTES is 256 KiB)."""
        client = Client(self.ports[port_index], self.staff[2][1])
        self.rec.answer("upload usps (job)", client.upload("/integrations/usps-3d-base/import",
                                                           files.USPS_NAME, self.usps_bytes,
                                                           fields=[("force", "on")]))

    def queue_build(self, which="delivery-matrix"):
        client = Client(self.ports[0], self.staff[0][1])
        self.rec.answer(f"POST run {which}", client.post_form(f"/transformations/{which}/run", []))

    def f_data_stop(self, during: str):
        w = self.open_window(f"data-stop-{during}")
        if self.args.single:
            w.notes.append("single mode: DATA is PRIMARY; skipped")
            return w
        since = time.time()
        if during == "import":
            self.strike(self.big_upload)
            self.wait_for_run("import", since)
        elif during == "rebuild":
            self.queue_build()
            self.wait_for_run("transformation", since)
        else:
            started = threading.Event()
            self.strike(self.download, self.ports[1], self.staff[1][1], started, 0.05)
            started.wait(20)
        self.world.data_pg.stop()
        self.hold()
        self.world.data_pg.start()
        self.recovery(w, "/integrations/")
        return w

    def f_worker_kill(self, during: str):
        w = self.open_window(f"worker-kill-{during}")
        since = time.time()
        if during == "import":
            self.strike(self.big_upload)
            self.wait_for_run("import", since)
        else:
            self.queue_build()
            self.wait_for_run("transformation", since)
        os.killpg(self.world.worker.pid, signal.SIGKILL)
        self.world.worker.wait(10)
        self.hold()
        self.world.start_worker()   # what systemd's Restart=always does
        self.recovery(w, "/jobs/")
        return w

    def f_gunicorn_kill(self, during: str):
        w = self.open_window(f"gunicorn-kill-{during}")
        started = threading.Event()
        if during == "upload":
            def send():
                client = Client(self.ports[0], self.staff[2][1])
                self.rec.answer("upload usps (slow)", client.upload(
                    "/integrations/usps-3d-base/import", files.USPS_NAME, self.usps_bytes,
                    fields=[("force", "on")], pause_after=started, slow=(256 * 1024, 0.3)))
            self.strike(send)
        else:
            self.strike(self.download, self.ports[0], self.staff[1][1], started, 0.05)
        started.wait(20)
        time.sleep(0.3)
        killed = self.world.gunicorn_workers(self.world.instances[0])
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        w.notes.append(f"killed gunicorn workers {killed} of instance A")
        self.hold(1)
        self.recovery(w)
        return w

    def f_disk_full(self):
        w = self.open_window("disk-full-upload")
        if not self.world.disk_kind.startswith("tmpfs"):
            w.notes.append("not root: no tmpfs, skipped")
            return w
        filler = self.world.mount / "filler"
        with open(filler, "wb") as handle:
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * (1 << 20))
                    handle.flush()
        # the small file inline and the large one for the job worker, both onto a full disk
        client = Client(self.ports[0], self.staff[2][1])
        self.rec.answer("upload us-zips (disk full)", client.upload("/integrations/us-zips/import", "uszips.csv",
                                                                    self.zips_bytes, fields=[("force", "on")]))
        self.big_upload(0)
        self.hold()
        filler.unlink()
        self.recovery(w, "/integrations/")
        return w

    def faults(self) -> dict:
        chosen = [name for name in FAULTS if not self.args.only or name in self.args.only]
        return {name: functools.partial(getattr(self, FAULTS[name][0]), *FAULTS[name][1:]) for name in chosen}

    # --- the run
    def run(self) -> int:
        started = time.monotonic()
        budget = self.args.minutes * 60
        self.setup()
        log(f"world up in {time.monotonic() - started:.0f} s; load starts")
        for i in range(2):
            self.spawn(self.viewer, i)
        for target in (self.uploader, self.transformer, self.downloader, self.admin_loop, self.monitor):
            self.spawn(target)
        time.sleep(3)
        rounds = 0
        # a fault takes at most ~80 s (a run to strike, the hold, two recoveries, the scratch look) and
        # the end at most ~90 s more: no fault starts after budget - FINISH_RESERVE
        while True:
            for fault in self.faults().values():
                if rounds and time.monotonic() - started > budget - FINISH_RESERVE:
                    break
                window = fault()
                self.check_worker(window)
                self.check_data(window)
                time.sleep(self.args.settle)
            rounds += 1
            if self.args.quick or time.monotonic() - started > budget - FINISH_RESERVE:
                break
        self.finish()
        log(f"{rounds} round(s) in {time.monotonic() - started:.0f} s")
        return self.report(time.monotonic() - started)

    def finish(self):
        last_heal = max((w.healed or 0) for w in self.rec.windows)
        self.monitor_until = time.time() + 120
        self.stop_load.set()
        self.hurry.set()
        joined_by = time.monotonic() + 30   # a download or upload in flight ends within its own timeout
        for thread in self.threads + self.fault_threads:
            thread.join(timeout=max(0.1, joined_by - time.monotonic()))
        end = self.open_window("after")
        end.healed = time.time()
        # wait until nothing runs, or until what still runs is past its 60 s (then it counts as stuck)
        deadline = time.time() + STUCK_AFTER + 10
        while time.time() < deadline:
            try:
                running = self.running_now()
            except psycopg2.Error:
                running = [None]
            if not running:
                break
            if all(time.time() - max(r[2].timestamp(), last_heal) > STUCK_AFTER + 2 for r in running if r):
                break
            time.sleep(1)
        self.monitor_until = 0
        time.sleep(1.2)
        self.check_data(end)
        self.close_logs()
        self.attribute_runs()

    def attribute_runs(self):
        heals = [(w.healed, w) for w in self.rec.windows if w.healed]
        for (kind, run_id), seen in self.runs_seen.items():
            after = [(h, w) for h, w in heals if h >= seen["started"]]
            if after:
                heal, window = after[0]
                if seen["last"] - max(seen["started"], heal) > STUCK_AFTER:
                    window.stuck.append(f"{kind} run {run_id}")
        try:
            with contextlib.closing(self.primary()) as conn, conn.cursor() as cur:
                for kind in ("import", "transformation", "export"):
                    cur.execute(f"SELECT id, extract(epoch FROM started_at) FROM config.{kind}_runs "
                                "WHERE status = 'failed' AND coalesce(btrim(message), '') = ''")
                    for run_id, started in cur.fetchall():
                        window = [w for w in self.rec.windows if w.started <= float(started)][-1:] or \
                            self.rec.windows[:1]
                        window[0].noreason += 1
                cur.execute("SELECT status, count(*) FROM config.import_runs GROUP BY 1 ORDER BY 1")
                self.import_statuses = cur.fetchall()
                cur.execute("SELECT status, count(*) FROM config.transformation_runs GROUP BY 1 ORDER BY 1")
                self.build_statuses = cur.fetchall()
        except psycopg2.Error as exc:
            self.rec.windows[-1].notes.append(f"run checks could not read PRIMARY: {exc}")

    def report(self, seconds: float) -> int:
        header = ["fault", "served", "503", "5xx", "conn", "tb", "revoked", "rev.checks", "imports", "refs", "scratch",
                  "stuck", "noreason", "short", "wexit", "cut", "rec A", "rec B"]
        merged: dict[str, list[Window]] = {}
        for w in self.rec.windows:
            merged.setdefault(w.name, []).append(w)
        rows, bad = [], 0
        for name, ws in merged.items():
            def total(attr):
                return sum(getattr(w, attr) if isinstance(getattr(w, attr), int) else len(getattr(w, attr))
                           for w in ws)
            counts = {k: sum(w.counts[k] for w in ws) for k in ("served", "503", "5xx", "conn")}
            must = [counts["5xx"], total("tracebacks"), total("revoked"), total("imports_bad"), total("refs_bad"),
                    total("scratch"), total("stuck"), total("noreason"), total("short"), total("worker_exits")]
            bad += sum(must)

            def worst(instance):
                values = [w.recovery.get(instance) for w in ws if w.recovery]
                if not values:
                    return "-"
                return "never" if None in values else f"{max(values):.1f}"
            rows.append([name, counts["served"], counts["503"], counts["5xx"], counts["conn"], *must[1:3],
                         total("revoke_checks"), *must[3:], total("cut"), worst("A"), worst("B")])
            slow = [v for w in ws for v in w.recovery.values() if v is None or v >= 5]
            bad += len(slow)
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(str(c).rjust(widths[i]) if i else str(c).ljust(widths[i]) for i, c in enumerate(r))
                 for r in [header, *rows]]
        mode = "single" if self.args.single else "split"
        print()
        print(f"faults.py {'--quick ' if self.args.quick else ''}({mode} mode, uploads on {self.world.disk_kind}): "
              f"{seconds:.0f} s")
        print("\n".join(lines))
        print(f"import runs by status: {getattr(self, 'import_statuses', '?')}; "
              f"transformation runs: {getattr(self, 'build_statuses', '?')}")
        print("\nnotes:")
        for w in self.rec.windows:
            details = [f"{n} x {k}" for k, n in sorted(w.other_5xx.items(), key=lambda i: -i[1])]
            details += w.imports_bad + w.refs_bad + w.scratch + w.stuck + w.notes
            for d in details[:12]:
                print(f"  {w.name}: {d}")
        print(f"\nmust-be-0 total (incl. recoveries >= 5 s): {bad}")
        if self.args.json:
            Path(self.args.json).write_text(json.dumps(
                {"seconds": round(seconds), "mode": mode, "header": header, "rows": rows, "failures": bad},
                indent=1))
        return 0 if bad == 0 else 1

    def cleanup(self):
        self.stop_load.set()
        self.world.stop()
        if self.args.keep:
            log(f"kept {self.base}")
        else:
            shutil.rmtree(self.base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="each fault once (< 2 minutes)")
    parser.add_argument("--single", action="store_true", help="one database (DATA faults skipped)")
    parser.add_argument("--minutes", type=float, default=8.5, help="time budget of the full run (it stops by itself within it and a minute)")
    parser.add_argument("--hold", type=float, default=None, help="seconds each fault is held")
    parser.add_argument("--pause", type=float, default=10.0, help="seconds PRIMARY is SIGSTOPped")
    parser.add_argument("--settle", type=float, default=None, help="seconds between faults")
    parser.add_argument("--origins", type=int, default=30, help="origin ZIP3s in the usps file (x999 rows)")
    parser.add_argument("--json", help="also write the table here")
    parser.add_argument("--only", type=lambda v: [n.strip() for n in v.split(",") if n.strip()], default=None,
                        help="comma-separated fault names to inject (default: every fault)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args()
    unknown = sorted(set(args.only or []) - set(FAULTS))
    if unknown:
        parser.error(f"--only names no such fault: {', '.join(unknown)} (the faults: {', '.join(FAULTS)})")
    if args.hold is None:
        args.hold = 2.0 if args.quick else 4.0
    if args.settle is None:
        args.settle = 0.5 if args.quick else 3.0
    if args.quick:
        args.pause = min(args.pause, 10.0)
        args.minutes = min(args.minutes, 6.0)
    bench = Bench(args)

    def interrupted(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)
    # the run plans to end within its budget; this makes sure it does, whatever hangs
    watchdog = threading.Timer(args.minutes * 60 + WATCHDOG_EXTRA, _thread.interrupt_main)
    watchdog.daemon = True
    watchdog.start()
    try:
        return bench.run()
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        return 130
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        return 2
    finally:
        watchdog.cancel()
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
