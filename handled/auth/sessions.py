"""Server-side sessions: create, authenticate (cache first, PRIMARY on a miss), end, purge.

The browser holds a random 256-bit token; PRIMARY keeps only its sha256 in
config.sessions with an absolute expiry and the last time it was seen (idle expiry).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime, timedelta
from pathlib import Path

from handled import audit, metrics  # metrics: counts session-cache hits/misses and PRIMARY lookups
from handled.auth import session_cache
from handled.context import Context
from handled.db import primary_db
from handled.errors import NotFound
from handled.models import Session, User
from handled.settings import Settings
from handled.timeutil import utcnow

LOOKUP_SQL = (Path(__file__).parent / "sql" / "lookup_session.sql").read_text()

def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


def create_session(settings: Settings, user_id: int, ip: str | None = None, user_agent: str | None = None,
                   not_before: datetime | None = None) -> str:
    """Start a session for ``user_id``; returns the token for the cookie (never stored).

    A session older than its user's ``password_changed_at`` is refused; ``not_before``
    (the value sign-in read under the row lock) keeps a clock behind another host's
    from dating a new session before the change it follows."""
    token = new_token()
    now = utcnow()
    created = max(now, not_before) if not_before else now
    Session.create(id=hash_token(token), user=user_id, created_at=created, last_seen_at=now,
                   expires_at=now + timedelta(seconds=settings.session_max_age),
                   ip=ip, user_agent=(user_agent or "")[:300] or None)
    return token


def lookup_primary(settings: Settings, token_hash: str) -> dict | None:
    """The session's user and permissions from PRIMARY (one statement), or None."""
    with primary_db.atomic():
        row = primary_db.execute_sql(LOOKUP_SQL, {"token_hash": token_hash,
                                                  "idle_seconds": settings.session_idle_timeout}).fetchone()
    if row is None:
        return None
    user_id, email, name, must_change, expires_at, permissions = row
    return {"user_id": user_id, "email": email, "name": name, "must_change_password": must_change,
            "expires_at": expires_at, "permissions": sorted(permissions)}


def authenticate(settings: Settings, token: str | None) -> dict | None:
    """Who holds this token: cache first; on a miss PRIMARY, then cache it if no
    invalidation happened meanwhile. Redis errors fall back to PRIMARY (never fail-open)."""
    if not token or len(token) > 200:
        return None
    token_hash = hash_token(token)
    key = session_cache.signing_key(settings.secret_key)
    epoch = None
    max_age = settings.session_cache_ttl
    if settings.session_cache_enabled:
        try:
            # the epoch comes with the entry (one round trip), read before any PRIMARY lookup
            entry, epoch = session_cache.read(token_hash, key, max_age)
            if entry is not None and entry["expires_at"] > time.time():
                metrics.session_cache_hit()
                return entry
            metrics.session_cache_miss()
        except session_cache.CacheUnavailable:
            metrics.session_cache_unavailable()
            epoch = None
    if epoch is None:
        metrics.primary_session_lookup()
        return lookup_primary(settings, token_hash)
    if session_cache.claim_lookup(token_hash):
        entry = session_cache.read_quietly(token_hash, key, max_age)  # cached while we were claiming?
        if entry is not None:
            session_cache.release_lookup(token_hash)
            return entry
    else:
        # Another request is reading this session from PRIMARY: use its result.
        entry = session_cache.wait_for_entry(token_hash, key, max_age)
        if entry is not None:
            return entry
    try:
        metrics.primary_session_lookup()
        entry = lookup_primary(settings, token_hash)
        if entry is not None:
            ttl = min(settings.session_cache_ttl, int(entry["expires_at"] - time.time()))
            session_cache.write(token_hash, entry, epoch, ttl, key)
    finally:
        session_cache.release_lookup(token_hash)
    return entry


def end_session(token_hash: str) -> None:
    """Log out: the row goes first, then the cached entry."""
    Session.delete().where(Session.id == token_hash).execute()
    session_cache.invalidate(token_hashes=[token_hash])


def revoke_session(user_id: int, token_hash: str) -> bool:
    """End one of ``user_id``'s sessions (admin or the user themself)."""
    deleted = delete_session(user_id, token_hash)
    session_cache.invalidate(token_hashes=[token_hash])
    return deleted


def delete_session(user_id: int, token_hash: str) -> bool:
    """Remove one of ``user_id``'s sessions in PRIMARY (inside the caller's transaction; the
    caller invalidates the cached entry once it has committed)."""
    return bool(Session.delete().where((Session.id == token_hash) & (Session.user == user_id)).execute())


def delete_user_sessions(user_id: int, keep_hash: str | None = None) -> int:
    """Remove a user's sessions in PRIMARY (inside the caller's transaction). The kept one
    counts as started now, so it outlives a password change made in it (sessions started
    before ``password_changed_at`` are refused)."""
    query = Session.delete().where(Session.user == user_id)
    if keep_hash:
        query = query.where(Session.id != keep_hash)
        Session.update(created_at=utcnow()).where((Session.id == keep_hash) & (Session.user == user_id)).execute()
    return query.execute()


def end_sessions(ctx: Context, user_id: int | None = None) -> tuple[int, bool]:
    """End every session (``user_id`` None) or every session of one user, at once.

    One transaction deletes the rows, records the cache invalidation as pending and
    audits it; then the cache is invalidated (every entry, or the user's). Returns
    (sessions ended, whether the cache invalidation is still pending because Redis
    could not be reached; it is then replayed by the next process that reaches it).
    """
    label = None
    if user_id is not None:
        user = User.get_or_none(User.id == user_id)
        if user is None:
            raise NotFound(f"There is no user with id {user_id}.")
        label = user.email
    with primary_db.atomic():
        query = Session.delete()
        if user_id is not None:
            query = query.where(Session.user == user_id)
        ended = query.execute()
        if user_id is None:
            pending_ids = session_cache.record_pending(everything=True)
            audit.record(ctx, "session.end_all", None, None, None, {"sessions_ended": ended})
        else:
            pending_ids = session_cache.record_pending(user_ids=[user_id])
            audit.record(ctx, "session.end_user", "user", user_id, label, {"sessions_ended": ended})
    applied = session_cache.invalidate(user_ids=[user_id] if user_id is not None else (),
                                       everything=user_id is None, pending_ids=pending_ids)
    return ended, not applied


def active_sessions(settings: Settings, user_id: int) -> list[Session]:
    idle_cutoff = utcnow() - timedelta(seconds=settings.session_idle_timeout)
    return list(Session.select().where((Session.user == user_id) & (Session.expires_at > utcnow())
                                       & (Session.last_seen_at > idle_cutoff))
                .order_by(Session.last_seen_at.desc()))


def purge_expired(settings: Settings) -> int:
    """Delete sessions past their absolute or idle expiry; returns how many."""
    idle_cutoff = utcnow() - timedelta(seconds=settings.session_idle_timeout)
    return Session.delete().where((Session.expires_at <= utcnow()) | (Session.last_seen_at <= idle_cutoff)).execute()
