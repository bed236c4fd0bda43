"""The sign-in throttle: strangers can slow a guess down, never lock the owner out.

Three counters, each within ``LOGIN_THROTTLE_WINDOW`` from its first failure:

- per account *and* address: ``LOGIN_MAX_FAILURES_PER_ACCOUNT`` failures, then that
  address is refused for that account (another address is not affected);
- per address: ``LOGIN_MAX_FAILURES_PER_IP`` failures, then that address is refused;
- per account from any address: after ``LOGIN_ACCOUNT_DELAY_AFTER`` failures every
  further attempt must come at least 1, 2, 4, ... seconds (at most
  ``LOGIN_ACCOUNT_DELAY_MAX``) after the account's last one. A delay, never a lock,
  and none for an address the account signed in from successfully in the last
  ``KNOWN_ADDRESS_DAYS`` days (or holds a live session from): the owner's own machine,
  so a stranger guessing each time the delay allows cannot keep the owner out; and
  none while the account holds an unused temporary password (login.sign_in decides),
  so the owner gets in after an administrator's reset from any machine. An attempt the
  delay refuses counts toward the per-address limit: asking over and over whether the
  delay has passed costs a stranger their addresses.

An attempt is *reserved* (counted as a failure) before the password is checked,
in one atomic step with the check, so parallel requests cannot overshoot a limit;
a successful sign-in then gives its reservation back (``succeeded``). The counters
live in Redis; while Redis is unreachable they live in PRIMARY
(``config.login_throttle``), never nowhere. Throttled attempts themselves are counted
in PRIMARY in runs (one account, one address, one window) for the audit log: one row
at a run's first attempt, one with its total once its window has passed. Keys hold a hash of the typed email,
never the typed text (people type passwords into the email box).

``status`` and ``throttled_accounts`` read the counters back for administrators (the user
page, the users list's "locked" filter) from where ``reserve`` would read them; ``clear``
forgets an account's failures (a password reset, or Unlock on the user page).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import redis

from handled.cache import get_redis
from handled.db import primary_db
from handled.settings import Settings

log = logging.getLogger("handled.auth")

PREFIX = "throttle:"
PAIR, ADDRESS, ACCOUNT, KNOWN = "pair", "address", "account", "known"
KNOWN_ADDRESS_DAYS = 30


def now() -> float:
    """The clock the per-account delay is measured with (a test seam)."""
    return time.time()


@dataclass(frozen=True)
class Keys:
    account: str     # hash of the normalised email
    address: str
    pair: str        # account|address

    @classmethod
    def of(cls, email: str, address: str | None) -> Keys:
        account = account_key(email)
        address = address or "unknown"
        return cls(account, address, f"{account}|{address}")


def account_key(email: str) -> str:
    return hashlib.sha256((email or "").strip().lower().encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Verdict:
    """The answer to "may this attempt go on?": ``limit`` is None when it may."""

    limit: str | None = None          # PAIR, ADDRESS or ACCOUNT (the delay)
    wait: float = 0.0                 # seconds, for ACCOUNT
    backend: str = "redis"            # where the reservation was counted ("redis" / "primary")

    def message(self, settings: Settings) -> str | None:
        minutes = max(1, settings.login_throttle_window // 60)
        if self.limit == PAIR:
            return (f"Too many failed sign-ins for this account from your network address. Wait {minutes} "
                    "minutes and try again, or ask an administrator to unlock your account (or reset your password).")
        if self.limit == ADDRESS:
            return f"Too many failed sign-ins from your network address. Wait {minutes} minutes and try again."
        if self.limit == ACCOUNT:
            seconds = max(1, math.ceil(self.wait))
            return (f"Too many failed sign-ins for this account recently. Wait {seconds} "
                    f"second{'s' if seconds != 1 else ''} and try again.")
        return None


# --- Redis ---------------------------------------------------------------------------------------

# KEYS: pair, address, account (a hash: n, last), known (the account's addresses of
# successful sign-ins). ARGV: pair limit, address limit, delay after, delay max, window,
# now, 1 when the attempt is exempt from the account's delay anyway, the address.
# Checks every limit, then counts the attempt (an attempt refused by the delay counts
# toward the address's limit only).
_RESERVE = """
local function count(key) return tonumber(redis.call('GET', key) or '0') end
if count(KEYS[1]) >= tonumber(ARGV[1]) then return {'pair', '0'} end
if count(KEYS[2]) >= tonumber(ARGV[2]) then return {'address', '0'} end
local n = tonumber(redis.call('HGET', KEYS[3], 'n') or '0')
local after = tonumber(ARGV[3])
local exempt = ARGV[7] == '1' or redis.call('SISMEMBER', KEYS[4], ARGV[8]) == 1
if n >= after and not exempt then
  local delay = math.min(2 ^ (n - after), tonumber(ARGV[4]))
  local wait = tonumber(redis.call('HGET', KEYS[3], 'last') or '0') + delay - tonumber(ARGV[6])
  if wait > 0 then
    -- refused, but not for free: it counts toward the address's limit
    redis.call('INCR', KEYS[2])
    if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[5]) end
    return {'account', tostring(wait)}
  end
