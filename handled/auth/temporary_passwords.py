"""A temporary password (a reset, or a new account without one) shown to the actor once.

The page that made the password redirects (303) to a page that shows it; between the two
the password waits in Redis under a random token, for SHOW_FOR_SECONDS at most, and the
first read takes it away (GETDEL), so a reload, the back button or a copied link shows
nothing. The key names the actor and the user, so only the actor who made the password reads
it, and only on that user's page. The password is never in a URL, a log line or the
database (only its hash is), and only the token travels in the URL.

Nor is it readable from Redis (a dump, a replica, MONITOR): Redis holds it encrypted with a
one-time key that is never in Redis. ``keep()`` draws a random 32-byte key and returns it
with the token; the view hands it to the actor's browser only, in a cookie scoped to the
one page that shows the password (HttpOnly, SameSite=Strict, expiring with the entry); not
in the URL, so not in access logs. The cipher is the textbook CTR construction with
HMAC-SHA256 as the pseudo-random function: keystream block i = HMAC(key, CONTEXT || i),
XORed with the password, which is length-prefixed and padded to PADDED_LENGTH bytes (so
the value does not tell its length either). A key is used for exactly one message, so no
nonce is needed. The stored value is ``tag || ciphertext``, the tag an HMAC-SHA256 (key
derived from SECRET_KEY) over the Redis key name and the ciphertext: a value written or
moved by someone without SECRET_KEY is refused before it is decrypted. Reading Redis
alone gives neither the password nor the key; the cookie alone gives a key to nothing
once the entry has been read or has expired.

Redis not answering: ``ready()`` refuses before anything is changed; if Redis stops
answering between the change and ``keep()`` (a moment), ``keep()`` says the password was
changed but cannot be shown, and that resetting it again is the way out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets

import redis

from handled.cache import get_redis
from handled.context import Context
from handled.errors import Unavailable

log = logging.getLogger("handled.auth")

SHOW_FOR_SECONDS = 600
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 random bytes, URL-safe base64 without padding
PADDED_LENGTH = 128  # bytes: one length byte and at most 127 of password
_KEY = "handled:temporary-password:{actor}:{user}:{token}"
_KEYSTREAM_CONTEXT = b"handled temporary password keystream v1"
_TAG_CONTEXT = b"handled temporary password tag v1"


def _key(ctx: Context, user_id: int, token: str) -> str:
    return _KEY.format(actor=ctx.actor.id if ctx.actor.id is not None else "-", user=user_id, token=token)


def ready() -> None:
    """Refuse (before anything changes) when the password could not be kept to be shown."""
    try:
        get_redis().ping()
    except redis.RedisError:
        raise Unavailable("Redis is not answering, so a temporary password could not be kept to show you; "
                          "nothing was changed. Try again once Redis answers.") from None


def _keystream(key: bytes, length: int) -> bytes:
    blocks = (length + 31) // 32
    return b"".join(hmac.new(key, _KEYSTREAM_CONTEXT + i.to_bytes(4, "big"), hashlib.sha256).digest()
                    for i in range(blocks))[:length]


def _xor(data: bytes, key: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, _keystream(key, len(data))))


def _tag(ctx: Context, redis_key: str, ciphertext: bytes) -> bytes:
    tag_key = hmac.new(ctx.settings.secret_key.encode(), _TAG_CONTEXT, hashlib.sha256).digest()
    return hmac.new(tag_key, redis_key.encode() + b"\n" + ciphertext, hashlib.sha256).digest()


def seal(ctx: Context, redis_key: str, password: str, key: bytes) -> bytes:
    """``tag || ciphertext`` of ``password`` under the one-time ``key`` (see the module text)."""
    data = password.encode()
    if not 0 < len(data) < PADDED_LENGTH:
        raise ValueError(f"a temporary password must be 1 to {PADDED_LENGTH - 1} bytes long")
    ciphertext = _xor(bytes([len(data)]) + data.ljust(PADDED_LENGTH - 1, b"\0"), key)
    return _tag(ctx, redis_key, ciphertext) + ciphertext


def unseal(ctx: Context, redis_key: str, value: bytes, key: bytes) -> str | None:
    """The password, or None when the value was not written with SECRET_KEY for this key name."""
    tag, ciphertext = value[:32], value[32:]
    if len(ciphertext) != PADDED_LENGTH or not hmac.compare_digest(tag, _tag(ctx, redis_key, ciphertext)):
        log.warning("a kept temporary password failed its integrity check (not written with SECRET_KEY, "
                    "or moved); it is not shown")
        return None
    plain = _xor(ciphertext, key)
    length = plain[0]
    if not 0 < length < PADDED_LENGTH or plain[1 + length:].strip(b"\0"):  # the wrong one-time key
        return None
    try:
        return plain[1:1 + length].decode()
    except UnicodeDecodeError:
        return None


def _decode_key(key_text: str | None) -> bytes | None:
    if not KEY_PATTERN.match(key_text or ""):
        return None
    try:
        return base64.urlsafe_b64decode(key_text + "=")
    except (binascii.Error, ValueError):
        return None


def keep(ctx: Context, user_id: int, password: str) -> tuple[str, str]:
    """Keep ``password`` (encrypted) for one read by this actor on this user's page; returns the
    token (for the URL) and the one-time key (for the actor's browser only, never stored here)."""
    token = secrets.token_urlsafe(24)
    key = secrets.token_bytes(32)
    redis_key = _key(ctx, user_id, token)
    value = seal(ctx, redis_key, password, key)
    try:
        get_redis().set(redis_key, value, ex=SHOW_FOR_SECONDS)
    except redis.RedisError:
        raise Unavailable("The password was changed, but Redis stopped answering before the temporary password "
                          "could be kept to show you; reset the password again once Redis answers.") from None
    return token, base64.urlsafe_b64encode(key).rstrip(b"=").decode()


def take(ctx: Context, user_id: int, token: str, key_text: str | None) -> str | None:
    """The kept password, removed as it is read; None when it was read already, expired, is
    not this actor's, or the one-time key is missing or wrong (a later read cannot tell these
    apart, and need not). Without a well-formed key nothing is read, so nothing is used up."""
    key = _decode_key(key_text)
    if not TOKEN_PATTERN.match(token or "") or key is None:
        return None
    redis_key = _key(ctx, user_id, token)
    try:
        value = get_redis().getdel(redis_key)
    except redis.RedisError:
        raise Unavailable("Redis is not answering, so the temporary password cannot be shown now; reload this "
                          f"page once it answers (it is kept for {SHOW_FOR_SECONDS // 60} minutes).") from None
    return unseal(ctx, redis_key, value, key) if value is not None else None
