"""Process counters for /metrics (Prometheus), and per-minute auth counts for the System page.

Counters live in prometheus_client; under gunicorn with PROMETHEUS_MULTIPROC_DIR
set, each worker writes them to files there and /metrics sums every worker's.
The session counters are also added to one Redis hash per minute (kept one
hour), which is what the System page's chart reads; when Redis is unreachable
those writes are skipped for a few seconds (the Prometheus counters still count).
"""

from __future__ import annotations

import threading
import time

import redis
from prometheus_client import Counter, Histogram

from handled.cache import get_redis

REQUESTS = Counter("handled_requests_total", "HTTP requests answered, by endpoint, method and status.",
                   ["endpoint", "method", "status"])
REQUEST_SECONDS = Histogram("handled_request_seconds", "Time to answer a request, by endpoint.", ["endpoint"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SESSION_CACHE = Counter("handled_session_cache_total",
                        "Session checks against the Redis cache: hit, miss, or unavailable (Redis down).",
                        ["result"])
PRIMARY_SESSION_LOOKUPS = Counter("handled_primary_session_lookups_total",
                                  "Sessions read from PRIMARY (cache misses, Redis down, cache disabled).")

MINUTE_KEY = "ops:auth:{minute}"
MINUTE_TTL = 3660  # one hour of minutes, and a minute of slack
SKIP_SECONDS = 5.0
_skip_until = 0.0
_lock = threading.Lock()


def _count_minute(field: str) -> None:
    global _skip_until
    if time.monotonic() < _skip_until:
        return
    key = MINUTE_KEY.format(minute=int(time.time() // 60))
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.hincrby(key, field, 1)
        pipe.expire(key, MINUTE_TTL)
        pipe.execute()
    except redis.RedisError:
        with _lock:
            _skip_until = time.monotonic() + SKIP_SECONDS


def session_cache_hit() -> None:
    SESSION_CACHE.labels("hit").inc()
    _count_minute("hit")


def session_cache_miss() -> None:
    SESSION_CACHE.labels("miss").inc()
    _count_minute("miss")


def session_cache_unavailable() -> None:
    SESSION_CACHE.labels("unavailable").inc()


def primary_session_lookup() -> None:
    PRIMARY_SESSION_LOOKUPS.inc()
    _count_minute("primary")


def request_done(endpoint: str | None, method: str, status: int, seconds: float) -> None:
    name = endpoint or "unmatched"
    REQUESTS.labels(name, method, str(status)).inc()
    REQUEST_SECONDS.labels(name).observe(seconds)


def last_hour(now: float | None = None) -> list[dict]:
    """Per minute, oldest first: PRIMARY session lookups, cache hits and misses."""
    current = int((now or time.time()) // 60)
    minutes = list(range(current - 59, current + 1))
    try:
        pipe = get_redis().pipeline(transaction=False)
        for minute in minutes:
            pipe.hgetall(MINUTE_KEY.format(minute=minute))
        rows = pipe.execute()
    except redis.RedisError:
        rows = [{} for _ in minutes]
    series = []
    for minute, row in zip(minutes, rows):
        counts = {k.decode(): int(v) for k, v in row.items()}
        series.append({"minute": minute * 60, "primary": counts.get("primary", 0),
                       "hit": counts.get("hit", 0), "miss": counts.get("miss", 0)})
    return series


def reset_process_state() -> None:
    global _skip_until
    _skip_until = 0.0