end
for i = 1, 2 do
  redis.call('INCR', KEYS[i])
  if redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ARGV[5]) end
end
redis.call('HINCRBY', KEYS[3], 'n', 1)
redis.call('HSET', KEYS[3], 'last', ARGV[6])
if redis.call('TTL', KEYS[3]) < 0 then redis.call('EXPIRE', KEYS[3], ARGV[5]) end
return {'ok', '0'}
"""

# KEYS: pair, address, account, known. ARGV: the address, how long it stays known.
# A successful sign-in: not a failure after all, and the address is the owner's.
_GIVE_BACK = """
redis.call('DEL', KEYS[1], KEYS[3])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('EXPIRE', KEYS[4], ARGV[2])
return 1
"""

def _redis_keys(keys: Keys) -> list[str]:
    return [f"{PREFIX}{PAIR}:{keys.pair}", f"{PREFIX}{ADDRESS}:{keys.address}", f"{PREFIX}{ACCOUNT}:{keys.account}",
            f"{PREFIX}{KNOWN}:{keys.account}"]


# --- PRIMARY (while Redis is down) ----------------------------------------------------------------

# Locks the three rows in a fixed order (pair, address, account), starting a new
# window for a row whose window has passed.
_PRIMARY_LOCK = """
INSERT INTO config.login_throttle AS t (kind, key, count, window_start, last_at)
VALUES ('pair', %(pair)s, 0, to_timestamp(%(now)s), NULL),
       ('address', %(address)s, 0, to_timestamp(%(now)s), NULL),
       ('account', %(account)s, 0, to_timestamp(%(now)s), NULL)
ON CONFLICT (kind, key) DO UPDATE
   SET count = CASE WHEN t.window_start <= to_timestamp(%(now)s - %(window)s) THEN 0 ELSE t.count END,
       last_at = CASE WHEN t.window_start <= to_timestamp(%(now)s - %(window)s) THEN NULL ELSE t.last_at END,
       window_start = CASE WHEN t.window_start <= to_timestamp(%(now)s - %(window)s)
                           THEN to_timestamp(%(now)s) ELSE t.window_start END
RETURNING t.kind, t.count, extract(epoch FROM t.last_at)::float8
"""

_PRIMARY_COUNT = """
UPDATE config.login_throttle
   SET count = count + 1, last_at = to_timestamp(%(now)s)
 WHERE (kind, key) IN (('pair', %(pair)s), ('address', %(address)s), ('account', %(account)s))
