"""Password hashing (argon2id) and the rules a new password must follow.

A new password is refused when it is blank or only spaces, shorter than
PASSWORD_MIN_LENGTH, the user's email (or contains its name part), or one of the
10,000 most common passwords (``common_passwords.txt``: the head of the frequency-ranked
password list that the zxcvbn project publishes under the MIT licence), compared
case-insensitively and without surrounding spaces. Because only a few dozen of those are
long enough on their own, it is also refused when it is a listed password with digits or
symbols added before or after it (``password1234``, ``Password2026!``), when it uses fewer
than MIN_DISTINCT_CHARACTERS different characters (``aaaaaaaaaaaa``), or when keyboard,
alphabet or digit runs of three or more (``qwertyuiop``, ``abcdefgh``, ``123456789``) make
up half of it or more.
"""

from __future__ import annotations

import re
import secrets
from functools import lru_cache
from pathlib import Path

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


COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    return frozenset(line.strip().lower() for line in COMMON_PASSWORDS_FILE.read_text().splitlines() if line.strip())


MIN_DISTINCT_CHARACTERS = 5
_SHORTEST_LISTED_CORE = 4
_SHORTEST_RUN = 3
_SEQUENCES = ("abcdefghijklmnopqrstuvwxyz", "01234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm",
              "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p", "qazwsxedcrfvtgbyhnujmikolp")
_RUNS = _SEQUENCES + tuple(seq[::-1] for seq in _SEQUENCES)
_PADDING = re.compile(r"[\W\d_]")


def _is_padded_common_password(lowered: str) -> bool:
    """A listed password with only digits or symbols added before and/or after it."""
    common = common_passwords()
    lead = len(lowered) - len(re.sub(r"^[\W\d_]+", "", lowered))
    trail = len(lowered) - len(re.sub(r"[\W\d_]+$", "", lowered))
    if lead == len(lowered):
        return False
    for start in range(lead + 1):
        for end in range(len(lowered) - trail, len(lowered) + 1):
            core = lowered[start:end]
            if len(core) >= _SHORTEST_LISTED_CORE and core in common:
                return True
    return False


def _run_share(lowered: str) -> float:
    """The share of characters inside keyboard, alphabet or digit runs of _SHORTEST_RUN or more."""
    covered = [False] * len(lowered)
    for start in range(len(lowered)):
        longest = 0
        for run in _RUNS:
            length = _SHORTEST_RUN
            while start + length <= len(lowered) and lowered[start:start + length] in run:
                longest = max(longest, length)
                length += 1
        for i in range(start, start + longest):
            covered[i] = True
    return sum(covered) / len(lowered)


def check_new_password(settings: Settings, password: str, email: str) -> None:
    """Raise HandledError with the rule broken, if any."""
    if not password.strip():
        raise HandledError("The password cannot be blank or only spaces.")
    if len(password) < settings.password_min_length:
        raise HandledError(f"The password must be at least {settings.password_min_length} characters long.")
    lowered = password.strip().lower()
    local_part = email.split("@")[0].lower()
    if lowered == email.strip().lower() or (len(local_part) >= 4 and local_part in lowered):
        raise HandledError("The password must not be your email address or contain its name part.")
    if lowered in common_passwords():
        raise HandledError("That password is one of the 10,000 most common passwords, the first ones an "
                           "attacker tries; choose another (a few unrelated words work well).")
    if len(set(lowered)) < MIN_DISTINCT_CHARACTERS:
        raise HandledError(f"The password must use at least {MIN_DISTINCT_CHARACTERS} different characters; "
                           "repeating a few characters is guessed at once.")
    if _run_share(lowered) >= 0.5:
        raise HandledError("The password is mostly a keyboard, alphabet or digit run (like qwertyuiop, abcdefgh "
                           "or 123456789), which attackers try early; choose another (a few unrelated words work well).")
    if _is_padded_common_password(lowered):
        raise HandledError("That password is a common password with digits or symbols added before or after it, "
                           "which attackers try early; choose another (a few unrelated words work well).")


def generate_password() -> str:
    """A random temporary password (about 128 bits)."""
    return secrets.token_urlsafe(16)
