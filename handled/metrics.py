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
# Per-minute counts are added up in the process and sent to Redis at most once a
# second, so a warm session check costs one Redis round trip (its GET), not two.
FLUSH_SECONDS = 1.0
_skip_until = 0.0
_last_flush = 0.0
_pending: dict[tuple[int, str], int] = {}
_lock = threading.Lock()


def _count_minute(field: str) -> None:
    minute = int(time.time() // 60)
    with _lock:
        _pending[(minute, field)] = _pending.get((minute, field), 0) + 1
        due = time.monotonic() - _last_flush >= FLUSH_SECONDS
    if due:
        flush_minute_counts()


def flush_minute_counts() -> None:
    """Send this process's pending per-minute counts to Redis (skipped for a few
    seconds after a Redis error; counts made while Redis is down are dropped)."""
    global _skip_until, _last_flush
    with _lock:
        if time.monotonic() < _skip_until:
            _pending.clear()
            return
        batch = dict(_pending)
        _pending.clear()
        _last_flush = time.monotonic()
    if not batch:
        return
    try:
        pipe = get_redis().pipeline(transaction=False)
        for (minute, field), count in batch.items():
            key = MINUTE_KEY.format(minute=minute)
            pipe.hincrby(key, field, count)
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
    flush_minute_counts()  # this process's own latest counts
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
    global _skip_until, _last_flush
    with _lock:
        _skip_until = 0.0
        _last_flush = 0.0
        _pending.clear()
