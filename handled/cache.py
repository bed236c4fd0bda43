"""The Redis clients of the process: the shared one (session cache, throttling, metrics)
and the job queue's (``JOBS_REDIS_URL``, by default the same server and database).

Clients are created lazily from the URL with short timeouts, so a Redis outage makes
callers fall back quickly instead of hanging a request. URLs keep their user,
password and TLS parameters for redis-py (``redis://user:pw@host/0``, ``rediss://``)
and are shown only through ``display_url`` (password replaced by ***).
"""

from __future__ import annotations

import threading

import redis

from handled.settings import Settings, get_settings
from handled.settings_parsers import redact_url

_lock = threading.Lock()
_client: redis.Redis | None = None
_jobs_client: redis.Redis | None = None
_url: str | None = None
_jobs_url: str | None = None

SOCKET_TIMEOUT = 0.5


def _connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT,
                                health_check_interval=30)


def init_redis(settings: Settings | None = None) -> None:
    """(Re)configure the clients for ``settings``; no connection is made yet."""
    global _client, _jobs_client, _url, _jobs_url
    settings = settings or get_settings()
    with _lock:
        for old in {id(c): c for c in (_client, _jobs_client) if c is not None}.values():
            old.close()
        _url = settings.redis_url
        _jobs_url = settings.jobs_redis_url or settings.redis_url
        _client = _connect(_url)
        _jobs_client = _client if _jobs_url == _url else _connect(_jobs_url)


def get_redis() -> redis.Redis:
    """The shared Redis client."""
    if _client is None:
        init_redis()
    return _client


def get_jobs_redis() -> redis.Redis:
    """The job queue's Redis client (JOBS_REDIS_URL, else the shared one)."""
    if _jobs_client is None:
        init_redis()
    return _jobs_client


def display_url(url: str | None = None) -> str:
    """A Redis URL fit to show: the shared one unless given, password replaced by ***."""
    return redact_url(url if url is not None else (_url or get_settings().redis_url))


def describe_error(exc: Exception, url: str | None = None, variable: str = "REDIS_URL") -> str:
    """One sentence for a Redis error, naming the (redacted) server; credentials are called out."""
    reason = (str(exc).strip() or type(exc).__name__).rstrip(".")
    where = display_url(url)
    if isinstance(exc, redis.AuthenticationError) or reason.startswith(("WRONGPASS", "NOAUTH", "invalid username")):
        return (f"Redis at {where} refused the credentials in {variable} ({reason}); "
                f"check its password or ACL user.")
    return f"Redis at {where} cannot be used ({reason})."


def outage_sentence(exc: Exception) -> str:
    """The sentence for a command stopped by a Redis error: which server (the job queue's or
    the shared one, found by pinging each) and why."""
    jobs_url = _jobs_url or get_settings().jobs_redis_url or get_settings().redis_url
    shared_url = _url or get_settings().redis_url
    if jobs_url != shared_url:
        try:
            get_jobs_redis().ping()
        except redis.RedisError as jobs_exc:
            return f"{describe_error(jobs_exc, jobs_url, 'JOBS_REDIS_URL')} See docs/OPS_RUNBOOK.md."
    return f"{describe_error(exc)} See docs/OPS_RUNBOOK.md."


def redis_available() -> bool:
    """True when Redis answers a PING right now."""
    try:
        return bool(get_redis().ping())
    except redis.RedisError:
        return False
