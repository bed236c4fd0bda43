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

Every entry is signed (HMAC-SHA256 over the token hash and the entry's JSON, with a
key derived from SECRET_KEY): someone who can write to Redis but does not know
SECRET_KEY cannot add or alter an entry; one that fails the check is a miss (PRIMARY
is read), logged once and deleted. The signed part also holds the entry's write time
and the epoch it was written under, and a read fetches the entry and the current epoch
together (one MGET, so a warm request stays one round trip): an entry written more than
SESSION_CACHE_TTL (+ WRITE_TIME_SLACK) ago, or under another epoch, is a miss (logged). So an entry copied
before a revocation and SET back afterwards (even without a TTL) is refused: the
revocation moved the epoch; and were the epoch key rolled back as well, the entry still
dies SESSION_CACHE_TTL after it was first written. The price: any invalidation turns
every cached entry into a miss once (each session reads PRIMARY again at its next request).

When Redis cannot be reached every call here says so (``CacheUnavailable``) and
callers read PRIMARY instead. An invalidation that could not reach Redis is recorded
in PRIMARY (``config.pending_invalidations``); every process checks that table at
most once per ``PENDING_CHECK_INTERVAL`` before it uses the cache, replays what it
finds (the same Lua script) and deletes the rows. So a change made by a process that
cannot reach Redis takes effect on every process that can within about
``PENDING_CHECK_INTERVAL`` seconds, and everywhere within SESSION_CACHE_TTL at worst
(entries expire), see docs/SESSIONS.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from functools import lru_cache

import redis

from handled.cache import describe_error, get_redis
from handled.db import primary_db
from handled.models import PendingInvalidation

log = logging.getLogger("handled.auth")

EPOCH_KEY = "auth:epoch"
RETRY_AFTER_FAILURE = 2.0  # seconds a process skips Redis after an error
LOOKUP_LOCK_MS = 2000  # one PRIMARY lookup per session at a time across all workers
LOOKUP_WAIT_SECONDS = 0.5
PENDING_CHECK_INTERVAL = 1.0  # seconds between a process's checks of config.pending_invalidations
SIGNING_CONTEXT = b"handled session cache v1"
# An entry is stamped just before the SET that starts its TTL, and hosts' clocks differ a
# little: an entry is refused as too old only past SESSION_CACHE_TTL plus this.
WRITE_TIME_SLACK = 5.0
EVERYTHING = "*"  # the pending-key marker of "every entry"

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
_next_pending_check = 0.0
_pending_keys: set[str] = set()  # only when PRIMARY could not record them either
_notices = threading.local()


@lru_cache(maxsize=8)
def signing_key(secret_key: str) -> bytes:
    """The cache's HMAC key: derived from SECRET_KEY, used for nothing else."""
    return hmac.new(secret_key.encode(), SIGNING_CONTEXT, hashlib.sha256).digest()


def _signature(key: bytes, token_hash: str, body: bytes) -> bytes:
    return hmac.new(key, token_hash.encode() + b"\n" + body, hashlib.sha256).hexdigest().encode()


def seal(key: bytes, token_hash: str, entry: dict, epoch: str, written_at: float | None = None) -> bytes:
    """``<hex signature>.<JSON>``, as stored in Redis; the signed JSON holds the entry, the epoch
    it is written under and the write time (now unless given)."""
    sealed = {"epoch": str(epoch), "written_at": time.time() if written_at is None else written_at,
              "entry": entry}
    body = json.dumps(sealed, separators=(",", ":")).encode()
    return _signature(key, token_hash, body) + b"." + body


def _drop(client: redis.Redis, token_hash: str) -> None:
    try:
        client.delete(entry_key(token_hash))
    except redis.RedisError:
        pass


