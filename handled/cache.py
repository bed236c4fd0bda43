"""The one Redis client of the process (session cache, throttling, jobs).

The client is created lazily from ``REDIS_URL`` with short timeouts, so a Redis
outage makes callers fall back quickly instead of hanging a request.
"""

from __future__ import annotations

import threading

import redis

from handled.settings import Settings, get_settings

_lock = threading.Lock()
_client: redis.Redis | None = None
_url: str | None = None

SOCKET_TIMEOUT = 0.5


def init_redis(settings: Settings | None = None) -> None:
    """(Re)configure the client for ``settings``; no connection is made yet."""
    global _client, _url
    settings = settings or get_settings()
    with _lock:
        if _client is not None:
            _client.close()
        _url = settings.redis_url
        _client = redis.Redis.from_url(
            _url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            health_check_interval=30,
        )


def get_redis() -> redis.Redis:
    """The shared Redis client."""
    if _client is None:
        init_redis()
    return _client


def redis_available() -> bool:
    """True when Redis answers a PING right now."""
    try:
        return bool(get_redis().ping())
    except redis.RedisError:
        return False
