"""App instances as real processes, for every claim about several instances: each is a gunicorn
(deploy/gunicorn.conf.py, one worker) on its own loopback port over the test databases, with its
own Redis client, pools and cache state, and its own log, in which LOG_DB_QUERIES=true shows every
statement it ran. ``WebClient`` talks to one over HTTP as a browser would (cookies, CSRF tokens
read from the page's form, redirects not followed so their status shows)."""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from handled.auth.web import COOKIE_NAME
from tests.support.environment import TEST_REDIS
from tests.support.gunicorn import Gunicorn
from tests.support.workers import worker_env

# A log record of handled's: "2026-01-01 12:00:00,123 INFO handled.db: [primary] 0.4 ms <sql>"; the
# SQL may run over several lines, up to the next record (handled's, gunicorn's or an access line).
_RECORD_START = r"(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} |\[\d{4}-|127\.0\.0\.1 - )"
_STATEMENT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO handled\.db: \[([^\]]+)\] [\d.]+ ms (.*?)"
                        rf"(?=^{_RECORD_START}|\Z)", re.S | re.M)


class Instance:
    """One app process. ``env`` adds or overrides variables (SESSION_CACHE_TTL=..., REDIS_URL=...)."""

    def __init__(self, settings, folder: Path, name: str, threads: int = 6, **env):
        folder.mkdir(parents=True, exist_ok=True)
        full_env = {**worker_env(settings), "REDIS_URL": TEST_REDIS, "SESSION_COOKIE_SECURE": "false",
                    "LOG_DB_QUERIES": "true", "HANDLED_WORKERS": "1", "HANDLED_THREADS": str(threads),
                    "PASSWORD_HASH_TIME_COST": "1", "PASSWORD_HASH_MEMORY_KIB": "1024",
                    **{key: str(value) for key, value in env.items()}}
        self.name = name
        self.server = Gunicorn(folder, full_env, name=name)

    def url(self, path: str) -> str:
        return self.server.url(path)

    def client(self, token: str | None = None) -> "WebClient":
        return WebClient(self, token)

    def statements(self) -> list[str]:
        """The SQL of every statement this process ran on PRIMARY so far (its LOG_DB_QUERIES log;
        in single mode PRIMARY and DATA are one database, labelled primary+data)."""
        return [match.group(2) for match in _STATEMENT.finditer(self.server.log_path.read_text())
                if "primary" in match.group(1).split("+")]

    def log_text(self) -> str:
        return self.server.log_path.read_text()

    def stop(self) -> None:
        self.server.stop()


@dataclass
class Response:
    status: int
    text: str
    location: str | None

    def json(self):
        return json.loads(self.text)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None   # the 30x comes back as it is


class WebClient:
    """A browser of one instance. Given a session ``token``, it sends that token with every request,
    even after a 401 told it to drop the cookie: someone who kept a revoked token tries it again."""

    def __init__(self, instance: Instance, token: str | None = None):
        self.instance = instance
        self.token = token
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirects)

    def request(self, path: str, data: dict | None = None, headers: dict | None = None) -> Response:
        if self.token:
            self.jar.set_cookie(http.cookiejar.Cookie(
                0, COOKIE_NAME, self.token, None, False, "127.0.0.1", False, False, "/", True, False, None, False,
                None, None, {}))
        body = urllib.parse.urlencode(data, doseq=True).encode() if data is not None else None
        req = urllib.request.Request(self.instance.url(path), data=body, headers=headers or {})
        try:
            with self.opener.open(req, timeout=60) as response:
                return Response(response.status, response.read().decode(), response.headers.get("Location"))
        except urllib.error.HTTPError as error:
            return Response(error.code, error.read().decode(errors="replace"), error.headers.get("Location"))

    def get(self, path: str) -> Response:
        return self.request(path, headers={"Accept": "application/json"} if path.startswith("/api/") else None)

    def submit(self, form_page: str, fields: dict, action: str | None = None) -> Response:
        """POST ``fields`` to ``action`` (default: the form page) with the CSRF token of the form on
        ``form_page``, as a browser submitting it does."""
        page = self.get(form_page)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found, f"{form_page} answered {page.status} without a form: {page.text[:300]}"
        return self.request(action or form_page, {**fields, "csrf_token": found.group(1)})

    def me(self) -> tuple[int, list | None]:
        """(status, permissions) of GET /api/me."""
        response = self.get("/api/me")
        return response.status, (response.json().get("permissions") if response.status == 200 else None)