def _unseal(client: redis.Redis, key: bytes, token_hash: str, raw: bytes | None, epoch: str,
            max_age: float) -> dict | None:
    """The entry if its signature holds, it was written under ``epoch`` and at most ``max_age``
    seconds ago. A forged, altered or too old one (Redis would have expired it: it was put back)
    is logged, deleted and a miss; one from an earlier epoch is a miss, logged at DEBUG (routine
    after any invalidation; the next PRIMARY lookup overwrites it)."""
    if not raw:
        return None
    signature, dot, body = raw.partition(b".")
    if not (dot and hmac.compare_digest(signature, _signature(key, token_hash, body))):
        log.warning("session cache entry for session %s... failed its signature check (written without "
                    "SECRET_KEY, or SECRET_KEY changed); ignored and removed, the session is read from PRIMARY",
                    token_hash[:8])
        _drop(client, token_hash)
        return None
    sealed = json.loads(body)
    if not isinstance(sealed, dict) or "entry" not in sealed:  # the format before write times were signed
        return None
    age = time.time() - float(sealed.get("written_at", 0))
    if age > max_age + WRITE_TIME_SLACK:
        # Redis expires entries after SESSION_CACHE_TTL: this one was put back (or kept) by hand.
        log.warning("session cache entry for session %s... was written %.0f s ago, older than SESSION_CACHE_TTL "
                    "(%d s): ignored and removed, the session is read from PRIMARY", token_hash[:8], age, max_age)
        _drop(client, token_hash)
        return None
    if sealed.get("epoch") != epoch:
        log.debug("session cache entry for session %s... predates the last invalidation (epoch %s, now %s); "
                 "the session is read from PRIMARY", token_hash[:8], sealed.get("epoch"), epoch)
        return None
    return sealed["entry"]


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
    log.warning("session cache unavailable, using PRIMARY: %s", describe_error(exc))
    return CacheUnavailable(str(exc))


def _apply(client: redis.Redis, keys: list[str]) -> None:
    """Bump the epoch and drop these entries / users' entries; EVERYTHING drops every entry."""
    everything = EVERYTHING in keys
    keys = [k for k in keys if k != EVERYTHING]
    client.eval(_INVALIDATE_SCRIPT, 1 + len(keys), EPOCH_KEY, *keys)
    if everything:
        # The epoch moved first, so no lookup that began before it can write an entry after
        # this sweep; entries written before it are deleted here.
        for pattern in ("sess:*", "usess:*"):
            batch = []
            for key in client.scan_iter(match=pattern, count=500):
                batch.append(key)
                if len(batch) >= 500:
                    client.unlink(*batch)
                    batch = []
            if batch:
                client.unlink(*batch)


def _keys_of(user_ids=(), token_hashes=(), everything=False) -> list[str]:
    return ([user_set_key(uid) for uid in user_ids] + [entry_key(h) for h in token_hashes]
            + ([EVERYTHING] if everything else []))


def _rows_to_keys(rows) -> list[str]:
    return _keys_of([r.user_id for r in rows if r.user_id is not None],
                    [r.token_hash for r in rows if r.token_hash is not None], any(r.everything for r in rows))


def _replay_pending(client: redis.Redis) -> None:
    """Before trusting the cache: apply what this process could not record anywhere, and
    (at most once per PENDING_CHECK_INTERVAL) what any process recorded in PRIMARY."""
    global _next_pending_check
    if _pending_keys:
        with _state_lock:
            keys = sorted(_pending_keys)
        _apply(client, keys)
        with _state_lock:
            _pending_keys.difference_update(keys)
    now = time.monotonic()
    with _state_lock:
        if now < _next_pending_check:
            return
        _next_pending_check = now + PENDING_CHECK_INTERVAL
    try:
        with primary_db.atomic():
            rows = list(PendingInvalidation.select().order_by(PendingInvalidation.id).limit(1000))
    except Exception as exc:  # PRIMARY down: nothing can have been recorded; try again next interval
        log.warning("could not read pending session invalidations from PRIMARY: %s", str(exc).splitlines()[0])
        return
    if not rows:
        return
    _apply(client, _rows_to_keys(rows))  # a Redis error propagates: the rows stay for the next try
    _forget_rows([r.id for r in rows])
    log.info("replayed %d pending session invalidation(s)", len(rows))


def _forget_rows(ids) -> None:
    """Delete applied pending rows; if PRIMARY refuses, they are replayed again later (harmless)."""
    try:
        PendingInvalidation.delete().where(PendingInvalidation.id.in_(list(ids))).execute()
    except Exception as exc:  # never fail a request over bookkeeping
        log.warning("could not delete applied session invalidations from PRIMARY: %s", str(exc).splitlines()[0])


def record_pending(user_ids=(), token_hashes=(), everything=False) -> list[int]:
    """Record invalidations in PRIMARY (inside the caller's transaction when there is one);
    returns the row ids, to pass to ``invalidate(..., pending_ids=...)`` after the commit."""
    rows = ([{"user_id": uid} for uid in user_ids] + [{"token_hash": h} for h in token_hashes]
            + ([{"everything": True}] if everything else []))
    return [PendingInvalidation.create(**row).id for row in rows]


