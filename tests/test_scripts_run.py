"""The README's run command works from a clean copy: `scripts/run` writes a .env, creates
and migrates the database, prints the first administrator's password, starts the worker and
the web server; the printed password signs in and, once changed, reaches the home page.

The copy shares the test run's virtualenv (same setup.cfg, so nothing is installed) and
uses a database and Redis database of the tests' own (HANDLED_DB_NAME, HANDLED_REDIS_DB)."""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import signal
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from urllib.parse import urlsplit

from tests.support.databases import drop_database
from tests.support.environment import PG_SERVER, PREFIX, ROOT, TEST_REDIS
from tests.support.processes import free_port
from tests.support.redis import flush_test_redis
from tests.support.waiting import wait_until

NEW_PASSWORD = "a new and long passphrase 42"


def clean_copy(target):
    """The tracked files of the repository (what a fresh clone holds), with the test run's venv."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    os.symlink(ROOT / ".venv", target / ".venv")


class Browser:
    """Cookies, CSRF tokens from forms, and redirects followed, like a person's browser."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> tuple[str, str]:
        with self.opener.open(self.base + path, timeout=30) as response:
            return response.geturl(), response.read().decode()

    def submit(self, path: str, fields: dict) -> tuple[str, str]:
        _, form = self.get(path)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        data = urllib.parse.urlencode({**fields, "csrf_token": token}).encode()
        with self.opener.open(self.base + path, data=data, timeout=30) as response:
            return response.geturl(), response.read().decode()


def test_scripts_run_from_a_clean_copy_serves_and_its_admin_password_signs_in(tmp_path):
    copy = tmp_path / "handled"
    copy.mkdir()
    clean_copy(copy)
    server = urlsplit(PG_SERVER)
    database, port = f"{PREFIX}_scripts_run", free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HANDLED_PORT": str(port),
           "HANDLED_PG_HOST": server.hostname or "127.0.0.1", "HANDLED_PG_PORT": str(server.port or 5432),
           "HANDLED_REDIS_PORT": str(urlsplit(TEST_REDIS).port or 6379),
           "HANDLED_DB_NAME": database, "HANDLED_REDIS_DB": urlsplit(TEST_REDIS).path.strip("/") or "0"}
    drop_database(database)
    output: list[str] = []
    process = subprocess.Popen(["bash", "scripts/run"], cwd=copy, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    try:
        browser = Browser(f"http://127.0.0.1:{port}")

        def answers() -> bool:
            assert process.poll() is None, "scripts/run stopped:\n" + "".join(output)
            try:
                return browser.get("/login")[1].count("csrf_token") > 0
            except OSError:
                return False

        wait_until(answers, timeout=120, message="scripts/run to serve the sign-in page", interval=0.5)
        printed = re.search(r"generated password \(shown once, must be changed at first sign-in\): (\S+)",
                            "".join(output))
        assert printed, "".join(output)
        assert f"/{database}" in (copy / ".env").read_text()

        url, page = browser.submit("/login", {"email": "admin@example.com", "password": printed.group(1)})
        assert url.endswith("/account/password"), (url, page[:500])
        url, page = browser.submit("/account/password", {"current_password": printed.group(1),
                                                         "new_password": NEW_PASSWORD})
        assert urlsplit(url).path == "/account" and "changed" in page.lower(), (url, page[:500])
        url, page = browser.get("/")
        assert urlsplit(url).path == "/" and "Administrator" in page and 'action="/logout"' in page, url
        worker = subprocess.run(["pgrep", "-f", "-s", str(process.pid), "jobs worker"], capture_output=True)
        assert worker.returncode == 0, "the job worker is not running"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        drop_database(database)
        flush_test_redis()
