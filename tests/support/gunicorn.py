"""Several gunicorn workers (deploy/gunicorn.conf.py) serving the app over the test databases."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from handled import create_app
from handled.auth import sessions
from handled.db import close_databases
from tests.support.accounts import make_user
from tests.support.databases import db_url
from tests.support.environment import ROOT, SECRET, TEST_REDIS
from tests.support.processes import free_port
from tests.support.waiting import wait_until

WORKERS, THREADS, LIMIT = 3, 2, 2


class Gunicorn:
    """gunicorn -c deploy/gunicorn.conf.py app:app, run from ``tmp_path`` (so no .env is read) with
    exactly ``env``; its output goes to ``tmp_path/<name>.log``."""

    def __init__(self, tmp_path: Path, env: dict, name: str = "gunicorn"):
        self.port = free_port()
        full_env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HANDLED_BIND": f"127.0.0.1:{self.port}",
                    "HANDLED_WORKERS": str(WORKERS), "HANDLED_THREADS": str(THREADS), "PYTHONUNBUFFERED": "1",
                    **env}
        gunicorn = Path(sys.executable).parent / "gunicorn"
        self.log_path = tmp_path / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([str(gunicorn), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "app:app"],
                                        cwd=tmp_path, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._answers, timeout=30, message="gunicorn to answer", interval=0.2)

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.url("/healthz"), timeout=1)
            return True
        except OSError:
            assert self.process.poll() is None, self.log_path.read_text()
            return False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


def app_env(settings, primary_url: str) -> dict:
    env = {"PRIMARY_DATABASE_URL": primary_url, "SPLIT_DB_MODE": str(settings.split_db_mode).lower(),
           "REDIS_URL": TEST_REDIS, "SECRET_KEY": SECRET, "SESSION_COOKIE_SECURE": "false",
           "SESSION_CACHE_ENABLED": "false",  # every request looks its session up on PRIMARY
           "PRIMARY_MIGRATION_URL": db_url(settings.primary.dbname)}
    if settings.split_db_mode:
        env["DATA_DATABASE_URL"] = db_url(settings.data.dbname) + f"?connection_limit={LIMIT}"
    return env


def admin_token(settings) -> str:
    app = create_app(settings)
    admin = make_user(app, role="admin")
    with app.app_context():
        token = sessions.create_session(settings, admin.id, "127.0.0.1", "load test")
    close_databases()  # this test process must not count among the servers' connections
    return token