def pending_count() -> int:
    """How many recorded invalidations no process has applied to Redis yet (the System page)."""
    return PendingInvalidation.select().count()


def take_pending_notice() -> int:
    """How many invalidations this thread left pending since the last call (for a flash or
    a CLI line), and forget them."""
    count = getattr(_notices, "pending", 0)
    _notices.pending = 0
    return count


def read(token_hash: str, key: bytes, max_age: float) -> tuple[dict | None, str]:
    """The signed, fresh entry of this session (or None), and the current epoch: both from one
    MGET, so the epoch doubles as the one a miss's PRIMARY lookup must be checked against."""
    try:
        client = _client()
        _replay_pending(client)
        raw, epoch = client.mget(entry_key(token_hash), EPOCH_KEY)
        epoch = (epoch or b"0").decode()
        return _unseal(client, key, token_hash, raw, epoch, max_age), epoch
    except redis.RedisError as exc:
        raise _failed(exc) from None


def write(token_hash: str, entry: dict, epoch: str, ttl: int, key: bytes) -> bool:
    """Cache ``entry`` (signed, with ``epoch`` and the write time) unless an invalidation
    happened since ``epoch`` was read."""
    if ttl <= 0:
        return False
    try:
        stored = _client().eval(_WRITE_SCRIPT, 3, EPOCH_KEY, entry_key(token_hash), user_set_key(entry["user_id"]),
                                epoch, seal(key, token_hash, entry, epoch), ttl, ttl * 2)
    except (redis.RedisError, CacheUnavailable) as exc:
        if isinstance(exc, redis.RedisError):
            _failed(exc)
        return False
    return bool(stored)


def read_quietly(token_hash: str, key: bytes, max_age: float) -> dict | None:
    """The cached entry, or None (also when Redis fails: the caller reads PRIMARY)."""
    try:
        return read(token_hash, key, max_age)[0]
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


def wait_for_entry(token_hash: str, key: bytes, max_age: float) -> dict | None:
    """Wait (briefly) for the request holding the lookup lock to cache the entry.
    None when it finished without one or took too long: then look up PRIMARY."""
    deadline = time.monotonic() + LOOKUP_WAIT_SECONDS
    try:
        client = _client()
        while time.monotonic() < deadline:
            (raw, epoch), locked = client.pipeline(transaction=False).mget(
                entry_key(token_hash), EPOCH_KEY).exists(lock_key(token_hash)).execute()
            if raw:
                return _unseal(client, key, token_hash, raw, (epoch or b"0").decode(), max_age)
            if not locked:
                return None
            time.sleep(0.005)
    except (redis.RedisError, CacheUnavailable) as exc:
        if isinstance(exc, redis.RedisError):
            _failed(exc)
    return None


def invalidate(user_ids=(), token_hashes=(), everything: bool = False, pending_ids=()) -> bool:
    """Drop every cached entry of these users and these sessions (``everything``: every
    entry), and move the epoch.

    Call after the PRIMARY change has committed. ``pending_ids`` are rows the caller
    already recorded with ``record_pending`` inside its transaction: deleted once Redis
    has the change. Returns False when Redis could not be reached: the invalidation is
    then pending in PRIMARY, replayed by the next process that reaches Redis, and
    counted for ``take_pending_notice``.
    """
    global _next_pending_check
    keys = _keys_of(user_ids, token_hashes, everything)
    try:
        client = get_redis()  # always try: a rare write is worth a timeout, unlike every read
        _replay_pending(client)
        _apply(client, keys)
    except redis.RedisError as exc:
        _failed(exc)
        if not pending_ids:
            try:
                with primary_db.atomic():
                    record_pending(user_ids, token_hashes, everything)
            except Exception as db_exc:  # PRIMARY refused too: keep it in this process at least
                log.warning("could not record a pending session invalidation in PRIMARY: %s",
                            str(db_exc).splitlines()[0])
                with _state_lock:
                    _pending_keys.update(keys)
        with _state_lock:
            _next_pending_check = 0.0  # this process replays it as soon as it reaches Redis
        _notices.pending = getattr(_notices, "pending", 0) + 1
        return False
    if pending_ids:
        _forget_rows(pending_ids)
    return True


def reset_process_state() -> None:
    """Forget this process's failure memory (tests, and after a fork)."""
    global _skip_until, _next_pending_check
    with _state_lock:
        _skip_until = 0.0
        _next_pending_check = 0.0
        _pending_keys.clear()
    _notices.pending = 0
