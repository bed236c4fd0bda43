"""Signing in and out, login throttling, and the first administrator.

The context's actor is the visitor at the sign-in form: its address is what the
throttle (handled/auth/throttle.py) counts and the audit trail records. A successful
sign-in is recorded as done by the account signed in to; a failed or throttled one
by the anonymous visitor (its address), naming the account only when it exists.
"""

from __future__ import annotations

import logging

import redis

from handled import audit
from handled.auth import passwords, sessions, throttle
from handled.auth.users import ADMIN_ROLE, active_admin_ids, create_user, find_user_by_email
from handled.cache import get_redis
from handled.context import Actor, Context
from handled.db import primary_db
from handled.errors import HandledError
from handled.models import AuditLog, Session, User
from handled.settings import Settings
from handled.timeutil import utcnow

log = logging.getLogger("handled.auth")

BAD_CREDENTIALS = "The email or password is not correct."
PURGE_LOCK_KEY = "auth:purge-lock"
PURGE_INTERVAL = 3600


class LoginRefused(HandledError):
    """Wrong credentials, a disabled account or too many failures: the sign-in form says so."""

    status = 401


def _as_user(ctx: Context, user: User) -> Context:
    return ctx.with_actor(Actor(id=user.id, email=user.email, address=ctx.actor.address, channel=ctx.actor.channel))


def _record_throttled(ctx: Context, email: str, verdict: throttle.Verdict) -> None:
    """Throttled attempts are not each recorded: the first of a run (one account, one
    address, one window) gets a row, the rest are counted (see _record_ended_runs)."""
    with primary_db.atomic():
        if throttle.count_refused(ctx.settings, email, ctx.actor.address) == 1:
            user = find_user_by_email(email) if email else None
            row = audit.record(ctx, "auth.sign_in_throttled", "user", user.id if user else None,
                               user.email if user else None, {"limit": verdict.limit})
            throttle.note_first_refusal(ctx.settings, email, ctx.actor.address, row.id)


def _record_ended_runs(ctx: Context) -> None:
    """One `auth.sign_in_throttled_total` row per run of throttled attempts whose window has
    passed, with their count, written by the next sign-in attempt (anyone's). The audit
    log stays append-only: the run's first row is never changed."""
    with primary_db.atomic():
        for run in throttle.ended_refusal_runs(ctx.settings):
            first = AuditLog.get_or_none(AuditLog.id == run.first_audit_id) if run.first_audit_id else None
            if run.count <= 1 or first is None:
                continue
            audit.record(ctx.with_actor(Actor.anonymous(first.ip)), "auth.sign_in_throttled_total",
                         first.target_type, first.target_id, first.target_label,
                         {"count": run.count, "first": first.id, "from": run.started.isoformat(),
                          "to": run.last.isoformat()})


def _record_failure(ctx: Context, user: User | None, reason: str) -> None:
    """A failed sign-in: the actor is the anonymous visitor (its address); the target is
    the account when it exists. The email typed for an unknown account is not kept."""
    audit.record(ctx, "auth.sign_in_failed", "user", user.id if user else None, user.email if user else None,
                 {"reason": reason})


def _has_session_from(user: User, ip: str | None) -> bool:
    """Does ``user`` hold a live session started from ``ip`` (the owner's own machine)?
    Redis also remembers the addresses of successful sign-ins (throttle.KNOWN_ADDRESS_DAYS);
    this check is what is left of that while Redis is down."""
    return bool(ip) and Session.select().where((Session.user == user.id) & (Session.ip == ip)
                                               & (Session.expires_at > utcnow())).exists()


def _holds_unused_temporary_password(user: User) -> bool:
    """Was ``user``'s password set by an administrator (a reset, or the account's creation)
    and never used to sign in since? Then the account's delay does not apply: the owner
    asked for it, typically because the delay held them back, and a stranger would be
    guessing a generated password (or one an administrator typed, which passed the password
    rules); the per-account-and-address and per-address limits still bound them."""
    return bool(user.must_change_password) and (user.last_login_at is None
                                                 or user.last_login_at < user.password_changed_at)


def _start_session(settings: Settings, user: User, verified_hash: str, new_hash: str | None,
                   ip: str | None, user_agent: str | None) -> str | None:
    """The session for ``user``, unless their password changed (or they were disabled)
    since ``verified_hash`` was checked: the row is locked and read again first."""
    current = (User.select(User.password_hash, User.disabled, User.password_changed_at)
               .where(User.id == user.id).for_update().first())
    if current is None or current.disabled or current.password_hash != verified_hash:
        return None
    changes = {"last_login_at": utcnow()}
    if new_hash:
        changes["password_hash"] = new_hash
    # Never over a newer password's hash, whatever happened meanwhile:
    User.update(**changes).where((User.id == user.id) & (User.password_hash == verified_hash)).execute()
    return sessions.create_session(settings, user.id, ip, user_agent, not_before=current.password_changed_at)


def sign_in(ctx: Context, email: str, password: str, user_agent: str | None):
    """Check credentials and start a session: returns (user, token). The same answer
    for an unknown email, a wrong password and a disabled account.

    The attempt is counted as a failure before the password is checked (so parallel
    guesses cannot overshoot a limit) and given back when it succeeds."""
    settings, ip = ctx.settings, ctx.actor.address
    email = (email or "").strip()
    _record_ended_runs(ctx)
    user = find_user_by_email(email) if email else None
    exempt = bool(user) and (_holds_unused_temporary_password(user) or _has_session_from(user, ip))
    verdict = throttle.reserve(settings, email, ip, exempt=exempt)
    if verdict.limit:
        _record_throttled(ctx, email, verdict)
        raise LoginRefused(verdict.message(settings))
    verified_hash = user.password_hash if user else None
    ok, new_hash = passwords.verify_password(settings, verified_hash, password or "")
    if not ok or user.disabled:
        _record_failure(ctx, user, "disabled" if ok else "unknown account" if user is None else "wrong password")
        raise LoginRefused(BAD_CREDENTIALS)
    with primary_db.atomic():
        token = _start_session(settings, user, verified_hash, new_hash, ip, user_agent)
        if token:
            audit.record(_as_user(ctx, user), "auth.sign_in", "user", user.id, user.email,
                         {"rehashed": bool(new_hash)})
    if token is None:
        _record_failure(ctx, user, "account changed during sign-in")
        raise LoginRefused(BAD_CREDENTIALS)
    throttle.succeeded(settings, email, ip, verdict)
    purge_now_and_then(settings)
    return user, token


def sign_out(ctx: Context, token_hash: str) -> None:
    """The actor ends the session it is using."""
    sessions.end_session(token_hash)
    audit.record(ctx, "auth.sign_out", "user", ctx.actor.id, ctx.actor.email)


def purge_now_and_then(settings: Settings) -> int | None:
    """Purge expired sessions (and the throttle's expired PRIMARY counters) at most once an
    hour across all workers (piggybacks on sign-ins)."""
    try:
        if not get_redis().set(PURGE_LOCK_KEY, "1", nx=True, ex=PURGE_INTERVAL):
            return None
    except redis.RedisError:
        return None
    throttle.purge_expired(settings)
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
