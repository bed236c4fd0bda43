"""The shared session cache in Redis, and its invalidation.

Entries are keyed by the session's token hash and hold who the user is and their
permission set for at most SESSION_CACHE_TTL seconds. Correctness against the race
"a request reads PRIMARY before a change and writes the cache after it":

* every invalidation first commits its PRIMARY change, then (atomically, one Lua
  script) bumps the global epoch ``auth:epoch`` and deletes the cached entries;
* a request reads the epoch *before* it reads PRIMARY, and its cache write (one Lua
  script) is refused when the epoch has moved since.

So a write either lands before the invalidation (and is deleted by it) or after it
(and is refused unless its PRIMARY read already saw the change).

When Redis cannot be reached every call here says so (``CacheUnavailable``) and
callers read PRIMARY instead. An invalidation that could not reach Redis is kept in
this process and replayed before this process trusts the cache again; other
processes may serve an entry written before the outage until it expires, so a
change made while Redis is unreachable takes effect everywhere within
SESSION_CACHE_TTL seconds (see docs/SESSIONS.md).
"""

from __future__ import annotations

import json
import logging
import threading
import time

import redis

from handled.cache import get_redis

log = logging.getLogger("handled.auth")

EPOCH_KEY = "auth:epoch"
RETRY_AFTER_FAILURE = 2.0  # seconds a process skips Redis after an error
LOOKUP_LOCK_MS = 2000  # one PRIMARY lookup per session at a time across all workers
LOOKUP_WAIT_SECONDS = 0.5

_WRITE_SCRIPT = """
local current = redis.call('GET', KEYS[1]) or '0'
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3]))
redis.call('SADD', KEYS[3], KEYS[2])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
return 1
"""

# KEYS[1] = epoch, KEYS[2..] = per-user sets and single entries to drop.
_INVALIDATE_SCRIPT = """
redis.call('INCR', KEYS[1])
for i = 2, #KEYS do
  local key = KEYS[i]
  if string.sub(key, 1, 6) == 'usess:' then
    local members = redis.call('SMEMBERS', key)
    for _, member in ipairs(members) do redis.call('DEL', member) end
  end
  redis.call('DEL', key)
end
return 1
"""


class CacheUnavailable(Exception):
    """Redis could not be used right now; read PRIMARY instead."""


_state_lock = threading.Lock()
_skip_until = 0.0
_pending_keys: set[str] = set()


def entry_key(token_hash: str) -> str:
    return f"sess:{token_hash}"


def user_set_key(user_id: int) -> str:
    return f"usess:{user_id}"


def _client() -> redis.Redis:
    if time.monotonic() < _skip_until:
        raise CacheUnavailable("Redis was unreachable a moment ago")
    return get_redis()


def _failed(exc: Exception) -> CacheUnavailable:
    global _skip_until
    with _state_lock:
        _skip_until = time.monotonic() + RETRY_AFTER_FAILURE
    log.warning("session cache unavailable, using PRIMARY: %s", exc)
    return CacheUnavailable(str(exc))


def _replay_pending(client: redis.Redis) -> None:
    """Apply invalidations that failed earlier in this process before trusting the cache."""
    if not _pending_keys:
        return
    with _state_lock:
        keys = sorted(_pending_keys)
    client.eval(_INVALIDATE_SCRIPT, 1 + len(keys), EPOCH_KEY, *keys)
    with _state_lock:
        _pending_keys.difference_update(keys)


def current_epoch() -> str:
    """The invalidation epoch, read before a PRIMARY lookup."""
    try:
        client = _client()
        _replay_pending(client)
        return (client.get(EPOCH_KEY) or b"0").decode()
    except redis.RedisError as exc:
        raise _failed(exc) from None


def read(token_hash: str) -> dict | None:
    try:
        client = _client()
        _replay_pending(client)
        raw = client.get(entry_key(token_hash))
    except redis.RedisError as exc:
        raise _failed(exc) from None
    return json.loads(raw) if raw else None


def write(token_hash: str, entry: dict, epoch: str, ttl: int) -> bool:
    """Cache ``entry`` unless an invalidation happened since ``epoch`` was read."""
    if ttl <= 0:
        return False
    try:
        stored = _client().eval(_WRITE_SCRIPT, 3, EPOCH_KEY, entry_key(token_hash), user_set_key(entry["user_id"]),
                                epoch, json.dumps(entry), ttl, ttl * 2)
    except (redis.RedisError, CacheUnavailable) as exc:
        if isinstance(exc, redis.RedisError):
            _failed(exc)
        return False
    return bool(stored)


def read_quietly(token_hash: str) -> dict | None:
    """The cached entry, or None (also when Redis fails: the caller reads PRIMARY)."""
    try:
        return read(token_hash)
    except CacheUnavailable:
        return None


def lock_key(token_hash: str) -> str:
    return f"sesslock:{token_hash}"


def claim_lookup(token_hash: str) -> bool:
    """True if this request should read PRIMARY for the session; False if another
    request (any worker, any host) is doing it right now. Fails open to True."""
    try:
        return bool(_client().set(lock_key(token_hash), "1", nx=True, px=LOOKUP_LOCK_MS))
    except (redis.RedisError, CacheUnavailable) as exc:
        if isinstance(exc, redis.RedisError):
            _failed(exc)
        return True


def release_lookup(token_hash: str) -> None:
    try:
        _client().delete(lock_key(token_hash))
    except (redis.RedisError, CacheUnavailable):
        pass  # the lock expires by itself


def wait_for_entry(token_hash: str) -> dict | None:
    """Wait (briefly) for the request holding the lookup lock to cache the entry.
    None when it finished without one or took too long: then look up PRIMARY."""
    deadline = time.monotonic() + LOOKUP_WAIT_SECONDS
    try:
        client = _client()
        while time.monotonic() < deadline:
            raw, locked = client.pipeline(transaction=False).get(entry_key(token_hash)).exists(
                lock_key(token_hash)).execute()
            if raw:
                return json.loads(raw)
            if not locked:
                return None
            time.sleep(0.005)
    except (redis.RedisError, CacheUnavailable) as exc:
        if isinstance(exc, redis.RedisError):
            _failed(exc)
    return None


def invalidate(user_ids=(), token_hashes=()) -> bool:
    """Drop every cached entry of these users and these sessions, and move the epoch.

    Call after the PRIMARY change has committed. Returns False when Redis could not
    be reached (the invalidation is then replayed by this process later).
    """
    keys = [user_set_key(uid) for uid in user_ids] + [entry_key(h) for h in token_hashes]
    try:
        client = get_redis()  # always try: a rare write is worth a timeout, unlike every read
        _replay_pending(client)
        client.eval(_INVALIDATE_SCRIPT, 1 + len(keys), EPOCH_KEY, *keys)
        return True
    except redis.RedisError as exc:
        _failed(exc)
        with _state_lock:
            _pending_keys.update(keys or [EPOCH_KEY + ":bump"])
        return False


def reset_process_state() -> None:
    """Forget this process's failure memory (tests, and after a fork)."""
    global _skip_until
    with _state_lock:
        _skip_until = 0.0
        _pending_keys.clear()