"""

_PRIMARY_COUNT_REFUSED = """
UPDATE config.login_throttle SET count = count + 1 WHERE kind = 'address' AND key = %(address)s
"""

_PRIMARY_GIVE_BACK = """
DELETE FROM config.login_throttle WHERE (kind, key) IN (('pair', %(pair)s), ('account', %(account)s));
UPDATE config.login_throttle SET count = greatest(count - 1, 0) WHERE kind = 'address' AND key = %(address)s;
"""

# Throttled attempts are counted in PRIMARY whether Redis is up or not: they feed the
# audit log, which is there too (one row at a run's first attempt, one with its total).
_REFUSED = """
INSERT INTO config.login_throttle AS t (kind, key, count, window_start, last_at)
VALUES ('refused', %(pair)s, 1, to_timestamp(%(now)s), to_timestamp(%(now)s))
ON CONFLICT (kind, key) DO UPDATE SET count = t.count + 1, last_at = to_timestamp(%(now)s)
RETURNING t.count
"""

_ENDED_RUNS = """
DELETE FROM config.login_throttle
 WHERE kind = 'refused' AND window_start <= to_timestamp(%(now)s - %(window)s)
RETURNING count, audit_id, window_start, last_at
"""


def _params(settings: Settings, keys: Keys) -> dict:
    return {"pair": keys.pair, "address": keys.address, "account": keys.account, "now": now(),
            "window": settings.login_throttle_window}


def _reserve_in_primary(settings: Settings, keys: Keys, exempt: bool) -> Verdict:
    params = _params(settings, keys)
    with primary_db.atomic():
        rows = {kind: (count, last) for kind, count, last in primary_db.execute_sql(_PRIMARY_LOCK, params)}
        if rows[PAIR][0] >= settings.login_max_failures_per_account:
            return Verdict(PAIR, backend="primary")
        if rows[ADDRESS][0] >= settings.login_max_failures_per_ip:
            return Verdict(ADDRESS, backend="primary")
        failures, last = rows[ACCOUNT]
        if failures >= settings.login_account_delay_after and not exempt:
            delay = min(2 ** (failures - settings.login_account_delay_after), settings.login_account_delay_max)
            wait = (last or 0) + delay - params["now"]
            if wait > 0:
                primary_db.execute_sql(_PRIMARY_COUNT_REFUSED, params)
                return Verdict(ACCOUNT, wait, backend="primary")
        primary_db.execute_sql(_PRIMARY_COUNT, params)
    return Verdict(backend="primary")


# --- the service ---------------------------------------------------------------------------------

def reserve(settings: Settings, email: str, address: str | None, exempt: bool = False) -> Verdict:
    """Check every limit and, if none is reached, count this attempt as a failure (before the
    password is checked). ``exempt``: the account's delay does not apply to this attempt (the
    account has a live session from this address, or holds an unused temporary password; see
    login.sign_in); the per-account-and-address and per-address limits always do. Redis
    first; PRIMARY while Redis is unreachable."""
    keys = Keys.of(email, address)
    try:
        limit, wait = get_redis().eval(
            _RESERVE, 4, *_redis_keys(keys), settings.login_max_failures_per_account,
            settings.login_max_failures_per_ip, settings.login_account_delay_after,
            settings.login_account_delay_max, settings.login_throttle_window, repr(now()),
            "1" if exempt else "0", keys.address)
    except redis.RedisError as exc:
        log.warning("sign-in throttle counts in PRIMARY (Redis: %s)", exc)
        return _reserve_in_primary(settings, keys, exempt)
    limit = limit.decode()
    return Verdict(None if limit == "ok" else limit, float(wait), backend="redis")


def succeeded(settings: Settings, email: str, address: str | None, verdict: Verdict) -> None:
    """A sign-in succeeded: give its reservation back and clear the account's counters."""
    keys = Keys.of(email, address)
    if verdict.backend == "redis":
        try:
            get_redis().eval(_GIVE_BACK, 4, *_redis_keys(keys), keys.address, KNOWN_ADDRESS_DAYS * 86400)
            return
        except redis.RedisError as exc:
            log.warning("could not clear the sign-in throttle in Redis: %s", exc)
    primary_db.execute_sql(_PRIMARY_GIVE_BACK, _params(settings, keys))


@dataclass(frozen=True)
class RefusalRun:
    """Throttled attempts of one account from one address within one window."""

    count: int
    first_audit_id: int | None
    started: datetime
    last: datetime


