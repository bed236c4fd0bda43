"""Signing in and out, login throttling, and the first administrator.

The context's actor is the visitor at the sign-in form: its address is what the
throttle counts and the audit trail records. Sign-in events name the account
being signed in to, not the (anonymous) visitor.
"""

from __future__ import annotations

import logging

import redis

from handled import audit
from handled.auth import passwords, sessions
from handled.auth.users import ADMIN_ROLE, active_admin_ids, create_user, find_user_by_email
from handled.cache import get_redis
from handled.context import Actor, Context
from handled.db import primary_db
from handled.errors import HandledError
from handled.models import User
from handled.settings import Settings
from handled.timeutil import utcnow

log = logging.getLogger("handled.auth")

BAD_CREDENTIALS = "The email or password is not correct."
PURGE_LOCK_KEY = "auth:purge-lock"
PURGE_INTERVAL = 3600


class LoginRefused(HandledError):
    """Wrong credentials, a disabled account or too many failures: the sign-in form says so."""

    status = 401


def _throttle_keys(email: str, ip: str | None) -> tuple[str, str]:
    return f"throttle:account:{email.strip().lower()}", f"throttle:ip:{ip or 'unknown'}"


def throttled(settings: Settings, email: str, ip: str | None) -> str | None:
    """A message if this account or this address failed too often recently, else None."""
    account_key, ip_key = _throttle_keys(email, ip)
    try:
        account_failures, ip_failures = (int(v or 0) for v in get_redis().mget(account_key, ip_key))
    except redis.RedisError as exc:
        log.warning("login throttling unavailable (Redis): %s", exc)
        return None
    minutes = max(1, settings.login_throttle_window // 60)
    if account_failures >= settings.login_max_failures_per_account:
        return (f"Too many failed sign-ins for this account. Wait {minutes} minutes and try again, "
                "or ask an administrator to reset your password.")
    if ip_failures >= settings.login_max_failures_per_ip:
        return f"Too many failed sign-ins from your network address. Wait {minutes} minutes and try again."
    return None


def _count_failure(settings: Settings, email: str, ip: str | None) -> None:
    try:
        pipe = get_redis().pipeline()
        for key in _throttle_keys(email, ip):
            pipe.incr(key)
            pipe.expire(key, settings.login_throttle_window, nx=True)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("could not count a failed sign-in (Redis): %s", exc)


def _clear_account_failures(email: str, ip: str | None) -> None:
    try:
        get_redis().delete(_throttle_keys(email, ip)[0])
    except redis.RedisError:
        pass


def _as_claimant(ctx: Context, email: str) -> Context:
    """The context whose actor is the account a sign-in claims (by email), from the visitor's address."""
    if not email:
        return ctx
    return ctx.with_actor(Actor(id=None, email=email, address=ctx.actor.address, channel=ctx.actor.channel))


def _as_user(ctx: Context, user: User) -> Context:
    return ctx.with_actor(Actor(id=user.id, email=user.email, address=ctx.actor.address, channel=ctx.actor.channel))


def sign_in(ctx: Context, email: str, password: str, user_agent: str | None):
    """Check credentials and start a session: returns (user, token). The same answer
    for an unknown email, a wrong password and a disabled account."""
    settings, ip = ctx.settings, ctx.actor.address
    email = (email or "").strip()
    message = throttled(settings, email, ip)
    if message:
        audit.record(_as_claimant(ctx, email), "auth.sign_in_throttled", "user", None, email)
        raise LoginRefused(message)
    user = find_user_by_email(email) if email else None
    ok, new_hash = passwords.verify_password(settings, user.password_hash if user else None, password or "")
    if not ok or user.disabled:
        _count_failure(settings, email, ip)
        audit.record(_as_claimant(ctx, email), "auth.sign_in_failed", "user", user.id if user else None, email,
                     {"reason": "disabled" if ok else "bad credentials"})
        raise LoginRefused(BAD_CREDENTIALS)
    with primary_db.atomic():
        changes = {"last_login_at": utcnow()}
        if new_hash:
            changes["password_hash"] = new_hash
        User.update(**changes).where(User.id == user.id).execute()
        token = sessions.create_session(settings, user.id, ip, user_agent)
        audit.record(_as_user(ctx, user), "auth.sign_in", "user", user.id, user.email, {"rehashed": bool(new_hash)})
    _clear_account_failures(email, ip)
    purge_now_and_then(settings)
    return user, token


def sign_out(ctx: Context, token_hash: str) -> None:
    """The actor ends the session it is using."""
    sessions.end_session(token_hash)
    audit.record(ctx, "auth.sign_out", "user", ctx.actor.id, ctx.actor.email)


def purge_now_and_then(settings: Settings) -> int | None:
    """Purge expired sessions at most once an hour across all workers (piggybacks on sign-ins)."""
    try:
        if not get_redis().set(PURGE_LOCK_KEY, "1", nx=True, ex=PURGE_INTERVAL):
            return None
    except redis.RedisError:
        return None
    return sessions.purge_expired(settings)


def ensure_admin(ctx: Context) -> tuple[str, str | None] | None:
    """Create the first administrator if there is none. Returns (email, generated
    password or None) when one was created, None when an admin already exists."""
    settings = ctx.settings
    if active_admin_ids():
        return None
    existing = find_user_by_email(settings.admin_email)
    if existing is not None:
        raise HandledError(f"{settings.admin_email} exists but is not an active admin; "
                           "use `flask users enable` / give it the admin role, or set HANDLED_ADMIN_EMAIL.")
    password = settings.admin_password
    user, generated = create_user(ctx, settings.admin_email, "Administrator", [ADMIN_ROLE],
                                  password=password, must_change_password=password is None)
    return user.email, generated
