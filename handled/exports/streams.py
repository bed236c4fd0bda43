"""Downloads running at once, per user (EXPORT_STREAMS_PER_USER), counted in Redis.

A streamed download holds one DATA connection (its COPY) for as long as the
client reads, so one user opening many downloads, or reading them slowly, could
hold every connection of the pool. Each running download holds a *slot*: a
member of the Redis sorted set ``handled:export-streams:<user id>`` scored by
the time its lease ends. Taking a slot first drops the expired members, then
counts, then adds, in one Lua script (atomic across every worker and host).

- A slot is given back when its stream ends, fails or is closed (the client went
  away), or when the iterator holding it is garbage-collected unread.
- While the stream runs, a small thread renews the lease every third of
  ``LEASE_SECONDS``, so a slow reader keeps its slot however long it takes.
- A worker that dies (killed, host lost) renews nothing: its slot expires after
  at most ``LEASE_SECONDS``. Nothing leaks for longer.
- When Redis does not answer, downloads are not refused (the limit protects the
  pool; refusing every download because the cache is down would be worse): the
  failure is logged and the stream runs without a slot.

Only streams of a known user count (web downloads); the CLI writes files through
``write_export`` and is not limited.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from typing import Iterator

import redis

from handled.cache import get_redis
from handled.context import Actor
from handled.errors import HandledError

log = logging.getLogger("handled.exports")
KEY = "handled:export-streams:{user_id}"
LEASE_SECONDS = 30

_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local running = redis.call('ZCARD', KEYS[1])
if running >= tonumber(ARGV[3]) then return -running end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return running + 1
"""


class TooManyDownloads(HandledError):
    """The user already has as many downloads running as EXPORT_STREAMS_PER_USER allows."""

    status = 429


class Slot:
    """One running download's place in its user's count; ``release`` is idempotent."""

    def __init__(self, key: str | None, token: str):
        self.key, self.token = key, token
        self.released = threading.Event()

    def start_renewing(self) -> None:
        if self.key is None:
            return
        threading.Thread(target=_renew, args=(self.key, self.token, self.released), daemon=True,
                         name="export-slot").start()

    def release(self) -> None:
        if self.released.is_set():
            return
        self.released.set()
        if self.key is None:
            return
        try:
            get_redis().zrem(self.key, self.token)
        except redis.RedisError as exc:   # it expires with its lease
            log.warning("could not give back a download slot: %s", exc)


def take_slot(actor: Actor, limit: int) -> Slot:
    """A slot for one more download of ``actor``; TooManyDownloads when all of theirs are in use."""
    token = uuid.uuid4().hex
    if actor.id is None:
        return Slot(None, token)
    key = KEY.format(user_id=actor.id)
    now = time.time()
    lease = LEASE_SECONDS
    try:
        taken = int(get_redis().eval(_TAKE, 1, key, now, now + lease, limit, token, lease * 2))
    except redis.RedisError as exc:
        log.warning("download slots not counted (Redis: %s); this download runs without one", exc)
        return Slot(None, token)
    if taken < 0:
        running = -taken
        noun = "download" if running == 1 else "downloads"
        raise TooManyDownloads(f"You already have {running} {noun} running; wait for one to finish, "
                               "then try again.",
                               hint=f"Each user may run {limit} at once (EXPORT_STREAMS_PER_USER).")
    return Slot(key, token)


def _renew(key: str, token: str, released: threading.Event) -> None:
    """Push the lease forward until the slot is given back (the thread holds no stream)."""
    while not released.wait(LEASE_SECONDS / 3):
        try:
            get_redis().zadd(key, {token: time.time() + LEASE_SECONDS}, xx=True)
            get_redis().expire(key, LEASE_SECONDS * 2)
        except redis.RedisError as exc:
            log.warning("could not renew a download slot: %s", exc)


class Holding:
    """An iterator of chunks that holds ``slot`` until it ends, fails, is closed or is collected."""

    def __init__(self, chunks: Iterator[bytes], slot: Slot):
        self.chunks, self.slot = chunks, slot
        self._finalizer = weakref.finalize(self, slot.release)
        slot.start_renewing()

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        try:
            return next(self.chunks)
        except BaseException:
            self.slot.release()
            raise

    def close(self) -> None:
        try:
            close = getattr(self.chunks, "close", None)
            if close is not None:
                close()
        finally:
            self.slot.release()