def count_refused(settings: Settings, email: str, address: str | None) -> int:
    """Count one throttled attempt of this account from this address (in PRIMARY, inside
    the caller's transaction); returns how many there were in this run (1 for the first)."""
    return primary_db.execute_sql(_REFUSED, _params(settings, Keys.of(email, address))).fetchone()[0]


def note_first_refusal(settings: Settings, email: str, address: str | None, audit_id: int) -> None:
    """Remember the audit row of a run's first throttled attempt (its total refers to it)."""
    primary_db.execute_sql("UPDATE config.login_throttle SET audit_id = %(audit_id)s "
                           "WHERE kind = 'refused' AND key = %(pair)s",
                           {**_params(settings, Keys.of(email, address)), "audit_id": audit_id})


def ended_refusal_runs(settings: Settings) -> list[RefusalRun]:
    """Take the runs of throttled attempts whose window has passed (each is taken once)."""
    rows = primary_db.execute_sql(_ENDED_RUNS, {"now": now(), "window": settings.login_throttle_window})
    return [RefusalRun(*row) for row in rows]


def purge_expired(settings: Settings) -> int:
    """Delete PRIMARY counters whose window has passed (they pile up only while Redis is
    down; runs of throttled attempts are left to ended_refusal_runs, which audits them)."""
    return primary_db.execute_sql(
        "DELETE FROM config.login_throttle WHERE kind <> 'refused' "
        "AND window_start <= to_timestamp(%(now)s - %(window)s)",
        {"now": now(), "window": settings.login_throttle_window}).rowcount


# --- what an administrator sees (the user page, the users list) ----------------------------------

@dataclass(frozen=True)
class Status:
    """How sign-in to one account is held back now, as ``reserve`` would judge it (Redis, or
    PRIMARY while Redis is unreachable). The per-address limit is about an address, not an
    account, so it is not part of an account's status."""

    failures: int                          # failed sign-ins on the account from any address, this window
    delay: float                           # each further attempt from a new address waits this long (0: none)
    wait: float                            # seconds until the next such attempt is let through
    refused_addresses: tuple[str, ...]     # addresses refused for this account (per-account-and-address limit)
    clears_at: datetime | None             # when the last of these counters runs out by itself
    counted_in: str                        # "redis" or "primary"

    @property
    def throttled(self) -> bool:
        return self.delay > 0 or bool(self.refused_addresses)


def _delay(settings: Settings, failures: int) -> float:
    if failures < settings.login_account_delay_after:
        return 0.0
    return float(min(2 ** (failures - settings.login_account_delay_after), settings.login_account_delay_max))


def _status_from(settings: Settings, failures: int, last: float | None, pairs: dict[str, int],
                 seconds_left: list[float], counted_in: str) -> Status:
    delay, moment = _delay(settings, failures), now()
    refused = tuple(sorted(a for a, n in pairs.items() if n >= settings.login_max_failures_per_account))
    left = max(seconds_left, default=0)
    return Status(failures, delay, max(0.0, (last or 0) + delay - moment) if delay else 0.0, refused,
                  datetime.fromtimestamp(moment + left, timezone.utc) if left > 0 else None, counted_in)


def _status_in_redis(settings: Settings, account: str) -> Status:
    client = get_redis()
    account_name = f"{PREFIX}{ACCOUNT}:{account}"
    pair_names = list(client.scan_iter(match=f"{PREFIX}{PAIR}:{account}|*", count=1000))
    pipe = client.pipeline(transaction=False)
    pipe.hmget(account_name, "n", "last").ttl(account_name)
    for name in pair_names:
        pipe.get(name).ttl(name)
    (n, last), ttl, *rest = pipe.execute()
    pairs, left = {}, [ttl]
    for name, count, pair_ttl in zip(pair_names, rest[0::2], rest[1::2]):
        if count is not None:
            pairs[name.decode().split("|", 1)[1]] = int(count)
            left.append(pair_ttl)
    return _status_from(settings, int(n or 0), float(last) if last else None, pairs, left, "redis")


