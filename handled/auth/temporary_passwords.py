"""A temporary password (a reset, or a new account without one) shown to the actor once.

The page that made the password redirects (303) to a page that shows it; between the two
the password waits in Redis under a random token, for SHOW_FOR_SECONDS at most, and the
first read takes it away (GETDEL), so a reload, the back button or a copied link shows
nothing. The key names the actor and the user, so only the actor who made the password reads
it, and only on that user's page. The password is never in a URL, a log line or the
database (only its hash is), and only the token travels in the URL.

Redis not answering: ``ready()`` refuses before anything is changed; if Redis stops
answering between the change and ``keep()`` (a moment), ``keep()`` says the password was
changed but cannot be shown, and that resetting it again is the way out.
"""

from __future__ import annotations

import re
import secrets

import redis

from handled.cache import get_redis
from handled.context import Context
from handled.errors import Unavailable

SHOW_FOR_SECONDS = 600
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
_KEY = "handled:temporary-password:{actor}:{user}:{token}"


def _key(ctx: Context, user_id: int, token: str) -> str:
    return _KEY.format(actor=ctx.actor.id if ctx.actor.id is not None else "-", user=user_id, token=token)


def ready() -> None:
    """Refuse (before anything changes) when the password could not be kept to be shown."""
    try:
        get_redis().ping()
    except redis.RedisError:
        raise Unavailable("Redis is not answering, so a temporary password could not be kept to show you; "
                          "nothing was changed. Try again once Redis answers.") from None


def keep(ctx: Context, user_id: int, password: str) -> str:
    """Keep ``password`` for one read by this actor on this user's page; returns the token."""
    token = secrets.token_urlsafe(24)
    try:
        get_redis().set(_key(ctx, user_id, token), password, ex=SHOW_FOR_SECONDS)
    except redis.RedisError:
        raise Unavailable("The password was changed, but Redis stopped answering before the temporary password "
                          "could be kept to show you; reset the password again once Redis answers.") from None
    return token


def take(ctx: Context, user_id: int, token: str) -> str | None:
    """The kept password, removed as it is read; None when it was read already, expired, or is
    not this actor's (a later read cannot tell these apart, and need not)."""
    if not TOKEN_PATTERN.match(token or ""):
        return None
    try:
        value = get_redis().getdel(_key(ctx, user_id, token))
    except redis.RedisError:
        raise Unavailable("Redis is not answering, so the temporary password cannot be shown now; reload this "
                          f"page once it answers (it is kept for {SHOW_FOR_SECONDS // 60} minutes).") from None
    return value.decode() if value is not None else None
