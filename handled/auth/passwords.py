"""Password hashing (argon2id) and the rules a new password must follow."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from handled.errors import HandledError
from handled.settings import Settings

# Compared against when the email is unknown, so both answers take the same time.
_DUMMY_PASSWORD = "handled-dummy-password-for-timing"
_dummy_hashes: dict[tuple, str] = {}


def hasher(settings: Settings) -> PasswordHasher:
    return PasswordHasher(time_cost=settings.password_hash_time_cost,
                          memory_cost=settings.password_hash_memory_kib,
                          parallelism=1, type=Type.ID)


def hash_password(settings: Settings, password: str) -> str:
    return hasher(settings).hash(password)


def verify_password(settings: Settings, password_hash: str | None, password: str) -> tuple[bool, str | None]:
    """(matches, new hash if the stored one uses outdated parameters)."""
    ph = hasher(settings)
    if password_hash is None:
        key = (settings.password_hash_time_cost, settings.password_hash_memory_kib)
        if key not in _dummy_hashes:
            _dummy_hashes[key] = ph.hash(_DUMMY_PASSWORD)
        try:
            ph.verify(_dummy_hashes[key], password)
        except VerificationError:
            pass
        return False, None
    try:
        ph.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False, None
    return True, ph.hash(password) if ph.check_needs_rehash(password_hash) else None


def check_new_password(settings: Settings, password: str, email: str) -> None:
    """Raise HandledError with the rule broken, if any."""
    if len(password) < settings.password_min_length:
        raise HandledError(f"The password must be at least {settings.password_min_length} characters long.")
    lowered = password.strip().lower()
    local_part = email.split("@")[0].lower()
    if lowered == email.strip().lower() or (len(local_part) >= 4 and local_part in lowered):
        raise HandledError("The password must not be your email address or contain its name part.")


def generate_password() -> str:
    """A random temporary password (about 128 bits)."""
    return secrets.token_urlsafe(16)