_PRIMARY_STATUS = """
SELECT kind, key, count, extract(epoch FROM last_at)::float8,
       extract(epoch FROM window_start)::float8 + %(window)s - %(now)s
  FROM config.login_throttle
 WHERE ((kind = 'account' AND key = %(account)s) OR (kind = 'pair' AND left(key, %(length)s) = %(prefix)s))
   AND window_start > to_timestamp(%(now)s - %(window)s)
"""


def _status_in_primary(settings: Settings, account: str) -> Status:
    failures, last, pairs, left = 0, None, {}, []
    for kind, key, count, last_at, seconds_left in primary_db.execute_sql(_PRIMARY_STATUS, {
            "account": account, "length": len(account) + 1, "prefix": account + "|", "now": now(),
            "window": settings.login_throttle_window}):
        left.append(seconds_left)
        if kind == ACCOUNT:
            failures, last = count, last_at
        else:
            pairs[key.split("|", 1)[1]] = count
    return _status_from(settings, failures, last, pairs, left, "primary")


def status(settings: Settings, email: str) -> Status:
    """Is sign-in to this account throttled now, and by what (the user page shows it)?"""
    try:
        return _status_in_redis(settings, account_key(email))
    except redis.RedisError as exc:
        log.warning("sign-in throttle read from PRIMARY (Redis: %s)", exc)
        return _status_in_primary(settings, account_key(email))


_PRIMARY_THROTTLED = """
SELECT CASE WHEN kind = 'account' THEN key ELSE split_part(key, '|', 1) END
  FROM config.login_throttle
 WHERE window_start > to_timestamp(%(now)s - %(window)s)
   AND ((kind = 'account' AND count >= %(after)s) OR (kind = 'pair' AND count >= %(pair_limit)s))
"""


def _throttled_in_redis(settings: Settings) -> set[str]:
    client, found = get_redis(), set()
    for kind, limit in ((ACCOUNT, settings.login_account_delay_after),
                        (PAIR, settings.login_max_failures_per_account)):
        names = list(client.scan_iter(match=f"{PREFIX}{kind}:*", count=1000))
        pipe = client.pipeline(transaction=False)
        for name in names:
            if kind == ACCOUNT:
                pipe.hget(name, "n")
            else:
                pipe.get(name)
        for name, count in zip(names, pipe.execute()):
            if count is not None and int(count) >= limit:
                found.add(name.decode()[len(f"{PREFIX}{kind}:"):].split("|", 1)[0])
    return found


def throttled_accounts(settings: Settings) -> set[str]:
    """The ``account_key`` of every account whose ``status`` is throttled (the users list's
    "locked" filter): one pass over the counters, however many users there are."""
    try:
        return _throttled_in_redis(settings)
    except redis.RedisError as exc:
        log.warning("sign-in throttle read from PRIMARY (Redis: %s)", exc)
    rows = primary_db.execute_sql(_PRIMARY_THROTTLED, {
        "now": now(), "window": settings.login_throttle_window, "after": settings.login_account_delay_after,
        "pair_limit": settings.login_max_failures_per_account})
    return {row[0] for row in rows}


def clear(settings: Settings, email: str) -> None:
    """Forget an account's failures from every address (an administrator reset its password).
    The addresses it signed in from are kept: they are the owner's usual machines, which the
    account's delay must not hold back while a stranger keeps guessing (an intruder's address
    among them is still bound by the per-account-and-address limit)."""
    account = account_key(email)
    try:
        client = get_redis()
        names = [f"{PREFIX}{ACCOUNT}:{account}"]
        names += list(client.scan_iter(match=f"{PREFIX}{PAIR}:{account}|*", count=1000))
        client.delete(*names)
    except redis.RedisError as exc:
        log.warning("could not clear the sign-in throttle in Redis: %s", exc)
    primary_db.execute_sql(
        "DELETE FROM config.login_throttle WHERE (kind = 'account' AND key = %(account)s) "
        "OR (kind = 'pair' AND left(key, %(length)s) = %(prefix)s)",
        {"account": account, "length": len(account) + 1, "prefix": account + "|"})
