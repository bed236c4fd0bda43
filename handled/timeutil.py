"""Time helpers: handled stores and compares aware UTC timestamps only."""

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
